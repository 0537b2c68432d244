import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, join } from 'node:path';
import { parseCommand } from '@coord/agent';
import {
  isCoordError,
  readConfigFile,
  validateNodeConfig,
  type ConfigIssue,
  type NodeConfig,
} from '@coord/core';

/**
 * Every problem in a config file, with its path and a hint (like `keepalived --config-test`, but actionable):
 * the schema `coord join` validates with, plus the commands it would refuse to run.
 */
export async function checkConfigFile(
  path: string,
): Promise<{ config: NodeConfig | undefined; issues: ConfigIssue[] }> {
  return checkConfigObject(await readConfigFile(path));
}

/** checkConfigFile for a config already read (a YAML object). */
export function checkConfigObject(raw: Record<string, unknown>): {
  config: NodeConfig | undefined;
  issues: ConfigIssue[];
} {
  // As coord join does: the node name defaults to the host name.
  raw['node'] ??= hostname().split('.')[0];
  const r = validateNodeConfig(raw);
  if (!r.ok) return { config: undefined, issues: r.issues };
  const issues: ConfigIssue[] = [];
  // Commands are split without a shell; refuse what only a shell could honour.
  for (const [where, cmd] of commandsOf(r.config)) {
    if (cmd === undefined) continue;
    try {
      parseCommand(cmd);
    } catch (e) {
      issues.push({
        path: where,
        message: e instanceof Error ? e.message : String(e),
        ...(isCoordError(e) && e.hint !== undefined ? { hint: e.hint } : {}),
      });
    }
  }
  return { config: issues.length === 0 ? r.config : undefined, issues };
}

export function formatIssues(path: string, issues: readonly ConfigIssue[], kind?: 'warning'): string {
  const tag = kind === undefined ? '' : `${kind}: `;
  return issues
    .map((i) => `${path}: ${tag}${i.path}: ${i.message}${i.hint === undefined ? '' : `\n  hint: ${i.hint}`}`)
    .join('\n');
}

export function summarize(path: string, c: NodeConfig): string {
  const groups = c.groups
    .map(
      (g) =>
        `${g.name} (${g.interface}, ${g.vips.length} VIP${g.vips.length === 1 ? '' : 's'}, priority ${g.priority}${g.vrrp === undefined ? '' : `, vrid ${g.vrrp.vrid}`}${g.advertise === undefined ? '' : `, VRRP-visible as vrid ${g.advertise.vrid}`}${g.syncGroup === undefined ? '' : `, sync group ${g.syncGroup}`})`,
    )
    .join('; ');
  const peer = [
    ...(c.fastFailover ? ['fast failover'] : []),
    ...(c.mode === 'etcd' && c.etcdOutage === 'hold'
      ? [`etcd outage: hold (at most ${Math.round(c.etcdOutageMaxMs / 1000)} s)`]
      : []),
  ];
  const extras = peer.length === 0 ? '' : `; ${peer.join(', ')} (peer channel ${c.peer?.port ?? 7969}/udp)`;
  return `${path}: OK — mode ${c.mode}, node ${c.node}, ${c.groups.length} group${c.groups.length === 1 ? '' : 's'}: ${groups}${extras}`;
}

/** Whether `file` can be run: a path as given, a bare name looked up on PATH (as the runner's exec does). */
async function runnable(file: string, path = process.env['PATH'] ?? ''): Promise<boolean> {
  const ok = (f: string) =>
    access(f, constants.X_OK).then(
      () => true,
      () => false,
    );
  if (file.includes('/')) return ok(file);
  for (const dir of path.split(delimiter)) if (dir !== '' && (await ok(join(dir, file)))) return true;
  return false;
}

/**
 * Files a valid config refers to that this host does not have: the HAProxy base file and binary, and the
 * programs of track scripts and notify commands. Warnings — the config may be meant for another host — unless
 * `check-config --strict`.
 */
export async function missingFileWarnings(c: NodeConfig): Promise<ConfigIssue[]> {
  const out: ConfigIssue[] = [];
  if (c.haproxy?.base !== undefined) {
    const base = c.haproxy.base;
    const readable = await access(base, constants.R_OK).then(
      () => true,
      () => false,
    );
    if (!readable)
      out.push({
        path: 'haproxy.base',
        message: `${base} does not exist here (or is not readable)`,
        hint: 'create it (the package installs /etc/coord/haproxy-base.cfg) or fix the path',
      });
  }
  if (c.haproxy !== undefined && !(await runnable(c.haproxy.bin)))
    out.push({
      path: 'haproxy.bin',
      message: `${c.haproxy.bin} cannot be run here`,
      hint: 'apt install haproxy, or set haproxy.bin to where it is',
    });
  for (const [where, cmd] of commandsOf(c)) {
    if (cmd === undefined) continue;
    const program = parseCommand(cmd)[0];
    if (program !== undefined && !(await runnable(program)))
      out.push({
        path: where,
        message: `${program} cannot be run here (not found, or not executable)`,
        hint: where.startsWith('track')
          ? 'a check that cannot run puts the node in FAULT: install it or fix the path'
          : 'the hook would fail at every transition: install it or fix the path',
      });
  }
  return out;
}

/** Every command a config runs (track scripts, notify hooks), with its field path. */
function commandsOf(c: NodeConfig): [string, string | undefined][] {
  return [
    ...c.track.scripts.map((t, i): [string, string] => [`track.scripts[${i}].command`, t.command]),
    ['notify.any', c.notify.any],
    ['notify.leader', c.notify.leader],
    ['notify.follower', c.notify.follower],
    ['notify.fault', c.notify.fault],
    ['notify.stop', c.notify.stop],
  ];
}
