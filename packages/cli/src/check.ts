import { hostname } from 'node:os';
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
  const raw = await readConfigFile(path);
  // As coord join does: the node name defaults to the host name.
  raw.node ??= hostname().split('.')[0];
  const r = validateNodeConfig(raw);
  if (!r.ok) return { config: undefined, issues: r.issues };
  const issues: ConfigIssue[] = [];
  // Commands are split without a shell; refuse what only a shell could honour.
  const commands: [string, string | undefined][] = [
    ...r.config.track.scripts.map((t, i): [string, string] => [`track.scripts[${i}].command`, t.command]),
    ['notify.any', r.config.notify.any],
    ['notify.leader', r.config.notify.leader],
    ['notify.follower', r.config.notify.follower],
    ['notify.fault', r.config.notify.fault],
    ['notify.stop', r.config.notify.stop],
  ];
  for (const [where, cmd] of commands) {
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

export function formatIssues(path: string, issues: readonly ConfigIssue[]): string {
  return issues
    .map((i) => `${path}: ${i.path}: ${i.message}${i.hint === undefined ? '' : `\n  hint: ${i.hint}`}`)
    .join('\n');
}

export function summarize(path: string, c: NodeConfig): string {
  const groups = c.groups
    .map(
      (g) =>
        `${g.name} (${g.interface}, ${g.vips.length} VIP${g.vips.length === 1 ? '' : 's'}, priority ${g.priority}${g.vrrp === undefined ? '' : `, vrid ${g.vrrp.vrid}`})`,
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
