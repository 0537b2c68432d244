/**
 * The peer channel's heartbeat: one UDP datagram a node sends to every member it knows from etcd, several times
 * per TTL (docs/design.md, "Peer channel"). etcd stays the only place where leadership is decided; a heartbeat
 * only tells a peer "I am alive, and this is what I hold until when", so that a follower can suspect a silent
 * holder long before its lease expires and check the wire.
 *
 * Every heartbeat is authenticated with HMAC-SHA-256 under a per-cluster key kept in etcd, and decoding never
 * throws: a malformed, forged or truncated datagram comes back as a reason to count and drop.
 *
 * Layout (network byte order):
 *
 *   0   4  magic "CPH1"
 *   4   1  version (2)
 *   5   1  group count g (≤ MAX_GROUPS)
 *   6   2  length of everything before the MAC
 *   8   8  sender's etcd lease ID (u64): the sender's incarnation
 *  16   8  sequence number (u64), strictly increasing per lease
 *  24   1  node name length n, then n bytes UTF-8
 *   …   g × { 1 byte name length m, m bytes UTF-8, 8 bytes epoch (u64, 0 = not leading),
 *             4 bytes ms left until the sender's fencing deadline when sent (u32, 0 = not holding the VIP),
 *             1 byte flags (1 = asking: the holder cannot reach etcd and asks for promises;
 *                           2 = promise: the sender cannot reach etcd either and will not campaign for the group),
 *             8 bytes echo: the newest sequence number the sender heard from the group's holder (u64, 0 = none) }
 *   …  16  HMAC-SHA-256 over every byte before it, truncated to 128 bits
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const HEARTBEAT_MAGIC = 'CPH1';
/** Version 2 added the flags and the echo (riding out etcd outages); version 1 datagrams are dropped as `version`. */
export const HEARTBEAT_VERSION = 2;
/** Groups one heartbeat can carry; a node with more sends more than one. */
export const MAX_GROUPS = 24;
/** Node and group names are DNS-label sized. */
export const MAX_NAME_BYTES = 63;
export const MAC_BYTES = 16;
/** The key is 256 bits; shorter keys are refused. */
export const CLUSTER_KEY_BYTES = 32;

const HEADER_BYTES = 24;
const GROUP_FIXED_BYTES = 1 + 8 + 4 + 1 + 8;
const FLAG_ASKING = 1;
const FLAG_PROMISE = 2;

export interface GroupBeat {
  readonly group: string;
  /** The epoch (mod revision of the leader key) the sender leads at; 0 when it does not lead this group. */
  readonly epoch: number;
  /** Holder only: milliseconds left until its own fencing deadline when it sent this; 0 when not holding. */
  readonly deadlineInMs: number;
  /** Holder only: its keepalives go unanswered and it asks the others for promises (`--etcd-outage hold`). */
  readonly asking?: boolean;
  /** Follower only: it cannot reach etcd either and will not campaign for the group (docs/design.md, "Riding out etcd outages"). */
  readonly promise?: boolean;
  /** The newest sequence number the sender heard from the group's holder (0: none); what a promise answers. */
  readonly echoSeq?: number;
}

export interface Heartbeat {
  readonly node: string;
  /** The sender's etcd lease ID (decimal, as etcd reports it). */
  readonly leaseId: string;
  readonly seq: number;
  readonly groups: readonly GroupBeat[];
}

/** Why a datagram was dropped: each is counted separately (metrics), never thrown. */
export type DropReason = 'short' | 'magic' | 'version' | 'length' | 'mac' | 'malformed';

export type Decoded = { ok: true; heartbeat: Heartbeat } | { ok: false; reason: DropReason };

/** A new random cluster key (created on first join and kept in etcd). */
export function newClusterKey(): Buffer {
  return randomBytes(CLUSTER_KEY_BYTES);
}

function checkKey(key: Buffer): void {
  if (key.length < CLUSTER_KEY_BYTES)
    throw new RangeError(`peer key must be at least ${CLUSTER_KEY_BYTES} bytes, got ${key.length}`);
}

function mac(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest().subarray(0, MAC_BYTES);
}

function name(what: string, value: string): Buffer {
  const b = Buffer.from(value, 'utf8');
  if (b.length === 0 || b.length > MAX_NAME_BYTES)
    throw new RangeError(`${what} must be 1-${MAX_NAME_BYTES} bytes of UTF-8: ${JSON.stringify(value)}`);
  return b;
}

