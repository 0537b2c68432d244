/**
 * Loader of the native packet sender (native/packet.c, built by node-gyp at install time into
 * build/Release/coord_packet.node). The path is resolved from this file, which sits one level below the
 * package root both as src/addon.ts (tests, tsx) and as dist/addon.js (production).
 */
import { createRequire } from 'node:module';

/** The functions native/packet.c exports. All throw an Error whose `code` is an errno name. */
export interface PacketAddon {
  /** fd of an AF_PACKET/SOCK_RAW socket bound to `ifindex`; it never receives (protocol 0). */
  open(ifindex: number): number;
  /** Send one complete Ethernet frame without blocking; returns the bytes sent. */
  send(fd: number, frame: Buffer): number;
  close(fd: number): void;
  /** The interface's hardware address (SIOCGIFHWADDR), 6 bytes. */
  hwaddr(ifname: string): Buffer;
  /** if_nametoindex(3); 0 when there is no such interface. */
  ifindex(ifname: string): number;
}

/** Relative to this module: the addon node-gyp builds. */
export const ADDON_PATH = '../build/Release/coord_packet.node';

/** The addon, or the reason it could not be loaded (not built, wrong ABI). Never throws. */
export function loadPacketAddon(): { ok: true; addon: PacketAddon } | { ok: false; reason: string } {
  try {
    const require = createRequire(import.meta.url);
    return { ok: true, addon: require(ADDON_PATH) as PacketAddon };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}
