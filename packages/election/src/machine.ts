/**
 * The etcd-mode group machine: a pure function from (config, state, event) to (state, effects).
 *
 *            vacant & best (or vacancy too long)            won: claim after guard (unclean) or at once (clean)
 *  FOLLOWER ───────────────────────────────────► CAMPAIGNING ─────────────────────────► LEADER
 *     ▲  ▲                lost the race                │                                 │  │
 *     │  └─────────────────────────────────────────────┘                                 │  │
 *     │        deadline passed / session lost → remove VIP, new session ("fenced")       │  │
 *     ├──────────────────────────────────────────────────────────────────────────────────┘  │
 *     │        higher-priority preempting member due, or stop → remove VIP, then resign     │
 *     └─────────────────────────────────────────────────────────────────────────────────────┘
 *
 * The runtime (agent) executes effects in order and feeds results back as events. Time arrives inside events, so
 * tests drive this with a fake clock.
 */
import { bestCandidate, preemptingChallenger, type Candidate } from './candidates.js';
import { fenceDeadline, kernelLifetimeSec, takeoverGuardMs, type TimingConfig } from './timing.js';

export type Role = 'follower' | 'campaigning' | 'leader' | 'stopped';

/** Pause after a lost or failed campaign before trying again. */
export const CAMPAIGN_RETRY_MS = 200;

export interface GroupConfig {
  readonly group: string;
  readonly self: Candidate;
  /** Campaign even if not the best candidate once the group has been vacant this long (liveness fallback). */
  readonly vacancyFallbackMs: number;
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
  /** Create revision of the leader key: the holder's epoch. */
  readonly epoch: number;
  readonly leaseId: string;
  /**
   * How long after this holder's lease expires its stale VIP may still be on its interface (its own takeover
   * guard). A successor waits the larger of this and its own: nodes with different TTLs stay safe.
   */
  readonly guardMs?: number;
}

export interface GroupState {
  readonly role: Role;
  readonly session: Session | null;
  /** The leader key as last observed in etcd (null = vacant). */
  readonly leader: LeaderRecord | null;
  /** False until the leader key has been observed once: nobody campaigns on a guess. */
  readonly leaderKnown: boolean;
  /** Whether the last vacancy followed a clean release (no stale VIP can exist). */
  readonly vacancyClean: boolean;
  /** The previous holder's published guard, for the current vacancy. */
  readonly vacancyGuardMs: number;
  readonly vacantSince: number | null;
  readonly members: readonly Candidate[];
  /** When this node first saw each member with its current priority (for preempt delays). */
  readonly seenSince: Readonly<Record<string, number>>;
  /** Our epoch while campaigning/leading. */
  readonly epoch: number | null;
  /** Leader only: the VIP may be added from this time (takeover guard). */
  readonly claimAt: number | null;
  /** Leader only: the VIP is on our interface (as far as we asked). */
  readonly vipHeld: boolean;
  /** Leader only: a keepalive was requested to get a fresh ack before adding the VIP. */
  readonly freshAckRequested: boolean;
  /** After a lost or failed campaign, not before this (no hot loop while the view lags or etcd is down). */
  readonly campaignRetryAt: number;
  /** The last epoch we gave up (resigned, fenced, faulted): its key is never adopted back. */
  readonly droppedEpoch: number | null;
}

export type GroupEvent =
  | { type: 'session-up'; now: number; leaseId: string; timing: TimingConfig; sentAt: number }
  | { type: 'session-acked'; now: number; leaseId: string; sentAt: number }
  | { type: 'session-lost'; now: number; reason: string }
  /** `revision`: the etcd revision the observation holds at (a view can lag behind our own transaction). */
  | { type: 'leader-observed'; now: number; leader: LeaderRecord | null; clean: boolean; revision?: number }
  | { type: 'members-observed'; now: number; members: readonly Candidate[] }
  | { type: 'campaign-result'; now: number; won: boolean; epoch?: number; leaseId?: string }
  | { type: 'vip-missing'; now: number }
  | { type: 'tick'; now: number }
  | { type: 'stop'; now: number };

export type Effect =
  | { type: 'campaign'; leaseId: string }
  /** Add the VIP with this kernel lifetime; skip it if the clock has passed `notAfter`. */
  | { type: 'add-vip'; epoch: number; lifetimeSec: number; notAfter: number }
  | { type: 'refresh-vip'; lifetimeSec: number; notAfter: number }
  | { type: 'remove-vip'; reason: string }
  | { type: 'announce'; epoch: number }
  | { type: 'keepalive-now' }
  /** Delete our leader key (guarded by epoch) and mark the release clean. */
  | { type: 'resign'; epoch: number }
  /** Revoke (best effort) and replace the session: a fenced node never silently resumes. */
  | { type: 'restart-session' }
  | { type: 'arm-timer'; at: number }
  | { type: 'transition'; from: Role; to: Role; reason: string; epoch: number | null };

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
    vacancyClean: false,
    vacancyGuardMs: 0,
    vacantSince: null,
    members: [],
    seenSince: {},
    epoch: null,
    claimAt: null,
    vipHeld: false,
    freshAckRequested: false,
    campaignRetryAt: 0,
    droppedEpoch: null,
  };
}

