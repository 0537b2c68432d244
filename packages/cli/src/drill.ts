/**
 * `coord drill GROUP`: prove a planned failover on the real network. The group is moved to the next node and back
 * (two `coord move`s, docs/design.md "Moving a group"), while this host probes the VIP on the group's interface
 * every few milliseconds (RFC 5227 ARP probes, the same frames a new holder sends before it claims) and notes
 * which MAC answers. Each step's timeline is the last answer from the old holder's MAC, the first from the new
 * one, and the gap between them; a step fails when the gap exceeds the bound, when both MACs answer one probe
 * (two holders on the wire) or when the new holder never answers.
 *
 * A host does not hear its own ARP replies, so when this host is one of the two holders its side of the timeline
 * is the VIP's presence on its own interface, sampled at the same ticks.
 */
import { readFile } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { CoordError, errorMessage, formatCidr, type NodeConfig, type Vip } from '@coord/core';
import {
  clusterKeys,
  decodeLeader,
  decodeMember,
  decodeMove,
  encodeMove,
  readPrefix,
  type ClusterKeys,
  type EtcdBackend,
  type Entry,
} from '@coord/etcd';
import type { ProbeSession, VipPort } from '@coord/vip';
import { checkMoveTarget } from './move.js';

/** How often the VIP is probed (and this host's own interface read). */
export const DRILL_PROBE_MS = 5;
/** How long a step may take before it counts as failed: the move record written until the new MAC answers. */
export const DRILL_STEP_TIMEOUT_MS = 10_000;
/** After the new MAC first answers, keep probing this long: an old MAC answering then means two holders. */
export const DRILL_AFTER_MS = 300;

/** One probe round: when its answers were read (ms since the drill began) and the MACs that answered. */
export interface Tick {
  readonly at: number;
  readonly macs: readonly string[];
}

export interface StepVerdict {
  readonly from: string;
  readonly to: string;
  readonly fromMac: string;
  /** The first MAC other than `fromMac` that answered after the move was written (null: none did). */
  readonly toMac: string | null;
  /** The move record was written (ms since the drill began). */
  readonly movedAt: number;
  /** Last round the old MAC answered before the new one first did (null: it had stopped before the move). */
  readonly lastOldAt: number | null;
  readonly firstNewAt: number | null;
  /** firstNewAt − lastOldAt: how long nobody answered for the VIP, to within one probe interval. */
  readonly gapMs: number | null;
  /** Rounds from the new MAC's first answer on in which the old MAC answered too (two holders on the wire). */
  readonly overlapRounds: number;
  readonly ok: boolean;
  /** Why the step failed, in words. */
  readonly problem?: string;
}

/**
 * Judge one step from the rounds probed after its move was written. Pure: the unit tests drive it with made-up
 * timelines.
 */
export function judgeStep(
  step: { from: string; to: string; fromMac: string; movedAt: number },
  ticks: readonly Tick[],
  maxGapMs: number,
): StepVerdict {
  const after = ticks.filter((t) => t.at >= step.movedAt);
  const first = after.find((t) => t.macs.some((m) => m !== step.fromMac));
  const toMac = first?.macs.find((m) => m !== step.fromMac) ?? null;
  const base = { ...step, toMac };
  if (first === undefined || toMac === null)
    return {
      ...base,
      lastOldAt: null,
      firstNewAt: null,
      gapMs: null,
      overlapRounds: 0,
      ok: false,
      problem: `no answer from another MAC than ${step.fromMac} (${step.from}) within ${DRILL_STEP_TIMEOUT_MS / 1000} s`,
    };
  const lastOld = [...ticks]
    .filter((t) => t.at < first.at && t.macs.includes(step.fromMac))
    .reduce<number | null>((m, t) => (m === null || t.at > m ? t.at : m), null);
  // From the new MAC's first round on, any round the old MAC answered means two holders on the wire.
  const overlapRounds = after.filter((t) => t.at >= first.at && t.macs.includes(step.fromMac)).length;
  const gapMs = lastOld === null ? null : first.at - lastOld;
  const problems: string[] = [];
  if (overlapRounds > 0)
    problems.push(
      `${step.fromMac} (${step.from}) still answered after ${toMac} (${step.to}) did, in ${overlapRounds} probe round(s): two holders on the wire`,
    );
  if (gapMs !== null && gapMs > maxGapMs)
    problems.push(`the gap of ${gapMs.toFixed(1)} ms is over the bound of ${maxGapMs} ms`);
  return {
    ...base,
    lastOldAt: lastOld,
    firstNewAt: first.at,
    gapMs,
    overlapRounds,
    ok: problems.length === 0,
    ...(problems.length === 0 ? {} : { problem: problems.join('; ') }),
  };
}

