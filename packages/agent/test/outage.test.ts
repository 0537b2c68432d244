/**
 * The promise rules of `--etcd-outage hold` (docs/design.md, "Riding out etcd outages"), pure: a follower's
 * promise (when it starts, what ends it) and the holder's verdict (until when every other member is bound).
 */
import { describe, expect, it } from 'vitest';
import { defaultTiming, initialState, type Candidate, type GroupState } from '@coord/election';
import type { HeardGroup, PeerHeard } from '@coord/peer';
import {
  asksForPromises,
  etcdQuiet,
  etcdQuietMs,
  holdVerdict,
  promiseStep,
  promiseWindowMs,
  type Bound,
} from '../src/outage.js';

const timing = defaultTiming(1000);
const WINDOW = promiseWindowMs(timing, 50);
const member = (node: string): Candidate => ({ node, priority: 100, preempt: true, preemptDelayMs: 0 });

/** b follows a (epoch 9, lease 1); its own last acked keepalive was sent at `ackSentAt`. */
function follower(ackSentAt: number): GroupState {
  return {
    ...initialState(),
    session: { leaseId: '2', timing, lastAckSentAt: ackSentAt, lastAckAt: ackSentAt + 1 },
    leader: { node: 'a', epoch: 9, leaseId: '1' },
    leaderKnown: true,
    members: [member('a'), member('b'), member('c')],
  };
}

function heard(at: number, seq: number, g: Partial<HeardGroup> = {}, leaseId = '1'): PeerHeard {
  const group: HeardGroup = {
    epoch: 9,
    holdsUntil: at + 500,
    asking: true,
    promise: false,
    echoSeq: 0,
    ...g,
  };
  return { node: 'a', leaseId, seq, at, groups: new Map([['g', group]]) };
}

const step = (state: GroupState, bound: Bound | undefined, h: PeerHeard | undefined, now: number) =>
  promiseStep({ self: 'b', group: 'g', state, bound, heard: h, now, windowMs: WINDOW });

describe('a follower’s promise', () => {
  it('is given only when etcd is quiet here too and the holder we last saw in etcd asks', () => {
    const quietAt = etcdQuietMs(timing) + 1;
    expect(etcdQuiet(follower(0), quietAt)).toBe(true);
    expect(etcdQuiet(follower(0), quietAt - 2)).toBe(false);
    // etcd answers us: we refuse.
    expect(step(follower(1000), undefined, heard(1000, 5), 1010).bound).toBeUndefined();
    // Quiet here, the holder asks: bound, echoing its heartbeat.
    const r = step(follower(0), undefined, heard(1000, 5), 1010);
    expect(r).toEqual({ bound: { node: 'a', leaseId: '1', epoch: 9, heardAt: 1000, seq: 5 }, started: true });
    // The holder does not ask, is another incarnation, or leads another epoch than our view says: no promise.
    expect(step(follower(0), undefined, heard(1000, 5, { asking: false }), 1010).bound).toBeUndefined();
    expect(step(follower(0), undefined, heard(1000, 5, {}, '7'), 1010).bound).toBeUndefined();
    expect(step(follower(0), undefined, heard(1000, 5, { epoch: 8 }), 1010).bound).toBeUndefined();
    // Not heard for a window: no promise to a holder that may be gone.
    expect(step(follower(0), undefined, heard(1000, 5), 1000 + WINDOW).bound).toBeUndefined();
    // Only followers promise.
    expect(
      step({ ...follower(0), role: 'campaigning' }, undefined, heard(1000, 5), 1010).bound,
    ).toBeUndefined();
  });

  it('binds until the holder releases, recovers or falls silent — not when etcd comes back here', () => {
    const b: Bound = { node: 'a', leaseId: '1', epoch: 9, heardAt: 1000, seq: 5 };
    // etcd answers us again: still bound (the holder may be relying on our word), echoing newer heartbeats.
    expect(step(follower(2000), b, heard(2000, 25), 2010)).toEqual({
      bound: { ...b, heardAt: 2000, seq: 25 },
      started: false,
    });
    expect(step(follower(0), b, heard(2000, 25, { epoch: 0 }), 2010)).toEqual({
      bound: undefined,
      ended: 'released',
    });
    expect(step(follower(0), b, heard(2000, 25, { asking: false }), 2010)).toEqual({
      bound: undefined,
      ended: 'recovered',
    });
    expect(step(follower(0), b, undefined, 1000 + WINDOW - 1).bound).toEqual(b);
    expect(step(follower(0), b, undefined, 1000 + WINDOW)).toEqual({ bound: undefined, ended: 'silent' });
    // A heartbeat we already counted does not renew the promise.
    expect(step(follower(0), b, heard(1000, 5), 1000 + WINDOW)).toEqual({
      bound: undefined,
      ended: 'silent',
    });
  });

  it('the window outlasts the holder’s kernel lifetime, a late refresh and two heartbeats', () => {
    expect(WINDOW).toBe(1000 + timing.ackWindowMs + 100);
  });
});

