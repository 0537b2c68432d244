/**
 * The etcd-mode group machine: a pure function from (config, state, event) to (state, effects).
 *
 *            vacant & best candidate (or vacant too long)      won a clean vacancy: claim at once
 *  FOLLOWER ─────────────────────────────────────► CAMPAIGNING ─────────────────────────────────► LEADER
 *     ▲  ▲                lost the race                 │   won an unclean one: wait out the guard, │  │
 *     │  └──────────────────────────────────────────────┘   then until nobody answers on the wire  │  │
 *     │                     session lost → remove VIP (the lease is gone)                          │  │
 *     ├─────────────────────────────────────────────────────────────────────────────────────────────┘  │
 *     │  preempted, fault, acks too slow to claim, fenced without a prompt ack, or stop →               │
 *     │  remove VIP, then resign                                                                       │
 *     └────────────────────────────────────────────────────────────────────────────────────────────────┘
 *
 *  Leaving cleanly (stop, preempted, fault, maintenance, slow acks) with another electable member: VIP removed, then the key put
 *  under that member's lease in one transaction; the member finds its own key marked "handed over" and claims at
 *  once (FOLLOWER → LEADER, docs/design.md "Handing over").
 *
 *  A leader whose deadline passed (or whose netlink reply came too late) removes its VIP and stays leader for
 *  the fence grace: a prompt ack puts the VIP back, none hands the group over (docs/design.md, "Fencing").
 *
 * The runtime (agent) executes effects in order and feeds results back as events. Time arrives inside events, so
 * tests drive this with a fake clock. Transition reasons are a closed union: hooks and metrics act on them.
 */
import { bestCandidate, electable, preemptingChallenger, type Candidate } from './candidates.js';
import {
  fenceDeadline,
  fenceGraceMs,
  fenceRepeatMs,
  kernelLifetimeSec,
  MAX_SLOW_ACKS,
  HOST_CHANGE_MIN_LEFT_MS,
  ackUsable,
  PROBE_QUIET_MS,
  takeoverGuardMs,
  type TimingConfig,
} from './timing.js';

export type Role = 'follower' | 'campaigning' | 'leader' | 'stopped';

/** Why a group changed role. A closed set: hooks, metrics and tests act on these values, never on log text. */
export type TransitionReason =
  /** follower → campaigning: the group is vacant and this node is the best candidate. */
  | 'vacant-best'
  /** follower → campaigning: the group has been vacant longer than the fallback (the best candidate is silent). */
  | 'vacant-too-long'
  /** campaigning → leader after a clean release: the VIP is added at once. */
  | 'elected'
  /** campaigning → leader after an expiry: the takeover guard and a quiet wire come first. */
  | 'elected-guarded'
  /** follower → leader: our own key under our lease, the campaign's reply was lost. Treated as unclean. */
  | 'adopted'
  /**
   * follower → leader: the previous holder removed its VIP and handed us the group in one transaction (its key
   * put under our lease): clean, the VIP is added at once (docs/design.md, "Handing over").
   */
  | 'handed-over'
  | 'lost-race'
  | 'session-lost'
  | 'session-replaced'
  /**
   * The holder's own deadline passed (or a netlink reply came too late to trust the VIP's lifetime): leader →
   * leader without the VIP while it waits for a prompt ack, leader → follower when none came (or it fenced twice).
   */
  | 'fenced'
  | 'leader-vanished'
  | 'leader-taken'
  | 'preempted'
  /** A tracked check without weight failed: publish priority 0 and hand over. */
  | 'fault'
  /** `coord maintenance on`: publish priority 0, hand over, do not campaign until it is off. */
  | 'maintenance'
  /** The group follows another in a sync group, and that one is held elsewhere now: hand over to its holder. */
  | 'sync-group'
  /** Hybrid mode: a VRRP router that is not a coord node (keepalived) is Master of the group; wait until it steps down. */
  | 'vrrp-master'
  /** etcd acks stayed slower than the ack window: the VIP could not be claimed safely, so hand over. */
  | 'slow-acks'
  | 'stopping';

/** Pause after a lost or failed campaign before trying again; doubles per loss in a row up to the TTL. */
export const CAMPAIGN_RETRY_MS = 200;

export interface GroupConfig {
  readonly group: string;
  readonly self: Candidate;
  /** Campaign even if not the best candidate once the group has been vacant this long (liveness fallback). */
  readonly vacancyFallbackMs: number;
  /**
   * `--etcd-outage hold`: the longest a holder keeps its VIP past its lease deadline on the other members'
   * promises (docs/design.md, "Riding out etcd outages"). Undefined: fence at the deadline (`fence`).
   */
  readonly holdMaxMs?: number;
  /**
   * Why self.priority is 0 when it is not a fault: `coord maintenance on`, a sync group whose leading group this
   * node does not hold (docs/design.md, "Sync groups"), or a keepalived node that is VRRP Master of the group
   * ("Hybrid mode"). Leaving is then for that reason.
   */
  readonly standDown?: 'maintenance' | 'sync-group' | 'vrrp-master';
}

