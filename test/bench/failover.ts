/**
 * `pnpm bench:failover`: how long a client is left without an answer for the VIP when the holder crashes, stops
 * gracefully or freezes — coord (etcd lease, TTL 1 s) against keepalived 2.2.7 (VRRPv3, advert 1 s and 0.1 s) in
 * the same lab. A benchmark, not a test: it prints figures and writes them as JSON; it asserts nothing.
 *
 * Measure: the client broadcasts an ARP request for the VIP every 10 ms; the gap is the first reply from the new
 * holder's MAC minus the last reply from the old holder's MAC (`failoverGap`, reply times stamped by the client's
 * kernel). Every host's kernel address events give the exact time two hosts held the VIP at once; probes answered
 * by two MACs are counted from the ARP prober. A round whose observers were not alive at the end fails.
 *
 * Systems are interleaved round by round (round 1 of every system, then round 2…, the order rotating), so load
 * from other work on the machine does not favour one system. Each system is started for its round and stopped
 * after it, since a crash pulls the holder's cable and would hit every system on that host.
 *
 * Usage: pnpm bench:failover [--rounds 10] [--systems coord,keepalived-v3-1s] [--scenarios crash,freeze]
 *                            [--etcd-members 3] [--out bench/results/failover.json]
 * Systems: coord (etcd lease), coord-tls (the same over TLS with client certificates and etcd authentication, in a
 * second lab whose etcd runs so), keepalived-v3-1s, keepalived-v3-100ms, coord-vrrp-1s, coord-vrrp-100ms (coord's
 * VRRP mode, same VRRPv3 settings as keepalived). A new system is one more entry in SYSTEMS.
 * The JSON goes to bench/results/ (committed); `pnpm figures` regenerates the README's tables from it.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { assertBuilt, COORD_BIN, holdersOf, startCoord, tlsNodeCredentials } from '../coord.js';
import {
  doubleHolderMs,
  doubleHolderSamples,
  doubleReplyProbes,
  failoverGap,
  Lab,
  waitFor,
  type ArpReply,
  type ArpTimeline,
  type LabHost,
  type LabKeepalived,
  type LabProcess,
  type Timeline,
} from '../lab/index.js';
import { descendants, safeKill } from '../lab/proc.js';
import { keepalivedConf } from './keepalived.js';
import { envelopeOf, MIN_FOR_P99, percentile, RESULTS_DIR, type ResultEnvelope } from './results.js';

// ---------------------------------------------------------------------------------------------------------------
// Configuration

const PRIORITIES: Record<string, number> = { h1: 150, h2: 100, h3: 50 };
/** The node every system should settle on: the highest priority (all systems preempt). */
const PREFERRED = 'h1';
const TTL_SEC = 1;
const ARP_INTERVAL_MS = 10;
const SAMPLER_INTERVAL_MS = 20;
const FREEZE_MS = 3000;
/** Observe this long after the new holder first answered (late replies of the old holder, double replies). */
const TAIL_MS = 300;
/** Quiet time before the fault, so the prober has the old holder's replies. */
const LEAD_MS = 150;
const TAKEOVER_TIMEOUT_MS = 10_000;
const SETTLE_TIMEOUT_MS = 20_000;
const ETCD = { heartbeatMs: 50, electionMs: 500 };

/** One system under test: how to start one node of it on a host. Everything else is generic. */
interface SystemDef {
  name: string;
  /** Runs in the TLS lab (etcd with TLS, client-certificate and password authentication) instead of the plain one. */
  tls?: boolean;
  /** lab.freeAddress(vipIndex): a different VIP per system. */
  vipIndex: number;
  /** What goes into the JSON's config for this system. */
  describe: Record<string, unknown>;
  start(lab: Lab, host: LabHost, vip: string): LabProcess;
  /**
   * A planned switchover, where the system has one: hand the VIP from `holder` to `target` on purpose (`to`), and
   * afterwards let the preferred node have it back (`back`).
   */
  switchover?: {
    readonly how: string;
    to(run: SystemRun, holder: LabHost, target: LabHost): Promise<void>;
    back(run: SystemRun, holder: LabHost): Promise<void>;
  };
  /** After kill -9, before the restart: what a reboot would clear (keepalived refuses to start on stale pid files). */
  afterCrash?(proc: LabProcess): void;
}

