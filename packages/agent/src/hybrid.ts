/**
 * Hybrid mode (docs/design.md, "Hybrid mode"): an etcd-mode group that keepalived nodes still in the cluster can
 * see. Every coord node that may hold the group sends VRRP adverts for it, so the keepalived nodes stay BACKUP
 * while any coord node lives — also while coord fails over, which takes longer than keepalived's
 * Master_Down_Interval at short advert intervals. Adverts from a router that is not a coord node mean a
 * keepalived node is Master: coord does not hold the group then, and waits until it steps down.
 */
import {
  CoordError,
  errorMessage,
  ipToBytes,
  type Clock,
  type GroupSettings,
  type Logger,
  type TimerHandle,
} from '@coord/core';
import type { VipPort } from '@coord/vip';
import {
  advertFor,
  advertIntervalCs,
  createRawVrrp6Transport,
  createRawVrrpTransport,
  decode,
  encode,
  isLinkLocal6,
  loadVrrpConfig,
  type DropReason,
  type VrrpConfig,
  type VrrpPacket,
  type VrrpTransport,
} from '@coord/vrrp';

/** A foreign Master counts as gone once it has been silent for this many of its own advert intervals. */
export const FOREIGN_SILENCE_INTERVALS = 1.5;
/**
 * Or this long after we sent an advert that outranks it (RFC 5798 §6.4.3: a Master hearing a higher priority goes
 * Backup at once and releases its VIPs). If it did not hear it, its next advert makes it present again; the
 * takeover's wire probe stands between either way.
 */
export const OUTRANKED_MS = 50;

/**
 * Whether a router other than the coord nodes is VRRP Master of the group now (pure; the clock is data). Listening
 * counts as present: a node that has not heard one interval yet cannot know.
 */
export class ForeignMasterWatch {
  private until: number;
  private from: string | undefined;
  private lastPriority = 0;
  private lastAt = -Infinity;

  constructor(startedAt: number, ownIntervalMs: number) {
    this.until = startedAt + ownIntervalMs * FOREIGN_SILENCE_INTERVALS;
  }

  /** An advert from a router that is not a coord node. Priority 0: it resigned (RFC 5798 §6.4.3), gone at once. */
  observe(packet: VrrpPacket, from: string, now: number): void {
    if (packet.priority === 0) {
      if (this.from === from || this.from === undefined) this.until = now;
      return;
    }
    this.from = from;
    this.lastPriority = packet.priority;
    this.lastAt = now;
    this.until = Math.max(this.until, now + advertIntervalCs(packet) * 10 * FOREIGN_SILENCE_INTERVALS);
  }

  /** We sent an advert with `priority` from `address`: a foreign Master it outranks steps down on hearing it. */
  sent(priority: number, address: string, now: number): void {
    if (this.from === undefined || now <= this.lastAt || !this.present(now)) return;
    const outranks =
      priority > this.lastPriority ||
      (priority === this.lastPriority && Buffer.compare(ipToBytes(address), ipToBytes(this.from)) > 0);
    if (outranks) this.until = Math.min(this.until, now + OUTRANKED_MS);
  }

  present(now: number): boolean {
    return now < this.until;
  }

  /** When present() turns false if nothing more is heard (undefined when it already is). */
  endsAt(now: number): number | undefined {
    return this.present(now) ? this.until : undefined;
  }

  /** The foreign router last heard, for logs. */
  get source(): string | undefined {
    return this.from;
  }
}

/** The address VRRP adverts on `g`'s interface come from: its own IPv4 address, or its IPv6 link-local one. */
export async function vrrpSourceAddress(vipPort: VipPort, g: GroupSettings): Promise<string> {
  const v6 = g.vips[0]?.family === 6;
  const vipSet = new Set(g.vips.map((v) => v.address));
  const addrs = await vipPort.list(g.interface);
  const primary = addrs.find((a) =>
    v6 ? a.family === 6 && isLinkLocal6(a.address) : a.family === 4 && !vipSet.has(a.address),
  );
  if (primary === undefined)
    throw new CoordError(
      'ERR_COORD_CONFIG',
      v6
        ? `interface ${g.interface} has no IPv6 link-local address for VRRP adverts`
        : `interface ${g.interface} has no IPv4 address of its own for VRRP adverts`,
      {
        hint: v6
          ? `enable IPv6 on ${g.interface} (VRRPv3 IPv6 adverts are sourced from its fe80:: address)`
          : `give ${g.interface} a primary address (VRRP adverts are sourced from it)`,
      },
    );
  return primary.address;
}

/** The raw VRRP socket of a group on its interface (IPv6: from the link-local address). */
export function openVrrpTransport(
  g: GroupSettings,
  source: string,
  unicastPeers: readonly string[],
  logger: Logger,
): VrrpTransport {
  return g.vips[0]?.family === 6
    ? createRawVrrp6Transport({ interfaceName: g.interface, linkLocal: source, unicastPeers, logger })
    : createRawVrrpTransport({ interfaceAddress: source, unicastPeers, interfaceName: g.interface, logger });
}

