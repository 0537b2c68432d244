/**
 * Fast failover (`coord join --fast-failover`): a follower that stops hearing the holder on the peer channel
 * checks the wire, and only when nobody answers for the VIP revokes the holder's lease so the election can move on
 * at once instead of at the lease's expiry (docs/design.md, "Peer channel and fast failover").
 *
 *   holder silent for SUSPECT_MISSES heartbeats — or heard for that long saying it no longer leads the group
 *   whose key it still holds (it fenced and gave up, but its resign cannot reach etcd: a one-way cut) — and we
 *   are the node the group would elect without it
 *     → probe the VIP (RFC 5227 ARP probe / DAD NS) every PROBE_INTERVAL_MS
 *       → somebody answers: the holder's kernel still has the address (a frozen or busy process, a lost
 *         heartbeat): do nothing; the lease decides, as without fast failover
 *       → quiet for PROBE_QUIET_MS: revoke the holder's lease; our campaign then claims at once
 *
 * etcd stays the only place leadership is decided: the revoke only ends a lease, and whoever wins the campaign
 * that follows wins it by the usual transaction. Only one node acts per group (the best candidate without the
 * holder), so two followers never race to revoke. A node that hears none of its other peers either suspects
 * nobody: the silence is more likely its own (a dead switch port with carrier still up).
 */
import { bestCandidate, PROBE_INTERVAL_MS, PROBE_QUIET_MS, type GroupState } from '@coord/election';
import type { Clock, Logger, TimerHandle } from '@coord/core';
import type { PeerHeard } from '@coord/peer';
import type { ProbePort } from './group.js';
import { etcdQuiet } from './outage.js';

/** Heartbeats missed in a row before a holder is suspected. */
export const SUSPECT_MISSES = 3;

/**
 * How long after our revoke a campaign's win still counts as ending a vacancy we checked on the wire (and so
 * claims at once). Past it, the win is an ordinary unclean vacancy: guard, then a quiet wire.
 */
export const REVOKED_CLAIM_MS = 500;

export type Suspicion =
  | { readonly suspect: false }
  | {
      readonly suspect: true;
      /** silent: not heard; abandoned: heard saying it does not lead (the caller checks that this persists). */
      readonly kind: 'silent' | 'abandoned';
      readonly node: string;
      readonly leaseId: string;
      readonly epoch: number;
      readonly silentMs: number;
    };

/**
 * Whether this node should check on the group's holder now. Pure: the caller passes what the group machine and
 * the peer channel know. The holder must have been heard holding this very epoch (a holder that never spoke on
 * the channel — an older version, fast failover off — is left to its lease).
 */
export function suspicion(input: {
  readonly self: string;
  readonly state: GroupState;
  readonly heard: PeerHeard | undefined;
  readonly group: string;
  readonly now: number;
  readonly heartbeatMs: number;
  /** When we last heard each other member (not the holder); empty when there is nobody else to hear. */
  readonly othersHeardAt: readonly (number | undefined)[];
}): Suspicion {
  const { state, heard, self, now } = input;
  const leader = state.leader;
  if (state.role !== 'follower' || state.session === null || leader === null || leader.node === self)
    return { suspect: false };
  // Our own etcd does not answer: a revoke could not land and no campaign could follow (an etcd outage); check
  // once it answers again, when the holder's lease may still be alive in etcd (etcd extends leases on its return).
  if (etcdQuiet(state, now)) return { suspect: false };
  if (heard === undefined || heard.leaseId !== leader.leaseId) return { suspect: false };
  const beat = heard.groups.get(input.group);
  if (beat === undefined) return { suspect: false };
  const window = SUSPECT_MISSES * input.heartbeatMs;
  const silentMs = now - heard.at;
  let kind: 'silent' | 'abandoned';
  if (beat.epoch === leader.epoch && beat.holdsUntil !== null && silentMs >= window) kind = 'silent';
  // Epoch 0: its newest word is that it leads nothing here — not a fenced holder waiting for an ack (that one
  // still sends its epoch), one that dropped the epoch for good (a dropped epoch is never adopted back). Whether it
  // went quiet since does not matter (a holder under a one-way cut sends irregularly): the wire check decides.
  else if (beat.epoch === 0) kind = 'abandoned';
  else return { suspect: false };
  const next = bestCandidate(state.members.filter((m) => m.node !== leader.node));
  if (next?.node !== self) return { suspect: false };
  const others = input.othersHeardAt;
  if (kind === 'silent' && others.length > 0 && !others.some((at) => at !== undefined && now - at < window))
    return { suspect: false };
  return { suspect: true, kind, node: leader.node, leaseId: leader.leaseId, epoch: leader.epoch, silentMs };
}