function keepalivedSystem(name: string, vipIndex: number, vrid: number, advertInt: number): SystemDef {
  const conf = (lab: Lab, host: LabHost, vip: string, priority = PRIORITIES[host.name] ?? 100) =>
    keepalivedConf({ vrid, priority, advertInt, cidr: `${vip}/${lab.subnet.prefix}` });
  /** Rewrite the node's keepalived.conf with `priority` and reload it (SIGHUP), as an operator would. */
  const reprioritize = (run: SystemRun, host: LabHost, priority?: number) => {
    const ka = run.nodes.get(host.name) as LabKeepalived | undefined;
    if (ka === undefined) throw new Error(`no keepalived on ${host.name}`);
    writeFileSync(ka.configFile, conf(run.lab, host, run.vip, priority));
    ka.signal('SIGHUP');
    return Promise.resolve();
  };
  return {
    name,
    vipIndex,
    describe: { impl: 'keepalived 2.2.7', vrrpVersion: 3, advertInt, vrid, multicast: true, state: 'BACKUP' },
    start: (lab, host, vip) => lab.startKeepalived(host, conf(lab, host, vip), { name: `ka-${name}` }),
    switchover: {
      how: "the holder's priority lowered below the others' in its keepalived.conf, then SIGHUP",
      to: (run, holder) => reprioritize(run, holder, 40),
      back: (run, holder) => reprioritize(run, holder),
    },
    afterCrash: (proc) => {
      const ka = proc as LabKeepalived;
      for (const f of [ka.pidFile, ka.vrrpPidFile]) rmSync(f, { force: true });
    },
  };
}

/** coord's VRRP mode (`coord join --mode vrrp`), no etcd: the same VRRPv3 settings as the keepalived systems. */
function coordVrrpSystem(name: string, vipIndex: number, vrid: number, advertInt: number): SystemDef {
  return {
    name,
    vipIndex,
    describe: { impl: 'coord join --mode vrrp', vrrpVersion: 3, advertInt, vrid, multicast: true },
    start: (lab, host, vip) => {
      assertBuilt();
      return lab.spawn(
        host,
        process.execPath,
        [
          COORD_BIN,
          'join',
          '--mode',
          'vrrp',
          '--interface',
          'eth0',
          '--vrid',
          String(vrid),
          '--vip',
          `${vip}/${lab.subnet.prefix}`,
          '--priority',
          String(PRIORITIES[host.name] ?? 100),
          '--advert-int',
          String(advertInt),
          '--node',
          host.name,
          '--log-level',
          'warn',
          '--control-socket',
          join(lab.runDir, `${host.name}-vrrp.sock`),
        ],
        { name },
      );
    },
  };
}

/** The node flags of the TLS lab (set once it is up). */
let tlsCredentials: ((host: LabHost) => string[]) | undefined;

