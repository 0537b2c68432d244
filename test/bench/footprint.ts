/**
 * `pnpm bench:footprint`: is coord as light as the daemon it replaces? Memory and CPU of an idle node, and how
 * long the `coord` command takes to start, for coord and for keepalived 2.2.7 in the same lab. A benchmark, not a
 * test: it prints one table and writes JSON; it asserts nothing (the README block marks the targets ✔/✘).
 *
 * Idle nodes: a 3-host lab (etcd: 1 member), one group, priorities 150/100/50. Each system runs on every host
 * (coord: `coord join`, TTL 1 s; keepalived: VRRPv3, advert 1 s), one after the other. Once h1 alone holds the VIP
 * and `--settle-seconds` have passed, the nodes are left alone for `--idle-seconds`; meanwhile, every second, the
 * bench reads VmRSS of each node's processes from /proc/PID/status. Reported per node: VmRSS at the end, the maximum
 * of the per-second samples, and CPU % = (utime + stime, from /proc/PID/stat) ÷ wall time of the window, in % of
 * one core. A node is the whole process tree of what was started: coord is one process; keepalived is its parent
 * and its VRRP child, summed (RSS summed too, so pages both map are counted twice; the JSON also has PSS).
 *
 * CLI start: wall clock of the whole process, measured by bash's `time` inside the namespace of `--cli-host` (h2,
 * as an operator on a node; its etcd traffic goes through the lab's per-host proxy at 0 ms delay): `coord
 * --version`, `coord --help`, `coord status` and `coord service list` against the lab's etcd while the coord
 * nodes run (one service with one server is in etcd), the same Node with `-e 0` as the baseline, and `keepalived
 * --version` / `--help` for comparison. Commands are interleaved run by run after one discarded warm-up run each.
 *
 * Which coord: `--coord "NODE ENTRY"` (or `--coord /usr/bin/coord`, `--coord staged`, `--coord checkout`) when
 * given; else the shipped artifact as `pnpm package` stages it (build/coord_<version>_<arch>/usr/lib/coord/:
 * `node coord.mjs`) when it exists; else this checkout's `node packages/cli/bin/coord.js`. It is handed to
 * test/coord.ts as COORD_COMMAND, so the lab nodes and the CLI runs use the same one, and the JSON records which
 * (and whether the staged one is older than the newest commit touching packages/ or packaging/).
 *
 * Usage: pnpm bench:footprint [--idle-seconds 60] [--settle-seconds 5] [--cli-runs 20]
 *                             [--coord staged|checkout|"NODE ENTRY"] [--systems coord,keepalived] [--cli-host h2]
 *                             [--max-load 1.5] [--max-wait-seconds 600] [--out bench/results/footprint.json]
 * Before each phase it waits (up to --max-wait-seconds) for the 1-minute load average to drop to --max-load: the
 * machine is shared, and another job's CPU would show up as ours. The JSON goes to bench/results/ (committed);
 * `pnpm figures` regenerates the README block from it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Lab, waitFor, type LabHost, type LabProcess } from '../lab/index.js';
import { descendants } from '../lab/proc.js';
import { judgeFootprint } from './figures.js';
import { keepalivedConf } from './keepalived.js';
import { envelopeOf, percentile, RESULTS_DIR, type ResultEnvelope } from './results.js';

// ---------------------------------------------------------------------------------------------------------------
// Configuration

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLUSTER = 'footprint';
const PRIORITIES: Record<string, number> = { h1: 150, h2: 100, h3: 50 };
const PREFERRED = 'h1';
const TTL_SEC = 1;
const ADVERT_INT_SEC = 1;
const VRID = 61;
const ETCD = { members: 1 as const, heartbeatMs: 50, electionMs: 500 };
const SAMPLE_INTERVAL_MS = 1000;
const SETTLE_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;

type SystemName = 'coord' | 'keepalived';
const SYSTEMS: SystemName[] = ['coord', 'keepalived'];

// ---------------------------------------------------------------------------------------------------------------
// Results

/** One process of a node at the end of the idle window. */
export interface ProcessEnd {
  pid: number;
  comm: string;
  rssKb: number;
  /** VmHWM: the highest RSS since the process started (start-up included). */
  hwmKb: number;
  /** Proportional set size (shared pages divided among their users), from smaps_rollup. */
  pssKb: number | undefined;
  threads: number;
  /** utime + stime over the idle window, in clock ticks. */
  cpuTicks: number;
}