export interface Session {
  readonly leaseId: string;
  readonly timing: TimingConfig;
  /** Send time of the newest acknowledged keepalive (or of the grant). */
  readonly lastAckSentAt: number;
  /** When that acknowledgement arrived. */
  readonly lastAckAt: number;
}

export interface LeaderRecord {
  readonly node: string;
  /** Mod revision of the leader key (when it got this holder): the holder's epoch. */
  readonly epoch: number;
  readonly leaseId: string;
  /** The holder got the group from this node in a handover, after that node's VIP removal succeeded. */
  readonly handedOverBy?: string;
  /** Why that node handed it over (`preempted`, `stopping`, …; absent from older writers). */
  readonly handoverReason?: string;
}

/**
 * How the vacancy a won campaign ended had begun, read in the winning transaction itself (so no view, however
 * stale, can mistake one vacancy for another). Unclean: the previous holder's copy may outlive its lease by its
 * guard, and by at most its lifetime without refreshes; unknown values fall back to our own.
 */
export type VacancyInfo =
  | { readonly clean: true }
  | {
      readonly clean: false;
      readonly guardMs: number | undefined;
      readonly lifetimeMs: number | undefined;
      /** How long the previous holder could hold on promises past its lease (`--etcd-outage hold`; 0: not at all). */
      readonly holdMaxMs?: number | undefined;
    };

/**
 * How many lifetimes past the guard the successor keeps waiting for a quiet wire. The kernel's lifetime worker can
 * put off deleting an expired address by about a second whenever an address changes on the host (measured by the
 * soak, docs/design.md "Kernel"), so a copy can outlive its lifetime by about another lifetime; past that,
 * whatever answers is not a copy of ours.
 */
export const WIRE_CAP_LIFETIMES = 2;

/** Waiting for the wire to go quiet before claiming after an unclean vacancy. */
export interface WireWait {
  readonly startedAt: number;
  /** Last time somebody answered a probe for the VIP (null: nobody yet). */
  readonly lastAnswerAt: number | null;
  /** Probing is impossible here: wait until `capAt`. */
  readonly failed: boolean;
  /** Claim anyway from here on: the guard plus WIRE_CAP_LIFETIMES lifetimes have passed. */
  readonly capAt: number;
}

export interface GroupState {
  readonly role: Role;
  readonly session: Session | null;
  /** The leader key as last observed in etcd (null = vacant). */
  readonly leader: LeaderRecord | null;
  /** False until the leader key has been observed once: nobody campaigns on a guess. */
  readonly leaderKnown: boolean;
  readonly vacantSince: number | null;
  readonly members: readonly Candidate[];
  /** When this node first saw each member with its current priority (for preempt delays). */
  readonly seenSince: Readonly<Record<string, number>>;
  /** Our epoch while campaigning/leading. */
  readonly epoch: number | null;
  /** Leader only: the VIP may be added from this time (takeover guard). */
  readonly claimAt: number | null;
  /** Leader only, after an unclean vacancy: the wire must be quiet before the VIP is added. */
  readonly wire: WireWait | null;
  /** Leader only: the VIP is on our interface (as far as we asked). */
  readonly vipHeld: boolean;
  /** Leader only: a keepalive was requested to get a fresh ack before adding the VIP. */
  readonly freshAckRequested: boolean;
  /** Leader only: acks in a row too slow to add the VIP with (see MAX_SLOW_ACKS). */
  readonly slowAcks: number;
  /** Leader only: fenced at this time and the VIP not back yet (it resigns at fencedAt + the fence grace). */
  readonly fencedAt: number | null;
  /** Leader only: the last fence in this epoch (a second one within fenceRepeatMs hands over at once). */
  readonly lastFenceAt: number | null;
  /** After a lost or failed campaign, not before this (no hot loop while the view lags or etcd is down). */
  readonly campaignRetryAt: number;
  /** Campaigns lost in a row (the retry pause grows with it). */
  readonly lostCampaigns: number;
  /** The last epoch we gave up (resigned, fenced, faulted): its key is never adopted back. */
  readonly droppedEpoch: number | null;
  /**
   * Leader, `--etcd-outage hold`: every other member promised not to campaign until this time (our clock), so the
   * VIP may stay past the lease deadline until then (null: no promises, fence at the deadline).
   */
  readonly holdUntil: number | null;
  /** Leader: when the VIP's kernel lifetime was last refreshed on promises (null: not since the last ack). */
  readonly holdRefreshedAt: number | null;
  /** Follower: we promised the group's holder not to campaign (it rides out an etcd outage on our word). */
  readonly promised: boolean;
}