/** The effective deadline of a session (−∞ when there is none). */
export function deadlineOf(state: GroupState): number {
  return state.session === null
    ? -Infinity
    : fenceDeadline(state.session.timing, state.session.lastAckSentAt);
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
  reason: string,
  effects: Effect[],
  patch: Partial<GroupState> = {},
): GroupState {
  effects.push({ type: 'transition', from: s.role, to, reason, epoch: patch.epoch ?? s.epoch });
  return { ...s, ...patch, role: to };
}

/** Leave leadership: the VIP goes first, always. */
function dropLeadership(s: GroupState, reason: string, effects: Effect[], resign: boolean): GroupState {
  effects.push({ type: 'remove-vip', reason });
  if (resign && s.epoch !== null) effects.push({ type: 'resign', epoch: s.epoch });
  return transition(s, 'follower', reason, effects, {
    droppedEpoch: s.epoch ?? s.droppedEpoch,
    epoch: null,
    claimAt: null,
    vipHeld: false,
    freshAckRequested: false,
  });
}

function apply(config: GroupConfig, s: GroupState, e: GroupEvent, effects: Effect[]): GroupState {
  switch (e.type) {
    case 'session-up': {
      // Our leadership is bound to the lease it was won with: a new lease (without a 'lost' first) ends it.
      const replaced = s.session !== null && s.session.leaseId !== e.leaseId;
      let next = s;
      if (replaced && s.role === 'leader') next = dropLeadership(s, 'session replaced', effects, false);
      else if (replaced && s.role === 'campaigning')
        next = transition(s, 'follower', 'session replaced', effects, { epoch: null });
      return {
        ...next,
        session: { leaseId: e.leaseId, timing: e.timing, lastAckSentAt: e.sentAt, lastAckAt: e.now },
      };
    }
    case 'session-acked': {
      if (s.session === null || s.session.leaseId !== e.leaseId) return s;
      if (e.sentAt <= s.session.lastAckSentAt) return s;
      const session = { ...s.session, lastAckSentAt: e.sentAt, lastAckAt: e.now };
      const next = { ...s, session, freshAckRequested: false };
      // Refresh the kernel's dead-man switch only from a prompt ack (see takeoverGuardMs).
      if (
        s.role === 'leader' &&
        s.vipHeld &&
        e.now - e.sentAt <= session.timing.ackWindowMs &&
        e.now < deadlineOf(next)
      ) {
        effects.push({
          type: 'refresh-vip',
          lifetimeSec: kernelLifetimeSec(session.timing),
          notAfter: e.sentAt + session.timing.ackWindowMs,
        });
      }
      return next;
    }
    case 'session-lost': {
      let next: GroupState = s;
      if (s.role === 'leader') next = dropLeadership(s, `session lost: ${e.reason}`, effects, false);
      else if (s.role === 'campaigning')
        next = transition(s, 'follower', 'session lost', effects, { epoch: null });
      return { ...next, session: null };
    }
    case 'leader-observed': {
      // A view older than our own win (our transaction's reply came before its watch event) says nothing
      // about our key: ignore it rather than drop a leadership it cannot see yet.
      if (s.role === 'leader' && s.epoch !== null && e.revision !== undefined && e.revision < s.epoch)
        return s;
      // Whether a vacancy is clean is decided when it begins; later observations of the same vacancy (say, the old
      // holder's member key expiring) must not overwrite it.
      const sameVacancy = e.leader === null && s.leaderKnown && s.leader === null && s.vacantSince !== null;
      const vacantSince = e.leader === null ? (sameVacancy ? s.vacantSince : e.now) : null;
      const vacancyClean = e.leader === null ? (sameVacancy ? s.vacancyClean : e.clean) : s.vacancyClean;
      const vacancyGuardMs =
        e.leader === null ? (sameVacancy ? s.vacancyGuardMs : (s.leader?.guardMs ?? 0)) : 0;
      let next: GroupState = {
        ...s,
        leader: e.leader,
        leaderKnown: true,
        vacancyClean,
        vacancyGuardMs,
        vacantSince,
      };
      if (s.role === 'leader' && (e.leader === null || e.leader.epoch !== s.epoch)) {
        next = dropLeadership(
          next,
          e.leader === null ? 'leader key vanished' : `leader key now held by ${e.leader.node}`,
          effects,
          // Resign anyway (an epoch-guarded no-op if the key is really gone): a key of ours that still exists
          // under our live lease would otherwise block the group, since we never adopt a dropped epoch.
          true,
        );
        next = { ...next, leader: e.leader };
      }
      if (s.role === 'campaigning' && e.leader !== null && e.leader.node !== config.self.node) {
        next = transition(next, 'follower', `lost the race to ${e.leader.node}`, effects, { epoch: null });
      }
      // The key is ours under our *current* lease although we are not leading: a campaign whose reply was lost
      // (timeout after commit). Adopt it like a won campaign — the lease is live and nobody else can hold the
      // group — rather than leave a leader key that no VIP follows. A fenced node has a new lease: never adopted.
      if (
        s.role !== 'leader' &&
        e.leader !== null &&
        e.leader.node === config.self.node &&
        s.session !== null &&
        e.leader.leaseId === s.session.leaseId &&
        e.leader.epoch !== s.droppedEpoch &&
        config.self.priority >= 1
      ) {
        const guard = s.vacancyClean ? 0 : Math.max(takeoverGuardMs(s.session.timing), s.vacancyGuardMs);
        // While campaigning this is simply our win, seen in the watch before the transaction's reply.
        const reason =
          s.role === 'campaigning'
            ? guard > 0
              ? 'elected; waiting out the previous holder'
              : 'elected'
            : 'adopted our own leader key (campaign reply lost)';
        next = transition(next, 'leader', reason, effects, {
          epoch: e.leader.epoch,
          claimAt: e.now + guard,
          vipHeld: false,
          freshAckRequested: false,
        });
      }
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
        return transition(s, 'follower', 'lost the race', effects, {
          epoch: null,
          campaignRetryAt: e.now + CAMPAIGN_RETRY_MS,
        });
      }
      const guard =
        s.vacancyClean || s.session === null
          ? 0
          : Math.max(takeoverGuardMs(s.session.timing), s.vacancyGuardMs);
      return transition(
        s,
        'leader',
        guard > 0 ? 'elected; waiting out the previous holder' : 'elected',
        effects,
        {
          epoch: e.epoch,
          claimAt: e.now + guard,
          vipHeld: false,
          leader: { node: config.self.node, epoch: e.epoch, leaseId: s.session?.leaseId ?? '' },
          vacantSince: null,
        },
      );
    }
    case 'vip-missing':
      // Someone removed the VIP behind our back: put it back (through the same fresh-ack rule).
      return s.role === 'leader' && s.vipHeld ? { ...s, vipHeld: false } : s;
    case 'tick':
      return s;
    case 'stop': {
      let next = s;
      if (s.role === 'leader') next = dropLeadership(s, 'stopping', effects, true);
      return transition(next, 'stopped', 'stopping', effects, { epoch: null });
    }
  }
}

