import {
  CoordError,
  every,
  formatCidr,
  type Clock,
  type Repeating,
  type TimerHandle,
  type GroupSettings,
  type Logger,
  type NodeConfig,
} from '@coord/core';
import type { Announcer, VipPort } from '@coord/vip';
import { openVrrpTransport, vrrpSourceAddress } from './hybrid.js';
import type { Metrics } from './metrics.js';
import {
  createVrrpInstance,
  loadVrrpConfig,
  type VrrpCounters,
  type VrrpInstance,
  type VrrpTransition,
  type VrrpTransport,
} from '@coord/vrrp';

export interface VrrpNodeDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly vipPort: VipPort;
  readonly announcer: Announcer;
  readonly onTransition?: (group: string, t: VrrpTransition) => void;
  readonly metrics?: Metrics;
}

export interface VrrpGroupStatus {
  readonly name: string;
  readonly vrid: number;
  readonly state: string;
  readonly priority: number;
  readonly vips: readonly string[];
  readonly counters: VrrpCounters;
}

interface Running {
  readonly settings: GroupSettings;
  readonly instance: VrrpInstance;
  readonly transport: VrrpTransport;
  priority: number;
  /** FAULT: the instance is stopped (priority 0 sent, VIPs released) until the checks pass again. */
  faulted: boolean;
  faultChange: Promise<void>;
  announceTimer: TimerHandle | null;
}

/**
 * A coord node in VRRP mode: one RFC 5798 instance per group, speaking keepalived's wire format, claiming VIPs
 * exactly as the etcd mode does (netlink add + gratuitous ARP burst and refresh).
 */