export type GroupEvent =
  | { type: 'session-up'; now: number; leaseId: string; timing: TimingConfig; sentAt: number }
  | { type: 'session-acked'; now: number; leaseId: string; sentAt: number }
  | { type: 'session-lost'; now: number; reason: string }
  /** `revision`: the etcd revision the observation holds at (a view can lag behind our own transaction). */
  | { type: 'leader-observed'; now: number; leader: LeaderRecord | null; revision?: number }
  | { type: 'members-observed'; now: number; members: readonly Candidate[] }
  | {
      type: 'campaign-result';
      now: number;
      won: boolean;
      epoch?: number;
      leaseId?: string;
      vacancy?: VacancyInfo;
    }
  | { type: 'vip-missing'; now: number }
  /** A netlink add/refresh was answered after its bound: the VIP's lifetime cannot be trusted. */
  | { type: 'vip-late'; now: number }
  /** Somebody answered a probe for our VIP (a stale copy is still on some interface). */
  | { type: 'wire-answered'; now: number }
  /** Probing the wire is impossible here (no packet socket): wait until the cap instead. */
  | { type: 'probe-failed'; now: number }
  /** `--etcd-outage hold`, leader: every other member's promise holds until `until` (null: some are missing). */
  | { type: 'hold'; now: number; until: number | null }
  /** `--etcd-outage hold`, follower: we are bound by a promise to the group's holder (or no longer). */
  | { type: 'promise'; now: number; bound: boolean }
  | { type: 'tick'; now: number }
  | { type: 'stop'; now: number };

export type Effect =
  | { type: 'campaign'; leaseId: string }
  /** Add the VIP with this kernel lifetime; skip it if the clock has passed `notAfter`. */
  | { type: 'add-vip'; epoch: number; lifetimeSec: number; notAfter: number }
  | { type: 'refresh-vip'; lifetimeSec: number; notAfter: number }
  | { type: 'remove-vip'; reason: TransitionReason }
  | { type: 'announce'; epoch: number }
  | { type: 'keepalive-now' }
  /** Delete our leader key (guarded by epoch); clean only if the VIP removal before it succeeded. */
  /**
   * Delete our leader key (guarded by the epoch). `clean`: nothing of ours or of an earlier holder can be left on
   * any interface — false when we won after an unclean vacancy and leave before the wire went quiet (we never
   * checked the previous holder's copy was gone, so our release must not vouch for it). `to` (clean only): the
   * member to hand the group to in the same transaction, if its record allows; else a plain resign.
   */
  | {
      type: 'resign';
      epoch: number;
      leaseId: string | null;
      clean: boolean;
      to?: string;
      /** With `to`: why we leave, written into the handover (the successor's challengers depend on it). */
      why?: TransitionReason;
    }
  /** Start / stop probing the VIP on the wire (RFC 5227 ARP probe, IPv6 DAD NS). */
  | { type: 'probe-start' }
  | { type: 'probe-stop' }
  | { type: 'arm-timer'; at: number }
  | {
      type: 'transition';
      from: Role;
      to: Role;
      reason: TransitionReason;
      /** Human detail for logs (a node name, an error); never acted upon. */
      detail?: string;
      epoch: number | null;
    };

export interface StepResult {
  readonly state: GroupState;
  readonly effects: Effect[];
}

export function initialState(): GroupState {
  return {
    role: 'follower',
    session: null,
    leader: null,
    leaderKnown: false,
    vacantSince: null,
    members: [],
    seenSince: {},
    epoch: null,
    claimAt: null,
    wire: null,
    vipHeld: false,
    freshAckRequested: false,
    slowAcks: 0,
    fencedAt: null,
    lastFenceAt: null,
    campaignRetryAt: 0,
    lostCampaigns: 0,
    droppedEpoch: null,
    holdUntil: null,
    holdRefreshedAt: null,
    promised: false,
  };
}

/** The deadline the session's acks give (−∞ when there is none). */
export function leaseDeadlineOf(state: GroupState): number {
  return state.session === null
    ? -Infinity
    : fenceDeadline(state.session.timing, state.session.lastAckSentAt);
}

/**
 * The holder's effective deadline: its lease's, or — `--etcd-outage hold` — later while every other member's
 * promise holds, but never more than `holdMaxMs` past the lease's (the outage's start: no acks came since).
 */
