import { describe, expect, it } from 'vitest';
import {
  bestCandidate,
  defaultTiming,
  fenceDeadline,
  fenceGraceMs,
  fenceRepeatMs,
  initialState,
  kernelLifetimeSec,
  step,
  takeoverGuardMs,
  type Candidate,
  type Effect,
  type GroupConfig,
  type GroupEvent,
  type GroupState,
  type VacancyInfo,
  PROBE_QUIET_MS,
  MAX_SLOW_ACKS,
  HOST_CHANGE_MIN_LEFT_MS,
  CAMPAIGN_RETRY_MS,
  WIRE_CAP_LIFETIMES,
} from '../src/index.js';

const timing = defaultTiming(1000);
const me: Candidate = { node: 'lb1', priority: 100, preempt: true, preemptDelayMs: 0 };
const config: GroupConfig = { group: 'web', self: me, vacancyFallbackMs: 1500 };

/** Feed events in order; return the final state and every effect. */
function run(events: GroupEvent[], cfg: GroupConfig = config, from: GroupState = initialState()) {
  let state = from;
  const effects: Effect[] = [];
  for (const e of events) {
    const r = step(cfg, state, e);
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}

const types = (effects: Effect[]) => effects.filter((e) => e.type !== 'arm-timer').map((e) => e.type);

const CLEAN: VacancyInfo = { clean: true };
const UNCLEAN: VacancyInfo = { clean: false, guardMs: undefined, lifetimeMs: undefined };

/** A node that has a session, sees itself alone and a vacant group, and wins at epoch 7. */
function elected(cleanVacancy: boolean, now = 0) {
  return run([
    { type: 'session-up', now, leaseId: 'L1', timing, sentAt: now },
    { type: 'members-observed', now, members: [me] },
    { type: 'leader-observed', now, leader: null },
    { type: 'campaign-result', now: now + 2, won: true, epoch: 7, vacancy: cleanVacancy ? CLEAN : UNCLEAN },
  ]);
}

describe('timing rules', () => {
  it('fences at send time of the last acked keepalive + granted TTL − margin', () => {
    expect(fenceDeadline(timing, 10_000)).toBe(10_000 + 1000 - timing.marginMs);
  });
  it('uses whole-second kernel lifetimes, at least 1 s', () => {
    expect(kernelLifetimeSec(defaultTiming(1000))).toBe(1);
    expect(kernelLifetimeSec(defaultTiming(2500))).toBe(2);
  });
  it('guards a takeover long enough for the old kernel lifetime to run out', () => {
    // old holder refreshed at most ackWindow after a send s; kernel removes by s + ackWindow + 1 s + slack;
    // etcd could expire the lease at s + TTL at the earliest.
    expect(takeoverGuardMs(timing)).toBe(timing.ackWindowMs + 1000 - 1000);
    expect(takeoverGuardMs(timing)).toBeLessThan(400);
    // The kernel never drops the VIP before the holder's own deadline would have fenced it.
    for (const ttl of [1000, 2000, 5000]) {
      const t = defaultTiming(ttl);
      expect(kernelLifetimeSec(t) * 1000).toBeGreaterThanOrEqual(fenceDeadline(t, 0));
    }
  });
});

describe('candidates', () => {
  it('prefers the higher priority, then the smaller node name', () => {
    const members: Candidate[] = [
      { node: 'c', priority: 100, preempt: true, preemptDelayMs: 0 },
      { node: 'b', priority: 150, preempt: true, preemptDelayMs: 0 },
      { node: 'a', priority: 150, preempt: true, preemptDelayMs: 0 },
    ];
    expect(bestCandidate(members)?.node).toBe('a');
    expect(bestCandidate([])).toBeUndefined();
  });
});

describe('election machine', () => {
  it('campaigns when the group is vacant and it is the best candidate', () => {
    const { state, effects } = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me, { ...me, node: 'lb2', priority: 50 }] },
      { type: 'leader-observed', now: 0, leader: null },
    ]);
    expect(state.role).toBe('campaigning');
    expect(effects).toContainEqual({ type: 'campaign', leaseId: 'L1' });
  });

  it('does not campaign while a better candidate is live, until the vacancy fallback', () => {
    const better = { ...me, node: 'lb0', priority: 200 };
    const first = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me, better] },
      { type: 'leader-observed', now: 0, leader: null },
    ]);
    expect(first.state.role).toBe('follower');
    expect(first.effects).toContainEqual({ type: 'arm-timer', at: 1500 });
    const later = run([{ type: 'tick', now: 1500 }], config, first.state);
    expect(later.state.role).toBe('campaigning');
  });

  it('decides on its own priority as it is now, not on its record still in flight', () => {
    // Our record in etcd still says 200; our config says 100 now, and lb2 has 150.
    const lb2 = { ...me, node: 'lb2', priority: 150 };
    const { state, effects } = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [{ ...me, priority: 200 }, lb2] },
      { type: 'leader-observed', now: 0, leader: null },
    ]);
    expect(state.role).toBe('follower');
    expect(types(effects)).not.toContain('campaign');
  });

  it('claims at once after a clean release, and announces right after the add', () => {
    const { state, effects } = elected(true);
    expect(state.role).toBe('leader');
    expect(state.epoch).toBe(7);
    expect(types(effects)).toEqual(['campaign', 'transition', 'transition', 'add-vip', 'announce']);
    const add = effects.find((e) => e.type === 'add-vip');
    expect(add).toMatchObject({ epoch: 7, lifetimeSec: 1, notAfter: timing.ackWindowMs });
    expect(effects.findIndex((e) => e.type === 'announce')).toBeGreaterThan(
      effects.findIndex((e) => e.type === 'add-vip'),
    );
  });

  it('without a fresh ack, asks for a keepalive and adds the VIP only on a prompt ack', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
    ]);
    const won = run(
      [{ type: 'campaign-result', now: 200, won: true, epoch: 9, vacancy: CLEAN }],
      config,
      base.state,
    );
    expect(types(won.effects)).toContain('keepalive-now');
    expect(types(won.effects)).not.toContain('add-vip');
    const acked = run([{ type: 'session-acked', now: 202, leaseId: 'L1', sentAt: 200 }], config, won.state);
    expect(acked.effects).toContainEqual({
      type: 'add-vip',
      epoch: 9,
      lifetimeSec: 1,
      notAfter: 200 + timing.ackWindowMs,
    });
  });

  it('how the vacancy began comes from the winning transaction alone, never from what the view saw', () => {
    // Regression (issue: stale "clean" vacancy): C saw A release cleanly; its watch then dropped while B won and
    // was killed; on reconnect C saw "vacant" again and claimed with no guard while B's kernel copy was alive.
    // Whatever the observations, only the campaign's own read of the last-holder record decides.
    const { state, effects } = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: { node: 'lbA', epoch: 5, leaseId: 'LA' } },
      { type: 'leader-observed', now: 10, leader: null }, // A released cleanly
      { type: 'session-acked', now: 2990, leaseId: 'L1', sentAt: 2989 },
      { type: 'leader-observed', now: 3000, leader: null }, // resync after the watch gap: B came and went unseen
      { type: 'campaign-result', now: 3002, won: true, epoch: 12, vacancy: UNCLEAN },
    ]);
    expect(state.role).toBe('leader');
    expect(state.claimAt).toBe(3002 + takeoverGuardMs(timing));
    expect(types(effects)).toContain('probe-start');
    expect(types(effects)).not.toContain('add-vip');
    const reasons = effects.flatMap((e) => (e.type === 'transition' ? [e.reason] : []));
    expect(reasons).toEqual(['vacant-best', 'elected-guarded']);
  });

  it('waits out the takeover guard after an unclean vacancy, probing the wire from the start', () => {
    const { state, effects } = elected(false);
    expect(state.role).toBe('leader');
    expect(types(effects)).not.toContain('add-vip');
    expect(types(effects)).toContain('probe-start');
    const guard = takeoverGuardMs(timing);
    expect(state.claimAt).toBe(2 + guard);
    expect(effects).toContainEqual({ type: 'arm-timer', at: 2 + guard });
    // The guard ends with nobody answering; the last ack is old, so a keepalive is requested first.
    const t = run([{ type: 'tick', now: 2 + guard }], config, state);
    expect(types(t.effects)).toEqual(['keepalive-now']);
    const acked = run(
      [{ type: 'session-acked', now: 3 + guard, leaseId: 'L1', sentAt: 2 + guard }],
      config,
      t.state,
    );
    expect(types(acked.effects)).toEqual(['probe-stop', 'add-vip', 'announce']);
  });

  it('keeps waiting past the guard while somebody still answers for the VIP on the wire', () => {
    const { state } = elected(false);
    const guard = takeoverGuardMs(timing);
    // A stale copy (a frozen node's kernel, a lifetime the kernel has not yet expired) answers our probes.
    const answered = run(
      [
        { type: 'wire-answered', now: 100 },
        { type: 'wire-answered', now: 2 + guard - 10 },
        { type: 'session-acked', now: 2 + guard, leaseId: 'L1', sentAt: 2 + guard - 1 },
      ],
      config,
      state,
    );
    expect(types(answered.effects)).not.toContain('add-vip');
    const quietAt = 2 + guard - 10 + PROBE_QUIET_MS;
    expect(answered.effects).toContainEqual({ type: 'arm-timer', at: quietAt });
    const still = run([{ type: 'tick', now: quietAt - 1 }], config, answered.state);
    expect(types(still.effects)).not.toContain('add-vip');
    const quiet = run(
      [
        { type: 'tick', now: quietAt },
        { type: 'session-acked', now: quietAt + 1, leaseId: 'L1', sentAt: quietAt },
      ],
      config,
      still.state,
    );
    expect(types(quiet.effects)).toContain('add-vip');
  });

  it('claims at the cap (guard + two lifetimes) even if the wire never goes quiet', () => {
    const { state } = elected(false);
    const cap = 2 + takeoverGuardMs(timing) + WIRE_CAP_LIFETIMES * kernelLifetimeSec(timing) * 1000;
    const events: GroupEvent[] = [];
    for (let t = 25; t < cap; t += 25) {
      events.push({ type: 'wire-answered', now: t });
      events.push({ type: 'session-acked', now: t, leaseId: 'L1', sentAt: t - 1 });
    }
    const waiting = run(events, config, state);
    expect(waiting.state.role).toBe('leader');
    expect(waiting.state.vipHeld).toBe(false);
    const atCap = run(
      [{ type: 'session-acked', now: cap, leaseId: 'L1', sentAt: cap - 1 }],
      config,
      waiting.state,
    );
    expect(types(atCap.effects)).toContain('add-vip');
  });

  it('without a way to probe, waits until the cap', () => {
    const { state } = elected(false);
    const cap = 2 + takeoverGuardMs(timing) + WIRE_CAP_LIFETIMES * kernelLifetimeSec(timing) * 1000;
    const failed = run(
      [
        { type: 'probe-failed', now: 3 },
        { type: 'session-acked', now: 500, leaseId: 'L1', sentAt: 499 },
      ],
      config,
      state,
    );
    expect(types(failed.effects)).not.toContain('add-vip');
    expect(failed.effects).toContainEqual({ type: 'arm-timer', at: cap });
    const r = run(
      [{ type: 'session-acked', now: cap, leaseId: 'L1', sentAt: cap - 1 }],
      config,
      failed.state,
    );
    expect(types(r.effects)).toContain('add-vip');
  });

  it("waits the previous holder's guard and lifetime when they are longer than its own (mixed TTLs)", () => {
    const { state } = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing: defaultTiming(2000), sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 10, leader: null },
      {
        type: 'campaign-result',
        now: 12,
        won: true,
        epoch: 8,
        vacancy: { clean: false, guardMs: 900, lifetimeMs: 5000 },
      },
    ]);
    // Our own guard is 125 ms; the old holder (other settings) said its VIP may outlive its lease by 900 ms.
    expect(takeoverGuardMs(defaultTiming(2000))).toBe(125);
    expect(state.claimAt).toBe(12 + 900);
    expect(state.wire?.capAt).toBe(12 + 900 + WIRE_CAP_LIFETIMES * 5000);
  });

  it('a netlink reply after the ack window fences at once: VIP removed, lease kept for a prompt ack', () => {
    const { state } = elected(true);
    const r = run([{ type: 'vip-late', now: 130 }], config, state);
    expect(r.state.role).toBe('leader');
    expect(r.state.vipHeld).toBe(false);
    expect(types(r.effects)).toEqual(['remove-vip', 'keepalive-now', 'transition']);
    expect(r.effects).toContainEqual(expect.objectContaining({ type: 'transition', reason: 'fenced' }));
    expect(r.state.fencedAt).toBe(130);
    expect(types(r.effects)).not.toContain('resign');
  });

  it('hands the group over when acks stay too slow to add the VIP with (a leader with no VIP anywhere)', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
      { type: 'campaign-result', now: 200, won: true, epoch: 9, vacancy: CLEAN },
    ]);
    expect(base.state.vipHeld).toBe(false);
    let state = base.state;
    let effects: Effect[] = [];
    // Every round trip takes 200 ms, above the 125 ms ack window.
    for (let i = 1; i <= MAX_SLOW_ACKS; i++) {
      const r = run(
        [{ type: 'session-acked', now: 200 + i * 250, leaseId: 'L1', sentAt: i * 250 }],
        config,
        state,
      );
      state = r.state;
      effects = r.effects;
      expect(types(effects)).not.toContain('add-vip');
      if (i < MAX_SLOW_ACKS) expect(state.role).toBe('leader');
    }
    expect(state.role).toBe('follower');
    expect(effects).toContainEqual(expect.objectContaining({ type: 'transition', reason: 'slow-acks' }));
    const t = types(effects);
    expect(t.indexOf('remove-vip')).toBeLessThan(t.indexOf('resign'));
    // Whether it stands again is its node's rule (not a candidate while acks are slow: node.test.ts); the
    // machine adds no pause of its own that could outlast it.
    expect(state.campaignRetryAt).toBe(0);
  });

  it('a prompt ack in between resets the count of slow ones', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
      { type: 'campaign-result', now: 200, won: true, epoch: 9, vacancy: CLEAN },
      { type: 'session-acked', now: 450, leaseId: 'L1', sentAt: 250 },
      { type: 'session-acked', now: 700, leaseId: 'L1', sentAt: 500 },
    ]);
    expect(base.state.slowAcks).toBe(2);
    const prompt = run([{ type: 'session-acked', now: 760, leaseId: 'L1', sentAt: 750 }], config, base.state);
    expect(types(prompt.effects)).toContain('add-vip');
    expect(prompt.state.slowAcks).toBe(0);
  });

  it('a node that is not a candidate never campaigns, not even after the vacancy fallback', () => {
    const notCandidate: GroupConfig = { ...config, self: { ...me, candidate: false } };
    const r = run(
      [
        { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
        { type: 'members-observed', now: 0, members: [{ ...me, candidate: false }] },
        { type: 'leader-observed', now: 0, leader: null },
        { type: 'tick', now: 10_000 },
      ],
      notCandidate,
    );
    expect(types(r.effects)).not.toContain('campaign');
  });

  it('a member that is not a candidate is neither the best candidate nor a preempting challenger', () => {
    const stale: Candidate = {
      node: 'lb0',
      priority: 250,
      preempt: true,
      preemptDelayMs: 0,
      candidate: false,
    };
    const first = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me, stale] },
      { type: 'leader-observed', now: 0, leader: null },
    ]);
    // lb0 has the higher priority but cannot be elected: lb1 campaigns at once instead of waiting the fallback.
    expect(first.state.role).toBe('campaigning');
    const { state } = elected(true);
    const kept = run(
      [
        { type: 'members-observed', now: 100, members: [me, stale] },
        { type: 'session-acked', now: 200, leaseId: 'L1', sentAt: 199 },
      ],
      config,
      state,
    );
    expect(kept.state.role).toBe('leader');
  });

  it('backs off longer after each lost campaign, up to the TTL (no hot loop against a held group)', () => {
    let state = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
    ]).state;
    const pauses: number[] = [];
    let now = 0;
    for (let i = 0; i < 5; i++) {
      expect(state.role).toBe('campaigning');
      now += 5;
      const lost = run([{ type: 'campaign-result', now, won: false }], config, state);
      pauses.push(lost.state.campaignRetryAt - now);
      now = lost.state.campaignRetryAt;
      state = run([{ type: 'tick', now }], config, lost.state).state;
    }
    expect(pauses).toEqual([
      CAMPAIGN_RETRY_MS,
      2 * CAMPAIGN_RETRY_MS,
      4 * CAMPAIGN_RETRY_MS,
      timing.ttlMs,
      timing.ttlMs,
    ]);
  });

  it('waits for the campaign reply when its own key shows up in the watch first, and adopts it if the reply is lost', () => {
    const campaigning = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
      { type: 'leader-observed', now: 3, leader: { node: 'lb1', epoch: 9, leaseId: 'L1' }, revision: 9 },
    ]);
    expect(campaigning.state.role).toBe('campaigning');
    // The reply was lost (timeout after commit): not clean as far as we can know, so guarded and probed.
    const r = run(
      [
        { type: 'session-acked', now: 2000, leaseId: 'L1', sentAt: 1999 },
        { type: 'campaign-result', now: 2003, won: false },
      ],
      config,
      campaigning.state,
    );
    expect(r.state.role).toBe('leader');
    expect(r.state.epoch).toBe(9);
    const reasons = r.effects.flatMap((e) => (e.type === 'transition' ? [e.reason] : []));
    expect(reasons).toEqual(['lost-race', 'adopted']);
    expect(types(r.effects)).toContain('probe-start');
  });

  it('adopts its own leader key when the campaign reply was lost, but never one of an older lease', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
      { type: 'campaign-result', now: 5, won: false }, // the txn committed, its reply timed out
    ]);
    expect(base.state.role).toBe('follower'); // and not campaigning again at once
    expect(base.effects).toContainEqual({ type: 'arm-timer', at: 5 + 200 });
    const ours = run(
      [{ type: 'leader-observed', now: 6, leader: { node: 'lb1', epoch: 9, leaseId: 'L1' } }],
      config,
      base.state,
    );
    expect(ours.state.role).toBe('leader');
    expect(ours.state.epoch).toBe(9);
    const stale = run(
      [{ type: 'leader-observed', now: 6, leader: { node: 'lb1', epoch: 9, leaseId: 'L0' } }],
      config,
      base.state,
    );
    expect(stale.state.role).toBe('follower');
  });

  it('never adopts back the key of an epoch it is resigning (preempted, resign still in flight)', () => {
    const { state } = elected(true);
    const challenger: Candidate = { node: 'lb9', priority: 200, preempt: true, preemptDelayMs: 0 };
    const pre = run([{ type: 'members-observed', now: 100, members: [me, challenger] }], config, state);
    expect(pre.state.role).toBe('follower');
    // A status write shows our key (epoch 7, our lease) before the resign commits.
    const r = run(
      [{ type: 'leader-observed', now: 101, leader: { node: 'lb1', epoch: 7, leaseId: 'L1' } }],
      config,
      pre.state,
    );
    expect(r.state.role).toBe('follower');
    expect(types(r.effects)).not.toContain('add-vip');
  });

  describe('handing over (docs/design.md, "Handing over")', () => {
    const lb2: Candidate = { node: 'lb2', priority: 90, preempt: true, preemptDelayMs: 0 };
    const lb3: Candidate = { node: 'lb3', priority: 80, preempt: true, preemptDelayMs: 0 };

    it('a clean stop names the best other electable member as the successor; alone, or unclean, names none', () => {
      const { state } = elected(true);
      const others = run([{ type: 'members-observed', now: 10, members: [me, lb3, lb2] }], config, state);
      const stop = run([{ type: 'stop', now: 20 }], config, others.state);
      expect(stop.effects).toContainEqual({
        type: 'resign',
        epoch: 7,
        leaseId: 'L1',
        clean: true,
        to: 'lb2',
        why: 'stopping',
      });
      const t = types(stop.effects);
      expect(t.indexOf('remove-vip')).toBeLessThan(t.indexOf('resign'));
      // A member that may not be elected is never named.
      const faulty = run(
        [
          {
            type: 'members-observed',
            now: 10,
            members: [me, { ...lb2, candidate: false }, { ...lb3, priority: 0 }],
          },
        ],
        config,
        state,
      );
      const alone = run([{ type: 'stop', now: 20 }], config, faulty.state);
      expect(alone.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: true });
      // Still waiting out an unclean vacancy: the release vouches for nothing, so nothing is handed over.
      const guarded = elected(false);
      const withOthers = run(
        [{ type: 'members-observed', now: 3, members: [me, lb2] }],
        config,
        guarded.state,
      );
      const early = run([{ type: 'stop', now: 4 }], config, withOthers.state);
      expect(early.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: false });
    });

    it('maintenance (priority 0, flagged): leaves as "maintenance", handing over like a fault', () => {
      const { state } = elected(true);
      const others = run([{ type: 'members-observed', now: 10, members: [me, lb2] }], config, state);
      const cfg: GroupConfig = { ...config, self: { ...me, priority: 0 }, standDown: 'maintenance' };
      const r = run([{ type: 'tick', now: 20 }], cfg, others.state);
      expect(r.state.role).toBe('follower');
      expect(r.effects).toContainEqual(
        expect.objectContaining({ type: 'transition', reason: 'maintenance' }),
      );
      expect(r.effects).toContainEqual({
        type: 'resign',
        epoch: 7,
        leaseId: 'L1',
        clean: true,
        to: 'lb2',
        why: 'maintenance',
      });
      // Without the flag the same priority 0 is a fault.
      const fault = run(
        [{ type: 'tick', now: 20 }],
        { ...config, self: { ...me, priority: 0 } },
        others.state,
      );
      expect(fault.effects).toContainEqual(expect.objectContaining({ type: 'transition', reason: 'fault' }));
    });

    it('a sync-group follower whose leading group is held elsewhere hands over to that holder, not as a fault', () => {
      const { state } = elected(true);
      // lb2 holds the leading group: it stands above every priority for this one.
      const leaderElsewhere = { ...lb2, priority: 255, preempt: true };
      const cfg: GroupConfig = { ...config, self: { ...me, priority: 0 }, standDown: 'sync-group' };
      const r = run(
        [{ type: 'members-observed', now: 10, members: [{ ...me, priority: 0 }, leaderElsewhere] }],
        cfg,
        state,
      );
      expect(r.effects).toContainEqual(expect.objectContaining({ type: 'transition', reason: 'sync-group' }));
      expect(r.effects).toContainEqual({
        type: 'resign',
        epoch: 7,
        leaseId: 'L1',
        clean: true,
        to: 'lb2',
        why: 'sync-group',
      });
      // Nobody else may hold it either: the follower leaves cleanly with no successor named.
      const alone = run([{ type: 'tick', now: 20 }], cfg, state);
      expect(alone.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: true });
      expect(alone.effects).toContainEqual(expect.objectContaining({ type: 'remove-vip' }));
    });

    it('a holder that stands down for a keepalived VRRP Master (hybrid) leaves unclean: the successor checks the wire', () => {
      const { state } = elected(true);
      const cfg: GroupConfig = { ...config, self: { ...me, priority: 0 }, standDown: 'vrrp-master' };
      const r = run(
        [{ type: 'members-observed', now: 10, members: [{ ...me, priority: 0 }, lb2] }],
        cfg,
        state,
      );
      expect(r.effects).toContainEqual(
        expect.objectContaining({ type: 'transition', reason: 'vrrp-master' }),
      );
      expect(r.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: false });
    });

    it('a fenced holder leaves without naming a successor (its lease may be gone)', () => {
      const { state } = elected(true);
      const others = run([{ type: 'members-observed', now: 10, members: [me, lb2] }], config, state);
      const fenced = run(
        [
          { type: 'tick', now: 5000 }, // past the deadline: VIP removed, the key kept for the grace
          { type: 'tick', now: 5000 + fenceGraceMs(timing) + 1 }, // no prompt ack: leave
        ],
        config,
        others.state,
      );
      const resign = fenced.effects.find((e) => e.type === 'resign');
      expect(resign).toBeDefined();
      expect(resign).not.toHaveProperty('to');
    });

    it('the successor finds its own key marked as handed over and claims at once (clean)', () => {
      const follower = run([
        { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
        { type: 'members-observed', now: 0, members: [me, { ...lb2, priority: 200, revision: 3 }] },
        { type: 'leader-observed', now: 0, leader: { node: 'lb2', epoch: 5, leaseId: 'L2' } },
      ]);
      expect(follower.state.role).toBe('follower');
      const handed = run(
        [
          {
            type: 'leader-observed',
            now: 50,
            leader: { node: 'lb1', epoch: 12, leaseId: 'L1', handedOverBy: 'lb2' },
          },
        ],
        config,
        follower.state,
      );
      expect(handed.state.role).toBe('leader');
      expect(handed.state.epoch).toBe(12);
      expect(handed.effects).toContainEqual(
        expect.objectContaining({ type: 'transition', to: 'leader', reason: 'handed-over' }),
      );
      // No guard, no wire probe: the VIP is added at once (the ack sent at 0 still leaves room at 50).
      expect(types(handed.effects)).not.toContain('probe-start');
      expect(types(handed.effects)).toContain('add-vip');
      expect(handed.state.wire).toBeNull();
      const acked = run(
        [{ type: 'session-acked', now: 55, leaseId: 'L1', sentAt: 52 }],
        config,
        handed.state,
      );
      expect(types(acked.effects)).toContain('refresh-vip');
      // lb2 (priority 200, its record older than the handover) is still listed while it stops: not a challenger.
      expect(acked.state.role).toBe('leader');
      // A record lb2 writes after the handover (it came back) preempts as usual.
      const back = run(
        [{ type: 'members-observed', now: 60, members: [me, { ...lb2, priority: 200, revision: 13 }] }],
        config,
        acked.state,
      );
      expect(back.state.role).toBe('follower');
      expect(back.effects).toContainEqual(
        expect.objectContaining({ type: 'transition', reason: 'preempted' }),
      );
    });

    it('a holder that handed over because it was preempted is a challenger again; one that stopped is not', () => {
      // We stood at 255 (a move to us) and lb2 (120, its record older than the handover) handed us the group. The
      // move ends: we stand at 100 again. A preempted hander takes the group back; a stopping one is left alone.
      const moved: GroupConfig = { ...config, self: { ...me, priority: 255 } };
      for (const [reason, role] of [
        ['preempted', 'follower'],
        ['stopping', 'leader'],
      ] as const) {
        const before = run(
          [
            { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
            { type: 'members-observed', now: 0, members: [me, { ...lb2, priority: 120, revision: 3 }] },
            {
              type: 'leader-observed',
              now: 10,
              leader: { node: 'lb1', epoch: 12, leaseId: 'L1', handedOverBy: 'lb2', handoverReason: reason },
            },
          ],
          moved,
        );
        expect(before.state.role).toBe('leader');
        const after = run([{ type: 'tick', now: 20 }], config, before.state);
        expect(after.state.role, reason).toBe(role);
        if (role === 'follower')
          expect(after.effects).toContainEqual(
            expect.objectContaining({
              type: 'transition',
              reason: 'preempted',
              detail: 'by lb2 (priority 120)',
            }),
          );
      }
    });

    it('a key of ours without the mark is still adopted as unclean; a mark naming ourselves is no handover', () => {
      const base = run([
        { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
        { type: 'members-observed', now: 0, members: [me] },
        { type: 'leader-observed', now: 0, leader: { node: 'lb2', epoch: 5, leaseId: 'L2' } },
      ]);
      const self = run(
        [
          {
            type: 'leader-observed',
            now: 5,
            leader: { node: 'lb1', epoch: 9, leaseId: 'L1', handedOverBy: 'lb1' },
          },
        ],
        config,
        base.state,
      );
      expect(self.effects).toContainEqual(
        expect.objectContaining({ type: 'transition', to: 'leader', reason: 'adopted' }),
      );
      expect(types(self.effects)).toContain('probe-start');
    });
  });

  it('ignores a campaign win under a lease that is no longer its session', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
      // A new lease replaces the one the campaign ran under (no 'lost' in between).
      { type: 'session-up', now: 2, leaseId: 'L2', timing, sentAt: 2 },
    ]);
    expect(base.state.role).toBe('campaigning');
    const r = run(
      [{ type: 'campaign-result', now: 3, won: true, epoch: 9, leaseId: 'L1' }],
      config,
      base.state,
    );
    expect(r.state.role).not.toBe('leader');
    expect(types(r.effects)).not.toContain('add-vip');
  });

  it('ignores a view older than its own win (two groups campaigning at once)', () => {
    // Regression (lab, two groups): our txn reply (epoch 7) came before the watch event for it; a view at
    // revision 6 then "showed" our key missing and the group dropped a leadership it had just won.
    const { state } = elected(true);
    const stale = run([{ type: 'leader-observed', now: 3, leader: null, revision: 6 }], config, state);
    expect(stale.state.role).toBe('leader');
    const fresh = run([{ type: 'leader-observed', now: 3, leader: null, revision: 8 }], config, state);
    expect(fresh.state.role).not.toBe('leader');
    // ...and it resigns the epoch anyway (a no-op if the key is gone), so a surviving key cannot block the group.
    expect(fresh.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: true });
  });

  it('a new lease ends a leadership won under the old one (VIP removed first)', () => {
    const { state } = elected(true);
    const r = run([{ type: 'session-up', now: 50, leaseId: 'L2', timing, sentAt: 50 }], config, state);
    expect(r.state.role).not.toBe('leader');
    expect(types(r.effects)[0]).toBe('remove-vip');
  });

  it('adds the VIP only with room left in the ack window for the reply; otherwise gets a fresh ack first', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
    ]);
    // Won 100 ms after the last ack's send: inside the 125 ms window, but with 25 ms < HOST_CHANGE_MIN_LEFT_MS left.
    const late = timing.ackWindowMs - HOST_CHANGE_MIN_LEFT_MS + 25;
    const won = run(
      [{ type: 'campaign-result', now: late, won: true, epoch: 9, vacancy: CLEAN }],
      config,
      base.state,
    );
    expect(types(won.effects)).toContain('keepalive-now');
    expect(types(won.effects)).not.toContain('add-vip');
    // The fresh ack leaves the whole window: the add goes out with it.
    const acked = run(
      [{ type: 'session-acked', now: late + 3, leaseId: 'L1', sentAt: late + 1 }],
      config,
      won.state,
    );
    expect(acked.effects).toContainEqual({
      type: 'add-vip',
      epoch: 9,
      lifetimeSec: 1,
      notAfter: late + 1 + timing.ackWindowMs,
    });
  });

  it('does not refresh from an ack that leaves too little of its window for the reply', () => {
    const { state } = elected(true);
    const rtt = timing.ackWindowMs - HOST_CHANGE_MIN_LEFT_MS + 1;
    const r = run([{ type: 'session-acked', now: 250 + rtt, leaseId: 'L1', sentAt: 250 }], config, state);
    expect(types(r.effects)).not.toContain('refresh-vip');
  });

  it('a leader that leaves before the wire went quiet after an unclean vacancy resigns unclean', () => {
    const { state } = elected(false);
    expect(state.wire).not.toBeNull();
    const stopped = run([{ type: 'stop', now: 50 }], config, state);
    expect(stopped.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: false });
    // Once it claimed (the wire was quiet), its own release vouches for the VIP being gone.
    const claimed = run(
      [
        { type: 'tick', now: takeoverGuardMs(timing) + PROBE_QUIET_MS + 1 },
        {
          type: 'session-acked',
          now: takeoverGuardMs(timing) + PROBE_QUIET_MS + 3,
          leaseId: 'L1',
          sentAt: takeoverGuardMs(timing) + PROBE_QUIET_MS + 2,
        },
      ],
      config,
      state,
    );
    expect(claimed.state.vipHeld).toBe(true);
    const after = run([{ type: 'stop', now: 600 }], config, claimed.state);
    expect(after.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: true });
  });

  it('refreshes the kernel lifetime only from prompt acks', () => {
    const { state } = elected(true);
    const prompt = run([{ type: 'session-acked', now: 251, leaseId: 'L1', sentAt: 250 }], config, state);
    expect(types(prompt.effects)).toContain('refresh-vip');
    const slow = run([{ type: 'session-acked', now: 700, leaseId: 'L1', sentAt: 500 }], config, prompt.state);
    expect(types(slow.effects)).not.toContain('refresh-vip');
    // ...but a slow ack still extends the fencing deadline.
    expect(slow.effects).toContainEqual({ type: 'arm-timer', at: fenceDeadline(timing, 500) });
  });

  it('fences itself at its own deadline with no word from etcd: VIP removed, key and lease kept', () => {
    const { state } = elected(true);
    const deadline = fenceDeadline(timing, 0);
    const before = run([{ type: 'tick', now: deadline - 1 }], config, state);
    expect(before.state.role).toBe('leader');
    expect(before.state.vipHeld).toBe(true);
    const at = run([{ type: 'tick', now: deadline }], config, state);
    expect(at.state.role).toBe('leader');
    expect(at.state.vipHeld).toBe(false);
    expect(at.state.session).not.toBeNull();
    expect(types(at.effects).slice(0, 3)).toEqual(['remove-vip', 'keepalive-now', 'transition']);
    expect(types(at.effects)).not.toContain('resign');
    // It resigns at the end of the grace unless a prompt ack came.
    expect(at.effects).toContainEqual({ type: 'arm-timer', at: deadline + fenceGraceMs(timing) });
  });

  it('a prompt ack within the fence grace puts the VIP back (the lease was alive: an etcd leader election)', () => {
    const { state } = elected(true);
    const deadline = fenceDeadline(timing, 0);
    const fenced = run([{ type: 'tick', now: deadline }], config, state);
    // The stalled keepalives are answered late (slow): nothing is added on those.
    const stale = run(
      [{ type: 'session-acked', now: deadline + 100, leaseId: 'L1', sentAt: 750 }],
      config,
      fenced.state,
    );
    expect(types(stale.effects)).not.toContain('add-vip');
    expect(stale.state.role).toBe('leader');
    const back = run(
      [{ type: 'session-acked', now: deadline + 203, leaseId: 'L1', sentAt: deadline + 200 }],
      config,
      stale.state,
    );
    expect(back.effects).toContainEqual({
      type: 'add-vip',
      epoch: 7,
      lifetimeSec: 1,
      notAfter: deadline + 200 + timing.ackWindowMs,
    });
    expect(back.state.vipHeld).toBe(true);
    expect(back.state.fencedAt).toBeNull();
    expect(types(back.effects)).not.toContain('resign');
  });

  it('no prompt ack within the fence grace: hands the group over (resign, clean: the VIP went first)', () => {
    const { state } = elected(true);
    const deadline = fenceDeadline(timing, 0);
    const fenced = run([{ type: 'tick', now: deadline }], config, state);
    const end = deadline + fenceGraceMs(timing);
    const early = run([{ type: 'tick', now: end - 1 }], config, fenced.state);
    expect(early.state.role).toBe('leader');
    const over = run([{ type: 'tick', now: end }], config, fenced.state);
    expect(over.state.role).toBe('follower');
    expect(over.effects).toContainEqual({ type: 'resign', epoch: 7, leaseId: 'L1', clean: true });
    expect(over.effects).toContainEqual(expect.objectContaining({ type: 'transition', reason: 'fenced' }));
  });

  it('a second fence in the same epoch hands over at once: a holder does not flap its VIP', () => {
    const { state } = elected(true);
    const deadline = fenceDeadline(timing, 0);
    const back = run(
      [
        { type: 'tick', now: deadline },
        { type: 'session-acked', now: deadline + 3, leaseId: 'L1', sentAt: deadline + 1 },
      ],
      config,
      state,
    );
    expect(back.state.vipHeld).toBe(true);
    const again = run([{ type: 'tick', now: fenceDeadline(timing, deadline + 1) }], config, back.state);
    expect(again.state.role).toBe('follower');
    const t = types(again.effects);
    expect(t.indexOf('remove-vip')).toBeLessThan(t.indexOf('resign'));
    // A new epoch starts with a clean slate: one fence there keeps its lease again.
    expect(fenceRepeatMs(timing)).toBeGreaterThan(fenceDeadline(timing, deadline + 1) - deadline);
  });

  it('after a freeze, a late ack cannot revive the VIP: the deadline is checked first', () => {
    const { state } = elected(true);
    // Frozen for 2 s; the first thing it processes is an ack of a keepalive sent before the freeze.
    const r = run([{ type: 'session-acked', now: 2000, leaseId: 'L1', sentAt: 100 }], config, state);
    expect(types(r.effects)[0]).toBe('remove-vip');
    expect(types(r.effects)).not.toContain('refresh-vip');
    expect(types(r.effects)).not.toContain('add-vip');
    expect(r.state.vipHeld).toBe(false);
  });

  it('hands over to a preempting higher-priority member after its delay: VIP first, then resign', () => {
    const { state } = elected(true);
    const challenger: Candidate = { node: 'lb9', priority: 200, preempt: true, preemptDelayMs: 300 };
    const seen = run([{ type: 'members-observed', now: 100, members: [me, challenger] }], config, state);
    expect(seen.state.role).toBe('leader');
    expect(seen.effects).toContainEqual({ type: 'arm-timer', at: 400 });
    const due = run([{ type: 'session-acked', now: 401, leaseId: 'L1', sentAt: 400 }], config, seen.state);
    expect(due.state.role).toBe('follower');
    const t = types(due.effects);
    expect(t.indexOf('remove-vip')).toBeLessThan(t.indexOf('resign'));
    // Handed straight to the challenger, in the same transaction as the resign.
    expect(due.effects).toContainEqual({
      type: 'resign',
      epoch: 7,
      leaseId: 'L1',
      clean: true,
      to: 'lb9',
      why: 'preempted',
    });
  });

  it('keeps the group when the higher-priority member does not preempt', () => {
    const { state } = elected(true);
    const challenger: Candidate = { node: 'lb9', priority: 200, preempt: false, preemptDelayMs: 0 };
    const r = run(
      [
        { type: 'members-observed', now: 100, members: [me, challenger] },
        { type: 'session-acked', now: 501, leaseId: 'L1', sentAt: 500 },
      ],
      config,
      state,
    );
    expect(r.state.role).toBe('leader');
  });

  it('gives up the VIP when the leader key is no longer ours', () => {
    const { state } = elected(true);
    const r = run(
      [{ type: 'leader-observed', now: 50, leader: { node: 'lb2', epoch: 12, leaseId: 'L2' } }],
      config,
      state,
    );
    expect(r.state.role).toBe('follower');
    expect(types(r.effects)[0]).toBe('remove-vip');
  });

  it('on stop: removes the VIP before releasing leadership', () => {
    const { state } = elected(true);
    const r = run([{ type: 'stop', now: 100 }], config, state);
    expect(r.state.role).toBe('stopped');
    const t = types(r.effects);
    expect(t.slice(0, 2)).toEqual(['remove-vip', 'resign']);
  });

  it('puts the VIP back when it vanished behind its back', () => {
    const { state } = elected(true);
    const r = run(
      [
        { type: 'vip-missing', now: 300 },
        { type: 'session-acked', now: 301, leaseId: 'L1', sentAt: 300 },
      ],
      config,
      state,
    );
    expect(types(r.effects)).toContain('add-vip');
    expect(types(r.effects)).toContain('announce');
  });

  it('a faulted node (priority 0) hands the group over cleanly and never campaigns', () => {
    const { state } = elected(true);
    const faulted: GroupConfig = { ...config, self: { ...me, priority: 0 } };
    const r = run([{ type: 'tick', now: 100 }], faulted, state);
    expect(r.state.role).toBe('follower');
    expect(types(r.effects).slice(0, 2)).toEqual(['remove-vip', 'resign']);
    const vacant = run(
      [
        { type: 'leader-observed', now: 120, leader: null },
        { type: 'tick', now: 5000 },
      ],
      faulted,
      r.state,
    );
    expect(types(vacant.effects)).not.toContain('campaign');
  });
});

