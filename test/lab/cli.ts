/**
 * `pnpm lab up|status|down|sweep` — the lab for humans. `up` keeps the lab for as long as it runs (the lab's
 * owner is this process; Ctrl-C or `pnpm lab down` tears it down); `sweep` removes labs whose owner died.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describeLab } from './describe.js';
import { Lab } from './lab.js';
import { prefixOfNamespace } from './plan.js';
import { waitFor } from './proc.js';
import { listNamespaces, listRecordedLabs, ownerOf, sweepStale } from './registry.js';

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function namespacesByLab(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const ns of listNamespaces()) {
    const p = prefixOfNamespace(ns);
    if (p !== undefined) out.set(p, [...(out.get(p) ?? []), ns]);
  }
  return out;
}

async function up(args: string[]): Promise<void> {
  const etcd = Number(flag(args, 'etcd') ?? '1');
  const t0 = performance.now();
  const lab = await Lab.create({
    hosts: Number(flag(args, 'hosts') ?? '3'),
    etcdMembers: etcd === 3 ? 3 : 1,
    name: flag(args, 'name') ?? 'cli',
  });
  console.log(describeLab(lab));
  console.log(
    `up in ${Math.round(performance.now() - t0)} ms; Ctrl-C or \`pnpm lab down ${lab.prefix}\` tears it down`,
  );
  // Keep the owner alive; the lab's own signal hooks destroy it on SIGINT/SIGTERM.
  setInterval(() => undefined, 1 << 30);
}

function status(): void {
  const byLab = namespacesByLab();
  const prefixes = new Set([...listRecordedLabs(), ...byLab.keys()]);
  if (prefixes.size === 0) {
    console.log('no labs');
    return;
  }
  for (const p of [...prefixes].sort()) {
    const owner = ownerOf(p);
    const state =
      owner === undefined
        ? 'no owner record (stale)'
        : owner.alive
          ? `owner pid ${owner.pid}`
          : `owner pid ${owner.pid} dead (stale)`;
    console.log(`${p}  ${state}  namespaces: ${(byLab.get(p) ?? []).join(' ') || 'none'}`);
  }
}

function startedByCli(prefix: string): boolean {
  const owner = ownerOf(prefix);
  if (owner?.alive !== true) return false;
  try {
    return readFileSync(`/proc/${owner.pid}/cmdline`, 'utf8').includes('lab/cli.ts');
  } catch {
    return false;
  }
}

async function down(args: string[]): Promise<void> {
  const wanted = args.filter((a) => !a.startsWith('--'));
  // Without names, only labs started by `pnpm lab up`: other people's test labs are not ours to end.
  const targets = wanted.length > 0 ? wanted : listRecordedLabs().filter(startedByCli);
  for (const p of targets) {
    const owner = ownerOf(p);
    if (owner?.alive === true) {
      process.kill(owner.pid, 'SIGTERM');
      await waitFor(`${p} torn down`, () => (namespacesByLab().has(p) ? undefined : true), {
        timeoutMs: 15_000,
      });
      console.log(`${p}: torn down by its owner (pid ${owner.pid})`);
    }
  }
  for (const p of sweepStale()) console.log(`${p}: swept (owner gone)`);
}

async function main(): Promise<void> {
  const [cmd = 'status', ...rest] = process.argv.slice(2);
  execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' }); // fail early without iproute2 / root
  switch (cmd) {
    case 'up':
      return up(rest);
    case 'status':
      return status();
    case 'down':
      return down(rest);
    case 'sweep': {
      const swept = sweepStale();
      console.log(swept.length === 0 ? 'nothing stale' : `swept ${swept.join(' ')}`);
      return;
    }
    default:
      console.error(
        'usage: pnpm lab up [--hosts N] [--etcd 1|3] [--name NAME] | status | down [PREFIX…] | sweep',
      );
      process.exitCode = 2;
  }
}

await main();