const SYSTEMS: SystemDef[] = [
  {
    name: 'coord',
    vipIndex: 1,
    describe: { impl: 'coord join (etcd lease)', ttlSec: TTL_SEC, preempt: true },
    switchover: coordSwitchover('bench'),
    start: (lab, host, vip) =>
      startCoord(lab, host, {
        cluster: 'bench',
        vips: [`${vip}/${lab.subnet.prefix}`],
        priority: PRIORITIES[host.name] ?? 100,
        ttlSec: TTL_SEC,
        logLevel: 'warn',
      }),
  },
  {
    name: 'coord-tls',
    tls: true,
    vipIndex: 6,
    describe: {
      impl: 'coord join (etcd lease) over TLS',
      etcd: 'https, --client-cert-auth, authentication on, node-role user',
      ttlSec: TTL_SEC,
      preempt: true,
    },
    start: (lab, host, vip) =>
      startCoord(lab, host, {
        cluster: 'bench',
        vips: [`${vip}/${lab.subnet.prefix}`],
        priority: PRIORITIES[host.name] ?? 100,
        ttlSec: TTL_SEC,
        logLevel: 'warn',
        withoutEtcdFlags: true,
        extraArgs: tlsCredentials?.(host) ?? [],
      }),
  },
  {
    name: 'coord-fast',
    vipIndex: 7,
    switchover: coordSwitchover('bench-fast'),
    describe: {
      impl: 'coord join --fast-failover --heartbeat-ms 50 (etcd lease + peer channel)',
      ttlSec: TTL_SEC,
      preempt: true,
    },
    start: (lab, host, vip) =>
      startCoord(lab, host, {
        cluster: 'bench-fast',
        vips: [`${vip}/${lab.subnet.prefix}`],
        priority: PRIORITIES[host.name] ?? 100,
        ttlSec: TTL_SEC,
        logLevel: 'warn',
        extraArgs: ['--fast-failover', '--heartbeat-ms', '50'],
      }),
  },
  keepalivedSystem('keepalived-v3-1s', 2, 52, 1),
  keepalivedSystem('keepalived-v3-100ms', 3, 53, 0.1),
  coordVrrpSystem('coord-vrrp-1s', 4, 54, 1),
  coordVrrpSystem('coord-vrrp-100ms', 5, 55, 0.1),
];

type ScenarioName = 'crash' | 'graceful' | 'freeze' | 'switchover';
/** What runs without --scenarios (and what failover.json holds). */
const SCENARIOS: ScenarioName[] = ['crash', 'graceful', 'freeze'];
/** Every scenario --scenarios accepts: `switchover` only for the systems that have one (`--out` its own file). */
const ALL_SCENARIOS: ScenarioName[] = [...SCENARIOS, 'switchover'];