/** One node (the process tree of one system on one host) over the idle window. */
export interface NodeIdle {
  host: string;
  holder: boolean;
  ok: boolean;
  error?: string;
  /** Sums over the node's processes. */
  rssEndKb: number;
  rssMaxKb: number;
  hwmKb: number;
  pssEndKb: number | undefined;
  cpuTicks: number;
  wallMs: number;
  cpuPct: number;
  processes: ProcessEnd[];
  /** Per-second samples: summed VmRSS (kB), and the CPU ticks used since the previous sample. */
  perSecond: { rssKb: number[]; ticks: number[] };
}

/** holder · median over the nodes · max over the nodes. */
export interface NodeStat {
  holder: number | undefined;
  median: number | undefined;
  max: number | undefined;
}

export interface SystemIdle {
  system: SystemName;
  /** What ran on each host. */
  describe: string;
  /** What a node's figures sum (coord: its one process; keepalived: parent + VRRP child). */
  processes: string;
  ok: boolean;
  error?: string;
  /** ms from starting the nodes until the preferred node alone held the VIP. */
  settleMs: number | undefined;
  loadavg1AtStart: number;
  idleSeconds: number;
  nodes: NodeIdle[];
  summary: { rssEndMiB: NodeStat; rssMaxMiB: NodeStat; cpuPct: NodeStat };
}

export type CliName =
  | 'coord --version'
  | 'coord --help'
  | 'coord status'
  | 'coord service list'
  | 'node -e 0'
  | 'keepalived --version'
  | 'keepalived --help';

export interface CliRow {
  name: CliName;
  argv: string[];
  /** Wall ms of each counted run (warm-up excluded), in the order run. */
  runsMs: number[];
  warmupMs: number | undefined;
  failed: number;
  errors: string[];
  p50: number | undefined;
  max: number | undefined;
}

export interface CoordUnderTest {
  /** given: --coord; staged: `pnpm package`'s staging directory; checkout: packages/cli/bin/coord.js. */
  kind: 'given' | 'staged' | 'checkout';
  command: string[];
  /** What `coord --version` printed. */
  version: string;
  /** The Node that runs it (`node --version` of the command's runtime) and the baseline `node -e 0` uses. */
  node: { path: string; version: string };
  /** Staged only: when `pnpm package` staged it, and the newest commit touching packages/ or packaging/. */
  stagedAt?: string;
  newestSourceCommitAt?: string;
  /** Staged only: older than that commit (the artifact may not be what the checkout builds). */
  stale?: boolean;
  /** Staged only: what the package's `/usr/bin/coord` runs for `coord join` (read from it), paths as basenames. */
  agentCommand?: string[];
}

/** What `bench/results/footprint.json` holds. */
export interface FootprintResults extends ResultEnvelope {
  bench: 'footprint';
  config: {
    hosts: string[];
    priorities: Record<string, number>;
    etcd: { members: number; heartbeatMs: number; electionMs: number };
    coordTtlSec: number;
    keepalived: { version: string; vrrpVersion: 3; advertIntSec: number };
    idleSeconds: number;
    settleSeconds: number;
    sampleIntervalMs: number;
    clkTck: number;
    cliRuns: number;
    cliHost: string;
    maxLoad: number;
    coord: CoordUnderTest;
  };
  /** 1-minute load average when each phase started measuring, and how long the bench waited for it. */
  phases: { phase: string; loadavg1: number; waitedSec: number }[];
  idle: SystemIdle[];
  cli: CliRow[];
}

// ---------------------------------------------------------------------------------------------------------------
// /proc

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

interface ProcRead {
  comm: string;
  rssKb: number;
  hwmKb: number;
  threads: number;
  ticks: number;
}

function readProc(pid: number): ProcRead | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields resume after the last ')' (field 3 = state).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[11]) + Number(rest[12]); // utime (14), stime (15)
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number =>
      Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    const comm = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?';
    return { comm, rssKb: field('VmRSS'), hwmKb: field('VmHWM'), threads: field('Threads'), ticks };
  } catch {
    return undefined;
  }
}

function readPss(pid: number): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;
const mib = (kb: number) => round(kb / 1024, 1);

function nodeStat(nodes: readonly NodeIdle[], pick: (n: NodeIdle) => number): NodeStat {
  const ok = nodes.filter((n) => n.ok);
  const values = ok.map(pick);
  const holder = ok.find((n) => n.holder);
  return {
    holder: holder === undefined ? undefined : pick(holder),
    median: percentile(values, 50),
    max: values.length === 0 ? undefined : Math.max(...values),
  };
}

