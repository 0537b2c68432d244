/**
 * VRRP wire codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), pure.
 *
 * The checks follow keepalived's `vrrp_check_packet` so that a packet keepalived would drop, coord drops too,
 * and for the same reason. The decoder never throws on wire input: every rejection is a {@link DropReason}
 * the caller counts.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { bytesToIp, ipToBytes, type Family } from '@coord/core';

/** IANA protocol number of VRRP (RFC 5798 §5.1.1.4). */
export const VRRP_PROTOCOL = 112;
/** RFC 5798 §5.1.1.3 / RFC 3768 §5.2.3: the TTL (hop limit) a VRRP router sends and demands on receipt. */
export const VRRP_TTL = 255;
/** RFC 5798 §5.1.1.2: the IPv4 multicast group of VRRP. */
export const VRRP_GROUP_V4 = '224.0.0.18';
/** RFC 5798 §5.1.2.2: the IPv6 multicast group of VRRP. */
export const VRRP_GROUP_V6 = 'ff02::12';
/** RFC 5798 §5.2.2: the only packet type. */
const TYPE_ADVERTISEMENT = 1;
/** RFC 3768 §5.3.6: v2 carries 8 bytes of authentication data after the addresses. */
const V2_AUTH_LEN = 8;
const HEADER_LEN = 8;

