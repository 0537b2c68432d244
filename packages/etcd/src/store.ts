import type { Etcd3 } from 'etcd3';
import { CoordError } from '@coord/core';
import { etcdError } from './client.js';
import type { ClusterKeys } from './keys.js';

/** What a node publishes about itself under `members/<node>`, bound to its session lease. */
export interface MemberRecord {
  readonly node: string;
  readonly groups: Readonly<
    Record<string, { priority: number; preempt: boolean; preemptDelayMs: number; vips: readonly string[] }>
  >;
  readonly interface: string;
  readonly version: string;
  /** Wall-clock ms, for display only. */
  readonly startedAt: number;
}

/** The value of a group's leader key. Its create revision is the epoch. */
export interface LeaderValue {
  readonly node: string;
  readonly leaseId: string;
  /** The holder's takeover guard (ms): how long its stale VIP may outlive its lease. */
  readonly guardMs: number;
}

export interface ReleasedValue {
  readonly node: string;
  readonly epoch: number;
}

/**
 * A member record as read from etcd, or undefined when it is not one. Anyone with etcd access can write anything
 * there: every field is checked, and the agent and `coord status` read members the same way.
 */
export function parseMemberRecord(value: Buffer): MemberRecord | undefined {
  const r = parseJson(value);
  const o =
    r.ok && typeof r.value === 'object' && r.value !== null
      ? (r.value as Record<string, unknown>)
      : undefined;
  if (o === undefined || typeof o.node !== 'string' || typeof o.groups !== 'object' || o.groups === null)
    return undefined;
  const groups: Record<string, MemberRecord['groups'][string]> = {};
  for (const [name, g] of Object.entries(o.groups as Record<string, unknown>)) {
    if (typeof g !== 'object' || g === null) return undefined;
    const x = g as Record<string, unknown>;
    if (typeof x.priority !== 'number' || !Number.isInteger(x.priority) || x.priority < 0 || x.priority > 255)
      return undefined;
    groups[name] = {
      priority: x.priority,
      preempt: x.preempt !== false,
      preemptDelayMs: typeof x.preemptDelayMs === 'number' && x.preemptDelayMs >= 0 ? x.preemptDelayMs : 0,
      vips: Array.isArray(x.vips) ? x.vips.filter((v): v is string => typeof v === 'string') : [],
    };
  }
  return {
    node: o.node,
    groups,
    interface: typeof o.interface === 'string' ? o.interface : '',
    version: typeof o.version === 'string' ? o.version : '',
    startedAt: typeof o.startedAt === 'number' ? o.startedAt : 0,
  };
}

/** The leader key's value, read defensively: the holder's name (if readable) and its guard, bounded to 10 s. */
export function parseLeaderValue(value: Buffer): { node: string | undefined; guardMs: number } {
  const r = parseJson(value);
  const v =
    r.ok && typeof r.value === 'object' && r.value !== null
      ? (r.value as { node?: unknown; guardMs?: unknown })
      : {};
  // A hostile or garbled guard cannot stall the election.
  const guardMs =
    typeof v.guardMs === 'number' && Number.isFinite(v.guardMs)
      ? Math.min(10_000, Math.max(0, v.guardMs))
      : 0;
  return { node: typeof v.node === 'string' ? v.node : undefined, guardMs };
}

/**
 * The etcd writes of the election. Each is one transaction whose comparison makes it safe to race: the leader key
 * is only created if absent, and only deleted by the holder of that epoch.
 */
export class ElectionStore {
  constructor(
    private readonly client: Etcd3,
    readonly keys: ClusterKeys,
  ) {}

  async putMember(leaseId: string, record: MemberRecord): Promise<void> {
    try {
      await this.client
        .put(this.keys.member(record.node))
        .value(JSON.stringify(record))
        .lease(leaseId)
        .exec();
    } catch (e) {
      throw etcdError('member registration', e);
    }
  }

  /** Publish this node's status (bound to its lease, so it disappears with the node). */
  async putStatus(leaseId: string, node: string, status: unknown): Promise<void> {
    try {
      await this.client.put(this.keys.status(node)).value(JSON.stringify(status)).lease(leaseId).exec();
    } catch (e) {
      throw etcdError('status publish', e);
    }
  }

