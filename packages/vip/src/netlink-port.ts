/**
 * VipPort over rtnetlink (the `netlink` package): no `ip` processes, ~0.1 ms per change (MEASURED.md).
 */
import { constants as osConstants } from 'node:os';
import netlink from 'netlink';
import type { RtNetlinkSocket } from 'netlink';
import { CoordError, bytesToIp, formatCidr, ipToBytes, nullLogger, systemClock } from '@coord/core';
import type { Clock, Logger, Vip } from '@coord/core';
import { loadPacketAddon, type PacketAddon } from './addon.js';
import { netlinkErrno, toCoordError } from './errors.js';
import { FOREVER_LIFETIME } from './types.js';
import type { AddressLifetime, HostAddress, VipPort } from './types.js';

const AF_INET = 2;
const AF_INET6 = 10;
/** Netlink requests that hang mean a broken kernel socket; fail instead of waiting forever. */
const REQUEST_TIMEOUT_MS = 2000;

/** Lifetime values the kernel accepts: whole seconds, preferred ≤ valid. */
export function normalizeLifetime(l: AddressLifetime): AddressLifetime {
  const clamp = (n: number): number => Math.min(0xffffffff, Math.max(0, Math.ceil(n)));
  const validSec = clamp(l.validSec);
  const preferredSec = Math.min(clamp(l.preferredSec), validSec);
  if (validSec === 0) throw new RangeError('valid lifetime must be at least 1 second');
  return { validSec, preferredSec };
}

/** The `ifaddrmsg` header and attributes for one VIP (IFA_LOCAL and IFA_ADDRESS are both the VIP). */
export function addressRequest(
  index: number,
  vip: Vip,
  lifetime?: AddressLifetime,
): { data: netlink.rt.Address; attrs: netlink.rt.AddressAttrs } {
  const bytes = ipToBytes(vip.address);
  const data: netlink.rt.Address = {
    family: vip.family === 4 ? AF_INET : AF_INET6,
    prefixlen: vip.prefix,
    index,
    // IPv6: skip duplicate address detection, or the VIP stays "tentative" (unusable) for ~1 s after a failover.
    ...(vip.family === 6 ? { flags: { nodad: true } } : {}),
  };
  const attrs: netlink.rt.AddressAttrs = { local: bytes, address: bytes };
  if (lifetime !== undefined) {
    const l = normalizeLifetime(lifetime);
    attrs.cacheInfo = { ifaValid: l.validSec, ifaPrefered: l.preferredSec, cstamp: 0, tstamp: 0 };
  }
  if (vip.family === 6) attrs.flags = { nodad: true };
  return { data, attrs };
}

/** An address message from the kernel → HostAddress, or undefined when it is not IPv4/IPv6 or is malformed. */
export function toHostAddress(msg: netlink.rt.AddressMessage): HostAddress | undefined {
  const raw = msg.attrs.local ?? msg.attrs.address;
  const family = msg.data.family === AF_INET ? 4 : msg.data.family === AF_INET6 ? 6 : undefined;
  if (raw === undefined || family === undefined || raw.length !== (family === 4 ? 4 : 16)) return undefined;
  const out: HostAddress = { address: bytesToIp(raw), prefix: msg.data.prefixlen ?? 0, family };
  const ci = msg.attrs.cacheInfo;
  if (ci?.ifaValid !== undefined) out.validSec = ci.ifaValid;
  if (ci?.ifaPrefered !== undefined) out.preferredSec = ci.ifaPrefered;
  // IFA_FLAGS (u32) extends the header's u8 flags; either may carry them.
  const flags = { ...msg.data.flags, ...msg.attrs.flags };
  out.permanent = flags.permanent === true;
  out.secondary = flags.secondary === true;
  return out;
}

/** Options of {@link createNetlinkVipPort}. */
export interface NetlinkVipPortOptions {
  logger?: Logger;
  /** The clock `AddressLifetime.notAfter` is read on (the agent's). */
  clock?: Clock;
  /**
   * Where address writes go: the packet addon's synchronous rtnetlink request (default, when the addon loads),
   * or `null` for the netlink library's socket alone.
   */
  syncNetlink?: SyncNetlink | null;
}

/** What the port needs of the packet addon for its synchronous address writes. */
export type SyncNetlink = Pick<PacketAddon, 'nlOpen' | 'nlRequest' | 'close'> &
  Partial<Pick<PacketAddon, 'nlPort'>>;

const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

/** The kernel refused a request: the same shape as the library's errors ("Request rejected: EEXIST"). */
function rejected(errno: number): Error {
  const name = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`Request rejected: ${name}`), { code: name });
}

/**
 * The production VipPort. One rtnetlink socket; interface indexes are cached by name and looked up again when
 * the kernel says the index is gone (an interface re-created by the operator gets a new index).
 */
