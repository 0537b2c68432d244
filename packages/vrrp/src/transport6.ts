/**
 * VRRPv3 over IPv6 (RFC 5798 §5.1.2): IP protocol 112 to ff02::12 (or each unicast peer), hop limit 255,
 * sourced from the interface's link-local address. `raw-socket` cannot receive it (an AF_INET6 raw socket gives
 * neither the hop limit nor the destination without recvmsg ancillary data), so a small native addon
 * (native/vrrp6.c, built by node-gyp at install time) owns the socket. It is loaded lazily, on the first IPv6
 * transport: a missing or broken addon never affects the IPv4 path.
 *
 * The checksum is the TypeScript encoder's (over the IPv6 pseudo-header with the link-local source), so the
 * addon sends with that exact source (IPV6_PKTINFO) and does not ask the kernel to checksum (no IPV6_CHECKSUM).
 */
import { createRequire } from 'node:module';
import { isIPv6 } from 'node:net';
import { CoordError, bytesToIp, ipToBytes, type Logger } from '@coord/core';
import { VRRP_GROUP_V6 } from './codec.js';
import type { Received, VrrpTransport } from './transport.js';

/** One datagram as the addon hands it over: the VRRP message and the IPv6 header facts from recvmsg. */
export interface RawDatagram6 {
  readonly payload: Buffer;
  /** 16 bytes. */
  readonly src: Buffer;
  /** 16 bytes; undefined when the kernel gave no IPV6_PKTINFO. */
  readonly dst: Buffer | undefined;
  /** -1 when the kernel gave no IPV6_HOPLIMIT. */
  readonly hopLimit: number;
  readonly ifindex: number;
}

/** The functions native/vrrp6.c exports. All throw an Error whose `code` is an errno name. */
export interface Vrrp6Addon {
  /** fd of the VRRP socket on `ifindex`: bound to the device, joined to ff02::12, hop limit 255, no loop. */
  open(ifindex: number): number;
  /** Start receiving on `fd` (uv_poll); one call per datagram. */
  receive(fd: number, callback: (datagram: RawDatagram6) => void): void;
  /** sendmsg with source `src` and interface `ifindex`; returns the bytes sent. Never blocks. */
  send(fd: number, dst: Buffer, payload: Buffer, src: Buffer, ifindex: number): number;
  /** Stop receiving and close. */
  close(fd: number): void;
  /** if_nametoindex(3); 0 when there is no such interface. */
  ifindex(ifname: string): number;
}

/** Relative to this module (src/ in tests, dist/ in production): the addon node-gyp builds. */
export const VRRP6_ADDON_PATH = '../build/Release/coord_vrrp6.node';

