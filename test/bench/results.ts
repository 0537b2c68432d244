/**
 * What every benchmark result file carries besides its figures: where, when and from which commit it was run, and
 * how many rounds were asked for and how many failed. `bench/results/*.json` is committed, and the README's figure
 * tables are generated from it (`pnpm figures`, test/bench/figures.ts): a figure in the README always has a file
 * that says how it was obtained.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

/** Where committed results live. */
export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Machine {
  cpus: number;
  cpuModel: string;
  memGiB: number;
  kernel: string;
  node: string;
  /** 1-minute load average at the start and at the end: other work on the machine inflates every latency. */
  loadavg1: [number, number];
}

export interface Commit {
  sha: string;
  /** Uncommitted changes to tracked files when the bench ran (the figures may not match `sha` exactly). */
  dirty: boolean;
}

/** The common part of every result file. */
export interface ResultEnvelope {
  schema: 1;
  bench: 'failover' | 'reload' | 'footprint' | 'migration';
  /** Start of the run, ISO 8601. */
  date: string;
  durationSec: number;
  commit: Commit;
  machine: Machine;
  /** The arguments it was run with (after `pnpm bench:<name>`). */
  args: string[];
  /**
   * Rounds asked for (per cell for failover; reloads and samples for reload) and how many of all the rounds run
   * failed. Failed rounds are reported, never dropped: the figures are over the rounds that succeeded.
   */
  rounds: { requested: number; total: number; failed: number };
}

/**
 * The envelope of a run that started at `t0` (epoch ms) with the 1-minute load average `startLoad`: everything
 * but the rounds, taken now (duration, commit, machine with its load at the start and now, arguments).
 */
export function envelopeOf<B extends ResultEnvelope['bench']>(
  bench: B,
  t0: number,
  startLoad: number,
): Omit<ResultEnvelope, 'rounds' | 'bench'> & { bench: B } {
  return {
    schema: 1,
    bench,
    date: new Date(t0).toISOString(),
    durationSec: Math.round((Date.now() - t0) / 1000),
    commit: commitOf(),
    machine: machineAt(startLoad),
    args: process.argv.slice(2),
  };
}

export function commitOf(): Commit {
  const git = (...args: string[]): string =>
    execFileSync('git', args, {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  return {
    sha: git('rev-parse', 'HEAD'),
    dirty: git('status', '--porcelain', '--untracked-files=no') !== '',
  };
}

export function machineAt(startLoad: number): Machine {
  const model = cpus()[0]?.model.trim() ?? 'unknown';
  let kernel = release();
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // keep os.release()
  }
  return {
    cpus: cpus().length,
    cpuModel: model,
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel,
    node: process.version,
    loadavg1: [Math.round(startLoad * 100) / 100, Math.round((loadavg()[0] ?? 0) * 100) / 100],
  };
}

/** Nearest-rank percentile of a list (undefined when empty). */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1];
}

/**
 * Below this many values a p99 is just the maximum (nearest rank): results then report `max` and no p99, so no
 * table can call a maximum of 10 rounds a 99th percentile.
 */
export const MIN_FOR_P99 = 100;
