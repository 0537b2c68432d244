/**
 * The soak's fault schedule, as pure data drawn from a seeded PRNG: fault kinds, target roles and durations.
 * In the spirit of Pacemaker's CTS (randomized fault classes, an audit after each; cts/ in ClusterLabs/pacemaker)
 * and Jepsen's nemeses. The same seed and the same options always give the same list of rounds; only the
 * concrete node behind the role "holder" is decided at run time (whoever holds the VIP at that moment).
 */
import type { Rng } from './prng.js';

/** What one fault does; each is undone ("healed") by the runner, except the instant ones. */
export const FAULT_KINDS = [
  /**
   * kill -9 of the node's coord and every process it started (as `systemctl kill -s KILL coord`), then what the
   * supervisor does after (cluster.ts, Supervisor), restarted after `holdMs`.
   */
  'kill9',
  /**
   * kill -9 of the holder's coord, then one unrelated address change on that node `changeAfterMs` (750–930 ms)
   * after the dead holder's last lifetime refresh — what a second VIP group, a DHCP renewal or an IPv6 temporary
   * address does on a real host at some moment. The change runs the kernel's per-namespace address-lifetime
   * worker, which then waits its one-second minimum interval (check_lifetime in net/ipv4/devinet.c): the dead
   * holder's VIP outlives its valid_lft by about `changeAfterMs`. Without such a change the lab is quieter than
   * any real host and every lifetime expires on time. Under the unit (`--supervisor systemd`) `coord fence` has
   * usually removed the VIP before the change: the kernel's lifetime is then only the fallback.
   */
  'kill9-addr-change',
  /** SIGSTOP of the node's coord for `holdMs` (0.2–5 s), then SIGCONT. */
  'sigstop',
  /** Every packet between the node and every etcd member dropped for `holdMs` (the LAN stays up). */
  'etcd-cut',
  /** The node's switch port down for `holdMs`, coord still running (it loses etcd and the client). */
  'lan-cut',
  /** One direction only between the node and etcd dropped for `holdMs` (see `direction`). */
  'asym-cut',
  /** `lossPct` (30–70 %) of the node's packets towards etcd dropped for `holdMs`. */
  'etcd-loss',
  /** The etcd raft leader killed, restarted after `holdMs`. */
  'etcd-leader-kill',
  /** Two etcd members killed (quorum lost), both restarted after `holdMs`. */
  'etcd-quorum-loss',
  /** SIGTERM to coord, started again as soon as it exited. */
  'coord-restart',
  /** SIGTERM to coord (graceful stop), started again after `holdMs` (2–5 s). */
  'graceful-rejoin',
  /** The node's YAML edited to a new `priority`, then `coord reload-config` over its control socket. */
  'reload-config',
  /** `ip addr del` of the VIP on the holder, behind coord's back. */
  'vip-removed',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];
/** A round is one fault, or two that overlap in time. */
export type RoundKind = FaultKind | 'overlap';
export const ROUND_KINDS: readonly RoundKind[] = [...FAULT_KINDS, 'overlap'];

/**
 * Who a fault hits. `holder`: whoever holds the VIP when the fault is injected. `node`: a fixed node drawn from
 * the seed. `other`: the `index`-th (modulo) of the nodes that do not hold the VIP at injection time.
 */
export type TargetRole =
  { role: 'holder' } | { role: 'node'; node: string } | { role: 'other'; index: number };

/** What a fault occupies while it lasts: two faults on the same resource must not overlap. */
export type Resource = 'process' | 'network' | 'vip' | 'etcd';

export function resourceOf(kind: FaultKind): Resource {
  switch (kind) {
    case 'kill9':
    case 'kill9-addr-change':
    case 'sigstop':
    case 'coord-restart':
    case 'graceful-rejoin':
    case 'reload-config':
      return 'process';
    case 'etcd-cut':
    case 'lan-cut':
    case 'asym-cut':
    case 'etcd-loss':
      return 'network';
    case 'vip-removed':
      return 'vip';
    case 'etcd-leader-kill':
    case 'etcd-quorum-loss':
      return 'etcd';
  }
}

/** One fault of a round: injected `atMs` after the round starts, healed `holdMs` after its injection. */
export interface FaultSpec {
  kind: FaultKind;
  /** undefined for faults of the etcd cluster (no node is targeted). */
  target: TargetRole | undefined;
  atMs: number;
  holdMs: number;
  /** asym-cut only. */
  direction?: 'to-etcd' | 'from-etcd';
  /** etcd-loss only. */
  lossPct?: number;
  /** etcd-quorum-loss only: indexes of the two members killed. */
  members?: [number, number];
  /** reload-config only: the priority written to the node's YAML. */
  priority?: number;
  /** kill9-addr-change only: when the unrelated address changes, after the VIP's last refresh (ms). */
  changeAfterMs?: number;
}

export interface RoundPlan {
  /** 1-based. */
  index: number;
  kind: RoundKind;
  /** One fault, or two for `overlap` (the second injected while the first lasts). */
  faults: FaultSpec[];
}

export interface ScheduleOptions {
  /** Node names, e.g. ['h1', 'h2', 'h3']. */
  nodes: readonly string[];
  /** Number of etcd members (quorum loss kills two of them). */
  etcdMembers: number;
  /** Priorities a reload-config may write. */
  priorities: readonly number[];
  /** Restrict the round kinds (default: all). Changes the schedule: a replay needs the same list. */
  kinds?: readonly RoundKind[];
  /** Share of node faults aimed at the current holder (the rest at a node drawn from the seed). */
  holderShare?: number;
}

