/**
 * Giving back the runtime's start-up pages (src/memory.ts): which mappings qualify — above all, that a mapping the
 * dynamic linker wrote before making it read-only never does — and, in a child process with the real addon, that
 * resident memory falls and the process still works afterwards (its pages come back from the page cache).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { cleanFileMappings, releaseFilePagesLater, type ReleaseResult } from '../src/index.js';

/** One smaps entry: the header line, the fields the rule reads, and VmFlags. */
function entry(
  range: string,
  perms: string,
  path: string,
  f: { rss?: number; anon?: number; dirty?: number; flags?: string } = {},
): string {
  return [
    `${range} ${perms} 00000000 fe:01 1234      ${path}`.trimEnd(),
    `Size:               1024 kB`,
    `Rss:                ${f.rss ?? 512} kB`,
    `Pss:                ${f.rss ?? 512} kB`,
    `Private_Clean:      ${f.rss ?? 512} kB`,
    `Private_Dirty:      ${f.dirty ?? 0} kB`,
    `Anonymous:          ${f.anon ?? 0} kB`,
    `VmFlags: ${f.flags ?? 'rd mr mw me sd'}`,
  ].join('\n');
}

describe('cleanFileMappings', () => {
  it('keeps read-only private mappings of regular files with nothing anonymous, and nothing else', () => {
    const smaps = [
      entry('00400000-00b6f000', 'r--p', '/usr/lib/coord/node'),
      entry('00b72000-025fe000', 'r-xp', '/usr/lib/coord/node', { flags: 'rd ex mr mw me sd' }),
      // RELRO: written by the dynamic linker, then made read-only; its pages are private copies.
      entry('0563a000-0563e000', 'r--p', '/usr/lib/coord/node', { anon: 16, dirty: 16 }),
      entry('0563e000-0565d000', 'rw-p', '/usr/lib/coord/node', { anon: 124, dirty: 124 }),
      entry('0f244000-0f508000', 'rw-p', '[heap]', { anon: 2724 }),
      entry('2c2649c0000-2c264a02000', 'rw-p', '', { anon: 264 }),
      entry('7f0626964000-7f0626aba000', 'r-xp', '/usr/lib/x86_64-linux-gnu/libc.so.6'),
      entry('7f0626aba000-7f0626b0d000', 'r--s', '/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache'),
      entry('7f0627000000-7f0627001000', 'r--p', '/dev/zero (deleted)'),
      entry('7f0627001000-7f0627002000', 'r--p', '/memfd:jit (deleted)'),
      entry('7f0627002000-7f0627003000', 'r-xp', '/opt/locked.so', { flags: 'rd ex mr mw me lo' }),
      entry('7f0627003000-7f0627004000', 'r--p', '/usr/lib/coord/lib/cold.so', { rss: 0 }),
      entry('7f0627004000-7f0627005000', 'r--p', '/usr/lib/coord/node.old (deleted)'),
      entry('7ffd1a5f0000-7ffd1a5f2000', 'r-xp', '[vdso]'),
    ].join('\n');
    expect(cleanFileMappings(smaps).map((m) => [m.start.toString(16), m.length, m.path, m.rssKb])).toEqual([
      ['400000', 0xb6f000 - 0x400000, '/usr/lib/coord/node', 512],
      ['b72000', 0x25fe000 - 0xb72000, '/usr/lib/coord/node', 512],
      ['7f0626964000', 0x7f0626aba000 - 0x7f0626964000, '/usr/lib/x86_64-linux-gnu/libc.so.6', 512],
      ['7f0627004000', 0x1000, '/usr/lib/coord/node.old (deleted)', 512],
    ]);
  });

  it('skips a mapping whose anonymous or dirty count is missing (an unknown layout is not a clean one)', () => {
    const smaps = ['00400000-00401000 r--p 00000000 fe:01 1 /usr/bin/x', 'Rss:  4 kB', 'VmFlags: rd'].join(
      '\n',
    );
    expect(cleanFileMappings(smaps)).toEqual([]);
  });

  it('reads this process’s own smaps: the Node binary’s read-only segments are there, page-aligned', () => {
    const own = cleanFileMappings(readFileSync('/proc/self/smaps', 'utf8'));
    expect(own.some((m) => m.path === realpathSync(process.execPath))).toBe(true);
    for (const m of own) {
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
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
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

describe('releaseFilePagesLater', () => {
  const ok: ReleaseResult = {
    ok: true,
    mappings: 30,
    refused: 0,
    droppedKb: 30 * 1024,
    rssBeforeKb: 64 * 1024,
    rssAfterKb: 34 * 1024,
  };

  it('releases once the node runs, then every interval; the first at info, the rest at debug', () => {
    const clock = new FakeClock();
    const logger = new MemoryLogger();
    let calls = 0;
    const r = releaseFilePagesLater({
      clock,
      logger,
      release: () => (calls++, ok),
      firstMs: 5000,
      everyMs: 60_000,
    });
    clock.advance(4999);
    expect(calls).toBe(0);
    clock.advance(1);
    expect(calls).toBe(1);
    expect(logger.records).toEqual([
      {
        level: 'info',
        message: 'released start-up pages of the runtime',
        fields: {
          component: 'memory',
          mappings: 30,
          droppedMiB: 30,
          rssBeforeMiB: 64,
          rssAfterMiB: 34,
          tookMs: 0,
        },
      },
    ]);
    clock.advance(120_000);
    expect(calls).toBe(3);
    expect(logger.records.slice(1).map((x) => [x.level, x.message])).toEqual([
      ['debug', 'released file pages'],
      ['debug', 'released file pages'],
    ]);
    r.stop();
    clock.advance(600_000);
    expect(calls).toBe(3);
  });

  it('stopped before the first release, it never runs; a failure is logged at debug with the reason', () => {
    const clock = new FakeClock();
    const logger = new MemoryLogger();
    let calls = 0;
    releaseFilePagesLater({ clock, logger, release: () => (calls++, ok) }).stop();
    clock.advance(3_600_000);
    expect(calls).toBe(0);
    releaseFilePagesLater({ clock, logger, release: () => ({ ok: false, reason: 'no addon' }) });
    clock.advance(5000);
    expect(logger.records).toEqual([
      {
        level: 'debug',
        message: 'file pages not released',
        fields: { component: 'memory', reason: 'no addon' },
      },
    ]);
  });
});
