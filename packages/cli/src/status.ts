import { CoordError } from '@coord/core';
import {
  clusterKeys,
  decodeLeader,
  decodeMaintenance,
  decodeMember,
  decodeMove,
  decodeStatus,
  MOVE_PRIORITY,
  readPrefix,
  type StatusRecord,
} from '@coord/etcd';
import { modelFingerprint } from '@coord/agent';
import {
  decodeRollout,
  decodeServiceEntries,
  describeRollout,
  rolloutApplies,
  type RolloutRecord,
} from '@coord/haproxy';
import { withEtcdReader, type Target } from './target.js';

export interface ClusterStatus {
  readonly cluster: string;
  readonly revision: number;
  readonly members: {
    node: string;
    alive: true;
    /** False while the node may not be elected (view not synced, slow etcd acks): see its own status. */
    candidate: boolean;
    /** Why it may not be elected, as the node reported it (`slow-acks`, …; empty: not said). */
    blockedBy: string[];
    /** Its health checks failing now, each with its last error (empty: all pass, or none). */
    failingChecks: string[];
    /** `follows`: a sync group's follower, and the group it goes with. */
    groups: Record<string, { priority: number; preempt: boolean; follows?: string }>;
    lastSeenMsAgo: number | null;
    /** `coord maintenance on` for this node: by whom and why (null: not in maintenance). */
    maintenance: { by: string; reason: string } | null;
    version: string;
    /** Where the node hears peer-channel heartbeats (fast failover on), else null. */
    peer: { address: string; port: number } | null;
    /** The node's HAProxy loop, if it runs one; `converged` = it serves the model now in etcd. */
    haproxy: {
      result: string;
      revision: number;
      converged: boolean;
      error?: string;
      refused: number;
      /** Disabled servers (`service/server`) and their current sessions on that node. */
      draining?: Record<string, number>;
    } | null;
  }[];
  /** Fingerprint of the service model in etcd now (what every node should serve). */
  readonly model: { fingerprint: string; services: number; invalid: number };
  /** Rollouts of the services as they are now, each with a line saying where it is (`coord service set`). */
  readonly rollouts: (RolloutRecord & { summary: string })[];
  readonly groups: {
    name: string;
    holder: string | null;
    epoch: number | null;
    vips: string[];
    /** Where each VIP actually is, as the nodes report their interfaces. */
    vipLocations: Record<string, string[]>;
    /** `coord move`: to which node, by whom; `active` false once that node restarted (the record is inert). */
    move: { to: string; by: string; active: boolean } | null;
  }[];
}

