import { describe, expect, it } from 'vitest';
import {
  buildGratuitousArp,
  buildUnsolicitedNa,
  formatMac,
  internetChecksum,
  ipv6PseudoHeader,
} from '../src/frames.js';
import { announcementFrames } from '../src/announcer.js';

const MAC = Buffer.from('525400123456', 'hex');
const hex = (s: string): string => s.replace(/\s+/g, '');

describe('gratuitous ARP', () => {
  // Golden bytes written out field by field from RFC 826 / RFC 5227 §3, not produced by the code under test.
  it('request form: broadcast, op 1, sender = target = VIP, target MAC zero, padded to 60 bytes', () => {
    const f = buildGratuitousArp(MAC, '192.0.2.100', 'request');
    expect(f.toString('hex')).toBe(
      hex(`ffffffffffff 525400123456 0806
           0001 0800 06 04 0001
           525400123456 c0000264
           000000000000 c0000264
           ${'00'.repeat(18)}`),
    );
  });

  it('reply form: op 2 and target MAC = sender MAC, which Linux requires to treat a reply as gratuitous', () => {
    const f = buildGratuitousArp(MAC, '192.0.2.100', 'reply');
    expect(f.toString('hex')).toBe(
      hex(`ffffffffffff 525400123456 0806
           0001 0800 06 04 0002
           525400123456 c0000264
           525400123456 c0000264
           ${'00'.repeat(18)}`),
    );
  });

  it('refuses an IPv6 address or a malformed MAC instead of sending garbage', () => {
    expect(() => buildGratuitousArp(MAC, '2001:db8::1', 'request')).toThrow(/IPv4/);
    expect(() => buildGratuitousArp(Buffer.alloc(5), '192.0.2.1', 'request')).toThrow(/6 bytes/);
  });
});

/** Independent RFC 1071 check: summing every 16-bit word including the checksum field gives 0xffff. */
function onesComplementSum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) {
    sum += buf.readUInt16BE(i);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return sum;
}

describe('unsolicited neighbour advertisement', () => {
  const f = buildUnsolicitedNa(MAC, '2001:db8::100');

  it('matches golden bytes (checksum 0x7271 computed by a separate Python implementation)', () => {
    expect(f.toString('hex')).toBe(
      hex(`333300000001 525400123456 86dd
           60000000 0020 3a ff 20010db8000000000000000000000100 ff020000000000000000000000000001
           88 00 7271 20000000 20010db8000000000000000000000100 02 01 525400123456`),
    );
  });

  it('has hop limit 255, override set, solicited and router clear, and a target link-layer address option', () => {
    expect(f.length).toBe(14 + 40 + 32);
    expect(f.readUInt16BE(12)).toBe(0x86dd);
    expect(f[14 + 7]).toBe(255); // hop limit
    expect(f[14 + 6]).toBe(58); // next header ICMPv6
    const icmp = f.subarray(54);
    expect(icmp[0]).toBe(136);
    expect(icmp[4]).toBe(0x20); // R=0 S=0 O=1
    expect(icmp.subarray(24, 26).toString('hex')).toBe('0201');
    expect(icmp.subarray(26, 32)).toEqual(MAC);
  });

  it('carries a checksum that verifies over the pseudo-header', () => {
    const ip = f.subarray(14, 54);
    const icmp = f.subarray(54);
    const pseudo = Buffer.concat([
      ip.subarray(8, 24),
      ip.subarray(24, 40),
      Buffer.from([0, 0, 0, 32, 0, 0, 0, 58]),
    ]);
    expect(onesComplementSum(Buffer.concat([pseudo, icmp]))).toBe(0xffff);
  });

  it('changes checksum with the target, still verifying', () => {
    for (const target of ['2001:db8::1', 'fd00:1:2:3:4:5:6:7', 'fe80::1']) {
      const g = buildUnsolicitedNa(MAC, target);
      const pseudo = ipv6PseudoHeader(g.subarray(22, 38), g.subarray(38, 54), 32, 58);
      expect(onesComplementSum(Buffer.concat([pseudo, g.subarray(54)]))).toBe(0xffff);
    }
  });

  it('refuses an IPv4 address', () => {
    expect(() => buildUnsolicitedNa(MAC, '192.0.2.1')).toThrow(/IPv6/);
  });
});

describe('internetChecksum', () => {
  it('matches the RFC 1071 §3 worked example and pads an odd byte', () => {
    // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement sum); checksum is its complement.
    expect(internetChecksum(Buffer.from('0001f203f4f5f6f7', 'hex'))).toBe(~0xddf2 & 0xffff);
    expect(internetChecksum(Buffer.from([0xab]))).toBe(~0xab00 & 0xffff);
    expect(internetChecksum(Buffer.from('0001', 'hex'), Buffer.from('f203f4f5f6f7', 'hex'))).toBe(
      ~0xddf2 & 0xffff,
    );
  });
});

describe('announcementFrames', () => {
  it('sends both GARP forms for IPv4 (kube-vip #80: devices honour one form or the other)', () => {
    const frames = announcementFrames(MAC, { address: '192.0.2.100', prefix: 32, family: 4 });
    expect(frames.map((x) => x.readUInt16BE(20))).toEqual([1, 2]);
  });

  it('sends one NA for IPv6', () => {
    const frames = announcementFrames(MAC, { address: '2001:db8::100', prefix: 128, family: 6 });
    expect(frames).toHaveLength(1);
    expect(frames[0]?.[54]).toBe(136);
  });

  it('formats MACs for logs', () => {
    expect(formatMac(MAC)).toBe('52:54:00:12:34:56');
  });
});
