/**
 * Health tracking (keepalived's track_script and track_interface): checks with rise/fall hysteresis that lower
 * a node's priority or take it out of the election. The rules are pure functions; `createTracker` runs
 * scripts on timers and listens to link events, and only reports when the outcome changes.
 */
import { errorMessage, type Clock, type Logger, type TimerHandle } from '@coord/core';
import { watchLinks, type LinkEvent } from '@coord/vip';
import { runCommand, type CommandRunner, type RunResult } from './runner.js';

/** Hysteresis of one check: `rise` consecutive successes to become healthy, `fall` failures to become failed. */
export interface TrackConfig {
  readonly rise: number;
  readonly fall: number;
}

/**
 * `streak` counts consecutive probe results that disagree with `healthy` (successes while failed, failures
 * while healthy); it is 0 whenever the last result agreed.
 */
export interface TrackState {
  readonly healthy: boolean;
  readonly streak: number;
}

/**
 * Where a check starts: failed, but one success away from healthy (keepalived's initial `rise - 1`).
 *
 * Starting failed means a node that has just booted does not claim a VIP before its checks have run once
 * (a weightless check keeps it in FAULT; a weighted one keeps its priority down). One success is enough at
 * start because there is no history to smooth yet; a first failure resets the streak, and from then on the
 * node needs the full `rise`, as keepalived does.
 */
export function initialTrackState(cfg: TrackConfig): TrackState {
  return { healthy: false, streak: Math.max(0, cfg.rise - 1) };
}

/** One probe result through the hysteresis. rise/fall below 1 count as 1. */
export function trackStep(cfg: TrackConfig, state: TrackState, probeOk: boolean): TrackState {
  if (probeOk === state.healthy) return state.streak === 0 ? state : { healthy: state.healthy, streak: 0 };
  const streak = state.streak + 1;
  const needed = Math.max(1, state.healthy ? cfg.fall : cfg.rise);
  return streak >= needed ? { healthy: probeOk, streak: 0 } : { healthy: state.healthy, streak };
}

export interface CheckStatus {
  /** For reasons; defaults to `check #i`. */
  readonly name?: string;
  readonly weight?: number;
  readonly healthy: boolean;
}

export interface TrackOutcome {
  readonly priority: number;
  /** The node must not hold the VIP and must leave the election. */
  readonly fault: boolean;
  /** One line per check that is failing, for logs, status and notify hooks. */
  readonly reasons: readonly string[];
}

export const MIN_PRIORITY = 1;
export const MAX_PRIORITY = 254;

/**
 * Combine a base priority with the checks, with keepalived's sign rule: a negative weight is added while the
 * check fails, a positive weight is added while it succeeds; no weight (or 0) means a failure is FAULT. The
 * result is clamped to 1..254, so a weighted failure never takes the node out of the election by itself.
 */
export function effectivePriority(base: number, checks: readonly CheckStatus[]): TrackOutcome {
  let priority = base;
  let fault = false;
  const reasons: string[] = [];
  checks.forEach((c, i) => {
    const name = c.name ?? `check #${i}`;
    const w = c.weight ?? 0;
    if (c.healthy) {
      if (w > 0) priority += w;
      return;
    }
    if (w === 0) {
      fault = true;
      reasons.push(`${name} failed (fault)`);
    } else if (w < 0) {
      priority += w;
      reasons.push(`${name} failed (weight ${w})`);
    } else {
      reasons.push(`${name} failed (bonus ${w} withheld)`);
    }
  });
  priority = Math.min(MAX_PRIORITY, Math.max(MIN_PRIORITY, Math.round(priority)));
  return { priority, fault, reasons };
}

export interface TrackScript {
  readonly name: string;
  readonly argv: readonly string[];
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  readonly weight?: number;
}

export interface TrackInterface {
  readonly name: string;
  readonly weight?: number;
}

/** How the tracker hears about links; `watchLinks` from @coord/vip fits (it reports current state first). */
export type LinkWatcher = (onEvent: (e: LinkEvent) => void, opts: { logger: Logger }) => { close(): void };

export interface TrackerOptions {
  readonly scripts: readonly TrackScript[];
  readonly interfaces: readonly TrackInterface[];
  readonly base: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called when priority or fault changes (not when only the reasons do). */
  readonly onChange: (r: TrackOutcome) => void;
  readonly run?: CommandRunner;
  readonly links?: LinkWatcher;
}

export interface CheckReport {
  readonly kind: 'script' | 'interface';
  readonly name: string;
  readonly healthy: boolean;
  readonly weight?: number;
  /** Scripts: consecutive results against the current state. */
  readonly streak?: number;
  /** Scripts: completed runs and how many failed. */
  readonly runs?: number;
  readonly failures?: number;
  readonly last?: RunResult;
  /** Interfaces: the last link event seen, if any. */
  readonly link?: LinkEvent;
}

export interface Tracker {
  start(): void;
  stop(): void;
  current(): TrackOutcome;
  results(): CheckReport[];
}

interface ScriptSlot {
  readonly spec: TrackScript;
  state: TrackState;
  timer: TimerHandle | null;
  running: boolean;
  runs: number;
  failures: number;
  last: RunResult | undefined;
}

interface LinkSlot {
  readonly spec: TrackInterface;
  healthy: boolean;
  link: LinkEvent | undefined;
}