function evaluate(config: GroupConfig, s: GroupState, now: number, effects: Effect[]): GroupState {
  if (s.role === 'stopped') return s;
  if (s.role === 'leader') {
    const deadline = deadlineOf(s);
    if (now >= deadline) {
      const next = dropLeadership(s, 'fenced: lease deadline passed', effects, false);
      effects.push({ type: 'restart-session' });
      return { ...next, session: null };
    }
    if (config.self.priority < 1) {
      // Faulted (a health check with no weight failed): never hold the VIP, hand the group over cleanly.
      return dropLeadership(s, 'fault: a tracked check failed', effects, true);
    }
    const pre = preemptingChallenger(config.self, s.members, s.seenSince);
    if (pre !== undefined && pre.dueAt <= now) {
      return dropLeadership(
        s,
        `preempted by ${pre.challenger.node} (priority ${pre.challenger.priority})`,
        effects,
        true,
      );
    }
    let next = s;
    const session = s.session;
    if (session !== null && !s.vipHeld && s.claimAt !== null && now >= s.claimAt && s.epoch !== null) {
      // Add only within the ack window of a keepalive, so the kernel lifetime cannot outlive the lease.
      if (now - session.lastAckSentAt <= session.timing.ackWindowMs) {
        effects.push({
          type: 'add-vip',
          epoch: s.epoch,
          lifetimeSec: kernelLifetimeSec(session.timing),
          notAfter: session.lastAckSentAt + session.timing.ackWindowMs,
        });
        effects.push({ type: 'announce', epoch: s.epoch });
        next = { ...next, vipHeld: true };
      } else if (!s.freshAckRequested) {
        effects.push({ type: 'keepalive-now' });
        next = { ...next, freshAckRequested: true };
      }
    }
    effects.push({ type: 'arm-timer', at: deadline });
    if (next.claimAt !== null && !next.vipHeld && next.claimAt > now)
      effects.push({ type: 'arm-timer', at: next.claimAt });
    if (pre !== undefined) effects.push({ type: 'arm-timer', at: pre.dueAt });
    return next;
  }
  if (
    s.role === 'follower' &&
    s.leaderKnown &&
    s.leader === null &&
    s.session !== null &&
    config.self.priority >= 1
  ) {
    const vacantSince = s.vacantSince ?? now;
    const best = bestCandidate(s.members);
    const isBest = best !== undefined && best.node === config.self.node;
    const fallbackAt = vacantSince + config.vacancyFallbackMs;
    if (now < s.campaignRetryAt) {
      effects.push({ type: 'arm-timer', at: s.campaignRetryAt });
      return { ...s, vacantSince };
    }
    if (isBest || now >= fallbackAt) {
      effects.push({ type: 'campaign', leaseId: s.session.leaseId });
      return transition(
        s,
        'campaigning',
        isBest ? 'group vacant; best candidate' : 'group vacant too long',
        effects,
        {
          vacantSince,
        },
      );
    }
    effects.push({ type: 'arm-timer', at: fallbackAt });
    return { ...s, vacantSince };
  }
  return s;
}
