import {
  errorMessage,
  formatCidr,
  sleep,
  type Clock,
  type GroupSettings,
  type Logger,
  type TimerHandle,
  type Vip,
} from '@coord/core';
import {
  deadlineOf,
  initialState,
  PROBE_INTERVAL_MS,
  PROBE_QUIET_MS,
  step,
  type Effect,
  type GroupConfig,
  type GroupEvent,
  type GroupState,
  type Role,
  type TransitionReason,
  type VacancyInfo,
} from '@coord/election';
import type { Announcer, VipPort } from '@coord/vip';
import { Lane } from './lane.js';

/** What a group runner asks of etcd; implemented by the node over its session and store. */
export interface GroupEtcdPort {
  /** Campaign under `leaseId` (the machine's session), not whatever lease the node has by the time it runs. */
  campaign(
    group: string,
    leaseId: string,
  ): Promise<{ won: true; epoch: number; vacancy: VacancyInfo } | { won: false }>;
  /**
   * Delete our leader key at `epoch` (a no-op when it is no longer ours); `clean`: our VIP is verifiably gone,
   * so the successor may claim at once; `to` (clean only): hand the group to that member in the same transaction
   * when its record allows, saying `why` we leave. Returns whether the key was ours.
   */
  resign(group: string, epoch: number, clean: boolean, to?: string, why?: string): Promise<boolean>;
  /** Whether `leaseId` is still the node's lease (a resign only matters while the key's lease lives). */
  isCurrentLease(leaseId: string): boolean;
  keepaliveNow(): void;
  /**
   * Leave the session for a new one. The node revokes the old lease only when every group's VIP removal
   * succeeded; otherwise it lets the lease expire, so a successor's guard starts at the expiry.
   */
  restartSession(reason: string): void;
}

/** A wire probe (RFC 5227 ARP probe / IPv6 DAD NS) as the runner needs it; @coord/vip's WireProber fits. */
export interface ProbePort {
  open(
    iface: string,
    vips: readonly Vip[],
  ):
    | {
        ok: true;
        session: {
          probe(): number;
          drain(): readonly { address: string; mac: string; kind: string }[];
          close(): void;
        };
      }
    | { ok: false; reason: string };
}

type ProbeSession = Extract<ReturnType<ProbePort['open']>, { ok: true }>['session'];

/** Past-tense facts a group reports (logged, counted, and given to notify hooks). */
export type GroupFact =
  | {
      type: 'transitioned';
      group: string;
      from: Role;
      to: Role;
      reason: TransitionReason;
      detail: string | undefined;
      epoch: number | null;
    }
  /**
   * `sinceVacancyMs`: from noticing the group vacant (or handed to this node) to the VIP on our interface (null when
   * not a takeover: a fenced holder getting its VIP back, a restart).
   */
  | { type: 'vipClaimed'; group: string; epoch: number; at: number; sinceVacancyMs: number | null }
  | { type: 'vipReleased'; group: string; reason: string; at: number }
  | { type: 'vipRemovalFailed'; group: string; error: string }
  /** Somebody else answered for our VIP while we waited to claim it. */
  | { type: 'wireAnswered'; group: string; mac: string; address: string }
  | { type: 'announced'; group: string; frames: number };

export interface GroupRunnerOptions {
  readonly settings: GroupSettings;
  readonly node: string;
  readonly vipPort: VipPort;
  readonly announcer: Announcer;
  /** Absent: probing is impossible, and a takeover after an unclean vacancy waits until the cap. */
  readonly prober?: ProbePort;
  readonly etcd: GroupEtcdPort;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onFact?: (fact: GroupFact) => void;
  readonly vacancyFallbackMs: number;
  /** `--etcd-outage hold`: how long past its lease deadline a holder may keep its VIP on promises. */
  readonly holdMaxMs?: number;
}

const RESIGN_RETRY_MIN_MS = 100;
const RESIGN_RETRY_MAX_MS = 1000;

/**
 * Runs one VIP group's election machine: feeds it events, turns its effects into netlink, announcements, wire
 * probes, etcd calls and timers. The machine decides; this only executes. Every timer is on the Clock port.
 */
