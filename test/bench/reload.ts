/**
 * `pnpm bench:reload`: what a model change costs the traffic of a `coord join --haproxy-config` cluster. A
 * benchmark, not a test: it prints figures and writes them as JSON; it asserts nothing.
 *
 * One lab: 3 hosts running `coord join` (etcd lease, one VIP) with the HAProxy loop; two node http backends
 * (backend-A :9001, backend-B :9002) in the client namespace; service `web` bound to VIP:80 and 0.0.0.0:8080.
 *
 * (a) Server changes under load. The client requests http://VIP/ without pause, first with keep-alive clients,
 *     then with a new connection per request (separately). Meanwhile the bench runs `coord server set web a …
 *     --weight W` N times, W alternating 10/20 (each a different rendered config), waiting GAP ms after each CLI
 *     returns so every change is applied on its own (the CLI itself takes ~1–1.5 s here, so changes are ~1.5–2 s
 *     apart). Each goes through HAProxy's runtime API when it can: the holder's coord log ("haproxy apply",
 *     result "applied", via "runtime" or "reload") and its HAProxy master's reload counter (`show proc`) say
 *     whether HAProxy reloaded.
 * (b) Propagation. Server `b` is removed; each sample flips server `a` between backend-A and backend-B with one
 *     `coord server set`. A keep-alive poller in the client namespace asks every node's own :8080 (and the VIP)
 *     every 10 ms; a node serves the change when its answer flips. Latency is measured from the moment the
 *     `coord server set` process returned (and, also printed, from just before it was started). It includes
 *     the runtime API commands (an address change), or `haproxy -c` and a reload when the runtime API is not
 *     used; an isolated change does not wait for coord's debounce quiet window (50 ms), a burst's later ones do.
 * (c) Structural changes. `coord service set web` adds or removes a bind (0.0.0.0:8081) N times per rollout mode
 *     (`--rollout rolling|parallel`, gate `/`) and load kind, under load through the VIP; a poller asks every node's
 *     own :8081 every 10 ms, and a node shows a change when :8081 starts or stops answering. Measured from the
 *     CLI's return (rolling changes with `--no-wait`, so it returns once the rollout is written).
 * (d) Drains. Servers a (backend-A) and b at equal weights under load through the VIP; N times: `coord server enable
 *     web a`, wait until backend-A gets requests again, then `coord server drain web a` (without --wait). A second
 *     later backend-A says when its last request arrived; measured from the CLI's return. Requests in flight on
 *     it must still succeed: the load client counts every failure.
 *
 * Usage: pnpm bench:reload [--reloads 100] [--samples 30] [--structural 50] [--rollouts rolling,parallel]
 *                          [--loads keepalive,close] [--concurrency 8] [--gap-ms 300] [--out bench/results/reload.json]
 *                          [--drains 20] [--haproxy-base deploy/haproxy-base.cfg|none]
 * Every node runs with the base file the package installs (/etc/coord/haproxy-base.cfg) unless `none` is given.
 * The JSON goes to bench/results/ (committed); `pnpm figures` regenerates the README's tables from it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { assertBuilt, COORD_BIN, coordLog, holdersOf, startCoord, waitForSingleHolder } from '../coord.js';
import { Lab, waitFor, type LabHost, type LabProcess } from '../lab/index.js';
import { envelopeOf, MIN_FOR_P99, percentile, RESULTS_DIR, type ResultEnvelope } from './results.js';

const CLIENT = join(import.meta.dirname, '../lab/bin/http-client.ts');
const ROOT = resolve(import.meta.dirname, '../..');
/** The node-local base file the package installs as /etc/coord/haproxy-base.cfg. */
const BASE_FILE = join(ROOT, 'deploy/haproxy-base.cfg');
const CLUSTER = 'lb';
const WEIGHTS = [10, 20] as const;
const POLL_MS = 10;
/** Load before the first change and after the last one (so the last reload's old worker drains under load). */
const WARM_MS = 1000;
const DRAIN_MS = 2000;
const CONVERGE_TIMEOUT_MS = 5000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export interface Stats {
  n: number;
  p50: number | undefined;
  /** Only with at least MIN_FOR_P99 values (below that it would be the maximum). */
  p99: number | undefined;
  max: number | undefined;
  min: number | undefined;
}
function stats(values: readonly number[]): Stats {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p99: values.length >= MIN_FOR_P99 ? percentile(values, 99) : undefined,
    max: values.length === 0 ? undefined : Math.max(...values),
    min: values.length === 0 ? undefined : Math.min(...values),
  };
}

export interface LoadResult {
  mode: string;
  concurrency: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  bodies: Record<string, number>;
  failures: { t: number; error: string }[];
  start: number;
  end: number;
}

export interface PhaseA {
  load: 'keepalive' | 'close';
  holder: string;
  holderAfter: string[];
  changes: number;
  changeErrors: number;
  /** The first few failed `server set` runs (stderr). */
  changeErrorSamples: string[];
  /** etcd was still running at the end of the phase (a dead etcd fences the holder: the VIP goes away). */
  etcdAlive: boolean;
  cliMs: Stats;
  requests: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  bodies: Record<string, number>;
  requestsPerSec: number;
  /** "haproxy apply" lines with result "applied" in the phase, per node. */
  appliedByNode: Record<string, number>;
  /** Other "haproxy apply" results in the phase, per node (e.g. unchanged, rolled-back). */
  otherResultsByNode: Record<string, Record<string, number>>;
  /** The holder's HAProxy master reload counter before/after (`show proc`). */
  masterReloads: { before: number | undefined; after: number | undefined; delta: number | undefined };
  failures: { t: number; error: string; msSincePhaseStart: number }[];
}