interface Check {
  readonly leaseId: string;
  readonly node: string;
  readonly startedAt: number;
  readonly session: { probe(): number; drain(): readonly { mac: string }[]; close(): void };
  timer: TimerHandle | null;
}

export interface FastFailoverGroup {
  readonly name: string;
  readonly interface: string;
  readonly vips: Parameters<ProbePort['open']>[1];
  readonly state: () => GroupState;
}

export interface FastFailoverOptions {
  readonly self: string;
  readonly heartbeatMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly prober: ProbePort | undefined;
  /** The newest heartbeat of `node` (under `leaseId` when given). */
  readonly lastHeard: (node: string, leaseId?: string) => PeerHeard | undefined;
  readonly revoke: (leaseId: string) => Promise<void>;
  readonly onRevoked?: (group: string, node: string) => void;
  /** `--etcd-outage hold`: we promised the group's holder not to campaign, so we do not revoke its lease either. */
  readonly isBound?: (group: string) => boolean;
}

/** Per group: at most one wire check at a time, and no second one for a holder whose VIP answered. */
export class FastFailover {
  private readonly checks = new Map<string, Check>();
  /** Group → the lease whose VIP answered on the wire, until that holder is heard again. */
  private readonly answered = new Map<string, { leaseId: string; heardAt: number }>();
  private readonly revoked = new Map<string, { leaseId: string; at: number }>();
  /** Group → since when the holder of this lease and epoch has said it does not lead the group. */
  private readonly abandoned = new Map<string, { leaseId: string; epoch: number; since: number }>();

  constructor(private readonly opts: FastFailoverOptions) {}

  /** Re-evaluate every group (on each heartbeat tick). */
  evaluate(groups: readonly FastFailoverGroup[]): void {
    const now = this.opts.clock.now();
    for (const g of groups) {
      const state = g.state();
      const leader = state.leader;
      const heard = leader === null ? undefined : this.opts.lastHeard(leader.node, leader.leaseId);
      const others = state.members
        .filter((m) => m.node !== this.opts.self && m.node !== leader?.node)
        .map((m) => this.opts.lastHeard(m.node)?.at);
      const s = suspicion({
        self: this.opts.self,
        state,
        heard,
        group: g.name,
        now,
        heartbeatMs: this.opts.heartbeatMs,
        othersHeardAt: others,
      });
      const check = this.checks.get(g.name);
      if (s.suspect && s.kind === 'abandoned') {
        // Only once it has said so for as long as a silence must last: a heartbeat sent just before it won the
        // epoch, or crossing a resign in flight, says nothing.
        const a = this.abandoned.get(g.name);
        if (a === undefined || a.leaseId !== s.leaseId || a.epoch !== s.epoch) {
          this.abandoned.set(g.name, { leaseId: s.leaseId, epoch: s.epoch, since: now });
          continue;
        }
        if (now - a.since < SUSPECT_MISSES * this.opts.heartbeatMs) continue;
      } else this.abandoned.delete(g.name);
      if (!s.suspect || this.opts.isBound?.(g.name) === true) {
        if (check !== undefined) this.stop(g.name);
        continue;
      }
      // Revoked already: the view has not shown the key's delete yet.
      if (this.revoked.get(g.name)?.leaseId === s.leaseId) continue;
      const blocked = this.answered.get(g.name);
      // Answered: wait for that holder to be heard anew (silent), or for another lease (abandoned, which is heard
      // all along — its copy is not ours to judge again every heartbeat; its lease decides).
      if (
        blocked !== undefined &&
        blocked.leaseId === s.leaseId &&
        (s.kind === 'abandoned' || blocked.heardAt === heard?.at)
      )
        continue;
      if (check === undefined || check.leaseId !== s.leaseId)
        this.start(g, s.node, s.leaseId, s.kind, s.silentMs);
    }
  }