describe('the holder’s ask', () => {
  it('asks while it holds, or fenced after having claimed, and only while its etcd is quiet', () => {
    const holder: GroupState = { ...follower(0), role: 'leader', epoch: 9, vipHeld: true, claimAt: 0 };
    expect(asksForPromises(holder, 1000)).toBe(true);
    expect(
      asksForPromises(
        {
          ...holder,
          session: { ...(holder.session as NonNullable<GroupState['session']>), lastAckSentAt: 900 },
        },
        1000,
      ),
    ).toBe(false);
    expect(asksForPromises({ ...holder, vipHeld: false, fencedAt: 950 }, 1000)).toBe(true);
    const waiting = {
      ...holder,
      vipHeld: false,
      fencedAt: 950,
      wire: { startedAt: 0, lastAnswerAt: 10, failed: false, capAt: 5000 },
    };
    expect(asksForPromises(waiting, 1000)).toBe(false); // never claimed: nothing to hold
    expect(asksForPromises(follower(0), 1000)).toBe(false);
  });
});

describe('the holder’s verdict', () => {
  const sent = new Map([
    [10, 1000],
    [11, 1050],
    [12, 1100],
  ]);
  const promise = (echoSeq: number, on = true): PeerHeard => ({
    node: 'x',
    leaseId: '1',
    seq: 1,
    at: 0,
    groups: new Map([['g', { epoch: 0, holdsUntil: null, asking: false, promise: on, echoSeq }]]),
  });
  const verdict = (
    heardFrom: Record<string, PeerHeard | undefined>,
    bound = new Map<string, number>(),
    askedFrom = 10,
  ) =>
    holdVerdict({
      self: 'a',
      group: 'g',
      members: [member('a'), member('b'), member('c')],
      askedFrom,
      bound,
      lastHeard: (node) => heardFrom[node],
      sentTime: (seq) => sent.get(seq),
      windowMs: WINDOW,
      marginMs: 100,
    });

  it('holds until the earliest bound: the echoed heartbeat’s send time + window − margin', () => {
    const v = verdict({ b: promise(12), c: promise(11) });
    expect(v.until).toBe(1050 + WINDOW - 100);
    expect(v.by).toBe('c');
    expect(v.missing).toEqual([]);
  });

  it('a member that never promised, or echoes a heartbeat from before we asked, holds nothing', () => {
    expect(verdict({ b: promise(12) })).toMatchObject({ until: null, missing: ['c'] });
    expect(verdict({ b: promise(12), c: promise(12, false) })).toMatchObject({ until: null, missing: ['c'] });
    expect(verdict({ b: promise(12), c: promise(11) }, new Map(), 12)).toMatchObject({
      until: null,
      missing: ['c'],
    });
  });

  it('a member that stops confirming stays bound by its last promise', () => {
    const first = verdict({ b: promise(12), c: promise(12) });
    const later = verdict({ b: promise(12), c: promise(12, false) }, new Map(first.bound));
    expect(later.until).toBe(first.until);
  });

  it('a holder alone never holds: a node it never heard of could join', () => {
    const v = holdVerdict({
      self: 'a',
      group: 'g',
      members: [member('a')],
      askedFrom: 0,
      bound: new Map(),
      lastHeard: () => undefined,
      sentTime: () => 0,
      windowMs: WINDOW,
      marginMs: 100,
    });
    expect(v.until).toBeNull();
  });
});
