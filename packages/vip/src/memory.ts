/**
 * Giving back the runtime's start-up pages. Most of an idle agent's resident memory is not its own data but
 * pages of the Node binary (and its libraries) that start-up touched once: built-in modules' sources and code
 * cache, the V8 snapshot, initialisation code (docs/design.md, "Footprint: the runtime's file pages"). They are
 * read-only private file mappings, so the kernel can drop them from this process and bring back from the page
 * cache, on the next touch, exactly what the agent still uses. Only such mappings qualify, and only those with no
 * anonymous page: a private file mapping that was ever written (the dynamic linker's relocations, made read-only
 * afterwards) holds its own copies, and dropping them would bring back the file's unrelocated bytes.
 */
import { readFileSync } from 'node:fs';
import { every, type Clock, type Logger, type Repeating } from '@coord/core';
import { loadPacketAddon } from './addon.js';

/** A mapping whose resident pages may be dropped (see the module comment). */
export interface CleanMapping {
  readonly start: number;
  readonly length: number;
  readonly path: string;
  /** Resident now, in KiB. */
  readonly rssKb: number;
}

/** Files a process maps that are not files on a disk: their pages have no page cache to come back from. */
const NOT_FILES = ['/dev/', '/memfd:', '/SYSV', '/dmabuf:'];

/**
 * The mappings of `/proc/PID/smaps` text whose resident pages can be dropped safely: private (`p`), not
 * writable, backed by a regular file, no anonymous or privately dirtied page, not locked, something resident.
 */
export function cleanFileMappings(smaps: string): CleanMapping[] {
  const out: CleanMapping[] = [];
  // The mapping being read, while it can still qualify (most of an agent's mappings are the V8 heap's: they are
  // ruled out by their header, and their lines skipped unparsed; this runs on the event loop).
  let cur: { start: number; end: number; path: string; fields: Map<string, number> } | null = null;
  const finish = (flags: readonly string[]) => {
    if (cur === null) return;
    const { start, end, path, fields } = cur;
    cur = null;
    if (fields.get('Anonymous') !== 0 || fields.get('Private_Dirty') !== 0) return;
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
      if (perms !== 'r--p' && perms !== 'r-xp') continue;
      if (!path.startsWith('/') || NOT_FILES.some((p) => path.startsWith(p))) continue;
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
    if (!line.startsWith('Rss:') && !line.startsWith('Anonymous:') && !line.startsWith('Private_Dirty:'))
      continue;
    const field = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (field !== null) cur.fields.set(field[1] ?? '', Number(field[2]));
  }
  finish([]);
  return out;
}

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
  readonly readStatus?: () => string;
  readonly dropPages?: (start: number, length: number) => number;
}

function vmRssKb(status: string): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
}

/**
 * Drop this process's resident pages of clean file mappings (see the module comment). Synchronous: nothing
 * else runs on this thread between reading the mappings and dropping them. Never throws.
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
    const mappings = cleanFileMappings(
      (deps.readSmaps ?? (() => readFileSync('/proc/self/smaps', 'utf8')))(),
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

/** When an agent gives its start-up pages back: once it runs, and again now and then (pages of rare work). */
export const RELEASE_FIRST_MS = 5_000;
export const RELEASE_EVERY_MS = 10 * 60_000;

/**
 * Release the start-up pages `firstMs` after the call, then every `everyMs`: the first result is logged at info
 * (what an operator comparing memory wants to see once), later ones at debug. `stop()` before the process ends.
 */
export function releaseFilePagesLater(opts: {
  clock: Clock;
  logger: Logger;
  release?: () => ReleaseResult;
  firstMs?: number;
  everyMs?: number;
}): Repeating {
  const { clock } = opts;
  const log = opts.logger.child({ component: 'memory' });
  const release = opts.release ?? (() => releaseFilePages());
  let first = true;
  let repeating: Repeating | null = null;
  let stopped = false;
  const run = () => {
    const t0 = clock.now();
    const r = release();
    const fields = r.ok
      ? {
          mappings: r.mappings,
          ...(r.refused === 0 ? {} : { refused: r.refused }),
          droppedMiB: mib(r.droppedKb),
          rssBeforeMiB: mib(r.rssBeforeKb),
          rssAfterMiB: mib(r.rssAfterKb),
          tookMs: Math.round(clock.now() - t0),
        }
      : { reason: r.reason };
    if (first && r.ok) log.info('released start-up pages of the runtime', fields);
    else if (r.ok) log.debug('released file pages', fields);
    else log.debug('file pages not released', fields);
    first = false;
  };
  const handle = clock.setTimeout(() => {
    if (stopped) return;
    run();
    repeating = every(clock, opts.everyMs ?? RELEASE_EVERY_MS, run);
  }, opts.firstMs ?? RELEASE_FIRST_MS);
  return {
    stop() {
      stopped = true;
      clock.clearTimeout(handle);
      repeating?.stop();
    },
  };
}

function mib(kb: number): number {
  return Math.round((kb / 1024) * 10) / 10;
}
