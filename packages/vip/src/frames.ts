/**
 * Announcement and probe frames, built byte by byte so that they can be checked against golden bytes and sent
 * by a tiny native sender (see native/packet.c) without waiting for a process; and the two parsers the probe
 * needs to read answers off the wire.
 *
 * Why both ARP forms: some devices only learn from a gratuitous ARP *request*, others only from a *reply*
 * (kube-vip #80), so coord sends both, like `arping -U` and `arping -A` together.
 */
import { bytesToIp, ipToBytes } from '@coord/core';

/** Ethernet header length (dst, src, ethertype). */
export const ETH_HEADER_LEN = 14;
/** Minimum Ethernet frame without FCS; shorter ARP frames are zero-padded to it (IEEE 802.3, ETH_ZLEN). */
export const ETH_MIN_FRAME = 60;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;
/** ICMPv6 Neighbor Solicitation (RFC 4861 §4.3). */
export const ICMPV6_NEIGHBOR_SOLICIT = 135;
/** ICMPv6 Neighbor Advertisement (RFC 4861 §4.4). */
export const ICMPV6_NEIGHBOR_ADVERT = 136;
/** NA "Override" flag (RFC 4861 §4.4): tells receivers to replace a cached link-layer address. */
export const NA_FLAG_OVERRIDE = 0x20000000;
/** RFC 4861 §4.6.1 Target Link-Layer Address option. */
export const ND_OPT_TARGET_LLADDR = 2;
export const IPPROTO_ICMPV6 = 58;
const BROADCAST_MAC = Buffer.alloc(6, 0xff);
const ZERO_MAC = Buffer.alloc(6, 0);
/** 0.0.0.0, the sender protocol address of an ARP Probe (RFC 5227 §2.1.1). */
const ZERO_IPV4 = Buffer.alloc(4, 0);
/** ARP payload for Ethernet/IPv4: 8-byte header + 2 × (6-byte MAC + 4-byte IPv4) (RFC 826). */
const ARP_IPV4_LEN = 28;
const IPV6_HEADER_LEN = 40;
/** ICMPv6 NS/NA without options: type, code, checksum, flags/reserved, target (RFC 4861 §4.3, §4.4). */
const ND_MIN_LEN = 24;
const HOP_LIMIT_ND = 255;
/** All-nodes multicast ff02::1 and its Ethernet mapping 33:33:00:00:00:01 (RFC 2464 §7). */
export const ALL_NODES_V6 = 'ff02::1';
const ALL_NODES_MAC = Buffer.from([0x33, 0x33, 0, 0, 0, 1]);

/** Which gratuitous ARP form to build. */
export type GarpForm = 'request' | 'reply';

function checkMac(mac: Uint8Array): void {
  if (mac.length !== 6) throw new RangeError(`a MAC address has 6 bytes, not ${mac.length}`);
}

function ethernetHeader(dst: Uint8Array, src: Uint8Array, ethertype: number): Buffer {
  const h = Buffer.alloc(ETH_HEADER_LEN);
  h.set(dst, 0);
  h.set(src, 6);
  h.writeUInt16BE(ethertype, 12);
  return h;
}

/**
 * A broadcast gratuitous ARP for `ipv4` owned by `mac` (RFC 826 layout, RFC 5227 §3 "ARP Announcement").
 * Sender and target protocol address are both the VIP. The request form leaves the target hardware address
 * zero (RFC 5227 §3); the reply form repeats the sender's MAC there, as `arping -A` does — Linux only treats
 * a reply as gratuitous (and lets it override a recently updated neighbour entry) when target and sender
 * hardware addresses match (net/ipv4/arp.c, arp_is_garp). Padded to 60 bytes.
 */
export function buildGratuitousArp(mac: Uint8Array, ipv4: string, form: GarpForm): Buffer {
  checkMac(mac);
  const ip = ipv4Bytes(ipv4, 'gratuitous ARP');
  return form === 'request'
    ? arpFrame(mac, ARP_OP_REQUEST, ip, ZERO_MAC, ip)
    : arpFrame(mac, ARP_OP_REPLY, ip, mac, ip);
}