  /**
   * Whether a won campaign ends the vacancy our own revoke of `previousLease` began, recently enough that the
   * wire check before it still stands: then the VIP can be claimed at once.
   */
  vouchesFor(group: string, previousLease: string | undefined): boolean {
    const r = this.revoked.get(group);
    return (
      r !== undefined &&
      previousLease !== undefined &&
      r.leaseId === previousLease &&
      this.opts.clock.now() - r.at <= REVOKED_CLAIM_MS
    );
  }

  close(): void {
    for (const group of [...this.checks.keys()]) this.stop(group);
  }

  private start(
    g: FastFailoverGroup,
    node: string,
    leaseId: string,
    kind: 'silent' | 'abandoned',
    silentMs: number,
  ): void {
    this.stop(g.name);
    const opened = this.opts.prober?.open(g.interface, g.vips);
    if (opened === undefined || !opened.ok) {
      // Without a probe there is no proof the holder is gone: leave it to its lease.
      this.answered.set(g.name, { leaseId, heardAt: this.opts.lastHeard(node, leaseId)?.at ?? -1 });
      this.opts.logger.warn('fast failover: cannot probe the wire; waiting for the lease instead', {
        group: g.name,
        reason: opened === undefined ? 'no wire prober' : opened.reason,
      });
      return;
    }
    const check: Check = {
      leaseId,
      node,
      startedAt: this.opts.clock.now(),
      session: opened.session,
      timer: null,
    };
    this.checks.set(g.name, check);
    if (kind === 'silent')
      this.opts.logger.info('fast failover: holder silent on the peer channel; probing the wire', {
        group: g.name,
        holder: node,
        silentMs: Math.round(silentMs),
      });
    else
      this.opts.logger.info(
        'fast failover: the holder gave the group up but its key remains; probing the wire',
        {
          group: g.name,
          holder: node,
        },
      );
    const tick = (): void => {
      if (this.checks.get(g.name) !== check) return;
      const answers = check.session.drain();
      if (answers.length > 0) {
        this.stop(g.name);
        this.answered.set(g.name, { leaseId, heardAt: this.opts.lastHeard(node, leaseId)?.at ?? -1 });
        this.opts.logger.warn('fast failover: the silent holder’s VIP still answers; waiting for its lease', {
          group: g.name,
          holder: node,
          mac: answers[0]?.mac,
        });
        return;
      }
      if (this.opts.clock.now() - check.startedAt >= PROBE_QUIET_MS) {
        this.stop(g.name);
        this.revoke(g.name, node, leaseId);
        return;
      }
      check.session.probe();
      check.timer = this.opts.clock.setTimeout(tick, PROBE_INTERVAL_MS);
    };
    tick();
  }

  private revoke(group: string, node: string, leaseId: string): void {
    const at = this.opts.clock.now();
    this.revoked.set(group, { leaseId, at });
    this.opts.logger.warn('fast failover: revoking the silent holder’s lease (nobody answers for the VIP)', {
      group,
      holder: node,
      leaseId,
    });
    this.opts.onRevoked?.(group, node);
    this.opts.revoke(leaseId).catch((e: unknown) => {
      const error = e instanceof Error ? e.message : String(e);
      // Already gone (expired, or another group's revoke of the same lease): the election goes on either way.
      // Anything else (etcd did not answer) did not end the lease: the next heartbeat may check and revoke again.
      const gone = /not found|lease.*(expired|invalid)/i.test(error);
      if (!gone && this.revoked.get(group)?.leaseId === leaseId) this.revoked.delete(group);
      this.opts.logger.info('fast failover: revoke did not apply', { group, leaseId, error, retry: !gone });
    });
  }

  private stop(group: string): void {
    const c = this.checks.get(group);
    if (c === undefined) return;
    this.checks.delete(group);
    if (c.timer !== null) this.opts.clock.clearTimeout(c.timer);
    c.session.close();
  }
}
