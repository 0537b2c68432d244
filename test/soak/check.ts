/**
 * The soak's checkers: pure functions over what the observers recorded (the address sampler's exact kernel
 * events, the client's ARP replies and progress ticks). Nothing here reads coord's logs or state: a verdict
 * rests only on what the kernel and the wire showed, so coord cannot pass by describing itself well.
 */
import { doubleReplyProbes, holderAt, type ArpReply, type ArpTick, type Timeline } from '../lab/analysis.js';

/** A closed time window in epoch ms. */
export interface Window {
  from: number;
  to: number;
}

/** A stretch during which two or more hosts held the VIP (exact kernel events), clipped to the window. */
export interface Overlap {
  from: number;
  to: number;
  ms: number;
  hosts: string[];
}

/**
 * Every stretch with two or more holders, replayed from the exact add/del events (not from periodic samples, which
 * miss anything shorter than their interval). Events with equal timestamps are applied in recorded order.
 */
export function overlaps(tl: Timeline, w: Window = { from: tl.start, to: tl.end }): Overlap[] {
  const held = new Set(tl.initial);
  const out: Overlap[] = [];
  let open: { from: number; hosts: Set<string> } | undefined =
    held.size > 1 ? { from: tl.start, hosts: new Set(held) } : undefined;
  const close = (t: number): void => {
    if (open === undefined) return;
    const from = Math.max(open.from, w.from);
    const to = Math.min(t, w.to);
    if (to >= from && open.from <= w.to && t >= w.from)
      out.push({ from, to, ms: to - from, hosts: [...open.hosts].sort() });
    open = undefined;
  };
  for (const e of tl.events) {
    if (e.op === 'add') held.add(e.host);
    else held.delete(e.host);
    if (held.size > 1) {
      if (open === undefined) open = { from: e.t, hosts: new Set(held) };
      else for (const h of held) open.hosts.add(h);
    } else {
      close(e.t);
    }
  }
  close(tl.end);
  return out;
}

export function overlapMs(list: readonly Overlap[]): number {
  return list.reduce((s, o) => s + o.ms, 0);
}

/** A probe answered by two different MACs: two holders on the wire within one probe interval. */
export interface TwoMacWindow {
  seq: number;
  t: number;
  macs: string[];
  /** Names of the hosts behind the MACs (the MAC itself when unknown). */
  hosts: string[];
}

export function twoMacWindows(
  replies: readonly ArpReply[],
  macOwner: ReadonlyMap<string, string>,
  w?: Window,
): TwoMacWindow[] {
  const inWindow = w === undefined ? replies : replies.filter((r) => r.t >= w.from && r.t <= w.to);
  const list = doubleReplyProbes({ replies: inWindow });
  return list.map((d) => ({ ...d, hosts: d.macs.map((m) => macOwner.get(m) ?? m) }));
}

/** Consecutive two-MAC probes answered by the same hosts, as one stretch: how a reader wants to see them. */
export interface TwoMacStretch {
  fromSeq: number;
  toSeq: number;
  from: number;
  to: number;
  probes: number;
  hosts: string[];
}

export function twoMacStretches(windows: readonly TwoMacWindow[]): TwoMacStretch[] {
  const out: TwoMacStretch[] = [];
  for (const w of [...windows].sort((a, b) => a.seq - b.seq)) {
    const last = out.at(-1);
    if (last !== undefined && w.seq === last.toSeq + 1 && w.hosts.join() === last.hosts.join()) {
      last.toSeq = w.seq;
      last.to = w.t;
      last.probes++;
    } else out.push({ fromSeq: w.seq, toSeq: w.seq, from: w.t, to: w.t, probes: 1, hosts: [...w.hosts] });
  }
  return out;
}

/** Probes sent by time `t`, interpolated between the prober's progress ticks (undefined before the first). */
export function sentAt(ticks: readonly ArpTick[], t: number): number | undefined {
  if (ticks.length === 0) return undefined;
  const first = ticks[0] as ArpTick;
  if (t < first.t) return undefined;
  for (let i = 1; i < ticks.length; i++) {
    const b = ticks[i] as ArpTick;
    if (t <= b.t) {
      const a = ticks[i - 1] as ArpTick;
      return b.t === a.t ? b.sent : a.sent + ((b.sent - a.sent) * (t - a.t)) / (b.t - a.t);
    }
  }
  return (ticks.at(-1) as ArpTick).sent;
}

/**
 * Share of the client's probes in the window that got at least one answer (any MAC). undefined when the prober
 * reported no progress over the window — which must never read as "fully available".
 */
export function availability(
  replies: readonly ArpReply[],
  ticks: readonly ArpTick[],
  w: Window,
): { sent: number; answered: number; ratio: number } | undefined {
  const a = sentAt(ticks, w.from);
  const b = sentAt(ticks, w.to);
  if (a === undefined || b === undefined) return undefined;
  const lo = Math.floor(a);
  const hi = Math.floor(b);
  const sent = hi - lo;
  if (sent <= 0) return undefined;
  const answered = new Set(replies.filter((r) => r.seq > lo && r.seq <= hi).map((r) => r.seq)).size;
  return { sent, answered: Math.min(answered, sent), ratio: Math.min(answered, sent) / sent };
}