/** `coord move` run from h3 against the cluster of a coord system (a planned switchover, docs/design.md). */
function coordSwitchover(cluster: string): NonNullable<SystemDef['switchover']> {
  const move = async (run: SystemRun, args: string[]) => {
    const r = await run.lab.exec(
      run.lab.host('h3'),
      process.execPath,
      [
        COORD_BIN,
        'move',
        'default',
        ...args,
        '--etcd',
        run.lab.etcd.endpoints.join(','),
        '--cluster',
        cluster,
        '--config',
        '',
      ],
      { reject: false, timeoutMs: 20_000 },
    );
    if (r.exitCode !== 0) throw new Error(`coord move ${args.join(' ')}: ${r.stderr.trim()}`);
  };
  return {
    how: 'coord move default --to h2 (run on h3), then --release',
    to: (run, _holder, target) => move(run, ['--to', target.name]),
    back: (run) => move(run, ['--release']),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics

function mean(values: readonly number[]): number | undefined {
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The longest silence between consecutive ARP replies (any MAC) in [from, to]; the reply before `from` counts. */
function longestSilence(replies: readonly ArpReply[], from: number, to: number): number {
  const before = replies.filter((r) => r.t < from).at(-1)?.t ?? from;
  const times = [before, ...replies.filter((r) => r.t >= from && r.t <= to).map((r) => r.t), to];
  let best = 0;
  for (let i = 1; i < times.length; i++) best = Math.max(best, (times[i] ?? 0) - (times[i - 1] ?? 0));
  return best;
}

// ---------------------------------------------------------------------------------------------------------------
// Runner

interface RoundResult {
  round: number;
  ok: boolean;
  error?: string;
  gapMs?: number;
  /** The old holder kept answering and nobody else ever did (no takeover happened). */
  noTakeover?: boolean;
  doubleHolderSamples: number;
  /** Exact time two hosts held the VIP at once, from the kernel's address events (ms). */
  doubleHolderMs: number;
  doubleReplyProbes: number;
  /** Crash only: the VIP was still on the crashed holder's interface when the measurement ended. */
  staleVip?: boolean;
  /** The measurement stood but bringing the node back failed (the system was restarted from scratch). */
  repairError?: string;
  from?: string;
  to?: string;
}

/** One system × scenario: the gaps of the rounds that succeeded, and every round (failed ones included). */
export interface Row {
  system: string;
  scenario: ScenarioName;
  /** Rounds run. */
  roundsRun: number;
  /** Rounds with a measured gap. */
  n: number;
  /** Rounds that failed (no measurement): counted here and listed in `rounds`, never dropped. */
  failed: number;
  gapsMs: number[];
  p50: number | undefined;
  /** Only with at least MIN_FOR_P99 gaps; below that a nearest-rank p99 would be the maximum. */
  p99: number | undefined;
  max: number | undefined;
  mean: number | undefined;
  doubleHolderSamples: number;
  doubleHolderMs: number;
  doubleReplyProbes: number;
  noTakeover: number;
  staleVipAfterCrash: number;
  rounds: RoundResult[];
}

/** What `bench/results/failover.json` holds. */
export interface FailoverResults extends ResultEnvelope {
  bench: 'failover';
  config: {
    systems: Record<string, Record<string, unknown>>;
    scenarios: ScenarioName[];
    priorities: Record<string, number>;
    etcd: { members: number; heartbeatMs: number; electionMs: number };
    coordTtlSec: number;
    arpIntervalMs: number;
    samplerIntervalMs: number;
    freezeMs: number;
    tailMs: number;
    interleaved: true;
  };
  rows: Row[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

class SystemRun {
  readonly vip: string;
  readonly nodes = new Map<string, LabProcess>();
  private readonly macOwner: Map<string, string>;

  constructor(
    readonly lab: Lab,
    readonly sys: SystemDef,
  ) {
    this.vip = lab.freeAddress(sys.vipIndex);
    this.macOwner = new Map(lab.hosts.map((h) => [h.mac, h.name]));
  }

  startNode(host: LabHost): void {
    this.nodes.set(host.name, this.sys.start(this.lab, host, this.vip));
  }

  async startAll(): Promise<void> {
    for (const h of this.lab.hosts) this.startNode(h);
    await this.settle();
  }

  /** Wait until the preferred node alone holds the VIP, and the client's probes are answered by it alone. */
  async settle(): Promise<void> {
    const preferred = this.lab.host(PREFERRED);
    await waitFor(
      `${this.sys.name}: ${PREFERRED} the single holder of ${this.vip}`,
      async () => {
        const h = await holdersOf(this.lab, this.vip);
        return h.length === 1 && h[0] === PREFERRED;
      },
      { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 50 },
    );
    // Steady for a moment (a preempting system may still be sending its takeover), then the node is running.
    await sleep(250);
    const h = await holdersOf(this.lab, this.vip);
    if (h.length !== 1 || h[0] !== PREFERRED)
      throw new Error(`${this.sys.name}: holder moved to ${h.join()}`);
    if (this.nodes.get(preferred.name)?.running !== true) throw new Error(`${PREFERRED} is not running`);
  }

  /** Stop every node, remove the VIP wherever it was left, bring every link up. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((p) => p.stop(3000)));
    this.nodes.clear();
    for (const h of this.lab.hosts) {
      await this.lab.faults.linkUp(h);
      await this.removeVip(h);
    }
  }

  async removeVip(host: LabHost): Promise<boolean> {
    if (!(await this.lab.addresses(host)).includes(this.vip)) return false;
    await this.lab.exec(host, 'ip', ['addr', 'del', `${this.vip}/${this.lab.subnet.prefix}`, 'dev', 'eth0'], {
      reject: false,
    });
    return true;
  }

  /** Full recovery after a failed round: restart everything and settle again. */
  async recover(): Promise<void> {
    await this.stopAll();
    await this.startAll();
  }

  /** First ARP reply at or after `after` from a MAC other than `oldMac`. */
  private newReply(replies: readonly ArpReply[], after: number, oldMac: string): ArpReply | undefined {
    return replies.find((r) => r.t >= after && r.mac !== oldMac && this.macOwner.has(r.mac));
  }

  /** Inject the fault into the holder and measure what the client saw. Leaves the system to `repair`. */
  async measure(scenario: ScenarioName, round: number): Promise<{ result: RoundResult; repair: Repair }> {
    const holders = await holdersOf(this.lab, this.vip);
    if (holders.length !== 1 || holders[0] === undefined)
      throw new Error(`holders before fault: ${holders.join()}`);
    const holder = this.lab.host(holders[0]);
    const proc = this.nodes.get(holder.name);
    if (proc === undefined) throw new Error(`no process for ${holder.name}`);
    const repair: Repair = { scenario, holder, proc, linkDown: false, stopping: undefined, killed: [] };
    const arp = await this.lab.arpProber(this.vip, { intervalMs: ARP_INTERVAL_MS });
    const sampler = await this.lab.sampler(this.vip, { intervalMs: SAMPLER_INTERVAL_MS });
    let seen: ArpTimeline | undefined;
    const result: RoundResult = {
      round,
      ok: false,
      doubleHolderSamples: 0,
      doubleHolderMs: 0,
      doubleReplyProbes: 0,
    };
    try {
      await sleep(LEAD_MS);
      const faultAt = Date.now();
      if (scenario === 'crash') {
        // Children first: keepalived's VRRP child stops gracefully (priority 0) if it sees its parent die first.
        const children = descendants(proc.pid);
        repair.killed = [proc.pid, ...children];
        for (const pid of children.reverse()) safeKill(pid, 'SIGKILL');
        proc.kill9();
        await this.lab.faults.linkDown(holder);
        repair.linkDown = true;
      } else if (scenario === 'graceful') {
        repair.stopping = proc.stop(5000); // keepalived's parent exits ~1 s after its priority-0 advert
      } else if (scenario === 'switchover') {
        const sw = this.sys.switchover;
        if (sw === undefined) throw new Error(`${this.sys.name} has no planned switchover`);
        // To the node the priorities rank next (h2 while h1 holds).
        const next = this.lab.hosts
          .filter((h) => h.name !== holder.name)
          .sort((a, b) => (PRIORITIES[b.name] ?? 0) - (PRIORITIES[a.name] ?? 0))[0];
        if (next === undefined) throw new Error('no other node');
        await sw.to(this, holder, next);
      } else {
        proc.signal('SIGSTOP');
        await sleep(FREEZE_MS);
        proc.signal('SIGCONT');
      }
      if (scenario === 'freeze') {
        await this.settle();
      } else {
        await waitFor(
          `${this.sys.name} ${scenario}: an answer from a new MAC`,
          () => this.newReply(arp.snapshot(), faultAt, holder.mac) !== undefined,
          { timeoutMs: TAKEOVER_TIMEOUT_MS, intervalMs: 10 },
        );
      }
      await sleep(TAIL_MS);
      seen = await arp.stop();
      const timeline = await sampler.stop();
      const dead = [...timeline.observers, seen.observer].filter((o) => !o.aliveAtStop || !o.responsive);
      if (dead.length > 0)
        throw new Error(`observers not working at the end: ${dead.map((o) => o.name).join()}`);
      const next = this.newReply(seen.replies, faultAt, holder.mac);
      // An unplugged host cannot answer: its (stale) copy of the VIP is reported as staleVip instead.
      const judged = scenario === 'crash' ? withoutHost(timeline, holder.name) : timeline;
      result.doubleHolderSamples = doubleHolderSamples(judged).length;
      result.doubleHolderMs = doubleHolderMs(judged);
      result.doubleReplyProbes = doubleReplyProbes(seen).length;
      result.from = holder.name;
      if (next !== undefined) {
        const gap = failoverGap(seen, { after: faultAt, fromMac: holder.mac, toMac: next.mac });
        if (gap.gapMs === undefined) throw new Error('no reply from the old holder before the fault');
        result.gapMs = gap.gapMs;
        result.to = this.macOwner.get(next.mac) ?? next.mac;
      } else {
        // A freeze shorter than the system's failure detection: the old holder's kernel kept answering.
        result.noTakeover = true;
        result.gapMs = longestSilence(seen.replies, faultAt, seen.end);
      }
      if (scenario === 'crash') result.staleVip = (await this.lab.addresses(holder)).includes(this.vip);
      result.ok = true;
    } finally {
      if (seen === undefined) {
        await arp.stop().catch(() => undefined);
        await sampler.stop().catch(() => undefined);
      }
    }
    return { result, repair };
  }

  /** Bring the faulted node back and wait for the preferred holder (every system preempts). */
  async repair(r: Repair): Promise<void> {
    if (r.scenario === 'crash') {
      await r.proc.exited;
      await waitGone(r.killed);
      this.sys.afterCrash?.(r.proc);
      // keepalived leaves the VIP on the dead node's interface; a rebooted host would not have it.
      await this.removeVip(r.holder);
      if (r.linkDown) await this.lab.faults.linkUp(r.holder);
      this.startNode(r.holder);
    } else if (r.scenario === 'graceful') {
      await r.stopping;
      this.startNode(r.holder);
    } else if (r.scenario === 'switchover') {
      await this.sys.switchover?.back(this, r.holder);
    }
    await this.settle();
  }
}

/** The timeline as if `host` did not exist (a host whose cable is pulled answers nobody). */
function withoutHost(t: Timeline, host: string): Timeline {
  return {
    ...t,
    initial: t.initial.filter((h) => h !== host),
    samples: t.samples.map((x) => ({ ...x, holders: x.holders.filter((h) => h !== host) })),
    events: t.events.filter((e) => e.host !== host),
  };
}

interface Repair {
  scenario: ScenarioName;
  holder: LabHost;
  proc: LabProcess;
  linkDown: boolean;
  stopping: Promise<unknown> | undefined;
  /** Crash: the PIDs killed (parent and descendants). */
  killed: number[];
}

/** PIDs gone from /proc (a zombie still counts as present: keepalived's pid-file check would see it). */
async function waitGone(pids: readonly number[]): Promise<void> {
  await waitFor('killed processes reaped', () => pids.every((p) => !existsSync(`/proc/${p}`)), {
    timeoutMs: 3000,
    intervalMs: 20,
  }).catch(() => undefined);
}

function summarize(system: string, scenario: ScenarioName, rounds: RoundResult[]): Row {
  const ok = rounds.filter((r) => r.ok && r.gapMs !== undefined);
  const gaps = ok.map((r) => Math.round(r.gapMs ?? 0));
  return {
    system,
    scenario,
    roundsRun: rounds.length,
    n: gaps.length,
    failed: rounds.length - ok.length,
    gapsMs: gaps,
    p50: percentile(gaps, 50),
    p99: gaps.length >= MIN_FOR_P99 ? percentile(gaps, 99) : undefined,
    max: gaps.length === 0 ? undefined : Math.max(...gaps),
    mean: ((m) => (m === undefined ? undefined : Math.round(m * 10) / 10))(mean(gaps)),
    doubleHolderSamples: rounds.reduce((a, r) => a + r.doubleHolderSamples, 0),
    doubleHolderMs: rounds.reduce((a, r) => a + r.doubleHolderMs, 0),
    doubleReplyProbes: rounds.reduce((a, r) => a + r.doubleReplyProbes, 0),
    noTakeover: rounds.filter((r) => r.noTakeover === true).length,
    staleVipAfterCrash: rounds.filter((r) => r.staleVip === true).length,
    rounds,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Output

function table(rows: readonly Row[]): string {
  const head = [
    'system',
    'scenario',
    'n',
    'p50',
    'p99',
    'max',
    'mean',
    '2-holder ms',
    '2-reply',
    'failed',
    'note',
  ];
  const f = (v: number | undefined) => (v === undefined ? '—' : String(Math.round(v)));
  const body = rows.map((r) => [
    r.system,
    r.scenario,
    String(r.n),
    f(r.p50),
    f(r.p99),
    f(r.max),
    f(r.mean),
    String(r.doubleHolderMs),
    String(r.doubleReplyProbes),
    String(r.failed),
    [
      r.noTakeover > 0 ? `no takeover ${r.noTakeover}/${r.rounds.length}` : '',
      r.staleVipAfterCrash > 0 ? `stale VIP ${r.staleVipAfterCrash}/${r.rounds.length}` : '',
    ]
      .filter((s) => s !== '')
      .join(', '),
  ]);
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i < 2 || i === r.length - 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function ratios(rows: readonly Row[]): string[] {
  const out: string[] = [];
  const find = (s: string, sc: string) => rows.find((r) => r.system === s && r.scenario === sc);
  const fmt = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? '—' : (a / b).toFixed(2);
  // [ours, theirs]: coord (etcd) against both keepalived settings; coord's VRRP mode against the same advert_int.
  const pairs: [string, string][] = [
    ['coord-tls', 'coord'],
    ['coord', 'keepalived-v3-1s'],
    ['coord', 'keepalived-v3-100ms'],
    ['coord-vrrp-1s', 'keepalived-v3-1s'],
    ['coord-vrrp-100ms', 'keepalived-v3-100ms'],
  ];
  for (const [ours, other] of pairs) {
    for (const sc of SCENARIOS) {
      const c = find(ours, sc);
      const k = find(other, sc);
      if (c === undefined || k === undefined) continue;
      out.push(
        `${ours} / ${other} ${sc.padEnd(8)}  p50 ${fmt(c.p50, k.p50)}  max ${fmt(c.max, k.max)}  mean ${fmt(c.mean, k.mean)}`,
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

function parseList<T extends string>(value: string | undefined, known: readonly T[], what: string): T[] {
  if (value === undefined) return [...known];
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const i of items)
    if (!known.includes(i as T)) throw new Error(`unknown ${what} "${i}" (known: ${known.join(', ')})`);
  return items as T[];
}

/** `list` rotated left by `k`: the system that goes first changes every round. */
function rotate<T>(list: readonly T[], k: number): T[] {
  const i = list.length === 0 ? 0 : k % list.length;
  return [...list.slice(i), ...list.slice(0, i)];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(RESULTS_DIR, 'failover.json') },
      rounds: { type: 'string', default: '10' },
      systems: { type: 'string' },
      scenarios: { type: 'string' },
      'etcd-members': { type: 'string', default: '3' },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
  const etcdMembers = Number(values['etcd-members']);
  if (etcdMembers !== 1 && etcdMembers !== 3) throw new Error('--etcd-members must be 1 or 3');
  const systems = parseList(
    values.systems,
    SYSTEMS.map((s) => s.name),
    'system',
  ).map((n) => SYSTEMS.find((s) => s.name === n) as SystemDef);
  const scenarios =
    values.scenarios === undefined ? SCENARIOS : parseList(values.scenarios, ALL_SCENARIOS, 'scenario');
  const out = resolve(values.out);
  if (systems.some((s) => s.name.startsWith('coord'))) assertBuilt();

  const t0 = Date.now();
  const load0 = loadavg()[0] ?? 0;
  const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
  const plain = systems.some((s) => s.tls !== true)
    ? await Lab.create({ name: 'bench', hosts: 3, etcdMembers, ...ETCD })
    : undefined;
  const tlsLab = systems.some((s) => s.tls === true)
    ? await Lab.create({ name: 'bench-tls', hosts: 3, etcdMembers, ...ETCD, tls: { auth: true } })
    : undefined;
  if (tlsLab !== undefined) tlsCredentials = await tlsNodeCredentials(tlsLab, 'bench');
  const labOf = (s: SystemDef): Lab => {
    const l = s.tls === true ? tlsLab : plain;
    if (l === undefined) throw new Error(`no lab for ${s.name}`);
    return l;
  };
  const results = new Map<string, Map<ScenarioName, RoundResult[]>>(
    systems.map((s) => [s.name, new Map(scenarios.map((sc) => [sc, []]))]),
  );
  const failedRound = (round: number, error: string): RoundResult => ({
    round,
    ok: false,
    error,
    doubleHolderSamples: 0,
    doubleHolderMs: 0,
    doubleReplyProbes: 0,
  });
  try {
    for (const l of [plain, tlsLab])
      if (l !== undefined) log(`lab ${l.prefix} up (etcd: ${etcdMembers} member(s))`);
    for (let round = 1; round <= rounds; round++) {
      for (const sys of rotate(systems, round - 1)) {
        const run = new SystemRun(labOf(sys), sys);
        let broken: string | undefined;
        try {
          await run.startAll();
        } catch (e) {
          broken = errText(e);
          log(`${sys.name} round ${round}: did not settle: ${broken}`);
        }
        for (const sc of scenarios) {
          if (sc === 'switchover' && sys.switchover === undefined) continue;
          let r: RoundResult;
          if (broken !== undefined) {
            r = failedRound(round, `system broken: ${broken}`);
          } else {
            let measured: { result: RoundResult; repair: Repair } | undefined;
            try {
              measured = await run.measure(sc, round);
              r = measured.result;
              await run.repair(measured.repair);
            } catch (e) {
              // A failed measurement is a failed round; a failed repair keeps the measurement and notes it.
              r =
                measured === undefined
                  ? failedRound(round, errText(e))
                  : { ...measured.result, repairError: errText(e) };
              try {
                await run.recover();
              } catch (e2) {
                broken = errText(e2);
              }
            }
          }
          results.get(sys.name)?.get(sc)?.push(r);
          log(
            `${sys.name} ${sc} #${round}: ${
              r.ok
                ? `gap ${Math.round(r.gapMs ?? 0)} ms ${r.from ?? '?'}→${r.noTakeover === true ? '(none)' : (r.to ?? '?')}` +
                  ` 2-holder ${r.doubleHolderMs} ms 2-reply ${r.doubleReplyProbes}` +
                  (r.staleVip === true ? ' stale-vip' : '') +
                  (r.repairError === undefined ? '' : ` REPAIR FAILED: ${r.repairError}`)
                : `FAILED: ${r.error ?? ''}`
            }`,
          );
        }
        await run.stopAll().catch((e: unknown) => log(`${sys.name}: stopping: ${errText(e)}`));
      }
    }
  } finally {
    await plain?.destroy();
    await tlsLab?.destroy();
  }
  const rows: Row[] = systems.flatMap((sys) =>
    scenarios
      .filter((sc) => sc !== 'switchover' || sys.switchover !== undefined)
      .map((sc) => summarize(sys.name, sc, results.get(sys.name)?.get(sc) ?? [])),
  );

  console.log('');
  console.log(`gap = first ARP reply from the new MAC − last from the old (ms), ${rounds} rounds per cell`);
  console.log(table(rows));
  const r = ratios(rows);
  if (r.length > 0) {
    console.log('');
    for (const l of r) console.log(l);
  }
  if (scenarios.includes('freeze')) {
    console.log(
      "\nfreeze: the paused node's kernel keeps answering ARP, so a takeover without fencing shows a tiny gap" +
        '\nand two holders (2-holder ms, 2-reply probes); read the freeze gaps together with those columns.',
    );
  }
  const json: FailoverResults = {
    ...envelopeOf('failover', t0, load0),
    rounds: {
      requested: rounds,
      total: rows.reduce((a, x) => a + x.roundsRun, 0),
      failed: rows.reduce((a, x) => a + x.failed, 0),
    },
    config: {
      systems: Object.fromEntries(
        systems.map((s) => [
          s.name,
          scenarios.includes('switchover') && s.switchover !== undefined
            ? { ...s.describe, switchover: s.switchover.how }
            : s.describe,
        ]),
      ),
      scenarios,
      priorities: PRIORITIES,
      etcd: { members: etcdMembers, ...ETCD },
      coordTtlSec: TTL_SEC,
      arpIntervalMs: ARP_INTERVAL_MS,
      samplerIntervalMs: SAMPLER_INTERVAL_MS,
      freezeMs: FREEZE_MS,
      tailMs: TAIL_MS,
      interleaved: true,
    },
    rows,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwrote ${out} (README tables: pnpm figures)`);
}

await main();
