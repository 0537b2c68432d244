/**
 * Giving back the runtime's start-up pages. Most of an idle agent's resident memory is not its own data but
 * pages of the Node binary that start-up touched once: built-in modules' sources and code cache, the V8
 * snapshot, initialisation code (docs/design.md, "Footprint: the runtime's file pages"). They are read-only
 * private file mappings, so the kernel can drop them from this process and bring back from the page cache, on
 * the next touch, what the agent still uses. Only the executable's own mappings are considered — they stay
 * where they are for the life of the process, while a library's could be unmapped and the range reused by
 * another thread between reading the list and dropping — and of those only the ones that hold no page of their
 * own, in memory or in swap: a private file mapping that was ever written (the dynamic linker's relocations,
 * made read-only afterwards) holds its own copies, and dropping them would bring back the file's unrelocated
 * bytes.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import type { Clock, Logger } from '@coord/core';
import { loadPacketAddon } from './addon.js';

/** A mapping whose resident pages may be dropped (see the module comment). */
export interface CleanMapping {
  readonly start: number;
  readonly length: number;
  readonly path: string;
  /** Resident now, in KiB. */
  readonly rssKb: number;
}

/** Paths of mappings that are not files on a disk (devices, memfd, SysV and DMA buffers): never dropped. */
const NOT_FILES = ['/dev/', '/memfd:', '/SYSV', '/dmabuf:'];

/**
 * The mappings of `exe` (the path as `/proc/PID/smaps` shows it) whose resident pages can be dropped safely:
 * private (`p`) and not writable, no page of their own (anonymous, privately dirtied or swapped out: each field
 * must be there and 0), not locked, something resident.
 */
export function cleanFileMappings(smaps: string, exe: string): CleanMapping[] {
  const out: CleanMapping[] = [];
  if (!exe.startsWith('/') || NOT_FILES.some((p) => exe.startsWith(p))) return out;
  // The mapping being read, while it can still qualify (most of an agent's mappings are the V8 heap's: they are
  // ruled out by their header, and their lines skipped unparsed; this runs on the event loop).
  let cur: { start: number; end: number; path: string; fields: Map<string, number> } | null = null;
  const finish = (flags: readonly string[]) => {
    if (cur === null) return;
    const { start, end, path, fields } = cur;
    cur = null;
    for (const own of OWN_PAGES) if (fields.get(own) !== 0) return;
    // SwapPss arrived in Linux 4.3; where it is shown it must agree with Swap.
    if ((fields.get('SwapPss') ?? 0) !== 0) return;
    if (flags.includes('lo')) return;
    const rssKb = fields.get('Rss') ?? 0;
    if (rssKb === 0) return;
    out.push({ start, length: end - start, path, rssKb });
  };
  for (const line of smaps.split('\n')) {
    // Field names start with a capital letter; a mapping's header with its address, in lower-case hex.
    const c = line.charCodeAt(0);
    if ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)) {
      // A mapping without a VmFlags line (kernels before 3.8) is judged without its flags.
      finish([]);
      const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) [0-9a-f]+ \S+ \d+ *(.*)$/.exec(line);
      const perms = head?.[3];
      const path = head?.[4] ?? '';
      if ((perms !== 'r--p' && perms !== 'r-xp') || path !== exe) continue;
      cur = {
        start: parseInt(head?.[1] ?? '', 16),
        end: parseInt(head?.[2] ?? '', 16),
        path,
        fields: new Map(),
      };
      continue;
    }
    if (cur === null) continue;
    if (line.startsWith('VmFlags:')) {
      finish(line.slice('VmFlags:'.length).trim().split(/\s+/));
      continue;
    }
    const field = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (field !== null && READ.has(field[1] ?? '')) cur.fields.set(field[1] ?? '', Number(field[2]));
  }
  finish([]);
  return out;
}

/** The smaps fields that count a mapping's own pages: each must be present and 0. */
const OWN_PAGES = ['Anonymous', 'Private_Dirty', 'Swap'];
const READ = new Set(['Rss', 'SwapPss', ...OWN_PAGES]);

export type ReleaseResult =
  | {
      ok: true;
      /** Mappings dropped, and those the kernel refused (their errno aside: nothing was lost). */
      mappings: number;
      refused: number;
      droppedKb: number;
      rssBeforeKb: number;
      rssAfterKb: number;
    }
  | { ok: false; reason: string };

/** What {@link releaseFilePages} needs of the host (tests give a process of their own). */
export interface ReleaseDeps {
  readonly readSmaps?: () => string;
  readonly readExe?: () => string;
  readonly readStatus?: () => string;
  readonly dropPages?: (start: number, length: number) => number;
}

function vmRssKb(status: string): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
}

/**
 * Drop the resident pages of this process's clean executable mappings (see the module comment). Synchronous, and
 * the executable's mappings are not moved by any thread, so the list read is the list dropped. Never throws.
 */
export function releaseFilePages(deps: ReleaseDeps = {}): ReleaseResult {
  try {
    let drop = deps.dropPages;
    if (drop === undefined) {
      const loaded = loadPacketAddon();
      if (!loaded.ok) return { ok: false, reason: `the packet addon did not load: ${loaded.reason}` };
      drop = (start, length) => loaded.addon.dropPages(start, length);
    }
    const readStatus = deps.readStatus ?? (() => readFileSync('/proc/self/status', 'utf8'));
    const rssBeforeKb = vmRssKb(readStatus());
    const exe = (deps.readExe ?? (() => readlinkSync('/proc/self/exe')))();
    const mappings = cleanFileMappings(
      (deps.readSmaps ?? (() => readFileSync('/proc/self/smaps', 'utf8')))(),
      exe,
    );
    let done = 0;
    let refused = 0;
    let droppedKb = 0;
    for (const m of mappings) {
      if (drop(m.start, m.length) !== 0) {
        refused += 1;
        continue;
      }
      done += 1;
      droppedKb += m.rssKb;
    }
    const rssAfterKb = vmRssKb(readStatus());
    return { ok: true, mappings: done, refused, droppedKb, rssBeforeKb, rssAfterKb };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** When an agent gives its start-up pages back: once it runs (docs/design.md says why only once). */
export const RELEASE_AFTER_MS = 5_000;

/**
 * Release the start-up pages once, `afterMs` after the call: logged at info with what it gave back, or at warn
 * with why not. `stop()` cancels it (at shutdown).
 */
export function releaseStartupPagesLater(opts: {
  clock: Clock;
  logger: Logger;
  release?: () => ReleaseResult;
  afterMs?: number;
}): { stop(): void } {
  const { clock } = opts;
  const log = opts.logger.child({ component: 'memory' });
  const release = opts.release ?? (() => releaseFilePages());
  const handle = clock.setTimeout(() => {
    const t0 = clock.now();
    const r = release();
    if (r.ok)
      log.info('released start-up pages of the runtime', {
        mappings: r.mappings,
        ...(r.refused === 0 ? {} : { refused: r.refused }),
        droppedMiB: mib(r.droppedKb),
        rssBeforeMiB: mib(r.rssBeforeKb),
        rssAfterMiB: mib(r.rssAfterKb),
        tookMs: Math.round(clock.now() - t0),
      });
    else
      log.warn('start-up pages not released', {
        reason: r.reason,
        hint: 'harmless: the agent keeps them (about 25 MiB more RSS); reinstall coord if its addon is missing',
      });
  }, opts.afterMs ?? RELEASE_AFTER_MS);
  return { stop: () => clock.clearTimeout(handle) };
}

function mib(kb: number): number {
  return Math.round((kb / 1024) * 10) / 10;
}
