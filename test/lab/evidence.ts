/**
 * One check for every failover a lab test provokes, so that "never two holders" cannot pass without having seen
 * anything: the exact overlap from kernel events is 0 ms, the holder at the start and at the end are the expected
 * ones, the expected removals and additions happened, every `ip monitor` and prober was alive and reporting at
 * the end, and the client got answers both before and after the fault.
 *
 * Pure functions over what the observers returned (`*Problems` list what is wrong, `assert*` throws with the whole
 * list), plus `watchVip`, which starts the observers together. coord's own account of a removal comes from its
 * JSON log ('vip released' / 'transition' lines and their `reason`), read by {@link coordReleases}.
 */
import {
  doubleReplyProbes,
  holderAt,
  holderIntervals,
  type AddressEvent,
  type ArpTimeline,
  type IcmpTimeline,
  type ObserverHealth,
  type Timeline,
} from './analysis.js';
import type { ArpProber, IcmpProber, Sampler } from './observe.js';
import { waitFor } from './proc.js';

/** Everything the lab saw of one VIP during one scenario. */
export interface Evidence {
  timeline: Timeline;
  arp?: ArpTimeline;
  icmp?: IcmpTimeline;
  /** Host name → MAC, to tell which host answered the client. */
  macs: Readonly<Record<string, string>>;
}

export interface HandoverExpectation {
  /** Sole holder when observation began; null when nobody held the VIP. */
  initial: string | null;
  /** Sole holder when observation ended; null when nobody held it. */
  final: string | null;
  /**
   * Address events that must have happened, in this order, as `host:add` / `host:del` (other events may come in
   * between unless `onlyEvents`).
   */
  events?: readonly string[];
  /** The events must be exactly `events` (no flap, no extra move). */
  onlyEvents?: boolean;
  /**
   * Total overlap tolerated, in ms. 0 (the default) for coord's etcd mode; only VRRP, whose preemption overlaps
   * by design (RFC 5798 §6.4.3), may ask for more.
   */
  allowOverlapMs?: number;
  /**
   * When the fault was injected. The probers must have had answers before it (from the initial holder) and after
   * it (from the final holder, once it had added the VIP).
   */
  faultAt?: number;
  /**
   * A host whose cable was pulled at `from`: from then on its copy of the VIP answers nobody, and when its kernel
   * deletes that (expired) copy is not bounded (docs/design.md, "Kernel") — nor visible to a successor's wire
   * check. Its overlap with another holder is then judged on the wire instead: no ARP probe may be answered by two
   * MACs (the ARP prober is required), and its delete may come before or after the successor's add.
   */
  withoutCarrier?: { host: string; from: number };
}

const fmt = (hs: readonly string[]): string => (hs.length === 0 ? 'nobody' : hs.join('+'));

function observerProblems(observers: readonly ObserverHealth[]): string[] {
  return observers
    .filter((o) => !o.aliveAtStop || !o.responsive)
    .map(
      (o) =>
        `observer ${o.name} was not working at the end (${o.aliveAtStop ? 'alive' : 'dead'}, ` +
        `${o.responsive ? 'responsive' : 'unresponsive'}${o.detail === undefined ? '' : `: ${o.detail}`})`,
    );
}

/** Intervals (from exact kernel events) in which two or more hosts held the VIP. */
export function overlaps(timeline: Timeline): { from: number; to: number; hosts: string[] }[] {
  const out: { from: number; to: number; hosts: string[] }[] = [];
  const intervals = holderIntervals(timeline);
  for (let i = 0; i < intervals.length; i++) {
    for (let j = i + 1; j < intervals.length; j++) {
      const a = intervals[i];
      const b = intervals[j];
      if (a === undefined || b === undefined || a.host === b.host) continue;
      const from = Math.max(a.from, b.from);
      const to = Math.min(a.to, b.to);
      if (to > from) out.push({ from, to, hosts: [a.host, b.host].sort() });
    }
  }
  return out;
}

/** Whether `want` occurs in `have` in order (as a subsequence). */
function inOrder(have: readonly string[], want: readonly string[]): boolean {
  let i = 0;
  for (const h of have) if (h === want[i]) i++;
  return i === want.length;
}

