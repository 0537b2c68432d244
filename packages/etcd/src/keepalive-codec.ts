/**
 * The lease keepalive's two messages (etcd's rpc.proto: `LeaseKeepAliveRequest { int64 ID = 1; }`,
 * `LeaseKeepAliveResponse { ResponseHeader header = 1; int64 ID = 2; int64 TTL = 3; }`), written and read with
 * protobufjs's own wire reader and writer.
 *
 * Why not through etcd3's generated stream: it turns every 64-bit field of every answer into a decimal string
 * (`longs: String`) — ID, TTL and the four of the response header (cluster id, member id, revision, raft term) —
 * with long.js's division loop, which the agent (V8 lite mode, packaging/build.ts) runs interpreted, four times a
 * second on every node. A keepalive needs the ID and the TTL only, so the header is skipped unread and the ID is
 * read by BigInt. Measured: docs/design.md, "Footprint: the keepalive stream".
 */
import protobuf from 'protobufjs/minimal.js';

/** What a keepalive answer says: the lease and its remaining TTL in seconds (≤ 0: the lease is gone). */
export interface KeepaliveAnswer {
  readonly leaseId: string;
  readonly ttlSec: number;
}

/** A keepalive for `leaseId` (decimal, as etcd3 hands lease ids out), ready to write on the stream. */
export function encodeKeepalive(leaseId: string): Buffer {
  const bits = BigInt.asUintN(64, BigInt(leaseId));
  // protobufjs takes any {low, high} as a 64-bit value ("any compatible Long instance"), long.js or not.
  const id = { low: Number(bits & 0xffffffffn) | 0, high: Number(bits >> 32n) | 0, unsigned: false };
  const bytes = protobuf.Writer.create().uint32(/* field 1, varint */ 0x08).int64(id).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * The varint at the reader's position as a signed 64-bit BigInt. Read from the bytes protobufjs skips over:
 * its own `int64()` is exact only when protobufjs found long.js (it requires it itself, which a bundle or a test
 * runner may defeat) and a lossy number otherwise; lease ids are above 2^53.
 */
function readInt64(r: protobuf.Reader): bigint {
  const start = r.pos;
  r.skipType(0);
  let v = 0n;
  for (let i = start; i < r.pos; i++) v |= BigInt((r.buf[i] as number) & 0x7f) << BigInt(7 * (i - start));
  return BigInt.asIntN(64, v);
}

/** Read a keepalive answer; throws on bytes that are not one (grpc-js then fails the stream). */
export function decodeKeepaliveAnswer(buf: Uint8Array): KeepaliveAnswer {
  const r = protobuf.Reader.create(buf);
  let leaseId: string | undefined;
  let ttlSec = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 2:
        leaseId = readInt64(r).toString();
        break;
      case 3:
        ttlSec = Number(readInt64(r));
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  if (leaseId === undefined) throw new Error('keepalive answer without a lease id');
  return { leaseId, ttlSec };
}