export function createNetlinkVipPort(opts: NetlinkVipPortOptions = {}): VipPort {
  const log = (opts.logger ?? nullLogger).child({ component: 'vip' });
  const clock = opts.clock ?? systemClock();
  let sock: RtNetlinkSocket | undefined;
  const indexes = new Map<string, number>();
  const reqOpts = { timeout: REQUEST_TIMEOUT_MS };
  /** The synchronous path for address writes, once opened; null when there is none. */
  let direct: { addon: SyncNetlink; fd: number } | null | undefined =
    opts.syncNetlink === null ? null : undefined;
  let seq = 0;
  let queue: Promise<unknown> = Promise.resolve();
  /**
   * Encoded `ifaddrmsg` + attributes by what they encode. A holder refreshes the same address four times a second
   * at TTL 1 s, and encoding it through the library's generic struct code was about a fifth of an idle holder's
   * busy time (README, footprint); the header, with its sequence number, is made for every request.
   */
  const bodies = new Map<string, Buffer>();

  /**
   * One request at a time: concurrent dumps on one netlink socket interleave and fail ("Multipart message not
   * terminated properly", EBUSY — seen when list() and add() overlapped), and order matters for add/remove.
   */
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = queue.then(fn, fn);
    queue = next.catch(() => undefined);
    return next;
  }

  function socket(): RtNetlinkSocket {
    if (sock === undefined) {
      sock = netlink.createRtNetlink();
      // An 'error' without a listener would be thrown by EventEmitter and take the process down.
      sock.socket.on('error', (e) => log.warn('netlink socket error', { reason: e.message }));
    }
    return sock;
  }

  function directNetlink(): { addon: SyncNetlink; fd: number } | null {
    if (direct !== undefined) return direct;
    let addon = opts.syncNetlink;
    if (addon === undefined) {
      const loaded = loadPacketAddon();
      if (!loaded.ok)
        log.warn('address writes go through the netlink library (the packet addon did not load)', {
          reason: loaded.reason,
        });
      addon = loaded.ok ? loaded.addon : null;
    }
    try {
      direct = addon === null ? null : { addon, fd: addon.nlOpen() };
    } catch (e) {
      log.warn('address writes go through the netlink library', { reason: (e as Error).message });
      direct = null;
    }
    return direct;
  }

  /**
   * One address write (RTM_NEWADDR with `flags`, or RTM_DELADDR). Through the addon the request is sent and
   * answered before this returns its promise, so nothing can delay the send past a check made just before the
   * call; through the library it may be sent a turn later.
   */
  async function writeAddress(
    kind: 'new' | 'del',
    flags: number,
    index: number,
    vip: Vip,
    lifetime?: AddressLifetime,
  ): Promise<void> {
    const d = directNetlink();
    if (d === null) {
      const { data, attrs } = addressRequest(index, vip, lifetime);
      if (kind === 'new') await socket().newAddress(data, attrs, { ...reqOpts, flags });
      else await socket().delAddress(data, attrs, reqOpts);
      return;
    }
    const l = lifetime === undefined ? undefined : normalizeLifetime(lifetime);
    const key = `${index} ${formatCidr(vip)} ${l?.validSec ?? '-'} ${l?.preferredSec ?? '-'}`;
    let body = bodies.get(key);
    if (body === undefined) {
      const { data, attrs } = addressRequest(index, vip, lifetime);
      const stream = new netlink.AttrStream();
      netlink.rt.formatAddressMessage({ kind: 'address', data, attrs }, stream);
      body = Buffer.concat(stream.bufs);
      if (bodies.size >= 16) bodies.clear();
      bodies.set(key, body);
    }
    seq = (seq % 0xffffffff) + 1;
    const message = Buffer.concat(
      netlink.formatMessage({
        type: kind === 'new' ? netlink.rt.MessageType.NEWADDR : netlink.rt.MessageType.DELADDR,
        flags: netlink.Flags.REQUEST | netlink.Flags.ACK | flags,
        seq,
        port: 0,
        data: [body],
      }),
    );
    const errno = d.addon.nlRequest(d.fd, message);
    if (errno !== 0) throw rejected(errno);
  }

  async function lookupIndex(iface: string): Promise<number> {
    const cached = indexes.get(iface);
    if (cached !== undefined) return cached;
    let links: netlink.rt.LinkMessage[];
    try {
      links = await socket().getLink({}, { ifname: iface }, reqOpts);
    } catch (e) {
      throw toCoordError(e, { op: 'get link', iface });
    }
    const index = links[0]?.data.index;
    if (index === undefined) {
      throw new CoordError('ERR_COORD_NETLINK', `interface ${iface} not found`, {
        hint: `interface "${iface}" does not exist in this network namespace; check the config and \`ip link show\``,
        details: { iface },
      });
    }
    indexes.set(iface, index);
    return index;
  }

  /** Thrown inside a request chain when the lifetime's bound passed before a (re)send: nothing was sent. */
  class Late extends Error {}

  /** Past `notAfter` (on the agent's clock)? */
  const past = (lifetime: AddressLifetime | undefined): boolean =>
    lifetime?.notAfter !== undefined && clock.now() > lifetime.notAfter;

  /**
   * Run `fn` with the interface index; on ENODEV drop the cached index and try once more. `beforeSend` runs
   * before every attempt (the first and the retry), so a bound is re-checked after any wait.
   */
  async function withIndex<T>(
    iface: string,
    fn: (index: number) => Promise<T>,
    beforeSend: () => void = () => {},
  ): Promise<T> {
    const wasCached = indexes.has(iface);
    const index = await lookupIndex(iface);
    try {
      beforeSend();
      return await fn(index);
    } catch (e) {
      if (!wasCached || netlinkErrno(e) !== 'ENODEV') throw e;
      indexes.delete(iface);
      log.info('interface index changed', { iface, oldIndex: index });
      const fresh = await lookupIndex(iface);
      beforeSend();
      return fn(fresh);
    }
  }

  async function replace(iface: string, vip: Vip, lifetime: AddressLifetime): Promise<void> {
    const check = (): void => {
      if (past(lifetime)) throw new Late();
    };
    await withIndex(
      iface,
      (index) => writeAddress('new', netlink.FlagsNew.REPLACE, index, vip, lifetime),
      check,
    ).catch((e: unknown) => {
      if (e instanceof Late) throw e;
      throw toCoordError(e, { op: 'refresh address', iface, address: formatCidr(vip) });
    });
  }

  async function list(iface: string): Promise<HostAddress[]> {
    const index = await lookupIndex(iface);
    let msgs: netlink.rt.AddressMessage[];
    try {
      msgs = await socket().getAddresses({}, {}, reqOpts);
    } catch (e) {
      throw toCoordError(e, { op: 'list addresses', iface });
    }
    const out: HostAddress[] = [];
    for (const m of msgs) {
      if (m.data.index !== index) continue; // the dump is not filtered by the kernel unless strict checking is on
      const a = toHostAddress(m);
      if (a !== undefined) out.push(a);
    }
    return out;
  }

  async function add(iface: string, vip: Vip, lifetime?: AddressLifetime): Promise<'added' | 'present'> {
    const check = (): void => {
      if (past(lifetime)) throw new Late();
    };
    try {
      await withIndex(
        iface,
        (index) => writeAddress('new', netlink.FlagsNew.CREATE | netlink.FlagsNew.EXCL, index, vip, lifetime),
        check,
      );
    } catch (e) {
      if (e instanceof Late) throw e;
      if (netlinkErrno(e) !== 'EEXIST')
        throw toCoordError(e, { op: 'add address', iface, address: formatCidr(vip) });
      // Already there (our own earlier add, or a leftover): restart its lifetime — re-checking the bound first.
      await replace(iface, vip, lifetime ?? FOREVER_LIFETIME);
      return 'present';
    }
    log.debug('vip address added', { iface, vip: formatCidr(vip), validSec: lifetime?.validSec });
    return 'added';
  }

  /** Delete every address on `iface` equal to `vip`'s, with the prefix length it really has. */
  async function remove(iface: string, vip: Vip): Promise<'removed' | 'absent'> {
    const present = (await list(iface)).filter((a) => a.family === vip.family && a.address === vip.address);
    // Nothing listed: still try the configured prefix once (idempotent), so a listing race cannot skip a removal.
    const targets = present.length > 0 ? present.map((a) => ({ ...vip, prefix: a.prefix })) : [vip];
    let removed = false;
    for (const target of targets) {
      try {
        await withIndex(iface, (index) => writeAddress('del', 0, index, target));
        removed = true;
      } catch (e) {
        if (netlinkErrno(e) === 'EADDRNOTAVAIL') continue;
        throw toCoordError(e, { op: 'remove address', iface, address: formatCidr(target) });
      }
    }
    if (removed) log.debug('vip address removed', { iface, vip: vip.address });
    return removed ? 'removed' : 'absent';
  }

  /**
   * Run an add/refresh whose lifetime has a bound: 'late' when the bound passed before anything was sent;
   * 'late-reply' when the kernel's answer came after it — the reply's arrival is the latest moment the kernel
   * can have started the lifetime, so only an answer within the bound proves the lifetime ends in time.
   */
  async function bounded<T extends string>(
    lifetime: AddressLifetime | undefined,
    op: () => Promise<T>,
  ): Promise<T | 'late' | 'late-reply'> {
    if (past(lifetime)) return 'late';
    try {
      const r = await op();
      return past(lifetime) ? 'late-reply' : r;
    } catch (e) {
      if (e instanceof Late) return 'late';
      throw e;
    }
  }

  return {
    list: (iface) => serial(() => list(iface)),
    add: (iface, vip, lifetime) => serial(() => bounded(lifetime, () => add(iface, vip, lifetime))),
    refresh: (iface, vip, lifetime) =>
      serial(() =>
        bounded(lifetime, async () => {
          await replace(iface, vip, lifetime);
          return 'refreshed' as const;
        }),
      ),
    remove: (iface, vip) => serial(() => remove(iface, vip)),
    echoPort() {
      const d = directNetlink();
      const port = d?.addon.nlPort?.(d.fd) ?? -1;
      return port >= 0 ? port : null;
    },
    close() {
      sock?.socket.close();
      sock = undefined;
      if (direct) {
        try {
          direct.addon.close(direct.fd);
        } catch {
          // already closed: nothing to release
        }
        direct = opts.syncNetlink === null ? null : undefined;
      }
      indexes.clear();
    },
  };
}
