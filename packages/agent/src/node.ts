import {
  CoordError,
  errorMessage,
  every,
  formatCidr,
  within,
  type Clock,
  type GroupSettings,
  type Logger,
  type NodeConfig,
  type Repeating,
} from '@coord/core';
import {
  defaultTiming,
  leaseDeadlineOf,
  kernelLifetimeSec,
  keepaliveIntervalMs,
  MAX_SLOW_ACKS,
  HOST_CHANGE_MIN_LEFT_MS,
  ackUsable,
  takeoverGuardMs,
  type Candidate,
  type GroupConfig,
  type LeaderRecord,
  type VacancyInfo,
} from '@coord/election';
import {
  clusterKeys,
  createEtcdBackend,
  loadConnection,
  decodeLeader,
  decodeMaintenance,
  decodeMove,
  MOVE_PRIORITY,
  decodeMember,
  ElectionStore,
  ensurePeerKey,
  EtcdSession,
  PrefixView,
  type ClusterKeys,
  type EtcdBackend,
  type EtcdClientBackend,
  type Entry,
  type HolderFacts,
  type MaintenanceRecord,
  type Successor,
  type MemberRecord,
  type StatusRecord,
} from '@coord/etcd';
import {
  newClusterKey,
  openPeerSocket,
  PeerChannel,
  type GroupBeat,
  type OpenPeerSocket,
  type PeerTarget,
  type UdpOptions,
} from '@coord/peer';
import { hostOwnAddress } from '@coord/vip';
import type { AddressEvent, Announcer, VipPort } from '@coord/vip';
import type { VrrpTransport } from '@coord/vrrp';
import { FastFailover, type FastFailoverGroup } from './fast-failover.js';
import {
  asksForPromises,
  etcdQuiet,
  holdVerdict,
  promiseStep,
  promiseWindowMs,
  type Bound,
} from './outage.js';
import { EventLog } from './events.js';
import { GroupRunner, type GroupFact, type ProbePort } from './group.js';
import { openVrrpTransport, startHybrid, vrrpSourceAddress, type Hybrid } from './hybrid.js';
import type { HaproxyLoop, HaproxyStatus } from './haproxy-loop.js';
import type { Metrics } from './metrics.js';

export interface NodeDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly vipPort: VipPort;
  readonly announcer: Announcer;
  /** Probes the VIP on the wire before a takeover after an unclean vacancy (absent: wait the full cap). */
  readonly prober?: ProbePort;
  readonly version: string;
  /** Built from the config's etcd settings unless given (tests pass an in-memory etcd). */
  readonly etcd?: EtcdBackend;
  /** How often the TLS files are checked for a rotation (default 10 s; SIGHUP checks at once). */
  readonly tlsCheckMs?: number;
  readonly onFact?: (fact: GroupFact) => void;
  readonly metrics?: Metrics;
  /** Keeps HAProxy in line with the services in etcd (when this node runs the HAProxy loop). */
  readonly haproxy?: HaproxyLoop;
  /** How long `coord events` keeps this node's history (default 7 days). */
  readonly eventRetentionMs?: number;
  /**
   * Address change notifications (RTNLGRP_IPV4/6_IFADDR): with them a VIP removed or added behind our back is
   * reconciled at once and the periodic comparison becomes a slow backstop (notifications can be lost).
   */
  readonly watchAddresses?: (onEvent: (e: AddressEvent) => void) => { close(): void };
  /** How often the interface is compared with the desired state (default 500 ms, 5 s with address events). */
  readonly reconcileMs?: number;
  /** The node's status is written when it changes, and at least this often (default 30 s). */
  readonly statusMs?: number;
  /** Opens the peer channel's UDP socket (fast failover); tests pass an in-memory network. */
  readonly openPeerSocket?: (opts: UdpOptions) => Promise<OpenPeerSocket>;
  /** The health checks failing now, each with why (published in the status record; `coord status` shows it). */
  readonly failingChecks?: () => readonly string[];
  /** Hybrid mode: the VRRP socket of a group that advertises (docs/design.md, "Hybrid mode"); default raw. */
  readonly vrrpTransport?: (g: GroupSettings, source: string, logger: Logger) => VrrpTransport;
}

/** How long after one "now using another etcd member" warning the next ones are logged at debug. */
const SWITCH_LOG_QUIET_MS = 10_000;

/** Why a node is not a candidate right now (empty: it is). */
export type CandidacyBlock = 'no-session' | 'view-disconnected' | 'view-behind-session' | 'slow-acks';

/** What `coord status` shows about one node; also written to etcd under `status/<node>`. */
export interface NodeStatus extends StatusRecord {
  readonly node: string;
  readonly session: { leaseId: string | null; ttlMs: number };
  /** Whether this node may be elected, and if not, why. */
  readonly candidacy: { candidate: boolean; blockedBy: readonly CandidacyBlock[] };
  /** `coord maintenance on` for this node: who, why, since when (wall ms); absent when off. */
  readonly maintenance?: MaintenanceRecord;
  readonly groups: {
    name: string;
    role: string;
    epoch: number | null;
    leader: { node: string; epoch: number } | null;
    vips: string[];
    vipsPresent: string[];
    /**
     * `--etcd-outage hold` only. Holder: keeping the VIP past its lease on the other members' promises (ms left)
     * or not; follower: the holder we promised not to campaign against while etcd is away.
     */
    outage?: { holdingMsLeft: number | null; promisedTo: string | null };
    /** Hybrid mode: the VRRP adverts this node sends, and whether a keepalived node is Master (coord waits). */
    vrrp?: { vrid: number; foreignMaster: boolean; advertsSent: number };
  }[];
  readonly etcd: {
    connected: boolean;
    revision: number;
    staleMs: number;
    /** The client certificate's expiry (ISO 8601) and days left, when TLS client auth is used. */
    clientCert?: { expiresAt: string; daysLeft: number; warning?: string };
  };
  readonly haproxy: HaproxyStatus | undefined;
  /** Peer channel only (fast failover, etcd outage hold): ms since each peer's newest heartbeat, and drops. */
  readonly peers?: {
    readonly address: string;
    readonly port: number;
    readonly heartbeatAgeMs: Readonly<Record<string, number>>;
    readonly dropped: Readonly<Record<string, number>>;
  };
  readonly at: number;
}

/** A client certificate closer than this to its expiry is warned about (logs, status, metric). */
export const CERT_WARN_DAYS = 7;

/**
 * One coord node in etcd mode: one session (lease) shared by all its groups, one view of the cluster prefix, one
 * runner per VIP group, and a reconcile loop over the interface. Every timer runs on the Clock port, so the whole
 * node runs under a fake clock against an in-memory etcd in tests.
 */
export class CoordNode {
  private readonly etcd: EtcdBackend;
  /** The production backend, when the etcd client can rotate TLS material (absent in tests). */
  private readonly tlsClient: EtcdClientBackend | undefined;
  private certWarnedAt = -Infinity;
  private readonly keys: ClusterKeys;
  private readonly store: ElectionStore;
  private readonly session: EtcdSession;
  private readonly view: PrefixView;
  private readonly groups: GroupRunner[];
  private readonly log: Logger;
  private timers: Repeating[] = [];
  private addressWatch: { close(): void } | undefined;
  private reconcilePending = false;
  /** What the last status write said (without its volatile fields), and when it went out. */
  private lastStatus: { digest: string; at: number } | undefined;
  private present = new Map<string, Set<string>>();
  private stopped = false;
  private config: NodeConfig;
  /** Priority each group publishes after health checks (0 = fault), by group name. */
  private readonly effective = new Map<string, number>();
  /** This node's part of the cluster's history (`coord events`). */
  private readonly events: EventLog;
  /** Groups moved to this node (`coord move`), with the move record's mod revision. */
  private readonly movedHere = new Map<string, number>();
  /** Acks in a row slower / faster than the ack window (candidacy). */
  private slowRun = 0;
  private promptRun = 0;
  private acksSlow = false;
  private candidate = false;
  /** `coord maintenance on` for this node (its key in etcd), or undefined. */
  private maintenance: MaintenanceRecord | undefined;
  /** The peer channel (fast failover, etcd outage hold), what acts on it, and where we receive heartbeats. */
  private peer:
    | {
        channel: PeerChannel;
        fast: FastFailover | undefined;
        address: string;
        port: number;
        /** What fast failover looks at per group (groups, interfaces and VIPs change only with a restart). */
        groups: readonly FastFailoverGroup[];
      }
    | undefined;
  /**
   * One member write at a time, the newest facts last: etcd serves concurrent requests concurrently, so two puts
   * in flight can land in either order — a reload that lowered the priority (published once before and once after
   * the health verdict) left the old priority in etcd, and the node kept winning the group back from the node that
   * should have it (soak seed 50 with fast failover, round 47).
   */
  private memberWrite: 'idle' | 'busy' | 'again' = 'idle';
  /** The revision of our last member record etcd confirmed, and the lease it was written under. */
  private memberRevision: { leaseId: string; revision: number } | undefined;

