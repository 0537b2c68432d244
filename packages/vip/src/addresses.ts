/**
 * Address changes from rtnetlink notifications (RTM_NEWADDR/RTM_DELADDR on RTNLGRP_IPV4_IFADDR and
 * RTNLGRP_IPV6_IFADDR): the agent reconciles a VIP the moment somebody adds or removes it behind its back,
 * instead of listing every interface twice a second. Notifications can be lost (a full socket buffer): the agent
 * keeps a slow periodic reconcile as the backstop.
 *
 * The notifications of our own address writes (a holder restarts its VIP's lifetime four times a second at TTL
 * 1 s) tell the agent nothing: with `ignoreEchoesOf` (the port those writes are sent from), a kernel socket filter
 * drops their RTM_NEWADDR notifications before they wake the process. IPv4 only: IPv6 notifications name no port.
 * The agent lists the interface after its own add instead (docs/design.md, "Footprint: the holder's own
 * notifications").
 */
import { readdirSync } from 'node:fs';
import netlink from 'netlink';
import type { RtNetlinkSocket } from 'netlink';
import { errorMessage, nullLogger } from '@coord/core';
import type { Logger } from '@coord/core';
import { loadPacketAddon, type PacketAddon } from './addon.js';
import { toHostAddress } from './netlink-port.js';
import type { HostAddress } from './types.js';

/** An address appeared on (`add`) or left (`del`) the interface with this index. */
export interface AddressEvent {
  readonly op: 'add' | 'del';
  readonly ifindex: number;
  readonly address: HostAddress;
}

const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;

/** What the watcher needs of the packet addon to filter echoes. */
export type EchoFilter = Pick<PacketAddon, 'nlPort' | 'nlIgnoreEchoes'>;

export interface WatchAddressesOptions {
  logger?: Logger;
  /** Drop the RTM_NEWADDR notifications of requests sent from this netlink port (our own address writes). */
  ignoreEchoesOf?: number | null;
  /** The calls that attach the filter (default: the packet addon; null: never filter). */
  echoFilter?: EchoFilter | null;
}

/**
 * Attach the echo filter to the descriptor of the library's socket bound at `socketPort` (the library does not
 * hand its descriptor out: it is found by asking each open descriptor which netlink port it is bound to).
 * Returns why not, or null when attached.
 */
export function ignoreEchoes(
  filter: EchoFilter,
  socketPort: number,
  echoPort: number,
  fdDir: string,
): string | null {
  let fds: string[];
  try {
    fds = readdirSync(fdDir);
  } catch (e) {
    return `cannot list ${fdDir}: ${errorMessage(e)}`;
  }
  for (const name of fds) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || filter.nlPort(fd) !== socketPort) continue;
    const errno = filter.nlIgnoreEchoes(fd, echoPort);
    return errno === 0 ? null : `setsockopt(SO_ATTACH_FILTER) failed: errno ${errno}`;
  }
  return `no descriptor bound to netlink port ${socketPort}`;
}

/** Call `onEvent` on every address change the kernel reports (IPv4 and IPv6). Keeps the event loop alive. */
export function watchAddresses(
  onEvent: (e: AddressEvent) => void,
  opts: WatchAddressesOptions = {},
): { close(): void } {
  const log = (opts.logger ?? nullLogger).child({ component: 'addresses' });
  const events: RtNetlinkSocket = netlink.createRtNetlink();
  events.socket.ref(true);
  let closed = false;
  events.socket.on('error', (e) => log.warn('address socket error', { reason: errorMessage(e) }));
  events.socket.on('message', (msgs) => {
    for (const m of msgs) {
      // Every message here is a notification: nothing is requested on this socket. (A notification caused by a
      // command such as `ip addr add` carries that command's sequence number, so seq is no filter.)
      if (m.type !== RTM_NEWADDR && m.type !== RTM_DELADDR) continue;
      try {
        const msg = netlink.rt.parseAddressMessage(m.data);
        const address = toHostAddress(msg);
        if (address === undefined || closed) continue;
        onEvent({ op: m.type === RTM_NEWADDR ? 'add' : 'del', ifindex: msg.data.index ?? 0, address });
      } catch (e) {
        log.warn('address notification not understood', { reason: errorMessage(e) });
      }
    }
  });
  const echoPort = opts.ignoreEchoesOf;
  if (echoPort !== undefined && echoPort !== null) {
    let filter = opts.echoFilter;
    if (filter === undefined) {
      const loaded = loadPacketAddon();
      filter = loaded.ok ? loaded.addon : null;
    }
    const why =
      filter === null
        ? 'the packet addon did not load'
        : ignoreEchoes(filter, events.socket.address().port, echoPort, '/proc/self/fd');
    if (why === null) log.info('own address notifications filtered in the kernel', { port: echoPort });
    else log.info('own address notifications are read and ignored', { reason: why });
  }
  // Joined after the filter is in place, so that no echo is queued before it.
  events.addMembership('IPV4_IFADDR');
  events.addMembership('IPV6_IFADDR');
  return {
    close() {
      if (closed) return;
      closed = true;
      events.socket.close();
    },
  };
}
