/**
 * Pure analysis of what the lab observed. Every time is epoch milliseconds taken by the observing process, so
 * timelines from the sampler, the ARP prober, the ICMP prober and the test itself can be compared directly.
 */

/** The JSON lines of a log's text (coord logs JSON lines when not on a terminal); other lines and a partial last
 * one are skipped. */
export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial last line
    }
  }
  return out;
}

/** A VIP appearing on (`add`) or leaving (`del`) a host's interface, as the kernel reported it. */
export interface AddressEvent {
  t: number;
  host: string;
  op: 'add' | 'del';
}

/** Which hosts held the VIP at time `t`. */
export interface HolderSample {
  t: number;
  holders: string[];
}

/**
 * Whether an observer worked until it was stopped. An `ip monitor` or prober that died early leaves a frozen
 * picture that passes every "never two holders" check: evidence from it counts only when this says it was live.
 */
export interface ObserverHealth {
  /** e.g. `ip monitor h1`, `arp prober`, `ping`. */
  name: string;
  /** Still running when it was stopped. */
  aliveAtStop: boolean;
  /** Proved at the end that its whole pipeline still reported (a canary event seen, a final report read). */
  responsive: boolean;
  /** What went wrong, when something did. */
  detail?: string;
}

/** What the address sampler saw: exact kernel events plus periodic samples derived from them. */
export interface Timeline {
  vip: string;
  intervalMs: number;
  start: number;
  end: number;
  /** Holders when sampling started. */
  initial: string[];
  samples: HolderSample[];
  events: AddressEvent[];
  /** One `ip monitor` per host. */
  observers: ObserverHealth[];
}

/** One ARP packet about the VIP seen by the client: a reply to our probe, or a gratuitous ARP. */
export interface ArpReply {
  /** When the client's kernel received it (SO_TIMESTAMPNS), not when the prober got round to reading it. */
  t: number;
  mac: string;
  /** Number of probes sent before it arrived: the probe it answers (replies with the same seq answer one probe). */
  seq: number;
  kind: 'reply' | 'garp';
}

/** A progress report of the ARP prober: `sent` probes had gone out by time `t` (the last one's send time). */
export interface ArpTick {
  t: number;
  sent: number;
}

export interface ArpTimeline {
  vip: string;
  intervalMs: number;
  start: number;
  end: number;
  sent: number;
  /** Send time of every probe (probe n is `probes[n - 1]`). */
  probes: number[];
  replies: ArpReply[];
  garps: ArpReply[];
  observer: ObserverHealth;
}

export interface IcmpReply {
  t: number;
  seq: number;
  rttMs: number;
}

export interface IcmpTimeline {
  vip: string;
  intervalMs: number;
  start: number;
  end: number;
  replies: IcmpReply[];
  /** Sequence numbers ping reported as unanswered ("no answer yet"). */
  missing: { t: number; seq: number }[];
  observer: ObserverHealth;
}

/** Samples in which more than one host held the VIP: the split-brain the whole project exists to prevent. */
export function doubleHolderSamples(timeline: Timeline): HolderSample[] {
  return timeline.samples.filter((s) => s.holders.length > 1);
}

/** Holders at time `t`, replayed from the exact kernel events (not from the periodic samples). */
export function holderAt(timeline: Timeline, t: number): string[] {
  const held = new Set(timeline.initial);
  for (const e of timeline.events) {
    if (e.t > t) break;
    if (e.op === 'add') held.add(e.host);
    else held.delete(e.host);
  }
  return [...held].sort();
}

/** Intervals during which each host held the VIP (`to` is the timeline's end while still held). */
export function holderIntervals(timeline: Timeline): { host: string; from: number; to: number }[] {
  const open = new Map<string, number>();
  for (const h of timeline.initial) open.set(h, timeline.start);
  const out: { host: string; from: number; to: number }[] = [];
  for (const e of timeline.events) {
    if (e.op === 'add' && !open.has(e.host)) open.set(e.host, e.t);
    if (e.op === 'del') {
      const from = open.get(e.host);
      if (from !== undefined) out.push({ host: e.host, from, to: e.t });
      open.delete(e.host);
    }
  }
  for (const [host, from] of open) out.push({ host, from, to: timeline.end });
  return out.sort((a, b) => a.from - b.from);
}

