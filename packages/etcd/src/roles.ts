/**
 * Least privilege for a cluster: the two etcd roles `coord etcd-roles` prints or creates. Binding users to them
 * stays the operator's job (etcdctl user grant-role), and docs/etcd-auth.md shows the commands.
 */
import { clusterKeys } from './keys.js';

export type Permission = 'read' | 'write' | 'readwrite';

export interface RoleSpec {
  readonly name: string;
  readonly purpose: string;
  /** Prefix permissions (etcd key ranges [prefix, prefix+1)). */
  readonly permissions: readonly { readonly permission: Permission; readonly prefix: string }[];
}

/**
 * `coord-node-<cluster>`: exactly what `coord join` needs — read the whole cluster prefix (the view), write its
 * member, status and the groups' leader/last-holder keys, and create the peer channel's key on first join. Leases
 * need no key permission (a revoke — ours, or a silent holder's under fast failover — needs write on the keys
 * attached, which these grant), set its own maintenance mark and record its result in a rolling rollout. It cannot
 * change services.
 * `coord-admin-<cluster>`: read the cluster, write services and their rollouts (coord service/server set|rm) and maintenance marks.
 */
export function coordRoles(cluster: string): RoleSpec[] {
  const k = clusterKeys(cluster);
  return [
    {
      name: `coord-node-${cluster}`,
      purpose: 'coord join: elect, hold VIPs, publish status, read services',
      permissions: [
        { permission: 'read', prefix: k.prefix },
        { permission: 'readwrite', prefix: k.members },
        { permission: 'readwrite', prefix: k.statuses },
        { permission: 'readwrite', prefix: k.groups },
        { permission: 'readwrite', prefix: k.peer },
        // `coord maintenance on|off` run on the node itself, with the node's own credentials.
        { permission: 'readwrite', prefix: k.maintenances },
        // Its verdict in a rolling rollout (the rollout record, never the service).
        { permission: 'readwrite', prefix: k.rollouts },
        // `coord move` run on a node; a node ends a move to itself when it fails.
        { permission: 'readwrite', prefix: k.moves },
        // Its transitions, for `coord events`.
        { permission: 'readwrite', prefix: k.events },
      ],
    },
    {
      name: `coord-admin-${cluster}`,
      purpose: 'coord service/server set|rm, coord maintenance, coord move and coord status',
      permissions: [
        { permission: 'read', prefix: k.prefix },
        { permission: 'read', prefix: k.events },
        { permission: 'readwrite', prefix: k.services },
        { permission: 'readwrite', prefix: k.rollouts },
        { permission: 'readwrite', prefix: k.maintenances },
        { permission: 'readwrite', prefix: k.moves },
      ],
    },
  ];
}

/** The etcdctl commands that create `roles` (what `coord etcd-roles` prints without --apply). */
export function etcdctlRoleCommands(roles: readonly RoleSpec[]): string[] {
  const out: string[] = [];
  for (const r of roles) {
    out.push(`# ${r.name}: ${r.purpose}`);
    out.push(`etcdctl role add ${r.name}`);
    for (const p of r.permissions)
      out.push(`etcdctl role grant-permission ${r.name} --prefix=true ${p.permission} ${p.prefix}`);
  }
  return out;
}
