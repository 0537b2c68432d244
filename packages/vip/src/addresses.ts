/**
 * Address changes from rtnetlink notifications (RTM_NEWADDR/RTM_DELADDR on RTNLGRP_IPV4_IFADDR and
 * RTNLGRP_IPV6_IFADDR): the agent reconciles a VIP the moment somebody adds or removes it behind its back,
 * instead of listing every interface twice a second. Notifications can be lost (a full socket buffer): the agent
 * keeps a slow periodic reconcile as the backstop.
 */
import netlink from 'netlink';
import type { RtNetlinkSocket } from 'netlink';
import { errorMessage, nullLogger } from '@coord/core';
import type { Logger } from '@coord/core';
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

/** Call `onEvent` on every address change the kernel reports (IPv4 and IPv6). Keeps the event loop alive. */
export function watchAddresses(
  onEvent: (e: AddressEvent) => void,
  opts: { logger?: Logger } = {},
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
