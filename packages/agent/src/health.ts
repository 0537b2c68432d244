import type { Clock, Logger, NodeConfig } from '@coord/core';
import { watchLinks } from '@coord/vip';
import { createHookRunner, type HookRunner, type HookState } from './hooks.js';
import type { Metrics } from './metrics.js';
import { parseCommand, type RunResult } from './runner.js';
import { createTracker, effectivePriority, type Tracker } from './track.js';

/** What health tracking needs from a node: publish a group's effective priority (0 = fault). */
export interface PriorityTarget {
  setEffectivePriority(group: string, priority: number): void;
}

/** Why a check's last run failed, in words (undefined: it passed, or has not run). */
function lastErrorOf(last: RunResult | undefined): string | undefined {
  if (last === undefined || last.ok) return undefined;
  if (last.timedOut) return `timed out after ${last.durationMs} ms`;
  if (last.stderrTail !== '') return last.stderrTail;
  return `exit code ${last.exitCode ?? last.signal ?? '?'}`;
}

/**
 * Track scripts and interfaces (one tracker for the node) and turn their verdicts into each group's effective
 * priority: weights move it, a failing check without weight puts the group in FAULT (priority 0).
 */
/** One group's health verdict, as `coord status --local` shows it. */
export interface GroupHealth {
  readonly group: string;
  readonly priority: number;
  readonly fault: boolean;
  readonly reasons: readonly string[];
}

/** The node's tracker, plus `recompute()` after a config reload changed the base priorities. */
export interface Health extends Tracker {
  recompute(): void;
  /**
   * The checks failing now, each with why (`script chk: exit code 1`), worded so that the same failure reads the
   * same every run: published in the node's status record, which is rewritten only when it changes.
   */
  failing(): string[];
  /** Every check's last result and every group's verdict (for the local status). */
  report(): {
    checks: {
      kind: string;
      name: string;
      healthy: boolean;
      weight?: number;
      runs?: number;
      failures?: number;
      lastError?: string;
    }[];
    groups: GroupHealth[];
  };
}

export function attachHealth(opts: {
  config: NodeConfig;
  /** The config in force now (a reload may change base priorities); defaults to `config`. */
  current?: () => NodeConfig;
  target: PriorityTarget;
  clock: Clock;
  logger: Logger;
  metrics?: Metrics;
  onFault?: (group: string, fault: boolean, reasons: readonly string[]) => void;
}): Health | undefined {
  const { config } = opts;
  if (config.track.scripts.length === 0 && config.track.interfaces.length === 0) return undefined;
  const log = opts.logger.child({ component: 'track' });
  const faulted = new Map<string, boolean>();
  const verdicts = new Map<string, GroupHealth>();
  const apply = (announce = true) => {
    const results = tracker.results();
    for (const r of results) opts.metrics?.trackResult.set({ check: r.name }, r.healthy ? 1 : 0);
    const checks = results.map((r) => ({
      name: r.name,
      healthy: r.healthy,
      ...(r.weight === undefined ? {} : { weight: r.weight }),
    }));
    for (const g of (opts.current ?? (() => config))().groups) {
      const o = effectivePriority(g.priority, checks);
      verdicts.set(g.name, {
        group: g.name,
        priority: o.fault ? 0 : o.priority,
        fault: o.fault,
        reasons: o.reasons,
      });
      opts.target.setEffectivePriority(g.name, o.fault ? 0 : o.priority);
      if ((faulted.get(g.name) ?? false) !== o.fault) {
        faulted.set(g.name, o.fault);
        // At start, checks begin failed until their first run: hold the group back quietly, no hook.
        if (!announce) continue;
        log.info(o.fault ? 'group faulted' : 'group recovered', { group: g.name, reasons: o.reasons });
        opts.onFault?.(g.name, o.fault, o.reasons);
      }
    }
  };
  const tracker = createTracker({
    scripts: config.track.scripts.map((t) => ({
      name: t.name,
      argv: parseCommand(t.command),
      intervalMs: t.intervalMs,
      timeoutMs: t.timeoutMs,
      rise: t.rise,
      fall: t.fall,
      ...(t.weight === undefined ? {} : { weight: t.weight }),
    })),
    interfaces: config.track.interfaces.map((i) => ({
      name: i.name,
      ...(i.weight === undefined ? {} : { weight: i.weight }),
    })),
    base: config.groups[0]?.priority ?? 100,
    clock: opts.clock,
    logger: log,
    links: watchLinks,
    onChange: () => apply(),
  });
  // Scripts start failed (one success from healthy): no group campaigns before its checks ran once.
  return {
    start() {
      tracker.start();
      apply(false);
    },
    stop: () => tracker.stop(),
    current: () => tracker.current(),
    results: () => tracker.results(),
    recompute: () => apply(),
    failing: () =>
      tracker
        .results()
        .filter((r) => !r.healthy)
        .map((r) => {
          const why =
            r.last?.timedOut === true
              ? 'timed out'
              : (lastErrorOf(r.last) ?? (r.kind === 'interface' ? 'down' : 'not run yet'));
          return `${r.kind} ${r.name}: ${why}`.slice(0, 300);
        }),
    report: () => ({
      checks: tracker.results().map((r) => {
        const lastError = lastErrorOf(r.last);
        return {
          kind: r.kind,
          name: r.name,
          healthy: r.healthy,
          ...(r.weight === undefined ? {} : { weight: r.weight }),
          ...(r.runs === undefined ? {} : { runs: r.runs }),
          ...(r.failures === undefined ? {} : { failures: r.failures }),
          ...(lastError === undefined ? {} : { lastError }),
        };
      }),
      groups: [...verdicts.values()],
    }),
  };
}

/** Ordered notify hooks for a node's transitions, with the previous state remembered per group. */
export function attachHooks(opts: { config: NodeConfig; logger: Logger }):
  | {
      runner: HookRunner;
      notify(group: string, state: HookState, reason: string, epoch: number | null): void;
    }
  | undefined {
  const n = opts.config.notify;
  const hooks = {
    ...(n.any === undefined ? {} : { any: parseCommand(n.any) }),
    ...(n.leader === undefined ? {} : { leader: parseCommand(n.leader) }),
    ...(n.follower === undefined ? {} : { follower: parseCommand(n.follower) }),
    ...(n.fault === undefined ? {} : { fault: parseCommand(n.fault) }),
    ...(n.stop === undefined ? {} : { stop: parseCommand(n.stop) }),
  };
  if (Object.keys(hooks).length === 0) return undefined;
  const runner = createHookRunner({
    hooks,
    timeoutMs: n.timeoutMs,
    logger: opts.logger.child({ component: 'notify' }),
  });
  const previous = new Map<string, HookState>();
  return {
    runner,
    notify(group, state, reason, epoch) {
      const prev = previous.get(group);
      if (prev === state) return;
      previous.set(group, state);
      const g = opts.config.groups.find((x) => x.name === group);
      runner.notify({
        state,
        previous: prev ?? 'init',
        group,
        vips: (g?.vips ?? []).map((v) => `${v.address}/${v.prefix}`),
        node: opts.config.node,
        epoch,
        reason,
      });
    },
  };
}
