import { describe, expect, it } from 'vitest';
import {
  bestCandidate,
  defaultTiming,
  fenceDeadline,
  initialState,
  kernelLifetimeSec,
  step,
  takeoverGuardMs,
  type Candidate,
  type Effect,
  type GroupConfig,
  type GroupEvent,
  type GroupState,
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

/** A node that has a session, sees itself alone and a vacant group, and wins at epoch 7. */
function elected(cleanVacancy: boolean, now = 0) {
  return run([
    { type: 'session-up', now, leaseId: 'L1', timing, sentAt: now },
    { type: 'members-observed', now, members: [me] },
    { type: 'leader-observed', now, leader: null, clean: cleanVacancy },
    { type: 'campaign-result', now: now + 2, won: true, epoch: 7 },
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
    expect(takeoverGuardMs(timing)).toBe(timing.ackWindowMs + 1000 + timing.kernelSlackMs - 1000);
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
      { type: 'leader-observed', now: 0, leader: null, clean: true },
    ]);
    expect(state.role).toBe('campaigning');
    expect(effects).toContainEqual({ type: 'campaign', leaseId: 'L1' });
  });

  it('does not campaign while a better candidate is live, until the vacancy fallback', () => {
    const better = { ...me, node: 'lb0', priority: 200 };
    const first = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me, better] },
      { type: 'leader-observed', now: 0, leader: null, clean: false },
    ]);
    expect(first.state.role).toBe('follower');
    expect(first.effects).toContainEqual({ type: 'arm-timer', at: 1500 });
    const later = run([{ type: 'tick', now: 1500 }], config, first.state);
    expect(later.state.role).toBe('campaigning');
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
      { type: 'leader-observed', now: 0, leader: null, clean: true },
    ]);
    const won = run([{ type: 'campaign-result', now: 200, won: true, epoch: 9 }], config, base.state);
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

  it('a clean vacancy stays clean when later views of it carry no release marker', () => {
    // Regression: the old holder's lease revoke (after its resign) produced a second "vacant" observation that
    // turned the clean handover into a guarded one (+0.3 s on every graceful stop).
    const { state, effects } = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: { node: 'lb2', epoch: 5, leaseId: 'L2' }, clean: false },
      { type: 'leader-observed', now: 10, leader: null, clean: true },
      { type: 'leader-observed', now: 11, leader: null, clean: false },
      { type: 'campaign-result', now: 12, won: true, epoch: 8 },
    ]);
    expect(state.claimAt).toBe(12);
    expect(types(effects)).toContain('campaign');
  });

  it('waits out the takeover guard after an unclean vacancy (the old holder may have crashed)', () => {
    const { state, effects } = elected(false);
    expect(state.role).toBe('leader');
    expect(types(effects)).not.toContain('add-vip');
    const guard = takeoverGuardMs(timing);
    expect(state.claimAt).toBe(2 + guard);
    expect(effects).toContainEqual({ type: 'arm-timer', at: 2 + guard });
    // The guard ends; the last ack is old, so a keepalive is requested first.
    const t = run([{ type: 'tick', now: 2 + guard }], config, state);
    expect(types(t.effects)).toEqual(['keepalive-now']);
    const acked = run(
      [{ type: 'session-acked', now: 3 + guard, leaseId: 'L1', sentAt: 2 + guard }],
      config,
      t.state,
    );
    expect(types(acked.effects)).toEqual(['add-vip', 'announce']);
  });

  it("waits the previous holder's published guard when it is longer than its own (mixed TTLs)", () => {
    const { state } = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing: defaultTiming(2000), sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      {
        type: 'leader-observed',
        now: 0,
        leader: { node: 'lb2', epoch: 5, leaseId: 'L2', guardMs: 900 },
        clean: false,
      },
      { type: 'leader-observed', now: 10, leader: null, clean: false },
      { type: 'campaign-result', now: 12, won: true, epoch: 8 },
    ]);
    // Our own guard is 275 ms; the old holder (other settings) said its VIP may outlive its lease by 900 ms.
    expect(takeoverGuardMs(defaultTiming(2000))).toBe(275);
    expect(state.claimAt).toBe(12 + 900);
  });

  it('adopts its own leader key when the campaign reply was lost, but never one of an older lease', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null, clean: true },
      { type: 'campaign-result', now: 5, won: false }, // the txn committed, its reply timed out
    ]);
    expect(base.state.role).toBe('follower'); // and not campaigning again at once
    expect(base.effects).toContainEqual({ type: 'arm-timer', at: 5 + 200 });
    const ours = run(
      [{ type: 'leader-observed', now: 6, leader: { node: 'lb1', epoch: 9, leaseId: 'L1' }, clean: false }],
      config,
      base.state,
    );
    expect(ours.state.role).toBe('leader');
    expect(ours.state.epoch).toBe(9);
    const stale = run(
      [{ type: 'leader-observed', now: 6, leader: { node: 'lb1', epoch: 9, leaseId: 'L0' }, clean: false }],
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
      [{ type: 'leader-observed', now: 101, leader: { node: 'lb1', epoch: 7, leaseId: 'L1' }, clean: false }],
      config,
      pre.state,
    );
    expect(r.state.role).toBe('follower');
    expect(types(r.effects)).not.toContain('add-vip');
  });

  it('ignores a campaign win under a lease that is no longer its session', () => {
    const base = run([
      { type: 'session-up', now: 0, leaseId: 'L1', timing, sentAt: 0 },
      { type: 'members-observed', now: 0, members: [me] },
      { type: 'leader-observed', now: 0, leader: null, clean: true },
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
    const stale = run(
      [{ type: 'leader-observed', now: 3, leader: null, clean: false, revision: 6 }],
      config,
      state,
    );
    expect(stale.state.role).toBe('leader');
    const fresh = run(
      [{ type: 'leader-observed', now: 3, leader: null, clean: false, revision: 8 }],
      config,
      state,
    );
    expect(fresh.state.role).not.toBe('leader');
    // ...and it resigns the epoch anyway (a no-op if the key is gone), so a surviving key cannot block the group.
    expect(fresh.effects).toContainEqual({ type: 'resign', epoch: 7 });
  });

  it('a new lease ends a leadership won under the old one (VIP removed first)', () => {
    const { state } = elected(true);
    const r = run([{ type: 'session-up', now: 50, leaseId: 'L2', timing, sentAt: 50 }], config, state);
    expect(r.state.role).not.toBe('leader');
    expect(types(r.effects)[0]).toBe('remove-vip');
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

  it('fences itself at its own deadline with no word from etcd, and starts a new session', () => {
    const { state } = elected(true);
    const deadline = fenceDeadline(timing, 0);
    const before = run([{ type: 'tick', now: deadline - 1 }], config, state);
    expect(before.state.role).toBe('leader');
    const at = run([{ type: 'tick', now: deadline }], config, state);
    expect(at.state.role).toBe('follower');
    expect(types(at.effects)).toEqual(['remove-vip', 'transition', 'restart-session']);
    expect(at.state.session).toBeNull();
  });

  it('after a freeze, a late ack cannot revive leadership: the deadline is checked first', () => {
    const { state } = elected(true);
    // Frozen for 2 s; the first thing it processes is an ack of a keepalive sent before the freeze.
    const r = run([{ type: 'session-acked', now: 2000, leaseId: 'L1', sentAt: 100 }], config, state);
    expect(r.state.role).toBe('follower');
    expect(types(r.effects)[0]).toBe('remove-vip');
    expect(types(r.effects)).not.toContain('refresh-vip');
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
    expect(due.effects).toContainEqual({ type: 'resign', epoch: 7 });
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
      [{ type: 'leader-observed', now: 50, leader: { node: 'lb2', epoch: 12, leaseId: 'L2' }, clean: false }],
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
        { type: 'leader-observed', now: 120, leader: null, clean: true },
        { type: 'tick', now: 5000 },
      ],
      faulted,
      r.state,
    );
    expect(types(vacant.effects)).not.toContain('campaign');
  });
});
