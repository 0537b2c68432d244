/**
 * The soak's cluster in the lab, and the faults it injects: three coord nodes (each with its own YAML config and
 * control socket), a three-member etcd, the client's ARP prober and the hosts' address sampler. The impure half of
 * the soak; the schedule, checkers and summary it feeds are pure (schedule.ts, check.ts, report.ts).
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  controlSocketFor,
  reloadNodeConfig,
  startCoordFromFile,
  fenceNodeFromFile,
  writeNodeConfig,
  type NodeFileOptions,
} from '../coord.js';
import {
  jsonLines,
  Lab,
  waitFor,
  type ArpProber,
  type ExitInfo,
  type LabHost,
  type LabProcess,
  type Sampler,
} from '../lab/index.js';
import { overlaps, twoMacWindows, type Window } from './check.js';
import { storyOf, type StoryLine } from './explain.js';
import { resourceOf, type FaultSpec, type Resource } from './schedule.js';

export const CLUSTER = 'soak';
export const TTL_SEC = 1;
export const ARP_INTERVAL_MS = 10;
/** Initial priorities: a preferred holder, so heals and restarts also exercise preemption handovers. */
export const INITIAL_PRIORITIES: Readonly<Record<string, number>> = { h1: 150, h2: 100, h3: 50 };
/**
 * What runs a node's coord, as far as its end matters: `systemd` — the package's unit, whose ExecStopPost runs
 * `coord fence` once coord has ended, however it ended (the soak's kill -9 kills coord and its dead-man helper
 * together, as `systemctl kill -s KILL coord` does); `none` — coord run by hand, where a VIP left behind stays
 * until the kernel's lifetime worker removes it.
 */
export type Supervisor = 'systemd' | 'none';

/** The unrelated address kill9-addr-change changes on the dead holder's host (TEST-NET-1, RFC 5737). */
const CHANGED_ADDRESS = '192.0.2.1';
/** What a reload-config may write. */
export const RELOAD_PRIORITIES = [50, 100, 150, 200] as const;
/** etcd at heartbeat 50 ms / election 500 ms: the lease TTL 1 s needs an election timeout ≤ 666 ms. */
export const ETCD_TIMING = { heartbeatMs: 50, electionMs: 500 };

/** A node's coord process and what the soak did to it. */
interface Node {
  host: LabHost;
  priority: number;
  proc: LabProcess | undefined;
  /** Set while the soak keeps it down or frozen on purpose. */
  held: boolean;
  /** Processes that ended without the soak asking, with how (coord crashed or exited by itself). */
  unexpected: { at: number; exit: ExitInfo; pid: number }[];
  /** The log file of every coord process the node has run, oldest first. */
  logFiles: string[];
  /** `coord fence` run after the node's coord ended (the unit's ExecStopPost), while it runs. */
  fencing: Promise<void> | undefined;
}

/** A fault as it was injected: the concrete target, times, and what happened on the way. */
export interface InjectedFault {
  spec: FaultSpec;
  /** The node hit (undefined for etcd faults). */
  target: string | undefined;
  /** Who held the VIP (sampler) when it was injected. */
  holdersAtInjection: string[];
  /** Just before the fault's command (the recovery clock starts here). */
  injectedAt: number;
  /** When the fault's command returned (nft applied, the process dead, the port down…). */
  appliedAt: number;
  healedAt: number;
  /** Quorum loss: when etcd answered a health check again after the restart (quorum's return). */
  quorumBackAt?: number;
  /** etcd leader kill: the member killed. */
  member?: number;
  notes: string[];
}

/** The observers' positive control: what they reported for a split brain made by hand. */
export interface SelfTest {
  from: number;
  to: number;
  overlapMs: number;
  twoMacWindows: number;
  ok: boolean;
}

/** A fault that could not be run as planned (the lab failed, not coord). */
export class HarnessError extends Error {}