export function deadlineOf(state: GroupState, holdMaxMs?: number): number {
  const lease = leaseDeadlineOf(state);
  if (holdMaxMs === undefined || state.holdUntil === null || state.session === null) return lease;
  return Math.max(lease, Math.min(state.holdUntil, lease + holdMaxMs));
}

/** Whether the wire lets a claim go ahead now (always, without a wire wait). */
export function wireClear(wire: WireWait | null, now: number): boolean {
  if (wire === null || now >= wire.capAt) return true;
  if (wire.failed) return false;
  return now - Math.max(wire.startedAt, wire.lastAnswerAt ?? -Infinity) >= PROBE_QUIET_MS;
}

/** When {@link wireClear} can next become true (for the timer). */
function wireClearAt(wire: WireWait): number {
  if (wire.failed) return wire.capAt;
  return Math.min(wire.capAt, Math.max(wire.startedAt, wire.lastAnswerAt ?? -Infinity) + PROBE_QUIET_MS);
}

export function step(config: GroupConfig, state: GroupState, event: GroupEvent): StepResult {
  const effects: Effect[] = [];
  if (state.role === 'stopped') return { state, effects };
  let s = apply(config, state, event, effects);
  s = evaluate(config, s, event.now, effects);
  return { state: s, effects };
}

function transition(
  s: GroupState,
  to: Role,
  reason: TransitionReason,
  effects: Effect[],
  patch: Partial<GroupState> = {},
  detail?: string,
): GroupState {
  effects.push({
    type: 'transition',
    from: s.role,
    to,
    reason,
    ...(detail === undefined ? {} : { detail }),
    epoch: patch.epoch === undefined ? s.epoch : patch.epoch,
  });
  return { ...s, ...patch, role: to };
}

/** Reasons to leave a group that we hold and that another member should take over at once. */
const HAND_OVER_ON: ReadonlySet<TransitionReason> = new Set([
  'stopping',
  'preempted',
  'fault',
  'maintenance',
  'sync-group',
  'slow-acks',
]);

/**
 * Leave leadership: the VIP goes first, always (and the wire probe with it). `self`: our own name — when we leave
 * cleanly for one of HAND_OVER_ON, the best other member is named as the successor to hand the group to.
 */
function dropLeadership(
  s: GroupState,
  reason: TransitionReason,
  effects: Effect[],
  resign: boolean,
  detail?: string,
  self?: string,
): GroupState {
  if (s.wire !== null) effects.push({ type: 'probe-stop' });
  effects.push({ type: 'remove-vip', reason });
  // Still waiting out an unclean vacancy (guard or wire): the previous holder's copy may live on. A keepalived
  // node that is VRRP Master (hybrid mode) holds the VIP itself: the successor must check the wire too.
  const clean = s.wire === null && reason !== 'vrrp-master';
  const to =
    clean && self !== undefined && HAND_OVER_ON.has(reason)
      ? bestCandidate(s.members.filter((m) => m.node !== self))?.node
      : undefined;
  if (resign && s.epoch !== null)
    effects.push({
      type: 'resign',
      epoch: s.epoch,
      leaseId: s.session?.leaseId ?? null,
      clean,
      ...(to === undefined ? {} : { to, why: reason }),
    });
  return transition(
    s,
    'follower',
    reason,
    effects,
    {
      droppedEpoch: s.epoch ?? s.droppedEpoch,
      epoch: null,
      claimAt: null,
      wire: null,
      vipHeld: false,
      freshAckRequested: false,
      slowAcks: 0,
      fencedAt: null,
      holdUntil: null,
      holdRefreshedAt: null,
    },
    detail,
  );
}