/** Everything that is wrong with `ev` as evidence of the handover `x`; empty when it is sound. */
export function handoverProblems(ev: Evidence, x: HandoverExpectation): string[] {
  const { timeline } = ev;
  const problems: string[] = [];
  problems.push(...observerProblems(timeline.observers));
  if (timeline.observers.length === 0) problems.push('the sampler watched no host');
  if (ev.arp !== undefined) problems.push(...observerProblems([ev.arp.observer]));
  if (ev.icmp !== undefined) problems.push(...observerProblems([ev.icmp.observer]));

  const dark = x.withoutCarrier;
  const counted = overlaps(timeline).filter(
    (o) => dark === undefined || !(o.hosts.includes(dark.host) && o.from >= dark.from),
  );
  const overlapMs = counted.reduce((n, o) => n + (o.to - o.from), 0);
  if (dark !== undefined) {
    if (ev.arp === undefined)
      problems.push(`withoutCarrier needs the ARP prober (two holders are judged on the wire)`);
    else {
      const two = doubleReplyProbes(ev.arp);
      if (two.length > 0)
        problems.push(
          `${two.length} ARP probes answered by two MACs (first at ${two[0]?.t ?? 0}: ${two[0]?.macs.join('+') ?? ''})`,
        );
    }
  }
  if (overlapMs > (x.allowOverlapMs ?? 0)) {
    const where = counted
      .slice(0, 3)
      .map((o) => `${o.hosts.join('+')} ${o.to - o.from} ms at ${o.from}`)
      .join('; ');
    problems.push(`two holders for ${overlapMs} ms in total (${where}), allowed ${x.allowOverlapMs ?? 0} ms`);
  }

  const wantInitial = x.initial === null ? [] : [x.initial];
  if (fmt(timeline.initial) !== fmt(wantInitial))
    problems.push(`held by ${fmt(timeline.initial)} at the start, expected ${fmt(wantInitial)}`);
  const atEnd = holderAt(timeline, timeline.end);
  const wantFinal = x.final === null ? [] : [x.final];
  if (fmt(atEnd) !== fmt(wantFinal))
    problems.push(`held by ${fmt(atEnd)} at the end, expected ${fmt(wantFinal)}`);

  const seen = timeline.events.map((e) => `${e.host}:${e.op}`);
  if (x.events !== undefined) {
    // Without carrier, that host's delete and the successor's add may come in either order (see withoutCarrier).
    const key = (l: readonly string[]) => (dark === undefined ? l.join() : [...l].sort().join());
    const ok = x.onlyEvents === true ? key(seen) === key(x.events) : inOrder(seen, x.events);
    if (!ok)
      problems.push(
        `address events [${seen.join(', ')}], expected ${x.onlyEvents === true ? 'exactly' : 'in order'} [${x.events.join(', ')}]`,
      );
  }

  if (x.faultAt !== undefined) {
    const faultAt = x.faultAt;
    if (faultAt < timeline.start || faultAt > timeline.end)
      problems.push(
        `the fault (${faultAt}) is outside the observed window ${timeline.start}-${timeline.end}`,
      );
    const macOf = (host: string | null): string | undefined =>
      host === null ? undefined : ev.macs[host]?.toLowerCase();
    const initialMac = macOf(x.initial);
    const finalMac = macOf(x.final);
    // The final holder answers only once it has the VIP: after its last add (or from the start if it never moved).
    const finalSince =
      x.final === null
        ? faultAt
        : Math.max(
            faultAt,
            timeline.events.filter((e) => e.host === x.final && e.op === 'add').at(-1)?.t ?? faultAt,
          );
    if (ev.arp !== undefined) {
      const { replies } = ev.arp;
      if (initialMac !== undefined && !replies.some((r) => r.t < faultAt && r.mac === initialMac))
        problems.push(`no ARP answer from ${x.initial ?? ''} (${initialMac}) before the fault`);
      if (finalMac !== undefined && !replies.some((r) => r.t > finalSince && r.mac === finalMac))
        problems.push(`no ARP answer from ${x.final ?? ''} (${finalMac}) after the fault`);
      if (!ev.arp.probes.some((t) => t > faultAt))
        problems.push('the ARP prober sent no probe after the fault');
    }
    if (ev.icmp !== undefined) {
      if (x.initial !== null && !ev.icmp.replies.some((r) => r.t < faultAt))
        problems.push('no ping reply before the fault');
      if (x.final !== null && !ev.icmp.replies.some((r) => r.t > finalSince))
        problems.push('no ping reply after the fault');
    }
  }
  return problems;
}

/** Throws one error listing every problem of {@link handoverProblems}. */
export function assertHandover(ev: Evidence, x: HandoverExpectation): void {
  const problems = handoverProblems(ev, x);
  if (problems.length > 0) {
    throw new Error(
      `handover evidence (${ev.timeline.vip}) is not sound:\n  - ${problems.join('\n  - ')}\n` +
        `  events: ${JSON.stringify(ev.timeline.events)}`,
    );
  }
}

/** A 'vip released' line of a coord node: coord removed an address that was still there (not the kernel). */
export interface CoordRelease {
  t: number;
  reason: string;
  vips: string[];
}