export interface HybridOptions {
  readonly group: GroupSettings;
  readonly advertise: NonNullable<GroupSettings['advertise']>;
  readonly source: string;
  readonly transport: VrrpTransport;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Whether this node sends adverts now: it may hold the group (a candidate, not FAULT or in maintenance). */
  readonly active: () => boolean;
  /** Whether an advert source is a coord node of this cluster (its member record names it). */
  readonly isCoord: (address: string) => boolean;
  /** A foreign Master appeared or went (and, at start, listening ended). */
  readonly onForeignChange: (present: boolean) => void;
}

export interface HybridCounters {
  advertsSent: number;
  sendErrors: number;
  foreignAdverts: number;
  dropped: Partial<Record<DropReason, number>>;
}

export interface Hybrid {
  /** A router other than the coord nodes is VRRP Master of the group (or this node is still listening). */
  foreignMaster(): boolean;
  counters(): HybridCounters;
  /** Stop advertising; `resign`: send priority 0 first, so the keepalived nodes take over after Skew_Time. */
  stop(resign: boolean): Promise<void>;
}

export function startHybrid(o: HybridOptions): Hybrid {
  const { advertise: a, clock, transport } = o;
  const log = o.logger.child({ group: o.group.name, vrid: a.vrid });
  const config: VrrpConfig = loadVrrpConfig({
    vrid: a.vrid,
    priority: a.priority,
    advertInt: a.advertIntSec,
    version: a.version,
    addresses: o.group.vips.map((v) => v.address),
    primaryAddress: o.source,
    unicastPeers: a.unicastPeers,
    ...(a.authPass === undefined ? {} : { authPass: a.authPass }),
  });
  const intervalMs = config.advertIntervalCs * 10;
  const watch = new ForeignMasterWatch(clock.now(), intervalMs);
  const counters: HybridCounters = { advertsSent: 0, sendErrors: 0, foreignAdverts: 0, dropped: {} };
  let present = true;
  let stopped = false;
  let sendTimer: TimerHandle | null = null;
  let checkTimer: TimerHandle | null = null;
  let sending: Promise<void> = Promise.resolve();

  const send = (priority: number): Promise<void> => {
    sending = sending.then(async () => {
      const packet = advertFor(config, priority);
      for (const dst of transport.destinations)
        try {
          await transport.send(
            dst,
            encode(packet, { family: config.family, srcAddr: config.primaryAddress, dstAddr: dst }),
          );
          counters.advertsSent++;
        } catch (e) {
          counters.sendErrors++;
          log.warn('vrrp advert not sent', { dst, error: errorMessage(e) });
        }
    });
    return sending;
  };

  /** Tell the node when the foreign Master appears or goes, and look again when it would time out. */
  const check = (): void => {
    if (stopped) return;
    const now = clock.now();
    const next = watch.present(now);
    if (next !== present) {
      present = next;
      if (next)
        log.warn(
          'a VRRP router that is not a coord node is Master: not holding the group until it steps down',
          {
            from: watch.source,
          },
        );
      else
        log.info(
          watch.source === undefined
            ? 'no VRRP Master heard: standing for the group'
            : 'the VRRP Master stepped down',
          {},
        );
      o.onForeignChange(next);
    }
    if (checkTimer !== null) clock.clearTimeout(checkTimer);
    const ends = watch.endsAt(now);
    checkTimer = ends === undefined ? null : clock.setTimeout(check, Math.max(1, Math.ceil(ends - now)));
  };

  const tick = (): void => {
    sendTimer = null;
    if (stopped) return;
    if (o.active()) {
      void send(config.priority);
      watch.sent(config.priority, config.primaryAddress, clock.now());
      check();
    }
    sendTimer = clock.setTimeout(tick, intervalMs);
  };

  transport.onReceive((r) => {
    if (stopped) return;
    if (!r.ok) {
      counters.dropped[r.reason] = (counters.dropped[r.reason] ?? 0) + 1;
      return;
    }
    const d = r.datagram;
    if (d.srcAddr === config.primaryAddress || o.isCoord(d.srcAddr)) return;
    const decoded = decode(d.payload, {
      version: config.version,
      family: config.family,
      srcAddr: d.srcAddr,
      dstAddr: d.dstAddr,
      ttl: d.ttl,
      auth: config.auth,
    });
    if (!decoded.ok) {
      counters.dropped[decoded.reason] = (counters.dropped[decoded.reason] ?? 0) + 1;
      return;
    }
    if (decoded.packet.vrid !== config.vrid) return;
    counters.foreignAdverts++;
    watch.observe(decoded.packet, d.srcAddr, clock.now());
    check();
  });
  log.info('advertising the group over VRRP (hybrid mode)', {
    priority: config.priority,
    version: config.version,
  });
  tick();
  check();

  return {
    foreignMaster: () => present,
    counters: () => ({ ...counters, dropped: { ...counters.dropped } }),
    async stop(resign) {
      if (stopped) return;
      stopped = true;
      for (const t of [sendTimer, checkTimer]) if (t !== null) clock.clearTimeout(t);
      if (resign) await send(0);
      else await sending;
      transport.close();
    },
  };
}