/** Become leader at `epoch`: claim at once after a clean vacancy, else after the guard and a quiet wire. */
function becomeLeader(
  s: GroupState,
  config: GroupConfig,
  now: number,
  epoch: number,
  vacancy: VacancyInfo,
  reason: TransitionReason,
  effects: Effect[],
): GroupState {
  // The record we observed, when it is this epoch's (it says who handed the group over, if anyone).
  const observed = s.leader !== null && s.leader.epoch === epoch && s.leader.node === config.self.node;
  const leader: LeaderRecord = observed
    ? s.leader
    : { node: config.self.node, epoch, leaseId: s.session?.leaseId ?? '' };
  const base: Partial<GroupState> = {
    epoch,
    leader,
    vacantSince: null,
    vipHeld: false,
    freshAckRequested: false,
    slowAcks: 0,
    fencedAt: null,
    lastFenceAt: null,
    lostCampaigns: 0,
    holdUntil: null,
    holdRefreshedAt: null,
    promised: false,
  };
  if (vacancy.clean || s.session === null) {
    return transition(s, 'leader', reason, effects, { ...base, claimAt: now, wire: null });
  }
  const own = s.session.timing;
  const guard = Math.max(takeoverGuardMs(own), vacancy.guardMs ?? 0);
  const lifetime = Math.max(kernelLifetimeSec(own) * 1000, vacancy.lifetimeMs ?? 0);
  const claimAt = now + guard;
  // A holder riding out an etcd outage keeps its VIP past its lease on the promises of the members it knew; a
  // node it never heard of (one that joined since) only learns of that copy on the wire, so it keeps waiting while
  // the copy answers for as long as a hold may last.
  const hold = Math.max(vacancy.holdMaxMs ?? 0, config.holdMaxMs ?? 0);
  effects.push({ type: 'probe-start' });
  return transition(
    s,
    'leader',
    reason === 'elected' ? 'elected-guarded' : reason,
    effects,
    {
      ...base,
      claimAt,
      wire: {
        startedAt: now,
        lastAnswerAt: null,
        failed: false,
        capAt: claimAt + WIRE_CAP_LIFETIMES * lifetime + hold,
      },
    },
    `guard ${guard} ms, then a quiet wire (at most ${guard + WIRE_CAP_LIFETIMES * lifetime + hold} ms)`,
  );
}

function apply(config: GroupConfig, s: GroupState, e: GroupEvent, effects: Effect[]): GroupState {
  switch (e.type) {
    case 'session-up': {
      // Our leadership is bound to the lease it was won with: a new lease (without a 'lost' first) ends it.
      const replaced = s.session !== null && s.session.leaseId !== e.leaseId;
      let next = s;
      if (replaced && s.role === 'leader') next = dropLeadership(s, 'session-replaced', effects, false);
      else if (replaced && s.role === 'campaigning')
        next = transition(s, 'follower', 'session-replaced', effects, { epoch: null });
      return {
        ...next,
        session: { leaseId: e.leaseId, timing: e.timing, lastAckSentAt: e.sentAt, lastAckAt: e.now },
      };
    }
    case 'session-acked': {
      if (s.session === null || s.session.leaseId !== e.leaseId) return s;
      if (e.sentAt <= s.session.lastAckSentAt) return s;
      const session = { ...s.session, lastAckSentAt: e.sentAt, lastAckAt: e.now };
      // Prompt: the ack leaves room to add or refresh the VIP within its ack window (see takeoverGuardMs).
      const prompt = ackUsable(session.timing, e.sentAt, e.now);
      let next: GroupState = { ...s, session, freshAckRequested: false, holdRefreshedAt: null };
      // Refresh the kernel's dead-man switch only from a prompt ack.
      if (s.role === 'leader' && s.vipHeld && prompt && e.now < deadlineOf(next)) {
        effects.push({
          type: 'refresh-vip',
          lifetimeSec: kernelLifetimeSec(session.timing),
          notAfter: e.sentAt + session.timing.ackWindowMs,
        });
      }
      // A leader waiting to add its VIP counts acks too slow to add it with.
      const waiting =
        s.role === 'leader' &&
        !s.vipHeld &&
        s.claimAt !== null &&
        e.now >= s.claimAt &&
        wireClear(s.wire, e.now);
      if (waiting) next = { ...next, slowAcks: prompt ? 0 : s.slowAcks + 1 };
      if (waiting && next.slowAcks >= MAX_SLOW_ACKS) {
        const dropped = dropLeadership(
          next,
          'slow-acks',
          effects,
          true,
          `${next.slowAcks} acks in a row slower than ${session.timing.ackWindowMs - HOST_CHANGE_MIN_LEFT_MS} ms`,
          config.self.node,
        );
        // The node stops being a candidate while its acks are slow (its own rule, docs/design.md "Candidacy"),
        // so another node takes the group; no pause of our own here, which would outlast that rule.
        return dropped;
      }
      return next;
    }
    case 'session-lost': {
      let next: GroupState = s;
      if (s.role === 'leader') next = dropLeadership(s, 'session-lost', effects, false, e.reason);
      else if (s.role === 'campaigning')
        next = transition(s, 'follower', 'session-lost', effects, { epoch: null }, e.reason);
      return { ...next, session: null };
    }
    case 'leader-observed': {
      // A view older than our own win (our transaction's reply came before its watch event) says nothing
      // about our key: ignore it rather than drop a leadership it cannot see yet.
      if (s.role === 'leader' && s.epoch !== null && e.revision !== undefined && e.revision < s.epoch)
        return s;
      const vacantSince =
        e.leader === null ? (s.leaderKnown && s.leader === null ? s.vacantSince : e.now) : null;
      let next: GroupState = { ...s, leader: e.leader, leaderKnown: true, vacantSince: vacantSince ?? null };
      if (s.role === 'leader' && (e.leader === null || e.leader.epoch !== s.epoch)) {
        next = dropLeadership(
          next,
          e.leader === null ? 'leader-vanished' : 'leader-taken',
          effects,
          // Resign anyway (an epoch-guarded no-op if the key is really gone): a key of ours that still exists
          // under our live lease would otherwise block the group, since we never adopt a dropped epoch.
          true,
          e.leader === null ? undefined : `held by ${e.leader.node}`,
        );
        next = { ...next, leader: e.leader };
      }
      if (s.role === 'campaigning' && e.leader !== null && e.leader.node !== config.self.node) {
        next = transition(next, 'follower', 'lost-race', effects, { epoch: null }, `to ${e.leader.node}`);
      }
      // Our own key while campaigning is our win seen in the watch before the transaction's reply: the reply
      // carries how the vacancy began, so wait for it (a lost reply is adopted below, once the campaign failed).
      return next;
    }
    case 'members-observed': {
      const seenSince: Record<string, number> = {};
      for (const m of e.members) {
        const before = s.members.find((x) => x.node === m.node);
        const kept = before !== undefined && before.priority === m.priority ? s.seenSince[m.node] : undefined;
        seenSince[m.node] = kept ?? e.now;
      }
      return { ...s, members: e.members, seenSince };
    }
    case 'campaign-result': {
      if (s.role !== 'campaigning') return s;
      // A win under a lease that is no longer ours is no win: that key dies with its lease.
      const stale = e.leaseId !== undefined && e.leaseId !== s.session?.leaseId;
      if (!e.won || e.epoch === undefined || stale) {
        const lost = s.lostCampaigns + 1;
        const ttl = s.session?.timing.ttlMs ?? 1000;
        return transition(s, 'follower', 'lost-race', effects, {
          epoch: null,
          lostCampaigns: lost,
          campaignRetryAt: e.now + Math.min(ttl, CAMPAIGN_RETRY_MS * 2 ** (lost - 1)),
        });
      }
      return becomeLeader(
        s,
        config,
        e.now,
        e.epoch,
        e.vacancy ?? { clean: false, guardMs: undefined, lifetimeMs: undefined },
        'elected',
        effects,
      );
    }
    case 'vip-missing':
      // Someone removed the VIP behind our back: put it back (through the same fresh-ack rule).
      return s.role === 'leader' && s.vipHeld ? { ...s, vipHeld: false } : s;
    case 'vip-late':
      if (s.role !== 'leader') return s;
      return fence(s, e.now, effects, 'a netlink reply came after the ack window');
    case 'wire-answered':
      return s.wire === null ? s : { ...s, wire: { ...s.wire, lastAnswerAt: e.now } };
    case 'probe-failed':
      return s.wire === null ? s : { ...s, wire: { ...s.wire, failed: true } };
    case 'hold':
      return hold(config, s, e.now, e.until, effects);
    case 'promise':
      return s.promised === e.bound ? s : { ...s, promised: e.bound };
    case 'tick':
      return s;
    case 'stop': {
      let next = s;
      if (s.role === 'leader')
        next = dropLeadership(s, 'stopping', effects, true, undefined, config.self.node);
      return transition(next, 'stopped', 'stopping', effects, { epoch: null });
    }
  }
}

