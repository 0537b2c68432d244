/**
 * The VRRP router state machine of RFC 5798 §6.4 (and RFC 3768 §6.4 for v2), as a pure function.
 *
 * ```
 *                     +------------+
 *        +----------> | Initialize | <-----------+
 *        | shutdown   +------------+   shutdown  |
 *        |     startup |         | startup,      | (sends priority 0,
 *        |             v         | priority 255  |  releases the VIPs)
 *   +--------+  Master_Down_Timer  +--------+
 *   | Backup | ------------------> | Master |
 *   |        | <------------------ |        |
 *   +--------+  higher priority    +--------+
 *               advert (or equal priority, greater address)
 * ```
 *
 * Time is data: every event carries `now` (monotonic ms) and the machine asks for its single timer with an
 * `arm-timer` effect — Adver_Timer while Master, Master_Down_Timer while Backup. The runner does the I/O.
 */
import { ipToBytes } from '@coord/core';
import type { DropReason, VrrpPacket } from './codec.js';
import { advertIntervalCs } from './codec.js';
import type { VrrpConfig } from './config.js';

export type VrrpStateName = 'initialize' | 'backup' | 'master';

export interface VrrpState {
  readonly name: VrrpStateName;
  /** RFC 5798 §6.1 Master_Adver_Interval, centiseconds: learned from the Master's adverts (v3). */
  readonly masterAdverIntervalCs: number;
  /** When the one running timer fires (monotonic ms), or undefined when none runs. */
  readonly timerAt: number | undefined;
}

export type VrrpEvent =
  | { readonly type: 'startup'; readonly now: number }
  | { readonly type: 'shutdown'; readonly now: number }
  | {
      readonly type: 'advert-received';
      readonly packet: VrrpPacket;
      readonly from: string;
      readonly now: number;
    }
  | { readonly type: 'timer'; readonly now: number }
  /**
   * Another member of this instance's sync group (keepalived's vrrp_sync_group) became Master, or left it: this
   * one follows (docs/design.md, "Sync groups").
   */
  | { readonly type: 'sync'; readonly to: 'master' | 'backup'; readonly now: number };

/** Why a state changed; stable strings for logs, events and hooks. */
export type TransitionReason =
  'owner-startup' | 'startup' | 'master-down-timer' | 'higher-priority-advert' | 'shutdown' | 'sync-group';

export type VrrpEffect =
  | { readonly type: 'send-advert'; readonly priority: number }
  | { readonly type: 'claim-vips' }
  | { readonly type: 'release-vips' }
  | { readonly type: 'arm-timer'; readonly at: number }
  | { readonly type: 'cancel-timer' }
  | {
      readonly type: 'notify';
      readonly from: VrrpStateName;
      readonly to: VrrpStateName;
      readonly reason: TransitionReason;
    };

export interface StepResult {
  readonly state: VrrpState;
  readonly effects: readonly VrrpEffect[];
  /** Set when an advert was discarded by a rule of the machine (counted like decoder drops). */
  readonly dropped?: DropReason;
}

/** The state before `startup`. */
export function initialState(config: VrrpConfig): VrrpState {
  return { name: 'initialize', masterAdverIntervalCs: config.advertIntervalCs, timerAt: undefined };
}

/**
 * Skew_Time in ms. RFC 5798 §6.1 (v3): `((256 - Priority) * Master_Adver_Interval) / 256` centiseconds.
 * RFC 3768 §6.1 (v2): `(256 - Priority) / 256` seconds, whatever the interval.
 */
export function skewTimeMs(version: 2 | 3, priority: number, masterAdverIntervalCs: number): number {
  return version === 3
    ? (((256 - priority) * masterAdverIntervalCs) / 256) * 10
    : ((256 - priority) / 256) * 1000;
}

/**
 * Master_Down_Interval in ms. RFC 5798 §6.1 (v3): `(3 * Master_Adver_Interval) + Skew_Time`.
 * RFC 3768 §6.1 (v2): `(3 * Advertisement_Interval) + Skew_Time` (v2 never learns the interval).
 */
export function masterDownIntervalMs(
  version: 2 | 3,
  priority: number,
  masterAdverIntervalCs: number,
): number {
  return 3 * masterAdverIntervalCs * 10 + skewTimeMs(version, priority, masterAdverIntervalCs);
}

/** Is address `a` numerically greater than `b` (RFC 5798 §6.4.3 tie-break on the primary address)? */
export function addressGreater(a: string, b: string): boolean {
  return Buffer.compare(ipToBytes(a), ipToBytes(b)) > 0;
}

function becomeMaster(
  config: VrrpConfig,
  state: VrrpState,
  now: number,
  reason: TransitionReason,
): StepResult {
  const at = now + config.advertIntervalCs * 10;
  return {
    state: { ...state, name: 'master', timerAt: at },
    effects: [
      { type: 'send-advert', priority: config.priority },
      { type: 'claim-vips' },
      { type: 'arm-timer', at },
      { type: 'notify', from: state.name, to: 'master', reason },
    ],
  };
}