/** Read the cluster's state from etcd: members (alive = their lease-bound key exists), holders, VIP locations. */
export function readClusterStatus(target: Target): Promise<ClusterStatus> {
  return withEtcdReader(target, async (client, cluster) => {
    const keys = clusterKeys(cluster);
    const { revision, entries } = await readPrefix(client, keys.prefix);
    // Nothing at all under the prefix: a cluster name nobody uses (a typo), not an empty cluster to report.
    if (entries.size === 0)
      throw new CoordError('ERR_COORD_USAGE', `no cluster ${cluster} in etcd: nothing under ${keys.prefix}`, {
        hint: 'check --cluster (or cluster: in the config file); a cluster appears once a node joins or a service is set',
      });
    // Anything can be written to etcd: every record is decoded by its codec, a bad one is shown as unknown.
    const statuses = new Map<string, StatusRecord>();
    const members: ClusterStatus['members'] = [];
    const groupNames = new Set<string>();
    const groupVips = new Map<string, Set<string>>();
    for (const [key, { value }] of entries) {
      const record = key.startsWith(keys.statuses) ? decodeStatus(value) : undefined;
      if (record !== undefined) statuses.set(key.slice(keys.statuses.length), record);
    }
    const serviceEntries = [...entries]
      .filter(([k]) => k.startsWith(keys.services))
      .map(([key, { value }]) => ({ key, value }));
    const decoded = decodeServiceEntries(cluster, serviceEntries);
    const model = {
      fingerprint: modelFingerprint([...decoded.services.values()]),
      services: decoded.services.size,
      invalid: decoded.errors.length,
    };
    const now = Date.now();
    for (const [key, { value }] of entries) {
      if (!key.startsWith(keys.members)) continue;
      // Read as the agents read it; a record they would ignore is still listed (alive), without groups.
      const m = decodeMember(value);
      const node = m?.node ?? key.slice(keys.members.length);
      const groups: Record<string, { priority: number; preempt: boolean; follows?: string }> = {};
      for (const [g, v] of Object.entries(m?.groups ?? {})) {
        groups[g] = {
          priority: v.priority,
          preempt: v.preempt,
          ...(v.follows === undefined ? {} : { follows: v.follows }),
        };
        groupNames.add(g);
        const set = groupVips.get(g) ?? new Set<string>();
        for (const vip of v.vips) set.add(vip);
        groupVips.set(g, set);
      }
      const st = statuses.get(node);
      const h = st?.haproxy;
      const mark = entries.get(keys.maintenance(node));
      const maint = mark === undefined ? null : decodeMaintenance(mark.value);
      members.push({
        node,
        alive: true,
        candidate: m?.candidate ?? true,
        blockedBy: [...(st?.candidacy?.blockedBy ?? [])],
        failingChecks: [...(st?.failingChecks ?? [])],
        maintenance: maint === null ? null : { by: maint.by, reason: maint.reason },
        groups,
        lastSeenMsAgo: st === undefined || st.at === 0 ? null : Math.max(0, now - st.at),
        version: m?.version ?? '',
        peer: m?.peer ?? null,
        haproxy:
          h === undefined
            ? null
            : {
                result: h.result,
                revision: h.revision,
                converged:
                  h.model === model.fingerprint && (h.result === 'applied' || h.result === 'unchanged'),
                refused: h.refused.length,
                ...(h.error === undefined ? {} : { error: h.error }),
                ...(h.draining === undefined ? {} : { draining: h.draining }),
              },
      });
    }
    for (const key of entries.keys()) {
      const m = /^groups\/([^/]+)\/leader$/.exec(key.slice(keys.prefix.length));
      if (m?.[1] !== undefined) groupNames.add(m[1]);
    }
    const groups: ClusterStatus['groups'] = [...groupNames].sort().map((name) => {
      const leader = entries.get(keys.leader(name));
      const holder = leader === undefined ? null : (decodeLeader(leader.value)?.node ?? '(unreadable)');
      const vips = [...(groupVips.get(name) ?? [])].sort();
      const vipLocations: Record<string, string[]> = {};
      for (const vip of vips) vipLocations[vip] = [];
      for (const [node, st] of statuses) {
        for (const g of st.groups) {
          if (g.name !== name) continue;
          for (const vip of g.vipsPresent) (vipLocations[vip] ??= []).push(node);
        }
      }
      const moveEntry = entries.get(keys.move(name));
      const mv = moveEntry === undefined ? undefined : decodeMove(moveEntry.value);
      const move =
        mv === undefined
          ? null
          : { to: mv.to, by: mv.by, active: entries.get(keys.member(mv.to))?.lease === mv.lease };
      return { name, holder, epoch: leader?.modRevision ?? null, vips, vipLocations, move };
    });
    members.sort((a, b) => a.node.localeCompare(b.node));
    const present = new Set(statuses.keys());
    const rollouts: ClusterStatus['rollouts'] = [];
    for (const [key, { value }] of entries) {
      if (!key.startsWith(keys.rollouts)) continue;
      const r = decodeRollout(value);
      if (r !== undefined && rolloutApplies(r, entries.get(keys.service(r.service))?.value))
        rollouts.push({ ...r, summary: describeRollout(r, present) });
    }
    return { cluster, revision, members, groups, model, rollouts };
  });
}

/** A node's reasons for not standing for election, in words (docs/design.md, "Candidacy"). */
const CANDIDACY_WORDS: Readonly<Record<string, string>> = {
  'no-session': 'no etcd session',
  'view-disconnected': 'its watch of etcd is down',
  'view-behind-session': 'its view of etcd lags its session',
  'slow-acks': 'etcd acks too slow to hold a VIP safely',
};