/** The addon, or why it could not be loaded (not built, wrong ABI). Never throws. */
export function loadVrrp6Addon(): { ok: true; addon: Vrrp6Addon } | { ok: false; reason: string } {
  try {
    return { ok: true, addon: createRequire(import.meta.url)(VRRP6_ADDON_PATH) as Vrrp6Addon };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

/** fe80::/10 (RFC 4291 §2.5.6). */
export function isLinkLocal6(address: string): boolean {
  if (!isIPv6(address)) return false;
  const b = ipToBytes(address);
  return b[0] === 0xfe && ((b[1] ?? 0) & 0xc0) === 0x80;
}

/**
 * What the addon handed us: a VRRP datagram for this router, a broken one (counted), or `undefined` for one
 * sent to another multicast group this interface happens to be in (the kernel delivers only datagrams for this
 * host, so any unicast destination is ours). The hop limit is checked by the decoder (RFC 5798 §7.1).
 */
export function classifyIpv6(raw: RawDatagram6): Received | undefined {
  if (raw.src.length !== 16 || raw.dst?.length !== 16 || raw.hopLimit < 0 || raw.hopLimit > 255) {
    return { ok: false, reason: 'bad-ip-header' };
  }
  const dstAddr = bytesToIp(raw.dst);
  if (raw.dst[0] === 0xff && dstAddr !== VRRP_GROUP_V6) return undefined;
  return {
    ok: true,
    datagram: { payload: raw.payload, srcAddr: bytesToIp(raw.src), dstAddr, ttl: raw.hopLimit },
  };
}

export interface Raw6TransportOptions {
  /** The VRRP interface: the socket is bound to it and joins ff02::12 there. */
  readonly interfaceName: string;
  /** The interface's link-local address (fe80::/10): the advert source, as RFC 5798 §5.1.2.1 requires. */
  readonly linkLocal: string;
  /** Unicast peers; empty for multicast to ff02::12. */
  readonly unicastPeers?: readonly string[];
  readonly logger: Logger;
  /** For tests: the addon to use instead of the built one. */
  readonly addon?: Vrrp6Addon;
}

function addonOrThrow(): Vrrp6Addon {
  const loaded = loadVrrp6Addon();
  if (loaded.ok) return loaded.addon;
  throw new CoordError(
    'ERR_COORD_VRRP',
    'the IPv6 VRRP transport needs its native addon, which did not load',
    {
      hint: 'rebuild @coord/vrrp (npm_config_nodedir=/usr pnpm install, or node-gyp rebuild in packages/vrrp)',
      details: { reason: loaded.reason },
    },
  );
}

/** The IPv6 VRRP transport. Needs CAP_NET_RAW; throws `ERR_COORD_PERMISSION` without it. */
export function createRawVrrp6Transport(options: Raw6TransportOptions): VrrpTransport {
  const { interfaceName, linkLocal, logger } = options;
  const peers = options.unicastPeers ?? [];
  if (!isLinkLocal6(linkLocal) || linkLocal.includes('%')) {
    throw new CoordError('ERR_COORD_VRRP', 'IPv6 VRRP adverts are sourced from a link-local address', {
      hint: `pass the fe80:: address of ${interfaceName} (without a zone)`,
      details: { linkLocal },
    });
  }
  for (const peer of peers) {
    if (!isIPv6(peer)) {
      throw new CoordError('ERR_COORD_VRRP', 'IPv6 VRRP unicast peers must be IPv6 addresses', {
        hint: 'use IPv6 peer addresses',
        details: { peer },
      });
    }
  }
  const addon = options.addon ?? addonOrThrow();
  const ifindex = addon.ifindex(interfaceName);
  if (ifindex === 0) {
    throw new CoordError('ERR_COORD_VRRP', `no interface ${interfaceName} for IPv6 VRRP`, {
      hint: 'check the interface name',
      details: { interfaceName },
    });
  }
  let fd: number;
  try {
    fd = addon.open(ifindex);
  } catch (e) {
    throw new CoordError('ERR_COORD_PERMISSION', 'cannot open the IPv6 VRRP raw socket', {
      cause: e,
      hint: 'run as root or grant CAP_NET_RAW, and check that IPv6 is enabled on the interface',
      details: { interfaceName, linkLocal },
    });
  }
  const source = ipToBytes(linkLocal);
  let handler: ((r: Received) => void) | undefined;
  let closed = false;
  addon.receive(fd, (raw) => {
    const received = classifyIpv6(raw);
    if (received !== undefined) handler?.(received);
  });
  logger.debug('vrrp ipv6 socket open', { interfaceName, ifindex, linkLocal });
  return {
    destinations: peers.length === 0 ? [VRRP_GROUP_V6] : peers.map((p) => bytesToIp(ipToBytes(p))),
    send(dstAddr, payload) {
      try {
        if (closed) throw new CoordError('ERR_COORD_VRRP', 'the IPv6 VRRP transport is closed');
        addon.send(fd, ipToBytes(dstAddr), payload, source, ifindex);
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    },
    onReceive(h) {
      handler = h;
    },
    close() {
      if (closed) return;
      closed = true;
      handler = undefined;
      addon.close(fd);
    },
  };
}
