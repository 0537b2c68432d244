import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';

/**
 * Config files on disk: check a staged copy with `haproxy -c` before anything touches the live path, swap by
 * rename (readers see the old or the new file, never half of one) and keep the previous good file for rollback.
 */

export type CheckResult = { ok: true } | { ok: false; error: string };

export interface ValidateOptions {
  haproxyBin: string;
  /** Where staged files go; defaults to the OS temp dir. */
  stageDir?: string;
  timeoutMs?: number;
}

/** Last lines of HAProxy's output that say why, without its NOTICE chatter. */
export function summarizeHaproxyOutput(text: string, maxLines = 8): string {
  const lines = text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '' && !l.includes('[NOTICE]'));
  const alerts = lines.filter((l) => l.includes('[ALERT]'));
  return (alerts.length > 0 ? alerts : lines).slice(-maxLines).join('\n');
}

/** Run `haproxy -c -f <staged>` on `text`. Expected failures are results; the staged file is always removed. */
export async function validateConfig(text: string, options: ValidateOptions): Promise<CheckResult> {
  const dir = options.stageDir ?? tmpdir();
  await mkdir(dir, { recursive: true });
  const staged = join(dir, `.coord-haproxy-${process.pid}-${randomBytes(6).toString('hex')}.cfg`);
  try {
    await writeFile(staged, text, { mode: 0o600 });
    const r = await execa(options.haproxyBin, ['-c', '-f', staged], {
      reject: false,
      timeout: options.timeoutMs ?? 10_000,
      all: true,
      stdin: 'ignore',
    });
    if (r.exitCode === 0) return { ok: true };
    const why = r.timedOut ? 'haproxy -c timed out' : summarizeHaproxyOutput(r.all ?? '');
    return { ok: false, error: why === '' ? `haproxy -c failed (exit ${String(r.exitCode)})` : why };
  } catch (e) {
    return {
      ok: false,
      error: `cannot run ${options.haproxyBin}: ${e instanceof Error ? e.message : String(e)}`,
    };
  } finally {
    await rm(staged, { force: true });
  }
}

/** Path of the kept previous config. */
export function lastGoodPath(path: string): string {
  return `${path}.last-good`;
}

async function writeDurably(path: string, text: string): Promise<void> {
  const fh = await open(path, 'w', 0o644);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Atomically replace `path` with `text`. Call it only with text that passed {@link validateConfig}. The
 * last-good copy is not touched here: only {@link markGood}, after HAProxy confirmed it runs a config, sets it —
 * a file that was merely on disk (a crash between swap and reload, a failed first start) is not "good".
 */
export async function installConfig(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await swapIn(path, text);
}

/** Record `text` as the config HAProxy is confirmed to run: what a failed reload rolls back to. */
export async function markGood(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await swapIn(lastGoodPath(path), text);
}

async function swapIn(path: string, text: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeDurably(tmp, text);
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Put `path.last-good` back in place (atomically); returns its text, or undefined when there is none. */
export async function restoreLastGood(path: string): Promise<string | undefined> {
  const good = await readFileOrUndefined(lastGoodPath(path));
  if (good === undefined) return undefined;
  await swapIn(path, good);
  return good;
}

export async function readFileOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