/**
 * The node a drill moves the group to when none is named: the best other member that could hold it now (standing
 * with a priority, a candidate, not following a sync group) — highest priority, then name.
 */
export function nextNode(
  entries: ReadonlyMap<string, Entry>,
  keys: ClusterKeys,
  group: string,
  holder: string,
): string | undefined {
  const options: { node: string; priority: number }[] = [];
  for (const [k, { value }] of entries) {
    if (!k.startsWith(keys.members)) continue;
    const m = decodeMember(value);
    const standing = m?.groups[group];
    if (m === undefined || standing === undefined || m.node === holder) continue;
    if (!m.candidate || standing.priority < 1 || standing.follows !== undefined) continue;
    options.push({ node: m.node, priority: standing.priority });
  }
  options.sort((a, b) => b.priority - a.priority || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return options[0]?.node;
}

export interface DrillOptions {
  readonly group: string;
  readonly to?: string | undefined;
  readonly maxGapMs: number;
}

export interface DrillReport {
  readonly group: string;
  readonly vip: string;
  readonly iface: string;
  /** This node (it probes). */
  readonly from: string;
  readonly probeMs: number;
  readonly maxGapMs: number;
  readonly steps: readonly StepVerdict[];
  readonly ok: boolean;
}

export interface DrillPorts {
  readonly etcd: EtcdBackend;
  readonly cluster: string;
  /** A probe session on the group's interface for its VIP. */
  readonly probe: ProbeSession;
  readonly addresses: VipPort;
  /** This host's MAC on the interface (its own answers are its VIP's presence there). */
  readonly localMac: string;
  readonly log: (line: string) => void;
}

/** The VIP a drill probes: the group's first IPv4 one (ARP), else its first (neighbour discovery). */
export function drillVip(vips: readonly Vip[]): Vip {
  const v = vips.find((x) => x.family === 4) ?? vips[0];
  if (v === undefined) throw new CoordError('ERR_COORD_CONFIG', 'the group has no VIP to probe');
  return v;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The drill itself, on ports (etcd, the wire, this host's addresses); see the module comment. */
export async function runDrill(config: NodeConfig, o: DrillOptions, p: DrillPorts): Promise<DrillReport> {
  const group = config.groups.find((g) => g.name === o.group);
  if (group === undefined)
    throw new CoordError('ERR_COORD_USAGE', `group ${o.group} is not in this node's config`, {
      hint: `coord drill probes the VIP from a node of the group; groups here: ${config.groups.map((g) => g.name).join(', ') || 'none'}`,
    });
  const vip = drillVip(group.vips);
  const keys = clusterKeys(p.cluster);
  const moveKey = keys.move(o.group);
  const start = performance.now();
  const now = (): number => performance.now() - start;
  const ticks: Tick[] = [];
  let stopped = false;
  const sampler = (async () => {
    p.probe.probe();
    while (!stopped) {
      await sleep(DRILL_PROBE_MS);
      const macs = new Set(
        p.probe
          .drain()
          .filter((a) => a.address === vip.address)
          .map((a) => a.mac),
      );
      try {
        const here = await p.addresses.list(group.interface);
        if (here.some((a) => a.address === vip.address)) macs.add(p.localMac);
      } catch {
        // A failed read is a round without this host's answer; the wire still speaks for the others.
      }
      ticks.push({ at: now(), macs: [...macs] });
      p.probe.probe();
    }
  })();

  const { entries } = await readPrefix(p.etcd, keys.prefix);
  const existing = entries.get(moveKey);
  if (existing !== undefined) {
    const m = decodeMove(existing.value);
    stopped = true;
    await sampler;
    throw new CoordError(
      'ERR_COORD_USAGE',
      `a move of ${o.group}${m === undefined ? '' : ` to ${m.to}`} is in effect: a drill would end it`,
      { hint: `coord move ${o.group} --release first (or drill another group)` },
    );
  }
  const leaderEntry = entries.get(keys.leader(o.group));
  const holder = leaderEntry === undefined ? undefined : decodeLeader(leaderEntry.value)?.node;
  let written: number | undefined;
  const steps: StepVerdict[] = [];
  try {
    if (holder === undefined)
      throw new CoordError('ERR_COORD_USAGE', `nobody holds ${o.group} now: nothing to drill`, {
        hint: 'coord status says why (no candidate, FAULT, etcd trouble)',
      });
    const target = o.to ?? nextNode(entries, keys, o.group, holder);
    if (target === undefined)
      throw new CoordError('ERR_COORD_USAGE', `no other node can hold ${o.group} now`, {
        hint: 'a drill needs a second alive member of the group that is a candidate and not FAULT (coord status)',
      });
    if (target === holder)
      throw new CoordError('ERR_COORD_USAGE', `${target} already holds ${o.group}`, {
        hint: 'name another node with --to, or leave --to out for the next one by priority',
      });
    // Who answers now: exactly one MAC, for 100 ms.
    await sleep(100);
    const seen = new Set(ticks.flatMap((t) => t.macs));
    if (seen.size !== 1)
      throw new CoordError(
        'ERR_COORD_USAGE',
        seen.size === 0
          ? `nobody answers for ${vip.address} on ${group.interface} from here: nothing to drill`
          : `${[...seen].join(' and ')} answer for ${vip.address} already: two holders, not drilling`,
        { hint: 'coord status and coord doctor on the nodes of the group' },
      );
    let mac = [...seen][0] as string;
    p.log(
      `drill of ${o.group} (${formatCidr(vip)} on ${group.interface}): ${holder} → ${target} → ${holder}, ` +
        `probed from ${config.node} every ${DRILL_PROBE_MS} ms`,
    );
    for (const [from, to] of [
      [holder, target],
      [target, holder],
    ] as const) {
      const fresh = await readPrefix(p.etcd, keys.prefix);
      const { lease } = checkMoveTarget(fresh.entries, keys, p.cluster, o.group, to);
      const movedAt = now();
      written = (
        await p.etcd.put(
          moveKey,
          encodeMove({ to, lease, by: `drill ${userInfo().username}@${hostname()}`, at: Date.now() }),
        )
      ).revision;
      const fromMac = mac;
      let answeredAt: number | undefined;
      while (now() - movedAt < DRILL_STEP_TIMEOUT_MS) {
        await sleep(20);
        const t = ticks.find((k) => k.at >= movedAt && k.macs.some((m) => m !== fromMac));
        if (t !== undefined) answeredAt ??= t.at;
        if (answeredAt !== undefined && now() - answeredAt >= DRILL_AFTER_MS) break;
      }
      const verdict = judgeStep({ from, to, fromMac, movedAt }, ticks, o.maxGapMs);
      steps.push(verdict);
      p.log(formatStep(verdict));
      if (verdict.toMac === null) break;
      mac = verdict.toMac;
    }
  } finally {
    stopped = true;
    await sampler;
    if (written !== undefined) {
      // Leave the cluster as the drill found it: no move record, priorities decide.
      const { entry } = await p.etcd.get(moveKey);
      if (entry !== undefined && entry.modRevision === written)
        await p.etcd
          .txn([{ key: moveKey, target: 'mod', value: written }], [{ type: 'delete', key: moveKey }])
          .catch((e: unknown) =>
            p.log(
              `could not remove the drill's move record: ${errorMessage(e)} (coord move ${o.group} --release)`,
            ),
          );
    }
  }
  return {
    group: o.group,
    vip: formatCidr(vip),
    iface: group.interface,
    from: config.node,
    probeMs: DRILL_PROBE_MS,
    maxGapMs: o.maxGapMs,
    steps,
    ok: steps.length === 2 && steps.every((s) => s.ok),
  };
}

const ms = (v: number | null): string => (v === null ? '—' : `${v.toFixed(1)} ms`);

/** One step as `coord drill` prints it. */
export function formatStep(s: StepVerdict): string {
  const line =
    `${s.from} → ${s.to}: last answer from ${s.fromMac} at +${ms(s.lastOldAt === null ? null : s.lastOldAt - s.movedAt)}, ` +
    `first from ${s.toMac ?? '—'} at +${ms(s.firstNewAt === null ? null : s.firstNewAt - s.movedAt)} ` +
    `(after the move was written): gap ${ms(s.gapMs)}`;
  return s.ok ? `  ${line}` : `  ${line}\n  FAILED: ${s.problem ?? 'unknown'}`;
}

/** The last line of `coord drill`. */
export function formatVerdict(r: DrillReport): string {
  if (r.ok)
    return `ok: ${r.group} went ${r.steps.map((s) => s.from).join(' → ')} → ${r.steps.at(-1)?.to ?? ''} with gaps of ${r.steps.map((s) => ms(s.gapMs)).join(' and ')} (bound ${r.maxGapMs} ms, resolution ${r.probeMs} ms)`;
  return `FAILED: the drill of ${r.group} did not pass (see above); the move record is removed, priorities decide`;
}

/** This host's MAC on `iface`, as the kernel reports it. */
export async function interfaceMac(iface: string): Promise<string> {
  try {
    return (await readFile(`/sys/class/net/${iface}/address`, 'utf8')).trim().toLowerCase();
  } catch (e) {
    throw new CoordError('ERR_COORD_USAGE', `cannot read the MAC of ${iface}: ${errorMessage(e)}`, {
      hint: `check that interface ${iface} exists in this network namespace (ip link show)`,
    });
  }
}
