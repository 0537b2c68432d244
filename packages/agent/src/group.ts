import {
  formatCidr,
  type Clock,
  type GroupSettings,
  type Logger,
  type TimerHandle,
  type Vip,
} from '@coord/core';
import {
  initialState,
  step,
  type Effect,
  type GroupConfig,
  type GroupEvent,
  type GroupState,
  type Role,
} from '@coord/election';
import type { Announcer, VipPort } from '@coord/vip';
import { Lane } from './lane.js';

/** What a group runner asks of etcd; implemented by the node over its session and store. */
export interface GroupEtcdPort {
  /** Campaign under `leaseId` (the machine's session), not whatever lease the node has by the time it runs. */
  campaign(group: string, leaseId: string): Promise<{ won: true; epoch: number } | { won: false }>;
  /** `clean`: our VIP is verifiably gone, so the successor may claim at once (else it waits out the guard). */
  resign(group: string, epoch: number, clean: boolean): Promise<boolean>;
  keepaliveNow(): void;
  restartSession(reason: string): void;
}

/** Past-tense facts a group reports (logged, counted, and later given to notify hooks). */
export type GroupFact =
  | { type: 'transitioned'; group: string; from: Role; to: Role; reason: string; epoch: number | null }
  /** `sinceVacancyMs`: from noticing the group vacant to the VIP on our interface (null when not a takeover). */
  | { type: 'vipClaimed'; group: string; epoch: number; at: number; sinceVacancyMs: number | null }
  | { type: 'vipReleased'; group: string; reason: string; at: number }
  | { type: 'announced'; group: string; frames: number };

export interface GroupRunnerOptions {
  readonly settings: GroupSettings;
  readonly node: string;
  readonly vipPort: VipPort;
  readonly announcer: Announcer;
  readonly etcd: GroupEtcdPort;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onFact?: (fact: GroupFact) => void;
  readonly vacancyFallbackMs: number;
}

/**
 * Runs one VIP group's election machine: feeds it events, turns its effects into netlink, announcements, etcd
 * calls and timers. The machine decides; this only executes.
 */
export class GroupRunner {
  private state: GroupState = initialState();
  private config: GroupConfig;
  private vacancyStartedAt: number | null = null;
  /** The last VIP removal did not fully succeed. */
  private removeFailed = false;
  private readonly lane: Lane;
  private timer: { handle: TimerHandle; at: number } | null = null;
  private announceTimer: TimerHandle | null = null;
  private resigning: Promise<unknown> = Promise.resolve();
  private readonly log: Logger;

  constructor(private readonly opts: GroupRunnerOptions) {
    const s = opts.settings;
    this.config = {
      group: s.name,
      self: { node: opts.node, priority: s.priority, preempt: s.preempt, preemptDelayMs: s.preemptDelayMs },
      vacancyFallbackMs: opts.vacancyFallbackMs,
    };
    this.log = opts.logger.child({ group: s.name });
    this.lane = new Lane(this.log);
  }

  get current(): GroupState {
    return this.state;
  }

  get name(): string {
    return this.opts.settings.name;
  }

  /** This node's own claim (priority, preemption) changed: a config reload or a health check. */
  updateSelf(self: GroupConfig['self']): void {
    this.config = { ...this.config, self };
    this.dispatch({ type: 'tick', now: this.opts.clock.now() });
  }

  get self(): GroupConfig['self'] {
    return this.config.self;
  }

  dispatch(event: GroupEvent): void {
    const { state, effects } = step(this.config, this.state, event);
    this.state = state;
    for (const e of effects) this.execute(e);
  }

  /** Resolves once the host changes queued so far are done. */
  laneIdle(): Promise<void> {
    return this.lane.idle();
  }

  /** Resolves once queued host changes and a pending resign are done (used at shutdown). */
  async settle(): Promise<void> {
    await this.lane.idle();
    await this.resigning;
  }