export class SoakCluster {
  readonly vip: string;
  readonly cidr: string;
  readonly macOwner: ReadonlyMap<string, string>;
  private readonly nodes = new Map<string, Node>();
  /** Per node, the resources a running fault occupies (two faults never share one). */
  private readonly busy = new Map<string, Set<Resource>>();
  private etcdBusy = false;
  /** The observers' end-to-end check before any node starts (see {@link checkObservers}). */
  selfTest: SelfTest = { from: 0, to: 0, overlapMs: 0, twoMacWindows: 0, ok: false };

  private constructor(
    readonly lab: Lab,
    readonly sampler: Sampler,
    readonly arp: ArpProber,
  ) {
    this.vip = lab.freeAddress(1);
    this.cidr = `${this.vip}/${lab.subnet.prefix}`;
    this.macOwner = new Map(lab.hosts.map((h) => [h.mac, h.name]));
    for (const h of lab.hosts) {
      this.nodes.set(h.name, {
        host: h,
        priority: INITIAL_PRIORITIES[h.name] ?? 100,
        proc: undefined,
        held: false,
        unexpected: [],
        logFiles: [],
        fencing: undefined,
      });
      this.busy.set(h.name, new Set());
    }
  }

  /** Build the lab, start the observers, then the three nodes; resolves once one node holds the VIP. */
  static async start(
    log: (s: string) => void,
    opts: { fastFailover?: boolean; etcdOutage?: 'fence' | 'hold'; supervisor?: Supervisor } = {},
  ): Promise<SoakCluster> {
    const lab = await Lab.create({ name: 'soak', hosts: 3, etcdMembers: 3, ...ETCD_TIMING });
    try {
      log(`lab ${lab.prefix} up (subnet ${lab.subnet.base}/24, logs in ${lab.runDir})`);
      const vip = lab.freeAddress(1);
      // Observers first: they see everything from the first claim on.
      const sampler = await lab.sampler(vip, { intervalMs: 100 });
      const arp = await lab.arpProber(vip, { intervalMs: ARP_INTERVAL_MS });
      const c = new SoakCluster(lab, sampler, arp);
      c.fastFailover = opts.fastFailover === true;
      c.etcdOutage = opts.etcdOutage ?? 'fence';
      c.supervisor = opts.supervisor ?? 'systemd';
      c.selfTest = await c.checkObservers();
      log(
        `observer self-test: two holders put by hand for ${Math.round(c.selfTest.overlapMs)} ms, ` +
          `${c.selfTest.twoMacWindows} two-MAC probes seen`,
      );
      if (!c.selfTest.ok)
        throw new HarnessError('the observers did not see two holders put there by hand: they are blind');
      for (const name of c.nodes.keys()) c.writeConfig(name);
      for (const name of c.nodes.keys()) c.startNode(name);
      await waitFor('a single holder of the VIP', () => c.sampler.holders().length === 1, {
        timeoutMs: 30_000,
        intervalMs: 50,
      });
      return c;
    } catch (e) {
      await lab.destroy();
      throw e;
    }
  }

  /**
   * Positive control, end to end: before coord runs, put the VIP on h2 and h3 by hand and check that the sampler
   * sees two holders and the client's probes are answered by both MACs, then take it away again. A soak whose
   * observers cannot see a split brain it made itself would report 0 for anything.
   */
  private async checkObservers(): Promise<SelfTest> {
    const [, a, b] = this.names.map((n) => this.host(n));
    if (a === undefined || b === undefined) throw new HarnessError('the self-test needs three hosts');
    const from = Date.now();
    const put = (h: LabHost, op: 'add' | 'del') =>
      this.lab.exec(h, 'ip', ['addr', op, this.cidr, 'dev', h.iface]);
    await Promise.all([put(a, 'add'), put(b, 'add')]);
    const macs = new Set([a.mac, b.mac]);
    const bothAnswered = () => {
      const bySeq = new Map<number, Set<string>>();
      for (const r of this.arp.repliesSince(from)) {
        const set = bySeq.get(r.seq) ?? new Set<string>();
        set.add(r.mac);
        bySeq.set(r.seq, set);
      }
      return [...bySeq.values()].some((set) => [...macs].every((m) => set.has(m)));
    };
    await pollUntil(() => this.holders().length === 2 && bothAnswered(), Date.now() + 5000);
    await Promise.all([put(a, 'del'), put(b, 'del')]);
    await pollUntil(() => this.holders().length === 0, Date.now() + 5000);
    const to = Date.now();
    const ov = overlaps(this.sampler.snapshot(), { from, to });
    const two = twoMacWindows(this.arp.repliesSince(from), this.macOwner, { from, to });
    const overlapMs = ov.reduce((s, o) => s + o.ms, 0);
    return { from, to, overlapMs, twoMacWindows: two.length, ok: overlapMs > 0 && two.length > 0 };
  }