/** Why a packet was dropped. Stable strings: they label counters and metrics. */
export const DROP_REASONS = [
  'too-short',
  'length-mismatch',
  'bad-ttl',
  'bad-version',
  'version-mismatch',
  'bad-type',
  'bad-checksum',
  'no-addresses',
  'bad-advert-interval',
  'bad-auth-type',
  'auth-type-mismatch',
  'auth-failed',
  'family-unsupported',
  'bad-ip-header',
  'other-vrid',
  'advert-interval-mismatch',
  'own-advert',
  'not-a-peer',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** RFC 3768 §5.3.6 authentication, as keepalived 2.x supports it (AH, type 2, is not). */
export type VrrpAuth = { readonly type: 'none' } | { readonly type: 'simple'; readonly password: string };

interface PacketCommon {
  /** Virtual Router Identifier, 1-255. */
  readonly vrid: number;
  /** 0 = the master resigns, 1-254 elect, 255 = address owner. */
  readonly priority: number;
  /** Virtual addresses in canonical text form. */
  readonly addresses: readonly string[];
}

/** RFC 3768: interval in whole seconds, optional simple-password authentication. */
export interface VrrpV2Packet extends PacketCommon {
  readonly version: 2;
  readonly advertIntervalSec: number;
  readonly auth: VrrpAuth;
}

/** RFC 5798: interval in centiseconds (12 bits), no authentication, IPv4 or IPv6 addresses. */
export interface VrrpV3Packet extends PacketCommon {
  readonly version: 3;
  readonly maxAdvertIntervalCs: number;
}

export type VrrpPacket = VrrpV2Packet | VrrpV3Packet;

export interface DecodeOptions {
  /** Expected protocol version; a packet of the other version is `version-mismatch`. */
  readonly version?: 2 | 3;
  readonly family: Family;
  /** IP source and destination: the v3 checksum covers them (pseudo-header). */
  readonly srcAddr: string;
  readonly dstAddr: string;
  /** IPv4 TTL or IPv6 hop limit of the received datagram. */
  readonly ttl: number;
  /** v2 only: the configured authentication; when given, a packet must match it. */
  readonly auth?: VrrpAuth;
}

export type DecodeResult = { ok: true; packet: VrrpPacket } | { ok: false; reason: DropReason };

export interface EncodeOptions {
  readonly family: Family;
  readonly srcAddr: string;
  readonly dstAddr: string;
}

/** The advertisement interval of a packet in centiseconds, whatever its version. */
export function advertIntervalCs(packet: VrrpPacket): number {
  return packet.version === 2 ? packet.advertIntervalSec * 100 : packet.maxAdvertIntervalCs;
}

/** RFC 1071 one's-complement sum of `parts`, folded and complemented. */
export function internetChecksum(parts: readonly Uint8Array[]): number {
  let sum = 0;
  let odd: number | undefined;
  for (const part of parts) {
    for (const byte of part) {
      if (odd === undefined) {
        odd = byte;
      } else {
        sum += (odd << 8) | byte;
        odd = undefined;
      }
    }
  }
  if (odd !== undefined) sum += odd << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** RFC 5798 §5.2.8: the v3 checksum includes a pseudo-header (RFC 768 for IPv4, RFC 8200 §8.1 for IPv6). */
function pseudoHeader(family: Family, src: Buffer, dst: Buffer, length: number): Buffer {
  if (family === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = VRRP_PROTOCOL;
    p.writeUInt16BE(length, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(length, 32);
  p[39] = VRRP_PROTOCOL;
  return p;
}

function addressBytes(family: Family, text: string): Buffer | undefined {
  if (family === 4 ? !isIPv4(text) : !isIPv6(text)) return undefined;
  return ipToBytes(text);
}

function isMulticast(family: Family, dst: Buffer): boolean {
  return family === 4 ? ((dst[0] ?? 0) & 0xf0) === 0xe0 : dst[0] === 0xff;
}

function checksumFor(version: 2 | 3, family: Family, src: Buffer, dst: Buffer, vrrp: Buffer): number {
  return version === 2
    ? internetChecksum([vrrp])
    : internetChecksum([pseudoHeader(family, src, dst, vrrp.length), vrrp]);
}

/**
 * Parse and validate one VRRP message (the IP payload, exactly as long as the IP header says).
 * Order of checks follows keepalived: length, TTL, version, type, lengths against the address count,
 * checksum, interval, authentication.
 */
export function decode(payload: Uint8Array, options: DecodeOptions): DecodeResult {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const { family } = options;
  const src = addressBytes(family, options.srcAddr);
  const dst = addressBytes(family, options.dstAddr);
  if (src === undefined || dst === undefined) return { ok: false, reason: 'bad-ip-header' };
  if (buf.length < HEADER_LEN) return { ok: false, reason: 'too-short' };
  // RFC 5798 §7.1: a multicast advertisement must arrive with TTL 255 (it proves the sender is on-link).
  // keepalived applies the same rule to unicast only on request; so do we.
  if (isMulticast(family, dst) && options.ttl !== VRRP_TTL) return { ok: false, reason: 'bad-ttl' };
  const first = buf[0] ?? 0;
  const version = first >> 4;
  if (version !== 2 && version !== 3) return { ok: false, reason: 'bad-version' };
  if (options.version !== undefined && version !== options.version)
    return { ok: false, reason: 'version-mismatch' };
  if ((first & 0x0f) !== TYPE_ADVERTISEMENT) return { ok: false, reason: 'bad-type' };
  if (version === 2 && family !== 4) return { ok: false, reason: 'family-unsupported' };
  const vrid = buf[1] ?? 0;
  const priority = buf[2] ?? 0;
  const count = buf[3] ?? 0;
  const addrLen = family === 4 ? 4 : 16;
  const expected = HEADER_LEN + count * addrLen + (version === 2 ? V2_AUTH_LEN : 0);
  if (buf.length !== expected) return { ok: false, reason: 'length-mismatch' };
  if (checksumFor(version, family, src, dst, buf) !== 0) return { ok: false, reason: 'bad-checksum' };
  if (count === 0) return { ok: false, reason: 'no-addresses' };
  const addresses: string[] = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER_LEN + i * addrLen;
    addresses.push(bytesToIp(buf.subarray(at, at + addrLen)));
  }
  if (version === 3) {
    // RFC 5798 §5.2.7: 4 reserved bits (ignored on receipt) then a 12-bit interval in centiseconds.
    const maxAdvertIntervalCs = buf.readUInt16BE(4) & 0x0fff;
    if (maxAdvertIntervalCs === 0) return { ok: false, reason: 'bad-advert-interval' };
    return { ok: true, packet: { version: 3, vrid, priority, maxAdvertIntervalCs, addresses } };
  }
  const authType = buf[4] ?? 0;
  const advertIntervalSec = buf[5] ?? 0;
  if (advertIntervalSec === 0) return { ok: false, reason: 'bad-advert-interval' };
  const authData = buf.subarray(expected - V2_AUTH_LEN, expected);
  let auth: VrrpAuth;
  if (authType === 0) auth = { type: 'none' };
  else if (authType === 1) auth = { type: 'simple', password: passwordText(authData) };
  else return { ok: false, reason: 'bad-auth-type' };
  const want = options.auth;
  if (want !== undefined) {
    if (want.type !== auth.type) return { ok: false, reason: 'auth-type-mismatch' };
    if (want.type === 'simple' && !passwordBytes(want.password).equals(authData)) {
      return { ok: false, reason: 'auth-failed' };
    }
  }
  return { ok: true, packet: { version: 2, vrid, priority, advertIntervalSec, auth, addresses } };
}

/** RFC 3768 §5.3.6.1: up to 8 octets, zero-padded. */
function passwordBytes(password: string): Buffer {
  const out = Buffer.alloc(V2_AUTH_LEN);
  Buffer.from(password, 'utf8').copy(out, 0, 0, V2_AUTH_LEN);
  return out;
}

function passwordText(data: Buffer): string {
  const end = data.indexOf(0);
  return data.subarray(0, end < 0 ? data.length : end).toString('utf8');
}

/**
 * Serialise a packet, computing its checksum. Throws (a programming error, not wire input) on fields out of
 * range or addresses of the wrong family — config validation prevents both.
 */
export function encode(packet: VrrpPacket, options: EncodeOptions): Buffer {
  const { family } = options;
  const src = addressBytes(family, options.srcAddr);
  const dst = addressBytes(family, options.dstAddr);
  if (src === undefined || dst === undefined)
    throw new TypeError('encode: source/destination not of the family');
  if (packet.version === 2 && family !== 4) throw new TypeError('encode: VRRPv2 is IPv4 only');
  const count = packet.addresses.length;
  if (count < 1 || count > 255) throw new RangeError('encode: 1-255 addresses');
  const addrLen = family === 4 ? 4 : 16;
  const buf = Buffer.alloc(HEADER_LEN + count * addrLen + (packet.version === 2 ? V2_AUTH_LEN : 0));
  buf[0] = (packet.version << 4) | TYPE_ADVERTISEMENT;
  buf[1] = packet.vrid;
  buf[2] = packet.priority;
  buf[3] = count;
  if (packet.version === 3) {
    buf.writeUInt16BE(packet.maxAdvertIntervalCs & 0x0fff, 4);
  } else {
    buf[4] = packet.auth.type === 'simple' ? 1 : 0;
    buf[5] = packet.advertIntervalSec;
  }
  packet.addresses.forEach((a, i) => {
    const bytes = addressBytes(family, a);
    if (bytes === undefined) throw new TypeError(`encode: ${a} is not an IPv${family} address`);
    bytes.copy(buf, HEADER_LEN + i * addrLen);
  });
  if (packet.version === 2 && packet.auth.type === 'simple') {
    passwordBytes(packet.auth.password).copy(buf, buf.length - V2_AUTH_LEN);
  }
  buf.writeUInt16BE(checksumFor(packet.version, family, src, dst, buf), 6);
  return buf;
}
