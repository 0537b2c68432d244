/**
 * The VRRP runner: feeds received adverts and timers into the pure {@link step} and turns its effects into I/O
 * (adverts through a {@link VrrpTransport}, VIPs through a {@link VipPort}, timers through the `Clock`).
 * Adverts and VIP changes each run in order on their own queue; a VIP change also waits for the adverts queued
 * before it, so "priority 0 sent, then VIPs released" holds on the wire, and a slow VIP port never delays adverts.
 */
import { errorMessage, type Clock, type Logger } from '@coord/core';
import { decode, encode, type DropReason, type VrrpPacket } from './codec.js';
import type { VrrpConfig } from './config.js';
import {
  initialState,
  step,
  type TransitionReason,
  type VrrpEffect,
  type VrrpEvent,
  type VrrpStateName,
} from './machine.js';
import type { Received, VrrpTransport } from './transport.js';

/**
 * The VIP port the runner needs, and no more: the agent adapts it to packages/vip (netlink + gratuitous ARP).
 * Both calls must be idempotent; a failure is logged and counted, the state machine carries on.
 */
export interface VipPort {
  claim(): Promise<void>;
  release(): Promise<void>;
}

export interface VrrpTransition {
  readonly from: VrrpStateName;
  readonly to: VrrpStateName;
  readonly reason: TransitionReason;
}

export interface VrrpCounters {
  advertsSent: number;
  advertsReceived: number;
  sendErrors: number;
  vipErrors: number;
  transitions: number;
  /** Datagrams dropped, by reason (decoder and state-machine rules). */
  dropped: Partial<Record<DropReason, number>>;
}

export interface VrrpInstanceOptions {
  readonly config: VrrpConfig;
  readonly transport: VrrpTransport;
  readonly vips: VipPort;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called after each state change (events are facts: the change has happened). */
  readonly onTransition?: (t: VrrpTransition) => void;
  /**
   * Sync groups: asked when this Backup's Master_Down_Timer fires. False holds it a Backup that *wants* Master
   * (keepalived: a sync group goes Master only when every member can), and `onWantsMaster` is told.
   */
  readonly mayBecomeMaster?: () => boolean;
  readonly onWantsMaster?: () => void;
}

export interface VrrpInstance {
  start(): void;
  /** RFC 5798 §6.4.3 shutdown: a Master sends priority 0, then releases its VIPs. Resolves when both are done. */
  stop(): Promise<void>;
  state(): VrrpStateName;
  counters(): VrrpCounters;
  /**
   * Change this router's priority (health tracking): the next adverts carry it, and the RFC 5798 rules do the
   * rest — a Backup that now outranks the Master (with preemption) takes over, a Master that fell below a Backup
   * is preempted by it. 1-254; use stop() for FAULT.
   */
  setPriority(priority: number): void;
  /** Another member of the sync group became Master (`master`) or left Master (`backup`): follow it. */
  sync(to: 'master' | 'backup'): void;
  /** A Backup whose Master_Down_Timer fired while its sync group could not go Master (until an advert re-arms it). */
  wantsMaster(): boolean;
}

/** The advert this router sends with `priority`. */
export function advertFor(config: VrrpConfig, priority: number): VrrpPacket {
  const common = { vrid: config.vrid, priority, addresses: config.addresses };
  return config.version === 3
    ? { ...common, version: 3, maxAdvertIntervalCs: config.advertIntervalCs }
    : { ...common, version: 2, advertIntervalSec: config.advertIntervalCs / 100, auth: config.auth };
}

/** Drops that are normal on a shared LAN (other virtual routers, our own multicast): counted, never warned. */
const NORMAL_DROPS: ReadonlySet<DropReason> = new Set<DropReason>(['other-vrid', 'own-advert']);

/** At most one drop warning per reason per interval: a misconfigured peer must not flood the log. */
export const DROP_LOG_INTERVAL_MS = 10_000;

/**
 * Rate limiter for drop warnings: returns how many drops of `reason` to report now (the first one at once,
 * then the count since the last report, at most once per `intervalMs`), or `undefined` to stay quiet.
 */
export function createDropLogLimiter(
  intervalMs: number,
): (reason: DropReason, now: number) => number | undefined {
  const last = new Map<DropReason, { at: number; pending: number }>();
  return (reason, now) => {
    const entry = last.get(reason);
    if (entry === undefined || now - entry.at >= intervalMs) {
      const count = (entry?.pending ?? 0) + 1;
      last.set(reason, { at: now, pending: 0 });
      return count;
    }
    entry.pending++;
    return undefined;
  };
}

/** How long stop() waits for queued adverts (priority 0 first) before it releases the VIPs anyway. */
const STOP_TIMEOUT_MS = 3000;

