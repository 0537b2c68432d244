/**
 * The soak's pure half, part 2: the checkers over recorded timelines, and the summary. The negative controls
 * matter most: a timeline with two holders must fail, a dead or silent observer must fail, and a run in which the
 * observers saw nothing must never read as a pass.
 */
import { describe, expect, it } from 'vitest';
import type { ArpReply, ArpTick, Timeline } from '../lab/analysis.js';
import {
  availability,
  droppedAt,
  judgeObservers,
  judgeRound,
  liveness,
  longestSilence,
  overlapMs,
  overlapOrigin,
  overlaps,
  recovery,
  sentAt,
  twoMacStretches,
  twoMacWindows,
  type ObserverAudit,
  type RoundFindings,
} from './check.js';
import { formatTable, formatTotals, percentile, summarize, type RoundSummaryInput } from './report.js';

const MAC = { h1: 'aa:00:00:00:00:01', h2: 'aa:00:00:00:00:02', h3: 'aa:00:00:00:00:03' } as const;
const owner = new Map(Object.entries(MAC).map(([h, m]) => [m, h]));

function tl(
  initial: string[],
  events: [number, string, 'add' | 'del'][],
  start = 1000,
  end = 5000,
): Timeline {
  return {
    vip: '10.1.1.201',
    intervalMs: 100,
    start,
    end,
    initial,
    samples: [],
    events: events.map(([t, host, op]) => ({ t, host, op })),
    observers: [],
  };
}

/** Replies every 10 ms from `host` in [from, to), seq = t / 10 (one probe per 10 ms from t = 0). */
function answers(host: keyof typeof MAC, from: number, to: number): ArpReply[] {
  const out: ArpReply[] = [];
  for (let t = from; t < to; t += 10) out.push({ t: t + 1, mac: MAC[host], seq: t / 10 + 1, kind: 'reply' });
  return out;
}

const ticks = (from: number, to: number): ArpTick[] => {
  const out: ArpTick[] = [];
  for (let t = from; t <= to; t += 250) out.push({ t, sent: t / 10 });
  return out;
};

const healthyObservers: ObserverAudit = {
  deadMonitors: [],
  samplerMismatch: [],
  proberRunning: true,
  probesSent: 400,
  probesExpected: 400,
};

describe('overlaps (two holders from the exact kernel events)', () => {
  it('negative control: an add before the old holder’s del is an overlap, and the round fails', () => {
    const t = tl(
      ['h1'],
      [
        [1300, 'h2', 'add'],
        [1500, 'h1', 'del'],
      ],
    );
    const o = overlaps(t);
    expect(o).toEqual([{ from: 1300, to: 1500, ms: 200, hosts: ['h1', 'h2'] }]);
    expect(overlapMs(o)).toBe(200);
    const f: RoundFindings = {
      overlaps: o,
      twoMacs: [],
      liveness: { afterHealMs: 5, host: 'h2', finalHolders: ['h2'] },
      observers: healthyObservers,
    };
    expect(judgeRound(f).map((v) => v.kind)).toEqual(['two-holders']);
  });

  it('a clean handover (del, then add) is no overlap; one at the same millisecond is recorded at 0 ms', () => {
    expect(
      overlaps(
        tl(
          ['h1'],
          [
            [1300, 'h1', 'del'],
            [1330, 'h2', 'add'],
          ],
        ),
      ),
    ).toEqual([]);
    const same = overlaps(
      tl(
        ['h1'],
        [
          [1300, 'h2', 'add'],
          [1300, 'h1', 'del'],
        ],
      ),
    );
    expect(same).toEqual([{ from: 1300, to: 1300, ms: 0, hosts: ['h1', 'h2'] }]);
  });

  it('counts two holders from the start, three holders, and clips to a window', () => {
    const t = tl(
      ['h1', 'h2'],
      [
        [1200, 'h2', 'del'],
        [2000, 'h3', 'add'],
        [2100, 'h2', 'add'],
        [2300, 'h1', 'del'],
        [2400, 'h3', 'del'],
      ],
    );
    expect(overlaps(t)).toEqual([
      { from: 1000, to: 1200, ms: 200, hosts: ['h1', 'h2'] },
      { from: 2000, to: 2400, ms: 400, hosts: ['h1', 'h2', 'h3'] },
    ]);
    expect(overlaps(t, { from: 2200, to: 3000 })).toEqual([
      { from: 2200, to: 2400, ms: 200, hosts: ['h1', 'h2', 'h3'] },
    ]);
    // Still open when the timeline ends: counted up to its end.
    expect(overlapMs(overlaps(tl(['h1'], [[4000, 'h2', 'add']])))).toBe(1000);
  });
});

