import { describe, expect, it } from 'vitest';
import {
  buildArpProbe,
  buildDadSolicitation,
  buildGratuitousArp,
  buildUnsolicitedNa,
  internetChecksum,
  ipv6PseudoHeader,
  parseArp,
  parseNeighborAdvert,
  solicitedNodeAddress,
} from '../src/frames.js';
import { ipToBytes } from '@coord/core';

const MAC = Buffer.from('525400123456', 'hex');
const hex = (s: string): string => s.replace(/\s+/g, '');
const bytes = (s: string): Buffer => Buffer.from(hex(s), 'hex');

/**
 * Frames captured with tcpdump on a veth (Linux 6.18) while the prober asked a peer that had 192.0.2.100 and
 * 2001:db8::100 (peer MAC 02:00:00:00:00:02, prober MAC 02:00:00:00:00:01): the kernel's answers, verbatim.
 */
const KERNEL_ARP_REPLY = bytes(`020000000001 020000000002 0806
  0001 0800 06 04 0002 020000000002 c0000264 020000000001 00000000`);
const KERNEL_NA = bytes(`333300000001 020000000002 86dd
  60000000 0020 3a ff 20010db8000000000000000000000100 ff020000000000000000000000000001
  88 00 f72b 20000000 20010db8000000000000000000000100 02 01 020000000002`);

/** Independent RFC 1071 check: summing every 16-bit word including the checksum field gives 0xffff. */
function onesComplementSum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) {
    sum += buf.readUInt16BE(i);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return sum;
}

/** Recompute the ICMPv6 checksum of an Ethernet/IPv6/ICMPv6 frame after a test changed a field. */
function fixChecksum(f: Buffer): Buffer {
  const icmp = f.subarray(54, 54 + f.readUInt16BE(18));
  icmp.writeUInt16BE(0, 2);
  icmp.writeUInt16BE(
    internetChecksum(ipv6PseudoHeader(f.subarray(22, 38), f.subarray(38, 54), icmp.length, 58), icmp),
    2,
  );
  return f;
}

describe('ARP probe (RFC 5227 §2.1.1)', () => {
  it('is a broadcast request from our MAC with sender IP 0.0.0.0, zero target MAC, target = VIP', () => {
    expect(buildArpProbe(MAC, '192.0.2.100').toString('hex')).toBe(
      hex(`ffffffffffff 525400123456 0806
           0001 0800 06 04 0001
           525400123456 00000000
           000000000000 c0000264
           ${'00'.repeat(18)}`),
    );
  });

  it('leaves the gratuitous ARP forms as they were', () => {
    // The builders now share one ARP writer; the announcement bytes must not have moved.
    expect(buildGratuitousArp(MAC, '192.0.2.100', 'reply').subarray(14, 42).toString('hex')).toBe(
      hex('0001 0800 06 04 0002 525400123456 c0000264 525400123456 c0000264'),
    );
  });

  it('refuses an IPv6 address or a malformed MAC', () => {
    expect(() => buildArpProbe(MAC, '2001:db8::1')).toThrow(/IPv4/);
    expect(() => buildArpProbe(Buffer.alloc(7), '192.0.2.1')).toThrow(/6 bytes/);
  });
});