export function createVrrpInstance(options: VrrpInstanceOptions): VrrpInstance {
  const { transport, vips, clock } = options;
  let config = options.config;
  const log = options.logger.child({ vrid: config.vrid });
  let state = initialState(config);
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  let running = false;
  let wantsMaster = false;
  // Two ordered queues: adverts never wait for a slow VIP change (a GARP can take a second, longer than a
  // Backup's Master_Down_Interval at advert 0.1 s), while a VIP change waits for the adverts queued before it
  // (so priority 0 is on the wire before the VIPs go).
  let adverts: Promise<void> = Promise.resolve();
  let vipChanges: Promise<void> = Promise.resolve();
  const counters: VrrpCounters = {
    advertsSent: 0,
    advertsReceived: 0,
    sendErrors: 0,
    vipErrors: 0,
    transitions: 0,
    dropped: {},
  };
  const dropLog = createDropLogLimiter(DROP_LOG_INTERVAL_MS);
  const drop = (reason: DropReason, from?: string): void => {
    counters.dropped[reason] = (counters.dropped[reason] ?? 0) + 1;
    if (NORMAL_DROPS.has(reason)) return;
    const count = dropLog(reason, clock.now());
    if (count !== undefined) log.warn('vrrp packets dropped', { reason, count, from });
  };

  const sendAdvert = async (priority: number): Promise<void> => {
    const packet = advertFor(config, priority);
    for (const dstAddr of transport.destinations) {
      try {
        await transport.send(
          dstAddr,
          encode(packet, { family: config.family, srcAddr: config.primaryAddress, dstAddr }),
        );
        counters.advertsSent++;
      } catch (e) {
        counters.sendErrors++;
        log.warn('vrrp advert not sent', { dstAddr, priority, error: errorMessage(e) });
      }
    }
  };

  const vipCall = async (what: 'claim' | 'release'): Promise<void> => {
    try {
      await (what === 'claim' ? vips.claim() : vips.release());
    } catch (e) {
      counters.vipErrors++;
      log.error('vrrp vip change failed', { action: what, error: errorMessage(e) });
    }
  };

  /**
   * Platform timers may fire a fraction of a millisecond before the monotonic deadline (they count whole
   * milliseconds); the machine ignores a timer that is not due, so re-arm for the rest instead of losing it.
   */
  const armTimer = (at: number): void => {
    if (timer !== undefined) clock.clearTimeout(timer);
    timer = clock.setTimeout(
      () => {
        timer = undefined;
        const now = clock.now();
        if (now < at) armTimer(at);
        else if (state.name === 'backup' && options.mayBecomeMaster?.() === false) {
          wantsMaster = true;
          log.info('vrrp wants Master; its sync group cannot go yet', {});
          options.onWantsMaster?.();
        } else dispatch({ type: 'timer', now });
      },
      Math.ceil(at - clock.now()),
    );
  };

  const perform = (effect: VrrpEffect): void => {
    switch (effect.type) {
      case 'arm-timer':
        // A new deadline (an advert heard, a transition): whatever this Backup wanted is over.
        wantsMaster = false;
        armTimer(effect.at);
        return;
      case 'cancel-timer':
        if (timer !== undefined) clock.clearTimeout(timer);
        timer = undefined;
        return;
      case 'send-advert':
        adverts = adverts.then(() => sendAdvert(effect.priority));
        return;
      case 'claim-vips':
      case 'release-vips': {
        const action = effect.type === 'claim-vips' ? 'claim' : 'release';
        const before = adverts;
        vipChanges = vipChanges.then(() => before).then(() => vipCall(action));
        return;
      }
      case 'notify': {
        counters.transitions++;
        const t: VrrpTransition = { from: effect.from, to: effect.to, reason: effect.reason };
        log.info('vrrp state changed', { ...t });
        options.onTransition?.(t);
        return;
      }
    }
  };

  function dispatch(event: VrrpEvent): void {
    const result = step(config, state, event);
    state = result.state;
    if (result.dropped !== undefined) drop(result.dropped);
    for (const effect of result.effects) perform(effect);
  }

  const onReceive = (received: Received): void => {
    if (!running) return;
    if (!received.ok) return drop(received.reason);
    const { datagram } = received;
    if (config.unicastPeers.length > 0 && !config.unicastPeers.includes(datagram.srcAddr)) {
      return drop('not-a-peer', datagram.srcAddr);
    }
    const decoded = decode(datagram.payload, {
      version: config.version,
      family: config.family,
      srcAddr: datagram.srcAddr,
      dstAddr: datagram.dstAddr,
      ttl: datagram.ttl,
      auth: config.auth,
    });
    if (!decoded.ok) return drop(decoded.reason, datagram.srcAddr);
    counters.advertsReceived++;
    dispatch({ type: 'advert-received', packet: decoded.packet, from: datagram.srcAddr, now: clock.now() });
  };

  return {
    start() {
      if (running) return;
      running = true;
      transport.onReceive(onReceive);
      log.info('vrrp instance started', { priority: config.priority, version: config.version });
      dispatch({ type: 'startup', now: clock.now() });
    },
    async stop() {
      if (running) {
        dispatch({ type: 'shutdown', now: clock.now() });
        running = false;
      }
      // Bounded: a stalled socket (sends time out after 1 s each) must not keep the VIPs on the interface.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settled = await Promise.race([
        Promise.all([adverts, vipChanges]).then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS);
        }),
      ]);
      if (timer !== undefined) clearTimeout(timer);
      if (!settled) {
        log.warn('vrrp adverts stalled while stopping; releasing the VIPs without waiting', {});
        await vipCall('release');
      }
      log.info('vrrp instance stopped', {});
    },
    state: () => state.name,
    counters: () => ({ ...counters, dropped: { ...counters.dropped } }),
    setPriority(priority: number) {
      if (!Number.isInteger(priority) || priority < 1 || priority > 254 || priority === config.priority)
        return;
      log.info('vrrp priority changed', { from: config.priority, to: priority });
      config = { ...config, priority };
      // A Master announces its new priority at once rather than at the next advert.
      if (running && state.name === 'master') adverts = adverts.then(() => sendAdvert(priority));
    },
    sync(to) {
      if (running) dispatch({ type: 'sync', to, now: clock.now() });
    },
    wantsMaster: () => wantsMaster,
  };
}
