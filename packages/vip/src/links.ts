/**
 * Link state from rtnetlink notifications (RTM_NEWLINK/RTM_DELLINK on RTNLGRP_LINK), for tracking the
 * interface a VIP lives on: a holder whose uplink lost carrier should give the VIP up rather than hold it
 * where nobody can reach it.
 */
import netlink from 'netlink';
import type { RtNetlinkSocket } from 'netlink';
import { errorMessage, nullLogger } from '@coord/core';
import type { Logger } from '@coord/core';

/** One interface's state. A deleted interface is reported as down without carrier. */
export interface LinkEvent {
  iface: string;
  up: boolean;
  carrier: boolean;
}

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;

/** A link message → LinkEvent; undefined when it carries no name. IFLA_CARRIER wins over IFF_LOWER_UP. */
export function toLinkEvent(msg: netlink.rt.LinkMessage, deleted: boolean): LinkEvent | undefined {
  const iface = msg.attrs.ifname;
  if (iface === undefined) return undefined;
  if (deleted) return { iface, up: false, carrier: false };
  const carrier =
    msg.attrs.carrier !== undefined ? msg.attrs.carrier !== 0 : msg.data.flags?.lowerUp === true;
  return { iface, up: msg.data.flags?.up === true, carrier };
}

export interface WatchLinksOptions {
  logger?: Logger;
}

/**
 * Call `onEvent` with the current state of every interface, then on every change the kernel reports.
 * The subscription is made before the initial dump, so no change falls between the two. Keeps the event
 * loop alive until close().
 */
export function watchLinks(onEvent: (e: LinkEvent) => void, opts: WatchLinksOptions = {}): { close(): void } {
  const log = (opts.logger ?? nullLogger).child({ component: 'links' });
  const events: RtNetlinkSocket = netlink.createRtNetlink();
  events.socket.ref(true);
  let closed = false;
  // An 'error' without a listener would be thrown by EventEmitter and take the process down.
  events.socket.on('error', (e) => log.warn('link socket error', { reason: errorMessage(e) }));

  const deliver = (msg: netlink.rt.LinkMessage, deleted: boolean): void => {
    const e = toLinkEvent(msg, deleted);
    if (e !== undefined && !closed) onEvent(e);
  };

  events.socket.on('message', (msgs) => {
    for (const m of msgs) {
      // Replies to our own dump go to its request, not here; and a notification caused by a command such as
      // `ip link set eth0 down` carries that command's sequence number, so seq is no filter (it used to be, and
      // such a change on this host was missed).
      if (m.type !== RTM_NEWLINK && m.type !== RTM_DELLINK) continue;
      try {
        deliver(netlink.rt.parseLinkMessage(m.data), m.type === RTM_DELLINK);
      } catch (e) {
        log.warn('link notification not understood', { reason: errorMessage(e) });
      }
    }
  });
  events.addMembership('LINK');

  events.getLinks({}, {}, { timeout: 2000 }).then(
    (links) => {
      for (const l of links) deliver(l, false);
    },
    (e: unknown) => log.warn('initial link dump failed', { reason: errorMessage(e) }),
  );

  return {
    close() {
      if (closed) return;
      closed = true;
      events.socket.close();
    },
  };
}
