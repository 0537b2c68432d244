/**
 * The records coord keeps in etcd, one codec each, next to the key layout (keys.ts). Anyone with write access to
 * etcd can put anything under a key: every decoder checks every field and returns undefined for a value it cannot
 * trust, and callers decide what "unknown" means (always the safe side for anything that decides safety).
 */
import * as z from 'zod';

const MAX_RECORD_BYTES = 64 * 1024;

/** Parse JSON from etcd defensively: bounded size, never throws. */
export function parseJson(
  value: Buffer,
  maxBytes = MAX_RECORD_BYTES,
): { ok: true; value: unknown } | { ok: false; reason: string } {
  if (value.length > maxBytes)
    return { ok: false, reason: `value of ${value.length} bytes exceeds ${maxBytes}` };
  try {
    return { ok: true, value: JSON.parse(value.toString('utf8')) as unknown };
  } catch (e) {
    return { ok: false, reason: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
  }
}

function decodeWith<T>(schema: z.ZodType<T>, value: Buffer): T | undefined {
  const json = parseJson(value);
  if (!json.ok) return undefined;
  const r = schema.safeParse(json.value);
  return r.success ? r.data : undefined;
}

/** The longest guard or lifetime a record may claim: a hostile value cannot stall an election for longer. */
export const MAX_RECORD_WAIT_MS = 10_000;
const waitMs = z.number().finite().min(0).max(MAX_RECORD_WAIT_MS);
/**
 * The longest `--etcd-outage-max` (1 h): a successor keeps waiting while a copy answers for at most this long past
 * the usual wire cap, and only while something actually answers for the VIP.
 */
export const MAX_HOLD_MS = 3_600_000;
const nodeName = z.string().min(1).max(253);

// ── members/<node> ────────────────────────────────────────────────────────────────────────────────────────────

const memberGroupSchema = z.object({
  priority: z.number().int().min(0).max(255),
  preempt: z.boolean().catch(true),
  preemptDelayMs: z.number().finite().min(0).catch(0),
  vips: z.array(z.string()).catch([]),
  /** A sync group's follower: the group it goes with (shown by coord status; not used to elect). */
  follows: z.string().max(63).optional().catch(undefined),
  /** Hybrid mode: the address this node's VRRP adverts for the group come from (so others know them as coord's). */
  vrrpFrom: z.string().max(64).optional().catch(undefined),
});

const memberSchema = z.object({
  node: nodeName,
  groups: z.record(z.string(), memberGroupSchema),
  interface: z.string().catch(''),
  version: z.string().catch(''),
  /** Wall-clock ms, for display only. */
  startedAt: z.number().catch(0),
  /**
   * Whether the node may be elected now: its session is up, its view of the cluster is synced at or after its
   * session began, and its etcd acks are prompt (docs/design.md, "Candidacy"). Absent = true (older writers).
   */
  candidate: z.boolean().catch(true),
  /**
   * What a holder hands a successor in one transaction (docs/design.md, "Handing over"): the values the
   * successor's own campaign would have written into the last-holder record. Absent: nobody hands this node a
   * group; it campaigns.
   */
  takeover: z
    .object({
      guardMs: waitMs,
      lifetimeMs: waitMs,
      holdMaxMs: z.number().finite().min(0).max(MAX_HOLD_MS).optional(),
    })
    .optional()
    .catch(undefined),
  /** Where the node receives peer-channel heartbeats (absent: it runs without the peer channel). */
  peer: z
    .object({ address: z.union([z.ipv4(), z.ipv6()]), port: z.number().int().min(1).max(65535) })
    .optional()
    .catch(undefined),
});

/** What a node publishes about itself under `members/<node>`, bound to its session lease. */
export type MemberRecord = z.infer<typeof memberSchema>;

export function decodeMember(value: Buffer): MemberRecord | undefined {
  return decodeWith(memberSchema, value);
}

export function encodeMember(record: MemberRecord): string {
  return JSON.stringify(record);
}

// ── groups/<group>/leader ─────────────────────────────────────────────────────────────────────────────────────

const leaderSchema = z.object({
  node: nodeName,
  leaseId: z.string(),
  /**
   * Set when the previous holder handed the group to `node` in one transaction, after its VIP removal succeeded:
   * the vacancy is clean, as after a clean resign. `from`: the previous holder; `epoch`: its epoch.
   */
  handover: z
    .object({
      from: nodeName,
      epoch: z.number().int().min(0),
      /** Why it left (`preempted`, `stopping`, `fault`, …): a preempted one may challenge its successor at once. */
      reason: z.string().max(32).optional().catch(undefined),
    })
    .optional()
    .catch(undefined),
});

/**
 * The value of a group's leader key (bound to the holder's lease). Its mod revision is the epoch: the revision
 * at which the key got its holder — created by a campaign, or re-put under the successor's lease by a handover.
 * Nothing else writes the key.
 */
export type LeaderValue = z.infer<typeof leaderSchema>;

/** The leader key's value, or undefined when unreadable (the key's existence still means "held"). */
export function decodeLeader(value: Buffer): LeaderValue | undefined {
  return decodeWith(leaderSchema, value);
}

export function encodeLeader(v: LeaderValue): string {
  return JSON.stringify(v);
}

// ── groups/<group>/last-holder ────────────────────────────────────────────────────────────────────────────────

const lastHolderSchema = z.object({
  node: nodeName,
  leaseId: z.string(),
  /** The holder's epoch; written with the release (at the campaign it is the record's own mod revision). */
  epoch: z.number().int().min(0).optional(),
  /** How long after its lease expired the holder's VIP may still be on its interface (its takeover guard). */
  guardMs: waitMs,
  /** The kernel lifetime of its VIP: the longest a stale copy can live without refreshes. */
  lifetimeMs: waitMs,
  /** `--etcd-outage hold`: how long past its lease the holder may keep its VIP on its peers' promises. */
  holdMaxMs: z.number().finite().min(0).max(MAX_HOLD_MS).optional(),
  /** True only when the holder removed its VIP and then resigned (in the same transaction as the delete). */
  released: z.boolean(),
});

/**
 * The last holder of a group (no lease: it outlives its writer). Every winning campaign overwrites it with
 * `released: false` in the transaction that creates the leader key, and a clean resign overwrites it with
 * `released: true` in the transaction that deletes the key. So the record read atomically by a campaign says
 * exactly how the vacancy it ends began (docs/design.md, "Clean and unclean vacancies").
 */
export type LastHolderRecord = z.infer<typeof lastHolderSchema>;

export function decodeLastHolder(value: Buffer): LastHolderRecord | undefined {
  return decodeWith(lastHolderSchema, value);
}

export function encodeLastHolder(r: LastHolderRecord): string {
  return JSON.stringify(r);
}

// ── maintenance/<node> ───────────────────────────────────────────────────────────────────────────────────────

const maintenanceSchema = z.object({
  /** Who set it and why, for `coord status` (free text, bounded). */
  by: z.string().max(253).catch(''),
  reason: z.string().max(500).catch(''),
  /** Wall-clock ms, for display only. */
  since: z.number().catch(0),
});

/**
 * `coord maintenance on`: while this key exists the node publishes priority 0 for every group, hands what it holds
 * to another node and does not campaign. Any value counts as "on" — a key an operator wrote by hand with etcdctl
 * must not be ignored — and the fields are only shown.
 */
export type MaintenanceRecord = z.infer<typeof maintenanceSchema>;

export function decodeMaintenance(value: Buffer): MaintenanceRecord {
  return decodeWith(maintenanceSchema, value) ?? { by: '', reason: '', since: 0 };
}

export function encodeMaintenance(r: MaintenanceRecord): string {
  return JSON.stringify(r);
}

// ── moves/<group> ─────────────────────────────────────────────────────────────────────────────────────────────

/** The priority a node publishes for a group moved to it: above every configured one (1-254). */
export const MOVE_PRIORITY = 255;

const moveSchema = z.object({
  /** The node the group is moved to. */
  to: nodeName,
  /** Its member lease when the move was made: a restart (new lease) ends the move. */
  lease: z.string().regex(/^\d{1,20}$/),
  /** Who moved it, for `coord status` (free text, bounded). */
  by: z.string().max(253).catch(''),
  /** Wall-clock ms, for display only. */
  at: z.number().catch(0),
});

/**
 * `coord move GROUP --to NODE`: while this key names NODE with the member lease NODE has, NODE publishes
 * {@link MOVE_PRIORITY} for the group with preemption at once, so the holder hands the group to it and nobody
 * takes it back. It ends when NODE fails — gone or restarted (another lease), FAULT or maintenance (NODE removes
 * the key) — or with `coord move GROUP --release`. Undefined: not a move record (ignored).
 */
export type MoveRecord = z.infer<typeof moveSchema>;

export function decodeMove(value: Buffer): MoveRecord | undefined {
  return decodeWith(moveSchema, value);
}

export function encodeMove(r: MoveRecord): string {
  return JSON.stringify(r);
}

// ── events/<at>-<node>-<seq> ──────────────────────────────────────────────────────────────────────────────────

const eventSchema = z.object({
  /** Wall-clock ms on the node that wrote it. */
  at: z.number(),
  node: nodeName,
  group: z.string().max(253),
  kind: z.enum(['transition', 'vip-claimed', 'vip-released', 'vip-removal-failed']),
  from: z.string().max(32).optional().catch(undefined),
  to: z.string().max(32).optional().catch(undefined),
  reason: z.string().max(200).optional().catch(undefined),
  epoch: z.number().nullable().optional().catch(undefined),
  /** vip-claimed: ms from noticing the vacancy (or the handover) to the VIP on the interface. */
  ms: z.number().optional().catch(undefined),
  detail: z.string().max(500).optional().catch(undefined),
});

/** One entry of a cluster's history (`coord events`): written by the node it happened on. */
export type EventRecord = z.infer<typeof eventSchema>;

export function decodeEvent(value: Buffer): EventRecord | undefined {
  return decodeWith(eventSchema, value);
}

export function encodeEvent(e: EventRecord): string {
  return JSON.stringify(e);
}

/** Event keys sort by time: `<at, 13 digits>-<node>-<seq>`. */
export function eventKeySuffix(e: EventRecord, seq: number): string {
  return `${String(Math.max(0, Math.floor(e.at))).padStart(13, '0')}-${e.node}-${String(seq).padStart(6, '0')}`;
}

// ── peer/key ──────────────────────────────────────────────────────────────────────────────────────────────────

/** The peer channel's HMAC key: 32 random bytes, base64, created by the first node that joins (no lease). */
const peerKeySchema = z.object({ key: z.base64() });

export const PEER_KEY_BYTES = 32;

/** The key, or undefined when the value is not a record of a 32-byte key (refused: never a weaker key). */
export function decodePeerKey(value: Buffer): Buffer | undefined {
  const r = decodeWith(peerKeySchema, value);
  if (r === undefined) return undefined;
  const key = Buffer.from(r.key, 'base64');
  return key.length === PEER_KEY_BYTES ? key : undefined;
}

export function encodePeerKey(key: Buffer): string {
  return JSON.stringify({ key: key.toString('base64') });
}

// ── status/<node> ─────────────────────────────────────────────────────────────────────────────────────────────

const statusGroupSchema = z.object({
  name: z.string(),
  role: z.string(),
  epoch: z.number().nullable().catch(null),
  vips: z.array(z.string()).readonly().catch([]),
  vipsPresent: z.array(z.string()).readonly().catch([]),
});

const statusHaproxySchema = z.object({
  result: z.string().catch('unknown'),
  revision: z.number().catch(0),
  model: z.string().catch(''),
  error: z.string().optional().catch(undefined),
  refused: z.array(z.unknown()).readonly().catch([]),
  /** Disabled servers and their current sessions on that node (`coord server drain --wait`). */
  draining: z.record(z.string(), z.number()).optional().catch(undefined),
});

const statusSchema = z.object({
  node: nodeName,
  groups: z.array(statusGroupSchema).readonly().catch([]),
  haproxy: statusHaproxySchema.optional().catch(undefined),
  /** Set while the node is in maintenance (`coord maintenance on`). */
  maintenance: z
    .object({ by: z.string().catch(''), reason: z.string().catch(''), since: z.number().catch(0) })
    .optional()
    .catch(undefined),
  /** The health checks failing on the node, each with its last error (`script chk_haproxy: exit code 1`). */
  failingChecks: z.array(z.string().max(300)).max(64).readonly().optional().catch(undefined),
  /** Whether the node may be elected now, and if not, why (`slow-acks`, `view-behind-session`, …). */
  candidacy: z
    .object({ candidate: z.boolean(), blockedBy: z.array(z.string().max(64)).max(16).readonly().catch([]) })
    .optional()
    .catch(undefined),
  /** Wall-clock ms of the write. */
  at: z.number().catch(0),
});

/** The part of a node's `status/<node>` record that readers rely on (writers may add more). */
export type StatusRecord = z.infer<typeof statusSchema>;

export function decodeStatus(value: Buffer): StatusRecord | undefined {
  return decodeWith(statusSchema, value);
}

export function encodeStatus(status: StatusRecord): string {
  return JSON.stringify(status);
}