  get names(): string[] {
    return [...this.nodes.keys()].sort();
  }

  host(name: string): LabHost {
    return this.node(name).host;
  }

  priorities(): Record<string, number> {
    return Object.fromEntries([...this.nodes].map(([n, x]) => [n, x.priority]));
  }

  private node(name: string): Node {
    const n = this.nodes.get(name);
    if (n === undefined) throw new Error(`no soak node ${name}`);
    return n;
  }

  /** Every node runs with `--fast-failover` (pnpm soak --fast-failover). */
  fastFailover = false;
  /** Every node runs with this `--etcd-outage` (pnpm soak --etcd-outage hold). */
  etcdOutage: 'fence' | 'hold' = 'fence';
  /** What runs once a node's coord has ended (pnpm soak --supervisor); see {@link Supervisor}. */
  supervisor: Supervisor = 'systemd';

  private fileOptions(n: Node): NodeFileOptions {
    return {
      cluster: CLUSTER,
      vips: [this.cidr],
      priority: n.priority,
      ttlSec: TTL_SEC,
      logLevel: 'info',
      fastFailover: this.fastFailover,
      etcdOutage: this.etcdOutage,
    };
  }

  private writeConfig(name: string): void {
    const n = this.node(name);
    writeNodeConfig(this.lab, n.host, this.fileOptions(n));
  }

  private startNode(name: string): void {
    const n = this.node(name);
    const proc = startCoordFromFile(this.lab, n.host, CLUSTER);
    n.proc = proc;
    n.logFiles.push(proc.logFile);
    n.held = false;
    void proc.exited.then((exit) => {
      // Only a process the soak did not stop or kill counts as unexpected.
      if (n.proc === proc && !n.held) {
        n.unexpected.push({ at: Date.now(), exit, pid: proc.pid });
        this.postStop(n, undefined);
      }
    });
  }

  /**
   * What the unit does once coord has ended however it ended: ExecStopPost, `coord fence` with the node's config
   * (supervisor `systemd`); nothing with `none`. Started at once; the node is started again only after it is done
   * (systemd runs ExecStopPost before a restart). What it did goes into the round's notes.
   */
  private postStop(n: Node, rec: InjectedFault | undefined): void {
    if (this.supervisor === 'none') return;
    const t0 = Date.now();
    n.fencing = fenceNodeFromFile(this.lab, n.host, CLUSTER).then((r) => {
      const removed = r.stdout.split('\n').filter((l) => l.startsWith('removed '));
      const what =
        r.exitCode !== 0
          ? `failed (exit ${r.exitCode}): ${r.stderr.trim().split('\n')[0] ?? ''}`
          : removed.length > 0
            ? removed.join('; ')
            : 'nothing to remove';
      rec?.notes.push(`coord fence on ${n.host.name} ${Date.now() - t0} ms after coord ended: ${what}`);
      n.fencing = undefined;
    });
  }

  /** Start a node again once its post-stop step is done. */
  private async restartNode(n: Node): Promise<void> {
    await n.fencing;
    this.startNode(n.host.name);
  }

  /**
   * Nodes whose coord ended by itself since the last call (a crash under a fault is a finding), restarted so the
   * soak can go on.
   */
  reapUnexpected(): { node: string; at: number; exit: ExitInfo; pid: number }[] {
    const out: { node: string; at: number; exit: ExitInfo; pid: number }[] = [];
    for (const [name, n] of this.nodes) {
      for (const u of n.unexpected.splice(0)) out.push({ node: name, ...u });
      if (!n.held && n.proc !== undefined && !n.proc.running && n.fencing === undefined) this.startNode(name);
    }
    return out;
  }

