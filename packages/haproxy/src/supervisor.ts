import { readFile, stat, truncate } from 'node:fs/promises';
import type { Clock, Logger } from '@coord/core';
import { execa } from 'execa';
import { summarizeHaproxyOutput } from './files.js';
import { judgeReload, showProc, socketCommand, type ShowProc } from './master.js';

/**
 * The HAProxy master process: started detached (`-D`, its own session) so it outlives the coord process that
 * started it, found again after a coord restart through its pidfile and master socket, and reloaded through the
 * master CLI. Plain invocation, no namespace logic: whoever runs coord chooses the namespace.
 */

export interface MasterPaths {
  haproxyBin: string;
  configPath: string;
  masterSocket: string;
  pidFile: string;
  /** HAProxy's stdout/stderr after it daemonizes (it keeps writing NOTICE/ALERT lines there). */
  logFile: string;
}

export type MasterResult = { ok: true; pid: number; proc: ShowProc } | { ok: false; error: string };

async function sleep(clock: Clock, ms: number): Promise<void> {
  await new Promise<void>((resolve) => clock.setTimeout(resolve, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readPid(pidFile: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(pidFile, 'utf8')).trim().split('\n')[0]);
    return Number.isInteger(n) && n > 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pidfile names a live process that is an HAProxy (by /proc/<pid>/comm): a master that exists even if its
 * socket does not answer right now (mid-reload, busy, stopped). Never start a second one next to it.
 */
export async function liveHaproxyPid(pidFile: string): Promise<number | undefined> {
  const pid = await readPid(pidFile);
  if (pid === undefined || !alive(pid)) return undefined;
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim() === 'haproxy' ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Find a running master: the pidfile names a live process and the master socket answers `show proc` with that
 * same PID. Both must agree, so a recycled PID or a stale socket file is not mistaken for our HAProxy.
 */
export async function attachMaster(paths: MasterPaths): Promise<MasterResult> {
  const pid = await readPid(paths.pidFile);
  if (pid === undefined) return { ok: false, error: 'no pidfile' };
  if (!alive(pid)) return { ok: false, error: `pid ${pid} from the pidfile is not running` };
  const r = await showProc(paths.masterSocket);
  if (!r.ok) return { ok: false, error: `master socket: ${r.reason}` };
  if (r.proc.master.pid !== pid)
    return { ok: false, error: `master socket belongs to pid ${r.proc.master.pid}, pidfile says ${pid}` };
  return { ok: true, pid, proc: r.proc };
}

async function logTail(logFile: string, from: number): Promise<string> {
  try {
    const text = await readFile(logFile, 'utf8');
    return text.slice(from).trim();
  } catch {
    return '';
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** HAProxy's output file (under runDir: in RAM on /run) is emptied before a start or reload once it is this big. */
export const LOG_CAP_BYTES = 1024 * 1024;

/**
 * Where this start's or reload's output will begin in the log file. A file over LOG_CAP_BYTES is emptied first:
 * the master writes to it in append mode for as long as it lives, so its next lines land at the new end.
 */
export async function logStart(path: string, cap = LOG_CAP_BYTES): Promise<number> {
  const size = await sizeOf(path);
  if (size <= cap) return size;
  await truncate(path, 0);
  return 0;
}

/** Start a master in daemon mode and wait (bounded) until its socket reports a worker. */
export async function startMaster(
  paths: MasterPaths,
  options: { clock: Clock; logger: Logger; timeoutMs?: number },
): Promise<MasterResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const from = await logStart(paths.logFile);
  const args = ['-W', '-S', `${paths.masterSocket},mode,600`, '-f', paths.configPath, '-p', paths.pidFile];
  // Not `-D`: a daemonized master closes stderr, and then a failed reload leaves no reason anywhere. Instead the
  // master runs in its own session (detached, not killed with us, not waited for) with stdout/stderr appended to
  // the log file, where each reload's ALERT lines land. No execa timeout: this is the long-running service.
  const child = execa(paths.haproxyBin, args, {
    reject: false,
    detached: true,
    cleanup: false,
    stdin: 'ignore',
    stdout: { file: paths.logFile, append: true },
    stderr: { file: paths.logFile, append: true },
  });
  child.unref();
  let exited: number | undefined;
  void child.then((r) => {
    exited = r.exitCode ?? -1;
  });
  const deadline = options.clock.now() + timeoutMs;
  for (;;) {
    const a = await attachMaster(paths);
    if (a.ok && a.proc.workers.some((w) => w.reloads === 0)) {
      options.logger.info('haproxy master started', { pid: a.pid });
      return a;
    }
    if (exited !== undefined) {
      return { ok: false, error: (await logTail(paths.logFile, from)) || `haproxy exited with ${exited}` };
    }
    if (options.clock.now() > deadline)
      return {
        ok: false,
        error: `master did not come up within ${timeoutMs} ms: ${a.ok ? 'no worker' : a.error}`,
      };
    await sleep(options.clock, 25);
  }
}

export type ReloadResult = { ok: true; proc: ShowProc } | { ok: false; error: string };

/**
 * Ask the master to reload (it re-reads the config path it was started with) and wait until `show proc` says
 * how it went: a new current worker, or a failed-reload count with the old workers still serving.
 */
export async function reloadMaster(
  paths: MasterPaths,
  options: { clock: Clock; timeoutMs?: number },
): Promise<ReloadResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const before = await showProc(paths.masterSocket);
  if (!before.ok) return { ok: false, error: `master socket before reload: ${before.reason}` };
  const from = await logStart(paths.logFile);
  try {
    await socketCommand(paths.masterSocket, 'reload');
  } catch (e) {
    return { ok: false, error: `reload command: ${e instanceof Error ? e.message : String(e)}` };
  }
  const deadline = options.clock.now() + timeoutMs;
  for (;;) {
    await sleep(options.clock, 10);
    // Refused connections are expected while the master re-executes itself.
    const after = await showProc(paths.masterSocket);
    if (after.ok) {
      const verdict = judgeReload(before.proc, after.proc);
      if (verdict === 'succeeded') return { ok: true, proc: after.proc };
      if (verdict === 'failed') {
        return {
          ok: false,
          error:
            summarizeHaproxyOutput(await logTail(paths.logFile, from)) || 'haproxy reported a failed reload',
        };
      }
    }
    if (options.clock.now() > deadline)
      return { ok: false, error: `reload not confirmed within ${timeoutMs} ms` };
  }
}

/** Stop HAProxy (SIGUSR1: soft stop, workers finish their connections). Not part of a coord restart. */
export async function stopMaster(
  paths: MasterPaths,
  options: { clock: Clock; timeoutMs?: number; hard?: boolean },
): Promise<boolean> {
  const pid = await readPid(paths.pidFile);
  if (pid === undefined || !alive(pid)) return true;
  process.kill(pid, options.hard === true ? 'SIGTERM' : 'SIGUSR1');
  const deadline = options.clock.now() + (options.timeoutMs ?? 10_000);
  while (alive(pid)) {
    if (options.clock.now() > deadline) return false;
    await sleep(options.clock, 20);
  }
  return true;
}
