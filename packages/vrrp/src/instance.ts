/**
 * The VRRP runner: feeds received adverts and timers into the pure {@link step} and turns its effects into I/O
 * (adverts through a {@link VrrpTransport}, VIPs through a {@link VipPort}, timers through the `Clock`).
 * Effects run strictly in order on one queue, so "priority 0 sent, then VIPs released" holds on the wire.
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
}

export interface VrrpInstance {
  start(): void;
  /** RFC 5798 §6.4.3 shutdown: a Master sends priority 0, then releases its VIPs. Resolves when both are done. */
  stop(): Promise<void>;
  state(): VrrpStateName;
  counters(): VrrpCounters;
}

/** The advert this router sends with `priority`. */
export function advertFor(config: VrrpConfig, priority: number): VrrpPacket {
  const common = { vrid: config.vrid, priority, addresses: config.addresses };
  return config.version === 3
    ? { ...common, version: 3, maxAdvertIntervalCs: config.advertIntervalCs }
    : { ...common, version: 2, advertIntervalSec: config.advertIntervalCs / 100, auth: config.auth };
}

export function createVrrpInstance(options: VrrpInstanceOptions): VrrpInstance {
  const { config, transport, vips, clock } = options;
  const log = options.logger.child({ vrid: config.vrid });
  let state = initialState(config);
  let timer: ReturnType<Clock['setTimeout']> | undefined;
  let running = false;
  let queue: Promise<void> = Promise.resolve();
  const counters: VrrpCounters = {
    advertsSent: 0,
    advertsReceived: 0,
    sendErrors: 0,
    vipErrors: 0,
    transitions: 0,
    dropped: {},
  };
  const drop = (reason: DropReason): void => {
    counters.dropped[reason] = (counters.dropped[reason] ?? 0) + 1;
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
        else dispatch({ type: 'timer', now });
      },
      Math.ceil(at - clock.now()),
    );
  };

  const perform = (effect: VrrpEffect): void => {
    switch (effect.type) {
      case 'arm-timer':
        armTimer(effect.at);
        return;
      case 'cancel-timer':
        if (timer !== undefined) clock.clearTimeout(timer);
        timer = undefined;
        return;
      case 'send-advert':
        queue = queue.then(() => sendAdvert(effect.priority));
        return;
      case 'claim-vips':
        queue = queue.then(() => vipCall('claim'));
        return;
      case 'release-vips':
        queue = queue.then(() => vipCall('release'));
        return;
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
    if (config.unicastPeers.length > 0 && !config.unicastPeers.includes(datagram.srcAddr))
      return drop('not-a-peer');
    const decoded = decode(datagram.payload, {
      version: config.version,
      family: config.family,
      srcAddr: datagram.srcAddr,
      dstAddr: datagram.dstAddr,
      ttl: datagram.ttl,
      auth: config.auth,
    });
    if (!decoded.ok) {
      drop(decoded.reason);
      log.debug('vrrp packet dropped', { reason: decoded.reason, from: datagram.srcAddr });
      return;
    }
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
      await queue;
      log.info('vrrp instance stopped', {});
    },
    state: () => state.name,
    counters: () => ({ ...counters, dropped: { ...counters.dropped } }),
  };
}