/** The hosts whose eth0 holds `address` (asked inside each host's namespace). */
async function holdersOf(lab: Lab, address: string): Promise<string[]> {
  const out: string[] = [];
  for (const h of lab.hosts) if ((await lab.addresses(h)).includes(address)) out.push(h.name);
  return out;
}

/** Wait until the 1-minute load average is at most `max` (at most `maxWaitSec`); the load and the wait. */
async function waitForLoad(
  phase: string,
  max: number,
  maxWaitSec: number,
  log: (s: string) => void,
): Promise<{ phase: string; loadavg1: number; waitedSec: number }> {
  const t0 = Date.now();
  let announced = false;
  for (;;) {
    const load = loadavg()[0] ?? 0;
    const waited = (Date.now() - t0) / 1000;
    if (load <= max || waited >= maxWaitSec) {
      if (load > max)
        log(`${phase}: load average still ${load.toFixed(2)} after ${Math.round(waited)} s; measuring`);
      return { phase, loadavg1: round(load, 2), waitedSec: Math.round(waited) };
    }
    if (!announced) log(`${phase}: load average ${load.toFixed(2)} > ${max}; waiting for it to drop`);
    announced = true;
    await sleep(5000);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Which coord

function git(...args: string[]): string {
  return execFileSync('git', args, {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  }).trim();
}

/** The runtime a coord command runs on: its first word when that is a Node, the packaged one for /usr/bin/coord. */
function runtimeOf(command: readonly string[]): string {
  const first = command[0] ?? process.execPath;
  if (command.length >= 2) return first;
  if (first === '/usr/bin/coord' && existsSync('/usr/lib/coord/node')) return '/usr/lib/coord/node';
  return process.execPath;
}

/** A coord to measure, and for a staged package the Node it carries. */
type Chosen = Omit<CoordUnderTest, 'version' | 'node'> & { runtime?: string };

/** `pnpm package`'s staging directory of this checkout's version, when it exists. */
function stagedCoord(): Chosen | undefined {
  const ver = (
    JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')) as { version: string }
  ).version;
  const arch = execFileSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).trim();
  const lib = join(ROOT, 'build', `coord_${ver}_${arch}`, 'usr/lib/coord');
  const entry = join(lib, 'coord.mjs');
  const wrapper = join(lib, '../../bin/coord');
  if (!existsSync(join(lib, 'node')) || !existsSync(entry) || !existsSync(wrapper)) return undefined;
  // The package's own wrapper (packaging/build.ts: the agent's V8 flags for join only), pointed at the staging
  // directory instead of /usr/lib/coord.
  const dir = mkdtempSync(join(tmpdir(), 'coord-footprint-'));
  const staged = join(dir, 'coord');
  const script = readFileSync(wrapper, 'utf8');
  writeFileSync(staged, script.replaceAll('/usr/lib/coord', lib), { mode: 0o755 });
  const joinLine = /\[ "\$a" = join \] && exec (.*) "\$@"/.exec(script)?.[1];
  const stagedAt = statSync(entry).mtime;
  const newest = new Date(Number(git('log', '-1', '--format=%ct', '--', 'packages', 'packaging')) * 1000);
  return {
    kind: 'staged',
    command: [staged],
    runtime: join(lib, 'node'),
    stagedAt: stagedAt.toISOString(),
    newestSourceCommitAt: newest.toISOString(),
    stale: stagedAt < newest,
    ...(joinLine === undefined
      ? {}
      : {
          agentCommand: joinLine
            .trim()
            .split(/\s+/)
            .map((a) => (a.startsWith('/') ? basename(a) : a)),
        }),
  };
}

/** --coord: `staged`, `checkout`, a command (`NODE ENTRY`, `/usr/bin/coord`); default: staged, else checkout. */
function resolveCoord(given: string | undefined): Chosen {
  const checkout = {
    kind: 'checkout' as const,
    command: [process.execPath, join(ROOT, 'packages/cli/bin/coord.js')],
  };
  const choice = given?.trim() ?? '';
  if (choice === 'checkout') return checkout;
  if (choice === 'staged') {
    const staged = stagedCoord();
    if (staged === undefined)
      throw new Error('--coord staged: nothing staged under build/ (run pnpm package)');
    return staged;
  }
  if (choice !== '') return { kind: 'given', command: choice.split(/\s+/) };
  return stagedCoord() ?? checkout;
}

// ---------------------------------------------------------------------------------------------------------------
// Idle nodes

type CoordModule = typeof import('../coord.js');

interface SystemDef {
  name: SystemName;
  describe: string;
  processes: string;
  vipIndex: number;
  /** How many processes a running node has (the bench waits for them before measuring). */
  processCount: number;
  start(lab: Lab, host: LabHost, cidr: string): LabProcess;
}

function systemDefs(coord: CoordModule): Record<SystemName, SystemDef> {
  return {
    coord: {
      name: 'coord',
      describe: `coord join (etcd lease), TTL ${TTL_SEC} s, log level info, no HAProxy, no metrics endpoint`,
      processes: 'the coord process',
      vipIndex: 1,
      processCount: 1,
      start: (lab, host, cidr) =>
        coord.startCoord(lab, host, {
          cluster: CLUSTER,
          vips: [cidr],
          priority: PRIORITIES[host.name] ?? 100,
          ttlSec: TTL_SEC,
        }),
    },
    keepalived: {
      name: 'keepalived',
      describe: `keepalived 2.2.7 --vrrp, VRRPv3, advert ${ADVERT_INT_SEC} s, multicast`,
      processes: 'keepalived parent + VRRP child, summed',
      vipIndex: 2,
      processCount: 2,
      start: (lab, host, cidr) =>
        lab.startKeepalived(
          host,
          keepalivedConf({
            vrid: VRID,
            priority: PRIORITIES[host.name] ?? 100,
            advertInt: ADVERT_INT_SEC,
            cidr,
          }),
          {
            name: 'ka-footprint',
          },
        ),
    },
  };
}

/** The PIDs of a node: the process and its descendants (keepalived's VRRP child). */
function treeOf(proc: LabProcess): number[] {
  return [proc.pid, ...descendants(proc.pid)];
}

async function measureIdle(
  lab: Lab,
  sys: SystemDef,
  idleSeconds: number,
  settleSeconds: number,
  beforeIdle: () => Promise<number>,
  log: (s: string) => void,
): Promise<{ idle: SystemIdle; nodes: Map<string, LabProcess> }> {
  const vip = lab.freeAddress(sys.vipIndex);
  const cidr = `${vip}/${lab.subnet.prefix}`;
  const procs = new Map<string, LabProcess>();
  const idle: SystemIdle = {
    system: sys.name,
    describe: sys.describe,
    processes: sys.processes,
    ok: false,
    settleMs: undefined,
    loadavg1AtStart: 0,
    idleSeconds,
    nodes: [],
    summary: {
      rssEndMiB: { holder: undefined, median: undefined, max: undefined },
      rssMaxMiB: { holder: undefined, median: undefined, max: undefined },
      cpuPct: { holder: undefined, median: undefined, max: undefined },
    },
  };
  try {
    const t0 = performance.now();
    for (const h of lab.hosts) procs.set(h.name, sys.start(lab, h, cidr));
    await waitFor(
      `${sys.name}: ${PREFERRED} the single holder of ${vip}`,
      async () => {
        for (const [name, p] of procs) if (!p.running) throw new Error(`${sys.name} on ${name} exited`);
        return (await holdersOf(lab, vip)).join() === PREFERRED;
      },
      { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 50 },
    );
    idle.settleMs = Math.round(performance.now() - t0);
    await waitFor(
      `${sys.name}: ${sys.processCount} process(es) per node`,
      () => [...procs.values()].every((p) => treeOf(p).length >= sys.processCount),
      { timeoutMs: 5000, intervalMs: 50 },
    );
    log(`${sys.name}: ${PREFERRED} holds ${vip} after ${idle.settleMs} ms; settling ${settleSeconds} s`);
    await sleep(settleSeconds * 1000);
    idle.loadavg1AtStart = await beforeIdle();
    const holders = await holdersOf(lab, vip);
    if (holders.join() !== PREFERRED)
      throw new Error(`holder moved before the idle window: ${holders.join()}`);

    // The idle window: nothing but reading /proc once a second.
    const trees = new Map([...procs].map(([name, p]) => [name, treeOf(p)]));
    const ticksAt = (pids: readonly number[]) => pids.reduce((a, pid) => a + (readProc(pid)?.ticks ?? 0), 0);
    const rssOf = (pids: readonly number[]) => pids.reduce((a, pid) => a + (readProc(pid)?.rssKb ?? 0), 0);
    const start = new Map([...trees].map(([name, pids]) => [name, pids.map((pid) => readProc(pid))]));
    const w0 = performance.now();
    const series = new Map(
      [...trees].map(([name]) => [name, { rssKb: [] as number[], ticks: [] as number[] }]),
    );
    const lastTicks = new Map([...trees].map(([name, pids]) => [name, ticksAt(pids)]));
    log(`${sys.name}: idle for ${idleSeconds} s (load average ${idle.loadavg1AtStart})`);
    for (let s = 1; s <= idleSeconds; s++) {
      await sleep(Math.max(0, w0 + s * SAMPLE_INTERVAL_MS - performance.now()));
      for (const [name, pids] of trees) {
        const t = ticksAt(pids);
        const row = series.get(name);
        row?.rssKb.push(rssOf(pids));
        row?.ticks.push(t - (lastTicks.get(name) ?? t));
        lastTicks.set(name, t);
      }
    }
    const wallMs = performance.now() - w0;
    const after = await holdersOf(lab, vip);
    for (const h of lab.hosts) {
      const pids = trees.get(h.name) ?? [];
      const before = start.get(h.name) ?? [];
      const ends = pids.map((pid) => readProc(pid));
      const processes: ProcessEnd[] = pids.flatMap((pid, i) => {
        const e = ends[i];
        const b = before[i];
        return e === undefined
          ? []
          : [
              {
                pid,
                comm: e.comm,
                rssKb: e.rssKb,
                hwmKb: e.hwmKb,
                pssKb: readPss(pid),
                threads: e.threads,
                cpuTicks: e.ticks - (b?.ticks ?? 0),
              },
            ];
      });
      const problems: string[] = [];
      if (processes.length !== pids.length || before.some((b) => b === undefined))
        problems.push('a process of the node exited during the window');
      const nowTree = treeOf(procs.get(h.name) as LabProcess);
      if (nowTree.join() !== pids.join())
        problems.push(`its processes changed: ${pids.join()} → ${nowTree.join()}`);
      if (after.join() !== PREFERRED) problems.push(`holders at the end: ${after.join() || 'none'}`);
      const s = series.get(h.name) ?? { rssKb: [], ticks: [] };
      const cpuTicks = processes.reduce((a, p) => a + p.cpuTicks, 0);
      const pss = processes.map((p) => p.pssKb);
      idle.nodes.push({
        host: h.name,
        holder: h.name === PREFERRED,
        ok: problems.length === 0,
        ...(problems.length === 0 ? {} : { error: problems.join('; ') }),
        rssEndKb: processes.reduce((a, p) => a + p.rssKb, 0),
        rssMaxKb: Math.max(0, ...s.rssKb),
        hwmKb: processes.reduce((a, p) => a + p.hwmKb, 0),
        pssEndKb: pss.some((p) => p === undefined)
          ? undefined
          : pss.reduce((a: number, p) => a + (p ?? 0), 0),
        cpuTicks,
        wallMs: Math.round(wallMs),
        cpuPct: round((cpuTicks / CLK_TCK / (wallMs / 1000)) * 100, 3),
        processes,
        perSecond: s,
      });
    }
    idle.ok = idle.nodes.every((n) => n.ok);
    if (!idle.ok)
      idle.error = idle.nodes
        .flatMap((n) => (n.error === undefined ? [] : [`${n.host}: ${n.error}`]))
        .join('; ');
  } catch (e) {
    idle.error = errText(e);
    log(`${sys.name}: FAILED: ${idle.error}`);
  }
  idle.summary = {
    rssEndMiB: nodeStat(idle.nodes, (n) => mib(n.rssEndKb)),
    rssMaxMiB: nodeStat(idle.nodes, (n) => mib(n.rssMaxKb)),
    cpuPct: nodeStat(idle.nodes, (n) => round(n.cpuPct, 2)),
  };
  return { idle, nodes: procs };
}

async function stopNodes(lab: Lab, nodes: Map<string, LabProcess>, vip: string): Promise<void> {
  await Promise.all([...nodes.values()].map((p) => p.stop(5000)));
  for (const h of lab.hosts) {
    if ((await lab.addresses(h)).includes(vip))
      await lab.exec(h, 'ip', ['addr', 'del', `${vip}/${lab.subnet.prefix}`, 'dev', h.iface], {
        reject: false,
      });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// CLI start

/**
 * bash's `time` around the command, inside the namespace: the wall clock of the whole process (fork, exec, Node's
 * start, the command, exit), without `ip netns exec` and the bench's own spawn. The time goes to stdout, the
 * command's stdout is discarded, its stderr kept (for the error of a failed run).
 */
const TIME_SCRIPT = 'TIMEFORMAT=%3R; exec 3>&1; { time "$@" >/dev/null 2>&4; } 4>&2 2>&3';

async function timeOnce(
  lab: Lab,
  host: LabHost,
  argv: readonly string[],
): Promise<{ ms?: number; error?: string }> {
  const r = await lab.exec(host, 'bash', ['-c', TIME_SCRIPT, 'footprint-time', ...argv], {
    reject: false,
    timeoutMs: CLI_TIMEOUT_MS,
  });
  const seconds = Number(r.stdout.trim().split('\n').at(-1));
  if (r.exitCode !== 0 || !Number.isFinite(seconds))
    return {
      error: `exit ${r.exitCode ?? r.timedOut}: ${r.stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 300)}`,
    };
  return { ms: Math.round(seconds * 1000) };
}

async function measureCli(
  lab: Lab,
  host: LabHost,
  commands: { name: CliName; argv: string[] }[],
  runs: number,
  log: (s: string) => void,
): Promise<CliRow[]> {
  const rows = new Map<CliName, CliRow>(
    commands.map((c) => [
      c.name,
      {
        name: c.name,
        argv: c.argv,
        runsMs: [],
        warmupMs: undefined,
        failed: 0,
        errors: [],
        p50: undefined,
        max: undefined,
      },
    ]),
  );
  const once = async (c: { name: CliName; argv: string[] }, counted: boolean) => {
    const row = rows.get(c.name) as CliRow;
    const t = await timeOnce(lab, host, c.argv);
    if (t.ms === undefined) {
      row.failed++;
      if (row.errors.length < 3) row.errors.push(t.error ?? 'failed');
    } else if (counted) row.runsMs.push(t.ms);
    else row.warmupMs = t.ms;
  };
  for (const c of commands) await once(c, false);
  for (let i = 0; i < runs; i++) {
    // Interleaved, the order rotating, so a burst of other work on the machine does not land on one command.
    const k = i % commands.length;
    for (const c of [...commands.slice(k), ...commands.slice(0, k)]) await once(c, true);
    if ((i + 1) % 5 === 0) log(`cli: ${i + 1} of ${runs} runs`);
  }
  for (const row of rows.values()) {
    row.p50 = percentile(row.runsMs, 50);
    row.max = row.runsMs.length === 0 ? undefined : Math.max(...row.runsMs);
  }
  return [...rows.values()];
}

// ---------------------------------------------------------------------------------------------------------------
// Output

function table(r: FootprintResults): string {
  const f = (v: number | undefined, d = 1) => (v === undefined ? '—' : v.toFixed(d));
  const stat = (s: NodeStat | undefined, d = 1) =>
    s === undefined ? '—' : `${f(s.holder, d)} · ${f(s.median, d)} / ${f(s.max, d)}`;
  const idle = (sys: SystemName) => r.idle.find((x) => x.system === sys);
  const cli = (name: CliName) => {
    const c = r.cli.find((x) => x.name === name);
    if (c === undefined) return '—';
    return `${f(c.p50, 0)} / ${f(c.max, 0)}${c.failed > 0 ? ` (${c.failed} failed)` : ''}`;
  };
  const judged = judgeFootprint(r);
  const target = (key: string) => {
    const t = judged.find((x) => x.key === key);
    return t === undefined ? '' : `${t.limit} ${t.ok === undefined ? '(not measured)' : t.ok ? '✔' : '✘'}`;
  };
  const rows: string[][] = [
    ['', 'coord', 'keepalived 2.2.7', 'target (coord)'],
    [
      'RSS at end, MiB: holder · median / max',
      stat(idle('coord')?.summary.rssEndMiB),
      stat(idle('keepalived')?.summary.rssEndMiB),
      '',
    ],
    [
      'RSS max of 1 s samples, MiB',
      stat(idle('coord')?.summary.rssMaxMiB),
      stat(idle('keepalived')?.summary.rssMaxMiB),
      target('rss'),
    ],
    [
      'CPU % of one core over the idle window',
      stat(idle('coord')?.summary.cpuPct, 2),
      stat(idle('keepalived')?.summary.cpuPct, 2),
      target('cpu'),
    ],
    ['--version, ms: median / max', cli('coord --version'), cli('keepalived --version'), target('version')],
    ['--help, ms', cli('coord --help'), cli('keepalived --help'), ''],
    ['coord status, ms', cli('coord status'), '', target('status')],
    ['coord service list, ms', cli('coord service list'), '', target('service list')],
    ['node -e 0 (baseline), ms', cli('node -e 0'), '', ''],
  ];
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((x) => (x[i] ?? '').length)));
  const line = (x: string[]) =>
    x.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(rows[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join(
    '\n',
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Main

function parseSystems(value: string | undefined): SystemName[] {
  if (value === undefined) return [...SYSTEMS];
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const i of items)
    if (!SYSTEMS.includes(i as SystemName))
      throw new Error(`unknown system "${i}" (known: ${SYSTEMS.join(', ')})`);
  return items as SystemName[];
}

function positive(value: string | undefined, name: string, integer = true): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw new Error(`--${name} must be a positive ${integer ? 'integer' : 'number'}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(RESULTS_DIR, 'footprint.json') },
      'idle-seconds': { type: 'string', default: '60' },
      'settle-seconds': { type: 'string', default: '5' },
      'cli-runs': { type: 'string', default: '20' },
      'cli-host': { type: 'string', default: 'h2' },
      coord: { type: 'string' },
      systems: { type: 'string' },
      'max-load': { type: 'string', default: '1.5' },
      'max-wait-seconds': { type: 'string', default: '600' },
    },
  });
  const idleSeconds = positive(values['idle-seconds'], 'idle-seconds');
  const settleSeconds = Number(values['settle-seconds']);
  if (!Number.isFinite(settleSeconds) || settleSeconds < 0) throw new Error('--settle-seconds must be ≥ 0');
  const cliRuns = positive(values['cli-runs'], 'cli-runs');
  const maxLoad = positive(values['max-load'], 'max-load', false);
  const maxWaitSec = Number(values['max-wait-seconds']);
  const systems = parseSystems(values.systems);
  const out = resolve(values.out);

  // test/coord.ts reads COORD_COMMAND once, when imported: set it first, so lab nodes run the coord chosen here.
  const chosen = resolveCoord(values.coord);
  if (chosen.command.some((w) => w.includes(' ')))
    throw new Error('the coord command may not contain paths with spaces');
  process.env['COORD_COMMAND'] = chosen.command.join(' ');
  const coord = await import('../coord.js');
  const { runtime: stagedRuntime, ...described } = chosen;
  const runtime = stagedRuntime ?? runtimeOf(coord.COORD_COMMAND);
  const version = execFileSync(
    coord.COORD_COMMAND[0] as string,
    [...coord.COORD_COMMAND.slice(1), '--version'],
    {
      encoding: 'utf8',
    },
  ).trim();
  const underTest: CoordUnderTest = {
    ...described,
    command: [...coord.COORD_COMMAND],
    version,
    node: { path: runtime, version: execFileSync(runtime, ['--version'], { encoding: 'utf8' }).trim() },
  };
  const kaOut = spawnSync('keepalived', ['--version'], { encoding: 'utf8' });
  const kaVersion = /Keepalived v(\S+)/.exec(`${kaOut.stdout}${kaOut.stderr}`)?.[1] ?? 'unknown';

  const t0 = Date.now();
  const load0 = loadavg()[0] ?? 0;
  const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
  log(
    `coord under test (${underTest.kind}): ${underTest.command.join(' ')} — ${version}, Node ${underTest.node.version}` +
      (underTest.stale === true
        ? ' — STALE: staged before the newest commit to packages/ or packaging/'
        : ''),
  );
  if (process.env['NODE_OPTIONS'] !== undefined)
    log(`NODE_OPTIONS is set (${process.env['NODE_OPTIONS']}): coord inherits it`);
  const phases: FootprintResults['phases'] = [];
  const idle: SystemIdle[] = [];
  let cli: CliRow[] = [];
  const defs = systemDefs(coord);
  const runIdle = async (lab: Lab, name: SystemName) => {
    const sys = defs[name];
    const { idle: result, nodes } = await measureIdle(
      lab,
      sys,
      idleSeconds,
      settleSeconds,
      async () => {
        const p = await waitForLoad(`${name} idle`, maxLoad, maxWaitSec, log);
        phases.push(p);
        return p.loadavg1;
      },
      log,
    );
    idle.push(result);
    const s = result.summary;
    log(
      `${name}: RSS end ${s.rssEndMiB.median ?? '—'} MiB (max ${s.rssEndMiB.max ?? '—'}), CPU ${s.cpuPct.median ?? '—'} % (max ${s.cpuPct.max ?? '—'})`,
    );
    return { nodes, vip: lab.freeAddress(sys.vipIndex) };
  };

  const lab = await Lab.create({
    name: 'footprint',
    hosts: 3,
    etcdMembers: ETCD.members,
    heartbeatMs: ETCD.heartbeatMs,
    electionMs: ETCD.electionMs,
  });
  try {
    log(`lab ${lab.prefix} up (etcd: ${ETCD.members} member)`);
    const cliHost = lab.host(values['cli-host']);
    const etcdFlags = ['--config', '', '--etcd', lab.etcd.endpoints.join(','), '--cluster', CLUSTER];
    const coordArgv = (...args: string[]) => [...coord.COORD_COMMAND, ...args];
    // One service with one server, so `service list` and `status` have a model to read (and the nodes watch one).
    for (const args of [
      ['service', 'set', 'web', '--bind', `${lab.freeAddress(1)}:80`],
      ['server', 'set', 'web', 'app1', `${lab.client.ip}:8080`],
    ]) {
      const [cmd, ...argv] = coordArgv(...args, ...etcdFlags) as [string, ...string[]];
      const r = await lab.exec(cliHost, cmd, argv, { reject: false, timeoutMs: CLI_TIMEOUT_MS });
      if (r.exitCode !== 0)
        throw new Error(
          `the coord under test cannot run \`coord ${args.join(' ')}\` (exit ${r.exitCode}): ` +
            `${r.stderr.trim().split('\n')[0] ?? ''} — measure another one with --coord checkout|staged|"NODE ENTRY"`,
        );
    }
    const coordCli: { name: CliName; argv: string[] }[] = [
      { name: 'coord --version', argv: coordArgv('--version') },
      { name: 'coord --help', argv: coordArgv('--help') },
      { name: 'coord status', argv: coordArgv('status', ...etcdFlags) },
      { name: 'coord service list', argv: coordArgv('service', 'list', ...etcdFlags) },
      { name: 'node -e 0', argv: [runtime, '-e', '0'] },
    ];
    const kaCli: { name: CliName; argv: string[] }[] = [
      { name: 'keepalived --version', argv: ['keepalived', '--version'] },
      { name: 'keepalived --help', argv: ['keepalived', '--help'] },
    ];
    for (const name of systems) {
      const { nodes, vip } = await runIdle(lab, name);
      if (name === 'coord') {
        // The CLI while the coord nodes run (status reads their records); keepalived's own commands with them.
        phases.push(await waitForLoad('cli', maxLoad, maxWaitSec, log));
        log(`cli: ${cliRuns} runs of each command from ${cliHost.name}, interleaved`);
        cli = await measureCli(
          lab,
          cliHost,
          [...coordCli, ...(systems.includes('keepalived') ? kaCli : [])],
          cliRuns,
          log,
        );
      }
      await stopNodes(lab, nodes, vip);
    }
    if (!systems.includes('coord')) {
      phases.push(await waitForLoad('cli', maxLoad, maxWaitSec, log));
      cli = await measureCli(lab, cliHost, kaCli, cliRuns, log);
    }
  } finally {
    await lab.destroy();
  }

  const failedNodes = idle.reduce(
    (a, s) => a + (s.ok ? 0 : Math.max(1, s.nodes.filter((n) => !n.ok).length)),
    0,
  );
  const json: FootprintResults = {
    ...envelopeOf('footprint', t0, load0),
    rounds: {
      requested: cliRuns,
      total:
        idle.reduce((a, s) => a + Math.max(s.nodes.length, 1), 0) +
        cli.reduce((a, c) => a + c.runsMs.length + c.failed, 0),
      failed: failedNodes + cli.reduce((a, c) => a + c.failed, 0),
    },
    config: {
      hosts: Object.keys(PRIORITIES),
      priorities: PRIORITIES,
      etcd: { members: ETCD.members, heartbeatMs: ETCD.heartbeatMs, electionMs: ETCD.electionMs },
      coordTtlSec: TTL_SEC,
      keepalived: { version: kaVersion, vrrpVersion: 3, advertIntSec: ADVERT_INT_SEC },
      idleSeconds,
      settleSeconds,
      sampleIntervalMs: SAMPLE_INTERVAL_MS,
      clkTck: CLK_TCK,
      cliRuns,
      cliHost: values['cli-host'],
      maxLoad,
      coord: underTest,
    },
    phases,
    idle,
    cli,
  };
  console.log('');
  console.log(
    `idle: ${idleSeconds} s per system on ${Object.keys(PRIORITIES).length} nodes (holder · median / max over the nodes); ` +
      `keepalived = parent + VRRP child summed; CLI: wall ms over ${cliRuns} runs from ${values['cli-host']} (${cpus().length} CPUs)`,
  );
  console.log(table(json));
  for (const s of idle) if (!s.ok) console.log(`\n${s.system}: ${s.error ?? 'failed'}`);
  for (const c of cli)
    if (c.failed > 0) console.log(`\n${c.name}: ${c.failed} failed: ${c.errors.join(' | ')}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwrote ${out} (README block: pnpm figures)`);
}

await main();