  /** Compare the interface with what the machine wants, and act on the difference. */
  reconcile(present: ReadonlySet<string>): void {
    const s = this.state;
    const vips = this.opts.settings.vips;
    const holding = s.role === 'leader' && s.vipHeld;
    if (holding) {
      if (vips.some((v) => !present.has(v.address))) {
        this.log.warn('vip missing on holder; restoring', { epoch: s.epoch });
        this.dispatch({ type: 'vip-missing', now: this.opts.clock.now() });
      }
      return;
    }
    const stale = vips.filter((v) => present.has(v.address));
    if (stale.length > 0 && this.lane.pending === 0) {
      this.log.warn('vip present on a non-holder; removing', { vips: stale.map(formatCidr), role: s.role });
      void this.lane.run('remove stale vip', () => this.removeVips(stale, 'reconcile: not the holder'));
    }
  }

  stopTimers(): void {
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer.handle);
    if (this.announceTimer !== null) this.opts.clock.clearTimeout(this.announceTimer);
    this.timer = null;
    this.announceTimer = null;
  }

  private execute(e: Effect): void {
    const { clock } = this.opts;
    const iface = this.opts.settings.interface;
    switch (e.type) {
      case 'transition':
        if (e.to === 'campaigning') this.vacancyStartedAt = this.state.vacantSince;
        if (e.to === 'follower') this.vacancyStartedAt = null;
        this.log.info('transition', { from: e.from, to: e.to, reason: e.reason, epoch: e.epoch });
        this.opts.onFact?.({
          type: 'transitioned',
          group: this.name,
          from: e.from,
          to: e.to,
          reason: e.reason,
          epoch: e.epoch,
        });
        return;
      case 'arm-timer':
        this.arm(e.at);
        return;
      case 'campaign': {
        const leaseId = e.leaseId;
        this.opts.etcd.campaign(this.name, leaseId).then(
          (r) =>
            this.dispatch({
              type: 'campaign-result',
              now: clock.now(),
              won: r.won,
              leaseId,
              ...(r.won ? { epoch: r.epoch } : {}),
            }),
          (err: unknown) => {
            this.log.warn('campaign failed', { error: err instanceof Error ? err.message : String(err) });
            this.dispatch({ type: 'campaign-result', now: clock.now(), won: false, leaseId });
          },
        );
        return;
      }
      case 'resign': {
        const epoch = e.epoch;
        // Queued behind the VIP removal that precedes it in the lane.
        this.resigning = this.lane.idle().then(() =>
          this.opts.etcd.resign(this.name, epoch, !this.removeFailed).then(
            (ok) => this.log.info('resigned', { epoch, applied: ok }),
            (err: unknown) =>
              this.log.warn('resign failed', {
                epoch,
                error: err instanceof Error ? err.message : String(err),
              }),
          ),
        );
        return;
      }
      case 'keepalive-now':
        this.opts.etcd.keepaliveNow();
        return;
      case 'restart-session':
        // Behind the VIP removal in the lane: the lease (which revoking releases) goes only after the VIP.
        void this.lane.run('restart session', () => {
          // Not awaited: the node waits for every group's lane (this one included) before it revokes the lease.
          this.opts.etcd.restartSession(`group ${this.name} fenced`);
        });
        return;
      case 'add-vip': {
        const { epoch, lifetimeSec, notAfter } = e;
        void this.lane.run('add vip', async () => {
          if (clock.now() > notAfter) {
            // Too late to add with this lifetime safely (the event loop lagged): get a fresh ack and retry.
            this.log.warn('vip add skipped: ack too old', {
              epoch,
              lateByMs: Math.round(clock.now() - notAfter),
            });
            this.dispatch({ type: 'vip-missing', now: clock.now() });
            return;
          }
          for (const vip of this.opts.settings.vips) {
            // notAfter travels with the request: the port re-checks it after any wait in its own queue.
            const r = await this.opts.vipPort.add(iface, vip, {
              validSec: lifetimeSec,
              preferredSec: lifetimeSec,
              notAfter,
            });
            if (r === 'late') {
              this.log.warn('vip add skipped: ack too old by the time netlink was free', { epoch });
              this.dispatch({ type: 'vip-missing', now: clock.now() });
              return;
            }
          }
          this.log.info('vip claimed', {
            vips: this.opts.settings.vips.map(formatCidr),
            iface,
            epoch,
            lifetimeSec,
          });
          const at = clock.now();
          const since = this.vacancyStartedAt;
          this.vacancyStartedAt = null;
          this.opts.onFact?.({
            type: 'vipClaimed',
            group: this.name,
            epoch,
            at,
            sinceVacancyMs: since === null ? null : at - since,
          });
        });
        return;
      }
      case 'announce':
        void this.lane.run('announce', () => this.startAnnouncing(e.epoch));
        return;
      case 'refresh-vip': {
        const { lifetimeSec, notAfter } = e;
        void this.lane.run('refresh vip', async () => {
          if (clock.now() > notAfter) return;
          for (const vip of this.opts.settings.vips) {
            await this.opts.vipPort.refresh(iface, vip, {
              validSec: lifetimeSec,
              preferredSec: lifetimeSec,
              notAfter,
            });
          }
        });
        return;
      }
      case 'remove-vip':
        this.stopAnnouncing();
        void this.lane.run('remove vip', () => this.removeVips(this.opts.settings.vips, e.reason));
        return;
    }
  }

  private async removeVips(vips: readonly Vip[], reason: string): Promise<void> {
    const iface = this.opts.settings.interface;
    let removed = 0;
    let failed = false;
    // Every VIP is tried even if one fails; a failure makes the next resign unclean (the successor waits).
    for (const vip of vips) {
      try {
        if ((await this.opts.vipPort.remove(iface, vip)) === 'removed') removed++;
      } catch (e) {
        failed = true;
        this.log.error('vip removal failed', {
          vip: formatCidr(vip),
          iface,
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
    this.removeFailed = failed;
    if (removed > 0) {
      this.log.info('vip released', { vips: vips.map(formatCidr), iface, reason });
      this.opts.onFact?.({ type: 'vipReleased', group: this.name, reason, at: this.opts.clock.now() });
    }
  }

  private arm(at: number): void {
    const { clock } = this.opts;
    if (this.timer !== null && this.timer.at <= at && this.timer.at > clock.now()) return;
    if (this.timer !== null) clock.clearTimeout(this.timer.handle);
    const handle = clock.setTimeout(() => {
      this.timer = null;
      this.dispatch({ type: 'tick', now: clock.now() });
    }, at - clock.now());
    this.timer = { handle, at };
  }

  private stillHolding(epoch: number): boolean {
    return this.state.role === 'leader' && this.state.vipHeld && this.state.epoch === epoch;
  }

  /** A burst of `count` announcements, then one every `refreshMs` while we hold the VIP. */
  private startAnnouncing(epoch: number): void {
    this.stopAnnouncing();
    const { count, intervalMs, refreshMs } = this.opts.settings.announce;
    let sent = 0;
    const tick = () => {
      this.announceTimer = null;
      if (!this.stillHolding(epoch)) return;
      let frames = 0;
      for (const vip of this.opts.settings.vips) {
        const r = this.opts.announcer.announce(this.opts.settings.interface, vip);
        if (r.ok) frames += r.frames;
        else this.log.warn('announce failed', { vip: formatCidr(vip), reason: r.reason });
      }
      this.opts.onFact?.({ type: 'announced', group: this.name, frames });
      sent++;
      const next = sent < count ? intervalMs : refreshMs;
      if (next > 0) this.announceTimer = this.opts.clock.setTimeout(tick, next);
    };
    tick();
  }

  private stopAnnouncing(): void {
    if (this.announceTimer !== null) this.opts.clock.clearTimeout(this.announceTimer);
    this.announceTimer = null;
  }
}