  /**
   * Whether every node that should run has come up far enough to accept on its control socket (pacing only: a
   * restarted coord can take seconds to start on a loaded machine, and the next round should find the cluster
   * whole). Never used to judge anything.
   */
  async nodesUp(): Promise<boolean> {
    const checks = [...this.nodes.values()]
      .filter((n) => !n.held)
      .map(
        (n) =>
          new Promise<boolean>((resolve) => {
            const sock = connect(controlSocketFor(this.lab, n.host, CLUSTER));
            const done = (ok: boolean) => {
              sock.destroy();
              resolve(ok);
            };
            sock.once('connect', () => done(true));
            sock.once('error', () => done(false));
            sock.setTimeout(1000, () => done(false));
          }),
      );
    return (await Promise.all(checks)).every(Boolean);
  }

  /** kill -9 a node's coord (it stays held until the soak restarts it); a note when it was not running. */
  private async kill9(n: Node, rec: InjectedFault): Promise<void> {
    const p = n.proc;
    n.held = true;
    if (p === undefined || !p.running) rec.notes.push(`${n.host.name} was not running`);
    else {
      p.kill9();
      await p.exited;
      this.postStop(n, rec);
    }
  }

  /**
   * What each node's coord logged within the window (every process it ran), to explain a round. Never judged:
   * the verdict comes from the observers alone.
   */
  async story(w: Window): Promise<StoryLine[][]> {
    return Promise.all(
      [...this.nodes].map(async ([name, n]) => {
        const logs = await Promise.all(n.logFiles.map((f) => readFile(f, 'utf8').catch(() => '')));
        return storyOf(name, logs.flatMap(jsonLines), w);
      }),
    );
  }

  /** Who holds the VIP, per the sampler (exact kernel events). */
  holders(): string[] {
    return this.sampler.holders();
  }

  /**
   * The concrete node for a fault: the holder (when it is exactly one and free), a drawn node, or the index-th
   * free non-holder. Falls back deterministically (first free node by name) and says so in `notes`.
   */
  private resolveTarget(spec: FaultSpec, notes: string[]): string | undefined {
    if (spec.target === undefined) return undefined;
    const resource = resourceOf(spec.kind);
    const free = (n: string) => !(this.busy.get(n)?.has(resource) ?? false);
    const holders = this.holders();
    const freeNonHolders = this.names.filter((n) => free(n) && !holders.includes(n));
    // No single holder (mid-failover): the node that held it last, as the closest thing to "the holder".
    const last = this.sampler.lastEvent()?.host;
    const fallback = (why: string): string | undefined => {
      const pick = last !== undefined && free(last) ? last : this.names.find(free);
      notes.push(`${why}; ${pick === undefined ? 'no free node: fault skipped' : `hit ${pick} instead`}`);
      return pick;
    };
    switch (spec.target.role) {
      case 'holder': {
        const h = holders.length === 1 ? holders[0] : undefined;
        if (h !== undefined && free(h)) return h;
        if (h === undefined && spec.kind === 'vip-removed') {
          notes.push(`no single holder to remove the VIP from (holders [${holders.join(', ')}]): skipped`);
          return undefined;
        }
        if (h === undefined) return fallback(`holder wanted, holders were [${holders.join(', ')}]`);
        const other = freeNonHolders[0];
        if (other !== undefined) {
          notes.push(`holder ${h} busy with a ${resource} fault; hit ${other}`);
          return other;
        }
        return fallback(`holder ${h} busy`);
      }
      case 'node':
        return free(spec.target.node) ? spec.target.node : fallback(`${spec.target.node} busy`);
      case 'other': {
        const pick = freeNonHolders[spec.target.index % Math.max(1, freeNonHolders.length)];
        return pick ?? fallback('no free non-holder');
      }
    }
  }