/** The longest stretch in the window without any ARP answer (from the window's start, up to its end). */
export function longestSilence(replies: readonly ArpReply[], w: Window): number {
  let last = w.from;
  let best = 0;
  for (const r of replies) {
    if (r.t < w.from || r.t > w.to) continue;
    best = Math.max(best, r.t - last);
    last = r.t;
  }
  return Math.max(best, w.to - last);
}

/**
 * The first instant at or after `from` when exactly one host held the VIP (exact events) *and* the client got an
 * ARP answer from that host's MAC: one holder, and the wire agrees.
 */
export function firstAnsweredSingleHolder(
  tl: Timeline,
  replies: readonly ArpReply[],
  macOwner: ReadonlyMap<string, string>,
  w: Window,
): { t: number; host: string } | undefined {
  for (const r of replies) {
    if (r.t < w.from) continue;
    if (r.t > w.to) break;
    const host = macOwner.get(r.mac);
    if (host === undefined) continue;
    const h = holderAt(tl, r.t);
    if (h.length === 1 && h[0] === host) return { t: r.t, host };
  }
  return undefined;
}

export interface Recovery {
  /** When the VIP first left "exactly one holder" at or after the origin (undefined: it never did). */
  leftAt: number | undefined;
  /** First answered single holder after it left. */
  backAt: number | undefined;
  host: string | undefined;
  /**
   * backAt − origin; 0 when the VIP never left its holder; undefined when it did not come back in the window.
   * When it only left after every fault was healed (a rejoining node preempting, a late fence), or the fault is
   * one that leaves the holder serving until it bites (`bites`), backAt − leftAt: the time from the injection
   * would count the seconds the VIP sat untouched on its holder.
   */
  ms: number | undefined;
  /** The VIP left only after the heal (see `ms`). */
  afterHeal: boolean;
  /** `ms` counts from when the VIP left, not from the origin (after the heal, or a fault that bites late). */
  fromLeaving: boolean;
  /**
   * backAt − leftAt: how long the client had no single answered holder, whenever that began (`ms` itself when
   * `fromLeaving`).
   */
  outageMs: number | undefined;
}

/**
 * Time to one holder after a fault: from `origin` (the injection, or quorum's return) to the first instant
 * exactly one host holds the VIP and the client gets ARP answers from that host's MAC. 0 when the VIP never left
 * its holder (no add/del event in the window and exactly one holder at the origin). `bites`: the fault leaves the
 * holder serving until it takes effect, at a moment of its own (loss towards etcd: a holder fences only when
 * enough keepalives in a row went unanswered, seconds into the loss or never), so the time counts from when the
 * VIP left.
 */
export function recovery(
  tl: Timeline,
  replies: readonly ArpReply[],
  macOwner: ReadonlyMap<string, string>,
  origin: number,
  until: number,
  healedAt: number = until,
  { bites = false }: { bites?: boolean } = {},
): Recovery {
  let leftAt: number | undefined;
  if (holderAt(tl, origin).length !== 1) leftAt = origin;
  else leftAt = tl.events.find((e) => e.t >= origin && e.t <= until)?.t;
  if (leftAt === undefined)
    return {
      leftAt,
      backAt: undefined,
      host: undefined,
      ms: 0,
      afterHeal: false,
      fromLeaving: false,
      outageMs: 0,
    };
  const back = firstAnsweredSingleHolder(tl, replies, macOwner, { from: leftAt, to: until });
  const afterHeal = leftAt > healedAt;
  const fromLeaving = afterHeal || bites;
  return {
    leftAt,
    backAt: back?.t,
    host: back?.host,
    ms: back === undefined ? undefined : back.t - (fromLeaving ? leftAt : origin),
    afterHeal,
    fromLeaving,
    outageMs: back === undefined ? undefined : back.t - leftAt,
  };
}

/** What {@link overlapOrigin} needs to know of an injected fault. */
export interface HitFault {
  readonly kind: string;
  readonly injectedAt: number;
  /** The node hit; undefined for a fault of etcd itself (a leader kill). */
  readonly target: string | undefined;
  readonly holdersAtInjection: readonly string[];
}

/**
 * Where the time to one holder of two overlapping faults starts: at the first one that hit the holder — aimed at a
 * node that held the VIP when it was injected, or at etcd itself — at or before the VIP left. Loss towards etcd
 * counts from when the VIP left, as it does alone (it may never bite). A fault on another node only does not start
 * the clock: seconds before a kill of the holder, it would add those seconds to the kill's failover. Undefined when
 * no fault hit the holder (the VIP moved for another reason, a preempting rejoin): the first injection then.
 */