describe('two-MAC windows (one probe answered by two MACs)', () => {
  it('finds a probe answered by two hosts, and nothing in clean traffic', () => {
    const replies = [
      ...answers('h1', 1000, 1100),
      { t: 1055, mac: MAC.h2, seq: 106, kind: 'reply' as const },
    ];
    expect(twoMacWindows(replies, owner)).toEqual([
      { seq: 106, t: 1051, macs: [MAC.h1, MAC.h2], hosts: ['h1', 'h2'] },
    ]);
    expect(twoMacWindows(replies, owner, { from: 1060, to: 2000 })).toEqual([]);
    expect(twoMacWindows(answers('h1', 1000, 2000), owner)).toEqual([]);
  });

  it('groups consecutive probes answered by the same two hosts into one stretch', () => {
    const w = (seq: number, hosts = ['h1', 'h2']) => ({ seq, t: seq * 10, macs: [], hosts });
    expect(twoMacStretches([w(12), w(10), w(11), w(20), w(21, ['h2', 'h3'])])).toEqual([
      { fromSeq: 10, toSeq: 12, from: 100, to: 120, probes: 3, hosts: ['h1', 'h2'] },
      { fromSeq: 20, toSeq: 20, from: 200, to: 200, probes: 1, hosts: ['h1', 'h2'] },
      { fromSeq: 21, toSeq: 21, from: 210, to: 210, probes: 1, hosts: ['h2', 'h3'] },
    ]);
  });

  it('fails the round', () => {
    const f: RoundFindings = {
      overlaps: [],
      twoMacs: [{ seq: 1, t: 1, macs: [MAC.h1, MAC.h2], hosts: ['h1', 'h2'] }],
      liveness: { afterHealMs: 1, host: 'h1', finalHolders: ['h1'] },
      observers: healthyObservers,
    };
    expect(judgeRound(f).map((v) => v.kind)).toEqual(['two-macs']);
  });
});

describe('recovery (time to one answered holder)', () => {
  it('is 0 when the VIP never left its holder', () => {
    expect(recovery(tl(['h1'], []), answers('h1', 1000, 5000), owner, 2000, 5000)).toMatchObject({ ms: 0 });
  });

  it('runs from the origin to the first answer from the single new holder', () => {
    const t = tl(
      ['h1'],
      [
        [2900, 'h1', 'del'],
        [3400, 'h2', 'add'],
      ],
    );
    const replies = [...answers('h1', 1000, 2900), ...answers('h2', 3410, 5000)];
    expect(recovery(t, replies, owner, 2000, 5000)).toEqual({
      leftAt: 2900,
      backAt: 3411,
      host: 'h2',
      ms: 1411,
      afterHeal: false,
      fromLeaving: false,
      outageMs: 511,
    });
  });

  it('a VIP that only moves after the heal (a rejoining node preempting) counts from when it left', () => {
    const t = tl(
      ['h2'],
      [
        [4000, 'h2', 'del'],
        [4030, 'h1', 'add'],
      ],
    );
    const replies = [...answers('h2', 1000, 4000), ...answers('h1', 4030, 5000)];
    // Fault injected at 1500 on h1 (not the holder), healed at 2500; h1 preempts at 4000.
    expect(recovery(t, replies, owner, 1500, 5000, 2500)).toEqual({
      leftAt: 4000,
      backAt: 4031,
      host: 'h1',
      ms: 31,
      afterHeal: true,
      fromLeaving: true,
      outageMs: 31,
    });
    // Left before the heal: from the injection, as always; the outage itself is still 31 ms.
    expect(recovery(t, replies, owner, 1500, 5000, 4500)).toMatchObject({
      ms: 2531,
      afterHeal: false,
      fromLeaving: false,
      outageMs: 31,
    });
    // A fault that bites late (loss towards etcd): from when the VIP left, heal or not.
    expect(recovery(t, replies, owner, 1500, 5000, 4500, { bites: true })).toMatchObject({
      ms: 31,
      afterHeal: false,
      fromLeaving: true,
      outageMs: 31,
    });
  });

  it('needs the wire: a holder in the kernel that the client never hears is not recovered', () => {
    const t = tl(
      ['h1'],
      [
        [2900, 'h1', 'del'],
        [3400, 'h2', 'add'],
      ],
    );
    expect(recovery(t, answers('h1', 1000, 2900), owner, 2000, 5000).ms).toBeUndefined();
    // An answer from a host that is not the (single) holder does not count either.
    expect(recovery(t, answers('h3', 3400, 5000), owner, 2000, 5000).ms).toBeUndefined();
  });

  it('quorum loss: no holder at the origin (quorum back) counts from the origin', () => {
    const t = tl(
      ['h1'],
      [
        [1500, 'h1', 'del'],
        [4100, 'h3', 'add'],
      ],
    );
    expect(recovery(t, answers('h3', 4100, 5000), owner, 3000, 5000)).toMatchObject({
      leftAt: 3000,
      host: 'h3',
      ms: 1101,
    });
  });

  it('droppedAt: when the cut holder lost the VIP', () => {
    const t = tl(
      ['h1'],
      [
        [2900, 'h1', 'del'],
        [3400, 'h2', 'add'],
      ],
    );
    expect(droppedAt(t, 'h1', 2000)).toBe(2900);
    expect(droppedAt(t, 'h2', 2000)).toBeUndefined();
  });
});