  /**
   * `--etcd-outage hold`. Follower: group → our promise to its holder. Holder: group → the sequence number of our
   * first heartbeat that asked for promises in this outage, and which members' promises were missing last.
   */
  private readonly promises = new Map<string, Bound>();
  private readonly asking = new Map<
    string,
    /** `shown`: what the log last said ('' nothing yet, 'holding', 'ran out', 'missing …'). */
    { from: number; shown: string; bound: ReadonlyMap<string, number> }
  >();

  /** Each member's lease and peer address, as the view last showed them. */
  private memberInfo = new Map<string, MemberInfo>();
  /** Hybrid mode, per group: the VRRP adverts this node sends, and the coord nodes' advert sources. */
  private readonly hybrids = new Map<string, Hybrid>();
  private readonly vrrpFrom = new Map<string, string>();
  private vrrpSources = new Map<string, { coord: Set<string>; others: number }>();

  constructor(
    config: NodeConfig,
    private readonly deps: NodeDeps,
  ) {
    this.config = config;
    const cluster = config.cluster ?? 'default';
    this.log = deps.logger.child({ node: config.node, cluster });
    if (deps.etcd === undefined) {
      // One warning per SWITCH_LOG_QUIET_MS: while etcd is away a node goes round its members with every failed
      // call, and a cut-off node must not flood its log (the rest at debug).
      let loudAgainAt = -Infinity;
      const client = createEtcdBackend(loadConnection(config.etcd), {
        readWaitMs: config.ttlSec * 1000,
        // A resign must reach etcd when the path to the member in use stalls (docs/design.md, "Fencing").
        standby: true,
        onSwitch: (s) => {
          const now = deps.clock.now();
          const loud = now >= loudAgainAt;
          if (loud) loudAgainAt = now + SWITCH_LOG_QUIET_MS;
          this.log[loud ? 'warn' : 'debug']('etcd: now using another member', { ...s });
        },
      });
      this.etcd = client;
      this.tlsClient = client;
    } else {
      this.etcd = deps.etcd;
      this.tlsClient = undefined;
    }
    this.keys = clusterKeys(cluster);
    this.store = new ElectionStore(this.etcd, this.keys);
    deps.haproxy?.attachEtcd(this.etcd);
    this.events = new EventLog({
      etcd: this.etcd,
      keys: this.keys,
      node: config.node,
      clock: deps.clock,
      logger: this.log,
      ...(deps.eventRetentionMs === undefined ? {} : { retentionMs: deps.eventRetentionMs }),
    });
    this.groups = config.groups.map(
      (g) =>
        new GroupRunner({
          settings: g,
          node: config.node,
          vipPort: deps.vipPort,
          announcer: deps.announcer,
          ...(deps.prober === undefined ? {} : { prober: deps.prober }),
          clock: deps.clock,
          logger: this.log,
          vacancyFallbackMs: config.ttlSec * 1000 + 1000,
          ...(config.etcdOutage === 'hold' ? { holdMaxMs: config.etcdOutageMaxMs } : {}),
          onFact: (fact) => this.onFact(fact),
          etcd: {
            campaign: (group, leaseId) => this.campaign(group, leaseId),
            resign: (group, epoch, clean, to, why) => this.resign(group, epoch, clean, to, why),
            isCurrentLease: (leaseId) => this.session.currentLeaseId === leaseId,
            keepaliveNow: () => this.session.keepaliveNow(),
            restartSession: (reason) => void this.restartSession(reason),
          },
        }),
    );
    this.session = new EtcdSession({
      etcd: this.etcd,
      ttlSec: config.ttlSec,
      clock: deps.clock,
      logger: this.log,
      intervalMs: (ttlMs) => keepaliveIntervalMs(defaultTiming(ttlMs)),
      keepUnanswered: config.etcdOutage === 'hold',
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
          // A new lease does not make a bad link good: a node that lost its session (or fenced) while its acks
          // were late stays out of the election until this session's acks prove prompt (a few round trips on a
          // healthy link); before, a node under loss came back as a candidate at once, preempted the healthy
          // holder and then sat 2 s in a campaign its link could not finish (soak seed 51, round 101).
          this.slowRun = 0;
          this.promptRun = 0;
          // Whatever happened while we had no session, learn it from a fresh read before standing for election.
          if (this.view.health.revision < e.revision) this.view.requestResync('new session');
          this.updateCandidacy(true);
          if (e.previousLeaseId !== undefined) void this.revokeLostLease(e.previousLeaseId);
        },
        acked: (e) => {
          this.noteAck(e.now - e.sentAt);
          for (const g of this.groups)
            g.dispatch({ type: 'session-acked', now: e.now, leaseId: e.leaseId, sentAt: e.sentAt });
        },
        lost: (e) => {
          for (const g of this.groups) g.dispatch({ type: 'session-lost', now: e.now, reason: e.reason });
          this.distrustAcks('session lost');
          this.updateCandidacy();
        },
      },
    });
    this.view = new PrefixView({
      etcd: this.etcd,
      prefix: this.keys.prefix,
      target: config.etcd.endpoints.join(','),
      clock: deps.clock,
      logger: this.log,
      onChange: (change, view) => {
        const changed = [...change.puts, ...change.deletes];
        // Status writes (every node, every 2 s) say nothing about the election: re-evaluate only on members, groups
        // and maintenance marks.
        const election = (k: string) =>
          k.startsWith(this.keys.members) ||
          k.startsWith(this.keys.groups) ||
          k.startsWith(this.keys.maintenances) ||
          k.startsWith(this.keys.moves);
        if (change.resync || changed.some((e) => election(e.key))) this.onView(change.revision, view);
        // After the groups saw this batch: a node that just became a candidate decides on current facts.
        this.updateCandidacy();
        deps.haproxy?.onView(change.revision, changed, view, change.resync);
      },
      onHealth: () => this.updateCandidacy(),
    });
  }

  /**
   * Clean start: refuse VIPs that are the host's own addresses, remove VIPs an earlier run left behind, read the
   * cluster, then join the election.
   */
  async start(): Promise<void> {
    await this.checkHostAddresses();
    await this.removeStaleVips();
    await this.view.start();
    // Once etcd answers (the view waited for it), before the session: no lease, no VIP before the channel is up.
    if (this.config.peer !== undefined) await this.startPeer(this.config.peer);
    // Before the session: a hybrid group stands for election only once it has listened for a keepalived Master.
    for (const g of this.config.groups) if (g.advertise !== undefined) await this.startHybrid(g);
    this.session.start();
    const { clock } = this.deps;
    this.addressWatch = this.deps.watchAddresses?.((e) => this.onAddressEvent(e));
    const reconcileMs = this.deps.reconcileMs ?? (this.addressWatch === undefined ? 500 : 5000);
    this.timers.push(every(clock, reconcileMs, () => void this.reconcile()));
    // Checked every second, written only when something changed (or as a heartbeat): an idle node writes
    // nothing, and its peers' views are not woken for nothing.
    this.timers.push(every(clock, 1000, () => void this.publishStatus()));
    if (this.deps.haproxy !== undefined) {
      const loop = this.deps.haproxy;
      this.timers.push(every(clock, 10_000, () => loop.recheck()));
      // Sessions of disabled servers, for `coord server drain --wait` (nothing to read while none is disabled).
      this.timers.push(every(clock, 1000, () => void loop.pollDraining()));
    }
    if (this.tlsClient !== undefined && this.tlsClient.certExpiresAt !== undefined) {
      this.checkCertExpiry();
      this.timers.push(every(clock, this.deps.tlsCheckMs ?? 10_000, () => this.rotateTls('file check')));
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

  private hybridStatus(
    group: string,
    settings: GroupSettings | undefined,
  ): { vrrp?: { vrid: number; foreignMaster: boolean; advertsSent: number } } {
    const h = this.hybrids.get(group);
    if (h === undefined || settings?.advertise === undefined) return {};
    return {
      vrrp: {
        vrid: settings.advertise.vrid,
        foreignMaster: h.foreignMaster(),
        advertsSent: h.counters().advertsSent,
      },
    };
  }

  /** Hybrid mode: advertise the group over VRRP while this node may hold it, and watch for a foreign Master. */
  private async startHybrid(g: GroupSettings): Promise<void> {
    const advertise = g.advertise;
    if (advertise === undefined) return;
    const open =
      this.deps.vrrpTransport ??
      ((grp: GroupSettings, from: string, logger: Logger) =>
        openVrrpTransport(grp, from, advertise.unicastPeers, logger));
    const source = await vrrpSourceAddress(this.deps.vipPort, g);
    this.vrrpFrom.set(g.name, source);
    const hybrid = startHybrid({
      group: g,
      advertise,
      source,
      transport: open(g, source, this.log.child({ group: g.name })),
      clock: this.deps.clock,
      logger: this.log,
      active: () =>
        !this.stopped && this.candidate && this.maintenance === undefined && this.publishedPriority(g) >= 1,
      isCoord: (address) => this.vrrpSources.get(g.name)?.coord.has(address) === true,
      onForeignChange: () => this.restand([g.name, ...this.followersOf(g.name)]),
    });
    this.hybrids.set(g.name, hybrid);
  }

  /**
   * The peer channel: the cluster's peer key from etcd (made by the first node), the UDP socket, and a heartbeat
   * to every member each interval (docs/design.md, "Peer channel and fast failover"). A port in use or an address
   * that is not ours stops the start with the reason: a node that cannot hear its peers would only ever fail over
   * slowly, and could never ride out an etcd outage.
   */
  private async startPeer(settings: NonNullable<NodeConfig['peer']>): Promise<void> {
    const key = await ensurePeerKey(this.etcd, this.keys, newClusterKey());
    const address = settings.address ?? (await this.peerAddress());
    const open = this.deps.openPeerSocket ?? openPeerSocket;
    let socket: OpenPeerSocket;
    try {
      socket = await open({
        address,
        port: settings.port,
        onMessage: (data) => this.peer?.channel.receive(data),
      });
    } catch (e) {
      throw new CoordError(
        'ERR_COORD_CONFIG',
        `cannot open the peer channel on ${address} port ${settings.port}/udp: ${errorMessage(e)}`,
        {
          hint: 'pick a free port (peer.port, the same on every node) or an address of this host (peer.address)',
          cause: e,
        },
      );
    }
    const { clock } = this.deps;
    const channel = new PeerChannel({
      node: this.config.node,
      key,
      socket,
      now: () => clock.now(),
      currentLease: (node) => this.memberInfo.get(node)?.leaseId,
    });
    const fast = !this.config.fastFailover
      ? undefined
      : new FastFailover({
          self: this.config.node,
          heartbeatMs: settings.heartbeatMs,
          clock,
          logger: this.log,
          prober: this.deps.prober,
          lastHeard: (node, leaseId) => channel.lastHeard(node, leaseId),
          revoke: (leaseId) => this.etcd.revoke(leaseId),
          onRevoked: (group) => this.deps.metrics?.fastFailoverRevokes.inc({ group }),
          isBound: (group) => this.promises.has(group),
        });
    const groups = this.groups.map((g): FastFailoverGroup => {
      const own = this.config.groups.find((x) => x.name === g.name);
      return { name: g.name, interface: own?.interface ?? '', vips: own?.vips ?? [], state: () => g.current };
    });
    this.peer = { channel, fast, address, port: socket.port, groups };
    this.timers.push(every(clock, settings.heartbeatMs, () => this.heartbeat()));
    this.log.info('peer channel open', { address, port: socket.port, heartbeatMs: settings.heartbeatMs });
  }

  /** The first IPv4 address (else IPv6) of the first group's interface that is not one of our VIPs. */
  private async peerAddress(): Promise<string> {
    const iface = this.config.groups[0]?.interface ?? '';
    const vips = new Set(this.config.groups.flatMap((g) => g.vips.map((v) => v.address)));
    const own = (await this.deps.vipPort.list(iface)).filter((a) => !vips.has(a.address));
    const pick = own.find((a) => a.family === 4) ?? own.find((a) => a.family === 6);
    if (pick === undefined)
      throw new CoordError('ERR_COORD_CONFIG', `${iface} has no address for the peer channel`, {
        hint: 'give the interface an address of its own, or set peer.address (--peer-address)',
      });
    return pick.address;
  }

  /** One heartbeat to every member, then a look at every holder we follow. */
  private heartbeat(): void {
    const peer = this.peer;
    const lease = this.session.currentLeaseId;
    if (peer === undefined || this.stopped) return;
    const now = this.deps.clock.now();
    const hold = this.config.etcdOutage === 'hold';
    // Promises: the timing the lease was granted with, and the window a promise binds for.
    const timing = defaultTiming(this.session.grantedTtlMs || this.config.ttlSec * 1000);
    const window = promiseWindowMs(timing, this.config.peer?.heartbeatMs ?? 50);
    if (hold) this.updatePromises(peer.channel, now, window);
    if (lease !== null) {
      const groups: GroupBeat[] = this.groups.map((g) => {
        const s = g.current;
        const leading = s.role === 'leader' && s.epoch !== null;
        const left = leading && s.vipHeld ? Math.max(0, g.deadline - now) : 0;
        const beat: GroupBeat = { group: g.name, epoch: leading ? (s.epoch ?? 0) : 0, deadlineInMs: left };
        if (!hold) return beat;
        const bound = this.promises.get(g.name);
        const holder =
          s.leader === null ? undefined : peer.channel.lastHeard(s.leader.node, s.leader.leaseId);
        return {
          ...beat,
          asking: asksForPromises(s, now),
          // Bound, we keep our word until the holder releases us; we only *confirm* while etcd is away from us
          // too — a member that reaches etcd refuses, and the holder fences (docs/design.md).
          promise: bound !== undefined && etcdQuiet(s, now),
          echoSeq: bound?.seq ?? holder?.seq ?? 0,
        };
      });
      const targets: PeerTarget[] = [];
      for (const [node, info] of this.memberInfo)
        if (info.peer !== undefined) targets.push({ node, address: info.peer.address, port: info.peer.port });
      const seq = peer.channel.beat(lease, groups, targets);
      if (hold) this.updateHolds(peer.channel, groups, seq, now, window, timing.marginMs);
    }
    peer.fast?.evaluate(peer.groups);
  }

  /** `--etcd-outage hold`, follower side: start, keep or end our promise to each group's holder. */
  private updatePromises(channel: PeerChannel, now: number, window: number): void {
    for (const g of this.groups) {
      const s = g.current;
      const bound = this.promises.get(g.name);
      const heard =
        bound !== undefined
          ? channel.lastHeard(bound.node, bound.leaseId)
          : s.leader === null
            ? undefined
            : channel.lastHeard(s.leader.node, s.leader.leaseId);
      const next = promiseStep({
        self: this.config.node,
        group: g.name,
        state: s,
        bound,
        heard,
        now,
        windowMs: window,
      });
      if (next.bound !== undefined) {
        this.promises.set(g.name, next.bound);
        if (!next.started) continue;
        this.log.warn(
          'etcd unreachable: promised the holder not to campaign until it releases, recovers or falls silent',
          {
            group: g.name,
            holder: next.bound.node,
            epoch: next.bound.epoch,
          },
        );
        g.dispatch({ type: 'promise', now, bound: true });
      } else if (bound !== undefined) {
        this.promises.delete(g.name);
        this.log.info('promise ended', { group: g.name, holder: bound.node, why: next.ended });
        g.dispatch({ type: 'promise', now, bound: false });
      }
    }
  }

  /**
   * `--etcd-outage hold`, holder side: after each heartbeat, until when the other members' promises let each group
   * we hold keep its VIP past the lease deadline (the machine fences at the deadline without them).
   */
  private updateHolds(
    channel: PeerChannel,
    beats: readonly GroupBeat[],
    seq: number,
    now: number,
    window: number,
    marginMs: number,
  ): void {
    this.groups.forEach((g, i) => {
      const was = this.asking.get(g.name);
      if (beats[i]?.asking !== true) {
        this.asking.delete(g.name);
        if (was?.shown === 'holding' && g.current.vipHeld)
          this.log.info('etcd answers again: hold over', { group: g.name });
        if (g.current.holdUntil !== null) g.dispatch({ type: 'hold', now, until: null });
        return;
      }
      const asked = was ?? { from: seq, shown: '', bound: new Map<string, number>() };
      const verdict = holdVerdict({
        self: this.config.node,
        group: g.name,
        members: g.current.members,
        askedFrom: asked.from,
        bound: asked.bound,
        lastHeard: (node) => channel.lastHeard(node, this.memberInfo.get(node)?.leaseId),
        sentTime: (n) => channel.sentTime(n),
        windowMs: window,
        marginMs,
      });
      g.dispatch({ type: 'hold', now, until: verdict.until });
      // Said only once it matters (at the lease deadline), not for every ack that is a little late.
      const s = g.current;
      const shown = this.holdingPastLease(g)
        ? 'holding'
        : s.fencedAt !== null && asked.shown === 'holding'
          ? 'ran out'
          : verdict.until === null && now >= leaseDeadlineOf(s)
            ? `missing ${verdict.missing.join(',') || '(no other member)'}`
            : asked.shown;
      if (shown !== asked.shown) {
        if (shown === 'holding')
          this.log.warn('etcd unreachable: every other member promised; holding the VIP past the lease', {
            group: g.name,
            epoch: s.epoch,
          });
        else if (shown === 'ran out')
          this.log.warn('etcd unreachable: a promise ran out; VIP removed', {
            group: g.name,
            member: [...asked.bound].sort((x, y) => x[1] - y[1])[0]?.[0] ?? null,
          });
        else
          this.log.warn('etcd unreachable: promises missing', {
            group: g.name,
            missing: verdict.missing.join(',') || '(no other member)',
          });
      }
      this.asking.set(g.name, { from: asked.from, shown, bound: verdict.bound });
    });
  }

  /** `--etcd-outage hold`: this group's VIP is held past the lease deadline on promises right now. */
  private holdingPastLease(g: GroupRunner): boolean {
    const s = g.current;
    const now = this.deps.clock.now();
    return s.role === 'leader' && s.vipHeld && now >= leaseDeadlineOf(s) && g.deadline > now;
  }

  /** Which VIPs are on our interfaces (what alerting compares across nodes: deploy/prometheus). */
  private vipMetrics(): void {
    const m = this.deps.metrics;
    if (m === undefined) return;
    for (const g of this.config.groups) {
      const present = this.present.get(g.interface) ?? new Set<string>();
      m.vipPresent.set({ group: g.name }, g.vips.filter((v) => present.has(v.address)).length);
    }
  }

  /** The peer channel's gauges: with the other gauges once a second, not on every heartbeat. */
  private peerMetrics(): void {
    const m = this.deps.metrics;
    const peer = this.peer;
    if (m === undefined || peer === undefined) return;
    for (const [node, age] of Object.entries(peer.channel.ages()))
      m.peerHeartbeatAge.set({ peer: node }, age / 1000);
    for (const [reason, n] of Object.entries(peer.channel.counters.dropped))
      m.peerDropped.set({ reason }, n ?? 0);
    if (this.config.etcdOutage !== 'hold') return;
    for (const g of this.groups) {
      m.outageHolding.set({ group: g.name }, this.holdingPastLease(g) ? 1 : 0);
      m.outagePromised.set({ group: g.name }, this.promises.has(g.name) ? 1 : 0);
    }
  }

  /** Graceful stop: every group removes its VIP, then releases leadership; then the lease is revoked. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) t.stop();
    this.timers = [];
    this.addressWatch?.close();
    this.peer?.fast?.close();
    this.peer?.channel.close();
    for (const g of this.groups) g.dispatch({ type: 'stop', now: this.deps.clock.now() });
    // First the VIPs (each group's lane), then the resigns queued behind them.
    const removed = await this.lanesIdle();
    const resigned = await within(
      this.deps.clock,
      1000,
      Promise.all(this.groups.map((g) => g.settle())).then(() => true),
      false,
    );
    for (const g of this.groups) g.stopTimers();
    // Hybrid mode: the last coord node of a group resigns it over VRRP too (priority 0), so the keepalived nodes
    // take over after Skew_Time; while other coord nodes advertise, a priority 0 would only unsettle them.
    await Promise.all(
      [...this.hybrids].map(([group, h]) => h.stop((this.vrrpSources.get(group)?.others ?? 0) === 0)),
    );
    // Revoking lets a successor claim at once: only when every VIP is verifiably gone. Otherwise the lease expires
    // on its own and the successor's guard and wire probe cover what may be left.
    const removalFailed = this.groups.some((g) => g.removalFailed);
    if (!removed)
      this.log.error('vip removal did not finish in 2 s; letting the lease expire instead of revoking it');
    else if (removalFailed)
      this.log.error('a vip removal failed; letting the lease expire instead of revoking it');
    else if (!resigned) this.log.warn('resign did not finish in 1 s; revoking the lease (the VIP is gone)');
    // The history of this stop (the VIP released, the group left) is worth half a second.
    await this.events.stop(500);
    await this.session.close(removed && !removalFailed);
    await this.view.close();
    this.etcd.close();
    this.log.info('node stopped');
  }

  status(): NodeStatus {
    const health = this.view.health;
    return {
      node: this.config.node,
      session: { leaseId: this.session.currentLeaseId, ttlMs: this.session.grantedTtlMs },
      candidacy: { candidate: this.candidate, blockedBy: this.candidacyBlocks() },
      ...(this.maintenance === undefined ? {} : { maintenance: this.maintenance }),
      ...this.failingChecks(),
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
          ...(this.config.etcdOutage === 'hold'
            ? {
                outage: {
                  holdingMsLeft: this.holdingPastLease(g)
                    ? Math.round(g.deadline - this.deps.clock.now())
                    : null,
                  promisedTo: this.promises.get(g.name)?.node ?? null,
                },
              }
            : {}),
          ...this.hybridStatus(g.name, settings),
        };
      }),
      etcd: {
        connected: health.connected,
        revision: health.revision,
        staleMs: Math.round(this.deps.clock.now() - health.lastHeardAt),
        ...this.certStatus(),
      },
      haproxy: this.deps.haproxy?.status,
      ...(this.peer === undefined
        ? {}
        : {
            peers: {
              address: this.peer.address,
              port: this.peer.port,
              heartbeatAgeMs: this.peer.channel.ages(),
              dropped: this.peer.channel.counters.dropped,
            },
          }),
      at: this.deps.clock.wallNow(),
    };
  }

  /** Publish this node's status now (e.g. right after an HAProxy apply), not at the next tick. */
  publishNow(): void {
    void this.publishStatus(true);
  }

  /**
   * A kernel address notification. Our own refreshes of a VIP we hold are the common case and need nothing; a VIP
   * that disappeared, or that appeared while we do not hold it, is reconciled at once.
   */
  private onAddressEvent(e: AddressEvent): void {
    if (this.stopped) return;
    const group = this.config.groups.find((g) => g.vips.some((v) => v.address === e.address.address));
    if (group === undefined) return;
    const runner = this.groups.find((g) => g.name === group.name);
    const holding = runner?.current.role === 'leader' && runner.current.vipHeld;
    // Our own refreshes (four a second, where the kernel does not filter them) say nothing new; an address we
    // do not know of yet does: list once.
    const known = this.present.get(group.interface)?.has(e.address.address) === true;
    if (e.op === 'add' && holding && known) return;
    this.reconcileSoon();
  }

  /** One comparison of the interfaces with the groups, 5 ms from now (a burst of reasons becomes one). */
  private reconcileSoon(): void {
    if (this.reconcilePending || this.stopped) return;
    this.reconcilePending = true;
    this.deps.clock.setTimeout(() => {
      this.reconcilePending = false;
      void this.reconcile();
    }, 5);
  }

  /** Every group's VIP work (adds, removals) has finished, within 2 s; false when one was still running. */
  private lanesIdle(): Promise<boolean> {
    return within(
      this.deps.clock,
      2000,
      Promise.all(this.groups.map((g) => g.laneIdle())).then(() => true),
      false,
    );
  }

  /**
   * A group could not remove its VIP: every group drops leadership first (the lease they all
   * share is going), their VIP removals finish, and only then is the lease left. It is revoked — letting others
   * claim at once — only when every removal succeeded; otherwise it expires on its own, and the successor's
   * guard and wire probe cover the copy that may be left.
   */
  private async restartSession(reason: string): Promise<void> {
    const now = this.deps.clock.now();
    for (const g of this.groups) g.dispatch({ type: 'session-lost', now, reason });
    await this.lanesIdle();
    if (this.stopped) return;
    this.session.restart(reason, !this.groups.some((g) => g.removalFailed));
  }

  /**
   * The session lost `leaseId` to unanswered keepalives and has a new lease now. etcd may keep the old one alive
   * for up to its TTL more (a new etcd leader extends every lease), and with it whatever key we had under it — a
   * leader key nobody else may take meanwhile. Once every group's VIP removal is done, and only if every one
   * succeeded, revoke it: the group's vacancy starts now instead of at the lease's end. It is an unclean vacancy
   * like an expiry (the successor waits its guard and a quiet wire). After a failed removal the lease is left to
   * expire, as always (docs/design.md, "Leaving leadership").
   */
  private async revokeLostLease(leaseId: string): Promise<void> {
    await this.lanesIdle();
    if (this.stopped || leaseId === this.session.currentLeaseId) return;
    if (this.groups.some((g) => g.removalFailed)) {
      this.log.warn('previous lease left to expire: a VIP removal failed', { lease: leaseId });
      return;
    }
    try {
      await this.etcd.revoke(leaseId);
      this.log.info('previous lease revoked', { lease: leaseId });
    } catch (e) {
      // Most often it expired already (etcd answers "lease not found").
      this.log.debug('previous lease not revoked', { lease: leaseId, error: errorMessage(e) });
    }
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
    if (JSON.stringify(next.etcd) !== JSON.stringify(cur.etcd)) restartRequired.push('etcd');
    if (
      next.fastFailover !== cur.fastFailover ||
      next.etcdOutage !== cur.etcdOutage ||
      next.etcdOutageMaxMs !== cur.etcdOutageMaxMs ||
      JSON.stringify(next.peer) !== JSON.stringify(cur.peer)
    )
      restartRequired.push('fastFailover / etcdOutage / peer');
    // Rotated certificate files under the same names are picked up without a restart.
    this.rotateTls('config reload');
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

  /** The health checks failing now, for the status record (absent when none fail). */
  private failingChecks(): { failingChecks?: string[] } {
    const failing = this.deps.failingChecks?.() ?? [];
    return failing.length === 0 ? {} : { failingChecks: [...failing] };
  }

  /** A health verdict for one group: the priority to publish (0 = fault: leave the election). */
  setEffectivePriority(group: string, priority: number): void {
    if (this.effective.get(group) === priority) return;
    this.effective.set(group, priority);
    const moved = this.movedHere.get(group);
    if (moved !== undefined && priority < 1) this.endMove(group, moved, 'fault');
    this.deps.metrics?.effectivePriority.set({ group }, priority);
    this.refreshSelf(group);
    const lease = this.session.currentLeaseId;
    if (lease !== null) this.registerMember(lease);
  }

  // ── TLS ──────────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Re-read the etcd TLS files now (a reload asked for it), whatever else the reload could apply: certificates are
   * rotated under the same names without a restart.
   */
  recheckTls(): void {
    this.rotateTls('config reload');
  }

  /**
   * Pick up rotated TLS files (same paths, new content): the client reconnects with them, the keepalive stream
   * and the watch re-open, the lease and the VIP stay. A bad new file is refused and the old material kept.
   */
  private rotateTls(why: string): void {
    const client = this.tlsClient;
    if (client === undefined || this.stopped) return;
    try {
      if (client.reloadTls().changed) {
        this.log.info('etcd TLS material reloaded', {
          why,
          clientCertExpiresAt: client.certExpiresAt?.toISOString() ?? null,
        });
        this.certWarnedAt = -Infinity;
      }
    } catch (e) {
      this.log.error('etcd TLS files changed but cannot be used; keeping the current ones', {
        error: errorMessage(e),
        ...(e instanceof CoordError && e.hint !== undefined ? { hint: e.hint } : {}),
      });
    }
    this.checkCertExpiry();
  }

  private certStatus(): { clientCert?: { expiresAt: string; daysLeft: number; warning?: string } } {
    const at = this.tlsClient?.certExpiresAt;
    if (at === undefined) return {};
    const daysLeft = Math.floor((at.getTime() - this.deps.clock.wallNow()) / 86_400_000);
    const warning =
      daysLeft < 0
        ? 'the etcd client certificate has expired: etcd refuses this node until it is renewed'
        : daysLeft < CERT_WARN_DAYS
          ? `the etcd client certificate expires in ${daysLeft} day(s): renew it (coord picks up the new files by itself)`
          : undefined;
    return {
      clientCert: { expiresAt: at.toISOString(), daysLeft, ...(warning === undefined ? {} : { warning }) },
    };
  }

  /** Metric always; a warning at most once an hour while the certificate is within CERT_WARN_DAYS of expiry. */
  private checkCertExpiry(): void {
    const at = this.tlsClient?.certExpiresAt;
    if (at === undefined) return;
    this.deps.metrics?.etcdCertExpiry.set((at.getTime() - this.deps.clock.wallNow()) / 1000);
    const warning = this.certStatus().clientCert?.warning;
    const now = this.deps.clock.now();
    if (warning !== undefined && now - this.certWarnedAt >= 3_600_000) {
      this.certWarnedAt = now;
      this.log.warn('etcd client certificate expires soon', { expiresAt: at.toISOString(), hint: warning });
    }
  }

  // ── candidacy ────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Why this node may not stand for election now. A node whose view lags its own session (a partition just
   * healed, the watch not yet back) would defer to stale facts and campaign against a held group; one whose acks
   * are too slow could win but never safely add its VIP (docs/design.md, "Candidacy").
   */
  private candidacyBlocks(): CandidacyBlock[] {
    const out: CandidacyBlock[] = [];
    const health = this.view.health;
    if (this.session.currentLeaseId === null) out.push('no-session');
    else if (health.revision < this.session.startRevision) out.push('view-behind-session');
    if (!health.connected) out.push('view-disconnected');
    if (this.acksSlow) out.push('slow-acks');
    return out;
  }

  private updateCandidacy(force = false): void {
    const blocks = this.candidacyBlocks();
    const candidate = blocks.length === 0;
    if (candidate === this.candidate && !force) return;
    const changed = candidate !== this.candidate;
    this.candidate = candidate;
    if (changed)
      this.log.info(candidate ? 'candidate' : 'not a candidate', candidate ? {} : { blockedBy: blocks });
    this.deps.metrics?.candidate.set(candidate ? 1 : 0);
    for (const g of this.config.groups) this.refreshSelf(g.name);
    const lease = this.session.currentLeaseId;
    if (lease !== null) this.registerMember(lease);
  }

  private noteAck(rttMs: number): void {
    // Slow: the ack leaves too little of its window to add or refresh a VIP with (the machine's own rule).
    const timing = defaultTiming(this.session.grantedTtlMs);
    const window = timing.ackWindowMs - HOST_CHANGE_MIN_LEFT_MS;
    if (!ackUsable(timing, 0, rttMs)) {
      this.slowRun++;
      this.promptRun = 0;
    } else {
      this.promptRun++;
      this.slowRun = 0;
    }
    const slow = this.acksSlow ? this.promptRun < MAX_SLOW_ACKS : this.slowRun >= MAX_SLOW_ACKS;
    // Proving promptness again: ask for the next ack at once rather than one keepalive interval later, so a
    // healthy link is trusted again within a few round trips (a lossy one rarely gets that many in a row).
    if (slow && this.promptRun > 0) this.session.keepaliveNow();
    if (slow !== this.acksSlow) {
      this.acksSlow = slow;
      this.log.warn(slow ? 'etcd acks are slow: not a candidate' : 'etcd acks are prompt again', {
        rttMs: Math.round(rttMs),
        usableRttMs: window,
      });
      this.updateCandidacy();
    }
  }

  private refreshSelf(group: string): void {
    const g = this.config.groups.find((x) => x.name === group);
    const runner = this.groups.find((x) => x.name === group);
    if (g === undefined || runner === undefined) return;
    const { standDown, ...standing } = this.standing(g);
    runner.updateSelf({ node: this.config.node, ...standing, candidate: this.candidate }, standDown);
  }

  /**
   * A group that follows another in its sync group, while this node does not hold that one: it stands with
   * priority 0, so its holder hands it to the leading group's holder (docs/design.md, "Sync groups").
   */
  private followsElsewhere(g: GroupSettings): boolean {
    if (g.follows === undefined) return false;
    const leading = this.groups.find((x) => x.name === g.follows)?.current;
    return !(leading?.role === 'leader' && leading.epoch !== null);
  }

  /** These groups stand again (their runners and this node's member record). */
  private restand(groups: readonly string[]): void {
    if (groups.length === 0) return;
    for (const g of groups) this.refreshSelf(g);
    const lease = this.session.currentLeaseId;
    if (lease !== null) this.registerMember(lease);
  }

  /** The followers of `group` in its sync group (they stand where it is held). */
  private followersOf(group: string): string[] {
    return this.config.groups.filter((g) => g.follows === group).map((g) => g.name);
  }

  /** The priority a group stands with: 0 in maintenance, else after health checks (0 = fault). */
  private publishedPriority(g: GroupSettings): number {
    return this.maintenance !== undefined ? 0 : (this.effective.get(g.name) ?? g.priority);
  }

  /**
   * How this node stands for a group, and why when it stands with 0 without a fault (`standDown`): its published
   * priority and preemption — or above every configured priority with preemption at once (the holder hands the
   * group over now and nobody takes it back) while the group is moved here (`coord move`, docs/design.md, "Moving a
   * group") or is a sync group's follower whose leading group this node holds ("Sync groups"); 0 while a keepalived
   * node is VRRP Master of it ("Hybrid mode") or it follows a leading group held elsewhere.
   */
  private standing(g: GroupSettings): {
    priority: number;
    preempt: boolean;
    preemptDelayMs: number;
    standDown: GroupConfig['standDown'];
  } {
    const priority = this.publishedPriority(g);
    const own = (p: number, standDown?: GroupConfig['standDown']) => ({
      priority: p,
      preempt: g.preempt,
      preemptDelayMs: g.preemptDelayMs,
      standDown,
    });
    const above = { priority: MOVE_PRIORITY, preempt: true, preemptDelayMs: 0, standDown: undefined };
    if (priority < 1) return own(priority, this.maintenance !== undefined ? 'maintenance' : undefined);
    if (this.hybrids.get(g.name)?.foreignMaster() === true) return own(0, 'vrrp-master');
    if (g.follows !== undefined) return this.followsElsewhere(g) ? own(0, 'sync-group') : above;
    return this.movedHere.has(g.name) ? above : own(priority);
  }

  /**
   * Move records in the view: a group moved to this node, on its current lease, makes it stand above everyone.
   * A move to a node in FAULT or maintenance is over: this node removes the record.
   */
  private onMoves(view: ReadonlyMap<string, Entry>): void {
    const lease = this.session.currentLeaseId;
    let changed = false;
    for (const g of this.config.groups) {
      const entry = view.get(this.keys.move(g.name));
      // Only the node a move names (or named) publishes anew. The holder that handed the group to it was
      // preempted, so it stays a challenger (machine.ts, challengers()) and takes the group back when the move
      // ends, if priorities say so.
      const rec = entry === undefined ? undefined : decodeMove(entry.value);
      const mine =
        entry !== undefined && rec?.to === this.config.node && lease !== null && rec.lease === lease;
      const was = this.movedHere.get(g.name);
      if (mine && this.publishedPriority(g) < 1) {
        this.endMove(g.name, entry.modRevision, this.maintenance !== undefined ? 'maintenance' : 'fault');
        continue;
      }
      if (mine) this.movedHere.set(g.name, entry.modRevision);
      else this.movedHere.delete(g.name);
      if (mine === (was !== undefined)) continue;
      changed = true;
      this.log.info(mine ? 'group moved here: standing above every priority' : 'move ended', {
        group: g.name,
        ...(mine && rec.by !== '' ? { by: rec.by } : {}),
      });
      this.refreshSelf(g.name);
    }
    if (changed && lease !== null) this.registerMember(lease);
  }

  /** End a move to this node (it failed: FAULT or maintenance): remove the record if it is still that one. */
  private endMove(group: string, modRevision: number, why: string): void {
    if (this.movedHere.delete(group)) this.refreshSelf(group);
    this.log.warn('move ended: this node cannot hold the group', { group, why });
    const key = this.keys.move(group);
    this.etcd
      .txn([{ key, target: 'mod', value: modRevision }], [{ type: 'delete', key }])
      .catch((e: unknown) =>
        this.log.warn('could not remove the move record', { group, error: errorMessage(e) }),
      );
  }

  /**
   * Our maintenance mark in etcd (`coord maintenance on|off`) came or went: every group stands with priority 0
   * while it is on — a holder hands its group over, nobody campaigns here — and with its usual one after.
   */
  private onMaintenance(entry: Entry | undefined): void {
    const next = entry === undefined ? undefined : decodeMaintenance(entry.value);
    if ((next === undefined) === (this.maintenance === undefined)) return;
    this.maintenance = next;
    if (next !== undefined)
      this.log.warn(
        'maintenance on: handing the groups over and not campaigning until coord maintenance off',
        {
          ...(next.by === '' ? {} : { by: next.by }),
          ...(next.reason === '' ? {} : { reason: next.reason }),
        },
      );
    else this.log.info('maintenance off: standing for election again');
    if (next !== undefined)
      for (const [group, rev] of this.movedHere) this.endMove(group, rev, 'maintenance');
    for (const g of this.config.groups) this.refreshSelf(g.name);
    const lease = this.session.currentLeaseId;
    if (lease !== null) this.registerMember(lease);
  }

  /**
   * A group fenced, or the session was lost: no ack came in time. This node's acks must prove prompt again
   * (MAX_SLOW_ACKS in a row, on this session or the next) before it stands for election, so a node with a
   * failing etcd link does not win a group back from a healthy holder.
   */
  private distrustAcks(why: 'fenced' | 'session lost'): void {
    this.slowRun = 0;
    this.promptRun = 0;
    if (!this.acksSlow) {
      this.acksSlow = true;
      this.log.warn(`${why}: not a candidate until etcd acks are prompt again`, { needed: MAX_SLOW_ACKS });
      this.updateCandidacy();
    }
  }

  /** What `coord events` shows: transitions, and the VIP claimed, released or not removed. */
  private recordEvent(fact: GroupFact): void {
    switch (fact.type) {
      case 'transitioned':
        this.events.record({
          group: fact.group,
          kind: 'transition',
          from: fact.from,
          to: fact.to,
          reason: fact.reason,
          epoch: fact.epoch,
          ...(fact.detail === undefined ? {} : { detail: fact.detail.slice(0, 500) }),
        });
        break;
      case 'vipClaimed':
        this.events.record({
          group: fact.group,
          kind: 'vip-claimed',
          epoch: fact.epoch,
          ...(fact.sinceVacancyMs === null ? {} : { ms: Math.round(fact.sinceVacancyMs) }),
        });
        break;
      case 'vipReleased':
        this.events.record({ group: fact.group, kind: 'vip-released', reason: fact.reason });
        break;
      case 'vipRemovalFailed':
        this.events.record({
          group: fact.group,
          kind: 'vip-removal-failed',
          detail: fact.error.slice(0, 500),
        });
        break;
      case 'announced':
      case 'wireAnswered':
        break;
    }
  }

  private onFact(fact: GroupFact): void {
    this.recordEvent(fact);
    // Our own add: list once, so status and the coord_vip_present gauge show it now. Its notification may never
    // come (the address watcher filters the echoes of our writes in the kernel).
    if (fact.type === 'vipClaimed') this.reconcileSoon();
    // A sync group's leading group changed hands here: its followers stand again (priority 255 or 0).
    if (fact.type === 'transitioned' && (fact.to === 'leader' || fact.from === 'leader'))
      this.restand(this.followersOf(fact.group));
    if (fact.type === 'transitioned' && fact.reason === 'fenced') {
      // Keeping the lease: match acks afresh on a new stream, opened once etcd answers (EtcdSession.reopen).
      if (fact.to === 'leader') this.session.reopen('fenced', { untilEtcdAnswers: true });
      this.distrustAcks('fenced');
    }
    const m = this.deps.metrics;
    if (m !== undefined) {
      switch (fact.type) {
        case 'transitioned':
          m.setRole(fact.group, fact.to);
          m.transitions.inc({ group: fact.group, to: fact.to, reason: fact.reason });
          m.epoch.set({ group: fact.group }, fact.to === 'leader' ? (fact.epoch ?? 0) : 0);
          break;
        case 'vipClaimed':
          if (fact.sinceVacancyMs !== null)
            m.lastFailover.set({ group: fact.group }, fact.sinceVacancyMs / 1000);
          break;
        case 'announced':
          m.announcements.inc({ group: fact.group }, fact.frames);
          break;
        case 'wireAnswered':
          m.wireAnswers.inc({ group: fact.group });
          break;
        case 'vipRemovalFailed':
          m.vipRemovalFailures.inc({ group: fact.group });
          break;
        case 'vipReleased':
          break;
      }
    }
    this.deps.onFact?.(fact);
  }

  // ── etcd ─────────────────────────────────────────────────────────────────────────────────────────────────

  private facts(leaseId: string): HolderFacts {
    const timing = defaultTiming(this.session.grantedTtlMs);
    return {
      node: this.config.node,
      leaseId,
      guardMs: takeoverGuardMs(timing),
      lifetimeMs: kernelLifetimeSec(timing) * 1000,
      ...(this.config.etcdOutage === 'hold' ? { holdMaxMs: this.config.etcdOutageMaxMs } : {}),
    };
  }

  private async campaign(
    group: string,
    leaseId: string,
  ): Promise<{ won: true; epoch: number; vacancy: VacancyInfo } | { won: false }> {
    // The machine campaigns under the lease it knows; a lease replaced meanwhile must not win anything.
    if (leaseId !== this.session.currentLeaseId) return { won: false };
    const r = await this.store.campaign(group, this.facts(leaseId));
    if (!r.won) {
      // Somebody holds it although our view said vacant: the view is behind; read it again.
      this.view.requestResync(`campaign for ${group} lost`);
      return r;
    }
    const v = r.vacancy;
    // Fast failover: we revoked the previous holder's lease ourselves, after nobody answered for the VIP.
    const vouched = !v.clean && this.peer?.fast?.vouchesFor(group, v.previousLease) === true;
    this.log.info('campaign won', {
      group,
      epoch: r.epoch,
      previous: v.previous ?? null,
      clean: v.clean,
      ...(vouched ? { wireCheckedBeforeRevoke: true } : {}),
    });
    return {
      won: true,
      epoch: r.epoch,
      vacancy:
        v.clean || vouched
          ? { clean: true }
          : { clean: false, guardMs: v.guardMs, lifetimeMs: v.lifetimeMs, holdMaxMs: v.holdMaxMs },
    };
  }

  /**
   * Give up `group` at `epoch`. Clean and with a successor named: hand the group to it in one transaction when its
   * member record, as we read it, says what its own campaign would have recorded (docs/design.md, "Handing
   * over"); when the handover does not apply (the record changed, its lease is gone), resign as usual.
   */
  private async resign(
    group: string,
    epoch: number,
    clean: boolean,
    to?: string,
    why?: string,
  ): Promise<boolean> {
    const lease = this.session.currentLeaseId ?? '0';
    const info = to === undefined ? undefined : this.memberInfo.get(to);
    if (
      clean &&
      to !== undefined &&
      info?.takeover !== undefined &&
      info.leaseId !== '0' &&
      info.leaseId !== ''
    ) {
      const successor: Successor = {
        node: to,
        leaseId: info.leaseId,
        memberRevision: info.modRevision,
        ...info.takeover,
      };
      try {
        if (await this.store.handOver(group, epoch, this.config.node, successor, why)) {
          this.log.info('handed over', { group, epoch, to, ...(why === undefined ? {} : { why }) });
          return true;
        }
        this.log.info('handover did not apply; resigning', { group, epoch, to });
      } catch (e) {
        this.log.info('handover failed; resigning', { group, epoch, to, error: errorMessage(e) });
      }
    }
    return this.store.resign(group, epoch, this.facts(lease), clean);
  }

  private registerMember(leaseId: string): void {
    if (this.memberWrite !== 'idle') {
      this.memberWrite = 'again';
      return;
    }
    this.memberWrite = 'busy';
    const record: MemberRecord = {
      node: this.config.node,
      interface: this.config.groups[0]?.interface ?? '',
      version: this.deps.version,
      startedAt: this.deps.clock.wallNow(),
      candidate: this.candidate,
      takeover: takeoverOf(this.facts(leaseId)),
      ...(this.peer === undefined ? {} : { peer: { address: this.peer.address, port: this.peer.port } }),
      groups: Object.fromEntries(
        this.config.groups.map((g) => [
          g.name,
          {
            // Published priority: after health checks (0 = fault), so every node elects on the same facts.
            ...publicStanding(this.standing(g)),
            vips: g.vips.map(formatCidr),
            ...(g.follows === undefined ? {} : { follows: g.follows }),
            ...(this.vrrpFrom.has(g.name) ? { vrrpFrom: this.vrrpFrom.get(g.name) } : {}),
          },
        ]),
      ),
    };
    // Guarded by our last confirmed write under this lease, the record goes out through every standby
    // connection too (EtcdStore.putMember): a fenced node's "not a candidate" must reach the others although its
    // path to etcd stalled, or they keep waiting for it, the best candidate, to take the group it gave up.
    const after = this.memberRevision?.leaseId === leaseId ? this.memberRevision.revision : undefined;
    this.store.putMember(leaseId, record, after).then(
      (revision) => {
        this.memberRevision = { leaseId, revision };
        this.memberWritten();
      },
      (e: unknown) => {
        this.log.warn('member registration failed', { error: errorMessage(e) });
        this.memberWritten();
        this.deps.clock.setTimeout(() => {
          if (!this.stopped && this.session.currentLeaseId === leaseId) this.registerMember(leaseId);
        }, 200);
      },
    );
  }

  /** A member write finished: write again if the facts changed meanwhile. */
  private memberWritten(): void {
    const again = this.memberWrite === 'again';
    this.memberWrite = 'idle';
    const lease = this.session.currentLeaseId;
    if (again && lease !== null && !this.stopped) this.registerMember(lease);
  }

  private onView(revision: number, view: ReadonlyMap<string, Entry>): void {
    const now = this.deps.clock.now();
    const members = readMembers(view, this.keys, this.log);
    this.memberInfo = new Map(
      members.map((m) => {
        const entry = view.get(this.keys.member(m.node));
        const info: MemberInfo = {
          leaseId: entry?.lease ?? '',
          modRevision: entry?.modRevision ?? 0,
          ...(m.peer === undefined ? {} : { peer: m.peer }),
          ...(m.takeover === undefined ? {} : { takeover: m.takeover }),
        };
        return [m.node, info];
      }),
    );
    this.peer?.channel.retain(new Set(this.memberInfo.keys()));
    if (this.hybrids.size > 0) this.vrrpSources = advertSources(members, this.config.node);
    this.onMaintenance(view.get(this.keys.maintenance(this.config.node)));
    this.onMoves(view);
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
            candidate: m.candidate,
            revision: this.memberInfo.get(m.node)?.modRevision ?? 0,
          });
      }
      g.dispatch({ type: 'members-observed', now, members: candidates });
      g.dispatch({
        type: 'leader-observed',
        now,
        leader: readLeader(view.get(this.keys.leader(g.name))),
        revision,
      });
    }
  }

  // ── host ─────────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * A VIP that is the host's own address on its network (hostOwnAddress) is refused before anything on the host
   * is touched: removing it at start or on stop would take the host off the network.
   */
  private async checkHostAddresses(): Promise<void> {
    for (const g of this.config.groups) {
      let addresses;
      try {
        addresses = await this.deps.vipPort.list(g.interface);
      } catch (e) {
        throw new CoordError(
          'ERR_COORD_NETLINK',
          `cannot list the addresses of ${g.interface}: ${errorMessage(e)}`,
          {
            hint: `check that interface ${g.interface} exists in this network namespace (ip link show)`,
            cause: e,
          },
        );
      }
      for (const vip of g.vips) {
        const own = hostOwnAddress(addresses, vip);
        if (own === undefined) continue;
        throw new CoordError(
          'ERR_COORD_CONFIG',
          `groups.${g.name}: VIP ${formatCidr(vip)} is a permanent primary address of ${g.interface} (${own.address}/${own.prefix}): this host's own address on that network`,
          {
            hint:
              'a VIP must be an address no host configures itself; pick a free address, or if this is a leftover ' +
              `of another tool, remove it first: ip addr del ${own.address}/${own.prefix} dev ${g.interface}`,
            details: { group: g.name, vip: formatCidr(vip), iface: g.interface },
          },
        );
      }
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

  /** Write the status when it changed (its volatile fields aside), when forced, or as a heartbeat. */
  private async publishStatus(force = false): Promise<void> {
    const health = this.view.health;
    this.deps.metrics?.etcdConnected.set(health.connected ? 1 : 0);
    this.deps.metrics?.etcdStaleness.set(Math.max(0, this.deps.clock.now() - health.lastHeardAt) / 1000);
    this.peerMetrics();
    this.vipMetrics();
    const leaseId = this.session.currentLeaseId;
    if (leaseId === null || this.stopped) return;
    const status = this.status();
    const now = this.deps.clock.now();
    // The revision moves with every write anyone makes, staleness and time with the clock: not changes of ours.
    const digest = JSON.stringify({
      ...status,
      at: 0,
      etcd: { ...status.etcd, revision: 0, staleMs: 0 },
      // Heartbeat ages change every interval: live in `status --local` and metrics, refreshed here with the rest.
      ...(status.peers === undefined ? {} : { peers: { ...status.peers, heartbeatAgeMs: {} } }),
    });
    const heartbeat = this.deps.statusMs ?? 30_000;
    const last = this.lastStatus;
    if (!force && last !== undefined && last.digest === digest && now - last.at < heartbeat) return;
    this.lastStatus = { digest, at: now };
    try {
      await this.store.putStatus(leaseId, status);
    } catch (e) {
      this.lastStatus = undefined;
      this.log.debug('status publish failed', { error: errorMessage(e) });
    }
  }
}

function readMembers(view: ReadonlyMap<string, Entry>, keys: ClusterKeys, log: Logger): MemberRecord[] {
  const out: MemberRecord[] = [];
  for (const [key, entry] of view) {
    if (!key.startsWith(keys.members)) continue;
    const m = decodeMember(entry.value);
    if (m === undefined) {
      log.warn('ignoring malformed member record', { key });
      continue;
    }
    out.push(m);
  }
  return out;
}

/**
 * The group's leader key: held whenever it exists, readable or not (an unreadable holder is shown as '?'). The
 * epoch is its mod revision: when the key got this holder (a campaign creates it, a handover re-puts it).
 */
function readLeader(entry: Entry | undefined): LeaderRecord | null {
  if (entry === undefined) return null;
  const v = decodeLeader(entry.value);
  return {
    node: v?.node ?? '?',
    epoch: entry.modRevision,
    leaseId: entry.lease,
    ...(v?.handover === undefined ? {} : { handedOverBy: v.handover.from }),
    ...(v?.handover?.reason === undefined ? {} : { handoverReason: v.handover.reason }),
  };
}

/** What a member record offers a holder handing over: the successor's last-holder facts. */
function takeoverOf(f: HolderFacts): NonNullable<MemberRecord['takeover']> {
  return {
    guardMs: f.guardMs,
    lifetimeMs: f.lifetimeMs,
    ...(f.holdMaxMs === undefined ? {} : { holdMaxMs: f.holdMaxMs }),
  };
}

/** A live member as this node's view has it. */
interface MemberInfo {
  readonly leaseId: string;
  /** Of its member key: a handover applies only to the record it read. */
  readonly modRevision: number;
  readonly peer?: { address: string; port: number };
  readonly takeover?: NonNullable<MemberRecord['takeover']>;
}

/**
 * Hybrid mode, per group: the addresses coord nodes send VRRP adverts from (their member records), and how many
 * nodes other than `self` advertise it now (candidates).
 */
function advertSources(
  members: readonly {
    node: string;
    candidate: boolean;
    groups: Readonly<Record<string, { vrrpFrom?: string | undefined }>>;
  }[],
  self: string,
): Map<string, { coord: Set<string>; others: number }> {
  const out = new Map<string, { coord: Set<string>; others: number }>();
  for (const m of members)
    for (const [group, g] of Object.entries(m.groups)) {
      if (g.vrrpFrom === undefined) continue;
      const e = out.get(group) ?? { coord: new Set<string>(), others: 0 };
      e.coord.add(g.vrrpFrom);
      if (m.node !== self && m.candidate) e.others++;
      out.set(group, e);
    }
  return out;
}

/** A standing as the member record carries it (why a node stands down is its own business). */
function publicStanding(s: { priority: number; preempt: boolean; preemptDelayMs: number }) {
  return { priority: s.priority, preempt: s.preempt, preemptDelayMs: s.preemptDelayMs };
}
