/**
 * Giving back the runtime's start-up pages (src/memory.ts): which mappings qualify — above all, that a mapping the
 * dynamic linker wrote before making it read-only never does, its copies resident or swapped out, and that only
 * the executable's own mappings are considered — and, in a child process with the real addon, that resident
 * memory falls and the process still works afterwards (its pages come back from the page cache).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { cleanFileMappings, releaseStartupPagesLater, type ReleaseResult } from '../src/index.js';

/** One smaps entry: the header line, the fields the rule reads, and VmFlags. */
function entry(
  range: string,
  perms: string,
  path: string,
  f: { rss?: number; anon?: number; dirty?: number; swap?: number; flags?: string } = {},
): string {
  return [
    `${range} ${perms} 00000000 fe:01 1234      ${path}`.trimEnd(),
    `Size:               1024 kB`,
    `Rss:                ${f.rss ?? 512} kB`,
    `Pss:                ${f.rss ?? 512} kB`,
    `Private_Clean:      ${f.rss ?? 512} kB`,
    `Private_Dirty:      ${f.dirty ?? 0} kB`,
    `Anonymous:          ${f.anon ?? 0} kB`,
    `Swap:               ${f.swap ?? 0} kB`,
    `SwapPss:            ${f.swap ?? 0} kB`,
    `VmFlags: ${f.flags ?? 'rd mr mw me sd'}`,
  ].join('\n');
}

describe('cleanFileMappings', () => {
  const EXE = '/usr/lib/coord/node';

  it('keeps the executable’s read-only private mappings that hold no page of their own, and nothing else', () => {
    const smaps = [
      entry('00400000-00b6f000', 'r--p', EXE),
      entry('00b72000-025fe000', 'r-xp', EXE, { flags: 'rd ex mr mw me sd' }),
      // RELRO: written by the dynamic linker, then made read-only; its pages are private copies…
      entry('0563a000-0563e000', 'r--p', EXE, { anon: 16, dirty: 16 }),
      // …and they stay its own when memory pressure swaps them out: only Swap says so then.
      entry('0563e000-05640000', 'r--p', EXE, { swap: 8 }),
      entry('05640000-0565d000', 'rw-p', EXE, { anon: 116, dirty: 116 }),
      entry('0f244000-0f508000', 'rw-p', '[heap]', { anon: 2724 }),
      entry('2c2649c0000-2c264a02000', 'rw-p', '', { anon: 264 }),
      // A library: its range could be unmapped and reused by another thread before the drop.
      entry('7f0626964000-7f0626aba000', 'r-xp', '/usr/lib/x86_64-linux-gnu/libc.so.6'),
      entry('7f0626aba000-7f0626b0d000', 'r--s', EXE),
      entry('7f0627002000-7f0627003000', 'r-xp', EXE, { flags: 'rd ex mr mw me lo' }),
      entry('7f0627003000-7f0627004000', 'r--p', EXE, { rss: 0 }),
      entry('7ffd1a5f0000-7ffd1a5f2000', 'r-xp', '[vdso]'),
    ].join('\n');
    expect(
      cleanFileMappings(smaps, EXE).map((m) => [m.start.toString(16), m.length, m.path, m.rssKb]),
    ).toEqual([
      ['400000', 0xb6f000 - 0x400000, EXE, 512],
      ['b72000', 0x25fe000 - 0xb72000, EXE, 512],
    ]);
  });

  it('an executable replaced on disk is still its mappings’ file; one that is no file on a disk is never used', () => {
    const deleted = `${EXE} (deleted)`;
    expect(cleanFileMappings(entry('00400000-00b6f000', 'r--p', deleted), deleted)).toHaveLength(1);
    const memfd = '/memfd:node (deleted)';
    expect(cleanFileMappings(entry('00400000-00b6f000', 'r--p', memfd), memfd)).toEqual([]);
    expect(cleanFileMappings(entry('00400000-00b6f000', 'r--p', EXE), 'node')).toEqual([]);
  });

  it('skips a mapping whose anonymous, dirty or swap count is missing (an unknown layout is not a clean one)', () => {
    const fields = ['Rss:  4 kB', 'Anonymous:  0 kB', 'Private_Dirty:  0 kB', 'Swap:  0 kB'];
    const head = `00400000-00401000 r--p 00000000 fe:01 1 ${EXE}`;
    expect(cleanFileMappings([head, ...fields, 'VmFlags: rd'].join('\n'), EXE)).toHaveLength(1);
    for (const missing of fields.slice(1)) {
      const text = [head, ...fields.filter((f) => f !== missing), 'VmFlags: rd'].join('\n');
      expect(cleanFileMappings(text, EXE), missing).toEqual([]);
    }
  });

  it('reads this process’s own smaps: the Node binary’s read-only segments are there, page-aligned', () => {
    const own = cleanFileMappings(readFileSync('/proc/self/smaps', 'utf8'), readlinkSync('/proc/self/exe'));
    expect(own.length).toBeGreaterThan(0);
    for (const m of own) {
      expect(m.path).toBe(realpathSync(process.execPath));
      expect(m.start % 4096).toBe(0);
      expect(m.length % 4096).toBe(0);
    }
  });
});

