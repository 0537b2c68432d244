import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  DROP_REASONS,
  decode,
  encode,
  internetChecksum,
  parseIpv4,
  parseIpv6,
  type DecodeOptions,
  type VrrpPacket,
} from '../src/index.js';

interface Fixture {
  name: string;
  family: 4 | 6;
  ip?: string;
  ip6?: string;
  payload?: string;
  srcAddr?: string;
  dstAddr?: string;
  ttl?: number;
}

const fixtures = JSON.parse(
  readFileSync(new URL('../../../test/fixtures/vrrp/keepalived-adverts.json', import.meta.url), 'utf8'),
) as Fixture[];

/** Payload and decode options of a fixture, from the captured IP header when there is one. */
function golden(name: string): { payload: Buffer; opts: DecodeOptions } {
  const f = fixtures.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no fixture ${name}`);
  if (f.ip !== undefined) {
    const ip = parseIpv4(Buffer.from(f.ip, 'hex'));
    if (ip === undefined) throw new Error(`fixture ${name} has no IPv4 header`);
    expect(ip.protocol).toBe(112);
    return {
      payload: ip.payload,
      opts: { family: 4, srcAddr: ip.srcAddr, dstAddr: ip.dstAddr, ttl: ip.ttl },
    };
  }
  if (f.ip6 !== undefined) {
    const ip = parseIpv6(Buffer.from(f.ip6, 'hex'));
    if (ip === undefined) throw new Error(`fixture ${name} has no IPv6 header`);
    expect(ip.nextHeader).toBe(112);
    return {
      payload: ip.payload,
      opts: { family: 6, srcAddr: ip.srcAddr, dstAddr: ip.dstAddr, ttl: ip.hopLimit },
    };
  }
  return {
    payload: Buffer.from(f.payload ?? '', 'hex'),
    opts: { family: f.family, srcAddr: f.srcAddr ?? '', dstAddr: f.dstAddr ?? '', ttl: f.ttl ?? 0 },
  };
}

const expected: Record<string, VrrpPacket> = {
  'lessons-v2-auth-none': {
    version: 2,
    vrid: 51,
    priority: 150,
    advertIntervalSec: 1,
    auth: { type: 'none' },
    addresses: ['10.200.0.60'],
  },
  'lessons-v3': { version: 3, vrid: 51, priority: 150, maxAdvertIntervalCs: 100, addresses: ['10.200.0.60'] },
  'v2-auth-pass': {
    version: 2,
    vrid: 52,
    priority: 150,
    advertIntervalSec: 1,
    auth: { type: 'simple', password: 'secret12' },
    addresses: ['10.201.0.60', '10.201.0.61'],
  },
  'v3-multicast': {
    version: 3,
    vrid: 53,
    priority: 120,
    maxAdvertIntervalCs: 100,
    addresses: ['10.201.0.70'],
  },
  'v3-unicast': { version: 3, vrid: 54, priority: 110, maxAdvertIntervalCs: 50, addresses: ['10.201.0.80'] },
  'v3-ipv6': {
    version: 3,
    vrid: 55,
    priority: 130,
    maxAdvertIntervalCs: 100,
    addresses: ['2001:db8:201::100', 'fe80::55'],
  },
};

describe('golden keepalived packets', () => {
  it('has every fixture covered', () => {
    expect(fixtures.map((f) => f.name).sort()).toEqual(Object.keys(expected).sort());
  });
  for (const [name, packet] of Object.entries(expected)) {
    it(`${name}: decodes to the fields keepalived sent and re-encodes byte for byte`, () => {
      const { payload, opts } = golden(name);
      const result = decode(payload, opts);
      expect(result).toEqual({ ok: true, packet });
      expect(encode(packet, opts).toString('hex')).toBe(payload.toString('hex'));
    });
  }
  it('v2 with the configured password passes, a wrong one or a missing one does not', () => {
    const { payload, opts } = golden('v2-auth-pass');
    expect(decode(payload, { ...opts, auth: { type: 'simple', password: 'secret12' } }).ok).toBe(true);
    expect(decode(payload, { ...opts, auth: { type: 'simple', password: 'secret13' } })).toEqual({
      ok: false,
      reason: 'auth-failed',
    });
    expect(decode(payload, { ...opts, auth: { type: 'none' } })).toEqual({
      ok: false,
      reason: 'auth-type-mismatch',
    });
  });
  it('the v3 checksum covers the pseudo-header: another destination fails, v2 does not care', () => {
    const v3 = golden('v3-unicast');
    expect(decode(v3.payload, { ...v3.opts, dstAddr: '10.201.0.3' })).toEqual({
      ok: false,
      reason: 'bad-checksum',
    });
    const v2 = golden('v2-auth-pass');
    expect(decode(v2.payload, { ...v2.opts, srcAddr: '10.9.9.9' }).ok).toBe(true);
  });
});

describe('drop reasons', () => {
  const base = golden('v3-multicast');
  const v2 = golden('lessons-v2-auth-none');
  /** A v3 packet with one byte changed and the checksum fixed, so only the intended check trips. */
  function v3With(mutate: (b: Buffer) => void, fixSum = true): Buffer {
    const b = Buffer.from(base.payload);
    mutate(b);
    if (fixSum) {
      b.writeUInt16BE(0, 6);
      const p = Buffer.from('0ac90001e000001200700000', 'hex');
      p.writeUInt16BE(b.length, 10);
      b.writeUInt16BE(internetChecksum([p, b]), 6);
    }
    return b;
  }
  const cases: [string, Buffer, Partial<DecodeOptions>, string][] = [
    ['too short', base.payload.subarray(0, 7), {}, 'too-short'],
    ['TTL below 255 on multicast', base.payload, { ttl: 254 }, 'bad-ttl'],
    ['version 4', v3With((b) => (b[0] = 0x41)), {}, 'bad-version'],
    ['v2 where v3 is configured', v2.payload, { version: 3 }, 'version-mismatch'],
    ['type 2', v3With((b) => (b[0] = 0x32)), {}, 'bad-type'],
    ['count says 2, one address present', v3With((b) => (b[3] = 2)), {}, 'length-mismatch'],
    ['trailing byte', Buffer.concat([base.payload, Buffer.alloc(1)]), {}, 'length-mismatch'],
    ['checksum off by one', v3With((b) => (b[7] = (b[7] ?? 0) ^ 1), false), {}, 'bad-checksum'],
    ['interval 0', v3With((b) => b.writeUInt16BE(0xf000, 4)), {}, 'bad-advert-interval'],
    ['count 0', v3With((b) => (b[3] = 0)).subarray(0, 8), {}, 'bad-checksum'],
    [
      'v2 over IPv6',
      v2.payload,
      { family: 6, srcAddr: 'fe80::1', dstAddr: 'ff02::12' },
      'family-unsupported',
    ],
    ['unparseable source address', base.payload, { srcAddr: 'nope' }, 'bad-ip-header'],
  ];
  for (const [what, payload, opts, reason] of cases) {
    it(`${what} → ${reason}`, () => {
      expect(decode(payload, { ...base.opts, ...opts })).toEqual({ ok: false, reason });
    });
  }
  it('count 0 with a valid checksum → no-addresses', () => {
    const p = encode(
      { version: 3, vrid: 1, priority: 1, maxAdvertIntervalCs: 100, addresses: ['1.1.1.1'] },
      base.opts,
    );
    const b = Buffer.from(p.subarray(0, 8));
    b[3] = 0;
    b.writeUInt16BE(0, 6);
    const ph = Buffer.from('0ac90001e000001200700008', 'hex');
    b.writeUInt16BE(internetChecksum([ph, b]), 6);
    expect(decode(b, base.opts)).toEqual({ ok: false, reason: 'no-addresses' });
  });
  it('v2 auth type 2 (IP AH) is refused', () => {
    const b = Buffer.from(v2.payload);
    b[4] = 2;
    b.writeUInt16BE(0, 6);
    b.writeUInt16BE(internetChecksum([b]), 6);
    expect(decode(b, v2.opts)).toEqual({ ok: false, reason: 'bad-auth-type' });
  });
  it('reserved bits of the v3 interval are ignored on receipt (RFC 5798 §5.2.7)', () => {
    const b = v3With((b) => b.writeUInt16BE(0xf064, 4));
    expect(decode(b, base.opts)).toMatchObject({ ok: true, packet: { maxAdvertIntervalCs: 100 } });
  });
  it('unicast accepts any TTL (as keepalived does by default)', () => {
    const u = golden('v3-unicast');
    expect(decode(u.payload, { ...u.opts, ttl: 64 }).ok).toBe(true);
  });
});

describe('IPv6 VRRPv3', () => {
  const opts = { family: 6, srcAddr: 'fe80::a8bb:ccff:fe00:1', dstAddr: 'ff02::12' } as const;
  const packet: VrrpPacket = {
    version: 3,
    vrid: 7,
    priority: 200,
    maxAdvertIntervalCs: 10,
    addresses: ['fe80::7', '2001:db8::7'],
  };
  it('round-trips and checks the IPv6 pseudo-header', () => {
    const bytes = encode(packet, opts);
    expect(bytes.length).toBe(8 + 32);
    expect(decode(bytes, { ...opts, ttl: 255 })).toEqual({ ok: true, packet });
    expect(decode(bytes, { ...opts, ttl: 255, srcAddr: 'fe80::2' })).toEqual({
      ok: false,
      reason: 'bad-checksum',
    });
  });
});

describe('IPv4 header', () => {
  it('trusts the total length, not the buffer length (padded frames)', () => {
    const f = fixtures.find((x) => x.name === 'v3-multicast');
    const padded = Buffer.concat([Buffer.from(f?.ip ?? '', 'hex'), Buffer.alloc(14)]);
    expect(parseIpv4(padded)?.payload.length).toBe(12);
  });
  it('refuses truncated and non-IPv4 input', () => {
    expect(parseIpv4(Buffer.alloc(10))).toBeUndefined();
    expect(parseIpv4(Buffer.from('6000000000000000000000000000000000000000', 'hex'))).toBeUndefined();
    const short = Buffer.from(fixtures.find((x) => x.name === 'v3-multicast')?.ip ?? '', 'hex').subarray(
      0,
      25,
    );
    expect(parseIpv4(short)).toBeUndefined();
  });
});

describe('fuzz: the decoder never throws and only returns known reasons', () => {
  /** Deterministic PRNG (mulberry32) so a failure reproduces. */
  function rng(seed: number): () => number {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const known = new Set<string>(DROP_REASONS);
  function check(bytes: Buffer, opts: DecodeOptions): void {
    const r = decode(bytes, opts);
    if (!r.ok) expect(known.has(r.reason)).toBe(true);
    else expect(encode(r.packet, opts).length).toBe(bytes.length);
    parseIpv4(bytes);
  }
  it('random bytes (5000 cases, IPv4 and IPv6)', () => {
    const r = rng(1);
    for (let i = 0; i < 5000; i++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(r() * 80) }, () => Math.floor(r() * 256)));
      if (r() < 0.5) bytes[0] = r() < 0.5 ? 0x31 : 0x21;
      check(bytes, { family: 4, srcAddr: '10.0.0.1', dstAddr: '224.0.0.18', ttl: 255 });
      check(bytes, { family: 6, srcAddr: 'fe80::1', dstAddr: 'ff02::12', ttl: 255 });
    }
  });
  it('bit flips and truncations of every golden packet (5000 cases each)', () => {
    const r = rng(2);
    let accepted = 0;
    for (const name of Object.keys(expected)) {
      const { payload, opts } = golden(name);
      for (let i = 0; i < 5000; i++) {
        const b = Buffer.from(payload);
        const flips = 1 + Math.floor(r() * 3);
        for (let k = 0; k < flips; k++) {
          const at = Math.floor(r() * b.length);
          b[at] = (b[at] ?? 0) ^ (1 << Math.floor(r() * 8));
        }
        const cut = r() < 0.2 ? b.subarray(0, Math.floor(r() * b.length)) : b;
        const res = decode(cut, opts);
        if (res.ok) accepted++;
        check(cut, opts);
      }
    }
    // The checksum catches single-bit damage; a few multi-bit flips may cancel out, never many.
    expect(accepted).toBeLessThan(250);
  });
});