/**
 * Run the checks and report the effective priority. Scripts run every `intervalMs` measured start to start,
 * never overlapping (a slow run delays the next one); the first runs at `start()`. Interfaces start failed and
 * follow link events directly: up with carrier is healthy, anything else (including a deleted or missing
 * interface) is failed — the kernel's event already is the debounced fact, so no rise/fall applies.
 */
export function createTracker(opts: TrackerOptions): Tracker {
  const log = opts.logger.child({ component: 'track' });
  const run = opts.run ?? runCommand;
  const links: LinkWatcher = opts.links ?? ((onEvent, o) => watchLinks(onEvent, { logger: o.logger }));
  const scripts: ScriptSlot[] = opts.scripts.map((spec) => ({
    spec,
    state: initialTrackState(spec),
    timer: null,
    running: false,
    runs: 0,
    failures: 0,
    last: undefined,
  }));
  const ifaces: LinkSlot[] = opts.interfaces.map((spec) => ({ spec, healthy: false, link: undefined }));
  let started = false;
  let stopped = false;
  let watcher: { close(): void } | null = null;

  const compute = (): TrackOutcome =>
    effectivePriority(opts.base, [
      ...scripts.map((s) =>
        withWeight({ name: `script ${s.spec.name}`, healthy: s.state.healthy }, s.spec.weight),
      ),
      ...ifaces.map((l) =>
        withWeight({ name: `interface ${l.spec.name}`, healthy: l.healthy }, l.spec.weight),
      ),
    ]);
  let outcome = compute();

  const reevaluate = (): void => {
    const next = compute();
    const changed = next.priority !== outcome.priority || next.fault !== outcome.fault;
    outcome = next;
    if (!changed || stopped) return;
    log.info('track outcome changed', { priority: next.priority, fault: next.fault, reasons: next.reasons });
    try {
      opts.onChange(next);
    } catch (e) {
      log.error('track onChange failed', { error: errorMessage(e) });
    }
  };

  const schedule = (slot: ScriptSlot, delayMs: number): void => {
    if (stopped) return;
    slot.timer = opts.clock.setTimeout(() => {
      slot.timer = null;
      void probe(slot);
    }, delayMs);
  };

  const probe = async (slot: ScriptSlot): Promise<void> => {
    if (stopped || slot.running) return;
    slot.running = true;
    const began = opts.clock.now();
    let result: RunResult;
    try {
      result = await run(slot.spec.argv, { timeoutMs: slot.spec.timeoutMs });
    } catch (e) {
      result = {
        ok: false,
        timedOut: false,
        durationMs: opts.clock.now() - began,
        stderrTail: errorMessage(e),
      };
    }
    slot.running = false;
    if (stopped) return;
    slot.runs++;
    slot.last = result;
    if (!result.ok) {
      slot.failures++;
      log.debug('track script failed', {
        script: slot.spec.name,
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        stderr: result.stderrTail,
      });
    }
    const before = slot.state;
    slot.state = trackStep(slot.spec, before, result.ok);
    if (slot.runs === 1 && !result.ok && !slot.state.healthy) {
      // Scripts start failed, so a check that never passes would never log a change: say it once, loudly.
      log.warn('track script failing from the start', {
        script: slot.spec.name,
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        stderr: result.stderrTail,
      });
    }
    if (slot.state.healthy !== before.healthy) {
      const fields = {
        script: slot.spec.name,
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        stderr: result.stderrTail,
      };
      if (slot.state.healthy) log.info('track script succeeded', fields);
      else log.warn('track script failed', fields);
      reevaluate();
    }
    schedule(slot, Math.max(0, slot.spec.intervalMs - (opts.clock.now() - began)));
  };

  const onLink = (e: LinkEvent): void => {
    if (stopped) return;
    let changed = false;
    for (const slot of ifaces) {
      if (slot.spec.name !== e.iface) continue;
      slot.link = e;
      const healthy = e.up && e.carrier;
      if (healthy === slot.healthy) continue;
      slot.healthy = healthy;
      changed = true;
      const fields = { iface: e.iface, up: e.up, carrier: e.carrier };
      if (healthy) log.info('tracked interface up', fields);
      else log.warn('tracked interface down', fields);
    }
    if (changed) reevaluate();
  };

  return {
    start() {
      if (started || stopped) return;
      started = true;
      if (ifaces.length > 0) watcher = links(onLink, { logger: log });
      for (const slot of scripts) schedule(slot, 0);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      for (const slot of scripts) {
        if (slot.timer !== null) opts.clock.clearTimeout(slot.timer);
        slot.timer = null;
      }
      watcher?.close();
      watcher = null;
    },
    current: () => outcome,
    results: () => [
      ...scripts.map((s): CheckReport => ({
        kind: 'script',
        name: s.spec.name,
        healthy: s.state.healthy,
        ...(s.spec.weight === undefined ? {} : { weight: s.spec.weight }),
        streak: s.state.streak,
        runs: s.runs,
        failures: s.failures,
        ...(s.last === undefined ? {} : { last: s.last }),
      })),
      ...ifaces.map((l): CheckReport => ({
        kind: 'interface',
        name: l.spec.name,
        healthy: l.healthy,
        ...(l.spec.weight === undefined ? {} : { weight: l.spec.weight }),
        ...(l.link === undefined ? {} : { link: l.link }),
      })),
    ],
  };
}

function withWeight(c: { name: string; healthy: boolean }, weight: number | undefined): CheckStatus {
  return weight === undefined ? c : { ...c, weight };
}