interface ApplyLine {
  t: number;
  result: string;
  /** coord's own figures: the driver run (validate, install, reload, confirm) and since the change (+ debounce). */
  ms: number | undefined;
  sinceChangeMs: number | undefined;
}

/** One change made with the CLI, and when each target showed it. */
interface TimedChange {
  i: number;
  tInvoke: number;
  tReturn: number;
  cliMs: number;
  /** Per target: ms from the CLI's return until the poller first saw the change. */
  fromReturnMs: Record<string, number | null>;
  /** The same from just before the CLI was started. */
  fromInvokeMs: Record<string, number | null>;
  error?: string;
}

export interface Sample extends TimedChange {
  body: string;
  /** Per node: ms from the CLI's return to the node's "haproxy apply … applied" log line. */
  appliedLogFromReturnMs: Record<string, number | null>;
  /** Per node: coord's "haproxy apply" fields ms (driver run) and sinceChangeMs (debounce + driver run). */
  coordApplyMs: Record<string, number | null>;
  coordSinceChangeMs: Record<string, number | null>;
}

/** A structural change (a bind added or removed); the CLI returns once the rollout is started. */
export interface StructuralChange extends TimedChange {
  /** The change adds :8081 (true) or removes it (false). */
  adds: boolean;
  exitCode: number;
}

export interface PhaseC {
  rollout: 'rolling' | 'parallel';
  load: 'keepalive' | 'close';
  changes: StructuralChange[];
  /** The last node showing a change, from the CLI's return, over the changes every node showed. */
  lastNodeFromReturn: Stats;
  lastNodeFromInvoke: Stats;
  requests: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  /** Rollouts that stopped (a node's gate or apply failed), from the rollout records. */
  stopped: number;
  failures: { t: number; error: string; msSincePhaseStart: number }[];
}

/** One `coord server drain` under load (no `--wait`: the command returns once the model is written). */
export interface Drain {
  i: number;
  tInvoke: number;
  tReturn: number;
  cliMs: number;
  exitCode: number;
  /** When the drained server received its last request, from the CLI's return (negative: before it returned). */
  lastRequestFromReturnMs: number | null;
  error?: string;
}

export interface PhaseD {
  load: 'keepalive' | 'close';
  drains: Drain[];
  lastRequestFromReturn: Stats;
  requests: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
}

/** A target's answer changed (the poller prints only changes). */
type PollEvent = { t: number; name: string; body?: string; error?: string };

/**
 * Wait until every target showed change `c` (`at`: when, from the poller's events), then note per target how
 * long after the CLI's start and return it did; a timeout is the change's error.
 */
async function waitShown<E>(
  c: TimedChange,
  what: string,
  names: readonly string[],
  events: () => Promise<E[]>,
  at: (evs: E[], name: string) => number | undefined,
  timeoutMs: number,
): Promise<void> {
  try {
    await waitFor(
      what,
      async () => {
        const evs = await events();
        return names.every((n) => at(evs, n) !== undefined) ? true : undefined;
      },
      { timeoutMs, intervalMs: 20 },
    );
  } catch (e) {
    c.error = errText(e);
  }
  const evs = await events();
  for (const n of names) {
    const t = at(evs, n);
    c.fromReturnMs[n] = t === undefined ? null : t - c.tReturn;
    c.fromInvokeMs[n] = t === undefined ? null : t - c.tInvoke;
  }
}

/** The load client's result line (it prints one when stopped). */
async function loadResult(load: LabProcess): Promise<LoadResult> {
  const text = await load.output();
  const line = text.split('\n').find((l) => l.startsWith('{"mode"'));
  if (line === undefined) throw new Error(`load client printed no result: ${text.slice(-500)}`);
  return JSON.parse(line) as LoadResult;
}

class Bench {
  readonly procs = new Map<string, LabProcess>();
  vip = '';
  log: (s: string) => void = () => undefined;

  /** `--haproxy-base` for every node (the packaged base file by default), or none. */
  constructor(
    readonly lab: Lab,
    readonly haproxyBase: string | undefined,
  ) {}

  get hosts(): LabHost[] {
    return this.lab.hosts;
  }

  async start(): Promise<string> {
    const lab = this.lab;
    this.vip = lab.freeAddress(4);
    for (const [port, body] of [
      [9001, 'backend-A'],
      [9002, 'backend-B'],
    ] as const) {
      lab.spawn(
        lab.client,
        process.execPath,
        [
          '-e',
          // Port + 100 answers when this backend last received a request (ms since the epoch; one host, one
          // clock): how part (d) tells when a drained server stopped getting new ones.
          `let last = 0; const http = require('http');` +
            `const s = http.createServer((q, r) => { last = Date.now(); r.end(${JSON.stringify(body)}); });` +
            `s.keepAliveTimeout = 60000; s.listen(${port}, ${JSON.stringify(lab.client.ip)});` +
            `http.createServer((q, r) => r.end(String(last))).listen(${port + 100}, ${JSON.stringify(lab.client.ip)})`,
        ],
        { name: `backend-${body}` },
      );
    }
    for (const h of this.hosts) {
      this.procs.set(
        h.name,
        startCoord(lab, h, {
          cluster: CLUSTER,
          vips: [`${this.vip}/${lab.subnet.prefix}`],
          logLevel: 'info',
          extraArgs: [
            '--haproxy-config',
            join(lab.runDir, `${h.name}-haproxy.cfg`),
            '--haproxy-run-dir',
            this.runDir(h),
            ...(this.haproxyBase === undefined ? [] : ['--haproxy-base', this.haproxyBase]),
          ],
        }),
      );
    }
    const holder = await waitForSingleHolder(lab, this.vip, { timeoutMs: 20_000 });
    await this.cliOk(['service', 'set', 'web', '--bind', `${this.vip}:80`, '--bind', '0.0.0.0:8080']);
    await this.cliOk(['server', 'set', 'web', 'a', `${lab.client.ip}:9001`, '--weight', String(WEIGHTS[0])]);
    await this.cliOk(['server', 'set', 'web', 'b', `${lab.client.ip}:9002`, '--weight', '10']);
    for (const [name, url] of this.targets()) {
      await waitFor(
        `${name} to serve web`,
        async () => ((await this.get(url)).startsWith('backend-') ? true : undefined),
        { timeoutMs: 20_000, intervalMs: 200 },
      );
    }
    return holder;
  }