/** A 'transition' line of a coord node. */
export interface CoordTransition {
  t: number;
  from: string;
  to: string;
  reason: string;
}

const timeOf = (l: Record<string, unknown>): number => Date.parse(text(l['timestamp']));
/** A log field as text ('' when absent or not a scalar). */
const text = (v: unknown): string =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';

/**
 * coord's own account of removing its VIP: every 'vip released' line at or after `since`. coord writes it only
 * when its netlink delete found the address present, so each line proves the removal was coord's and came before
 * the kernel's lifetime expiry could take the address.
 */
export function coordReleases(log: readonly Record<string, unknown>[], since = -Infinity): CoordRelease[] {
  return log
    .filter((l) => l['message'] === 'vip released' && timeOf(l) >= since)
    .map((l) => ({
      t: timeOf(l),
      reason: text(l['reason']),
      vips: Array.isArray(l['vips']) ? l['vips'].map(text) : [],
    }));
}

/** When the host logged that its VIP's kernel lifetime had run out ('vip expired on holder'). */
export function coordExpiries(log: readonly Record<string, unknown>[]): number[] {
  return log.filter((l) => l['message'] === 'vip expired on holder').map(timeOf);
}

/** Every 'transition' line at or after `since`. */
export function coordTransitions(
  log: readonly Record<string, unknown>[],
  since = -Infinity,
): CoordTransition[] {
  return log
    .filter((l) => l['message'] === 'transition' && timeOf(l) >= since)
    .map((l) => ({
      t: timeOf(l),
      from: text(l['from']),
      to: text(l['to']),
      reason: text(l['reason']),
    }));
}

export interface FencedRemovalExpectation {
  /** The host that fenced itself. */
  host: string;
  /** When the fault that should make it fence began. */
  faultAt: number;
  /** coord's release must be logged by then (its own deadline plus scheduling slack). */
  releasedBy: number;
}

/**
 * Problems with the claim "`host` removed the VIP itself when it fenced, before the kernel's lifetime could have":
 * coord logged a 'vip released' for the VIP with a reason starting "fenced" after the fault and by `releasedBy`,
 * and the sampler saw the matching delete on that host (the only one after the fault).
 */
export function fencedRemovalProblems(
  ev: Evidence,
  log: readonly Record<string, unknown>[],
  x: FencedRemovalExpectation,
): string[] {
  const problems: string[] = [];
  const vip = ev.timeline.vip;
  const releases = coordReleases(log, x.faultAt).filter((r) => r.vips.some((v) => v.split('/')[0] === vip));
  const fenced = releases.find((r) => r.reason.startsWith('fenced'));
  if (fenced === undefined) {
    problems.push(
      `${x.host} logged no 'vip released' with a "fenced…" reason after the fault` +
        ` (releases: ${JSON.stringify(releases)}): the address went some other way (kernel lifetime?)`,
    );
  } else if (fenced.t > x.releasedBy) {
    problems.push(
      `${x.host} released the VIP ${fenced.t - x.faultAt} ms after the fault, after its deadline`,
    );
  }
  const dels = ev.timeline.events.filter((e) => e.host === x.host && e.op === 'del' && e.t >= x.faultAt);
  if (dels.length !== 1)
    problems.push(`${dels.length} delete events on ${x.host} after the fault, expected 1`);
  return problems;
}

/** Throws with every problem of {@link fencedRemovalProblems}; returns coord's fenced release. */
export function assertFencedRemoval(
  ev: Evidence,
  log: readonly Record<string, unknown>[],
  x: FencedRemovalExpectation,
): CoordRelease {
  const problems = fencedRemovalProblems(ev, log, x);
  if (problems.length > 0) throw new Error(`fenced removal not shown:\n  - ${problems.join('\n  - ')}`);
  const vip = ev.timeline.vip;
  return coordReleases(log, x.faultAt).find(
    (r) => r.reason.startsWith('fenced') && r.vips.some((v) => v.split('/')[0] === vip),
  ) as CoordRelease;
}

/**
 * Problems with the claim "every time a host lost the VIP, it was that host's coord fencing itself": each delete
 * event must have a 'vip released' line on that host with a reason "fenced" or "session-lost", within
 * `withinMs` of the event (the log is written right after the netlink delete returns; the event is read by an
 * observer). A removal with no such line was the kernel's lifetime expiry or something else, not a fence —
 * unless it was not a move at all: the holder's own copy expired and the holder restored it (its log says so)
 * before anybody else added the VIP.
 */