/** Human-readable status. */
export function formatClusterStatus(s: ClusterStatus): string {
  const lines: string[] = [`cluster ${s.cluster} (etcd revision ${s.revision})`, '', 'MEMBERS'];
  if (s.members.length === 0) lines.push('  (none alive)');
  for (const m of s.members) {
    const prio = Object.entries(m.groups)
      .map(([g, v]) =>
        v.follows !== undefined
          ? `${g}:with ${v.follows}`
          : v.priority === MOVE_PRIORITY
            ? `${g}:moved here`
            : `${g}:${v.priority}${v.preempt ? '' : ' no-preempt'}`,
      )
      .join(', ');
    const seen =
      m.lastSeenMsAgo === null ? 'no status yet' : `last seen ${(m.lastSeenMsAgo / 1000).toFixed(1)} s ago`;
    const cand =
      m.maintenance !== null
        ? `  MAINTENANCE${m.maintenance.reason === '' ? '' : ` (${m.maintenance.reason})`}: coord maintenance off --node ${m.node} ends it`
        : m.candidate
          ? ''
          : `  NOT A CANDIDATE (${m.blockedBy.length === 0 ? 'see coord status --local on that node' : m.blockedBy.map((b) => CANDIDACY_WORDS[b] ?? b).join('; ')})`;
    // Priority 0 with failing checks is a FAULT (a sync-group follower or a node in maintenance stands at 0 too).
    const faulted = Object.entries(m.groups)
      .filter(([, v]) => v.priority === 0 && v.follows === undefined)
      .map(([g]) => g);
    const health =
      m.failingChecks.length === 0
        ? ''
        : m.maintenance === null && faulted.length > 0
          ? `  FAULT ${faulted.join(', ')} (${m.failingChecks.join('; ')})`
          : `  checks failing: ${m.failingChecks.join('; ')}`;
    const fast = m.peer === null ? '' : `  fast failover (${m.peer.address}:${m.peer.port}/udp)`;
    lines.push(`  ${m.node.padEnd(16)} alive  priority ${prio.padEnd(20)} ${seen}${health}${cand}${fast}`);
  }
  const withHaproxy = s.members.filter((m) => m.haproxy !== null);
  if (withHaproxy.length > 0 || s.model.services > 0) {
    lines.push(
      '',
      `HAPROXY  model ${s.model.fingerprint} (${s.model.services} service${s.model.services === 1 ? '' : 's'}${s.model.invalid > 0 ? `, ${s.model.invalid} refused value(s)` : ''})`,
    );
    for (const m of s.members) {
      const h = m.haproxy;
      if (h === null) {
        lines.push(`  ${m.node.padEnd(16)} (no HAProxy loop)`);
        continue;
      }
      const state = h.converged ? 'serves the current model' : 'NOT CONVERGED';
      lines.push(
        `  ${m.node.padEnd(16)} ${state}  last apply ${h.result} at revision ${h.revision}${h.error === undefined ? '' : `  error: ${h.error}`}`,
      );
    }
    for (const r of s.rollouts) lines.push(`  ${r.summary}`);
  }
  lines.push('', 'GROUPS');
  if (s.groups.length === 0) lines.push('  (none)');
  for (const g of s.groups) {
    const moved =
      g.move === null
        ? ''
        : g.move.active
          ? `  MOVED to ${g.move.to}${g.move.by === '' ? '' : ` by ${g.move.by}`} (coord move ${g.name} --release ends it)`
          : `  (a move to ${g.move.to} ended: it restarted; coord move ${g.name} --release removes the record)`;
    lines.push(
      `  ${g.name.padEnd(16)} holder ${g.holder ?? '(none)'}${g.epoch === null ? '' : `  epoch ${g.epoch}`}${moved}`,
    );
    for (const vip of g.vips) {
      const at = g.vipLocations[vip] ?? [];
      const where = at.length === 0 ? 'on no interface' : `on ${at.join(', ')}`;
      const warn = at.length > 1 ? '  ← MORE THAN ONE HOLDER' : '';
      lines.push(`    ${vip.padEnd(22)} ${where}${warn}`);
    }
  }
  return lines.join('\n');
}

/** The part of a node's local status (its control socket's answer) the human form shows. Read defensively. */
interface LocalStatus {
  mode?: string;
  node?: string;
  status?: {
    session?: { leaseId: string | null; ttlMs: number };
    candidacy?: { candidate: boolean; blockedBy: readonly string[] };
    maintenance?: { by: string; reason: string; since: number };
    groups?: readonly {
      name: string;
      role?: string;
      state?: string;
      epoch?: number | null;
      leader?: { node: string; epoch: number } | null;
      vips?: readonly string[];
      vipsPresent?: readonly string[];
      vrid?: number;
      priority?: number;
      outage?: { holdingMsLeft: number | null; promisedTo: string | null };
      vrrp?: { vrid: number; foreignMaster: boolean; advertsSent: number };
    }[];
    etcd?: {
      connected: boolean;
      revision: number;
      staleMs: number;
      clientCert?: { expiresAt: string; daysLeft: number; warning?: string };
    };
    haproxy?: { result: string; revision: number; error?: string; refused?: readonly unknown[] } | null;
    peers?: { address: string; port: number; heartbeatAgeMs: Readonly<Record<string, number>> };
  };
  health?: {
    checks: readonly { kind: string; name: string; healthy: boolean; lastError?: string }[];
    groups: readonly { group: string; priority: number; fault: boolean; reasons: readonly string[] }[];
  };
}