/** Total milliseconds during which two or more hosts held the VIP, from the exact events. */
export function doubleHolderMs(timeline: Timeline): number {
  const held = new Set(timeline.initial);
  let total = 0;
  let since = held.size > 1 ? timeline.start : undefined;
  for (const e of timeline.events) {
    if (e.op === 'add') held.add(e.host);
    else held.delete(e.host);
    if (held.size > 1 && since === undefined) since = e.t;
    if (held.size <= 1 && since !== undefined) {
      total += e.t - since;
      since = undefined;
    }
  }
  if (since !== undefined) total += timeline.end - since;
  return total;
}

/** First time at or after `after` when `host` (or, without a host, anyone) held the VIP. */
export function firstHeldAfter(timeline: Timeline, after: number, host?: string): number | undefined {
  if (holderAt(timeline, after).some((h) => host === undefined || h === host)) return after;
  const e = timeline.events.find(
    (x) => x.t >= after && x.op === 'add' && (host === undefined || x.host === host),
  );
  return e?.t;
}

export interface FailoverGap {
  /** Last reply from the old holder before the new holder's first reply. */
  lastOld: number | undefined;
  /** First reply from the new holder at or after `after`. */
  firstNew: number | undefined;
  /** `firstNew - lastOld`: how long the client could not reach anyone by ARP. */
  gapMs: number | undefined;
  /** Replies from the old holder after the new one answered: more than 0 means two holders answered. */
  oldAfterNew: number;
}

/** The ARP-level failover gap the client saw between two MACs. */
export function failoverGap(
  arp: ArpTimeline,
  { after, fromMac, toMac }: { after: number; fromMac: string; toMac: string },
): FailoverGap {
  const from = fromMac.toLowerCase();
  const to = toMac.toLowerCase();
  const firstNew = arp.replies.find((r) => r.t >= after && r.mac === to)?.t;
  const old = arp.replies.filter((r) => r.mac === from);
  const before = old.filter((r) => firstNew === undefined || r.t < firstNew);
  const lastOld = before.length > 0 ? before[before.length - 1]?.t : undefined;
  const oldAfterNew = firstNew === undefined ? 0 : old.filter((r) => r.t > firstNew).length;
  const gapMs = firstNew !== undefined && lastOld !== undefined ? firstNew - lastOld : undefined;
  return { lastOld, firstNew, gapMs, oldAfterNew };
}

/** Probes answered by more than one MAC: each is proof of two holders on the wire at that moment. */
export function doubleReplyProbes(arp: {
  readonly replies: readonly ArpReply[];
}): { seq: number; t: number; macs: string[] }[] {
  const bySeq = new Map<number, { t: number; macs: Set<string> }>();
  for (const r of arp.replies) {
    const entry = bySeq.get(r.seq) ?? { t: r.t, macs: new Set<string>() };
    entry.macs.add(r.mac);
    bySeq.set(r.seq, entry);
  }
  return [...bySeq]
    .filter(([, v]) => v.macs.size > 1)
    .map(([seq, v]) => ({ seq, t: v.t, macs: [...v.macs].sort() }));
}

/** Distinct MACs that answered within [from, to]. */
export function macsSeen(arp: ArpTimeline, { from = -Infinity, to = Infinity } = {}): string[] {
  return [...new Set(arp.replies.filter((r) => r.t >= from && r.t <= to).map((r) => r.mac))].sort();
}

/** The longest silence between consecutive ICMP replies at or after `after` (the client-visible outage). */
export function icmpLongestGap(
  icmp: IcmpTimeline,
  { after = -Infinity }: { after?: number } = {},
): { lastBefore: number; firstAfter: number; gapMs: number } | undefined {
  return longestGap(icmp.replies.filter((r) => r.t >= after).map((r) => r.t));
}

/**
 * The longest silence between consecutive ARP replies (from any MAC) within [from, to]: how long a client could
 * not resolve the VIP. Undefined with fewer than two replies.
 */
export function arpLongestGap(
  arp: ArpTimeline,
  { from = -Infinity, to = Infinity }: { from?: number; to?: number } = {},
): { lastBefore: number; firstAfter: number; gapMs: number } | undefined {
  return longestGap(arp.replies.filter((r) => r.t >= from && r.t <= to).map((r) => r.t));
}

function longestGap(
  times: readonly number[],
): { lastBefore: number; firstAfter: number; gapMs: number } | undefined {
  let best: { lastBefore: number; firstAfter: number; gapMs: number } | undefined;
  for (let i = 1; i < times.length; i++) {
    const a = times[i - 1];
    const b = times[i];
    if (a === undefined || b === undefined) continue;
    if (best === undefined || b - a > best.gapMs) best = { lastBefore: a, firstAfter: b, gapMs: b - a };
  }
  return best;
}