export class GroupRunner {
  private state: GroupState = initialState();
  private config: GroupConfig;
  private vacancyStartedAt: number | null = null;
  /** The last VIP removal did not fully succeed: no clean resign, no revoke, until one succeeds. */
  private removeFailed = false;
  /** VIPs the last add/refresh put on the interface in time (announcements go only for these). */
  private readonly confirmed = new Set<string>();
  /** When the lifetime the last add/refresh gave the VIPs runs out, at the earliest (null: none given). */
  private lifetimeEndsAt: number | null = null;
  private readonly lane: Lane;
  private timer: { handle: TimerHandle; at: number } | null = null;
  private announceTimer: TimerHandle | null = null;
  private probe: { session: ProbeSession; timer: TimerHandle | null } | null = null;
  private resigning: Promise<unknown> = Promise.resolve();
  /** The last answer to our wire probe (time and MAC), while waiting to claim. */
  private lastAnswer: { at: number; mac: string } | null = null;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly opts: GroupRunnerOptions) {
    const s = opts.settings;
    this.config = {
      group: s.name,
      self: { node: opts.node, priority: s.priority, preempt: s.preempt, preemptDelayMs: s.preemptDelayMs },
      vacancyFallbackMs: opts.vacancyFallbackMs,
      ...(opts.holdMaxMs === undefined ? {} : { holdMaxMs: opts.holdMaxMs }),
    };
    this.log = opts.logger.child({ group: s.name });
    this.lane = new Lane(this.log);
  }

  get current(): GroupState {
    return this.state;
  }

  /** Our holder deadline now: the lease's, or later while promises hold (`--etcd-outage hold`). */
  get deadline(): number {
    return deadlineOf(this.state, this.config.holdMaxMs);
  }

  get name(): string {
    return this.opts.settings.name;
  }

  /** True while the last removal of this group's VIP failed (the node must not revoke its lease). */
  get removalFailed(): boolean {
    return this.removeFailed;
  }

  /**
   * This node's own claim (priority, preemption, candidacy) changed: a config reload, a health check, etcd, a
   * maintenance mark, a sync group's leading group (`standDown`: why a priority 0 is not a fault).
   */
  updateSelf(self: GroupConfig['self'], standDown?: GroupConfig['standDown']): void {
    const { standDown: _, ...rest } = this.config;
    this.config = standDown === undefined ? { ...rest, self } : { ...rest, self, standDown };
    this.dispatch({ type: 'tick', now: this.opts.clock.now() });
  }

  get self(): GroupConfig['self'] {
    return this.config.self;
  }

  dispatch(event: GroupEvent): void {
    // Answers waiting in the probe socket are facts the machine must know before it decides anything.
    this.drainProbe();
    this.apply(event);
  }

  private apply(event: GroupEvent): void {
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
        const now = this.opts.clock.now();
        if (this.lifetimeEndsAt !== null && now >= this.lifetimeEndsAt)
          // The kernel ended it: no prompt etcd ack came to refresh it (docs/design.md, "Timing of the etcd mode").
          this.log.warn('vip expired on holder', {
            epoch: s.epoch,
            expiredMsAgo: Math.round(now - this.lifetimeEndsAt),
            hint: 'no etcd ack came within the ack window to refresh its lifetime: put back on the next prompt one',
          });
        else this.log.warn('vip missing on holder; restoring', { epoch: s.epoch });
        for (const v of vips) if (!present.has(v.address)) this.confirmed.delete(v.address);
        this.dispatch({ type: 'vip-missing', now });
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
    this.stopped = true;
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer.handle);
    this.timer = null;
    this.stopAnnouncing();
    this.stopProbe();
  }

  private execute(e: Effect): void {
    const { clock } = this.opts;
    switch (e.type) {
      case 'transition':
        if (e.to === 'campaigning') this.vacancyStartedAt = this.state.vacantSince;
        // Handed the group: no vacancy to notice, the clock starts when the handover is seen.
        if (e.to === 'leader' && e.reason === 'handed-over') this.vacancyStartedAt = clock.now();
        if (e.to === 'follower') this.vacancyStartedAt = null;
        this.log.info('transition', {
          from: e.from,
          to: e.to,
          reason: e.reason,
          ...(e.detail === undefined ? {} : { detail: e.detail }),
          epoch: e.epoch,
        });
        this.opts.onFact?.({
          type: 'transitioned',
          group: this.name,
          from: e.from,
          to: e.to,
          reason: e.reason,
          detail: e.detail,
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
              ...(r.won ? { epoch: r.epoch, vacancy: r.vacancy } : {}),
            }),
          (err: unknown) => {
            this.log.warn('campaign failed', { error: errorMessage(err) });
            this.dispatch({ type: 'campaign-result', now: clock.now(), won: false, leaseId });
          },
        );
        return;
      }
      case 'resign':
        // Queued behind the VIP removal that precedes it in the lane.
        this.resigning = this.lane.idle().then(() => this.resign(e.epoch, e.leaseId, e.clean, e.to, e.why));
        return;
      case 'keepalive-now':
        this.opts.etcd.keepaliveNow();
        return;
      case 'probe-start':
        this.startProbe();
        return;
      case 'probe-stop':
        this.stopProbe();
        return;
      case 'add-vip':
        void this.lane.run('add vip', () => this.addVips(e.epoch, e.lifetimeSec, e.notAfter));
        return;
      case 'announce':
        void this.lane.run('announce', () => this.startAnnouncing(e.epoch));
        return;
      case 'refresh-vip': {
        const { lifetimeSec, notAfter } = e;
        void this.lane.run('refresh vip', async () => {
          if (clock.now() > notAfter) return;
          const sentAt = clock.now();
          let all = true;
          for (const vip of this.opts.settings.vips) {
            const r = await this.opts.vipPort.refresh(this.opts.settings.interface, vip, {
              validSec: lifetimeSec,
              preferredSec: lifetimeSec,
              notAfter,
            });
            if (r === 'late-reply') return this.lateReply('refresh');
            if (r !== 'refreshed') all = false;
          }
          if (all) this.lifetimeEndsAt = sentAt + lifetimeSec * 1000;
        });
        return;
      }
      case 'remove-vip':
        this.stopAnnouncing();
        this.confirmed.clear();
        void this.lane.run('remove vip', () => this.removeVips(this.opts.settings.vips, e.reason));
        return;
    }
  }

  private async addVips(epoch: number, lifetimeSec: number, notAfter: number): Promise<void> {
    const { clock } = this.opts;
    const iface = this.opts.settings.interface;
    const answered = this.lastAnswer;
    this.lastAnswer = null;
    if (answered !== null && clock.now() - answered.at < PROBE_QUIET_MS) {
      // The machine only claims over a live answer at the cap: nothing of ours can live that long.
      this.log.error('claiming the VIP although it is still answered on the wire (cap reached)', {
        mac: answered.mac,
        hint: 'something outside coord holds this address (a static address, another tool): find the MAC and remove it',
      });
    }
    if (clock.now() > notAfter) {
      // Too late to add with this lifetime safely (the event loop lagged): get a fresh ack and retry.
      this.log.warn('vip add skipped: ack too old', { epoch, lateByMs: Math.round(clock.now() - notAfter) });
      this.dispatch({ type: 'vip-missing', now: clock.now() });
      return;
    }
    const sentAt = clock.now();
    for (const vip of this.opts.settings.vips) {
      // notAfter travels with the request: the port re-checks it before every send and after the reply.
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
      if (r === 'late-reply') return this.lateReply('add');
      this.confirmed.add(vip.address);
    }
    this.lifetimeEndsAt = sentAt + lifetimeSec * 1000;
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
  }

  /**
   * The kernel answered an add/refresh after the bound the lifetime was computed for: it may have started the
   * lifetime too late to expire before a successor's guard. The machine removes the VIP at once and fences.
   */
  private lateReply(what: 'add' | 'refresh'): void {
    this.log.error('netlink answered after the ack window: removing the VIP and fencing', { op: what });
    this.dispatch({ type: 'vip-late', now: this.opts.clock.now() });
  }

  /**
   * Delete our leader key, retried while the lease it lives under is still ours (an etcd leader election during
   * the call must not leave the group held by a key that no VIP follows). After a failed VIP removal the node
   * does not resign at all: it lets the lease expire, so the successor waits out the stale copy.
   */
  private async resign(
    epoch: number,
    leaseId: string | null,
    clean: boolean,
    to?: string,
    why?: string,
  ): Promise<void> {
    if (this.removeFailed) {
      this.log.error('not resigning: the vip removal failed; letting the lease expire', { epoch });
      this.opts.etcd.restartSession(`group ${this.name}: vip removal failed`);
      return;
    }
    let backoff = RESIGN_RETRY_MIN_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        // A handover is tried once: a retry after an etcd error is a plain resign.
        const applied = await this.opts.etcd.resign(
          this.name,
          epoch,
          clean,
          attempt === 1 ? to : undefined,
          why,
        );
        this.log.info('resigned', { epoch, applied, clean, ...(attempt > 1 ? { attempt } : {}) });
        return;
      } catch (err) {
        // Our key lives exactly as long as the lease it was created with: once that lease is gone, so is the key.
        const live = leaseId !== null && this.opts.etcd.isCurrentLease(leaseId);
        this.log.warn('resign failed', { epoch, error: errorMessage(err), retry: live, retryInMs: backoff });
        if (!live) return;
      }
      await sleep(this.opts.clock, backoff);
      backoff = Math.min(backoff * 2, RESIGN_RETRY_MAX_MS);
      if (leaseId === null || !this.opts.etcd.isCurrentLease(leaseId)) return;
    }
  }

  private async removeVips(vips: readonly Vip[], reason: string): Promise<void> {
    const iface = this.opts.settings.interface;
    let removed = 0;
    let failed = false;
    // Every VIP is tried even if one fails; a failure means no clean resign and no revoke (see resign()).
    for (const vip of vips) {
      try {
        if ((await this.opts.vipPort.remove(iface, vip)) === 'removed') removed++;
      } catch (e) {
        failed = true;
        this.log.error('vip removal failed', { vip: formatCidr(vip), iface, error: errorMessage(e) });
        this.opts.onFact?.({ type: 'vipRemovalFailed', group: this.name, error: errorMessage(e) });
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
    if (this.stopped) return;
    if (this.timer !== null && this.timer.at <= at && this.timer.at > clock.now()) return;
    if (this.timer !== null) clock.clearTimeout(this.timer.handle);
    const handle = clock.setTimeout(() => {
      this.timer = null;
      this.dispatch({ type: 'tick', now: clock.now() });
    }, at - clock.now());
    this.timer = { handle, at };
  }

  // ── wire probe ───────────────────────────────────────────────────────────────────────────────────────────

  private startProbe(): void {
    this.stopProbe();
    const now = this.opts.clock.now();
    const opened = this.opts.prober?.open(this.opts.settings.interface, this.opts.settings.vips) ?? {
      ok: false as const,
      reason: 'no wire prober configured',
    };
    if (!opened.ok) {
      this.log.warn('cannot probe the wire; waiting the full cap before claiming', { reason: opened.reason });
      this.apply({ type: 'probe-failed', now });
      return;
    }
    const probe = { session: opened.session, timer: null as TimerHandle | null };
    this.probe = probe;
    const tick = (): void => {
      if (this.probe !== probe) return;
      this.drainProbe();
      if (this.probe !== probe) return;
      probe.session.probe();
      probe.timer = this.opts.clock.setTimeout(tick, PROBE_INTERVAL_MS);
    };
    tick();
  }

  private drainProbe(): void {
    const p = this.probe;
    if (p === null) return;
    const answers = p.session.drain();
    if (answers.length === 0) return;
    const now = this.opts.clock.now();
    const first = answers[0];
    if (first !== undefined) this.lastAnswer = { at: now, mac: first.mac };
    if (first !== undefined && (this.state.wire?.lastAnswerAt ?? null) === null) {
      this.log.info('vip still answered on the wire; waiting', { address: first.address, mac: first.mac });
      this.opts.onFact?.({ type: 'wireAnswered', group: this.name, mac: first.mac, address: first.address });
    }
    this.apply({ type: 'wire-answered', now });
  }

  private stopProbe(): void {
    const p = this.probe;
    if (p === null) return;
    this.probe = null;
    if (p.timer !== null) this.opts.clock.clearTimeout(p.timer);
    p.session.close();
  }

  // ── announcements ────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Whether an announcement for `epoch` may go out now: we lead at that epoch, hold the VIP, and are before our
   * own deadline — after a long stall the announce timer can fire before the fence timer, and a GARP then would
   * point clients at a MAC without the VIP.
   */
  private mayAnnounce(epoch: number): boolean {
    const s = this.state;
    return s.role === 'leader' && s.vipHeld && s.epoch === epoch && this.opts.clock.now() < this.deadline;
  }

  /** A burst of `count` announcements, then one every `refreshMs` while we hold the VIP. */
  private startAnnouncing(epoch: number): void {
    this.stopAnnouncing();
    const { count, intervalMs, refreshMs } = this.opts.settings.announce;
    let sent = 0;
    const tick = () => {
      this.announceTimer = null;
      // Let a pending fence act first: the machine re-evaluates the deadline before we decide.
      this.dispatch({ type: 'tick', now: this.opts.clock.now() });
      if (!this.mayAnnounce(epoch)) return;
      let frames = 0;
      // Only the addresses the last add/refresh confirmed on the interface.
      for (const vip of this.opts.settings.vips) {
        if (!this.confirmed.has(vip.address)) continue;
        const r = this.opts.announcer.announce(this.opts.settings.interface, vip);
        if (r.ok) frames += r.frames;
        else this.log.warn('announce failed', { vip: formatCidr(vip), reason: r.reason });
      }
      this.opts.onFact?.({ type: 'announced', group: this.name, frames });
      sent++;
      const next = sent < count ? intervalMs : refreshMs;
      if (next > 0 && !this.stopped) this.announceTimer = this.opts.clock.setTimeout(tick, next);
    };
    tick();
  }

  private stopAnnouncing(): void {
    if (this.announceTimer !== null) this.opts.clock.clearTimeout(this.announceTimer);
    this.announceTimer = null;
  }
}