/**
 * `--etcd-outage hold`: the other members' promises now hold until `until`. While they do, the holder keeps its
 * VIP's kernel lifetime fresh (no acks refresh it during an outage), so a holder that dies still loses the address
 * on its own within a lifetime — and its silence ends every promise (docs/design.md, "Riding out etcd outages").
 */
function hold(
  config: GroupConfig,
  s: GroupState,
  now: number,
  until: number | null,
  effects: Effect[],
): GroupState {
  if (config.holdMaxMs === undefined || s.role !== 'leader')
    return s.holdUntil === null ? s : { ...s, holdUntil: null };
  const next: GroupState = { ...s, holdUntil: until };
  const session = s.session;
  if (until === null || session === null || !s.vipHeld || s.fencedAt !== null) return next;
  if (now >= deadlineOf(next, config.holdMaxMs)) return next;
  const lifetimeMs = kernelLifetimeSec(session.timing) * 1000;
  const last = Math.max(session.lastAckAt, s.holdRefreshedAt ?? -Infinity);
  if (now - last < lifetimeMs / 4) return next;
  effects.push({
    type: 'refresh-vip',
    lifetimeSec: kernelLifetimeSec(session.timing),
    notAfter: now + session.timing.ackWindowMs,
  });
  return { ...next, holdRefreshedAt: now };
}

