import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { prefixOfNamespace, type LabSubnet } from './plan.js';

/**
 * Machine-wide bookkeeping of labs, in /run (a tmpfs, cleared at boot together with the namespaces it
 * describes). Each lab records its owner process; a lab whose owner is dead is stale and may be swept by
 * anyone. Subnet claims are files created with O_EXCL, so two labs starting at once never share a /24.
 */
export const REGISTRY_DIR = process.env['COORD_LAB_REGISTRY'] ?? '/run/coord-lab';

/** `pid starttime`: the start time (from /proc) makes the record immune to PID reuse. */
export function processIdentity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return `${pid} ${rest[19]}`;
  } catch {
    return undefined;
  }
}

function ownerFile(prefix: string): string {
  return join(REGISTRY_DIR, `${prefix}.owner`);
}

/** Record this process as the owner of `prefix` (before any namespace of it exists). */
export function recordOwner(prefix: string, runDir: string): void {
  mkdirSync(REGISTRY_DIR, { recursive: true });
  writeFileSync(ownerFile(prefix), `${processIdentity(process.pid) ?? process.pid}\n${runDir}\n`);
}

export function forgetOwner(prefix: string): void {
  rmSync(ownerFile(prefix), { force: true });
}

/** The owner record of a lab, and whether that process is still the one that wrote it. */
export function ownerOf(prefix: string): { pid: number; alive: boolean; runDir: string } | undefined {
  let text: string;
  try {
    text = readFileSync(ownerFile(prefix), 'utf8');
  } catch {
    return undefined;
  }
  const [identity = '', runDir = ''] = text.split('\n');
  const pid = Number(identity.split(' ')[0]);
  return { pid, alive: processIdentity(pid) === identity, runDir };
}

/** Labs with an owner record, alive or not. */
export function listRecordedLabs(): string[] {
  try {
    return readdirSync(REGISTRY_DIR)
      .filter((f) => f.endsWith('.owner'))
      .map((f) => f.slice(0, -'.owner'.length));
  } catch {
    return [];
  }
}

function claimFile(subnet: LabSubnet): string {
  return join(REGISTRY_DIR, 'subnets', subnet.base);
}

/** Claim `subnet` for `prefix`; false if a live lab holds it. A claim left by a dead lab is taken over. */
export function claimSubnet(subnet: LabSubnet, prefix: string): boolean {
  mkdirSync(join(REGISTRY_DIR, 'subnets'), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(claimFile(subnet), `${prefix}\n`, { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = readFileSync(claimFile(subnet), 'utf8').trim();
      if (ownerOf(holder)?.alive === true) return false;
      rmSync(claimFile(subnet), { force: true });
    }
  }
  return false;
}

export function releaseSubnet(subnet: LabSubnet, prefix: string): void {
  try {
    if (readFileSync(claimFile(subnet), 'utf8').trim() === prefix) rmSync(claimFile(subnet), { force: true });
  } catch {
    // already gone
  }
}

/** Names of all network namespaces on the machine. */
export function listNamespaces(): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5000 });
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

/** Kill (SIGKILL, by PID) everything running inside `ns`, then delete it. Synchronous: usable in exit hooks. */
export function destroyNamespaceSync(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], {
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    for (const p of pids.split('\n').filter((x) => /^\d+$/.test(x))) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  } catch {
    // namespace already gone
  }
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
  } catch {
    // already gone
  }
}

/**
 * Remove labs whose owner process is dead: their namespaces (and whatever still runs inside them), their owner
 * record and subnet claim. Never touches a namespace that is not ours or a lab whose owner is alive.
 */
export function sweepStale(): string[] {
  const swept = new Set<string>();
  const stale = (prefix: string): boolean => ownerOf(prefix)?.alive !== true;
  for (const ns of listNamespaces()) {
    const prefix = prefixOfNamespace(ns);
    if (prefix === undefined || !stale(prefix)) continue;
    destroyNamespaceSync(ns);
    swept.add(prefix);
  }
  for (const prefix of listRecordedLabs()) {
    if (stale(prefix)) {
      forgetOwner(prefix);
      swept.add(prefix);
    }
  }
  try {
    for (const base of readdirSync(join(REGISTRY_DIR, 'subnets'))) {
      const holder = readFileSync(join(REGISTRY_DIR, 'subnets', base), 'utf8').trim();
      if (stale(holder)) rmSync(join(REGISTRY_DIR, 'subnets', base), { force: true });
    }
  } catch {
    // no claims yet
  }
  return [...swept];
}