function becomeBackup(
  config: VrrpConfig,
  state: VrrpState,
  now: number,
  masterAdverIntervalCs: number,
  reason: TransitionReason,
): StepResult {
  const at = now + masterDownIntervalMs(config.version, config.priority, masterAdverIntervalCs);
  const effects: VrrpEffect[] = [];
  if (state.name === 'master') effects.push({ type: 'release-vips' });
  effects.push({ type: 'arm-timer', at }, { type: 'notify', from: state.name, to: 'backup', reason });
  return { state: { name: 'backup', masterAdverIntervalCs, timerAt: at }, effects };
}

/** Rules every advert must pass before the state cares about it. */
function screen(config: VrrpConfig, packet: VrrpPacket, from: string): DropReason | undefined {
  if (packet.vrid !== config.vrid) return 'other-vrid';
  if (packet.version !== config.version) return 'version-mismatch';
  if (from === config.primaryAddress) return 'own-advert';
  // RFC 3768 §7.1: a v2 router must discard an advert whose interval differs from its own.
  if (packet.version === 2 && advertIntervalCs(packet) !== config.advertIntervalCs)
    return 'advert-interval-mismatch';
  return undefined;
}

/** One transition of the machine: pure, total, never throws. */
export function step(config: VrrpConfig, state: VrrpState, event: VrrpEvent): StepResult {
  const { now } = event;
  const stay: StepResult = { state, effects: [] };
  switch (event.type) {
    case 'startup': {
      if (state.name !== 'initialize') return stay;
      // RFC 5798 §6.4.1: the address owner goes straight to Master.
      if (config.priority === 255) return becomeMaster(config, state, now, 'owner-startup');
      return becomeBackup(config, state, now, config.advertIntervalCs, 'startup');
    }
    case 'shutdown': {
      if (state.name === 'initialize') return stay;
      const effects: VrrpEffect[] = [{ type: 'cancel-timer' }];
      // RFC 5798 §6.4.3: a Master that shuts down sends priority 0 so a Backup takes over after Skew_Time.
      if (state.name === 'master')
        effects.push({ type: 'send-advert', priority: 0 }, { type: 'release-vips' });
      effects.push({ type: 'notify', from: state.name, to: 'initialize', reason: 'shutdown' });
      return { state: { ...state, name: 'initialize', timerAt: undefined }, effects };
    }
    case 'sync': {
      if (event.to === 'master' && state.name === 'backup')
        return becomeMaster(config, state, now, 'sync-group');
      if (event.to === 'backup' && state.name === 'master') {
        // As a shutdown (priority 0, so the peer that became Master of the group takes this one after Skew_Time),
        // but staying a Backup.
        const next = becomeBackup(config, state, now, state.masterAdverIntervalCs, 'sync-group');
        return { state: next.state, effects: [{ type: 'send-advert', priority: 0 }, ...next.effects] };
      }
      return stay;
    }
    case 'timer': {
      if (state.timerAt === undefined || now < state.timerAt) return stay;
      if (state.name === 'backup') return becomeMaster(config, state, now, 'master-down-timer');
      if (state.name === 'master') {
        const at = now + config.advertIntervalCs * 10;
        return {
          state: { ...state, timerAt: at },
          effects: [
            { type: 'send-advert', priority: config.priority },
            { type: 'arm-timer', at },
          ],
        };
      }
      return stay;
    }
    case 'advert-received': {
      if (state.name === 'initialize') return stay;
      const { packet, from } = event;
      const dropped = screen(config, packet, from);
      if (dropped !== undefined) return { ...stay, dropped };
      const learned = config.version === 3 ? advertIntervalCs(packet) : config.advertIntervalCs;
      if (state.name === 'backup') {
        // RFC 5798 §6.4.2: the Master resigned; wait only Skew_Time, so the highest priority Backup wins.
        if (packet.priority === 0) {
          const at = now + skewTimeMs(config.version, config.priority, state.masterAdverIntervalCs);
          return { state: { ...state, timerAt: at }, effects: [{ type: 'arm-timer', at }] };
        }
        if (!config.preempt || packet.priority >= config.priority) {
          const at = now + masterDownIntervalMs(config.version, config.priority, learned);
          return {
            state: { ...state, masterAdverIntervalCs: learned, timerAt: at },
            effects: [{ type: 'arm-timer', at }],
          };
        }
        // Preempt: a lower priority Master is ignored; our Master_Down_Timer will fire.
        return stay;
      }
      // Master, RFC 5798 §6.4.3.
      if (packet.priority === 0) {
        const at = now + config.advertIntervalCs * 10;
        return {
          state: { ...state, timerAt: at },
          effects: [
            { type: 'send-advert', priority: config.priority },
            { type: 'arm-timer', at },
          ],
        };
      }
      if (
        packet.priority > config.priority ||
        (packet.priority === config.priority && addressGreater(from, config.primaryAddress))
      ) {
        return becomeBackup(config, state, now, learned, 'higher-priority-advert');
      }
      return stay;
    }
  }
}