describe('overlapOrigin (which of two faults starts the clock)', () => {
  const f = (kind: string, injectedAt: number, target: string | undefined, holders = ['h1']) => ({
    kind,
    injectedAt,
    target,
    holdersAtInjection: holders,
  });

  it('a fault on another node seconds before a kill of the holder: timed from the kill', () => {
    // seed 112: loss towards etcd on h2 at 0, kill -9 of the holder h1 at 3461 ms, the VIP left at 4416 ms.
    expect(overlapOrigin([f('etcd-loss', 0, 'h2'), f('kill9', 3461, 'h1')], 4416)).toBe(3461);
  });

  it('both on the holder: from the first; loss towards etcd counts from when the VIP left', () => {
    expect(overlapOrigin([f('sigstop', 0, 'h1'), f('lan-cut', 600, 'h1')], 820)).toBe(0);
    expect(overlapOrigin([f('etcd-loss', 0, 'h1'), f('kill9', 1268, 'h1')], 1742)).toBe(1268);
    expect(overlapOrigin([f('etcd-loss', 0, 'h1')], 1742)).toBe(1742);
  });

  it('an etcd fault hits every holder; a fault after the VIP left starts nothing', () => {
    expect(overlapOrigin([f('lan-cut', 0, 'h2'), f('etcd-leader-kill', 900, undefined)], 1700)).toBe(900);
    expect(overlapOrigin([f('kill9', 0, 'h1'), f('kill9', 915, 'h2', [])], 672)).toBe(0);
    expect(overlapOrigin([f('lan-cut', 0, 'h2'), f('kill9', 2000, 'h1')], 1500)).toBeUndefined();
  });

  it('nothing hit the holder (a preempting rejoin of another node): undefined, the caller keeps the first injection', () => {
    expect(overlapOrigin([f('graceful-rejoin', 0, 'h2'), f('etcd-cut', 500, 'h3')], 900)).toBeUndefined();
  });
});

describe('liveness and observers: nothing passes unseen', () => {
  it('negative control: observers that saw nothing (no events, no replies) fail liveness', () => {
    const live = liveness(tl([], []), [], owner, 2000, 5000);
    expect(live).toEqual({ afterHealMs: undefined, host: undefined, finalHolders: [] });
    const v = judgeRound({ overlaps: [], twoMacs: [], liveness: live, observers: healthyObservers });
    expect(v.map((x) => x.kind)).toEqual(['liveness']);
  });

  it('one answered holder after the heal passes; none left at the end fails', () => {
    const t = tl(['h1'], [[4500, 'h1', 'del']]);
    const live = liveness(t, answers('h1', 1000, 4500), owner, 2000, 5000);
    expect(live.afterHealMs).toBe(1);
    expect(live.finalHolders).toEqual([]);
    expect(judgeRound({ overlaps: [], twoMacs: [], liveness: live, observers: healthyObservers })).toEqual([
      { kind: 'liveness', detail: 'round ended with 0 holders (none)' },
    ]);
  });

  it('no answered holder within 10 s of the heal fails', () => {
    const t = tl([], [[14_000, 'h2', 'add']], 1000, 20_000);
    const live = liveness(t, answers('h2', 14_000, 20_000), owner, 2000, 20_000);
    expect(live.afterHealMs).toBeUndefined();
  });

  it('negative control: a dead ip monitor, a mismatch with the kernel, a dead or silent prober each fail', () => {
    expect(judgeObservers(healthyObservers)).toEqual([]);
    const cases: Partial<ObserverAudit>[] = [
      { deadMonitors: ['h2'] },
      { samplerMismatch: [{ host: 'h1', sampler: true, kernel: false }] },
      { proberRunning: false },
      { probesSent: 0 },
    ];
    for (const c of cases) {
      const v = judgeObservers({ ...healthyObservers, ...c });
      expect(
        v.map((x) => x.kind),
        JSON.stringify(c),
      ).toEqual(['dead-observer']);
      const round = judgeRound({
        overlaps: [],
        twoMacs: [],
        liveness: { afterHealMs: 1, host: 'h1', finalHolders: ['h1'] },
        observers: { ...healthyObservers, ...c },
      });
      expect(round.map((x) => x.kind)).toEqual(['dead-observer']);
    }
  });

  it('a clean round has no violation', () => {
    expect(
      judgeRound({
        overlaps: overlaps(
          tl(
            ['h1'],
            [
              [1300, 'h1', 'del'],
              [1330, 'h2', 'add'],
            ],
          ),
        ),
        twoMacs: [],
        liveness: { afterHealMs: 3, host: 'h2', finalHolders: ['h2'] },
        observers: healthyObservers,
      }),
    ).toEqual([]);
  });
});

