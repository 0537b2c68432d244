/** The soak's pure half, part 1: the seeded PRNG and the fault schedule it draws (replayable from a seed). */
import { describe, expect, it } from 'vitest';
import { createRng, parseSeed, randomSeed } from './prng.js';
import {
  describeFault,
  drawRound,
  FAULT_KINDS,
  HOLD_MS,
  resourceOf,
  ROUND_KINDS,
  schedule,
  type RoundPlan,
  type ScheduleOptions,
} from './schedule.js';

const OPTS: ScheduleOptions = { nodes: ['h1', 'h2', 'h3'], etcdMembers: 3, priorities: [50, 100, 150, 200] };

function rounds(seed: number, n: number, o: ScheduleOptions = OPTS): RoundPlan[] {
  const gen = schedule(createRng(seed), o);
  return Array.from({ length: n }, () => gen.next().value);
}

describe('prng', () => {
  it('is mulberry32: fixed outputs for a fixed seed, on every machine', () => {
    const r = createRng(1);
    expect([r.next(), r.next(), r.next()]).toEqual([
      0.6270739405881613, 0.002735721180215478, 0.5274470399599522,
    ]);
  });

  it('replays: the same seed gives the same draws, another seed others', () => {
    const a = createRng(7);
    const b = createRng(7);
    const c = createRng(8);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.next())).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });

  it('int is inclusive on both ends; pick and weighted stay in their lists', () => {
    const r = createRng(3);
    const ints = new Set(Array.from({ length: 2000 }, () => r.int(2, 5)));
    expect([...ints].sort()).toEqual([2, 3, 4, 5]);
    expect(() => r.int(3, 2)).toThrow(RangeError);
    expect(() => r.pick([])).toThrow(RangeError);
    const w = Array.from({ length: 500 }, () =>
      r.weighted([
        ['never', 0],
        ['a', 1],
        ['b', 3],
      ] as const),
    );
    expect(w).not.toContain('never');
    const b = w.filter((x) => x === 'b').length;
    expect(b / w.length).toBeGreaterThan(0.65);
    expect(b / w.length).toBeLessThan(0.85);
  });

  it('parses seeds (decimal, hex) and refuses anything else', () => {
    expect(parseSeed('42')).toBe(42);
    expect(parseSeed('0xff')).toBe(255);
    expect(parseSeed('4294967295')).toBe(4294967295);
    for (const bad of ['-1', '4294967296', '1.5', 'abc', ''])
      expect(() => parseSeed(bad), bad).toThrow(RangeError);
    expect(randomSeed(() => 0.5)).toBe(2147483648);
  });
});

describe('schedule', () => {
  it('the same seed gives the same rounds (kinds, targets, durations); another seed does not', () => {
    expect(rounds(42, 60)).toEqual(rounds(42, 60));
    expect(rounds(43, 60)).not.toEqual(rounds(42, 60));
  });

  it('is pinned: a change in the order of draws would break every printed seed', () => {
    expect(rounds(42, 8).map((r) => r.faults.map(describeFault).join(' + '))).toEqual([
      'etcd-quorum-loss members 0+2 for 2345 ms',
      'etcd-cut h2 for 2687 ms',
      'etcd-cut holder for 3588 ms',
      'sigstop holder for 2604 ms',
      'kill9 h1 for 1571 ms',
      'etcd-quorum-loss members 0+2 for 1094 ms',
      'etcd-leader-kill for 567 ms',
      'etcd-leader-kill for 2523 ms',
    ]);
  });

  it('draws every kind, with durations and parameters in their ranges', () => {
    const all = rounds(5, 600);
    const kinds = new Set(all.map((r) => r.kind));
    expect([...kinds].sort()).toEqual([...ROUND_KINDS].sort());
    for (const f of all.flatMap((r) => r.faults)) {
      const [lo, hi] = HOLD_MS[f.kind];
      expect(f.holdMs, describeFault(f)).toBeGreaterThanOrEqual(lo);
      expect(f.holdMs, describeFault(f)).toBeLessThanOrEqual(hi);
      if (f.kind === 'sigstop') expect(lo === 200 && hi === 5000).toBe(true);
      if (f.kind === 'etcd-loss') expect(f.lossPct! >= 30 && f.lossPct! <= 70).toBe(true);
      if (f.kind === 'asym-cut') expect(['to-etcd', 'from-etcd']).toContain(f.direction);
      if (f.kind === 'reload-config') expect(OPTS.priorities).toContain(f.priority);
      if (f.kind === 'vip-removed' || f.kind === 'kill9-addr-change')
        expect(f.target).toEqual({ role: 'holder' });
      if (f.kind === 'kill9-addr-change')
        expect(f.changeAfterMs! >= 750 && f.changeAfterMs! <= 930).toBe(true);
      if (resourceOf(f.kind) === 'etcd') expect(f.target).toBeUndefined();
      else expect(f.target).toBeDefined();
      if (f.kind === 'etcd-quorum-loss') {
        const [a, b] = f.members!;
        expect(a).not.toBe(b);
        expect([a, b].every((m) => m >= 0 && m < 3)).toBe(true);
      }
    }
  });

  it('aims most node faults at the holder, the rest at drawn nodes', () => {
    const single = rounds(11, 1000)
      .filter((r) => !['overlap', 'vip-removed', 'kill9-addr-change'].includes(r.kind))
      .flatMap((r) => r.faults)
      .filter((f) => f.target !== undefined);
    const holder = single.filter((f) => f.target?.role === 'holder').length / single.length;
    expect(holder).toBeGreaterThan(0.68);
    expect(holder).toBeLessThan(0.82);
    const nodes = new Set(single.flatMap((f) => (f.target?.role === 'node' ? [f.target.node] : [])));
    expect([...nodes].sort()).toEqual(['h1', 'h2', 'h3']);
  });

  it('overlaps: the second fault starts while the first lasts, and never two etcd faults at once', () => {
    const ov = rounds(9, 800).filter((r) => r.kind === 'overlap');
    expect(ov.length).toBeGreaterThan(40);
    for (const r of ov) {
      const [a, b] = r.faults;
      expect(r.faults).toHaveLength(2);
      expect(a!.atMs).toBe(0);
      expect(a!.holdMs).toBeGreaterThan(0);
      expect(b!.atMs).toBeLessThan(a!.holdMs);
      expect(resourceOf(a!.kind) === 'etcd' && resourceOf(b!.kind) === 'etcd').toBe(false);
    }
  });

  it('a kinds filter restricts the draw', () => {
    const only = rounds(1, 100, { ...OPTS, kinds: ['sigstop', 'asym-cut'] });
    expect(new Set(only.map((r) => r.kind))).toEqual(new Set(['sigstop', 'asym-cut']));
    expect(() => drawRound(createRng(1), 1, { ...OPTS, kinds: [] })).toThrow(RangeError);
  });

  it('every fault kind has a resource, a duration range and a description', () => {
    for (const k of FAULT_KINDS) {
      expect(['process', 'network', 'vip', 'etcd']).toContain(resourceOf(k));
      expect(HOLD_MS[k][0]).toBeLessThanOrEqual(HOLD_MS[k][1]);
    }
    expect(
      describeFault({
        kind: 'asym-cut',
        target: { role: 'other', index: 1 },
        atMs: 300,
        holdMs: 900,
        direction: 'from-etcd',
      }),
    ).toBe('asym-cut other#1 from-etcd at +300 ms for 900 ms');
  });
});
