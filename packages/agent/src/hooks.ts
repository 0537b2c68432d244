/**
 * Notify hooks (keepalived's notify_master/notify_backup/notify_fault/notify_stop and notify): operator commands
 * run on every state transition, strictly in the order the transitions happened, one at a time, each with a
 * timeout, and never holding up the state machine that reported the transition.
 */
import { errorMessage, type Logger } from '@coord/core';
import { runCommand, type CommandRunner, type RunResult } from './runner.js';

/** The states a hook can be configured for. */
export type HookState = 'leader' | 'follower' | 'fault' | 'stop';

export interface Transition {
  readonly state: HookState;
  /** `init` for the first transition after start. */
  readonly previous: HookState | 'init';
  readonly group: string;
  readonly vips: readonly string[];
  readonly node: string;
  readonly epoch: number | null;
  readonly reason: string;
}

/** argv per state; `any` runs after the state's own hook on every transition. */
export interface HookCommands {
  readonly any?: readonly string[];
  readonly leader?: readonly string[];
  readonly follower?: readonly string[];
  readonly fault?: readonly string[];
  readonly stop?: readonly string[];
}

export interface HookRunnerOptions {
  readonly hooks: HookCommands;
  readonly timeoutMs: number;
  readonly logger: Logger;
  readonly run?: CommandRunner;
  /** Pending transitions kept at most; beyond it the oldest pending is dropped. Default 100. */
  readonly maxPending?: number;
  readonly cwd?: string;
}

export interface HookStats {
  /** Transitions reported (the last sequence number given out). */
  readonly notified: number;
  /** Hook commands run, and of those how many failed (including timeouts) and timed out. */
  readonly ran: number;
  readonly failed: number;
  readonly timedOut: number;
  /** Transitions dropped unrun because the queue was full. */
  readonly dropped: number;
  readonly pending: number;
  readonly running: boolean;
}

export interface HookRunner {
  /** Queue the hooks for `t` and return at once. */
  notify(t: Transition): void;
  /** Resolves once everything queued so far (and anything queued meanwhile) has run. */
  drain(): Promise<void>;
  stats(): HookStats;
}

export const DEFAULT_MAX_PENDING_HOOKS = 100;

/** The environment a hook sees (added to the agent's own). */
export function hookEnv(t: Transition, seq: number): Record<string, string> {
  return {
    COORD_STATE: t.state,
    COORD_PREVIOUS_STATE: t.previous,
    COORD_GROUP: t.group,
    COORD_VIPS: t.vips.join(' '),
    COORD_NODE: t.node,
    COORD_EPOCH: t.epoch === null ? '' : String(t.epoch),
    COORD_SEQ: String(seq),
    COORD_REASON: t.reason,
  };
}

interface Job {
  readonly t: Transition;
  readonly seq: number;
}

/**
 * A FIFO of transitions served by one worker, so hooks can never run out of order or concurrently (keepalived
 * forks each notify script independently, and they can finish — and act — out of order: keepalived #1884).
 * Each transition carries COORD_SEQ, increasing per node, so a hook can also discard anything stale itself.
 * When the queue overflows, the oldest pending transition goes: the newest state is the one that matters.
 */
export function createHookRunner(opts: HookRunnerOptions): HookRunner {
  const log = opts.logger.child({ component: 'hooks' });
  const run = opts.run ?? runCommand;
  const maxPending = Math.max(1, opts.maxPending ?? DEFAULT_MAX_PENDING_HOOKS);
  const queue: Job[] = [];
  let seq = 0;
  let ran = 0;
  let failed = 0;
  let timedOut = 0;
  let dropped = 0;
  let overflowLogged = false;
  let worker: Promise<void> | null = null;

  const runOne = async (which: keyof HookCommands, argv: readonly string[], job: Job): Promise<void> => {
    let r: RunResult;
    try {
      r = await run(argv, {
        timeoutMs: opts.timeoutMs,
        env: hookEnv(job.t, job.seq),
        ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      });
    } catch (e) {
      r = { ok: false, timedOut: false, durationMs: 0, stderrTail: errorMessage(e) };
    }
    ran++;
    const fields = {
      hook: which,
      seq: job.seq,
      group: job.t.group,
      state: job.t.state,
      durationMs: r.durationMs,
    };
    if (r.ok) {
      log.debug('hook ran', fields);
      return;
    }
    failed++;
    if (r.timedOut) timedOut++;
    log.warn(r.timedOut ? 'hook timed out' : 'hook failed', {
      ...fields,
      command: argv[0],
      exitCode: r.exitCode,
      signal: r.signal,
      timedOut: r.timedOut,
      stderr: r.stderrTail,
    });
  };

  const work = async (): Promise<void> => {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) {
      if (queue.length === 0) overflowLogged = false;
      const own = opts.hooks[job.t.state];
      if (own !== undefined && own.length > 0) await runOne(job.t.state, own, job);
      const any = opts.hooks.any;
      if (any !== undefined && any.length > 0) await runOne('any', any, job);
    }
  };

  const kick = (): void => {
    if (worker !== null) return;
    // Start on a later tick: spawning is synchronous work the caller of notify() must not pay for.
    worker = Promise.resolve()
      .then(work)
      .catch((e: unknown) => log.error('hook worker failed', { error: errorMessage(e) }))
      .finally(() => {
        worker = null;
        if (queue.length > 0) kick();
      });
  };

  return {
    notify(t) {
      seq++;
      const own = opts.hooks[t.state];
      const hasHook = (own !== undefined && own.length > 0) || (opts.hooks.any?.length ?? 0) > 0;
      if (!hasHook) return;
      if (queue.length >= maxPending) {
        const lost = queue.shift();
        dropped++;
        if (!overflowLogged) {
          overflowLogged = true;
          log.warn('hook queue full, dropping oldest', { maxPending, droppedSeq: lost?.seq });
        }
      }
      queue.push({ t, seq });
      kick();
    },
    async drain() {
      while (worker !== null) await worker;
    },
    stats: () => ({
      notified: seq,
      ran,
      failed,
      timedOut,
      dropped,
      pending: queue.length,
      running: worker !== null,
    }),
  };
}
