import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execa } from 'execa';

/** How a lab process ended. */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** A process the lab started inside a namespace. The lab kills it at teardown if the test did not. */
export interface LabProcess {
  readonly pid: number;
  readonly name: string;
  readonly logFile: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  readonly running: boolean;
  /**
   * Send a signal. SIGSTOP, SIGCONT and SIGKILL also go to every descendant: they cannot be relayed by a
   * wrapper (tsx, keepalived's parent), and a "paused" or "crashed" service must pause or crash as a whole.
   */
  signal(sig: NodeJS.Signals): void;
  /** SIGKILL the process and its descendants (a crash, as far as the rest of the lab can tell). */
  kill9(): void;
  /** SIGTERM, wait up to `timeoutMs`, then SIGKILL the tree; resolves with how it ended. */
  stop(timeoutMs?: number): Promise<ExitInfo>;
  /** The log file's content so far (stdout and stderr interleaved). */
  output(): Promise<string>;
}

/** PIDs of all descendants of `pid` (children first-level first), read from /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // The command name may contain spaces and parentheses: ppid is the 2nd field after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(rest[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const c of children.get(p) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** Send a signal, ignoring "no such process" (the process may have just exited). */
export function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

const TREE_SIGNALS = new Set<NodeJS.Signals>(['SIGSTOP', 'SIGCONT', 'SIGKILL']);

export interface SpawnOptions {
  logFile: string;
  env?: Record<string, string>;
  name?: string;
}

/**
 * Start `cmd args` inside network namespace `ns` (`ip netns exec` execs the command, so the PID is the
 * command's own). Output is appended to `logFile`.
 */
export function spawnInNamespace(
  ns: string,
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions,
): LabProcess {
  closeSync(openSync(opts.logFile, 'a'));
  const child = execa('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdin: 'ignore',
    stdout: { file: opts.logFile, append: true },
    stderr: { file: opts.logFile, append: true },
    env: opts.env ?? {},
    extendEnv: true,
    reject: false,
    cleanup: true,
    // Its own process group, so a tree signal reaches the whole service in one kill(2).
    detached: true,
  });
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`could not start ${cmd} in ${ns}`);
  }
  let running = true;
  const exited: Promise<ExitInfo> = child.then(
    (r) => {
      running = false;
      return { code: r.exitCode ?? null, signal: r.signal ?? null };
    },
    () => {
      running = false;
      return { code: null, signal: null };
    },
  );
  const signal = (sig: NodeJS.Signals): void => {
    if (!TREE_SIGNALS.has(sig)) {
      safeKill(pid, sig);
      return;
    }
    // Whole group at once first: killing a parent before its children lets them notice (PDEATHSIG) and shut
    // down gracefully — keepalived's VRRP child would remove its VIPs, which is not what a crash does.
    const tree = descendants(pid);
    safeKill(-pid, sig);
    // Then anything that left the group (setsid/setpgid), deepest first, and the process itself.
    for (const p of tree.reverse()) safeKill(p, sig);
    safeKill(pid, sig);
  };
  return {
    pid,
    name: opts.name ?? cmd,
    logFile: opts.logFile,
    exited,
    get running() {
      return running;
    },
    signal,
    kill9: () => signal('SIGKILL'),
    async stop(timeoutMs = 5000) {
      if (!running) return exited;
      // A stopped process cannot act on SIGTERM: resume it first.
      signal('SIGCONT');
      safeKill(pid, 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) signal('SIGKILL');
      return exited;
    },
    output: () => readFile(opts.logFile, 'utf8'),
  };
}

/** Poll `check` until it returns a value other than undefined/false, or throw after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 10_000, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const suffix =
        lastError === undefined
          ? ''
          : `: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${suffix}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
