/**
 * The takeover probe: before a new holder adds a VIP whose previous holder's lease *expired* (crash, freeze,
 * partition), it asks the wire whether anybody still has the address, and keeps waiting while somebody answers.
 *
 * Why a wire check: the old holder added the VIP with a short kernel lifetime, but when the kernel removes an
 * expired address is not bounded by that lifetime — the IPv4 lifetime worker rounds its next run up, keeps a
 * minimum interval near one second and is re-armed by address changes anywhere on the host. A fixed guard
 * assumes a removal latency that was only ever measured. The kernel of a host that still has the address
 * answers a probe by itself, even while the process that added it is frozen, so an answer is direct evidence.
 *
 * - IPv4: an ARP Probe (RFC 5227 §2.1.1, sender IP 0.0.0.0). Any ARP packet — reply *or* request, so also a
 *   gratuitous announcement — whose sender IP is the VIP and whose sender MAC is not ours is an answer
 *   (RFC 5227 §2.1.1). Another host's *probe* for the same address (sender IP 0) is not: RFC 5227 calls that a
 *   conflict between two probers, but here the lease election already decided which of them may take the VIP.
 * - IPv6: a DAD Neighbor Solicitation from :: (RFC 4862 §5.4.2), which a node that has the address answers
 *   with a Neighbor Advertisement to all-nodes (RFC 4861 §7.2.4). An NA whose target is the VIP, from a MAC
 *   that is not ours, is an answer (RFC 4862 §5.4.4); another node's DAD solicitation is not.
 *
 * Our own frames: the receiving sockets are never handed what this host sends (native/packet.c), and a frame
 * the network reflects back (a hairpin port) carries our MAC, which never counts.
 *
 * No timers in here: the caller decides when to probe and when to drain (on its Clock, so the guard runs under
 * the fake clock in tests). Frames that arrive between two drains queue in the kernel's socket buffer.
 */
import { bytesToIp, errorMessage, ipToBytes, nullLogger } from '@coord/core';
import type { Logger, Vip } from '@coord/core';
import { loadPacketAddon } from './addon.js';
import type { PacketAddon } from './addon.js';
import { hintFor } from './errors.js';
import {
  ARP_OP_REPLY,
  ARP_OP_REQUEST,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  buildArpProbe,
  buildDadSolicitation,
  formatMac,
  parseArp,
  parseNeighborAdvert,
} from './frames.js';

/** Somebody on the wire claimed one of the probed VIPs. */
export interface WireAnswer {
  /** The VIP (address only, as in Vip.address) somebody claimed. */
  readonly address: string;
  /** MAC of the claimant, lower-case aa:bb:cc:dd:ee:ff. */
  readonly mac: string;
  readonly kind: 'arp-reply' | 'arp-request' | 'na';
}

/** Probing one interface for a fixed set of VIPs; holds packet sockets until close(). */
export interface ProbeSession {
  /** Send one probe per VIP now. Never throws; returns how many frames went out (0 when sending failed). */
  probe(): number;
  /** Read every pending frame without blocking; return the answers that claim one of our VIPs from a MAC that is not ours. Never throws. */
  drain(): WireAnswer[];
  close(): void;
}

/** Opens probe sessions; see the module comment for what a probe is and what counts as an answer. */
export interface WireProber {
  /** Open a probe session on `iface` for `vips`, or say why not (no addon, EPERM without CAP_NET_RAW, no such interface). Never throws. */
  open(
    iface: string,
    vips: readonly Vip[],
  ): { ok: true; session: ProbeSession } | { ok: false; reason: string };
}

export interface WireProberOptions {
  logger?: Logger;
  /** The native packet addon; `null` disables probing (every open fails). Default: the built addon, if it loads. */
  addon?: PacketAddon | null;
}

/**
 * Most frames read from one socket in one drain(). It is far more than a receive buffer holds (256 small frames
 * with the default 208 KiB, README), so a drain empties everything that was pending when it started; only a
 * flood that outpaces the reader is cut off, so that it cannot hold the event loop. What is left stays queued
 * for the next drain. Under such a flood the kernel drops frames anyway: no answer is never proof of absence.
 */
export const MAX_FRAMES_PER_DRAIN = 4096;

type Receiver = { fd: number; answer: (frame: Buffer) => WireAnswer | undefined };

/**
 * Build the prober. The addon is loaded once, here; without it every open() says why. A session reads the
 * interface's MAC once, when it opens: it lives for one takeover guard, and its probes must carry the MAC its
 * own-answer filter compares with.
 */
export function createWireProber(opts: WireProberOptions = {}): WireProber {
  const log = (opts.logger ?? nullLogger).child({ component: 'wire-prober' });
  let addon: PacketAddon | undefined;
  let unavailable = 'native packet addon disabled';
  if (opts.addon === undefined) {
    const loaded = loadPacketAddon();
    if (loaded.ok) addon = loaded.addon;
    else unavailable = `native packet addon unavailable: ${loaded.reason}`;
  } else if (opts.addon !== null) {
    addon = opts.addon;
  }

  return {
    open(iface, vips) {
      if (addon === undefined) return { ok: false, reason: unavailable };
      try {
        return openSession(addon, iface, vips, log);
      } catch (e) {
        // openSession turns every expected failure into a result; this is for a misbehaving addon.
        return { ok: false, reason: `cannot open a probe session on ${iface}: ${errorMessage(e)}` };
      }
    },
  };
}

/** The VIPs of one family, keyed by canonical address, mapped to the address as the caller wrote it. */
type Targets = Map<string, string>;

