import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CoordError, errorMessage, listenRule, type Logger } from '@coord/core';

const ROLES = [
  'follower',
  'campaigning',
  'leader',
  'stopped',
  'fault',
  'initialize',
  'backup',
  'master',
] as const;

/** Every number coord exposes to Prometheus, in one place. */
export class Metrics {
  readonly registry = new Registry();
  readonly state = new Gauge({
    name: 'coord_group_state',
    help: '1 for the current role of each group',
    labelNames: ['group', 'role'],
    registers: [this.registry],
  });
  readonly epoch = new Gauge({
    name: 'coord_group_epoch',
    help: 'epoch (leader key mod revision: when it got its holder) while holding, else 0',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly transitions = new Counter({
    name: 'coord_transitions_total',
    help: 'role changes, by the reason the group gave',
    labelNames: ['group', 'to', 'reason'],
    registers: [this.registry],
  });
  readonly lastFailover = new Gauge({
    name: 'coord_last_failover_seconds',
    help: 'time from noticing the group vacant (or handed to this node) to the VIP on our interface, last takeover',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly announcements = new Counter({
    name: 'coord_announcements_total',
    help: 'gratuitous ARP / NA frames sent',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly vrrpDropped = new Gauge({
    name: 'coord_vrrp_dropped_packets',
    help: 'VRRP packets dropped, by reason',
    labelNames: ['group', 'reason'],
    registers: [this.registry],
  });
  readonly peerHeartbeatAge = new Gauge({
    name: 'coord_peer_heartbeat_age_seconds',
    help: 'fast failover: time since the newest heartbeat from each peer',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  readonly peerDropped = new Gauge({
    name: 'coord_peer_dropped_datagrams',
    help: 'fast failover: peer-channel datagrams dropped, by reason (mac, replayed, stale-lease, …)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly fastFailoverRevokes = new Counter({
    name: 'coord_fast_failover_revokes_total',
    help: 'fast failover: silent holders whose lease this node revoked after a quiet wire',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly outageHolding = new Gauge({
    name: 'coord_etcd_outage_holding',
    help: 'etcd outage hold: 1 while this node keeps the group’s VIP past its lease on the other members’ promises',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly outagePromised = new Gauge({
    name: 'coord_etcd_outage_promised',
    help: 'etcd outage hold: 1 while this node is bound by a promise not to campaign for the group',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'coord_haproxy_reloads_total',
    help: 'HAProxy config applies, by result (runtime: server changes applied without a reload)',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly reloadSeconds = new Histogram({
    name: 'coord_haproxy_reload_duration_seconds',
    help: 'render + check + swap + reload + confirm',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly etcdStaleness = new Gauge({
    name: 'coord_etcd_staleness_seconds',
    help: 'time since the cluster view last heard from etcd',
    registers: [this.registry],
  });
  readonly etcdConnected = new Gauge({
    name: 'coord_etcd_connected',
    help: '1 when the watch is connected',
    registers: [this.registry],
  });
  readonly trackResult = new Gauge({
    name: 'coord_track_healthy',
    help: '1 when a tracked script or interface is healthy',
    labelNames: ['check'],
    registers: [this.registry],
  });
  readonly etcdCertExpiry = new Gauge({
    name: 'coord_etcd_client_cert_expiry_seconds',
    help: 'seconds until the etcd client certificate expires (negative: expired)',
    registers: [this.registry],
  });
  readonly candidate = new Gauge({
    name: 'coord_candidate',
    help: '1 while this node may be elected (session up, view synced since it began, prompt etcd acks)',
    registers: [this.registry],
  });
  readonly wireAnswers = new Counter({
    name: 'coord_wire_answers_total',
    help: 'takeovers that waited because the VIP was still answered on the wire (a stale copy elsewhere)',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly vipRemovalFailures = new Counter({
    name: 'coord_vip_removal_failures_total',
    help: 'VIP removals that failed (the node then lets its lease expire instead of resigning)',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly vipPresent = new Gauge({
    name: 'coord_vip_present',
    help: "how many of the group's VIPs are on this node's interface now (kernel address events)",
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly effectivePriority = new Gauge({
    name: 'coord_effective_priority',
    help: 'priority after track weights (0 = fault)',
    labelNames: ['group'],
    registers: [this.registry],
  });

  private processMetrics = false;

  /**
   * Node's process metrics (memory, CPU, event loop delay) — only when they are served: the event-loop-delay
   * monitor wakes the process every `eventLoopMonitoringPrecision` ms, work an idle agent should not do for
   * nobody. 100 ms is plenty for a scrape every few seconds.
   */
  enableProcessMetrics(): void {
    if (this.processMetrics) return;
    this.processMetrics = true;
    collectDefaultMetrics({
      register: this.registry,
      prefix: 'coord_process_',
      eventLoopMonitoringPrecision: 100,
    });
  }

  setRole(group: string, role: string): void {
    for (const r of ROLES) this.state.set({ group, role: r }, r === role ? 1 : 0);
  }
}

/** Parse `ADDR:PORT` (IPv6 as `[::1]:9100`) with the rule the config schema uses (core/rules.ts). */
export function parseListen(text: string): { host: string; port: number } {
  const r = listenRule(text);
  if (!r.ok)
    throw new CoordError('ERR_COORD_CONFIG', `metrics: ${r.reason}`, {
      hint: 'e.g. --metrics 127.0.0.1:9100',
    });
  return r.value;
}

/** Serve `/metrics` (Prometheus text format). */
export async function serveMetrics(metrics: Metrics, listen: string, logger: Logger): Promise<Server> {
  const { host, port } = parseListen(listen);
  metrics.enableProcessMetrics();
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: unknown) => res.writeHead(500).end(`${errorMessage(e)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new CoordError('ERR_COORD_CONFIG', `metrics: cannot listen on ${listen}: ${errorMessage(e)}`, {
          cause: e,
          hint: 'pick a free ADDR:PORT for --metrics',
        }),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  logger.info('metrics listening', { listen });
  return server;
}
