/**
 * IPv4 header parsing for raw-socket receive: Linux hands an IPPROTO_VRRP raw socket the whole datagram,
 * IP header included. Pure, never throws on wire input.
 */
import { bytesToIp } from '@coord/core';

export interface Ipv4Datagram {
  readonly srcAddr: string;
  readonly dstAddr: string;
  readonly ttl: number;
  readonly protocol: number;
  /** The payload as long as the IP total length says — a link may pad short frames. */
  readonly payload: Buffer;
}

/** Split a received IPv4 datagram into header facts and payload, or `undefined` when it is not one. */
export function parseIpv4(datagram: Uint8Array): Ipv4Datagram | undefined {
  const buf = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (buf.length < 20) return undefined;
  const first = buf[0] ?? 0;
  if (first >> 4 !== 4) return undefined;
  const ihl = (first & 0x0f) * 4;
  const total = buf.readUInt16BE(2);
  if (ihl < 20 || total < ihl || total > buf.length) return undefined;
  return {
    ttl: buf[8] ?? 0,
    protocol: buf[9] ?? 0,
    srcAddr: bytesToIp(buf.subarray(12, 16)),
    dstAddr: bytesToIp(buf.subarray(16, 20)),
    payload: buf.subarray(ihl, total),
  };
}

export interface Ipv6Datagram {
  readonly srcAddr: string;
  readonly dstAddr: string;
  readonly hopLimit: number;
  readonly nextHeader: number;
  readonly payload: Buffer;
}

/**
 * Split an IPv6 datagram (fixed header only; extension headers are reported as `nextHeader`), or `undefined`.
 * For captures and tests: an AF_INET6 raw socket never hands the header to user space.
 */
export function parseIpv6(datagram: Uint8Array): Ipv6Datagram | undefined {
  const buf = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (buf.length < 40 || (buf[0] ?? 0) >> 4 !== 6) return undefined;
  const length = buf.readUInt16BE(4);
  if (40 + length > buf.length) return undefined;
  return {
    nextHeader: buf[6] ?? 0,
    hopLimit: buf[7] ?? 0,
    srcAddr: bytesToIp(buf.subarray(8, 24)),
    dstAddr: bytesToIp(buf.subarray(24, 40)),
    payload: buf.subarray(40, 40 + length),
  };
}
