/**
 * The soak's summary: one row per round kind (count, time to one holder p50 / p99 / max, violations) with the
 * targets beside the figures. Targets are reported, never enforced; violations are what fail a run.
 */
import type { Violation } from './check.js';
import type { RoundKind } from './schedule.js';

/** What the summary needs of one round. */
export interface RoundSummaryInput {
  index: number;
  kind: RoundKind;
  /** Sub-kinds of an overlap (both faults), or the single kind. */
  faults: string[];
  /** Time to one holder (ms), undefined when it did not happen in the round. */
  recoveryMs: number | undefined;
  /** How long the client had no single answered holder, from when the VIP left (0: it never did). */
  outageMs?: number | undefined;
  /** etcd-cut rounds that lasted long enough to need it: cut → the cut holder's VIP gone (ms). */
  fenceMs?: number | undefined;
  /** True when the round could not run as planned (a harness error): counted apart. */
  harnessError?: string | undefined;
  violations: Violation[];
}

export interface Row {
  kind: RoundKind;
  n: number;
  recovered: number;
  p50: number | undefined;
  p99: number | undefined;
  max: number | undefined;
  /** p99 of the outages (VIP gone → one answered holder again), whenever they began. */
  outageP99: number | undefined;
  /** The target this row is held to (ms), and whether the p99 meets it. */
  targetMs: number;
  meets: boolean | undefined;
  fenceMax: number | undefined;
  fenceMeets: boolean | undefined;
  violations: number;
  harnessErrors: number;
}

/** Recovery p99 target (ms) for every fault; for quorum loss it is measured from quorum's return. */
export const RECOVERY_TARGET_MS = 2000;
/** A holder cut from etcd must have dropped the VIP within this (its own deadline, plus scheduling slack). */
export const FENCE_TARGET_MS = 1600;

/** Nearest-rank percentile (the value at rank ⌈p/100 · n⌉), undefined for an empty list. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

export function summarize(rounds: readonly RoundSummaryInput[]): Row[] {
  const kinds = [...new Set(rounds.map((r) => r.kind))].sort();
  return kinds.map((kind) => {
    const rs = rounds.filter((r) => r.kind === kind);
    const ran = rs.filter((r) => r.harnessError === undefined);
    const rec = ran.flatMap((r) => (r.recoveryMs === undefined ? [] : [r.recoveryMs]));
    const outages = ran.flatMap((r) => (r.outageMs === undefined ? [] : [r.outageMs]));
    const fences = ran.flatMap((r) => (r.fenceMs === undefined ? [] : [r.fenceMs]));
    const p99 = percentile(rec, 99);
    // A round that never got back to one holder misses the target whatever the others did.
    const unrecovered = ran.length - rec.length;
    const fenceMax = fences.length === 0 ? undefined : Math.max(...fences);
    return {
      kind,
      n: rs.length,
      recovered: rec.length,
      p50: percentile(rec, 50),
      p99,
      max: rec.length === 0 ? undefined : Math.max(...rec),
      outageP99: percentile(outages, 99),
      targetMs: RECOVERY_TARGET_MS,
      meets: p99 === undefined ? undefined : p99 <= RECOVERY_TARGET_MS && unrecovered === 0,
      fenceMax,
      fenceMeets: fenceMax === undefined ? undefined : fenceMax <= FENCE_TARGET_MS,
      violations: rs.reduce((s, r) => s + r.violations.length, 0),
      harnessErrors: rs.length - ran.length,
    };
  });
}

export interface Totals {
  seed: number;
  command: string;
  rounds: number;
  durationSec: number;
  twoHolderMs: number;
  twoMacWindows: number;
  /** Share of probes answered over the rounds, undefined when the prober reported nothing. */
  availability: number | undefined;
  probesSent: number;
  violations: number;
  harnessErrors: number;
}

const ms = (v: number | undefined): string => (v === undefined ? '—' : String(Math.round(v)));
const mark = (ok: boolean | undefined): string => (ok === undefined ? '' : ok ? ' ✔' : ' ✘');

/** The table, as fixed-width text. */
export function formatTable(rows: readonly Row[]): string {
  const head = [
    'fault',
    'n',
    'p50 ms',
    'p99 ms',
    'max ms',
    'outage p99',
    'p99 target',
    'fence max',
    'violations',
  ];
  const body = rows.map((r) => [
    r.kind,
    r.recovered === r.n ? String(r.n) : `${r.n} (${r.n - r.recovered} unrecovered)`,
    ms(r.p50),
    ms(r.p99),
    ms(r.max),
    ms(r.outageP99),
    `≤ ${r.targetMs}${r.kind === 'etcd-quorum-loss' || r.kind === 'etcd-loss' ? ' ¹' : ''}${mark(r.meets)}`,
    r.fenceMax === undefined ? '' : `${ms(r.fenceMax)} (≤ ${FENCE_TARGET_MS})${mark(r.fenceMeets)}`,
    r.harnessErrors > 0 ? `${r.violations} (+${r.harnessErrors} harness)` : String(r.violations),
  ]);
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((row) => [...(row[i] ?? '')].length)));
  const pad = (c: string, w: number, left: boolean): string => {
    const fill = ' '.repeat(Math.max(0, w - [...c].length));
    return left ? c + fill : fill + c;
  };
  const line = (row: string[]): string =>
    row
      .map((c, i) => pad(c, widths[i] ?? 0, i === 0 || i >= 6))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** The lines under the table: invariants, availability, how to replay. */
export function formatTotals(t: Totals): string {
  const pct = t.availability === undefined ? '—' : `${(t.availability * 100).toFixed(2)} %`;
  return [
    '¹ quorum loss: measured from quorum’s return; loss towards etcd from when the VIP left (the holder serves',
    '  until the loss bites, if it does); every other fault from its injection — or, when the VIP only left after',
    '  the heal (a rejoining node preempting, a late fence), from when it left. Two overlapping faults: from the',
    '  first that hit the holder (or etcd), not from one on another node before it.',
    `time to one holder = until exactly one host holds the VIP and the client's ARP probes are answered by its MAC`,
    'outage = from the VIP leaving its single holder to that point, whenever it left (loss towards etcd bites late)',
    '',
    `two-holder time (exact kernel events, all hosts):  ${t.twoHolderMs === 0 ? '0' : t.twoHolderMs.toFixed(1)} ms   (must be 0)`,
    `two-MAC windows (one probe answered by two MACs):  ${t.twoMacWindows}   (must be 0)`,
    `availability (probes answered / sent):             ${pct} of ${t.probesSent} probes`,
    `rounds ${t.rounds} in ${t.durationSec} s, violations ${t.violations}` +
      (t.harnessErrors > 0 ? `, harness errors ${t.harnessErrors}` : ''),
    `seed ${t.seed}   reproduce: ${t.command}`,
  ].join('\n');
}