/**
 * An ARP Probe for `ipv4` from `mac` (RFC 5227 §2.1.1): a broadcast request whose sender protocol address is
 * 0.0.0.0 — so that it does not pollute anyone's ARP cache with a claim we have not made yet — with a zero
 * target hardware address and the probed address as target. A host that has the address configured answers
 * (Linux sends a unicast reply from the address, even while its owning process is frozen). Padded to 60 bytes.
 */
export function buildArpProbe(mac: Uint8Array, ipv4: string): Buffer {
  checkMac(mac);
  return arpFrame(mac, ARP_OP_REQUEST, ZERO_IPV4, ZERO_MAC, ipv4Bytes(ipv4, 'an ARP probe'));
}

function ipv4Bytes(ipv4: string, what: string): Buffer {
  const ip = ipToBytes(ipv4);
  if (ip.length !== 4) throw new RangeError(`${what} needs an IPv4 address, got ${ipv4}`);
  return ip;
}

/** A broadcast Ethernet/IPv4 ARP packet (RFC 826 layout), zero-padded to the minimum frame. */
function arpFrame(sha: Uint8Array, op: number, spa: Uint8Array, tha: Uint8Array, tpa: Uint8Array): Buffer {
  const frame = Buffer.alloc(ETH_MIN_FRAME);
  ethernetHeader(BROADCAST_MAC, sha, ETHERTYPE_ARP).copy(frame, 0);
  let o = ETH_HEADER_LEN;
  o = frame.writeUInt16BE(1, o); // hardware type: Ethernet
  o = frame.writeUInt16BE(0x0800, o); // protocol type: IPv4
  o = frame.writeUInt8(6, o); // hardware address length
  o = frame.writeUInt8(4, o); // protocol address length
  o = frame.writeUInt16BE(op, o);
  frame.set(sha, o); // sender hardware address
  frame.set(spa, o + 6); // sender protocol address
  frame.set(tha, o + 10); // target hardware address
  frame.set(tpa, o + 16); // target protocol address
  return frame;
}

/**
 * RFC 1071 Internet checksum: one's complement of the one's complement sum of 16-bit words
 * (an odd trailing byte is padded with zero).
 */