/** Weight of each round kind: every single fault 1, overlaps a little more (they are where bugs hide). */
const WEIGHT: Record<RoundKind, number> = {
  ...(Object.fromEntries(FAULT_KINDS.map((k) => [k, 1])) as Record<FaultKind, number>),
  overlap: 1.5,
};

/** How long each fault lasts, in ms [min, max]. */
export const HOLD_MS: Record<FaultKind, readonly [number, number]> = {
  kill9: [300, 3000],
  'kill9-addr-change': [2000, 3000],
  sigstop: [200, 5000],
  'etcd-cut': [500, 4000],
  'lan-cut': [500, 4000],
  'asym-cut': [500, 4000],
  'etcd-loss': [2000, 6000],
  'etcd-leader-kill': [500, 3000],
  'etcd-quorum-loss': [1000, 4000],
  'coord-restart': [0, 0],
  'graceful-rejoin': [2000, 5000],
  'reload-config': [0, 0],
  'vip-removed': [0, 0],
};

/** Kinds that last a while: the first fault of an overlap is one of these, so the second lands inside it. */
const LASTING: readonly FaultKind[] = FAULT_KINDS.filter((k) => HOLD_MS[k][1] > 0);

/** Draw one fault of `kind`. Every branch draws a fixed number of values, whatever the outcome. */
export function drawFault(rng: Rng, kind: FaultKind, o: ScheduleOptions, atMs = 0): FaultSpec {
  const [lo, hi] = HOLD_MS[kind];
  const holdMs = rng.int(lo, hi);
  const holderShare = o.holderShare ?? 0.75;
  const aimHolder = rng.chance(holderShare);
  const drawnNode = rng.pick(o.nodes);
  const nodeTarget: TargetRole = aimHolder ? { role: 'holder' } : { role: 'node', node: drawnNode };
  const spec: FaultSpec = { kind, target: nodeTarget, atMs, holdMs };
  switch (kind) {
    case 'asym-cut':
      spec.direction = rng.chance(0.5) ? 'to-etcd' : 'from-etcd';
      break;
    case 'etcd-loss':
      spec.lossPct = rng.int(30, 70);
      break;
    case 'reload-config':
      spec.priority = rng.pick(o.priorities);
      break;
    case 'kill9-addr-change':
      spec.target = { role: 'holder' };
      spec.changeAfterMs = rng.int(750, 930);
      break;
    case 'vip-removed':
      spec.target = { role: 'holder' };
      break;
    case 'etcd-leader-kill':
      spec.target = undefined;
      break;
    case 'etcd-quorum-loss': {
      spec.target = undefined;
      const first = rng.int(0, o.etcdMembers - 1);
      const second = (first + rng.int(1, o.etcdMembers - 1)) % o.etcdMembers;
      spec.members = [first, second];
      break;
    }
    case 'kill9':
    case 'sigstop':
    case 'etcd-cut':
    case 'lan-cut':
    case 'coord-restart':
    case 'graceful-rejoin':
      break;
  }
  return spec;
}

/** Two faults that overlap: the second starts while the first lasts and never shares an etcd fault with it. */
function drawOverlap(rng: Rng, o: ScheduleOptions): FaultSpec[] {
  const first = drawFault(rng, rng.pick(LASTING), o);
  const candidates = FAULT_KINDS.filter(
    (k) => !(resourceOf(k) === 'etcd' && resourceOf(first.kind) === 'etcd'),
  );
  const kind = rng.pick(candidates);
  const atMs = rng.int(0, Math.max(0, first.holdMs - 100));
  const second = drawFault(rng, kind, o, atMs);
  // The second node fault hits the holder (maybe a new one by then) or a node that does not hold the VIP.
  const other = rng.int(0, o.nodes.length - 1);
  const hitHolder = rng.chance(0.5);
  if (second.target !== undefined && kind !== 'vip-removed' && kind !== 'kill9-addr-change')
    second.target = hitHolder ? { role: 'holder' } : { role: 'other', index: other };
  return [first, second];
}

/** Round `index` (1-based), drawn from `rng` (which must have produced rounds 1 … index−1 before). */
export function drawRound(rng: Rng, index: number, o: ScheduleOptions): RoundPlan {
  const kinds = o.kinds ?? ROUND_KINDS;
  if (kinds.length === 0) throw new RangeError('no round kinds to draw from');
  const kind = rng.weighted(kinds.map((k) => [k, WEIGHT[k]] as const));
  const faults = kind === 'overlap' ? drawOverlap(rng, o) : [drawFault(rng, kind, o)];
  return { index, kind, faults };
}

/** An endless, deterministic sequence of rounds. */
export function* schedule(rng: Rng, o: ScheduleOptions): Generator<RoundPlan, never, void> {
  for (let i = 1; ; i++) yield drawRound(rng, i, o);
}

/** One line per fault, for the console and the JSON ("sigstop holder 3120 ms"). */
export function describeFault(f: FaultSpec): string {
  const target =
    f.target === undefined
      ? ''
      : f.target.role === 'holder'
        ? ' holder'
        : f.target.role === 'node'
          ? ` ${f.target.node}`
          : ` other#${f.target.index}`;
  const extra = [
    f.direction === undefined ? '' : ` ${f.direction}`,
    f.lossPct === undefined ? '' : ` ${f.lossPct}%`,
    f.members === undefined ? '' : ` members ${f.members.join('+')}`,
    f.priority === undefined ? '' : ` priority ${f.priority}`,
    f.changeAfterMs === undefined ? '' : ` address change at refresh+${f.changeAfterMs} ms`,
  ].join('');
  const at = f.atMs > 0 ? ` at +${f.atMs} ms` : '';
  const hold = f.holdMs > 0 ? ` for ${f.holdMs} ms` : '';
  return `${f.kind}${target}${extra}${at}${hold}`;
}
