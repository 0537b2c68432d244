import { describe, expect, it } from 'vitest';
import { clusterKeys, encodeMember, type Entry, type MemberRecord } from '@coord/etcd';
import { judgeStep, nextNode, type Tick } from '../src/drill.js';

const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const step = { from: 'h1', to: 'h2', fromMac: A, movedAt: 100 };

/** Probe rounds every 5 ms from `from` to `to` (exclusive), answered by `macs`. */
function rounds(from: number, to: number, ...macs: string[]): Tick[] {
  const out: Tick[] = [];
  for (let at = from; at < to; at += 5) out.push({ at, macs });
  return out;
}

describe('judgeStep', () => {
  it('measures the gap from the old MAC’s last answer to the new one’s first', () => {
    const v = judgeStep(step, [...rounds(0, 130, A), ...rounds(130, 160), ...rounds(160, 500, B)], 50);
    expect(v).toMatchObject({
      toMac: B,
      lastOldAt: 125,
      firstNewAt: 160,
      gapMs: 35,
      overlapRounds: 0,
      ok: true,
    });
  });

  it('fails a gap over the bound, and says by how much', () => {
    const v = judgeStep(step, [...rounds(0, 130, A), ...rounds(130, 400), ...rounds(400, 700, B)], 250);
    expect(v.ok).toBe(false);
    expect(v.gapMs).toBe(275);
    expect(v.problem).toMatch(/gap of 275\.0 ms is over the bound of 250 ms/);
  });

  it('fails when both MACs answer one round, or the old one answers after the new: two holders', () => {
    const both = judgeStep(
      step,
      [...rounds(0, 150, A), ...rounds(150, 160, A, B), ...rounds(160, 400, B)],
      250,
    );
    expect(both.ok).toBe(false);
    expect(both.overlapRounds).toBe(2);
    expect(both.problem).toMatch(/two holders on the wire/);
    const late = judgeStep(
      step,
      [...rounds(0, 150, A), ...rounds(150, 170, B), ...rounds(170, 175, A), ...rounds(175, 400, B)],
      250,
    );
    expect(late.ok).toBe(false);
    expect(late.problem).toMatch(/still answered after/);
  });

  it('fails when no other MAC ever answers', () => {
    const v = judgeStep(step, [...rounds(0, 130, A), ...rounds(130, 1000)], 250);
    expect(v).toMatchObject({ ok: false, toMac: null, gapMs: null });
    expect(v.problem).toMatch(/no answer from another MAC/);
  });

  it('ignores what answered before the move was written', () => {
    // B answered once long before the move (another test's leftover): it is not the step's first answer.
    const v = judgeStep(step, [{ at: 10, macs: [B] }, ...rounds(20, 120, A), ...rounds(120, 300, B)], 250);
    expect(v).toMatchObject({ firstNewAt: 120, lastOldAt: 115, gapMs: 5, ok: true });
  });
});

describe('nextNode', () => {
  const keys = clusterKeys('c1');
  let rev = 1;
  const member = (node: string, priority: number, extra: Partial<MemberRecord> = {}): Entry => ({
    key: keys.member(node),
    value: Buffer.from(
      encodeMember({
        node,
        groups: { web: { priority, preempt: true, preemptDelayMs: 0, vips: [] } },
        interface: 'eth0',
        version: 'test',
        startedAt: 0,
        candidate: true,
        ...extra,
      }),
    ),
    createRevision: rev,
    modRevision: rev++,
    lease: '1',
  });
  const map = (...es: Entry[]) => new Map(es.map((e) => [e.key, e] as const));

  it('picks the best other member by priority, then name', () => {
    const m = map(member('h1', 150), member('h2', 100), member('h3', 100), member('h4', 50));
    expect(nextNode(m, keys, 'web', 'h1')).toBe('h2');
    expect(nextNode(m, keys, 'web', 'h2')).toBe('h1');
  });

  it('skips members that could not hold the group: priority 0, not a candidate, a sync-group follower', () => {
    const m = map(
      member('h1', 150),
      member('h2', 0),
      member('h3', 120, { candidate: false }),
      member('h4', 110, {
        groups: { web: { priority: 110, preempt: true, preemptDelayMs: 0, vips: [], follows: 'db' } },
      }),
      member('h5', 20),
    );
    expect(nextNode(m, keys, 'web', 'h1')).toBe('h5');
    expect(nextNode(map(member('h1', 150), member('h2', 0)), keys, 'web', 'h1')).toBeUndefined();
  });
});