/**
 * The VIP can no longer be trusted to expire before a successor's guard: remove it now. The lease may well be
 * alive (an etcd leader election, a burst of loss), and a prompt ack would prove it, so the first fence keeps the
 * key for the fence grace (see evaluateLeader); a second one soon after hands the group over at once.
 */
function fence(s: GroupState, now: number, effects: Effect[], detail: string): GroupState {
  const timing = s.session?.timing;
  if (timing === undefined || (s.lastFenceAt !== null && now - s.lastFenceAt < fenceRepeatMs(timing))) {
    const again = timing === undefined ? '' : `; fenced twice within ${fenceRepeatMs(timing)} ms`;
    return { ...dropLeadership(s, 'fenced', effects, true, detail + again), lastFenceAt: now };
  }
  // Always: a refresh queued before the VIP was found missing may have put it back (NLM_F_REPLACE).
  effects.push({ type: 'remove-vip', reason: 'fenced' });
  effects.push({ type: 'keepalive-now' });
  const grace = fenceGraceMs(timing);
  return transition(
    s,
    'leader',
    'fenced',
    effects,
    {
      vipHeld: false,
      claimAt: s.vipHeld ? now : s.claimAt,
      fencedAt: now,
      lastFenceAt: now,
      freshAckRequested: true,
      slowAcks: 0,
    },
    `${detail}; VIP removed, keeping the lease ${grace} ms for a prompt ack`,
  );
}

/**
 * The members with our own entry as we are now rather than as last published: a priority change still on its way
 * to etcd must not make us campaign as the best candidate on a priority we no longer have — a node lowered below
 * another kept winning the group back and handing it over, 10 s in a row, while the other deferred to its stale
 * record (soak seed 50 with fast failover, round 47).
 */
function withSelf(members: readonly Candidate[], self: Candidate): readonly Candidate[] {
  return members.map((m) => (m.node === self.node ? self : m));
}

function evaluate(config: GroupConfig, s: GroupState, now: number, effects: Effect[]): GroupState {
  if (s.role === 'stopped') return s;
  if (s.role === 'leader') return evaluateLeader(config, s, now, effects);
  // Our own key under our current lease while we are not leading: a campaign whose reply was lost (the commit
  // happened). Adopt it — the lease is live and nobody else can hold the group — rather than leave a leader key
  // that no VIP follows. Unclean: we never read how the vacancy began — unless the previous holder handed the
  // group to us (its key put under our lease after its VIP removal succeeded), which is as clean as a clean
  // resign. A dropped epoch (resigned, fenced, faulted) is never adopted back.
  if (
    s.role === 'follower' &&
    s.leader !== null &&
    s.leader.node === config.self.node &&
    s.session !== null &&
    s.leader.leaseId === s.session.leaseId &&
    s.leader.epoch !== s.droppedEpoch &&
    config.self.priority >= 1
  ) {
    // Handed over: the previous holder removed its VIP before it put the key under our lease (clean).
    const handed = s.leader.handedOverBy !== undefined && s.leader.handedOverBy !== config.self.node;
    const adopted = becomeLeader(
      s,
      config,
      now,
      s.leader.epoch,
      handed ? { clean: true } : { clean: false, guardMs: undefined, lifetimeMs: undefined },
      handed ? 'handed-over' : 'adopted',
      effects,
    );
    return evaluateLeader(config, adopted, now, effects);
  }
  if (
    s.role === 'follower' &&
    s.leaderKnown &&
    s.leader === null &&
    s.session !== null &&
    !s.promised &&
    electable(config.self)
  ) {
    const vacantSince = s.vacantSince ?? now;
    const best = bestCandidate(withSelf(s.members, config.self));
    const isBest = best !== undefined && best.node === config.self.node;
    const fallbackAt = vacantSince + config.vacancyFallbackMs;
    if (now < s.campaignRetryAt) {
      effects.push({ type: 'arm-timer', at: s.campaignRetryAt });
      return { ...s, vacantSince };
    }
    if (isBest || now >= fallbackAt) {
      effects.push({ type: 'campaign', leaseId: s.session.leaseId });
      return transition(s, 'campaigning', isBest ? 'vacant-best' : 'vacant-too-long', effects, {
        vacantSince,
      });
    }
    effects.push({ type: 'arm-timer', at: fallbackAt });
    return { ...s, vacantSince };
  }
  return s;
}

/**
 * The members that may preempt us: not the one that handed us the group while its record is the one it had then
 * (a stopping holder is still listed until its lease goes, one whose acks turned slow may not have said so yet:
 * taking the group back at once would undo the handover). A record it writes after the handover (a recovered
 * priority) counts again. A holder that was preempted is a challenger like any other: it left because we
 * outranked it, and it may take the group back only when that is no longer so (a move to us ended, our priority
 * fell) — the same rule as for every member.
 */
