import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoordError, errorMessage, type Clock, type Logger } from '@coord/core';
import { DEFAULT_DEBOUNCE, Debouncer, type DebounceConfig } from './debounce.js';
import { installConfig, markGood, readFileOrUndefined, restoreLastGood, validateConfig } from './files.js';
import { checkServiceSet, type Service, type ValidationError } from './model.js';
import { parseServerSessions, socketCommand } from './master.js';
import { configHash, gateSocketPath, render, validateGlobals, type RenderGlobals } from './render.js';
import { runtimePlan, type RuntimeCommand } from './runtime.js';
import {
  attachMaster,
  liveHaproxyPid,
  reloadMaster,
  startMaster,
  stopMaster,
  type MasterPaths,
} from './supervisor.js';

/**
 * The HAProxy side of "services in etcd → traffic": render, check, swap, reload, confirm, roll back. The etcd
 * watch calls `apply` with the whole desired service set on every change; bursts are debounced and an unchanged
 * config causes no reload.
 */

export type ApplyOutcome = 'applied' | 'unchanged' | 'invalid' | 'reload-failed' | 'rolled-back';

export interface ApplyResult {
  result: ApplyOutcome;
  /** Hash of the config that was (or would have been) applied. */
  hash: string;
  error?: string;
  /** From the debounced run's start to the confirmed reload. */
  durationMs: number;
  /** Of which `haproxy -c` took this long (0 when it did not run): tells a slow check from a slow reload. */
  checkMs?: number;
  /**
   * Of which the reload took this long: saving the server state, the master's reload, the new worker confirmed
   * (or the master's start when none ran).
   */
  reloadMs?: number;
  /**
   * How an 'applied' config reached HAProxy: `runtime` (server changes through the runtime API, no reload),
   * `reload`, or `start` (no master was running).
   */
  via?: 'runtime' | 'reload' | 'start';
  /** A server change the runtime API refused, applied by a reload instead: why. */
  runtimeFallback?: string;
  /** `haproxy -c` had passed this exact text moments before ({@link HaproxyDriver.prevalidate}): not run again. */
  prevalidated?: boolean;
  /**
   * The revision of the newest request this run applied (`ApplyMeta.revision`). Every request coalesced into one
   * run is resolved with the same result object.
   */
  revision?: number;
}

/** Where a service set came from, for logs (e.g. the etcd revision it was read at). */
export interface ApplyMeta {
  revision?: number;
  reason?: string;
  /** Skip the quiet window (a node's turn in a rolling rollout: the change is known, others wait on it). */
  now?: boolean;
}

export interface DriverStatus {
  running: boolean;
  masterPid: number | undefined;
  /** Hash of the config HAProxy is running. */
  hash: string | undefined;
  pending: boolean;
  reloads: number;
  /** Applies made through the runtime API alone (no reload). */
  runtimeApplies: number;
  last: ApplyResult | undefined;
  lastError: string | undefined;
}

export interface HaproxyDriverOptions {
  configPath: string;
  /** Node-local base config file (never from etcd), inserted into every render. */
  basePath?: string;
  haproxyBin: string;
  /** Master socket, pidfile, HAProxy's log and the applied-hash record live here. */
  runDir: string;
  logger: Logger;
  clock: Clock;
  globals?: RenderGlobals;
  debounce?: DebounceConfig;
  /**
   * Checks the model against this node before `haproxy -c` (e.g. `bindPreflight` from preflight.ts); problems make the
   * apply 'invalid' without touching HAProxy.
   */
  preflight?: (services: readonly Service[]) => Promise<ValidationError[]>;
  /** Bound on `haproxy -c`, start and reload confirmation. */
  timeoutMs?: number;
  /** Apply server-only changes through the runtime API instead of a reload (default true). */
  runtimeApi?: boolean;
}

export interface HaproxyDriver {
  apply(services: readonly Service[], meta?: ApplyMeta): Promise<ApplyResult>;
  /**
   * Run `haproxy -c` on what `services` would render to, without applying it, so an apply of the same text soon
   * after skips it (a node waiting for its turn in a rolling rollout). Never throws; false when it does not pass.
   */
  prevalidate(services: readonly Service[]): Promise<boolean>;
  status(): DriverStatus;
  /**
   * Current sessions of every server of the running worker (`show stat` scur), by `service/server`; undefined
   * when HAProxy does not answer.
   */
  serverSessions(): Promise<Map<string, number> | undefined>;
  /** This node's own way into the running worker's frontend of `service` (render.ts), if it has one. */
  gateSocket(service: string): string | undefined;
  /** Stop the driver (timers, pending applies). HAProxy keeps running so traffic survives a coord restart. */
  stop(): Promise<void>;
  /** Stop HAProxy itself (soft stop). For uninstall and tests, not for a coord restart. */
  stopHaproxy(options?: { hard?: boolean }): Promise<boolean>;
}