describe('DAD neighbour solicitation (RFC 4861 §4.3, RFC 4862 §5.4.2)', () => {
  const f = buildDadSolicitation(MAC, '2001:db8::100');

  it('matches golden bytes (checksum 0x4aef from a separate Python implementation, and tcpdump: "sum ok")', () => {
    expect(f.toString('hex')).toBe(
      hex(`3333ff000100 525400123456 86dd
           60000000 0018 3a ff 00000000000000000000000000000000 ff0200000000000000000001ff000100
           87 00 4aef 00000000 20010db8000000000000000000000100`),
    );
  });

  it('comes from ::, goes to the solicited-node group, hop limit 255, and carries no options', () => {
    expect(f.length).toBe(14 + 40 + 24);
    expect(f.subarray(22, 38)).toEqual(Buffer.alloc(16));
    expect(f[21]).toBe(255);
    expect(f.readUInt16BE(18)).toBe(24); // payload = the bare NS: no source link-layer address option
  });

  // Python: ipaddress + RFC 1071 over the pseudo-header (src ::, dst solicited-node, length 24, nh 58).
  for (const [target, group, mac, checksum] of [
    ['fe80::1234:5678', 'ff02::1:ff34:5678', '3333ff345678', 0xbcce],
    ['2001:db8::abcd:ef01', 'ff02::1:ffcd:ef01', '3333ffcdef01', 0xc250],
  ] as const) {
    it(`maps ${target} to ${group} / ${mac} with checksum ${checksum.toString(16)}`, () => {
      const g = buildDadSolicitation(MAC, target);
      expect(g.subarray(38, 54)).toEqual(ipToBytes(group));
      expect(g.subarray(0, 6).toString('hex')).toBe(mac);
      expect(g.readUInt16BE(56)).toBe(checksum);
      const pseudo = ipv6PseudoHeader(g.subarray(22, 38), g.subarray(38, 54), 24, 58);
      expect(onesComplementSum(Buffer.concat([pseudo, g.subarray(54)]))).toBe(0xffff);
    });
  }

  it('computes solicited-node addresses (RFC 4291 §2.7.1)', () => {
    expect(solicitedNodeAddress(ipToBytes('2001:db8::aa:bbcc:ddee'))).toEqual(ipToBytes('ff02::1:ffcc:ddee'));
  });

  it('refuses an IPv4 address', () => {
    expect(() => buildDadSolicitation(MAC, '192.0.2.1')).toThrow(/IPv6/);
  });
});

describe('parseArp', () => {
  it("reads the kernel's answer to a probe: a unicast reply from the VIP", () => {
    expect(parseArp(KERNEL_ARP_REPLY)).toEqual({
      op: 2,
      senderMac: '02:00:00:00:00:02',
      senderIp: '192.0.2.100',
      targetIp: '0.0.0.0',
    });
  });

  it('reads our own probe and announcements (padding ignored)', () => {
    expect(parseArp(buildArpProbe(MAC, '192.0.2.100'))).toEqual({
      op: 1,
      senderMac: '52:54:00:12:34:56',
      senderIp: '0.0.0.0',
      targetIp: '192.0.2.100',
    });
    expect(parseArp(buildGratuitousArp(MAC, '192.0.2.7', 'request'))).toMatchObject({
      op: 1,
      senderIp: '192.0.2.7',
      targetIp: '192.0.2.7',
    });
  });

  it('passes other opcodes through for the caller to judge', () => {
    const f = Buffer.from(KERNEL_ARP_REPLY);
    f.writeUInt16BE(4, 20); // RARP reply
    expect(parseArp(f)?.op).toBe(4);
  });

  const mutations: [string, (f: Buffer) => void][] = [
    ['another ethertype', (f) => f.writeUInt16BE(0x0800, 12)],
    ['another hardware type', (f) => f.writeUInt16BE(6, 14)],
    ['another protocol type', (f) => f.writeUInt16BE(0x86dd, 16)],
    ['a hardware address length of 8', (f) => f.writeUInt8(8, 18)],
    ['a protocol address length of 16', (f) => f.writeUInt8(16, 19)],
  ];
  for (const [what, mutate] of mutations) {
    it(`returns undefined for ${what}`, () => {
      const f = Buffer.from(KERNEL_ARP_REPLY);
      mutate(f);
      expect(parseArp(f)).toBeUndefined();
    });
  }

  it('returns undefined for a truncated packet and for an NA', () => {
    expect(parseArp(KERNEL_ARP_REPLY.subarray(0, 41))).toBeUndefined();
    expect(parseArp(KERNEL_NA)).toBeUndefined();
  });

  it('reads a frame that is a view into a larger buffer', () => {
    const big = Buffer.concat([Buffer.alloc(5, 0xaa), KERNEL_ARP_REPLY]);
    expect(parseArp(new Uint8Array(big.buffer, big.byteOffset + 5, KERNEL_ARP_REPLY.length))).toMatchObject({
      senderIp: '192.0.2.100',
    });
  });
});