export function overlapOrigin(faults: readonly HitFault[], leftAt: number): number | undefined {
  let origin: number | undefined;
  for (const f of faults) {
    if (f.injectedAt > leftAt) continue;
    const hitHolder = f.target === undefined || f.holdersAtInjection.includes(f.target);
    if (!hitHolder) continue;
    const from = f.kind === 'etcd-loss' ? leftAt : f.injectedAt;
    origin = Math.min(origin ?? Infinity, from);
  }
  return origin;
}

/** When `host` lost the VIP at or after `after` (its first del event), or undefined. */
export function droppedAt(tl: Timeline, host: string, after: number): number | undefined {
  if (!holderAt(tl, after).includes(host)) return undefined;
  return tl.events.find((e) => e.t >= after && e.host === host && e.op === 'del')?.t;
}

/** What the runner saw of its observers at the end of a round. */
export interface ObserverAudit {
  /** Hosts whose `ip monitor` process exited. */
  deadMonitors: string[];
  /** Hosts where the sampler's state disagreed with `ip addr` read directly from the kernel. */
  samplerMismatch: { host: string; sampler: boolean; kernel: boolean }[];
  proberRunning: boolean;
  /** Probes the ARP prober reported sending during the round. */
  probesSent: number;
  /** How many it should have sent at its interval (the round's duration / interval). */
  probesExpected: number;
}

export type ViolationKind = 'two-holders' | 'two-macs' | 'liveness' | 'dead-observer';

export interface Violation {
  kind: ViolationKind;
  detail: string;
}

/** A dead or stuck observer hides everything else: any of these makes the round (and the run) fail. */
export function judgeObservers(a: ObserverAudit): Violation[] {
  const out: Violation[] = [];
  if (a.deadMonitors.length > 0)
    out.push({ kind: 'dead-observer', detail: `ip monitor exited on ${a.deadMonitors.join(', ')}` });
  for (const m of a.samplerMismatch)
    out.push({
      kind: 'dead-observer',
      detail: `sampler says ${m.host} ${m.sampler ? 'holds' : 'does not hold'} the VIP, the kernel says it ${m.kernel ? 'does' : 'does not'}`,
    });
  if (!a.proberRunning) out.push({ kind: 'dead-observer', detail: 'ARP prober exited' });
  // Half the nominal rate: a prober starved of CPU for a moment is slow, one that stopped probing is dead.
  if (a.probesSent < a.probesExpected / 2)
    out.push({
      kind: 'dead-observer',
      detail: `ARP prober sent ${a.probesSent} probes, expected about ${Math.round(a.probesExpected)}`,
    });
  return out;
}

/** The liveness audit after a heal: one holder, answered on the wire, within the bound; and still one at the end. */
export interface Liveness {
  /** First answered single holder after the heal (ms after the heal), undefined when none in the bound. */
  afterHealMs: number | undefined;
  host: string | undefined;
  /** Holders when the round ended (after the settle). */
  finalHolders: string[];
}

export const LIVENESS_BOUND_MS = 10_000;

export function liveness(
  tl: Timeline,
  replies: readonly ArpReply[],
  macOwner: ReadonlyMap<string, string>,
  healedAt: number,
  roundEnd: number,
): Liveness {
  const first = firstAnsweredSingleHolder(tl, replies, macOwner, {
    from: healedAt,
    to: Math.min(roundEnd, healedAt + LIVENESS_BOUND_MS),
  });
  return {
    afterHealMs: first === undefined ? undefined : first.t - healedAt,
    host: first?.host,
    finalHolders: holderAt(tl, roundEnd),
  };
}

/** Everything a round is judged on. */
export interface RoundFindings {
  overlaps: Overlap[];
  twoMacs: TwoMacWindow[];
  liveness: Liveness;
  observers: ObserverAudit;
}

/** The round's violations: two holders (ms > 0), two MACs, no single holder after the heal, a dead observer. */
export function judgeRound(f: RoundFindings): Violation[] {
  const out: Violation[] = [];
  for (const o of f.overlaps) {
    if (o.ms > 0)
      out.push({
        kind: 'two-holders',
        detail: `${o.hosts.join('+')} held the VIP together for ${o.ms.toFixed(1)} ms (kernel events)`,
      });
  }
  for (const w of twoMacStretches(f.twoMacs))
    out.push({
      kind: 'two-macs',
      detail:
        `${w.probes} probe${w.probes === 1 ? '' : 's'} (seq ${w.fromSeq}${w.probes > 1 ? `-${w.toSeq}` : ''}, ` +
        `${Math.round(w.to - w.from)} ms) answered by ${w.hosts.join(' and ')}`,
    });
  if (f.liveness.afterHealMs === undefined)
    out.push({
      kind: 'liveness',
      detail: `no single answered holder within ${LIVENESS_BOUND_MS / 1000} s after the heal`,
    });
  else if (f.liveness.finalHolders.length !== 1)
    out.push({
      kind: 'liveness',
      detail: `round ended with ${f.liveness.finalHolders.length} holders (${f.liveness.finalHolders.join(', ') || 'none'})`,
    });
  out.push(...judgeObservers(f.observers));
  return out;
}
