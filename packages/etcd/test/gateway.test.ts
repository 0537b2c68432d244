import { describe, expect, it } from 'vitest';
import type { EtcdConnection } from '../src/index.js';
import { GatewayUnavailable, gatewayUsable, parseRangeAnswer, prefixEnd } from '../src/index.js';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

function conn(over: Partial<EtcdConnection> = {}): EtcdConnection {
  return { endpoints: ['http://10.0.0.1:2379'], files: {}, tls: undefined, auth: undefined, ...over };
}

const tls = (cert: boolean) => ({
  ca: Buffer.from('ca'),
  cert: cert ? Buffer.from('cert') : undefined,
  key: cert ? Buffer.from('key') : undefined,
  certExpiresAt: undefined,
  digest: 'd',
});

describe("etcd's JSON gateway: what may go through it", () => {
  it('plaintext, server-verified TLS and password users read through it; a client certificate does not', () => {
    expect(gatewayUsable(conn())).toBe(true);
    expect(gatewayUsable(conn({ tls: tls(false) }))).toBe(true);
    expect(gatewayUsable(conn({ tls: tls(false), auth: { user: 'coord-lb1', password: 'x' } }))).toBe(true);
    // etcd would act with its own server certificate for the gateway: it refuses a client certificate there.
    expect(gatewayUsable(conn({ tls: tls(true) }))).toBe(false);
    expect(gatewayUsable(conn({ tls: tls(true), auth: { user: 'coord-lb1', password: 'x' } }))).toBe(false);
  });
});

describe('prefixEnd', () => {
  it("is etcd's range end for a prefix: its last byte raised (bytes, not characters)", () => {
    expect(prefixEnd('/coord/a/').toString()).toBe('/coord/a0');
    // 'é' is 0xc3 0xa9 in UTF-8, as etcd stores the key.
    expect(prefixEnd('/x/é')).toEqual(Buffer.from([0x2f, 0x78, 0x2f, 0xc3, 0xaa]));
  });
});

describe('parseRangeAnswer', () => {
  it('decodes keys and values from base64 and int64 from decimal strings, zero values left out', () => {
    const r = parseRangeAnswer({
      header: { cluster_id: '14841639068965178418', revision: '42', raft_term: '3' },
      kvs: [
        {
          key: b64('/coord/c/members/n1'),
          value: b64('{"v":1}'),
          create_revision: '40',
          mod_revision: '41',
          version: '2',
          lease: '7587887384958318340',
        },
        // A key with an empty value and no lease: etcd's JSON leaves both out.
        { key: b64('/coord/c/x'), create_revision: '5', mod_revision: '5', version: '1' },
      ],
      count: '2',
    });
    expect(r.revision).toBe(42);
    expect(r.entries).toEqual([
      {
        key: '/coord/c/members/n1',
        value: Buffer.from('{"v":1}'),
        createRevision: 40,
        modRevision: 41,
        // Lease IDs exceed 2^53: kept as the decimal string etcd sent.
        lease: '7587887384958318340',
      },
      { key: '/coord/c/x', value: Buffer.alloc(0), createRevision: 5, modRevision: 5, lease: '0' },
    ]);
  });

  it('an empty range has no kvs at all', () => {
    expect(parseRangeAnswer({ header: { revision: '7' } })).toEqual({ revision: 7, entries: [] });
  });

  it('anything else is GatewayUnavailable (the command reads over gRPC instead), never a wrong answer', () => {
    for (const bad of [
      null,
      'x',
      {},
      { header: null },
      { header: { revision: 'seven' } },
      { header: { revision: '7' }, kvs: {} },
      { header: { revision: '7' }, kvs: [{ key: 7 }] },
      { header: { revision: '7' }, kvs: [{ key: b64('k'), mod_revision: '1.5' }] },
    ])
      expect(() => parseRangeAnswer(bad), JSON.stringify(bad)).toThrow(GatewayUnavailable);
  });
});
