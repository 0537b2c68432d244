import { errorMessage, formatCidr, type Clock, type Logger, type NodeConfig } from '@coord/core';
import {
  defaultTiming,
  keepaliveIntervalMs,
  takeoverGuardMs,
  type Candidate,
  type LeaderRecord,
} from '@coord/election';
import {
  clusterKeys,
  createEtcdClient,
  ElectionStore,
  EtcdSession,
  parseJson,
  parseLeaderValue,
  parseMemberRecord,
  PrefixView,
  type ClusterKeys,
  type EtcdClient,
  type Entry,
  type MemberRecord,
} from '@coord/etcd';
import type { Announcer, VipPort } from '@coord/vip';
import { GroupRunner, type GroupFact } from './group.js';
import type { HaproxyLoop, HaproxyStatus } from './haproxy-loop.js';
import type { Metrics } from './metrics.js';

export interface NodeDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly vipPort: VipPort;
  readonly announcer: Announcer;
  readonly version: string;
  /** Built from the config's endpoints unless given (tests). */
  readonly client?: EtcdClient;
  readonly onFact?: (fact: GroupFact) => void;
  readonly metrics?: Metrics;
  /** Keeps HAProxy in line with the services in etcd (when this node runs the HAProxy loop). */
  readonly haproxy?: HaproxyLoop;
  /** How often the interface is compared with the desired state. */
  readonly reconcileMs?: number;
}

/** What `coord status` shows about one node; also written to etcd under `status/<node>`. */
export interface NodeStatus {
  readonly node: string;
  readonly session: { leaseId: string | null; ttlMs: number };
  readonly groups: readonly {
    name: string;
    role: string;
    epoch: number | null;
    leader: { node: string; epoch: number } | null;
    vips: readonly string[];
    vipsPresent: readonly string[];
  }[];
  readonly etcd: { connected: boolean; revision: number; staleMs: number };
  readonly haproxy: HaproxyStatus | undefined;
  readonly at: number;
}

/**
 * One coord node in etcd mode: one session (lease) shared by all its groups, one view of the cluster prefix, one
 * runner per VIP group, and a reconcile loop over the interface.
 */
export class CoordNode {
  private readonly client: EtcdClient;
  private readonly keys: ClusterKeys;
  private readonly store: ElectionStore;
  private readonly session: EtcdSession;
  private readonly view: PrefixView;
  private readonly groups: GroupRunner[];
  private readonly log: Logger;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private haproxyTimer: NodeJS.Timeout | null = null;
  private present = new Map<string, Set<string>>();
  private stopped = false;
  private config: NodeConfig;
  /** Priority each group publishes after health checks (0 = fault), by group name. */
  private readonly effective = new Map<string, number>();

  constructor(
    config: NodeConfig,
    private readonly deps: NodeDeps,
  ) {
    this.config = config;
    const cluster = config.cluster ?? 'default';
    this.log = deps.logger.child({ node: config.node, cluster });
    this.client = deps.client ?? createEtcdClient({ endpoints: config.etcd });
    this.keys = clusterKeys(cluster);
    this.store = new ElectionStore(this.client, this.keys);
    this.groups = config.groups.map(
      (g) =>
        new GroupRunner({
          settings: g,
          node: config.node,
          vipPort: deps.vipPort,
          announcer: deps.announcer,
          clock: deps.clock,
          logger: this.log,
          vacancyFallbackMs: config.ttlSec * 1000 + 1000,
          onFact: (fact) => this.onFact(fact),
          etcd: {
            campaign: (group, leaseId) => this.campaign(group, leaseId),
            resign: (group, epoch, clean) => this.store.resign(group, epoch, config.node, clean),
            keepaliveNow: () => this.session.keepaliveNow(),
            restartSession: (reason) => void this.restartSession(reason),
          },
        }),
    );
    this.session = new EtcdSession({
      client: this.client,
      ttlSec: config.ttlSec,
      clock: deps.clock,
      logger: this.log,
      intervalMs: (ttlMs) => keepaliveIntervalMs(defaultTiming(ttlMs)),
      events: {
        up: (e) => {
          for (const g of this.groups) {
            g.dispatch({
              type: 'session-up',
              now: e.now,
              leaseId: e.leaseId,
              timing: defaultTiming(e.ttlMs),
              sentAt: e.sentAt,
            });
          }
          this.registerMember(e.leaseId);
        },
        acked: (e) => {
          for (const g of this.groups)
            g.dispatch({ type: 'session-acked', now: e.now, leaseId: e.leaseId, sentAt: e.sentAt });
        },
        lost: (e) => {
          for (const g of this.groups) g.dispatch({ type: 'session-lost', now: e.now, reason: e.reason });
        },
      },
    });
    this.view = new PrefixView({
      client: this.client,
      prefix: this.keys.prefix,
      clock: deps.clock,
      logger: this.log,
      onChange: (change, view) => {
        const changed = [...change.puts, ...change.deletes];
        // Status writes (every node, every 2 s) say nothing about the election: re-evaluate only on members/groups.
        const election = (k: string) => k.startsWith(this.keys.members) || k.startsWith(this.keys.groups);
        if (change.resync || changed.some((e) => election(e.key)))
          this.onView(change.revision, change.deletes, view);
        deps.haproxy?.onView(change.revision, changed, view, change.resync);
      },
    });
  }

