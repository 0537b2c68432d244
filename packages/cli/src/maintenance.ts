import { hostname, userInfo } from 'node:os';
import { CoordError, isCoordError } from '@coord/core';
import { clusterKeys, encodeMaintenance, updateKey } from '@coord/etcd';
import { readNodeFile, resolveTarget, withEtcd, type ConnectionArgs } from './target.js';

export interface MaintenanceArgs extends ConnectionArgs {
  state: 'on' | 'off';
  node?: string | undefined;
  reason?: string | undefined;
}

export interface MaintenanceResult {
  readonly node: string;
  /** False when the mark already was as asked. */
  readonly changed: boolean;
  /** Whether the node is running now (its member key exists). */
  readonly running: boolean;
}

/**
 * `coord maintenance on|off`: set or clear the node's maintenance mark in etcd. The node (which watches it) hands
 * its groups over and stands with priority 0 while it is on — across its restarts, since the mark has no lease.
 */
export async function setMaintenance(a: MaintenanceArgs): Promise<MaintenanceResult> {
  const file = await readNodeFile(a);
  const configured = typeof file.raw.node === 'string' ? file.raw.node : undefined;
  const node = a.node ?? configured ?? hostname().split('.')[0] ?? '';
  const t = await resolveTarget(a);
  const keys = clusterKeys(t.cluster);
  const by = `${userInfo().username}@${hostname()}`;
  try {
    return await withEtcd(t, async (etcd) => {
      const r = await updateKey(etcd, keys.maintenance(node), (current) => {
        if (a.state === 'off') return current === undefined ? { unchanged: true } : { delete: true };
        if (current !== undefined) return { unchanged: true };
        return { put: encodeMaintenance({ by, reason: a.reason ?? '', since: Date.now() }) };
      });
      const member = await etcd.get(keys.member(node));
      return { node, changed: r.changed, running: member.entry !== undefined };
    });
  } catch (e) {
    if (isCoordError(e) && e.details?.kind === 'permission-denied')
      throw new CoordError(
        'ERR_COORD_PERMISSION',
        `etcd refused: this etcd user may not write ${keys.maintenances}`,
        {
          hint: `that needs the role coord-node-${t.cluster} or coord-admin-${t.cluster} as created by coord etcd-roles --cluster ${t.cluster} --apply (this version added maintenance/ to both)`,
          cause: e,
        },
      );
    throw e;
  }
}

export function describeMaintenance(state: 'on' | 'off', r: MaintenanceResult): string {
  const notRunning = r.running ? '' : `\n(${r.node} is not running now: the mark applies when it starts)`;
  if (state === 'on')
    return (
      (r.changed ? `maintenance on for ${r.node}` : `${r.node} was already in maintenance`) +
      `: it hands its groups to other nodes and does not campaign, also after a restart, until coord maintenance off --node ${r.node}` +
      notRunning
    );
  return (
    (r.changed ? `maintenance off for ${r.node}` : `${r.node} was not in maintenance`) +
    ': it stands for election with its configured priority' +
    notRunning
  );
}