  /**
   * Inject one fault, keep it for its hold time, heal it. Resolves with what was done. Throws HarnessError when
   * the lab could not do it (e.g. an etcd member that does not come back).
   */
  async runFault(spec: FaultSpec): Promise<InjectedFault> {
    const notes: string[] = [];
    const holdersAtInjection = this.holders();
    const target = this.resolveTarget(spec, notes);
    const rec: InjectedFault = {
      spec,
      target,
      holdersAtInjection,
      injectedAt: Date.now(),
      appliedAt: Date.now(),
      healedAt: Date.now(),
      notes,
    };
    if (spec.target !== undefined && target === undefined) return rec;
    const resource = resourceOf(spec.kind);
    if (resource === 'etcd') {
      if (this.etcdBusy) {
        notes.push('etcd busy with another fault: skipped');
        return rec;
      }
      this.etcdBusy = true;
    }
    if (target !== undefined) this.busy.get(target)?.add(resource);
    try {
      rec.injectedAt = Date.now();
      const heal = await this.inject(spec, target, rec);
      rec.appliedAt = Date.now();
      await sleep(Math.max(0, rec.injectedAt + spec.holdMs - Date.now()));
      await heal();
      rec.healedAt = Date.now();
    } finally {
      if (target !== undefined) this.busy.get(target)?.delete(resource);
      if (resource === 'etcd') this.etcdBusy = false;
    }
    return rec;
  }

  /** Do the fault; return how to undo it. */
  private async inject(
    spec: FaultSpec,
    target: string | undefined,
    rec: InjectedFault,
  ): Promise<() => Promise<void>> {
    const f = this.lab.faults;
    const nothing = () => Promise.resolve();
    const need = (): Node => {
      if (target === undefined) throw new HarnessError(`${spec.kind} needs a target node`);
      return this.node(target);
    };
    switch (spec.kind) {
      case 'kill9': {
        const n = need();
        await this.kill9(n, rec);
        return () => this.restartNode(n);
      }
      case 'kill9-addr-change': {
        const n = need();
        await this.kill9(n, rec);
        // The dead holder's copy runs on the lifetime of its last refresh, which ip monitor reported.
        const refreshed = this.sampler.lastRefresh(n.host.name);
        const at = (refreshed ?? Date.now()) + (spec.changeAfterMs ?? 900);
        const late = Date.now() - at;
        await sleep(Math.max(0, -late));
        await this.changeUnrelatedAddress(n.host);
        rec.notes.push(
          refreshed === undefined
            ? `no refresh of the VIP seen on ${n.host.name}: address changed ${spec.changeAfterMs ?? 900} ms after the kill`
            : `address on ${n.host.name}'s lo changed ${Math.round(Date.now() - refreshed)} ms after its last VIP refresh` +
                (late > 0 ? ` (${late} ms late)` : ''),
        );
        return async () => {
          await this.lab.exec(n.host, 'ip', ['addr', 'del', `${CHANGED_ADDRESS}/32`, 'dev', 'lo'], {
            reject: false,
          });
          await this.restartNode(n);
        };
      }
      case 'sigstop': {
        const n = need();
        const p = n.proc;
        if (p === undefined || !p.running) {
          rec.notes.push(`${n.host.name} was not running`);
          return nothing;
        }
        n.held = true;
        p.signal('SIGSTOP');
        return () => {
          p.signal('SIGCONT');
          n.held = false;
          return Promise.resolve();
        };
      }
      case 'coord-restart':
      case 'graceful-rejoin': {
        const n = need();
        const p = n.proc;
        n.held = true;
        if (p === undefined || !p.running) rec.notes.push(`${n.host.name} was not running`);
        else {
          const exit = await p.stop(5000);
          if (exit.code !== 0) rec.notes.push(`SIGTERM exit: code ${exit.code} signal ${exit.signal}`);
        }
        return () => Promise.resolve(this.startNode(n.host.name));
      }
      case 'etcd-cut': {
        const h = need().host;
        await f.cutFromEtcd(h);
        return () => f.healEtcd(h);
      }
      case 'asym-cut': {
        const h = need().host;
        await f.cutFromEtcdOneWay(h, spec.direction ?? 'to-etcd');
        return () => f.healEtcd(h);
      }
      case 'lan-cut': {
        const h = need().host;
        await f.linkDown(h);
        return () => f.linkUp(h);
      }
      case 'etcd-loss': {
        const h = need().host;
        await f.netem(h, { lossPct: spec.lossPct ?? 50 });
        return () => f.clearNetem(h);
      }
      case 'reload-config': {
        const n = need();
        const before = n.priority;
        n.priority = spec.priority ?? n.priority;
        this.writeConfig(n.host.name);
        const r = await reloadNodeConfig(this.lab, n.host, CLUSTER);
        const what = r.ok
          ? [
              ...r.applied.map((a) => `applied ${a}`),
              ...(r.restartRequired.length > 0 ? [`needs a restart: ${r.restartRequired.join(', ')}`] : []),
            ].join('; ') || 'no change'
          : `refused: ${r.error ?? '?'}`;
        rec.notes.push(`priority ${before} → ${n.priority}: reload-config ${what}`);
        return nothing;
      }
      case 'vip-removed': {
        const h = need().host;
        const r = await this.lab.exec(h, 'ip', ['addr', 'del', this.cidr, 'dev', h.iface], { reject: false });
        if (r.exitCode !== 0) rec.notes.push(`ip addr del on ${h.name}: ${r.stderr.trim()}`);
        return nothing;
      }
      case 'etcd-leader-kill': {
        const leader = await waitFor('an etcd leader', () => f.etcdLeaderIndex(), {
          timeoutMs: 10_000,
          intervalMs: 100,
        }).catch((e: unknown) => {
          throw new HarnessError(`no etcd leader to kill: ${String(e)}`);
        });
        rec.member = leader;
        await f.killEtcdMember(leader);
        return async () => {
          await f.restartEtcdMember(leader).catch((e: unknown) => {
            throw new HarnessError(`etcd member ${leader} did not come back: ${String(e)}`);
          });
        };
      }
      case 'etcd-quorum-loss': {
        const [a, b] = spec.members ?? [0, 1];
        await Promise.all([f.killEtcdMember(a), f.killEtcdMember(b)]);
        return async () => {
          // Both at once: quorum is back as soon as either answers a health check (which needs a quorum).
          const back = [a, b].map((i) =>
            f.restartEtcdMember(i).then(() => {
              rec.quorumBackAt ??= Date.now();
            }),
          );
          await Promise.all(back).catch((e: unknown) => {
            throw new HarnessError(`etcd members ${a}+${b} did not come back: ${String(e)}`);
          });
        };
      }
    }
  }