  /** Clean start: remove VIPs an earlier run left behind, read the cluster, then join the election. */
  async start(): Promise<void> {
    await this.removeStaleVips();
    await this.view.start();
    this.session.start();
    const reconcileMs = this.deps.reconcileMs ?? 500;
    this.reconcileTimer = setInterval(() => void this.reconcile(), reconcileMs);
    this.statusTimer = setInterval(() => void this.publishStatus(), 2000);
    if (this.deps.haproxy !== undefined) {
      const loop = this.deps.haproxy;
      this.haproxyTimer = setInterval(() => loop.recheck(), 10_000);
    }
    this.log.info('node started', {
      groups: this.config.groups.map((g) => ({
        name: g.name,
        iface: g.interface,
        vips: g.vips.map(formatCidr),
        priority: g.priority,
      })),
      ttlSec: this.config.ttlSec,
    });
  }

  /** Graceful stop: every group removes its VIP, then releases leadership; then the lease is revoked. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reconcileTimer !== null) clearInterval(this.reconcileTimer);
    if (this.statusTimer !== null) clearInterval(this.statusTimer);
    if (this.haproxyTimer !== null) clearInterval(this.haproxyTimer);
    for (const g of this.groups) g.dispatch({ type: 'stop', now: this.deps.clock.now() });
    const settled = await Promise.race([
      Promise.all(this.groups.map((g) => g.settle())).then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
    ]);
    for (const g of this.groups) g.stopTimers();
    // Revoking would let a successor claim at once; if our VIP removal has not finished, let the lease expire
    // instead, so the successor's wait covers the VIP's kernel lifetime.
    if (!settled)
      this.log.error('vip removal did not finish in 2 s; letting the lease expire instead of revoking it');
    await this.session.close(settled);
    await this.view.close();
    this.client.close();
    this.log.info('node stopped');
  }

  status(): NodeStatus {
    const health = this.view.health;
    return {
      node: this.config.node,
      session: { leaseId: this.session.currentLeaseId, ttlMs: this.session.grantedTtlMs },
      groups: this.groups.map((g) => {
        const s = g.current;
        const settings = this.config.groups.find((x) => x.name === g.name);
        const present = this.present.get(settings?.interface ?? '') ?? new Set<string>();
        return {
          name: g.name,
          role: s.role,
          epoch: s.epoch,
          leader: s.leader === null ? null : { node: s.leader.node, epoch: s.leader.epoch },
          vips: settings?.vips.map(formatCidr) ?? [],
          vipsPresent: (settings?.vips ?? []).filter((v) => present.has(v.address)).map(formatCidr),
        };
      }),
      etcd: {
        connected: health.connected,
        revision: health.revision,
        staleMs: Math.round(this.deps.clock.now() - health.lastHeardAt),
      },
      haproxy: this.deps.haproxy?.status,
      at: this.deps.clock.wallNow(),
    };
  }

  /** Publish this node's status now (e.g. right after an HAProxy apply), not at the next 2 s tick. */
  publishNow(): void {
    void this.publishStatus();
  }