/** `coord status --local` for a person: this node's groups, candidacy, etcd, HAProxy, checks and peers. */
export function formatLocalStatus(raw: unknown): string {
  const s = raw as Omit<LocalStatus, 'status'> & { status?: LocalStatus['status'] | unknown[] };
  // VRRP mode answers with its groups as the status itself.
  const st: NonNullable<LocalStatus['status']> = Array.isArray(s.status)
    ? { groups: s.status as NonNullable<NonNullable<LocalStatus['status']>['groups']> }
    : (s.status ?? {});
  const lines: string[] = [`node ${s.node ?? '?'} (mode ${s.mode ?? '?'})`];
  if (st.session !== undefined)
    lines.push(
      `  session  ${st.session.leaseId === null ? 'none' : `lease ${st.session.leaseId}, TTL ${st.session.ttlMs / 1000} s`}`,
    );
  if (st.maintenance !== undefined)
    lines.push(
      `  MAINTENANCE  since ${new Date(st.maintenance.since).toISOString()}${st.maintenance.by === '' ? '' : ` by ${st.maintenance.by}`}${st.maintenance.reason === '' ? '' : `: ${st.maintenance.reason}`} (coord maintenance off ends it)`,
    );
  if (st.candidacy !== undefined)
    lines.push(
      `  candidate  ${st.candidacy.candidate ? 'yes' : `NO (${st.candidacy.blockedBy.join(', ') || 'unknown'})`}`,
    );
  if (st.etcd !== undefined) {
    const e = st.etcd;
    const cert =
      e.clientCert === undefined
        ? ''
        : `, client certificate expires in ${e.clientCert.daysLeft} days${e.clientCert.warning === undefined ? '' : ` — ${e.clientCert.warning}`}`;
    lines.push(
      `  etcd  ${e.connected ? 'connected' : 'NOT CONNECTED'}, revision ${e.revision}, heard ${(e.staleMs / 1000).toFixed(1)} s ago${cert}`,
    );
  }
  lines.push('', 'GROUPS');
  const health = new Map((s.health?.groups ?? []).map((g) => [g.group, g]));
  for (const g of st.groups ?? []) {
    const role = g.role ?? g.state ?? '?';
    const h = health.get(g.name);
    const fault = h?.fault === true ? `  FAULT (${h.reasons.join('; ')})` : '';
    const prio =
      h !== undefined
        ? `  priority ${h.priority}`
        : g.priority !== undefined
          ? `  priority ${g.priority}`
          : '';
    const held =
      g.vipsPresent === undefined
        ? ''
        : `  VIPs here: ${g.vipsPresent.length === 0 ? 'none' : g.vipsPresent.join(', ')}`;
    const leader =
      g.leader === undefined
        ? ''
        : `  holder ${g.leader === null ? '(none)' : `${g.leader.node} (epoch ${g.leader.epoch})`}`;
    const vrid = g.vrid === undefined ? '' : `  vrid ${g.vrid}`;
    lines.push(`  ${g.name.padEnd(16)} ${role}${vrid}${prio}${leader}${held}${fault}`);
    if (g.outage?.holdingMsLeft != null)
      lines.push(
        `    etcd unreachable: holding the VIP on the others' promises, ${g.outage.holdingMsLeft} ms left`,
      );
    if (g.outage?.promisedTo != null)
      lines.push(`    etcd unreachable: promised ${g.outage.promisedTo} not to campaign`);
    if (g.vrrp !== undefined)
      lines.push(
        `    VRRP (hybrid) vrid ${g.vrrp.vrid}: ${g.vrrp.advertsSent} adverts sent; ${g.vrrp.foreignMaster ? 'a keepalived node is Master: not holding the group until it steps down' : 'no other VRRP Master'}`,
      );
  }
  const h = st.haproxy;
  if (h !== undefined && h !== null)
    lines.push(
      '',
      `HAPROXY  last apply ${h.result} at revision ${h.revision}${h.error === undefined ? '' : `  error: ${h.error}`}${(h.refused?.length ?? 0) > 0 ? `  ${h.refused?.length} refused value(s) in etcd` : ''}`,
    );
  const checks = s.health?.checks ?? [];
  if (checks.length > 0) {
    lines.push('', 'CHECKS');
    for (const c of checks)
      lines.push(
        `  ${`${c.kind} ${c.name}`.padEnd(40)} ${c.healthy ? 'healthy' : 'FAILING'}${c.lastError === undefined || c.healthy ? '' : `  ${c.lastError}`}`,
      );
  }
  if (st.peers !== undefined) {
    lines.push('', `PEERS  (this node hears on ${st.peers.address}:${st.peers.port}/udp)`);
    const ages = Object.entries(st.peers.heartbeatAgeMs);
    if (ages.length === 0) lines.push('  (no heartbeat yet)');
    for (const [peer, ms] of ages) lines.push(`  ${peer.padEnd(16)} last heartbeat ${ms} ms ago`);
  }
  return lines.join('\n');
}
