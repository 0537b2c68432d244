/**
 * Loader of the native packet sender and receiver (native/packet.c, built by node-gyp at install time into
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
  /**
   * fd of a non-blocking AF_PACKET/SOCK_RAW socket that receives the frames of `ethertype` (0x0806 ARP,
   * 0x86dd IPv6) arriving on `ifindex`, so the takeover probe (prober.ts) can hear who still answers for a
   * VIP. It never returns frames this host sends (PACKET_IGNORE_OUTGOING, or a packet-type filter where the
   * kernel lacks it), so our own probes are not mistaken for answers; a frame the network reflects back
   * arrives as incoming and must be dropped by its source MAC. For 0x86dd it also joins the all-nodes
   * Ethernet group, where answers to a DAD probe are sent (RFC 4861 §7.2.4). Frames queue in the kernel
   * until read: drain with {@link PacketAddon.recv} and close with {@link PacketAddon.close}.
   */
  openRecv(ifindex: number, ethertype: number): number;
  /**
   * The next pending frame, Ethernet header included, or null when nothing is pending (EAGAIN): never
   * blocks, so a caller can read everything queued without yielding to the event loop. Frames longer than
   * 9216 bytes come back truncated.
   */
  recv(fd: number): Buffer | null;
  /** fd of a NETLINK_ROUTE socket for {@link PacketAddon.nlRequest} (answers wait at most 1 s). */
  nlOpen(): number;
  /**
   * Send one complete rtnetlink request (NLM_F_ACK set, its sequence number chosen by the caller) and wait for
   * the kernel's answer to it, in this one synchronous call: 0 when done, else the errno it was refused with.
   * The send happens within the call, so a check made just before it still holds when the kernel acts on it
   * (native/packet.c says why the netlink library cannot promise that).
   */
  nlRequest(fd: number, message: Buffer): number;
  /**
   * The port id a NETLINK_ROUTE socket is bound to (what the kernel writes, as nlmsg_pid, into the IPv4 address
   * notifications its requests cause); -1 when `fd` is not such a socket.
   */
  nlPort(fd: number): number;
  /**
   * Attach a kernel socket filter to the NETLINK_ROUTE socket `fd` that drops RTM_NEWADDR notifications caused
   * by requests sent from `port` (everything else passes): 0 when attached, else the errno.
   */
  nlIgnoreEchoes(fd: number, port: number): number;
  /**
   * madvise(MADV_DONTNEED) on a page-aligned range: 0 when done, else the errno. Only for what
   * `cleanFileMappings` (memory.ts) chooses — read-only private file mappings without anonymous pages, whose
   * pages the kernel brings back from the page cache on the next touch. On any other mapping it loses data.
   */
  dropPages(start: number, length: number): number;
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