interface Pending {
  services: readonly Service[];
  meta: ApplyMeta;
  waiters: ((r: ApplyResult) => void)[];
}

export function createHaproxyDriver(options: HaproxyDriverOptions): HaproxyDriver {
  const globals: RenderGlobals = {
    statsSocket: join(options.runDir, 'stats.sock'),
    serverStateFile: join(options.runDir, 'server-state'),
    gateSocketDir: join(options.runDir, 'gate'),
    ...(options.globals ?? {}),
  };
  const globalErrors = validateGlobals(globals);
  if (globalErrors.length > 0) {
    throw new CoordError('ERR_COORD_CONFIG', 'invalid HAProxy globals', {
      hint: 'fix the haproxy section of the node config',
      details: { errors: globalErrors },
    });
  }
  const { clock } = options;
  const log = options.logger.child({ component: 'haproxy' });
  const timeoutMs = options.timeoutMs ?? 10_000;
  const paths: MasterPaths = {
    haproxyBin: options.haproxyBin,
    configPath: options.configPath,
    masterSocket: join(options.runDir, 'master.sock'),
    pidFile: join(options.runDir, 'haproxy.pid'),
    logFile: join(options.runDir, 'haproxy.log'),
  };
  const hashFile = join(options.runDir, 'applied.sha256');

  let pending: Pending | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  let masterPid: number | undefined;
  let appliedHash: string | undefined;
  let attached = false;
  let reloads = 0;
  let runtimeApplies = 0;
  /** The services and base text HAProxy runs now, when this process applied them (runtime changes start here). */
  let serving: { services: readonly Service[]; base: string | undefined } | undefined;
  let last: ApplyResult | undefined;
  let lastError: string | undefined;
  /** Texts `haproxy -c` passed ahead of their apply, by hash, with when (trusted for PREVALIDATED_MS). */
  const prevalidated = new Map<string, number>();
  const PREVALIDATED_MS = 120_000;

  const debouncer = new Debouncer(clock, options.debounce ?? DEFAULT_DEBOUNCE, () => {
    kick();
  });

  /** Re-attach to a master a previous coord process started; trust its recorded hash only if the file matches. */
  async function ensureAttached(): Promise<void> {
    if (attached) return;
    await mkdir(options.runDir, { recursive: true });
    if (globals.gateSocketDir !== undefined)
      await mkdir(globals.gateSocketDir, { recursive: true, mode: 0o700 });
    const a = await attachMaster(paths);
    if (a.ok) {
      masterPid = a.pid;
      const onDisk = await readFileOrUndefined(paths.configPath);
      const recorded = (await readFileOrUndefined(hashFile))?.trim();
      appliedHash = onDisk !== undefined && recorded === configHash(onDisk) ? recorded : undefined;
      // The running master confirmed this file when it was applied: it is the one to roll back to.
      if (appliedHash !== undefined && onDisk !== undefined) await markGood(paths.configPath, onDisk);
      log.info('haproxy master re-attached', { pid: a.pid, hash: appliedHash });
    }
    attached = true;
  }

  async function masterAlive(): Promise<boolean> {
    const a = await attachMaster(paths);
    masterPid = a.ok ? a.pid : undefined;
    return a.ok;
  }

  async function runOnce(services: readonly Service[], meta: ApplyMeta): Promise<ApplyResult> {
    const started = clock.now();
    let checkMs = 0;
    let reloadMs: number | undefined;
    let via: ApplyResult['via'];
    let runtimeFallback: string | undefined;
    let prevalidatedRun = false;
    const done = (result: ApplyOutcome, hash: string, error?: string): ApplyResult => ({
      result,
      hash,
      ...(error === undefined ? {} : { error }),
      durationMs: clock.now() - started,
      checkMs,
      ...(reloadMs === undefined ? {} : { reloadMs }),
      ...(via === undefined ? {} : { via }),
      ...(runtimeFallback === undefined ? {} : { runtimeFallback }),
      ...(prevalidatedRun ? { prevalidated: true } : {}),
    });

    await ensureAttached();
    const setErrors = checkServiceSet(services);
    let base: string | undefined;
    if (options.basePath !== undefined) {
      base = await readFileOrUndefined(options.basePath);
      if (base === undefined) return done('invalid', '', `base config ${options.basePath} is missing`);
    }
    const text = render({ services, globals, ...(base === undefined ? {} : { base }) });
    const hash = configHash(text);
    if (setErrors.length > 0)
      return done('invalid', hash, setErrors.map((e) => `${e.path}: ${e.message}`).join('; '));

    const up = await masterAlive();
    if (up && hash === appliedHash) return done('unchanged', hash);
    if (!up) {
      // Its socket did not answer, but is a master there anyway? Then wait for it (the next apply retries):
      // a second master would share the ports with SO_REUSEPORT and keep serving a stale config forever.
      const other = await liveHaproxyPid(paths.pidFile);
      if (other !== undefined) {
        return done(
          'reload-failed',
          hash,
          `HAProxy master ${other} is running but its master socket does not answer; not starting a second one`,
        );
      }
    }

    const pre = options.preflight === undefined ? [] : await options.preflight(services);
    if (pre.length > 0) return done('invalid', hash, pre.map((e) => `${e.path}: ${e.message}`).join('; '));

    // Only servers changed: the runtime API, and the file in the same step (no reload, no new worker).
    const was = serving;
    if (
      up &&
      options.runtimeApi !== false &&
      was !== undefined &&
      was.base === base &&
      appliedHash !== undefined
    ) {
      const plan = runtimePlan(was.services, services);
      if (plan.ok) {
        const r = await runCommands(plan.commands);
        if (r.ok) {
          await installConfig(paths.configPath, text);
          await markGood(paths.configPath, text);
          await writeFile(hashFile, `${hash}\n`);
          appliedHash = hash;
          serving = { services, base };
          runtimeApplies++;
          via = 'runtime';
          log.info('haproxy servers changed through the runtime API', {
            revision: meta.revision,
            changes: plan.summary,
          });
          return done('applied', hash);
        }
        // Part of it may have taken effect: the reload below makes the process match the file again.
        runtimeFallback = r.error;
        log.warn('the runtime API refused a server change; reloading instead', {
          revision: meta.revision,
          reason: r.error,
        });
      }
    }

    const checkStarted = clock.now();
    const passedAt = prevalidated.get(hash);
    prevalidated.delete(hash);
    const early = passedAt !== undefined && clock.now() - passedAt < PREVALIDATED_MS;
    const check = early
      ? { ok: true as const }
      : await validateConfig(text, { haproxyBin: options.haproxyBin, stageDir: options.runDir, timeoutMs });
    if (!check.ok) return done('invalid', hash, check.error);

    checkMs = clock.now() - checkStarted;
    if (early) prevalidatedRun = true;
    await installConfig(paths.configPath, text);
    const reloadStarted = clock.now();
    if (!up) {
      // A new master starts its servers afresh: a state file left by an earlier one describes another process.
      if (globals.serverStateFile !== undefined) await rm(globals.serverStateFile, { force: true });
      const s = await startMaster(paths, { clock, logger: log, timeoutMs });
      if (!s.ok) {
        await restoreLastGood(paths.configPath);
        return done('reload-failed', hash, s.error);
      }
      masterPid = s.pid;
      reloadMs = clock.now() - reloadStarted;
      via = 'start';
    } else {
      via = 'reload';
      await saveServerState();
      const r = await reloadMaster(paths, { clock, timeoutMs });
      reloadMs = clock.now() - reloadStarted;
      if (!r.ok) {
        // The new file passed `haproxy -c` but the reload failed (a bind error, say): put the last good file back
        // and reload it so the next reload (e.g. an old worker dying) cannot pick up the bad one.
        const restored = await restoreLastGood(paths.configPath);
        const back =
          restored === undefined
            ? { ok: false as const, error: 'no last-good config' }
            : await reloadMaster(paths, { clock, timeoutMs });
        log.error('haproxy reload failed', {
          hash,
          revision: meta.revision,
          error: r.error,
          rolledBack: back.ok,
        });
        if (!back.ok) {
          // What HAProxy runs is unknown now: forget the applied hash so the next apply cannot say 'unchanged'.
          appliedHash = undefined;
          await rm(hashFile, { force: true });
        }
        // The last good file runs again, but which services it holds is not known here: reload the next change.
        serving = undefined;
        return done(back.ok ? 'rolled-back' : 'reload-failed', hash, r.error);
      }
    }
    reloads++;
    appliedHash = hash;
    serving = { services, base };
    await markGood(paths.configPath, text);
    await writeFile(hashFile, `${hash}\n`);
    return done('applied', hash);
  }

  /**
   * Before a reload: what the running worker knows about its servers (health, runtime weights, maintenance) into
   * the state file the new worker loads. Without an answer the old file is removed — a stale state must never be
   * loaded over the current one; the new worker then starts its servers afresh, as without a state file.
   */
  async function saveServerState(): Promise<void> {
    const file = globals.serverStateFile;
    if (file === undefined) return;
    try {
      const state = await socketCommand(globals.statsSocket as string, 'show servers state', 2000);
      if (!/^\d+\n# be_id /.test(state)) throw new Error(state.trim().slice(0, 200) || 'no answer');
      await writeFile(`${file}.tmp`, state);
      await rename(`${file}.tmp`, file);
    } catch (e) {
      log.warn('server state not saved before the reload; servers start afresh', { error: errorMessage(e) });
      await rm(file, { force: true });
    }
  }

  /** Run runtime commands one connection each, in order; stop at the first one HAProxy does not accept. */
  async function runCommands(
    commands: readonly RuntimeCommand[],
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    const socket = globals.statsSocket as string;
    for (const c of commands) {
      let answer: string;
      try {
        answer = await socketCommand(socket, c.command, Math.min(timeoutMs, 2000));
      } catch (e) {
        return { ok: false, error: `${c.command}: ${errorMessage(e)}` };
      }
      if (!c.accepts(answer)) return { ok: false, error: `${c.command}: ${answer.trim() || 'no answer'}` };
    }
    return { ok: true };
  }

  function kick(): void {
    if (running !== undefined || pending === undefined || stopped) return;
    const job = pending;
    pending = undefined;
    running = (async () => {
      let result: ApplyResult;
      try {
        result = await runOnce(job.services, job.meta);
      } catch (e) {
        result = { result: 'reload-failed', hash: '', error: errorMessage(e), durationMs: 0 };
      }
      if (job.meta.revision !== undefined) result.revision = job.meta.revision;
      last = result;
      if (result.error !== undefined) lastError = result.error;
      if (result.result === 'applied') lastError = undefined;
      const fields = {
        result: result.result,
        hash: result.hash.slice(0, 12),
        revision: job.meta.revision,
        durationMs: Math.round(result.durationMs),
      };
      if (result.result === 'applied' || result.result === 'unchanged')
        log.info('haproxy config applied', fields);
      else log.error('haproxy config not applied', { ...fields, error: result.error });
      for (const w of job.waiters) w(result);
    })().finally(() => {
      running = undefined;
      // Changes that arrived during the run were debounced already; if they are due, run them now.
      if (pending !== undefined && !debouncer.pending) kick();
    });
  }

  return {
    apply(services, meta = {}) {
      if (stopped) return Promise.reject(new CoordError('ERR_COORD_INTERNAL', 'haproxy driver is stopped'));
      return new Promise<ApplyResult>((resolve) => {
        const waiters = pending?.waiters ?? [];
        waiters.push(resolve);
        pending = { services: [...services], meta, waiters };
        debouncer.poke();
        if (meta.now === true) {
          debouncer.cancel();
          kick();
        }
      });
    },
    async prevalidate(services) {
      try {
        const base = options.basePath === undefined ? undefined : await readFileOrUndefined(options.basePath);
        if (options.basePath !== undefined && base === undefined) return false;
        const text = render({ services, globals, ...(base === undefined ? {} : { base }) });
        const hash = configHash(text);
        if (hash === appliedHash || prevalidated.has(hash)) return true;
        const check = await validateConfig(text, {
          haproxyBin: options.haproxyBin,
          stageDir: options.runDir,
          timeoutMs,
        });
        if (!check.ok) return false;
        prevalidated.set(hash, clock.now());
        // A handful at most: one per rollout this node waits on.
        for (const k of prevalidated.keys()) if (prevalidated.size > 8) prevalidated.delete(k);
        return true;
      } catch {
        return false;
      }
    },
    gateSocket(service) {
      return gateSocketPath(globals.gateSocketDir, service);
    },
    async serverSessions() {
      try {
        return parseServerSessions(await socketCommand(globals.statsSocket as string, 'show stat', 2000));
      } catch {
        return undefined;
      }
    },
    status() {
      return {
        running: masterPid !== undefined,
        masterPid,
        hash: appliedHash,
        pending: pending !== undefined,
        reloads,
        runtimeApplies,
        last,
        lastError,
      };
    },
    async stop() {
      stopped = true;
      debouncer.cancel();
      await running;
      const left = pending;
      pending = undefined;
      for (const w of left?.waiters ?? [])
        w({ result: 'invalid', hash: '', error: 'driver stopped before apply', durationMs: 0 });
    },
    async stopHaproxy(o = {}) {
      const ok = await stopMaster(paths, {
        clock,
        timeoutMs,
        ...(o.hard === undefined ? {} : { hard: o.hard }),
      });
      if (ok) masterPid = undefined;
      return ok;
    },
  };
}
