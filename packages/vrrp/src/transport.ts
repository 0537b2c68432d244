/**
 * VRRP transport: IP protocol 112 over a raw IPv4 socket (`raw-socket`), multicast to 224.0.0.18 or unicast to
 * each configured peer. The socket options are the ones measured to interoperate with keepalived (docs/design.md, "VRRP on the wire"):
 * join the group on the interface address, IP_MULTICAST_IF, TTL 255 for multicast and unicast, TOS 0xc0.
 */
import { createRequire } from 'node:module';
import { isIPv4 } from 'node:net';
import { CoordError, ipToBytes, type Logger } from '@coord/core';
import { VRRP_GROUP_V4, VRRP_PROTOCOL, VRRP_TTL } from './codec.js';
import { parseIpv4 } from './ip.js';

/** One received datagram, IP header facts included (the checks need TTL and the pseudo-header). */
export interface ReceivedDatagram {
  readonly payload: Buffer;
  readonly srcAddr: string;
  readonly dstAddr: string;
  readonly ttl: number;
}

export type Received = { ok: true; datagram: ReceivedDatagram } | { ok: false; reason: 'bad-ip-header' };

/** What the runner needs from the network: a port, so tests use an in-memory bus. */
export interface VrrpTransport {
  /** Where adverts go: the VRRP group, or each unicast peer (the v3 checksum differs per destination). */
  readonly destinations: readonly string[];
  send(dstAddr: string, payload: Buffer): Promise<void>;
  /** Register the one receive handler. */
  onReceive(handler: (received: Received) => void): void;
  close(): void;
}

export interface RawTransportOptions {
  /** This router's primary IPv4 address on the VRRP interface (joins the group there, sources adverts). */
  readonly interfaceAddress: string;
  /** Unicast peers; empty for multicast. */
  readonly unicastPeers?: readonly string[];
  /** Bind to this interface (SO_BINDTODEVICE) so adverts of other links are not seen. */
  readonly interfaceName?: string;
  readonly logger: Logger;
}

/** Longest wait for one advert to reach the socket. */
const SEND_TIMEOUT_MS = 1000;

// Linux socket option numbers (include/uapi/linux/in.h, asm-generic/socket.h): raw-socket exports few of them.
const SOL_SOCKET = 1;
const SO_BINDTODEVICE = 25;
const IPPROTO_IP = 0;
const IP_TOS = 1;
const IP_TTL = 2;
const IP_MULTICAST_IF = 32;
const IP_MULTICAST_TTL = 33;
const IP_MULTICAST_LOOP = 34;
const IP_ADD_MEMBERSHIP = 35;
/** RFC 2474 class selector 6 (internetwork control), as keepalived sends. */
const TOS_INTERNETWORK_CONTROL = 0xc0;

interface RawSocket {
  on(event: 'message', fn: (buffer: Buffer, source: string) => void): void;
  on(event: 'error', fn: (error: Error) => void): void;
  setOption(level: number, option: number, value: number | Buffer, length?: number): void;
  send(
    buffer: Buffer,
    offset: number,
    length: number,
    address: string,
    cb: (error: Error | null, bytes: number) => void,
  ): void;
  close(): void;
}
interface RawSocketModule {
  createSocket(options: { protocol: number; addressFamily: number }): RawSocket;
  AddressFamily: { IPv4: number };
}

function loadRawSocket(): RawSocketModule {
  return createRequire(import.meta.url)('raw-socket') as RawSocketModule;
}

/**
 * What a raw IPv4 socket handed us: a VRRP datagram for this router, a broken one (counted), or `undefined` for
 * one addressed elsewhere — a raw socket sees every protocol-112 datagram of the namespace.
 */
export function classifyIpv4(buffer: Uint8Array, interfaceAddress: string): Received | undefined {
  const ip = parseIpv4(buffer);
  if (ip === undefined || ip.protocol !== VRRP_PROTOCOL) return { ok: false, reason: 'bad-ip-header' };
  if (ip.dstAddr !== VRRP_GROUP_V4 && ip.dstAddr !== interfaceAddress) return undefined;
  return {
    ok: true,
    datagram: { payload: ip.payload, srcAddr: ip.srcAddr, dstAddr: ip.dstAddr, ttl: ip.ttl },
  };
}

/** The IPv4 VRRP transport. Needs CAP_NET_RAW; throws `ERR_COORD_PERMISSION` without it. */
export function createRawVrrpTransport(options: RawTransportOptions): VrrpTransport {
  const { interfaceAddress, logger } = options;
  const peers = options.unicastPeers ?? [];
  if (!isIPv4(interfaceAddress)) {
    throw new CoordError('ERR_COORD_VRRP', 'the raw VRRP transport is IPv4 only', {
      hint: 'use an IPv4 primary address',
      details: { interfaceAddress },
    });
  }
  const raw = loadRawSocket();
  let socket: RawSocket;
  try {
    socket = raw.createSocket({ protocol: VRRP_PROTOCOL, addressFamily: raw.AddressFamily.IPv4 });
    if (options.interfaceName !== undefined) {
      const name = Buffer.from(`${options.interfaceName}\0`);
      socket.setOption(SOL_SOCKET, SO_BINDTODEVICE, name, name.length);
    }
    const ifAddr = ipToBytes(interfaceAddress);
    socket.setOption(IPPROTO_IP, IP_TOS, TOS_INTERNETWORK_CONTROL);
    socket.setOption(IPPROTO_IP, IP_TTL, VRRP_TTL);
    if (peers.length === 0) {
      socket.setOption(IPPROTO_IP, IP_MULTICAST_IF, ifAddr, 4);
      socket.setOption(IPPROTO_IP, IP_MULTICAST_TTL, VRRP_TTL);
      socket.setOption(IPPROTO_IP, IP_MULTICAST_LOOP, 0);
      const mreq = Buffer.concat([ipToBytes(VRRP_GROUP_V4), ifAddr]);
      socket.setOption(IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq, mreq.length);
    }
  } catch (e) {
    throw new CoordError('ERR_COORD_PERMISSION', 'cannot open the VRRP raw socket', {
      cause: e,
      hint: 'run as root or grant CAP_NET_RAW, and check the interface address',
      details: { interfaceAddress },
    });
  }
  let handler: ((r: Received) => void) | undefined;
  socket.on('message', (buffer) => {
    const received = classifyIpv4(buffer, interfaceAddress);
    if (received !== undefined) handler?.(received);
  });
  socket.on('error', (error) => logger.error('vrrp socket error', { error: error.message }));
  return {
    destinations: peers.length === 0 ? [VRRP_GROUP_V4] : [...peers],
    send(dstAddr, payload) {
      return new Promise((resolve, reject) => {
        // raw-socket queues a send until the socket is writable; a stalled link must not hold the advert queue
        // (and with it the VIP release on shutdown) forever.
        const timer = setTimeout(
          () => reject(new Error('send timed out (socket not writable)')),
          SEND_TIMEOUT_MS,
        );
        socket.send(payload, 0, payload.length, dstAddr, (error) => {
          clearTimeout(timer);
          if (error) reject(error);
          else resolve();
        });
      });
    },
    onReceive(h) {
      handler = h;
    },
    close() {
      handler = undefined;
      socket.close();
    },
  };
}