function openSession(
  a: PacketAddon,
  iface: string,
  vips: readonly Vip[],
  log: Logger,
): { ok: true; session: ProbeSession } | { ok: false; reason: string } {
  if (vips.length === 0) return { ok: false, reason: 'no VIPs to probe' };
  const v4: Targets = new Map();
  const v6: Targets = new Map();
  for (const vip of vips) {
    let bytes: Buffer;
    try {
      bytes = ipToBytes(vip.address);
    } catch {
      return { ok: false, reason: `not an IP address: ${vip.address}` };
    }
    if (bytes.length !== (vip.family === 4 ? 4 : 16))
      return { ok: false, reason: `${vip.address} is not an IPv${vip.family} address` };
    // An unspecified VIP would match every ARP probe's sender address (0.0.0.0).
    if (bytes.every((b) => b === 0))
      return { ok: false, reason: `cannot probe the unspecified address ${vip.address}` };
    (vip.family === 4 ? v4 : v6).set(bytesToIp(bytes), vip.address);
  }

  let ifindex: number;
  let mac: Buffer;
  try {
    ifindex = a.ifindex(iface);
    if (ifindex === 0) return { ok: false, reason: hintFor('ENODEV', iface) };
    mac = a.hwaddr(iface);
  } catch (e) {
    return { ok: false, reason: failure(`cannot read ${iface}`, e, iface) };
  }
  if (mac.length !== 6) return { ok: false, reason: `${iface} has no Ethernet address` };
  const ownMac = formatMac(mac);
  const frames = vips.map((v) =>
    v.family === 4 ? buildArpProbe(mac, v.address) : buildDadSolicitation(mac, v.address),
  );

  const fds: number[] = [];
  const receivers: Receiver[] = [];
  let sendFd: number;
  try {
    sendFd = a.open(ifindex);
    fds.push(sendFd);
    if (v4.size > 0) {
      const fd = a.openRecv(ifindex, ETHERTYPE_ARP);
      fds.push(fd);
      receivers.push({ fd, answer: (f) => arpAnswer(f, v4, ownMac) });
    }
    if (v6.size > 0) {
      const fd = a.openRecv(ifindex, ETHERTYPE_IPV6);
      fds.push(fd);
      receivers.push({ fd, answer: (f) => naAnswer(f, v6, ownMac) });
    }
  } catch (e) {
    closeAll(a, fds);
    return { ok: false, reason: failure(`cannot open a packet socket on ${iface}`, e, iface) };
  }

  let closed = false;
  const reported = new Set<string>();
  /** Log a send/receive failure once per session and reason: the caller probes and drains in a loop. */
  const note = (message: string, e: unknown): void => {
    const reason = errorMessage(e);
    if (reported.has(`${message}\0${reason}`)) return;
    reported.add(`${message}\0${reason}`);
    log.warn(message, { iface, reason });
  };

  const session: ProbeSession = {
    probe() {
      if (closed) return 0;
      let sent = 0;
      for (const f of frames) {
        try {
          a.send(sendFd, f);
          sent++;
        } catch (e) {
          note('probe not sent', e);
        }
      }
      return sent;
    },
    drain() {
      if (closed) return [];
      const answers: WireAnswer[] = [];
      for (const r of receivers) {
        for (let i = 0; i < MAX_FRAMES_PER_DRAIN; i++) {
          let frame: Buffer | null;
          try {
            frame = a.recv(r.fd);
          } catch (e) {
            note('probe answers not read', e);
            break;
          }
          if (!(frame instanceof Uint8Array)) break; // null: nothing pending
          const answer = r.answer(frame);
          if (answer !== undefined) answers.push(answer);
          if (i === MAX_FRAMES_PER_DRAIN - 1)
            note(
              'probe drain cut short by a flood',
              new Error(`${MAX_FRAMES_PER_DRAIN} frames in one drain`),
            );
        }
      }
      return answers;
    },
    close() {
      if (closed) return;
      closed = true;
      closeAll(a, fds);
    },
  };
  return { ok: true, session };
}

/** RFC 5227 §2.1.1: any ARP request or reply from the VIP as sender IP, sent by another MAC. */
function arpAnswer(frame: Buffer, targets: Targets, ownMac: string): WireAnswer | undefined {
  const arp = parseArp(frame);
  if (arp === undefined || arp.senderMac === ownMac) return undefined;
  if (arp.op !== ARP_OP_REQUEST && arp.op !== ARP_OP_REPLY) return undefined;
  const address = targets.get(arp.senderIp); // a probe's sender IP is 0.0.0.0: never a target
  if (address === undefined) return undefined;
  return { address, mac: arp.senderMac, kind: arp.op === ARP_OP_REPLY ? 'arp-reply' : 'arp-request' };
}

/** RFC 4862 §5.4.4: a Neighbor Advertisement for the VIP, sent by another MAC. */
function naAnswer(frame: Buffer, targets: Targets, ownMac: string): WireAnswer | undefined {
  const na = parseNeighborAdvert(frame);
  if (na === undefined || na.sourceMac === ownMac) return undefined;
  const address = targets.get(na.target);
  if (address === undefined) return undefined;
  return { address, mac: na.sourceMac, kind: 'na' };
}

function failure(what: string, e: unknown, iface: string): string {
  const code = (e as { code?: unknown } | null)?.code;
  return `${what}: ${errorMessage(e)}; ${hintFor(typeof code === 'string' ? code : undefined, iface)}`;
}

function closeAll(a: PacketAddon, fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      a.close(fd);
    } catch {
      // already closed: nothing to release
    }
  }
}