  /** Create the leader key with our lease if nobody holds it. Returns the epoch on success. */
  async campaign(
    group: string,
    leaseId: string,
    value: LeaderValue,
  ): Promise<{ won: true; epoch: number } | { won: false }> {
    const key = this.keys.leader(group);
    try {
      const res = await this.client
        .if(key, 'Create', '==', 0)
        .then(this.client.put(key).value(JSON.stringify(value)).lease(leaseId))
        .commit();
      return res.succeeded ? { won: true, epoch: Number(res.header.revision) } : { won: false };
    } catch (e) {
      throw etcdError('campaign', e);
    }
  }

  /**
   * Release the group held at `epoch` (`clean` = our VIP is gone): mark the release clean (so the next holder need not wait for a stale VIP to
   * expire) and delete the leader key, in one transaction that only applies if the epoch is still ours.
   */
  async resign(group: string, epoch: number, node: string, clean = true): Promise<boolean> {
    const key = this.keys.leader(group);
    const released: ReleasedValue = { node, epoch };
    try {
      const ops = clean
        ? [
            this.client.put(this.keys.released(group)).value(JSON.stringify(released)),
            this.client.delete().key(key),
          ]
        : [this.client.delete().key(key)];
      const res = await this.client
        .if(key, 'Create', '==', epoch)
        .then(...ops)
        .commit();
      return res.succeeded;
    } catch (e) {
      throw etcdError('resign', e);
    }
  }
}

/** Parse JSON from etcd defensively: anyone with etcd access can write anything. */
export function parseJson(
  value: Buffer,
  maxBytes = 64 * 1024,
): { ok: true; value: unknown } | { ok: false; reason: string } {
  if (value.length > maxBytes)
    return { ok: false, reason: `value of ${value.length} bytes exceeds ${maxBytes}` };
  try {
    return { ok: true, value: JSON.parse(value.toString('utf8')) as unknown };
  } catch (e) {
    return { ok: false, reason: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** Read every key under a prefix once (for `coord status` and other one-shot commands). */
export async function readPrefix(
  client: Etcd3,
  prefix: string,
): Promise<{ revision: number; entries: Map<string, Buffer & { createRevision?: number }> }> {
  try {
    const res = await client.getAll().prefix(prefix).exec();
    const entries = new Map<string, Buffer & { createRevision?: number }>();
    for (const kv of res.kvs)
      entries.set(kv.key.toString(), Object.assign(kv.value, { createRevision: Number(kv.create_revision) }));
    return { revision: Number(res.header.revision), entries };
  } catch (e) {
    throw etcdError(`reading ${prefix}`, e);
  }
}

/**
 * Read-modify-write of one JSON key, safe against concurrent writers: the put only applies if the key's mod
 * revision is still the one we read (0 = absent); retried a few times on conflict.
 */
export async function updateKey(
  client: Etcd3,
  key: string,
  update: (current: Buffer | undefined) => { put: string } | { delete: true } | { unchanged: true },
  attempts = 5,
): Promise<{ revision: number; changed: boolean }> {
  for (let i = 0; i < attempts; i++) {
    let current: Buffer | undefined;
    let mod = 0;
    try {
      const res = await client.get(key).exec();
      const kv = res.kvs[0];
      current = kv?.value;
      mod = kv === undefined ? 0 : Number(kv.mod_revision);
    } catch (e) {
      throw etcdError(`reading ${key}`, e);
    }
    const next = update(current);
    if ('unchanged' in next) return { revision: 0, changed: false };
    try {
      const txn = client.if(key, 'Mod', '==', mod);
      const res = await (
        'put' in next ? txn.then(client.put(key).value(next.put)) : txn.then(client.delete().key(key))
      ).commit();
      if (res.succeeded) return { revision: Number(res.header.revision), changed: true };
    } catch (e) {
      throw etcdError(`writing ${key}`, e);
    }
  }
  throw new CoordError('ERR_COORD_ETCD', `etcd: ${key} kept changing under us (${attempts} attempts)`, {
    hint: 'another writer is updating the same service; try again',
  });
}
