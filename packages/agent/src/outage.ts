/**
 * Riding out etcd outages (`coord join --etcd-outage hold`): a holder whose keepalives go unanswered keeps its VIP
 * past its lease deadline only while every other member of the group promises, over the peer channel, that it
 * cannot reach etcd either and will not campaign for the group (docs/design.md, "Riding out etcd outages";
 * Patroni's failsafe mode is the precedent).
 *
 *   holder:   no ack for ETCD_QUIET → every heartbeat says "asking" for each group it leads
 *   follower: no ack for ETCD_QUIET, and the holder it last saw in etcd asks → "promise", echoing the newest of
 *             the holder's heartbeats it heard. Bound from the first promise sent until the holder releases (its
 *             heartbeat no longer names that epoch), recovers (no longer asks), or is silent for the promise window.
 *   holder:   may hold until  min over the other members of  send time of the echoed heartbeat + window − margin
 *             (a follower heard that heartbeat after we sent it, and stays bound a window after it last heard us)
 *
 * Everything here is pure: the node passes what its view of etcd and the peer channel know.
 */
import type { Candidate, GroupState, TimingConfig } from '@coord/election';
import { keepaliveIntervalMs } from '@coord/election';
import type { PeerHeard } from '@coord/peer';

/**
 * No keepalive acknowledged for this long: etcd looks unreachable from here. One keepalive interval plus slack —
 * early enough that promises reach a holder well before its lease deadline (TTL − margin after its last acked send).
 */
export function etcdQuietMs(t: TimingConfig): number {
  return keepaliveIntervalMs(t) + 100;
}

/**
 * How long a follower stays bound after it last heard the holder: longer than the VIP's kernel lifetime plus the
 * latest a refresh may land (its ack window) and two heartbeats, so a holder that dies loses its address on its own
 * before any promise to it ends.
 */
export function promiseWindowMs(t: TimingConfig, heartbeatMs: number): number {
  return t.lifetimeSec * 1000 + t.ackWindowMs + 2 * heartbeatMs;
}

/**
 * Whether this node's etcd session has gone quiet: no keepalive *sent* in the last ETCD_QUIET was acknowledged (no
 * lease at all counts as quiet). By send time, not arrival: when etcd comes back, the first answers can be for
 * keepalives sent long before, which prove nothing about the lease deadline — a holder that stopped asking on
 * such an answer fenced for a moment although a fresh ack was a few milliseconds away.
 */
export function etcdQuiet(state: GroupState, now: number): boolean {
  const s = state.session;
  return s === null || now - s.lastAckSentAt > etcdQuietMs(s.timing);
}

/**
 * Holder: whether this group's heartbeat asks for promises — etcd is quiet here and we hold the VIP, or we fenced
 * and are still in the fence grace with our key kept after having claimed (promises can give the VIP back; a
 * leader still waiting out a guard or an answering wire never asks).
 */
export function asksForPromises(state: GroupState, now: number): boolean {
  const leading = state.role === 'leader' && state.epoch !== null;
  const claimed = state.vipHeld || (state.fencedAt !== null && state.wire === null);
  return leading && claimed && etcdQuiet(state, now);
}

/** A follower's promise to a group's holder. */
export interface Bound {
  readonly node: string;
  readonly leaseId: string;
  readonly epoch: number;
  /** When we last heard the holder (our clock), and its newest sequence number then. */
  readonly heardAt: number;
  readonly seq: number;
}

export type PromiseStep =
  | { readonly bound: Bound; readonly started: boolean }
  | { readonly bound: undefined; readonly ended?: 'released' | 'recovered' | 'silent' };

/**
 * Follower: whether we are bound by a promise to the group's holder after this tick. `heard`: the holder's newest
 * heartbeat under the lease we promised to (or, without a promise, under the lease our view names for it).
 */
export function promiseStep(input: {
  readonly self: string;
  readonly group: string;
  readonly state: GroupState;
  readonly bound: Bound | undefined;
  readonly heard: PeerHeard | undefined;
  readonly now: number;
  readonly windowMs: number;
}): PromiseStep {
  const { bound, heard, now, state } = input;
  if (bound !== undefined) {
    let next = bound;
    if (heard !== undefined && heard.leaseId === bound.leaseId && heard.at > bound.heardAt) {
      const beat = heard.groups.get(input.group);
      if (beat === undefined || beat.epoch !== bound.epoch) return { bound: undefined, ended: 'released' };
      if (!beat.asking) return { bound: undefined, ended: 'recovered' };
      next = { ...bound, heardAt: heard.at, seq: heard.seq };
    }
    if (now - next.heardAt >= input.windowMs) return { bound: undefined, ended: 'silent' };
    return { bound: next, started: false };
  }
  const leader = state.leader;
  if (state.role !== 'follower' || leader === null || leader.node === input.self) return { bound: undefined };
  if (!etcdQuiet(state, now)) return { bound: undefined };
  if (heard === undefined || heard.leaseId !== leader.leaseId || now - heard.at >= input.windowMs)
    return { bound: undefined };
  const beat = heard.groups.get(input.group);
  if (beat === undefined || beat.epoch !== leader.epoch || !beat.asking) return { bound: undefined };
  return {
    bound: {
      node: leader.node,
      leaseId: leader.leaseId,
      epoch: leader.epoch,
      heardAt: heard.at,
      seq: heard.seq,
    },
    started: true,
  };
}

export interface HoldVerdict {
  /** Until when every other member is bound (null: some never promised in this outage, or nobody else is there). */
  readonly until: number | null;
  /** Members with no promise in this outage. */
  readonly missing: readonly string[];
  /** The member whose promise ends first (the one that decides `until`). */
  readonly by: string | undefined;
  /** Per member, the latest time its promises bind it to (carry it to the next call). */
  readonly bound: ReadonlyMap<string, number>;
}

/**
 * Holder: until when every other member's promise holds. A member is bound from the first promise it sent until we
 * release it or fall silent for the promise window, whatever it says later — so a member whose etcd comes back
 * first stops confirming, but its word stands until the bound its last promise gave (`bound`, carried from call to
 * call within one outage). A promise counts only if it echoes one of our heartbeats that asked in this outage (a
 * follower may have ended an earlier promise when we stopped asking).
 */
export function holdVerdict(input: {
  readonly self: string;
  readonly group: string;
  readonly members: readonly Candidate[];
  /** Sequence number of our first heartbeat of this outage that asked for promises. */
  readonly askedFrom: number;
  readonly bound: ReadonlyMap<string, number>;
  readonly lastHeard: (node: string) => PeerHeard | undefined;
  readonly sentTime: (seq: number) => number | undefined;
  readonly windowMs: number;
  readonly marginMs: number;
}): HoldVerdict {
  const others = input.members.filter((m) => m.node !== input.self);
  const bound = new Map<string, number>();
  const missing: string[] = [];
  let until = Infinity;
  let by: string | undefined;
  for (const m of others) {
    const beat = input.lastHeard(m.node)?.groups.get(input.group);
    const sent =
      beat === undefined || !beat.promise || beat.echoSeq < input.askedFrom
        ? undefined
        : input.sentTime(beat.echoSeq);
    const was = input.bound.get(m.node);
    const now = sent === undefined ? was : Math.max(was ?? -Infinity, sent + input.windowMs - input.marginMs);
    if (now === undefined) {
      missing.push(m.node);
      continue;
    }
    bound.set(m.node, now);
    if (now < until) {
      until = now;
      by = m.node;
    }
  }
  if (others.length === 0 || missing.length > 0) return { until: null, missing, by: undefined, bound };
  return { until, missing, by, bound };
}
