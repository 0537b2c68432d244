import { hostname, userInfo } from 'node:os';
import { CoordError } from '@coord/core';
import {
  clusterKeys,
  decodeLeader,
  decodeMember,
  encodeMove,
  readPrefix,
  type ClusterKeys,
  type Entry,
} from '@coord/etcd';
import { resolveTarget, withEtcd, type ConnectionArgs } from './target.js';

/**
 * `coord move GROUP --to NODE`: a planned handover to a named node, whatever the priorities (docs/design.md,
 * "Moving a group"). The move record makes NODE stand above every configured priority with preemption at once, so
 * the holder hands the group to it in one etcd write and nobody takes it back — until NODE fails (gone, restarted,
 * FAULT, maintenance) or `coord move GROUP --release`.
 */

export interface MoveArgs extends ConnectionArgs {
  group: string;
  to?: string | undefined;
  release?: boolean | undefined;
  wait?: boolean | undefined;
}

export type MoveResult =
  | { readonly kind: 'released'; readonly existed: boolean }
  | {
      readonly kind: 'moved';
      readonly to: string;
      /** Who held the group when the move was written (null: nobody). */
      readonly from: string | null;
      /** With --wait: ms from the write until etcd named NODE the holder; null when it did not within the wait. */
      readonly tookMs: number | null | undefined;
      /** With --wait: the previous holder handed the group over in one write (no vacancy in between). */
      readonly handedOver: boolean | undefined;
    };

const WAIT_MS = 10_000;

/**
 * Whether `to` can be handed `group` now (an alive member of it, standing with a priority, a candidate, not a
 * sync-group follower): its member lease, which the move record names, and the group's holder. Throws a usage
 * error saying why not.
 */
export function checkMoveTarget(
  entries: ReadonlyMap<string, Entry>,
  keys: ClusterKeys,
  cluster: string,
  group: string,
  to: string,
): { lease: string; from: string | null } {
  const memberEntry = entries.get(keys.member(to));
  const member = memberEntry === undefined ? undefined : decodeMember(memberEntry.value);
  const groups = new Set<string>();
  for (const [k, { value }] of entries)
    if (k.startsWith(keys.members))
      for (const g of Object.keys(decodeMember(value)?.groups ?? {})) groups.add(g);
  if (!groups.has(group))
    throw new CoordError('ERR_COORD_USAGE', `no group ${group} in cluster ${cluster}`, {
      hint: `groups with an alive member: ${[...groups].sort().join(', ') || 'none'} (coord status)`,
    });
  const standing = member?.groups[group];
  if (memberEntry === undefined || member === undefined || standing === undefined)
    throw new CoordError('ERR_COORD_USAGE', `${to} is not an alive member of group ${group}`, {
      hint: 'coord status lists the members and their groups; a move needs the node running coord join',
    });
  if (standing.follows !== undefined)
    throw new CoordError(
      'ERR_COORD_USAGE',
      `${group} goes with ${standing.follows} (one sync group): move ${standing.follows} and it follows`,
      { hint: `coord move ${standing.follows} --to ${to}` },
    );
  if (standing.priority < 1)
    throw new CoordError(
      'ERR_COORD_USAGE',
      `${to} stands with priority 0 for ${group} (FAULT or maintenance): it cannot hold it`,
      { hint: `coord status shows why; coord status --local on ${to} shows its checks` },
    );
  if (!member.candidate)
    throw new CoordError('ERR_COORD_USAGE', `${to} may not be elected now (not a candidate)`, {
      hint: `coord status --local on ${to} says why (view not synced, slow etcd acks)`,
    });
  const leaderEntry = entries.get(keys.leader(group));
  const from = leaderEntry === undefined ? null : (decodeLeader(leaderEntry.value)?.node ?? null);
  return { lease: memberEntry.lease, from };
}

export async function move(a: MoveArgs): Promise<MoveResult> {
  if ((a.to === undefined) === (a.release !== true))
    throw new CoordError('ERR_COORD_USAGE', 'coord move needs --to NODE, or --release', {
      hint: `coord move ${a.group} --to lb2 moves it; coord move ${a.group} --release ends a move`,
    });
  const t = await resolveTarget(a);
  return withEtcd(
    t,
    async (etcd, cluster) => {
      const keys = clusterKeys(cluster);
      const key = keys.move(a.group);
      if (a.release === true) {
        const { entry } = await etcd.get(key);
        if (entry !== undefined)
          await etcd.txn([{ key, target: 'mod', value: entry.modRevision }], [{ type: 'delete', key }]);
        return { kind: 'released', existed: entry !== undefined };
      }
      const to = a.to as string;
      const { entries } = await readPrefix(etcd, keys.prefix);
      const { lease, from } = checkMoveTarget(entries, keys, cluster, a.group, to);
      const written = await etcd.put(
        key,
        encodeMove({
          to,
          lease,
          by: `${userInfo().username}@${hostname()}`,
          at: Date.now(),
        }),
      );
      if (a.wait !== true) return { kind: 'moved', to, from, tookMs: undefined, handedOver: undefined };
      const started = Date.now();
      for (;;) {
        const { entry } = await etcd.get(keys.leader(a.group));
        const leader = entry === undefined ? undefined : decodeLeader(entry.value);
        if (
          leader?.node === to &&
          entry !== undefined &&
          (from === to || entry.modRevision > written.revision)
        )
          return {
            kind: 'moved',
            to,
            from,
            tookMs: Date.now() - started,
            handedOver: leader.handover !== undefined,
          };
        if (Date.now() - started > WAIT_MS)
          return { kind: 'moved', to, from, tookMs: null, handedOver: false };
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    a.wait === true ? WAIT_MS : 0,
  );
}

/** What `coord move` prints. */
export function formatMove(a: MoveArgs, r: MoveResult): string {
  if (r.kind === 'released')
    return r.existed
      ? `move of ${a.group} released: priorities decide again (a node with a higher priority and preemption takes it back)`
      : `no move of ${a.group} to release`;
  const until = `it keeps ${a.group} until it fails or coord move ${a.group} --release`;
  if (r.from === r.to) return `${r.to} already holds ${a.group}; ${until}`;
  if (r.tookMs === undefined)
    return `${a.group} moved to ${r.to}${r.from === null ? '' : `: ${r.from} hands it over now`}; ${until} (coord status shows the holder)`;
  if (r.tookMs === null)
    return `${a.group} is not on ${r.to} after ${WAIT_MS / 1000} s; the move stays written (coord status shows why)`;
  return (
    `${a.group} moved to ${r.to} in ${r.tookMs} ms (from the move to etcd naming ${r.to} the holder` +
    `${r.handedOver === true ? `; ${r.from ?? 'the holder'} handed it over in one write` : ''}); ${until}`
  );
}