describe('releaseFilePages, for real (child process)', () => {
  it('drops resident file pages, and the process carries on: code, libc and built-in modules come back', () => {
    const memory = fileURLToPath(new URL('../src/memory.ts', import.meta.url));
    // A child that warmed up (loaded modules, compressed, hashed), released its pages, then does it all again.
    const script = `
      import { createHash } from 'node:crypto';
      import { gzipSync, gunzipSync } from 'node:zlib';
      const { releaseFilePages } = await import(${JSON.stringify(memory)});
      const work = () => gunzipSync(gzipSync(createHash('sha256').update('x'.repeat(1e5)).digest('hex'))).toString();
      const before = work();
      const r = releaseFilePages();
      const after = work();
      const http = await import('node:http');
      console.log(JSON.stringify({ r, same: before === after, http: typeof http.createServer }));
    `;
    // `source`: the workspace's packages from their TypeScript, as vitest reads them (no build needed).
    const args = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script];
    const out = execFileSync(process.execPath, args, {
      encoding: 'utf8',
    });
    const { r, same, http } = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
      r: ReleaseResult;
      same: boolean;
      http: string;
    };
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (!r.ok) return;
    expect(r.mappings).toBeGreaterThan(0);
    expect(r.refused).toBe(0);
    // Node's binary alone maps tens of MiB at start-up; at least 10 MiB of it goes.
    expect(r.droppedKb).toBeGreaterThan(10 * 1024);
    expect(r.rssBeforeKb - r.rssAfterKb).toBeGreaterThan(10 * 1024);
    expect(same).toBe(true);
    expect(http).toBe('function');
  });
});

describe('releaseStartupPagesLater', () => {
  const ok: ReleaseResult = {
    ok: true,
    mappings: 3,
    refused: 0,
    droppedKb: 30 * 1024,
    rssBeforeKb: 64 * 1024,
    rssAfterKb: 34 * 1024,
  };

  it('releases once, when the node has run for a while, and says what it gave back', () => {
    const clock = new FakeClock();
    const logger = new MemoryLogger();
    let calls = 0;
    releaseStartupPagesLater({ clock, logger, release: () => (calls++, ok), afterMs: 5000 });
    clock.advance(4999);
    expect(calls).toBe(0);
    clock.advance(1);
    expect(calls).toBe(1);
    clock.advance(3_600_000);
    expect(calls).toBe(1);
    expect(logger.records).toEqual([
      {
        level: 'info',
        message: 'released start-up pages of the runtime',
        fields: {
          component: 'memory',
          mappings: 3,
          droppedMiB: 30,
          rssBeforeMiB: 64,
          rssAfterMiB: 34,
          tookMs: 0,
        },
      },
    ]);
  });

  it('stopped first (a node stopping), it never runs; a failure is a warning with the reason', () => {
    const clock = new FakeClock();
    const logger = new MemoryLogger();
    let calls = 0;
    releaseStartupPagesLater({ clock, logger, release: () => (calls++, ok) }).stop();
    clock.advance(3_600_000);
    expect(calls).toBe(0);
    releaseStartupPagesLater({ clock, logger, release: () => ({ ok: false, reason: 'no addon' }) });
    clock.advance(5000);
    expect(logger.records.map((r) => [r.level, r.message, r.fields['reason']])).toEqual([
      ['warn', 'start-up pages not released', 'no addon'],
    ]);
  });
});