  /**
   * Add (or replace) an unrelated address on `host`'s lo, as other VIP groups, DHCP or IPv6 temporary addresses do
   * on a real host. 192.0.2.1 is TEST-NET-1 (RFC 5737).
   */
  private async changeUnrelatedAddress(host: LabHost): Promise<void> {
    await this.lab.exec(
      host,
      'ip',
      ['addr', 'replace', `${CHANGED_ADDRESS}/32`, 'dev', 'lo', 'valid_lft', '3600', 'preferred_lft', '3600'],
      { reject: false },
    );
  }

  /** Everything back to normal after a failed round: links up, nft rules gone, nodes and etcd running. */
  async repairAll(): Promise<void> {
    const f = this.lab.faults;
    for (const [name, n] of this.nodes) {
      await f.linkUp(n.host).catch(() => undefined);
      await f.healEtcd(n.host).catch(() => undefined);
      await f.clearNetem(n.host).catch(() => undefined);
      if (n.proc?.running === true) n.proc.signal('SIGCONT');
      else this.startNode(name);
    }
    for (let i = 0; i < this.lab.etcd.members.length; i++) await f.restartEtcdMember(i);
  }

  /** Stop every node (SIGTERM, then SIGKILL), observers stay up. */
  async stopNodes(): Promise<void> {
    await Promise.all(
      [...this.nodes.values()].map(async (n) => {
        n.held = true;
        await n.proc?.stop(3000);
      }),
    );
  }

  async destroy(): Promise<void> {
    await this.lab.destroy();
  }
}

/** A waiting helper for the runner: poll until `check` holds or the deadline passes; true when it held. */
export async function pollUntil(check: () => boolean, deadline: number, intervalMs = 25): Promise<boolean> {
  for (;;) {
    if (check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}