describe('parseNeighborAdvert', () => {
  it("reads the kernel's answer to a DAD probe (NA to ff02::1)", () => {
    expect(parseNeighborAdvert(KERNEL_NA)).toEqual({
      sourceMac: '02:00:00:00:00:02',
      target: '2001:db8::100',
    });
  });

  it('reads our own unsolicited NA, and a padded frame by its payload length', () => {
    expect(parseNeighborAdvert(buildUnsolicitedNa(MAC, '2001:db8::7'))).toEqual({
      sourceMac: '52:54:00:12:34:56',
      target: '2001:db8::7',
    });
    expect(parseNeighborAdvert(Buffer.concat([KERNEL_NA, Buffer.alloc(10)]))?.target).toBe('2001:db8::100');
  });

  it('reads an NA without options (24 bytes)', () => {
    const f = Buffer.from(KERNEL_NA.subarray(0, 14 + 40 + 24));
    f.writeUInt16BE(24, 18);
    expect(parseNeighborAdvert(fixChecksum(f))?.target).toBe('2001:db8::100');
  });

  // RFC 4861 §7.1.2: what a receiver must discard (each mutation leaves an otherwise valid frame).
  const invalid: [string, (f: Buffer) => Buffer][] = [
    ['a wrong checksum', (f) => ((f[57] = (f[57] ?? 0) ^ 1), f)],
    ['hop limit 254', (f) => ((f[21] = 254), f)],
    ['code 1', (f) => ((f[55] = 1), fixChecksum(f))],
    ['a multicast target', (f) => ((f[62] = 0xff), fixChecksum(f))],
    ['a neighbour solicitation (type 135)', (f) => ((f[54] = 135), fixChecksum(f))],
    ['an extension header before ICMPv6', (f) => ((f[20] = 0), f)],
    ['IP version 4 in the IPv6 header', (f) => ((f[14] = 0x40), f)],
    ['another ethertype', (f) => (f.writeUInt16BE(0x0800, 12), f)],
    ['a payload length past the frame', (f) => (f.writeUInt16BE(40, 18), f)],
    ['an ICMP length under 24', (f) => (f.writeUInt16BE(20, 18), f)],
  ];
  for (const [what, mutate] of invalid) {
    it(`returns undefined for ${what}`, () => {
      expect(parseNeighborAdvert(mutate(Buffer.from(KERNEL_NA)))).toBeUndefined();
    });
  }

  it('returns undefined for our DAD probe and for ARP', () => {
    expect(parseNeighborAdvert(buildDadSolicitation(MAC, '2001:db8::100'))).toBeUndefined();
    expect(parseNeighborAdvert(KERNEL_ARP_REPLY)).toBeUndefined();
  });
});

describe('parsers on hostile input', () => {
  /** mulberry32: a seeded generator, so a failure can be replayed. */
  function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const parsers = [parseArp, parseNeighborAdvert];
  const valid = [
    KERNEL_ARP_REPLY,
    KERNEL_NA,
    buildArpProbe(MAC, '192.0.2.1'),
    buildDadSolicitation(MAC, '2001:db8::1'),
    buildUnsolicitedNa(MAC, '2001:db8::1'),
  ];

  it('never throw on random bytes, truncations or byte flips of valid frames', () => {
    const r = rng(5227);
    const inputs: Uint8Array[] = [];
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.alloc(Math.floor(r() * 120));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(r() * 256);
      // Steer a third of them into the interesting ethertypes so the deeper checks run too.
      if (b.length >= 14 && i % 3 === 0) b.writeUInt16BE(i % 2 === 0 ? 0x0806 : 0x86dd, 12);
      inputs.push(b);
    }
    for (const v of valid) {
      for (let n = 0; n <= v.length; n++) inputs.push(v.subarray(0, n));
      for (let k = 0; k < 300; k++) {
        const m = Buffer.from(v);
        for (let flips = 1 + Math.floor(r() * 4); flips > 0; flips--) {
          const at = Math.floor(r() * m.length);
          m[at] = Math.floor(r() * 256);
        }
        inputs.push(m);
      }
    }
    let parsed = 0;
    for (const input of inputs) {
      for (const parse of parsers) {
        const out = parse(input);
        if (out !== undefined) parsed++;
      }
    }
    expect(parsed).toBeGreaterThan(0); // the loop reached past the early checks
  });

  it('return undefined for things that are not bytes', () => {
    const junk: unknown[] = [null, undefined, 'ffff', 42, {}, [1, 2, 3], new ArrayBuffer(64)];
    for (const j of junk) {
      for (const parse of parsers) expect(parse(j as Uint8Array)).toBeUndefined();
    }
  });
});