export function unfencedRemovals(
  ev: Evidence,
  logs: ReadonlyMap<string, readonly Record<string, unknown>[]>,
  withinMs = 1000,
): string[] {
  const vip = ev.timeline.vip;
  const problems: string[] = [];
  const events = ev.timeline.events;
  for (const del of events.filter((e) => e.op === 'del')) {
    const releases = coordReleases(logs.get(del.host) ?? []).filter((r) =>
      r.vips.some((v) => v.split('/')[0] === vip),
    );
    const match = releases.find((r) => Math.abs(r.t - del.t) <= withinMs);
    // Not a move: the holder's own copy ran out (no prompt ack to refresh it with) and the holder put it back
    // itself (a refresh re-creates it, or the reconcile restores it) — the next event is its own add, nobody
    // else's, within `withinMs`. A blip on the holder, counted by blips(), not a missing fence.
    if (match === undefined && isBlip(events, del, withinMs)) continue;
    // The kernel ended the copy's lifetime — the fence that needs no coord — and the holder said so when it saw
    // the address go ('vip expired on holder'); what moved the VIP after it is judged by the release rules.
    if (
      match === undefined &&
      coordExpiries(logs.get(del.host) ?? []).some((t) => Math.abs(t - del.t) <= withinMs)
    )
      continue;
    if (match === undefined)
      problems.push(`${del.host} lost the VIP at ${del.t} without a release in its log`);
    else if (!/^(fenced|session-lost)$/.test(match.reason))
      problems.push(`${del.host} released the VIP at ${match.t} for "${match.reason}", not a fence`);
  }
  return problems;
}

/** A delete on a host whose next address event (of any host) is that same host's add within `withinMs`. */
function isBlip(events: readonly AddressEvent[], del: AddressEvent, withinMs: number): boolean {
  const next = events.find((e) => e.t >= del.t && e !== del);
  return next?.host === del.host && next.op === 'add' && next.t - del.t <= withinMs;
}

/** Holder blips (see unfencedRemovals): the VIP gone from its holder and back on the same host, nobody between. */
export function blips(ev: Evidence, withinMs = 1000): AddressEvent[] {
  const events = ev.timeline.events;
  return events.filter((e) => e.op === 'del' && isBlip(events, e, withinMs));
}

/** The lab's observers of one VIP, started together. */
export interface VipWatch {
  stop(): Promise<Evidence>;
  readonly arp: ArpProber | undefined;
  readonly icmp: IcmpProber | undefined;
  /** Wait until the ARP prober got an answer from `host`'s MAC received after `after` (epoch ms). */
  answered(host: string, after?: number, timeoutMs?: number): Promise<void>;
}

/** What {@link watchVip} needs of the lab (the `Lab` class provides it). */
export interface Observable {
  readonly hosts: readonly { name: string; mac: string }[];
  sampler(vip: string, opts?: { intervalMs?: number }): Promise<Sampler>;
  arpProber(vip: string, opts?: { intervalMs?: number }): Promise<ArpProber>;
  icmpProber(vip: string, opts?: { intervalMs?: number }): Promise<IcmpProber>;
}

/** Start the address sampler and, if asked, the ARP (10 ms) and ICMP (10 ms) probers for `vip`. */
export async function watchVip(
  lab: Observable,
  vip: string,
  opts: { arp?: boolean; icmp?: boolean } = {},
): Promise<VipWatch> {
  const sampler = await lab.sampler(vip, { intervalMs: 20 });
  const arp = opts.arp === true ? await lab.arpProber(vip, { intervalMs: 10 }) : undefined;
  const icmp = opts.icmp === true ? await lab.icmpProber(vip, { intervalMs: 10 }) : undefined;
  const macs = Object.fromEntries(lab.hosts.map((h) => [h.name, h.mac.toLowerCase()]));
  return {
    arp,
    icmp,
    async answered(host, after = -Infinity, timeoutMs = 10_000) {
      const mac = macs[host];
      if (arp === undefined || mac === undefined) throw new Error(`no ARP prober, or no host ${host}`);
      // A reply's time is the kernel's, to the microsecond; callers take `Date.now()` (whole ms) as the fault time
      // next. A reply in that same millisecond would count as after the fault: wait until one is a whole ms old.
      await waitFor(
        `an ARP answer from ${host}`,
        () => arp.snapshot().some((r) => r.t > after && r.mac === mac && r.t < Date.now() - 1),
        { timeoutMs, intervalMs: 10 },
      );
    },
    async stop() {
      // Probers first: the sampler's canary check comes after the measurement, never inside it.
      const [a, i] = await Promise.all([arp?.stop(), icmp?.stop()]);
      const timeline = await sampler.stop();
      return {
        timeline,
        macs,
        ...(a === undefined ? {} : { arp: a }),
        ...(i === undefined ? {} : { icmp: i }),
      };
    },
  };
}