export class VrrpNode {
  private readonly running: Running[] = [];
  private readonly log: Logger;
  private metricsTimer: Repeating | null = null;
  private readonly pending = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly config: NodeConfig,
    private readonly deps: VrrpNodeDeps,
  ) {
    this.log = deps.logger.child({ node: config.node, mode: 'vrrp' });
  }

  async start(): Promise<void> {
    // Everything that can be refused is checked before anything on the host changes.
    const checked: { g: GroupSettings; primary: string }[] = [];
    for (const g of this.config.groups) {
      const primary = await this.primaryAddress(g);
      this.vrrpConfig(g, primary, g.priority);
      checked.push({ g, primary });
    }
    for (const g of this.config.groups) {
      for (const vip of g.vips) {
        if ((await this.deps.vipPort.remove(g.interface, vip)) === 'removed') {
          this.log.warn('stale vip removed at start', { vip: formatCidr(vip), iface: g.interface });
        }
      }
    }
    for (const { g, primary } of checked) this.running.push(this.startGroup(g, primary));
    if (this.deps.metrics !== undefined)
      this.metricsTimer = every(this.deps.clock, 1000, () => this.updateMetrics());
  }

  async stop(): Promise<void> {
    // After this, nothing (a recovering health check) may start an instance again.
    this.stopped = true;
    this.metricsTimer?.stop();
    for (const r of this.running) {
      await r.faultChange;
      if (r.announceTimer !== null) this.deps.clock.clearTimeout(r.announceTimer);
      r.announceTimer = null;
      await r.instance.stop();
      r.transport.close();
    }
    this.log.info('node stopped');
  }

  /**
   * Health tracking's verdict for a group: a new priority goes into the adverts; 0 (FAULT) stops the instance —
   * priority 0 on the wire, VIPs released — until the checks pass again, like keepalived's FAULT state.
   */
  setEffectivePriority(group: string, priority: number): void {
    if (this.stopped) return;
    const r = this.running.find((x) => x.settings.name === group);
    if (r === undefined) {
      // Before start: the instance will start with this verdict (0 = not at all until the checks pass).
      this.pending.set(group, priority);
      return;
    }
    this.deps.metrics?.effectivePriority.set({ group }, priority);
    if (priority < 1) {
      if (r.faulted) return;
      r.faulted = true;
      r.faultChange = r.faultChange.then(() => r.instance.stop());
      return;
    }
    r.priority = priority;
    r.instance.setPriority(priority);
    if (r.faulted) {
      r.faulted = false;
      r.faultChange = r.faultChange.then(() => {
        if (!this.stopped) r.instance.start();
      });
    }
  }

  /** VRRP settings are part of the wire contract with the peers: any change needs a restart. */
  applyConfig(next: NodeConfig): { applied: string[]; restartRequired: string[] } {
    const same = JSON.stringify(next) === JSON.stringify(this.config);
    return { applied: [], restartRequired: same ? [] : ['VRRP settings (restart coord to apply)'] };
  }

  status(): VrrpGroupStatus[] {
    this.updateMetrics();
    return this.running.map((r) => ({
      name: r.settings.name,
      vrid: r.settings.vrrp?.vrid ?? 0,
      state: r.instance.state(),
      priority: r.priority,
      vips: r.settings.vips.map(formatCidr),
      counters: r.instance.counters(),
    }));
  }

  private updateMetrics(): void {
    const m = this.deps.metrics;
    if (m === undefined) return;
    for (const r of this.running) {
      m.setRole(r.settings.name, r.instance.state());
      for (const [reason, n] of Object.entries(r.instance.counters().dropped)) {
        m.vrrpDropped.set({ group: r.settings.name, reason }, n ?? 0);
      }
    }
  }

  /** IPv4 VIPs: the interface's own IPv4 address. IPv6 VIPs: its link-local address (RFC 5798 §5.1.2.1). */
  private async primaryAddress(g: GroupSettings): Promise<string> {
    const source = await vrrpSourceAddress(this.deps.vipPort, g);
    const wanted = g.vrrp?.unicastSrc;
    if (wanted !== undefined && wanted !== source)
      throw new CoordError(
        'ERR_COORD_CONFIG',
        `groups.${g.name}: unicastSrc ${wanted} is not the address coord sends VRRP adverts from on ${g.interface} (${source})`,
        {
          hint: `make ${wanted} the first address of ${g.interface}, or drop unicastSrc (the peers must list ${source} as their unicast peer)`,
        },
      );
    return source;
  }

  /** The instance config of a group (RFC rules, interface-dependent ones included); throws ERR_COORD_CONFIG. */
  private vrrpConfig(g: GroupSettings, primary: string, priority: number) {
    const v = g.vrrp;
    if (v === undefined)
      throw new CoordError('ERR_COORD_CONFIG', `group ${g.name} has no VRRP settings`, {
        hint: 'pass --vrid',
      });
    return loadVrrpConfig({
      vrid: v.vrid,
      priority,
      advertInt: v.advertIntSec,
      version: v.version,
      addresses: g.vips.map((x) => x.address),
      primaryAddress: primary,
      unicastPeers: v.unicastPeers,
      ...(v.authPass === undefined ? {} : { authPass: v.authPass }),
      preempt: g.preempt,
    });
  }

  private startGroup(g: GroupSettings, primary: string): Running {
    const verdict = this.pending.get(g.name);
    const config = this.vrrpConfig(g, primary, verdict !== undefined && verdict >= 1 ? verdict : g.priority);
    const v = { vrid: config.vrid };
    const log = this.log.child({ group: g.name, vrid: v.vrid });
    const transport = openVrrpTransport(g, primary, config.unicastPeers, log);
    const running: Running = {
      settings: g,
      transport,
      priority: config.priority,
      faulted: false,
      faultChange: Promise.resolve(),
      announceTimer: null,
      instance: createVrrpInstance({
        config,
        transport,
        clock: this.deps.clock,
        logger: log,
        vips: {
          claim: async () => {
            for (const vip of g.vips) await this.deps.vipPort.add(g.interface, vip);
            log.info('vip claimed', { vips: g.vips.map(formatCidr), iface: g.interface });
            this.announce(running, log);
          },
          release: async () => {
            if (running.announceTimer !== null) this.deps.clock.clearTimeout(running.announceTimer);
            running.announceTimer = null;
            for (const vip of g.vips) await this.deps.vipPort.remove(g.interface, vip);
            log.info('vip released', { vips: g.vips.map(formatCidr), iface: g.interface });
          },
        },
        onTransition: (t) => {
          this.deps.metrics?.transitions.inc({ group: g.name, to: t.to, reason: t.reason });
          this.updateMetrics();
          this.deps.onTransition?.(g.name, t);
          this.syncGroupFollows(g, t);
        },
        ...(g.syncGroup === undefined
          ? {}
          : {
              mayBecomeMaster: () => this.syncMembers(g).every((r) => this.readyForMaster(r)),
              onWantsMaster: () => this.syncGoMaster(g),
            }),
      }),
    };
    if (verdict !== undefined && verdict < 1) {
      running.faulted = true;
      log.warn('vrrp instance held back: a tracked check is failing (FAULT)', {});
    } else {
      running.instance.start();
    }
    log.info('vrrp instance started', {
      primary,
      version: config.version,
      advertIntervalCs: config.advertIntervalCs,
      priority: config.priority,
    });
    return running;
  }

  /**
   * keepalived's vrrp_sync_group: a member that becomes Master takes the others along; one that leaves Master
   * (Backup, FAULT, shutdown) takes them out (docs/design.md, "Sync groups"). Transitions a sync caused do not
   * cascade.
   */
  private syncGroupFollows(g: GroupSettings, t: VrrpTransition): void {
    if (g.syncGroup === undefined || t.reason === 'sync-group') return;
    const to = t.to === 'master' ? 'master' : 'backup';
    for (const r of this.syncMembers(g))
      if (!r.faulted && r.instance.state() !== to) {
        this.log.info('sync group: following', { group: r.settings.name, with: g.name, to });
        r.instance.sync(to);
      }
  }

  /** The other members of `g`'s sync group on this node. */
  private syncMembers(g: GroupSettings): Running[] {
    return this.running.filter((r) => r.settings !== g && r.settings.syncGroup === g.syncGroup);
  }

  /** A member that lets its sync group go Master: Master already, or a Backup that wants it (not FAULT). */
  private readyForMaster(r: Running): boolean {
    return !r.faulted && (r.instance.state() === 'master' || r.instance.wantsMaster());
  }

  /** A member wants Master: once every member does (or is Master), they all go. */
  private syncGoMaster(g: GroupSettings): void {
    const others = this.syncMembers(g);
    if (!others.every((r) => this.readyForMaster(r))) return;
    this.log.info('sync group: every member wants Master', { syncGroup: g.syncGroup });
    for (const r of this.running)
      if (r.settings.syncGroup === g.syncGroup && r.instance.state() === 'backup') r.instance.sync('master');
  }

  /** GARP burst then periodic refresh while Master, as in the etcd mode. */
  private announce(r: Running, log: Logger): void {
    if (r.announceTimer !== null) this.deps.clock.clearTimeout(r.announceTimer);
    const { count, intervalMs, refreshMs } = r.settings.announce;
    let sent = 0;
    const tick = () => {
      r.announceTimer = null;
      if (r.instance.state() !== 'master') return;
      for (const vip of r.settings.vips) {
        const res = this.deps.announcer.announce(r.settings.interface, vip);
        if (!res.ok) log.warn('announce failed', { vip: formatCidr(vip), reason: res.reason });
      }
      sent++;
      const next = sent < count ? intervalMs : refreshMs;
      if (next > 0) r.announceTimer = this.deps.clock.setTimeout(tick, next);
    };
    tick();
  }
}