function u64(what: string, value: bigint): bigint {
  if (value < 0n || value > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${what} out of range: ${value}`);
  return value;
}

/** Encode and sign a heartbeat. Throws only on values the sender itself got wrong (a programming error). */
export function encodeHeartbeat(hb: Heartbeat, key: Buffer): Buffer {
  checkKey(key);
  if (hb.groups.length > MAX_GROUPS) throw new RangeError(`at most ${MAX_GROUPS} groups per heartbeat`);
  if (!/^\d+$/.test(hb.leaseId)) throw new RangeError(`lease ID must be decimal: ${hb.leaseId}`);
  if (!Number.isSafeInteger(hb.seq) || hb.seq < 0) throw new RangeError(`bad sequence number: ${hb.seq}`);
  const node = name('node name', hb.node);
  const groups = hb.groups.map((g) => {
    if (!Number.isSafeInteger(g.epoch) || g.epoch < 0) throw new RangeError(`bad epoch: ${g.epoch}`);
    const left = Math.round(g.deadlineInMs);
    if (!(left >= 0 && left <= 0xffff_ffff)) throw new RangeError(`bad deadline: ${g.deadlineInMs}`);
    const echo = g.echoSeq ?? 0;
    if (!Number.isSafeInteger(echo) || echo < 0) throw new RangeError(`bad echo: ${echo}`);
    const flags = (g.asking === true ? FLAG_ASKING : 0) | (g.promise === true ? FLAG_PROMISE : 0);
    return { name: name('group name', g.group), epoch: g.epoch, left, flags, echo };
  });
  const size =
    HEADER_BYTES + 1 + node.length + groups.reduce((n, g) => n + GROUP_FIXED_BYTES + g.name.length, 0);
  const out = Buffer.alloc(size + MAC_BYTES);
  out.write(HEARTBEAT_MAGIC, 0, 'latin1');
  out.writeUInt8(HEARTBEAT_VERSION, 4);
  out.writeUInt8(groups.length, 5);
  out.writeUInt16BE(size, 6);
  out.writeBigUInt64BE(u64('lease ID', BigInt(hb.leaseId)), 8);
  out.writeBigUInt64BE(BigInt(hb.seq), 16);
  let at = HEADER_BYTES;
  out.writeUInt8(node.length, at++);
  at += node.copy(out, at);
  for (const g of groups) {
    out.writeUInt8(g.name.length, at++);
    at += g.name.copy(out, at);
    out.writeBigUInt64BE(BigInt(g.epoch), at);
    out.writeUInt32BE(g.left, at + 8);
    out.writeUInt8(g.flags, at + 12);
    out.writeBigUInt64BE(BigInt(g.echo), at + 13);
    at += GROUP_FIXED_BYTES - 1;
  }
  mac(key, out.subarray(0, size)).copy(out, size);
  return out;
}

/**
 * Check and decode one datagram. The MAC is checked before any field past the fixed header is read, so a forged
 * or corrupted datagram is dropped as `mac` without its contents being looked at.
 */
export function decodeHeartbeat(data: Buffer, key: Buffer): Decoded {
  checkKey(key);
  if (data.length < HEADER_BYTES + 1 + MAC_BYTES) return { ok: false, reason: 'short' };
  if (data.toString('latin1', 0, 4) !== HEARTBEAT_MAGIC) return { ok: false, reason: 'magic' };
  if (data.readUInt8(4) !== HEARTBEAT_VERSION) return { ok: false, reason: 'version' };
  const size = data.readUInt16BE(6);
  if (size < HEADER_BYTES + 1 || size + MAC_BYTES !== data.length) return { ok: false, reason: 'length' };
  const expected = mac(key, data.subarray(0, size));
  if (!timingSafeEqual(expected, data.subarray(size))) return { ok: false, reason: 'mac' };
  // Authentic from here on: only a sender with the key (a bug in a peer) can still get the body wrong.
  const count = data.readUInt8(5);
  const leaseId = data.readBigUInt64BE(8).toString();
  const seq = data.readBigUInt64BE(16);
  if (count > MAX_GROUPS || seq > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: 'malformed' };
  let at = HEADER_BYTES;
  const readName = (): string | undefined => {
    if (at >= size) return undefined;
    const n = data.readUInt8(at++);
    if (n === 0 || n > MAX_NAME_BYTES || at + n > size) return undefined;
    const s = data.toString('utf8', at, at + n);
    at += n;
    return s;
  };
  const node = readName();
  if (node === undefined) return { ok: false, reason: 'malformed' };
  const groups: GroupBeat[] = [];
  for (let i = 0; i < count; i++) {
    const group = readName();
    const fixed = GROUP_FIXED_BYTES - 1;
    if (group === undefined || at + fixed > size) return { ok: false, reason: 'malformed' };
    const epoch = data.readBigUInt64BE(at);
    const flags = data.readUInt8(at + 12);
    const echo = data.readBigUInt64BE(at + 13);
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    if (epoch > max || echo > max || (flags & ~(FLAG_ASKING | FLAG_PROMISE)) !== 0)
      return { ok: false, reason: 'malformed' };
    groups.push({
      group,
      epoch: Number(epoch),
      deadlineInMs: data.readUInt32BE(at + 8),
      asking: (flags & FLAG_ASKING) !== 0,
      promise: (flags & FLAG_PROMISE) !== 0,
      echoSeq: Number(echo),
    });
    at += fixed;
  }
  if (at !== size) return { ok: false, reason: 'malformed' };
  return { ok: true, heartbeat: { node, leaseId, seq: Number(seq), groups } };
}