  runDir(h: LabHost): string {
    return join(this.lab.runDir, `${h.name}-haproxy-run`);
  }

  /** Every node's own :8080, and the VIP. */
  targets(): [string, string][] {
    return [
      ...this.hosts.map((h): [string, string] => [h.name, `http://${h.ip}:8080/`]),
      ['vip', `http://${this.vip}/`],
    ];
  }

  /** The coord CLI, run from h2 (as an operator on a node would). */
  async cli(args: string[]) {
    return this.lab.exec(
      this.hosts[1] ?? this.lab.client,
      process.execPath,
      [COORD_BIN, ...args, '--etcd', this.lab.etcd.endpoints.join(','), '--cluster', CLUSTER],
      { reject: false, timeoutMs: 20_000 },
    );
  }

  async cliOk(args: string[]): Promise<void> {
    const r = await this.cli(args);
    if (r.exitCode !== 0) throw new Error(`coord ${args.join(' ')}: exit ${r.exitCode}: ${r.stderr}`);
  }

  /** GET from the client namespace; the body, or "ERR …". */
  async get(url: string): Promise<string> {
    const r = await this.lab.exec(
      this.lab.client,
      process.execPath,
      [
        '-e',
        `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(2000) }).then(r => r.text()).then(t => process.stdout.write(t), e => process.stdout.write('ERR ' + e.message))`,
      ],
      { reject: false, timeoutMs: 10_000 },
    );
    return r.stdout;
  }

  /** The HAProxy master's reload counter on `h`, from `show proc` on its master socket (inside h's namespace). */
  async masterReloads(h: LabHost): Promise<number | undefined> {
    const sock = join(this.runDir(h), 'master.sock');
    const r = await this.lab.exec(
      h,
      process.execPath,
      [
        '-e',
        `const c = require('net').connect(${JSON.stringify(sock)}); let o = '';` +
          `c.on('data', d => o += d); c.on('end', () => process.stdout.write(o)); c.on('error', e => process.stdout.write('ERR ' + e.message));` +
          `c.end('show proc\\n');`,
      ],
      { reject: false, timeoutMs: 5000 },
    );
    const m = /^\d+\s+master\s+(\d+)/m.exec(r.stdout);
    return m === null ? undefined : Number(m[1]);
  }

  /** "haproxy apply" log lines of every node in [from, to] (wall clock; one machine, one clock). */
  async applyLines(from: number, to: number): Promise<Map<string, ApplyLine[]>> {
    const out = new Map<string, ApplyLine[]>();
    for (const h of this.hosts) {
      const p = this.procs.get(h.name);
      const lines = p === undefined ? [] : await coordLog(p);
      out.set(
        h.name,
        lines
          .filter((l) => l['message'] === 'haproxy apply')
          .map((l) => ({
            t: Date.parse(String(l['timestamp'])),
            result: String(l['result']),
            ms: typeof l['ms'] === 'number' ? l['ms'] : undefined,
            sinceChangeMs: typeof l['sinceChangeMs'] === 'number' ? l['sinceChangeMs'] : undefined,
          }))
          .filter((l) => l.t >= from && l.t <= to),
      );
    }
    return out;
  }

