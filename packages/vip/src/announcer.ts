/**
 * Tell the neighbours who owns a VIP now, without waiting for anything: a gratuitous ARP in both forms for
 * IPv4, an unsolicited Neighbor Advertisement for IPv6, each written by one non-blocking send() on a cached
 * AF_PACKET socket (~0.1 ms, MEASURED.md). `arping` would take ~1 s to exit (docs/design.md), so it is only the
 * fallback when the native sender is missing, and even then it is spawned detached and never awaited.
 */
import { execa } from 'execa';
import { errorMessage, formatCidr, nullLogger } from '@coord/core';
import type { Logger, Vip } from '@coord/core';
import { loadPacketAddon } from './addon.js';
import type { PacketAddon } from './addon.js';
import { buildGratuitousArp, buildUnsolicitedNa, formatMac } from './frames.js';

/** What one announce() did. `frames` counts frames written (or arping processes started, via 'arping'). */
export type AnnounceResult =
  { ok: true; via: 'packet' | 'arping'; frames: number; mac?: string } | { ok: false; reason: string };

/** Announces VIPs; see the module comment. */
export interface Announcer {
  /** Synchronous and sub-millisecond; failures are results (the agent retries on its next announce tick). */
  announce(iface: string, vip: Vip): AnnounceResult;
  /** Close the cached packet sockets. */
  close(): void;
}

/** Starts a process the caller never waits for (a port so tests can observe the fallback). */
export type DetachedSpawn = (file: string, args: readonly string[]) => void;

export interface AnnouncerOptions {
  logger?: Logger;
  /** The native sender; `null` forces the arping fallback. Default: the built addon, if it loads. */
  addon?: PacketAddon | null;
  /** How the fallback starts arping. Default: execa, detached, 5 s timeout, output ignored. */
  spawn?: DetachedSpawn;
}

/** The frames that announce `vip` from `mac`: GARP request + reply for IPv4, one unsolicited NA for IPv6. */
export function announcementFrames(mac: Uint8Array, vip: Vip): Buffer[] {
  return vip.family === 4
    ? [buildGratuitousArp(mac, vip.address, 'request'), buildGratuitousArp(mac, vip.address, 'reply')]
    : [buildUnsolicitedNa(mac, vip.address)];
}

const ARPING_TIMEOUT_MS = 5000;

const execaDetached: DetachedSpawn = (file, args) => {
  const child = execa(file, args, {
    detached: true,
    stdio: 'ignore',
    timeout: ARPING_TIMEOUT_MS,
    reject: false,
  });
  child.unref();
  child.catch(() => {}); // reject:false already; keep a spawn failure from becoming an unhandled rejection
};

/** Build the announcer. The native addon is loaded once; if it cannot be, one warning is logged. */
export function createAnnouncer(opts: AnnouncerOptions = {}): Announcer {
  const log = (opts.logger ?? nullLogger).child({ component: 'announcer' });
  const spawn = opts.spawn ?? execaDetached;
  let addon: PacketAddon | undefined;
  if (opts.addon === undefined) {
    const loaded = loadPacketAddon();
    if (loaded.ok) addon = loaded.addon;
    else log.warn('native packet sender unavailable, falling back to arping', { reason: loaded.reason });
  } else if (opts.addon === null) {
    log.warn('native packet sender disabled, falling back to arping', {});
  } else {
    addon = opts.addon;
  }
  const sockets = new Map<string, { ifindex: number; fd: number }>();
  let warnedNoNa = false;
  const lastFailure = new Map<string, string>();

  function drop(iface: string): void {
    const s = sockets.get(iface);
    if (s === undefined || addon === undefined) return;
    sockets.delete(iface);
    try {
      addon.close(s.fd);
    } catch {
      // already closed: nothing to release
    }
  }

  /** The cached socket for `iface`, reopened when the interface was re-created under a new index. */
  function socketFor(a: PacketAddon, iface: string): { fd: number } {
    const ifindex = a.ifindex(iface);
    if (ifindex === 0) throw Object.assign(new Error(`no interface ${iface}`), { code: 'ENODEV' });
    const cached = sockets.get(iface);
    if (cached?.ifindex === ifindex) return cached;
    drop(iface);
    const s = { ifindex, fd: a.open(ifindex) };
    sockets.set(iface, s);
    return s;
  }

  function viaPacket(a: PacketAddon, iface: string, vip: Vip): AnnounceResult {
    const mac = a.hwaddr(iface); // read each time: a bond or an operator can change it
    const frames = announcementFrames(mac, vip);
    const { fd } = socketFor(a, iface);
    for (const f of frames) a.send(fd, f);
    return { ok: true, via: 'packet', frames: frames.length, mac: formatMac(mac) };
  }

  function viaArping(iface: string, vip: Vip): AnnounceResult {
    if (vip.family === 6) {
      if (!warnedNoNa)
        log.warn('no neighbour advertisement without the native sender', { iface, vip: formatCidr(vip) });
      warnedNoNa = true;
      return { ok: false, reason: 'IPv6 announcements need the native packet sender' };
    }
    spawn('arping', ['-U', '-c', '1', '-I', iface, vip.address]);
    spawn('arping', ['-A', '-c', '1', '-I', iface, vip.address]);
    return { ok: true, via: 'arping', frames: 2 };
  }

  return {
    announce(iface, vip) {
      if (addon === undefined) return viaArping(iface, vip);
      try {
        const result = viaPacket(addon, iface, vip);
        if (lastFailure.delete(iface)) log.info('announce recovered', { iface, vip: formatCidr(vip) });
        return result;
      } catch (e) {
        drop(iface); // a stale socket (interface gone and back) must not fail every later announce
        const reason = errorMessage(e);
        // The agent re-announces on a tick: log a failure when it starts or changes, not on every tick.
        if (lastFailure.get(iface) !== reason)
          log.warn('announce failed', { iface, vip: formatCidr(vip), reason });
        lastFailure.set(iface, reason);
        return { ok: false, reason };
      }
    },
    close() {
      for (const iface of [...sockets.keys()]) drop(iface);
    },
  };
}