export function internetChecksum(...parts: Uint8Array[]): number {
  let sum = 0;
  for (const part of parts) {
    for (let i = 0; i < part.length; i += 2) {
      sum += ((part[i] ?? 0) << 8) | (part[i + 1] ?? 0);
    }
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** RFC 8200 §8.1 upper-layer pseudo-header: source, destination, upper-layer length, zero, next header. */
export function ipv6PseudoHeader(
  src: Uint8Array,
  dst: Uint8Array,
  length: number,
  nextHeader: number,
): Buffer {
  const p = Buffer.alloc(40);
  p.set(src, 0);
  p.set(dst, 16);
  p.writeUInt32BE(length, 32);
  p.writeUInt8(nextHeader, 39);
  return p;
}

/**
 * An unsolicited Neighbor Advertisement for `ipv6` owned by `mac` (RFC 4861 §4.4, §7.2.6): sent from the VIP
 * to all-nodes ff02::1 with hop limit 255 (receivers drop anything else), Override set and Solicited clear,
 * carrying a Target Link-Layer Address option so neighbours can update their cache at once.
 */
export function buildUnsolicitedNa(mac: Uint8Array, ipv6: string): Buffer {
  checkMac(mac);
  const target = ipToBytes(ipv6);
  if (target.length !== 16)
    throw new RangeError(`neighbour advertisement needs an IPv6 address, got ${ipv6}`);
  const dst = ipToBytes(ALL_NODES_V6);

  const icmp = Buffer.alloc(32);
  icmp.writeUInt8(ICMPV6_NEIGHBOR_ADVERT, 0);
  icmp.writeUInt8(0, 1); // code
  icmp.writeUInt32BE(NA_FLAG_OVERRIDE, 4); // R=0 S=0 O=1, reserved
  icmp.set(target, 8);
  icmp.writeUInt8(ND_OPT_TARGET_LLADDR, 24);
  icmp.writeUInt8(1, 25); // option length in units of 8 bytes
  icmp.set(mac, 26);
  icmp.writeUInt16BE(internetChecksum(ipv6PseudoHeader(target, dst, icmp.length, IPPROTO_ICMPV6), icmp), 2);

  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0); // version 6, traffic class 0, flow label 0
  ip.writeUInt16BE(icmp.length, 4); // payload length
  ip.writeUInt8(IPPROTO_ICMPV6, 6); // next header
  ip.writeUInt8(255, 7); // hop limit: RFC 4861 §7.1.2
  ip.set(target, 8);
  ip.set(dst, 24);

  return Buffer.concat([ethernetHeader(ALL_NODES_MAC, mac, ETHERTYPE_IPV6), ip, icmp]);
}

/** The solicited-node multicast address of `ipv6`: ff02::1:ff00:0/104 + its low 24 bits (RFC 4291 §2.7.1). */
export function solicitedNodeAddress(ipv6: Uint8Array): Buffer {
  const sn = ipToBytes('ff02::1:ff00:0');
  sn.set(ipv6.subarray(13, 16), 13);
  return sn;
}

/** Ethernet address of an IPv6 multicast group: 33:33 + the group's last 4 bytes (RFC 2464 §7). */
function multicastMac(group: Uint8Array): Buffer {
  const mac = Buffer.from([0x33, 0x33, 0, 0, 0, 0]);
  mac.set(group.subarray(12, 16), 2);
  return mac;
}

/**
 * A Duplicate Address Detection probe for `ipv6` from `mac`: a Neighbor Solicitation (RFC 4861 §4.3) from the
 * unspecified address :: to the target's solicited-node multicast group, hop limit 255 (RFC 4861 §7.1.1), with
 * no Source Link-Layer Address option, which a solicitation from :: must not carry (RFC 4861 §4.3, RFC 4862
 * §5.4.2). A node that has the address answers with a Neighbor Advertisement to all-nodes ff02::1 (RFC 4861
 * §7.2.4) — Linux does so from the kernel, even while the process that added the address is frozen.
 */
export function buildDadSolicitation(mac: Uint8Array, ipv6: string): Buffer {
  checkMac(mac);
  const target = ipToBytes(ipv6);
  if (target.length !== 16) throw new RangeError(`a DAD probe needs an IPv6 address, got ${ipv6}`);
  const src = Buffer.alloc(16); // ::
  const dst = solicitedNodeAddress(target);

  const icmp = Buffer.alloc(ND_MIN_LEN);
  icmp.writeUInt8(ICMPV6_NEIGHBOR_SOLICIT, 0);
  icmp.writeUInt8(0, 1); // code
  // bytes 4-7: reserved, zero
  icmp.set(target, 8);
  icmp.writeUInt16BE(internetChecksum(ipv6PseudoHeader(src, dst, icmp.length, IPPROTO_ICMPV6), icmp), 2);

  const ip = Buffer.alloc(IPV6_HEADER_LEN);
  ip.writeUInt32BE(0x60000000, 0); // version 6, traffic class 0, flow label 0
  ip.writeUInt16BE(icmp.length, 4); // payload length
  ip.writeUInt8(IPPROTO_ICMPV6, 6); // next header
  ip.writeUInt8(HOP_LIMIT_ND, 7);
  ip.set(src, 8);
  ip.set(dst, 24);

  return Buffer.concat([ethernetHeader(multicastMac(dst), mac, ETHERTYPE_IPV6), ip, icmp]);
}

/** The fields of an Ethernet/IPv4 ARP packet the probe looks at (RFC 826). */
export interface ArpFields {
  /** ARP opcode: 1 request, 2 reply; other values are passed through for the caller to ignore. */
  readonly op: number;
  /** Sender hardware address, `aa:bb:cc:dd:ee:ff`. */
  readonly senderMac: string;
  /** Sender protocol address, dotted quad; 0.0.0.0 in an ARP Probe (RFC 5227 §2.1.1). */
  readonly senderIp: string;
  /** Target protocol address, dotted quad. */
  readonly targetIp: string;
}

/** A view of `frame` with Buffer's bounds-checked readers, or undefined when it is not bytes at all. */
function bytesOf(frame: unknown): Buffer | undefined {
  if (!(frame instanceof Uint8Array)) return undefined;
  return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
}

/**
 * Read an ARP packet for Ethernet and IPv4 out of a whole Ethernet frame (RFC 826: hardware type 1, protocol
 * type 0x0800, address lengths 6 and 4). Wire input: never throws; undefined for anything else — another
 * ethertype, another hardware or protocol type, a truncated packet. Trailing padding is ignored.
 */
export function parseArp(frame: Uint8Array): ArpFields | undefined {
  const f = bytesOf(frame);
  if (f === undefined || f.length < ETH_HEADER_LEN + ARP_IPV4_LEN) return undefined;
  if (f.readUInt16BE(12) !== ETHERTYPE_ARP) return undefined;
  const a = ETH_HEADER_LEN;
  if (f.readUInt16BE(a) !== 1 || f.readUInt16BE(a + 2) !== 0x0800) return undefined;
  if (f.readUInt8(a + 4) !== 6 || f.readUInt8(a + 5) !== 4) return undefined;
  return {
    op: f.readUInt16BE(a + 6),
    senderMac: formatMac(f.subarray(a + 8, a + 14)),
    senderIp: bytesToIp(f.subarray(a + 14, a + 18)),
    targetIp: bytesToIp(f.subarray(a + 24, a + 28)),
  };
}

/** The fields of a Neighbor Advertisement the probe looks at. */
export interface NaFields {
  /** Ethernet source address of the frame, `aa:bb:cc:dd:ee:ff`. */
  readonly sourceMac: string;
  /** The advertised Target Address, RFC 5952 text (as `Vip.address`). */
  readonly target: string;
}

/**
 * Read an ICMPv6 Neighbor Advertisement (RFC 4861 §4.4) out of a whole Ethernet frame, keeping the validity
 * checks of RFC 4861 §7.1.2 that prove it is an intact NA from the link: hop limit 255, code 0, ICMP length at
 * least 24, a checksum that verifies over the pseudo-header (RFC 8200 §8.1), a unicast target. The flags are
 * not checked: any NA for an address shows that somebody has it. Only an ICMPv6 header that follows the IPv6
 * header directly is read (an NA is not sent with extension headers). Wire input: never throws; undefined for
 * anything else.
 */
export function parseNeighborAdvert(frame: Uint8Array): NaFields | undefined {
  const f = bytesOf(frame);
  if (f === undefined || f.length < ETH_HEADER_LEN + IPV6_HEADER_LEN + ND_MIN_LEN) return undefined;
  if (f.readUInt16BE(12) !== ETHERTYPE_IPV6) return undefined;
  const ip = f.subarray(ETH_HEADER_LEN, ETH_HEADER_LEN + IPV6_HEADER_LEN);
  if (ip.readUInt8(0) >>> 4 !== 6) return undefined;
  const payloadLength = ip.readUInt16BE(4);
  if (ip.readUInt8(6) !== IPPROTO_ICMPV6 || ip.readUInt8(7) !== HOP_LIMIT_ND) return undefined;
  const start = ETH_HEADER_LEN + IPV6_HEADER_LEN;
  // Trust the IPv6 payload length, not the frame length: short frames may be padded (IEEE 802.3).
  if (payloadLength < ND_MIN_LEN || start + payloadLength > f.length) return undefined;
  const icmp = f.subarray(start, start + payloadLength);
  if (icmp.readUInt8(0) !== ICMPV6_NEIGHBOR_ADVERT || icmp.readUInt8(1) !== 0) return undefined;
  const pseudo = ipv6PseudoHeader(ip.subarray(8, 24), ip.subarray(24, 40), payloadLength, IPPROTO_ICMPV6);
  if (internetChecksum(pseudo, icmp) !== 0) return undefined;
  const target = icmp.subarray(8, 24);
  if (target.readUInt8(0) === 0xff) return undefined; // multicast target (RFC 4861 §7.1.2)
  return { sourceMac: formatMac(f.subarray(6, 12)), target: bytesToIp(target) };
}

/** `aa:bb:cc:dd:ee:ff` for logs. */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}