function challengers(s: GroupState): readonly Candidate[] {
  const by = s.leader?.handedOverBy;
  if (by === undefined || s.leader === null || s.leader.handoverReason === 'preempted') return s.members;
  const epoch = s.leader.epoch;
  return s.members.filter((m) => m.node !== by || (m.revision !== undefined && m.revision > epoch));
}

function evaluateLeader(config: GroupConfig, state: GroupState, now: number, effects: Effect[]): GroupState {
  const deadline = deadlineOf(state, config.holdMaxMs);
  let s = state;
  if (now >= deadline && s.fencedAt === null) {
    s = fence(s, now, effects, 'lease deadline passed');
    if (s.role !== 'leader') return s;
  }
  if (
    s.fencedAt !== null &&
    config.holdMaxMs !== undefined &&
    s.holdUntil !== null &&
    now < deadline &&
    // Only a holder that had claimed: one still waiting out a guard or a wire that answers must not skip it.
    s.wire === null &&
    s.claimAt !== null &&
    now >= s.claimAt &&
    s.session !== null &&
    s.epoch !== null &&
    config.self.priority >= 1
  ) {
    // `--etcd-outage hold`: fenced (some member's promise was missing at the deadline), and every other member has
    // promised since — a member whose etcd still answered for a moment after the outage began (a raft leader
    // renews leases until it notices it lost its quorum). The VIP goes back as it would on a prompt ack.
    effects.push({
      type: 'add-vip',
      epoch: s.epoch,
      lifetimeSec: kernelLifetimeSec(s.session.timing),
      notAfter: now + s.session.timing.ackWindowMs,
    });
    effects.push({ type: 'announce', epoch: s.epoch });
    s = { ...s, vipHeld: true, fencedAt: null, holdRefreshedAt: now, freshAckRequested: false };
  }
  if (s.fencedAt !== null && s.session !== null) {
    const grace = fenceGraceMs(s.session.timing);
    if (now >= s.fencedAt + grace)
      return dropLeadership(s, 'fenced', effects, true, `no prompt etcd ack within ${grace} ms of the fence`);
    effects.push({ type: 'arm-timer', at: s.fencedAt + grace });
  }
  if (config.self.priority < 1) {
    // Faulted (a health check with no weight failed), in maintenance or following a sync group held elsewhere:
    // never hold the VIP, hand it over cleanly. A keepalived VRRP Master (hybrid mode): leave, uncleanly.
    return dropLeadership(s, config.standDown ?? 'fault', effects, true, undefined, config.self.node);
  }
  const pre = preemptingChallenger(config.self, challengers(s), s.seenSince);
  if (pre !== undefined && pre.dueAt <= now) {
    return dropLeadership(
      s,
      'preempted',
      effects,
      true,
      `by ${pre.challenger.node} (priority ${pre.challenger.priority})`,
      config.self.node,
    );
  }
  let next = s;
  const session = s.session;
  const guardDone = s.claimAt !== null && now >= s.claimAt;
  const clear = wireClear(s.wire, now);
  if (session !== null && !s.vipHeld && guardDone && clear && s.epoch !== null) {
    // Add only within the ack window of a keepalive, so the kernel lifetime cannot outlive the lease — and only
    // with room left for the kernel's reply to come back inside it; otherwise get a fresh ack first.
    if (ackUsable(session.timing, session.lastAckSentAt, now)) {
      if (s.wire !== null) effects.push({ type: 'probe-stop' });
      effects.push({
        type: 'add-vip',
        epoch: s.epoch,
        lifetimeSec: kernelLifetimeSec(session.timing),
        notAfter: session.lastAckSentAt + session.timing.ackWindowMs,
      });
      effects.push({ type: 'announce', epoch: s.epoch });
      next = { ...next, vipHeld: true, wire: null, slowAcks: 0, fencedAt: null };
    } else if (!s.freshAckRequested) {
      effects.push({ type: 'keepalive-now' });
      next = { ...next, freshAckRequested: true };
    }
  }
  if (deadline > now) effects.push({ type: 'arm-timer', at: deadline });
  if (next.claimAt !== null && !next.vipHeld && next.claimAt > now)
    effects.push({ type: 'arm-timer', at: next.claimAt });
  if (next.wire !== null && !next.vipHeld && guardDone && !clear)
    effects.push({ type: 'arm-timer', at: wireClearAt(next.wire) });
  if (pre !== undefined) effects.push({ type: 'arm-timer', at: pre.dueAt });
  return next;
}
