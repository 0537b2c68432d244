import { CoordError } from '@coord/core';
import type { Compare, EtcdBackend, EtcdReader, Entry, TxnOp } from './backend.js';
import type { ClusterKeys } from './keys.js';
import {
  decodeLastHolder,
  decodePeerKey,
  encodeLastHolder,
  encodePeerKey,
  encodeLeader,
  encodeMember,
  encodeStatus,
  type LastHolderRecord,
  type MemberRecord,
  type StatusRecord,
} from './records.js';

/** How the vacancy a campaign ended had begun, read atomically by the winning transaction. */
export type Vacancy =
  /** The previous holder removed its VIP, then resigned: nothing of it can be left on any interface. */
  | { readonly clean: true; readonly previous: string }
  /**
   * The previous holder's lease expired or it resigned without confirming its VIP was gone: its copy may live
   * up to `guardMs` after the lease ended, and at most `lifetimeMs` without refreshes. `previous` is undefined when
   * there is no readable record (a group's first election, or a record someone overwrote).
   */
  | {
      readonly clean: false;
      readonly previous: string | undefined;
      /** The previous holder's lease (fast failover: whether this vacancy is the one our revoke began). */
      readonly previousLease?: string;
      readonly guardMs: number | undefined;
      readonly lifetimeMs: number | undefined;
      /** How long past its lease the previous holder could keep its VIP on promises (`--etcd-outage hold`). */
      readonly holdMaxMs?: number;
    };

export type CampaignResult =
  { readonly won: true; readonly epoch: number; readonly vacancy: Vacancy } | { readonly won: false };

/** What a holder states about itself when it wins (kept in the last-holder record). */
export interface HolderFacts {
  readonly node: string;
  readonly leaseId: string;
  readonly guardMs: number;
  readonly lifetimeMs: number;
  /** `--etcd-outage hold` only. */
  readonly holdMaxMs?: number;
}

function vacancyOf(previous: Entry | undefined): Vacancy {
  const rec = previous === undefined ? undefined : decodeLastHolder(previous.value);
  if (rec === undefined)
    return { clean: false, previous: undefined, guardMs: undefined, lifetimeMs: undefined };
  if (rec.released) return { clean: true, previous: rec.node };
  return {
    clean: false,
    previous: rec.node,
    previousLease: rec.leaseId,
    guardMs: rec.guardMs,
    lifetimeMs: rec.lifetimeMs,
    ...(rec.holdMaxMs === undefined ? {} : { holdMaxMs: rec.holdMaxMs }),
  };
}

/**
 * The etcd writes of the election. Each is one transaction whose comparison makes it safe to race: the leader key
 * is only created if absent, and only deleted by the holder of that epoch.
 */
export class ElectionStore {
  constructor(
    private readonly etcd: EtcdBackend,
    readonly keys: ClusterKeys,
  ) {}

  /**
   * Write our member record; returns its revision. `after`: the revision of our last write that etcd confirmed —
   * the record is then also broadcast (EtcdBackend.broadcast), guarded by that revision, so a node whose path to
   * the member in use stalled still tells the others it stopped being a candidate, and a copy that lands late
   * cannot overwrite anything written after it.
   */
  async putMember(leaseId: string, record: MemberRecord, after?: number): Promise<number> {
    const key = this.keys.member(record.node);
    const value = encodeMember(record);
    const put = this.etcd.put(key, value, leaseId);
    if (after !== undefined)
      this.etcd.broadcast?.(
        [{ key, target: 'mod', value: after }],
        [{ type: 'put', key, value, lease: leaseId }],
        put,
        'member',
      );
    return (await put).revision;
  }

  /** Publish this node's status (bound to its lease, so it disappears with the node). */
  async putStatus(leaseId: string, status: StatusRecord): Promise<void> {
    await this.etcd.put(this.keys.status(status.node), encodeStatus(status), leaseId);
  }

  /**
   * Create the leader key with our lease if nobody holds it, and in the same transaction overwrite the
   * last-holder record with ours (not released) while reading the one it replaces: that record says whether the
   * vacancy we end was clean. Its revision is our epoch.
   */
  async campaign(group: string, facts: HolderFacts): Promise<CampaignResult> {
    const key = this.keys.leader(group);
    const record: LastHolderRecord = { ...facts, released: false };
    const res = await this.etcd.txn(
      [{ key, target: 'create', value: 0 }],
      [
        {
          type: 'put',
          key,
          value: encodeLeader({ node: facts.node, leaseId: facts.leaseId }),
          lease: facts.leaseId,
        },
        { type: 'put', key: this.keys.lastHolder(group), value: encodeLastHolder(record), prevKv: true },
      ],
    );
    if (!res.succeeded) return { won: false };
    return { won: true, epoch: res.revision, vacancy: vacancyOf(res.results[1]) };
  }

