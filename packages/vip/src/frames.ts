/**
 * Announcement frames, built byte by byte so that they can be checked against golden bytes and sent by a
 * tiny native sender (see native/packet.c) without waiting for a process.
 *
 * Why both ARP forms: some devices only learn from a gratuitous ARP *request*, others only from a *reply*
 * (kube-vip #80), so coord sends both, like `arping -U` and `arping -A` together.
 */
import { ipToBytes } from '@coord/core';

/** Ethernet header length (dst, src, ethertype). */
export const ETH_HEADER_LEN = 14;
/** Minimum Ethernet frame without FCS; shorter ARP frames are zero-padded to it (IEEE 802.3, ETH_ZLEN). */
export const ETH_MIN_FRAME = 60;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;
/** ICMPv6 Neighbor Advertisement (RFC 4861 §4.4). */
export const ICMPV6_NEIGHBOR_ADVERT = 136;
/** NA "Override" flag (RFC 4861 §4.4): tells receivers to replace a cached link-layer address. */
export const NA_FLAG_OVERRIDE = 0x20000000;
/** RFC 4861 §4.6.1 Target Link-Layer Address option. */
export const ND_OPT_TARGET_LLADDR = 2;
export const IPPROTO_ICMPV6 = 58;
const BROADCAST_MAC = Buffer.alloc(6, 0xff);
const ZERO_MAC = Buffer.alloc(6, 0);
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
  const ip = ipToBytes(ipv4);
  if (ip.length !== 4) throw new RangeError(`gratuitous ARP needs an IPv4 address, got ${ipv4}`);
  const frame = Buffer.alloc(ETH_MIN_FRAME);
  ethernetHeader(BROADCAST_MAC, mac, ETHERTYPE_ARP).copy(frame, 0);
  let o = ETH_HEADER_LEN;
  o = frame.writeUInt16BE(1, o); // hardware type: Ethernet
  o = frame.writeUInt16BE(0x0800, o); // protocol type: IPv4
  o = frame.writeUInt8(6, o); // hardware address length
  o = frame.writeUInt8(4, o); // protocol address length
  o = frame.writeUInt16BE(form === 'request' ? ARP_OP_REQUEST : ARP_OP_REPLY, o);
  frame.set(mac, o); // sender hardware address
  frame.set(ip, o + 6); // sender protocol address
  frame.set(form === 'request' ? ZERO_MAC : mac, o + 10); // target hardware address
  frame.set(ip, o + 16); // target protocol address
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

/** `aa:bb:cc:dd:ee:ff` for logs. */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}