describe('availability and silences', () => {
  it('interpolates the probes sent between ticks', () => {
    const tk = ticks(0, 10_000);
    expect(sentAt(tk, 1125)).toBeCloseTo(112.5);
    expect(sentAt([], 5)).toBeUndefined();
    expect(sentAt(tk, -1)).toBeUndefined();
    expect(sentAt(tk, 99_999)).toBe(1000);
  });

  it('shares of probes answered; undefined without progress (never "100 %" by default)', () => {
    const replies = [...answers('h1', 1000, 2000), ...answers('h2', 2500, 3000)];
    const a = availability(replies, ticks(0, 10_000), { from: 1000, to: 3000 });
    expect(a).toEqual({ sent: 200, answered: 150, ratio: 0.75 });
    expect(availability(replies, [], { from: 1000, to: 3000 })).toBeUndefined();
    expect(availability([], ticks(0, 10_000), { from: 1000, to: 3000 })?.ratio).toBe(0);
  });

  it('longest silence includes the window edges', () => {
    const replies = [...answers('h1', 1000, 2000), ...answers('h2', 2500, 3000)];
    expect(longestSilence(replies, { from: 1000, to: 3000 })).toBe(510);
    expect(longestSilence([], { from: 1000, to: 3000 })).toBe(2000);
  });
});

describe('summary', () => {
  it('nearest-rank percentiles', () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(percentile([5], 99)).toBe(5);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 99)).toBe(4);
    expect(percentile([...Array(100).keys()], 99)).toBe(98);
  });

  it('one row per kind; an unrecovered round misses the target; fences against 1.6 s', () => {
    const r = (
      index: number,
      kind: RoundSummaryInput['kind'],
      recoveryMs: number | undefined,
      extra = {},
    ) => ({
      index,
      kind,
      faults: [kind],
      recoveryMs,
      violations: [],
      ...extra,
    });
    const rows = summarize([
      r(1, 'kill9', 1400, { outageMs: 400 }),
      r(2, 'kill9', 1500, { outageMs: 500 }),
      r(3, 'sigstop', 900),
      r(4, 'sigstop', undefined, { violations: [{ kind: 'liveness', detail: 'x' }] }),
      r(5, 'etcd-cut', 1700, { fenceMs: 1700 }),
      r(6, 'etcd-cut', 1500, { fenceMs: 900 }),
      r(7, 'etcd-leader-kill', undefined, { harnessError: 'etcd did not come back' }),
    ]);
    expect(rows.map((x) => x.kind)).toEqual(['etcd-cut', 'etcd-leader-kill', 'kill9', 'sigstop']);
    const by = Object.fromEntries(rows.map((x) => [x.kind, x]));
    expect(by['kill9']).toMatchObject({ n: 2, p50: 1400, p99: 1500, max: 1500, outageP99: 500, meets: true });
    expect(by['sigstop']).toMatchObject({ n: 2, recovered: 1, meets: false, violations: 1 });
    expect(by['etcd-cut']).toMatchObject({ fenceMax: 1700, fenceMeets: false, meets: true });
    expect(by['etcd-leader-kill']).toMatchObject({ n: 1, harnessErrors: 1, meets: undefined });
    const table = formatTable(rows);
    expect(table.split('\n')[0]).toMatch(
      /^fault\s+n\s+p50 ms\s+p99 ms\s+max ms\s+outage p99\s+p99 target\s+fence max\s+violations$/,
    );
    expect(table).toMatch(/kill9\s+2\s+1400\s+1500\s+1500\s+500\s+≤ 2000 ✔/);
    expect(table).toMatch(/sigstop\s+2 \(1 unrecovered\)/);
    expect(table).toMatch(/1700 \(≤ 1600\) ✘/);
    const totals = formatTotals({
      seed: 42,
      command: 'pnpm soak --minutes 2 --seed 42',
      rounds: 7,
      durationSec: 120,
      twoHolderMs: 0,
      twoMacWindows: 0,
      availability: 0.9712,
      probesSent: 12_000,
      violations: 1,
      harnessErrors: 1,
    });
    expect(totals).toContain('two-holder time (exact kernel events, all hosts):  0 ms');
    expect(totals).toContain('97.12 % of 12000 probes');
    expect(totals).toContain('seed 42   reproduce: pnpm soak --minutes 2 --seed 42');
  });
});
