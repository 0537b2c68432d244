import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import Long from 'long';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it } from 'vitest';
import { decodeKeepaliveAnswer, encodeKeepalive } from '../src/keepalive-codec.js';

// etcd3's own proto, loaded the way etcd3 loads it (same loader version): the reference our codec must agree with.
// Outside vitest protobufjs finds long.js by itself; under vitest its require of it comes back empty, and without
// long.js the reference would read 64-bit values as lossy numbers.
protobuf.util.Long = Long;
protobuf.configure();
const proto = join(dirname(createRequire(import.meta.url).resolve('etcd3/package.json')), 'proto/rpc.proto');
const definition = loadSync(proto, {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const method = (definition['etcdserverpb.Lease'] as Record<string, MethodDefinition<object, object>>)
  .LeaseKeepAlive as MethodDefinition<object, object>;

/** Lease ids as etcd hands them out: int64, usually above 2^53 (member id in the high bits). */
const IDS = ['7587883409284462851', '1', '9223372036854775807', '-9223372036854775808', '9007199254740993'];

describe('keepalive codec', () => {
  it.each(IDS)('a request for lease %s is what etcd3 would have sent', (id) => {
    const ours = encodeKeepalive(id);
    expect(method.requestDeserialize(ours)).toEqual({ ID: id });
    expect(ours.equals(method.requestSerialize({ ID: id }))).toBe(true);
  });

  it.each(IDS)('an answer for lease %s reads as etcd3 reads it, header skipped', (id) => {
    const answer = method.responseSerialize({
      header: {
        cluster_id: '14841639068965178418',
        member_id: '10276657743932975437',
        revision: '123456789',
        raft_term: '42',
      },
      ID: id,
      TTL: '1',
    });
    const theirs = method.responseDeserialize(answer) as { ID: string; TTL: string };
    expect(decodeKeepaliveAnswer(answer)).toEqual({ leaseId: theirs.ID, ttlSec: Number(theirs.TTL) });
    expect(theirs.ID).toBe(id);
  });

  it('a lease etcd no longer has reads as TTL ≤ 0 (etcd sends TTL 0, or leaves it out)', () => {
    const id = IDS[0] as string;
    expect(decodeKeepaliveAnswer(method.responseSerialize({ ID: id, TTL: '0' })).ttlSec).toBe(0);
    expect(decodeKeepaliveAnswer(method.responseSerialize({ ID: id, TTL: '-1' })).ttlSec).toBe(-1);
  });

  it('bytes that are not an answer throw (grpc-js then fails the stream) instead of acking some lease', () => {
    expect(() => decodeKeepaliveAnswer(method.responseSerialize({ header: { revision: '5' } }))).toThrow(
      /without a lease id/,
    );
    expect(() => decodeKeepaliveAnswer(Buffer.from([0x10, 0xff, 0xff]))).toThrow();
  });
});