  /** A poller asking each target every POLL_MS; `events()` reads the answers it saw change so far. */
  poll(
    targets: readonly [string, string][],
    name: string,
  ): { poller: LabProcess; events: () => Promise<PollEvent[]> } {
    const poller = this.spawnClient(['poll', String(POLL_MS), ...targets.map(([n, u]) => `${n}=${u}`)], name);
    const events = async (): Promise<PollEvent[]> =>
      (await poller.output())
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as PollEvent);
    return { poller, events };
  }

  spawnClient(args: string[], name: string): LabProcess {
    return this.lab.spawn(this.lab.client, process.execPath, ['--import', 'tsx', CLIENT, ...args], { name });
  }

  async phaseA(
    kind: 'keepalive' | 'close',
    reloads: number,
    gapMs: number,
    concurrency: number,
  ): Promise<PhaseA> {
    const holders = await holdersOf(this.lab, this.vip);
    if (holders.length !== 1 || holders[0] === undefined) throw new Error(`holders: ${holders.join()}`);
    const holder = this.lab.host(holders[0]);
    const before = await this.masterReloads(holder);
    const t0 = Date.now();
    const load = this.spawnClient(['load', `http://${this.vip}/`, String(concurrency), kind], `load-${kind}`);
    await sleep(WARM_MS);
    const cliMs: number[] = [];
    let changeErrors = 0;
    const changeErrorSamples: string[] = [];
    let weight: number = WEIGHTS[0];
    for (let i = 0; i < reloads; i++) {
      weight = weight === WEIGHTS[0] ? WEIGHTS[1] : WEIGHTS[0];
      const s = Date.now();
      const r = await this.cli([
        'server',
        'set',
        'web',
        'a',
        `${this.lab.client.ip}:9001`,
        '--weight',
        String(weight),
      ]);
      cliMs.push(Date.now() - s);
      if (r.exitCode !== 0) {
        changeErrors++;
        if (changeErrorSamples.length < 5)
          changeErrorSamples.push(
            `${new Date().toISOString()} exit ${r.exitCode}: ${r.stderr.slice(0, 300)}`,
          );
      }
      if ((i + 1) % 20 === 0) this.log(`  ${kind}: ${i + 1}/${reloads} changes`);
      await sleep(gapMs);
    }
    await sleep(DRAIN_MS);
    await load.stop(15_000);
    const t1 = Date.now();
    const res = await loadResult(load);
    await sleep(300); // the last log lines
    const applies = await this.applyLines(t0, t1);
    const after = await this.masterReloads(holder);
    const appliedByNode: Record<string, number> = {};
    const otherResultsByNode: Record<string, Record<string, number>> = {};
    for (const [n, ls] of applies) {
      appliedByNode[n] = ls.filter((l) => l.result === 'applied').length;
      const other: Record<string, number> = {};
      for (const l of ls) if (l.result !== 'applied') other[l.result] = (other[l.result] ?? 0) + 1;
      otherResultsByNode[n] = other;
    }
    const requests = res.ok + res.failed;
    return {
      load: kind,
      holder: holder.name,
      holderAfter: await holdersOf(this.lab, this.vip),
      changes: reloads,
      changeErrors,
      changeErrorSamples,
      etcdAlive: this.lab.etcd.members.every((m) => m.process?.running === true),
      cliMs: stats(cliMs),
      requests,
      ok: res.ok,
      failed: res.failed,
      errors: res.errors,
      bodies: res.bodies,
      requestsPerSec: Math.round(requests / ((res.end - res.start) / 1000)),
      appliedByNode,
      otherResultsByNode,
      masterReloads: {
        before,
        after,
        delta: before === undefined || after === undefined ? undefined : after - before,
      },
      failures: res.failures.map((f) => ({ ...f, msSincePhaseStart: f.t - t0 })),
    };
  }

  async phaseB(samples: number, quietMs: number): Promise<{ samples: Sample[]; pollerEvents: number }> {
    const ip = this.lab.client.ip;
    await this.cliOk(['server', 'rm', 'web', 'b']);
    await this.cliOk(['server', 'set', 'web', 'a', `${ip}:9001`, '--weight', '10']);
    const names = this.targets().map(([n]) => n);
    for (const [name, url] of this.targets()) {
      await waitFor(
        `${name} to serve backend-A only`,
        async () => ((await this.get(url)) === 'backend-A' ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 100 },
      );
    }
    const { poller, events } = this.poll(this.targets(), 'poller');
    // Every target answered once (the poller is running).
    await waitFor(
      'the poller to see every target',
      async () => {
        const seen = new Set((await events()).map((e) => e.name));
        return names.every((n) => seen.has(n)) ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    const out: Sample[] = [];
    try {
      for (let i = 0; i < samples; i++) {
        const [port, body] = i % 2 === 0 ? [9002, 'backend-B'] : [9001, 'backend-A'];
        await sleep(quietMs);
        const tInvoke = Date.now();
        const r = await this.cli(['server', 'set', 'web', 'a', `${ip}:${port}`, '--weight', '10']);
        const tReturn = Date.now();
        const sample: Sample = {
          i: i + 1,
          body,
          tInvoke,
          tReturn,
          cliMs: tReturn - tInvoke,
          fromReturnMs: {},
          fromInvokeMs: {},
          appliedLogFromReturnMs: {},
          coordApplyMs: {},
          coordSinceChangeMs: {},
        };
        if (r.exitCode !== 0) sample.error = `server set exit ${r.exitCode}: ${r.stderr.slice(0, 200)}`;
        const firstSeen = (evs: PollEvent[], n: string) =>
          evs.find((e) => e.name === n && e.t >= tInvoke && e.body === body)?.t;
        await waitShown(
          sample,
          `every target to serve ${body}`,
          names,
          events,
          firstSeen,
          CONVERGE_TIMEOUT_MS,
        );
        await sleep(200); // coord's log line
        const applies = await this.applyLines(tInvoke, tInvoke + CONVERGE_TIMEOUT_MS + 1000);
        for (const [n, ls] of applies) {
          const a = ls.find((l) => l.result === 'applied');
          sample.appliedLogFromReturnMs[n] = a === undefined ? null : a.t - tReturn;
          sample.coordApplyMs[n] = a?.ms ?? null;
          sample.coordSinceChangeMs[n] = a?.sinceChangeMs ?? null;
        }
        out.push(sample);
        const last = Math.max(...this.hosts.map((h) => sample.fromReturnMs[h.name] ?? Infinity));
        this.log(
          `  sample ${i + 1}/${samples} → ${body}: cli ${sample.cliMs} ms, last node +${last} ms after return` +
            (sample.error === undefined ? '' : ` (${sample.error})`),
        );
      }
    } finally {
      await poller.stop(5000);
    }
    const errs = (await events()).filter((e) => e.error !== undefined);
    return { samples: out, pollerEvents: errs.length };
  }

  /**
   * (c) Structural changes under load: \`coord service set web\` adds or removes a bind (0.0.0.0:8081), alternately,
   * with \`--rollout rolling|parallel\` and the gate \`/\`, while clients load the VIP. A poller asks every node's own
   * :8081 every POLL_MS; a node shows a change when :8081 starts answering (add) or stops (remove). Rolling
   * changes are started with \`--no-wait\`, so the CLI returns once the rollout is written, as for a parallel one.
   */
  async phaseC(
    rollout: 'rolling' | 'parallel',
    kind: 'keepalive' | 'close',
    count: number,
    gapMs: number,
    concurrency: number,
  ): Promise<PhaseC> {
    const base = ['service', 'set', 'web', '--bind', `${this.vip}:80`, '--bind', '0.0.0.0:8080'];
    const gate = ['--rollout', rollout, '--rollout-check', '/', '--no-wait'];
    // Start without :8081 (every node), so the first change adds it.
    await this.cliOk([...base, '--rollout', 'parallel']);
    const t0 = Date.now();
    const load = this.spawnClient(
      ['load', `http://${this.vip}/`, String(concurrency), kind],
      `load-c-${kind}`,
    );
    const { poller, events } = this.poll(
      this.hosts.map((h): [string, string] => [h.name, `http://${h.ip}:8081/`]),
      `poller-c-${rollout}-${kind}`,
    );
    const nodes = this.hosts.map((h) => h.name);
    await waitFor(
      'the :8081 poller to see every node refuse',
      async () => {
        const evs = await events();
        return nodes.every((n) => evs.some((e) => e.name === n && e.error !== undefined)) ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    await sleep(WARM_MS);
    const changes: StructuralChange[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const adds = i % 2 === 0;
        const tInvoke = Date.now();
        const r = await this.cli([...base, ...(adds ? ['--bind', '0.0.0.0:8081'] : []), ...gate]);
        const tReturn = Date.now();
        const c: StructuralChange = {
          i: i + 1,
          tInvoke,
          tReturn,
          adds,
          cliMs: tReturn - tInvoke,
          exitCode: r.exitCode ?? -1,
          fromReturnMs: {},
          fromInvokeMs: {},
        };
        if (r.exitCode !== 0) c.error = `service set exit ${r.exitCode}: ${r.stderr.slice(0, 200)}`;
        const shown = (evs: PollEvent[], n: string) =>
          evs.find(
            (e) => e.name === n && e.t >= tInvoke && (adds ? e.body !== undefined : e.error !== undefined),
          )?.t;
        await waitShown(
          c,
          `every node to show change ${i + 1}`,
          nodes,
          events,
          shown,
          CONVERGE_TIMEOUT_MS * 2,
        );
        changes.push(c);
        if ((i + 1) % 10 === 0 || c.error !== undefined)
          this.log(
            `  ${rollout}/${kind}: ${i + 1}/${count}, last node +${Math.max(...nodes.map((n) => c.fromReturnMs[n] ?? Infinity))} ms after return` +
              (c.error === undefined ? '' : ` (${c.error})`),
          );
        await sleep(gapMs);
      }
    } finally {
      await poller.stop(5000);
    }
    await sleep(DRAIN_MS);
    await load.stop(15_000);
    const res = await loadResult(load);
    const stoppedLines = (
      await Promise.all(
        this.hosts.map(async (h) => {
          const p = this.procs.get(h.name);
          return p === undefined ? [] : await coordLog(p);
        }),
      )
    )
      .flat()
      .filter((l) => l['message'] === 'rollout step' && l['result'] === 'failed')
      .filter((l) => Date.parse(String(l['timestamp'])) >= t0).length;
    const complete = changes.filter((c) => nodes.every((n) => c.fromReturnMs[n] !== null));
    const last = (c: StructuralChange, k: 'fromReturnMs' | 'fromInvokeMs') =>
      Math.max(...nodes.map((n) => c[k][n] ?? 0));
    return {
      rollout,
      load: kind,
      changes,
      lastNodeFromReturn: stats(complete.map((c) => last(c, 'fromReturnMs'))),
      lastNodeFromInvoke: stats(complete.map((c) => last(c, 'fromInvokeMs'))),
      requests: res.ok + res.failed,
      ok: res.ok,
      failed: res.failed,
      errors: res.errors,
      stopped: stoppedLines,
      failures: res.failures.map((x) => ({ ...x, msSincePhaseStart: x.t - t0 })),
    };
  }

  /** When backend-A (server `a` in part (d)) last received a request, from its port 9101 (in the client namespace). */
  async lastRequestAt(): Promise<number | undefined> {
    const body = await this.get(`http://${this.lab.client.ip}:9101/`);
    return /^\d+$/.test(body) ? Number(body) : undefined;
  }

  /**
   * (d) Drains under load: server `a` enabled and taking requests, then `coord server drain web a`; a second later
   * backend-A says when its last request arrived. Requests in flight on it must still succeed (the load client
   * counts failures).
   */
  async phaseD(kind: 'keepalive' | 'close', count: number, concurrency: number): Promise<PhaseD> {
    const ip = this.lab.client.ip;
    // Part (b) moves `a` between the backends and removes `b`: start from a known pair, equal weights.
    await this.cliOk(['server', 'set', 'web', 'a', `${ip}:9001`, '--weight', '10']);
    await this.cliOk(['server', 'set', 'web', 'b', `${ip}:9002`, '--weight', '10']);
    const load = this.spawnClient(
      ['load', `http://${this.vip}/`, String(concurrency), kind],
      `load-d-${kind}`,
    );
    await sleep(WARM_MS);
    const drains: Drain[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const enabledAt = Date.now();
        await this.cliOk(['server', 'enable', 'web', 'a']);
        await waitFor(
          'server a to take requests again',
          async () => (((await this.lastRequestAt()) ?? 0) > enabledAt ? true : undefined),
          { timeoutMs: CONVERGE_TIMEOUT_MS, intervalMs: 50 },
        );
        await sleep(300);
        const tInvoke = Date.now();
        const r = await this.cli(['server', 'drain', 'web', 'a']);
        const tReturn = Date.now();
        await sleep(1000);
        const last = await this.lastRequestAt();
        const d: Drain = {
          i: i + 1,
          tInvoke,
          tReturn,
          cliMs: tReturn - tInvoke,
          exitCode: r.exitCode ?? -1,
          lastRequestFromReturnMs: last === undefined ? null : last - tReturn,
        };
        if (r.exitCode !== 0) d.error = `server drain exit ${r.exitCode}: ${r.stderr.slice(0, 200)}`;
        else if (last === undefined) d.error = 'backend-A did not say when its last request came';
        drains.push(d);
        if ((i + 1) % 10 === 0 || d.error !== undefined)
          this.log(
            `  drain/${kind}: ${i + 1}/${count}, last request ${f(d.lastRequestFromReturnMs)} ms after return` +
              (d.error === undefined ? '' : ` (${d.error})`),
          );
      }
    } finally {
      await sleep(DRAIN_MS);
      await load.stop(15_000);
    }
    await this.cliOk(['server', 'enable', 'web', 'a']);
    const res = await loadResult(load);
    return {
      load: kind,
      drains,
      lastRequestFromReturn: stats(
        drains.map((d) => d.lastRequestFromReturnMs).filter((x): x is number => x !== null),
      ),
      requests: res.ok + res.failed,
      ok: res.ok,
      failed: res.failed,
      errors: res.errors,
    };
  }

  /** Stop coord, then the HAProxy masters it leaves running (kill -USR1 inside each host's namespace). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.stop(5000)));
    for (const h of this.hosts) {
      const r = await this.lab
        .exec(h, 'cat', [join(this.runDir(h), 'haproxy.pid')], { reject: false })
        .catch(() => undefined);
      const pid = r?.stdout.trim() ?? '';
      if (/^\d+$/.test(pid)) await this.lab.exec(h, 'kill', ['-USR1', pid], { reject: false });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Output

function fmtTable(head: string[], body: string[][]): string {
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

const f = (v: number | undefined | null) => (v === undefined || v === null ? '—' : String(Math.round(v)));

function phaseATable(rows: readonly PhaseA[]): string {
  return fmtTable(
    ['load', 'requests', 'req/s', 'failed', 'changes', 'applied(holder log)', 'master reloads', 'errors'],
    rows.map((r) => [
      r.load === 'keepalive' ? 'keep-alive' : 'new-conn',
      String(r.requests),
      String(r.requestsPerSec),
      String(r.failed),
      String(r.changes - r.changeErrors),
      `${r.appliedByNode[r.holder] ?? 0} (${r.holder})`,
      f(r.masterReloads.delta),
      Object.entries(r.errors)
        .map(([k, v]) => `${k}×${v}`)
        .join(', ') || '—',
    ]),
  );
}

export interface LatencyRow {
  what: string;
  stats: Stats;
}

function latencyRows(samples: readonly Sample[], nodes: readonly string[]): LatencyRow[] {
  const ok = samples.filter((s) => nodes.every((n) => s.fromReturnMs[n] !== null));
  const last = (s: Sample, k: 'fromReturnMs' | 'fromInvokeMs') => Math.max(...nodes.map((n) => s[k][n] ?? 0));
  const rows: LatencyRow[] = [
    { what: 'last node, from return', stats: stats(ok.map((s) => last(s, 'fromReturnMs'))) },
    { what: 'last node, from invoke', stats: stats(ok.map((s) => last(s, 'fromInvokeMs'))) },
  ];
  for (const n of [...nodes, 'vip']) {
    const v = samples.map((s) => s.fromReturnMs[n]).filter((x): x is number => typeof x === 'number');
    rows.push({ what: `${n}, from return`, stats: stats(v) });
  }
  for (const n of nodes) {
    const v = samples
      .map((s) => s.appliedLogFromReturnMs[n])
      .filter((x): x is number => typeof x === 'number');
    rows.push({ what: `${n} coord "applied" log, from return`, stats: stats(v) });
  }
  const all = (k: 'coordApplyMs' | 'coordSinceChangeMs') =>
    samples.flatMap((s) => nodes.map((n) => s[k][n])).filter((x): x is number => typeof x === 'number');
  rows.push({ what: 'coord log sinceChangeMs (all nodes)', stats: stats(all('coordSinceChangeMs')) });
  rows.push({ what: 'coord log ms: driver run (all nodes)', stats: stats(all('coordApplyMs')) });
  rows.push({ what: 'coord server set (CLI run time)', stats: stats(samples.map((s) => s.cliMs)) });
  return rows;
}

function latencyTable(rows: readonly LatencyRow[]): string {
  return fmtTable(
    ['ms', 'n', 'p50', 'p99', 'max', 'min'],
    rows.map((r) => [
      r.what,
      String(r.stats.n),
      f(r.stats.p50),
      f(r.stats.p99),
      f(r.stats.max),
      f(r.stats.min),
    ]),
  );
}

/** What `bench/results/reload.json` holds. */
export interface ReloadResults extends ResultEnvelope {
  bench: 'reload';
  error: string | undefined;
  config: {
    hosts: string[];
    holder: string;
    reloads: number;
    gapMs: number;
    concurrency: number;
    weights: number[];
    pollMs: number;
    samples: number;
    etcd: { members: number; heartbeatMs: number; electionMs: number };
    /** The nodes' `--haproxy-base` (repository path), null without one; absent in results before it was an option. */
    haproxyBase?: string | null;
    latencyFrom: string;
  };
  reloadsUnderLoad: PhaseA[];
  /** (c) Structural changes under load, per rollout mode and load kind (absent in results before rollouts). */
  structural?: PhaseC[];
  /** (d) Drains under load, per load kind (absent in results before drains were measured). */
  drains?: PhaseD[];
  propagation:
    | {
        summary: LatencyRow[];
        failedSamples: number;
        pollerFailedRequests: number;
        samples: Sample[];
      }
    | undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(RESULTS_DIR, 'reload.json') },
      reloads: { type: 'string', default: '100' },
      samples: { type: 'string', default: '30' },
      concurrency: { type: 'string', default: '8' },
      'gap-ms': { type: 'string', default: '300' },
      loads: { type: 'string', default: 'keepalive,close' },
      structural: { type: 'string', default: '50' },
      drains: { type: 'string', default: '20' },
      rollouts: { type: 'string', default: 'rolling,parallel' },
      'haproxy-base': { type: 'string', default: BASE_FILE },
    },
  });
  const structural = Number(values.structural);
  const drainCount = Number(values.drains);
  const rolloutModes = values.rollouts.split(',').filter((x) => x !== '');
  for (const m of rolloutModes)
    if (m !== 'rolling' && m !== 'parallel') throw new Error(`unknown rollout "${m}"`);
  const reloads = Number(values.reloads);
  const samples = Number(values.samples);
  const concurrency = Number(values.concurrency);
  const gapMs = Number(values['gap-ms']);
  for (const [k, v] of Object.entries({
    reloads,
    samples,
    concurrency,
    gapMs,
    structural,
    drains: drainCount,
  }))
    if (!Number.isInteger(v) || v < 0) throw new Error(`--${k} must be a non-negative integer`);
  const loadNames = values.loads.split(',').filter((s) => s !== '');
  for (const l of loadNames) if (l !== 'keepalive' && l !== 'close') throw new Error(`unknown load "${l}"`);
  const loads = loadNames as ('keepalive' | 'close')[];
  const out = resolve(values.out);
  const haproxyBase = values['haproxy-base'] === 'none' ? undefined : resolve(values['haproxy-base']);
  assertBuilt();

  const t0 = Date.now();
  const loadBefore = loadavg();
  const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
  const lab = await Lab.create({ name: 'reload', hosts: 3 });
  const bench = new Bench(lab, haproxyBase);
  bench.log = log;
  const phaseA: PhaseA[] = [];
  let phaseB: { samples: Sample[]; pollerEvents: number } | undefined;
  const phaseC: PhaseC[] = [];
  const phaseD: PhaseD[] = [];
  let holder = '';
  let error: string | undefined;
  try {
    log(`lab ${lab.prefix} up`);
    holder = await bench.start();
    log(`coord on h1-h3, VIP ${bench.vip} held by ${holder}; web served by every node`);
    for (const kind of loads) {
      log(`(a) ${reloads} changes under ${kind} load (${concurrency} clients)…`);
      const r = await bench.phaseA(kind, reloads, gapMs, concurrency);
      log(
        `  ${r.requests} requests, ${r.failed} failed, holder ${r.holder} applied ${r.appliedByNode[r.holder] ?? 0}, master reloads +${f(r.masterReloads.delta)}` +
          (r.changeErrors > 0
            ? `, ${r.changeErrors} server set failed: ${r.changeErrorSamples[0] ?? ''}`
            : '') +
          (r.etcdAlive ? '' : ', ETCD DIED during the phase'),
      );
      phaseA.push(r);
    }
    if (samples > 0) {
      log(`(b) ${samples} propagation samples…`);
      phaseB = await bench.phaseB(samples, 400);
    }
    if (structural > 0) {
      for (const mode of rolloutModes as ('rolling' | 'parallel')[])
        for (const kind of loads) {
          log(`(c) ${structural} structural changes, ${mode}, under ${kind} load…`);
          const r = await bench.phaseC(mode, kind, structural, gapMs, concurrency);
          log(
            `  last node +${f(r.lastNodeFromReturn.p50)} ms p50 / ${f(r.lastNodeFromReturn.p99 ?? r.lastNodeFromReturn.max)} ms p99 after return; ${r.failed} of ${r.requests} requests failed; ${r.stopped} stopped`,
          );
          phaseC.push(r);
        }
    }
    if (drainCount > 0)
      for (const kind of loads) {
        log(`(d) ${drainCount} drains under ${kind} load…`);
        const r = await bench.phaseD(kind, drainCount, concurrency);
        log(
          `  last request on the drained server ${f(r.lastRequestFromReturn.p50)} ms p50 / ${f(r.lastRequestFromReturn.max)} ms max after return; ${r.failed} of ${r.requests} requests failed`,
        );
        phaseD.push(r);
      }
  } catch (e) {
    error = errText(e);
    log(`FAILED: ${error}`);
  } finally {
    await bench.stopAll().catch((e: unknown) => log(`stopping: ${errText(e)}`));
    await lab.destroy();
  }

  const nodes = lab.hosts.map((h) => h.name);
  console.log('');
  if (phaseA.length > 0) {
    console.log(
      `(a) failed requests through the VIP during coord-driven reloads (${concurrency} clients, a weight change every ~CLI+${gapMs} ms)`,
    );
    console.log(phaseATable(phaseA));
    for (const r of phaseA) {
      const others = Object.entries(r.appliedByNode)
        .map(([n, c]) => `${n} ${c}`)
        .join(', ');
      console.log(
        `  ${r.load}: applied per node ${others}; CLI p50 ${f(r.cliMs.p50)} ms; bodies ${JSON.stringify(r.bodies)}`,
      );
    }
  }
  const latency = phaseB === undefined ? [] : latencyRows(phaseB.samples, nodes);
  if (phaseB !== undefined) {
    console.log('');
    console.log(
      `(b) propagation: ms until every node's own HAProxy serves a \`coord server set\` (poll ${POLL_MS} ms, keep-alive)`,
    );
    console.log(latencyTable(latency));
    const bad = phaseB.samples.filter((s) => s.error !== undefined).length;
    if (bad > 0) console.log(`  ${bad} samples with errors (see JSON)`);
    if (phaseB.pollerEvents > 0) console.log(`  poller saw ${phaseB.pollerEvents} failed requests`);
  }
  if (phaseC.length > 0) {
    console.log('');
    console.log(
      `(c) structural changes (a bind added/removed) under load: ms from the CLI's return until every node's own :8081 shows it`,
    );
    console.log(
      fmtTable(
        ['rollout', 'load', 'changes', 'p50', 'p99', 'max', 'requests', 'failed', 'stopped'],
        phaseC.map((r) => [
          r.rollout,
          r.load === 'keepalive' ? 'keep-alive' : 'new-conn',
          String(r.changes.length),
          f(r.lastNodeFromReturn.p50),
          f(r.lastNodeFromReturn.p99),
          f(r.lastNodeFromReturn.max),
          String(r.requests),
          String(r.failed),
          String(r.stopped),
        ]),
      ),
    );
  }
  if (phaseD.length > 0) {
    console.log('');
    console.log(
      `(d) drains under load: ms from \`coord server drain\` returning until the drained server's last request (negative: before it returned)`,
    );
    console.log(
      fmtTable(
        ['load', 'drains', 'p50', 'max', 'min', 'requests', 'failed'],
        phaseD.map((r) => [
          r.load === 'keepalive' ? 'keep-alive' : 'new-conn',
          String(r.drains.length),
          f(r.lastRequestFromReturn.p50),
          f(r.lastRequestFromReturn.max),
          f(r.lastRequestFromReturn.min),
          String(r.requests),
          String(r.failed),
        ]),
      ),
    );
  }
  console.log(
    `\nload average (1 min) at start ${loadBefore[0]?.toFixed(1) ?? '?'}, at end ${loadavg()[0]?.toFixed(1) ?? '?'} (${cpus().length} cores)`,
  );
  if (error !== undefined) console.log(`\nbench FAILED: ${error}`);
  const failedSamples = phaseB?.samples.filter((x) => x.error !== undefined).length ?? 0;
  const json: ReloadResults = {
    // Other work on the machine inflates every latency here (2 cores): the 1-minute load average, start and end.
    ...envelopeOf('reload', t0, loadBefore[0] ?? 0),
    // A round is one model change under load, or one propagation sample; a failed change or sample counts.
    rounds: {
      requested:
        reloads * loads.length +
        samples +
        structural * loads.length * rolloutModes.length +
        drainCount * loads.length,
      total:
        phaseA.reduce((a, r) => a + r.changes, 0) +
        (phaseB?.samples.length ?? 0) +
        phaseC.reduce((a, r) => a + r.changes.length, 0) +
        phaseD.reduce((a, r) => a + r.drains.length, 0),
      failed:
        phaseA.reduce((a, r) => a + r.changeErrors, 0) +
        failedSamples +
        phaseC.reduce((a, r) => a + r.changes.filter((c) => c.error !== undefined).length, 0) +
        phaseD.reduce((a, r) => a + r.drains.filter((d) => d.error !== undefined).length, 0),
    },
    error,
    config: {
      hosts: nodes,
      holder,
      reloads,
      gapMs,
      concurrency,
      weights: [...WEIGHTS],
      pollMs: POLL_MS,
      samples,
      etcd: { members: lab.etcd.members.length, heartbeatMs: lab.heartbeatMs, electionMs: lab.electionMs },
      haproxyBase: haproxyBase === undefined ? null : relative(ROOT, haproxyBase),
      latencyFrom:
        'the `coord server set` process returning (fromReturn); also just before it was started (fromInvoke)',
    },
    reloadsUnderLoad: phaseA,
    structural: phaseC,
    drains: phaseD,
    propagation:
      phaseB === undefined
        ? undefined
        : {
            summary: latency,
            failedSamples,
            pollerFailedRequests: phaseB.pollerEvents,
            samples: phaseB.samples,
          },
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
}

await main();