  /**
   * Give up the group held at `epoch`, in one transaction that only applies while the epoch is still ours:
   * delete the leader key and, when `clean` (our VIP is verifiably gone), mark the last-holder record released so
   * the successor need not wait for a stale copy. Returns false when the key was no longer ours.
   */
  async resign(group: string, epoch: number, facts: HolderFacts, clean: boolean): Promise<boolean> {
    const key = this.keys.leader(group);
    const record: LastHolderRecord = { ...facts, epoch, released: true };
    const compares: Compare[] = [{ key, target: 'mod', value: epoch }];
    const ops: TxnOp[] = clean
      ? [
          { type: 'put', key: this.keys.lastHolder(group), value: encodeLastHolder(record) },
          { type: 'delete', key },
        ]
      : [{ type: 'delete', key }];
    // Also through the standby connections when etcd has not answered in a moment: under a cut of etcd's replies
    // the member in use can no longer be sent anything, and the successor would wait for our lease to expire
    // (docs/design.md, "Fencing").
    const txn = this.etcd.txn(compares, ops);
    this.etcd.broadcast?.(compares, ops, txn, 'leadership');
    return (await txn).succeeded;
  }

  /**
   * A clean resign and the successor's campaign in one transaction (docs/design.md, "Handing over"): only while the
   * group is still ours at `epoch` and the successor's member record is the one we read, put the leader key under
   * the successor's lease — marked as handed over, so the successor claims at once — and the last-holder record as
   * its campaign would have. Call only after our VIP removal succeeded. False when it did not apply (then resign).
   */
  async handOver(
    group: string,
    epoch: number,
    from: string,
    to: Successor,
    reason?: string,
  ): Promise<boolean> {
    const key = this.keys.leader(group);
    const record: LastHolderRecord = {
      node: to.node,
      leaseId: to.leaseId,
      guardMs: to.guardMs,
      lifetimeMs: to.lifetimeMs,
      ...(to.holdMaxMs === undefined ? {} : { holdMaxMs: to.holdMaxMs }),
      released: false,
    };
    const compares: Compare[] = [
      { key, target: 'mod', value: epoch },
      { key: this.keys.member(to.node), target: 'mod', value: to.memberRevision },
    ];
    const ops: TxnOp[] = [
      { type: 'put', key: this.keys.lastHolder(group), value: encodeLastHolder(record) },
      {
        type: 'put',
        key,
        value: encodeLeader({
          node: to.node,
          leaseId: to.leaseId,
          handover: { from, epoch, ...(reason === undefined ? {} : { reason }) },
        }),
        lease: to.leaseId,
      },
    ];
    const txn = this.etcd.txn(compares, ops);
    this.etcd.broadcast?.(compares, ops, txn, 'leadership');
    const res = await txn;
    return res.succeeded;
  }
}

/** The successor a holder hands its group to: the member record it read (its lease and revision) and facts. */
export interface Successor {
  readonly node: string;
  /** The lease of its member key: the leader key is put under it. */
  readonly leaseId: string;
  /** The mod revision of its member key as read: the handover applies only to that very record. */
  readonly memberRevision: number;
  /** What its own campaign would put in the last-holder record (from its member record). */
  readonly guardMs: number;
  readonly lifetimeMs: number;
  readonly holdMaxMs?: number | undefined;
}

/**
 * The cluster's peer-channel key: created with `fresh` if nobody made one yet (the first node to join), else the
 * one in etcd. A value that is not a 32-byte key is refused, never replaced: whoever wrote it may be attacking the
 * cluster, and a node that silently made a new key would stop hearing every peer.
 */
export async function ensurePeerKey(etcd: EtcdBackend, keys: ClusterKeys, fresh: Buffer): Promise<Buffer> {
  const res = await etcd.txn(
    [{ key: keys.peerKey, target: 'create', value: 0 }],
    [{ type: 'put', key: keys.peerKey, value: encodePeerKey(fresh) }],
  );
  if (res.succeeded) return fresh;
  const { entry } = await etcd.get(keys.peerKey);
  const key = entry === undefined ? undefined : decodePeerKey(entry.value);
  if (key === undefined)
    throw new CoordError('ERR_COORD_ETCD', `${keys.peerKey} in etcd does not hold a 32-byte peer key`, {
      hint: `delete it (etcdctl del ${keys.peerKey}) and restart coord on every node: the first one creates a new key`,
    });
  return key;
}

/** Read every key under a prefix once (for `coord status` and other one-shot commands). */
export async function readPrefix(
  etcd: EtcdReader,
  prefix: string,
): Promise<{ revision: number; entries: Map<string, Entry> }> {
  const res = await etcd.range(prefix);
  return { revision: res.revision, entries: new Map(res.entries.map((e) => [e.key, e] as const)) };
}

/**
 * Read-modify-write of one JSON key, safe against concurrent writers: the put only applies if the key's mod
 * revision is still the one we read (0 = absent); retried a few times on conflict.
 */
export async function updateKey(
  etcd: EtcdBackend,
  key: string,
  update: (current: Buffer | undefined) => { put: string } | { delete: true } | { unchanged: true },
  attempts = 5,
): Promise<{ revision: number; changed: boolean }> {
  for (let i = 0; i < attempts; i++) {
    const { entry } = await etcd.get(key);
    const next = update(entry?.value);
    if ('unchanged' in next) return { revision: 0, changed: false };
    const res = await etcd.txn(
      [{ key, target: 'mod', value: entry?.modRevision ?? 0 }],
      ['put' in next ? { type: 'put', key, value: next.put } : { type: 'delete', key }],
    );
    if (res.succeeded) return { revision: res.revision, changed: true };
  }
  throw new CoordError('ERR_COORD_ETCD', `etcd: ${key} kept changing under us (${attempts} attempts)`, {
    hint: 'another writer is updating the same service; try again',
  });
}
