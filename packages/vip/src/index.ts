/**
 * @coord/vip — VIP ownership on the host: add/refresh/remove/list addresses over rtnetlink (with kernel
 * lifetimes as a dead-man switch), announce ownership by gratuitous ARP / unsolicited NA, probe the wire for
 * anyone still answering for a VIP before a takeover, and watch links.
 */
export type { AddressLifetime, HostAddress, VipPort } from './types.js';
export { FOREVER, FOREVER_LIFETIME } from './types.js';
export { createNetlinkVipPort, normalizeLifetime } from './netlink-port.js';
export type { NetlinkVipPortOptions, SyncNetlink } from './netlink-port.js';
export { DEAD_MAN_SCRIPT, deadManLine, spawnDeadMan, withDeadManSwitch } from './dead-man.js';
export type { DeadManOptions, DeadManSpawn } from './dead-man.js';
export { createAnnouncer, announcementFrames } from './announcer.js';
export type { Announcer, AnnounceResult, AnnouncerOptions, DetachedSpawn } from './announcer.js';
export { watchLinks } from './links.js';
export type { LinkEvent, WatchLinksOptions } from './links.js';
export { loadPacketAddon } from './addon.js';
export type { PacketAddon } from './addon.js';
export {
  buildArpProbe,
  buildDadSolicitation,
  buildGratuitousArp,
  buildUnsolicitedNa,
  internetChecksum,
  ipv6PseudoHeader,
  formatMac,
  parseArp,
  parseNeighborAdvert,
  solicitedNodeAddress,
} from './frames.js';
export type { ArpFields, GarpForm, NaFields } from './frames.js';
export { createWireProber, MAX_FRAMES_PER_DRAIN } from './prober.js';
export type { ProbeSession, WireAnswer, WireProber, WireProberOptions } from './prober.js';
export { netlinkErrno, toCoordError } from './errors.js';
export * from './addresses.js';
export { hostOwnAddress } from './own-address.js';
export { cleanFileMappings, releaseFilePages, releaseStartupPagesLater } from './memory.js';
export type { CleanMapping, ReleaseDeps, ReleaseResult } from './memory.js';