  /**
   * A group fenced itself: every group drops leadership first (the lease they all share is going), their VIP
   * removals finish, and only then is the lease revoked and replaced — a revoke lets others claim at once.
   */
  private async restartSession(reason: string): Promise<void> {
    const now = this.deps.clock.now();
    for (const g of this.groups) g.dispatch({ type: 'session-lost', now, reason });
    await Promise.race([
      Promise.all(this.groups.map((g) => g.laneIdle())),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
    if (!this.stopped) this.session.restart(reason);
  }

  /**
   * Apply a re-read config without a restart: priorities and preemption change live (re-published, so the
   * election re-evaluates); anything that changes what is held (groups, VIPs, interfaces, etcd, TTL) needs one.
   */
  applyConfig(next: NodeConfig): { applied: string[]; restartRequired: string[] } {
    const applied: string[] = [];
    const restartRequired: string[] = [];
    const cur = this.config;
    if (next.node !== cur.node) restartRequired.push('node');
    if (next.cluster !== cur.cluster) restartRequired.push('cluster');
    if (next.ttlSec !== cur.ttlSec) restartRequired.push('ttl');
    if (next.mode !== cur.mode) restartRequired.push('mode');
    if (next.etcd.join() !== cur.etcd.join()) restartRequired.push('etcd');
    const names = (c: NodeConfig) =>
      c.groups.map((g) => `${g.name}:${g.interface}:${g.vips.map(formatCidr).join('+')}`).join(',');
    if (names(next) !== names(cur)) restartRequired.push('groups (names, interfaces or VIPs)');
    if (restartRequired.length > 0) return { applied, restartRequired };
    for (const g of next.groups) {
      const before = cur.groups.find((x) => x.name === g.name);
      if (before === undefined) continue;
      if (
        before.priority !== g.priority ||
        before.preempt !== g.preempt ||
        before.preemptDelayMs !== g.preemptDelayMs
      ) {
        applied.push(
          `groups.${g.name}: priority ${g.priority}, preempt ${g.preempt}, preemptDelay ${g.preemptDelayMs} ms`,
        );
      }
    }
    this.config = next;
    for (const g of next.groups) this.refreshSelf(g.name);
    const lease = this.session.currentLeaseId;
    if (applied.length > 0 && lease !== null) this.registerMember(lease);
    this.log.info('config reloaded', { applied, restartRequired });
    return { applied, restartRequired };
  }

  /** A health verdict for one group: the priority to publish (0 = fault: leave the election). */
  setEffectivePriority(group: string, priority: number): void {
    if (this.effective.get(group) === priority) return;
    this.effective.set(group, priority);
    this.deps.metrics?.effectivePriority.set({ group }, priority);
    this.refreshSelf(group);
    const lease = this.session.currentLeaseId;
    if (lease !== null) this.registerMember(lease);
  }

  private refreshSelf(group: string): void {
    const g = this.config.groups.find((x) => x.name === group);
    const runner = this.groups.find((x) => x.name === group);
    if (g === undefined || runner === undefined) return;
    runner.updateSelf({
      node: this.config.node,
      priority: this.effective.get(group) ?? g.priority,
      preempt: g.preempt,
      preemptDelayMs: g.preemptDelayMs,
    });
  }

  private onFact(fact: GroupFact): void {
    const m = this.deps.metrics;
    if (m !== undefined) {
      switch (fact.type) {
        case 'transitioned':
          m.setRole(fact.group, fact.to);
          m.transitions.inc({ group: fact.group, to: fact.to });
          m.epoch.set({ group: fact.group }, fact.to === 'leader' ? (fact.epoch ?? 0) : 0);
          break;
        case 'vipClaimed':
          if (fact.sinceVacancyMs !== null)
            m.lastFailover.set({ group: fact.group }, fact.sinceVacancyMs / 1000);
          break;
        case 'announced':
          m.announcements.inc({ group: fact.group }, fact.frames);
          break;
        case 'vipReleased':
          break;
      }
    }
    this.deps.onFact?.(fact);
  }

  private async campaign(
    group: string,
    leaseId: string,
  ): Promise<{ won: true; epoch: number } | { won: false }> {
    // The machine campaigns under the lease it knows; a lease replaced meanwhile must not win anything.
    if (leaseId !== this.session.currentLeaseId) return { won: false };
    const guardMs = takeoverGuardMs(defaultTiming(this.session.grantedTtlMs));
    return this.store.campaign(group, leaseId, { node: this.config.node, leaseId, guardMs });
  }

  private registerMember(leaseId: string): void {
    const record: MemberRecord = {
      node: this.config.node,
      interface: this.config.groups[0]?.interface ?? '',
      version: this.deps.version,
      startedAt: this.deps.clock.wallNow(),
      groups: Object.fromEntries(
        this.config.groups.map((g) => [
          g.name,
          {
            // Published priority: after health checks (0 = fault), so every node elects on the same facts.
            priority: this.effective.get(g.name) ?? g.priority,
            preempt: g.preempt,
            preemptDelayMs: g.preemptDelayMs,
            vips: g.vips.map(formatCidr),
          },
        ]),
      ),
    };
    this.store.putMember(leaseId, record).catch((e: unknown) => {
      this.log.warn('member registration failed', { error: errorMessage(e) });
      setTimeout(() => {
        if (!this.stopped && this.session.currentLeaseId === leaseId) this.registerMember(leaseId);
      }, 200);
    });
  }

  private onView(revision: number, deletes: readonly Entry[], view: ReadonlyMap<string, Entry>): void {
    const now = this.deps.clock.now();
    const members = readMembers(view, this.keys, this.log);
    for (const g of this.groups) {
      const candidates: Candidate[] = [];
      for (const m of members) {
        const mg = m.groups[g.name];
        if (mg !== undefined)
          candidates.push({
            node: m.node,
            priority: mg.priority,
            preempt: mg.preempt,
            preemptDelayMs: mg.preemptDelayMs,
          });
      }
      g.dispatch({ type: 'members-observed', now, members: candidates });
      const leader = readLeader(view.get(this.keys.leader(g.name)));
      let clean = false;
      if (leader === null) {
        // The view reports every deletion with the entry it removed (watch and resync alike): its epoch.
        const epoch = deletes.find((d) => d.key === this.keys.leader(g.name))?.createRevision;
        const released = view.get(this.keys.released(g.name));
        const rel = released === undefined ? undefined : parseJson(released.value);
        // Anyone can write anything to etcd: only a well-formed marker for exactly this epoch counts.
        const marker =
          rel?.ok === true && typeof rel.value === 'object' && rel.value !== null
            ? (rel.value as { epoch?: unknown })
            : {};
        clean = epoch !== undefined && marker.epoch === epoch;
      }
      g.dispatch({ type: 'leader-observed', now, leader, clean, revision });
    }
  }

  private async removeStaleVips(): Promise<void> {
    for (const g of this.config.groups) {
      for (const vip of g.vips) {
        const r = await this.deps.vipPort.remove(g.interface, vip);
        if (r === 'removed')
          this.log.warn('stale vip removed at start', { vip: formatCidr(vip), iface: g.interface });
      }
    }
  }

  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    const ifaces = new Set(this.config.groups.map((g) => g.interface));
    const present = new Map<string, Set<string>>();
    for (const iface of ifaces) {
      try {
        present.set(iface, new Set((await this.deps.vipPort.list(iface)).map((a) => a.address)));
      } catch (e) {
        this.log.warn('interface listing failed', { iface, error: errorMessage(e) });
        return;
      }
    }
    this.present = present;
    if (this.stopped) return;
    for (const g of this.groups) {
      const settings = this.config.groups.find((x) => x.name === g.name);
      if (settings !== undefined) g.reconcile(present.get(settings.interface) ?? new Set());
    }
  }

  private async publishStatus(): Promise<void> {
    const health = this.view.health;
    this.deps.metrics?.etcdConnected.set(health.connected ? 1 : 0);
    this.deps.metrics?.etcdStaleness.set(Math.max(0, this.deps.clock.now() - health.lastHeardAt) / 1000);
    const leaseId = this.session.currentLeaseId;
    if (leaseId === null || this.stopped) return;
    try {
      await this.store.putStatus(leaseId, this.config.node, this.status());
    } catch (e) {
      this.log.debug('status publish failed', { error: errorMessage(e) });
    }
  }
}

function readMembers(view: ReadonlyMap<string, Entry>, keys: ClusterKeys, log: Logger): MemberRecord[] {
  const out: MemberRecord[] = [];
  for (const [key, entry] of view) {
    if (!key.startsWith(keys.members)) continue;
    const m = parseMemberRecord(entry.value);
    if (m === undefined) {
      log.warn('ignoring malformed member record', { key });
      continue;
    }
    out.push(m);
  }
  return out;
}

function readLeader(entry: Entry | undefined): LeaderRecord | null {
  if (entry === undefined) return null;
  const v = parseLeaderValue(entry.value);
  return { node: v.node ?? '?', epoch: entry.createRevision, leaseId: entry.lease, guardMs: v.guardMs };
}
