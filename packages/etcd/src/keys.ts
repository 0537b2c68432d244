/**
 * The etcd key layout of one coord cluster. Everything lives under `/coord/<cluster>/`, so one etcd can serve many
 * clusters and an operator can read it with `etcdctl get --prefix /coord/<cluster>/`.
 */
export interface ClusterKeys {
  readonly prefix: string;
  member(node: string): string;
  readonly members: string;
  leader(group: string): string;
  /** The last holder's record (no lease), see records.ts. */
  lastHolder(group: string): string;
  readonly groups: string;
  service(name: string): string;
  readonly services: string;
  /** Rolling rollouts of service changes, one key per service (written by the CLI and by each node's verdict). */
  readonly rollouts: string;
  status(node: string): string;
  readonly statuses: string;
  /** The peer channel's settings shared by the cluster (the HMAC key), see records.ts. */
  readonly peer: string;
  readonly peerKey: string;
  /** A node's maintenance mark (no lease: it survives the node's restarts), see records.ts. */
  maintenance(node: string): string;
  readonly maintenances: string;
  /**
   * The history of transitions (`coord events`), one key per event under a rotating retention lease. Outside
   * `prefix` on purpose: every node mirrors and watches `prefix`, and a week of history is nothing it decides on.
   */
  readonly events: string;
  /** A group moved to a named node (`coord move`; no lease), see records.ts. */
  move(group: string): string;
  readonly moves: string;
}

export function clusterKeys(cluster: string): ClusterKeys {
  const prefix = `/coord/${cluster}/`;
  return {
    prefix,
    members: `${prefix}members/`,
    member: (node) => `${prefix}members/${node}`,
    groups: `${prefix}groups/`,
    leader: (group) => `${prefix}groups/${group}/leader`,
    lastHolder: (group) => `${prefix}groups/${group}/last-holder`,
    services: `${prefix}services/`,
    rollouts: `${prefix}rollouts/`,
    service: (name) => `${prefix}services/${name}`,
    statuses: `${prefix}status/`,
    status: (node) => `${prefix}status/${node}`,
    peer: `${prefix}peer/`,
    peerKey: `${prefix}peer/key`,
    maintenances: `${prefix}maintenance/`,
    maintenance: (node) => `${prefix}maintenance/${node}`,
    events: `/coord-events/${cluster}/`,
    moves: `${prefix}moves/`,
    move: (group) => `${prefix}moves/${group}`,
  };
}