describe('--etcd-outage hold (docs/design.md, "Riding out etcd outages")', () => {
  const held: GroupConfig = { ...config, holdMaxMs: 60_000 };
  /** Leader at epoch 7 holding the VIP since t=2, its last keepalive sent at 0 and acked at 1. */
  const holding = () => {
    const r = run(
      [
        { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
        { type: 'members-observed', now: 0, members: [me] },
        { type: 'leader-observed', now: 0, leader: null },
        { type: 'campaign-result', now: 1, won: true, epoch: 7, vacancy: CLEAN },
      ],
      held,
    );
    expect(r.state.vipHeld).toBe(true);
    return r.state;
  };
  const leaseDeadline = fenceDeadline(timing, 0);

  it('promises move the deadline past the lease, and keep the kernel lifetime fresh meanwhile', () => {
    const r = run(
      [
        { type: 'hold', now: 600, until: 1800 },
        { type: 'tick', now: leaseDeadline + 1 },
        { type: 'hold', now: 1500, until: 2600 },
        { type: 'tick', now: 2500 },
      ],
      held,
      holding(),
    );
    expect(r.state.vipHeld).toBe(true);
    expect(r.state.fencedAt).toBeNull();
    const refreshes = r.effects.filter((e) => e.type === 'refresh-vip');
    // One per promise renewal that came a quarter lifetime after the last: the address never outlives the lifetime.
    expect(refreshes).toEqual([
      { type: 'refresh-vip', lifetimeSec: 1, notAfter: 600 + timing.ackWindowMs },
      { type: 'refresh-vip', lifetimeSec: 1, notAfter: 1500 + timing.ackWindowMs },
    ]);
    expect(types(r.effects)).not.toContain('remove-vip');
  });

  it('fences when the promises run out, exactly as at a lease deadline', () => {
    const r = run(
      [
        { type: 'hold', now: 600, until: 1800 },
        { type: 'tick', now: 1800 },
      ],
      held,
      holding(),
    );
    expect(r.state.vipHeld).toBe(false);
    expect(r.state.fencedAt).toBe(1800);
    expect(types(r.effects)).toContain('remove-vip');
  });

  it('a missing promise (until null) leaves the lease deadline', () => {
    const r = run(
      [
        { type: 'hold', now: 600, until: null },
        { type: 'tick', now: leaseDeadline },
      ],
      held,
      holding(),
    );
    expect(r.state.fencedAt).toBe(leaseDeadline);
  });

  it('never more than holdMaxMs past the lease deadline, whatever the promises say', () => {
    const short: GroupConfig = { ...config, holdMaxMs: 1000 };
    const r = run(
      [
        { type: 'hold', now: 600, until: 100_000 },
        { type: 'tick', now: leaseDeadline + 999 },
      ],
      short,
      holding(),
    );
    expect(r.state.vipHeld).toBe(true);
    const after = run([{ type: 'tick', now: leaseDeadline + 1000 }], short, r.state);
    expect(after.state.fencedAt).toBe(leaseDeadline + 1000);
  });

  it('fenced for a missing promise, it takes the VIP back once every member has promised (within the grace)', () => {
    const fenced = run(
      [
        { type: 'hold', now: 600, until: null },
        { type: 'tick', now: leaseDeadline },
      ],
      held,
      holding(),
    );
    expect(fenced.state.vipHeld).toBe(false);
    const back = run(
      [{ type: 'hold', now: leaseDeadline + 200, until: leaseDeadline + 1200 }],
      held,
      fenced.state,
    );
    expect(back.state.vipHeld).toBe(true);
    expect(back.state.fencedAt).toBeNull();
    expect(back.effects.filter((e) => e.type === 'add-vip')).toEqual([
      { type: 'add-vip', epoch: 7, lifetimeSec: 1, notAfter: leaseDeadline + 200 + timing.ackWindowMs },
    ]);
    // Too late: the grace is over and the group was handed over; promises bring nothing back.
    const late = run(
      [
        { type: 'tick', now: leaseDeadline + fenceGraceMs(timing) },
        { type: 'hold', now: leaseDeadline + fenceGraceMs(timing) + 1, until: leaseDeadline + 5000 },
      ],
      held,
      fenced.state,
    );
    expect(late.state.role).toBe('follower');
    expect(late.effects.filter((e) => e.type === 'add-vip')).toEqual([]);
  });

  it('promises never let a leader skip its guard or a wire that still answers, fenced or not', () => {
    // Won after an unclean vacancy: waiting for the guard and a quiet wire; somebody still answers.
    const waiting = run(
      [
        { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
        { type: 'members-observed', now: 0, members: [me] },
        { type: 'leader-observed', now: 0, leader: null },
        { type: 'campaign-result', now: 2, won: true, epoch: 7, vacancy: UNCLEAN },
        { type: 'wire-answered', now: 300 },
        { type: 'tick', now: leaseDeadline },
      ],
      held,
    );
    expect(waiting.state.fencedAt).toBe(leaseDeadline);
    const r = run(
      [{ type: 'hold', now: leaseDeadline + 100, until: leaseDeadline + 1000 }],
      held,
      waiting.state,
    );
    expect(r.effects.filter((e) => e.type === 'add-vip')).toEqual([]);
    expect(r.state.vipHeld).toBe(false);
  });

  it('fence mode (no holdMaxMs) ignores promises', () => {
    const r = run(
      [
        { type: 'hold', now: 600, until: 100_000 },
        { type: 'tick', now: leaseDeadline },
      ],
      config,
      holding(),
    );
    expect(r.state.fencedAt).toBe(leaseDeadline);
    expect(r.effects.filter((e) => e.type === 'refresh-vip')).toEqual([]);
  });

  it('a follower bound by a promise does not campaign for a vacant group until released', () => {
    const bound = run(
      [
        { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
        { type: 'members-observed', now: 0, members: [me] },
        { type: 'promise', now: 0, bound: true },
        { type: 'leader-observed', now: 10, leader: null },
        { type: 'tick', now: 5000 },
      ],
      held,
    );
    expect(types(bound.effects)).not.toContain('campaign');
    const released = run([{ type: 'promise', now: 5001, bound: false }], held, bound.state);
    expect(types(released.effects)).toContain('campaign');
  });

  it('after an unclean vacancy a successor keeps probing for as long as the previous holder could hold', () => {
    const s = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null },
      {
        type: 'campaign-result',
        now: 2,
        won: true,
        epoch: 7,
        vacancy: { clean: false, guardMs: undefined, lifetimeMs: undefined, holdMaxMs: 300_000 },
      },
    ]).state;
    const guard = takeoverGuardMs(timing);
    expect(s.wire?.capAt).toBe(2 + guard + WIRE_CAP_LIFETIMES * 1000 + 300_000);
  });
});
