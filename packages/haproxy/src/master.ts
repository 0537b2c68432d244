import { connect } from 'node:net';

/**
 * HAProxy's master CLI (`-S <socket>`), as 2.6 speaks it: one command per connection, the master answers and
 * closes. `reload` answers nothing in 2.6 (2.7 added a status), and the master re-executes itself, so the
 * socket refuses connections for a moment: the only way to know how a reload went is `show proc` afterwards.
 */

export interface ProcEntry {
  readonly pid: number;
  /** For the master: reloads it performed; for a worker: reloads it has survived (0 = the current one). */
  readonly reloads: number;
}

export interface ShowProc {
  readonly master: ProcEntry & { readonly failedReloads: number };
  /** Current and old workers (old ones have reloads > 0). */
  readonly workers: readonly ProcEntry[];
}

export type ShowProcResult = { ok: true; proc: ShowProc } | { ok: false; reason: string };

/**
 * Parse `show proc` output. Never throws. Lines look like
 * `5170   master   2 [failed: 1]   0d00h10m17s   2.6.12` and `16341   worker   1   0d00h00m06s   2.6.12`.
 */
export function parseShowProc(text: string): ShowProcResult {
  let master: ShowProc['master'] | undefined;
  const workers: ProcEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]/.exec(line);
    if (m) {
      master = { pid: Number(m[1]), reloads: Number(m[2]), failedReloads: Number(m[3]) };
      continue;
    }
    const w = /^(\d+)\s+worker\s+(\d+)\s/.exec(line);
    if (w) workers.push({ pid: Number(w[1]), reloads: Number(w[2]) });
  }
  if (master === undefined) return { ok: false, reason: 'no master line in show proc output' };
  return { ok: true, proc: { master, workers } };
}

/** `show stat` CSV → current sessions (scur) of every server row, by `proxy/server`. Never throws. */
export function parseServerSessions(csv: string): Map<string, number> {
  const out = new Map<string, number>();
  const lines = csv.split('\n');
  const header = (lines[0] ?? '').replace(/^#\s*/, '').split(',');
  const px = header.indexOf('pxname');
  const sv = header.indexOf('svname');
  const scur = header.indexOf('scur');
  const type = header.indexOf('type');
  if (px < 0 || sv < 0 || scur < 0) return out;
  for (const line of lines.slice(1)) {
    const f = line.split(',');
    // type 2 = server; without the column, anything that is not the proxy's own FRONTEND/BACKEND row.
    const isServer = type >= 0 ? f[type] === '2' : f[sv] !== 'FRONTEND' && f[sv] !== 'BACKEND';
    const n = Number(f[scur]);
    if (!isServer || f[px] === undefined || f[sv] === undefined || !Number.isFinite(n)) continue;
    out.set(`${f[px]}/${f[sv]}`, n);
  }
  return out;
}

/** Send one command to a master (or stats) socket and return everything it wrote before closing. */
export function socketCommand(socketPath: string, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let out = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      out += d;
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    // Half-close: the CLI answers a command and closes once it has seen the end of input.
    sock.end(`${command}\n`);
  });
}

/** `show proc` on the master socket, as a result. */
export async function showProc(masterSocket: string, timeoutMs = 2000): Promise<ShowProcResult> {
  try {
    return parseShowProc(await socketCommand(masterSocket, 'show proc', timeoutMs));
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** How a reload ended, judged by comparing `show proc` before and after. */
export type ReloadVerdict = 'pending' | 'succeeded' | 'failed';

/**
 * Pure: the master has reloaded once its reload counter moved; it succeeded if a worker that did not exist before
 * is now the current one (reloads 0), and failed if the failed counter rose without a new worker.
 */
export function judgeReload(before: ShowProc, after: ShowProc): ReloadVerdict {
  if (after.master.pid !== before.master.pid) return 'failed';
  if (after.master.reloads <= before.master.reloads) return 'pending';
  const old = new Set(before.workers.map((w) => w.pid));
  if (after.workers.some((w) => w.reloads === 0 && !old.has(w.pid))) return 'succeeded';
  // A failure of *this* reload: the counter rose (an earlier failed reload must not condemn this one).
  if (after.master.failedReloads > before.master.failedReloads) return 'failed';
  return 'pending';
}
