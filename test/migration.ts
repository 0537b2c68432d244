/**
 * A keepalived cluster migrated to coord node by node, under client load (docs/migration.md): three keepalived
 * nodes serve a VIP (HTTP through a standalone HAProxy on every node, `ip_nonlocal_bind=1`); then, one node at a
 * time, (1) its config is imported and keepalived replaced by `coord join --mode vrrp`, (2) it is switched to etcd
 * mode with the hybrid `vrrp:` block (`coord import --mode etcd`), (3) restarted without the block. Each step is
 * measured from the client: the longest gap between ARP answers for the VIP, the longest gap between good HTTP
 * answers, failed requests, and how long two hosts held the VIP (kernel address events).
 *
 * Used by `test/migration.test.ts` (asserts) and `pnpm bench:migration` (prints and writes the figures).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readConfigFile } from '@coord/core';
import {
  arpLongestGap,
  doubleReplyProbes,
  overlaps,
  waitFor,
  watchVip,
  type Lab,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import { COORD_BIN, controlSocketFor } from './coord.js';

const CLIENT = join(import.meta.dirname, 'lab/bin/http-client.ts');
const VRID = 90;
const PRIORITY: Record<string, number> = { h1: 150, h2: 100, h3: 50 };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface StepResult {
  step: string;
  /** Which kind of step (VRRP steps may overlap by VRRP's own semantics when a higher priority preempts). */
  kind: 'keepalived' | 'to-vrrp' | 'to-hybrid' | 'drop-vrrp';
  arpGapMs: number | undefined;
  httpGapMs: number;
  httpOk: number;
  httpFailed: number;
  /**
   * Failed requests not explained by a move of the VIP: outside every window from the last ARP answer before a
   * move (another MAC, or a silence) to 5.5 s after the first one after it (the client's request timeout is 5 s;
   * a connection the new holder never saw is reset, a SYN sent to the old MAC is retried after 1 s and 3 s).
   */
  httpFailedOutsideMoves: number;
  twoHolderMs: number;
  twoMacProbes: number;
  holderAfter: string[];
  durationMs: number;
}

interface LoadResult {
  ok: number;
  failed: number;
  longestGapMs: number;
  failures: { t: number; error: string }[];
}

/** Windows around each move of the VIP the client saw: a reply from another MAC, or a silence of 3 probes. */
function moveWindows(replies: readonly { t: number; mac: string }[], intervalMs: number): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i < replies.length; i++) {
    const a = replies[i - 1];
    const b = replies[i];
    if (a !== undefined && b !== undefined && (a.mac !== b.mac || b.t - a.t > 3 * intervalMs))
      out.push([a.t, b.t]);
  }
  return out;
}

export interface MigrationOptions {
  /** keepalived's (and so everyone's) advert interval, seconds. */
  advertInt: number;
  log?: (line: string) => void;
}

/** The site's keepalived.conf, one file for all three hosts (`@hN` lines choose the priority). */
export function siteConfig(vip: string, prefix: number, advertInt: number): string {
  return [
    '! the site keepalived.conf, shared by lb h1-h3',
    'global_defs {',
    ...Object.keys(PRIORITY).map((h) => `  @${h} router_id ${h}`),
    '  vrrp_version 3',
    '}',
    '$PRIO=50',
    ...Object.entries(PRIORITY).map(([h, p]) => `@${h} $PRIO=${p}`),
    'vrrp_instance VI_web {',
    '  state BACKUP',
    '  interface eth0',
    `  virtual_router_id ${VRID}`,
    '  priority $PRIO',
    `  advert_int ${advertInt}`,
    '  virtual_ipaddress {',
    `    ${vip}/${prefix}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

export class Migration {
  readonly vip: string;
  private readonly procs = new Map<string, LabProcess>();
  private readonly keepalived = new Map<string, { stop(ms: number): Promise<unknown> }>();
  readonly results: StepResult[] = [];
  private readonly site: string;

  constructor(
    readonly lab: Lab,
    readonly opts: MigrationOptions,
  ) {
    this.vip = lab.freeAddress(6);
    this.site = join(lab.runDir, 'site-keepalived.conf');
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private host(name: string): LabHost {
    return this.lab.host(name);
  }

  /** Backend, HAProxy on every node, the three keepalived nodes; returns once h1 serves the VIP. */
  async start(): Promise<void> {
    const { lab, vip } = this;
    writeFileSync(this.site, siteConfig(vip, lab.subnet.prefix, this.opts.advertInt));
    lab.spawn(
      lab.client,
      process.execPath,
      [
        '-e',
        `require('http').createServer((q, r) => r.end('app')).listen(9001, ${JSON.stringify(lab.client.ip)})`,
      ],
      { name: 'backend' },
    );
    for (const h of lab.hosts) {
      await lab.exec(h, 'sysctl', ['-qw', 'net.ipv4.ip_nonlocal_bind=1']);
      const cfg = join(lab.runDir, `${h.name}-site-haproxy.cfg`);
      writeFileSync(
        cfg,
        [
          'global',
          '  maxconn 2000',
          'defaults',
          '  mode http',
          '  timeout connect 2s',
          '  timeout client 10s',
          '  timeout server 10s',
          'frontend web',
          `  bind ${vip}:80`,
          '  default_backend app',
          'backend app',
          `  server a ${lab.client.ip}:9001`,
          '',
        ].join('\n'),
      );
      lab.startHaproxy(h, cfg, { name: 'site-haproxy' });
      this.keepalived.set(
        h.name,
        lab.startKeepalived(h, readFileSync(this.site, 'utf8'), {
          name: 'keepalived-site',
          args: ['--config-id', h.name],
        }),
      );
    }
    await this.waitSole('h1', 15_000);
    await this.waitHttp();
  }

  private async holders(): Promise<string[]> {
    const out: string[] = [];
    for (const h of this.lab.hosts) if ((await this.lab.addresses(h)).includes(this.vip)) out.push(h.name);
    return out;
  }

  private async waitSole(name: string, timeoutMs: number): Promise<void> {
    await waitFor(
      `${name} the only holder of ${this.vip}`,
      async () => (await this.holders()).join() === name,
      { timeoutMs },
    );
  }

  private async waitHttp(): Promise<void> {
    await waitFor(
      'HTTP through the VIP',
      async () =>
        (
          await this.lab.exec(
            this.lab.client,
            process.execPath,
            [
              '-e',
              `fetch('http://${this.vip}/', { signal: AbortSignal.timeout(1000) }).then((r) => r.text()).then((t) => process.stdout.write(t), () => {})`,
            ],
            { reject: false },
          )
        ).stdout === 'app',
      { timeoutMs: 10_000 },
    );
  }

  private async coordCmd(h: LabHost, args: string[]): Promise<{ exitCode: number; stderr: string }> {
    const r = await this.lab.exec(h, process.execPath, [COORD_BIN, ...args], { reject: false });
    return { exitCode: r.exitCode ?? -1, stderr: r.stderr };
  }

  private startCoord(h: LabHost, config: string, name: string): LabProcess {
    const p = this.lab.spawn(
      h,
      process.execPath,
      [COORD_BIN, 'join', '--config', config, '--control-socket', controlSocketFor(this.lab, h, 'migration')],
      { name },
    );
    this.procs.set(h.name, p);
    return p;
  }

  /** Measure `body` (one step) from the client. */
  private async measure(
    step: string,
    kind: StepResult['kind'],
    body: () => Promise<void>,
  ): Promise<StepResult> {
    const watch = await watchVip(this.lab, this.vip, { arp: true });
    const load = this.lab.spawn(
      this.lab.client,
      process.execPath,
      ['--import', 'tsx', CLIENT, 'load', `http://${this.vip}/`, '2', 'close'],
      {
        name: `load-${this.results.length + 1}`,
      },
    );
    await waitFor('the load client answered', async () => (await load.output()).includes('firstOk'), {
      timeoutMs: 10_000,
    });
    const t0 = Date.now();
    await body();
    await sleep(1000);
    const durationMs = Date.now() - t0;
    await load.stop(10_000);
    const ev = await watch.stop();
    const line =
      (await load.output())
        .split('\n')
        .filter((l) => l.includes('"ok"'))
        .at(-1) ?? '{}';
    const res = JSON.parse(line) as LoadResult;
    const result: StepResult = {
      step,
      kind,
      arpGapMs: ev.arp === undefined ? undefined : arpLongestGap(ev.arp, { from: t0 })?.gapMs,
      httpGapMs: res.longestGapMs,
      httpOk: res.ok,
      httpFailed: res.failed,
      httpFailedOutsideMoves: res.failures.filter(
        (f) =>
          !moveWindows(ev.arp?.replies ?? [], ev.arp?.intervalMs ?? 10).some(
            ([from, to]) => f.t >= from - 100 && f.t <= to + 5500,
          ),
      ).length,
      twoHolderMs: overlaps(ev.timeline).reduce((a, o) => a + (o.to - o.from), 0),
      twoMacProbes: ev.arp === undefined ? 0 : doubleReplyProbes(ev.arp).length,
      holderAfter: await this.holders(),
      durationMs,
    };
    this.results.push(result);
    this.log(
      `${step.padEnd(34)} ARP gap ${String(Math.round(result.arpGapMs ?? -1)).padStart(5)} ms  HTTP gap ${String(result.httpGapMs).padStart(5)} ms  ` +
        `failed ${result.httpFailed}/${result.httpOk + result.httpFailed} (${result.httpFailedOutsideMoves} outside moves)  two holders ${result.twoHolderMs} ms  holder ${result.holderAfter.join(',')}`,
    );
    return result;
  }

  /** The same maintenance before any migration, for comparison: restart keepalived on the Master `name`. */
  async keepalivedRestart(name: string): Promise<StepResult> {
    const h = this.host(name);
    return this.measure(`${name}: keepalived restart (baseline)`, 'keepalived', async () => {
      await this.keepalived.get(name)?.stop(5000);
      await waitFor(
        'another keepalived Master',
        async () => (await this.holders()).length === 1 && !(await this.holders()).includes(name),
        {
          timeoutMs: 10_000,
        },
      );
      this.keepalived.set(
        name,
        this.lab.startKeepalived(h, readFileSync(this.site, 'utf8'), {
          name: 'keepalived-site2',
          args: ['--config-id', name],
        }),
      );
      await this.waitSole(name, this.opts.advertInt * 4000 + 5000);
    });
  }

  /** `coord import keepalived` of the site file for host `h` into `out`; anything not converted fails the step. */
  private async importSite(h: LabHost, out: string, extra: string[]): Promise<void> {
    const args = [
      'import',
      'keepalived',
      this.site,
      '--config-id',
      h.name,
      '--out',
      out,
      '--force',
      ...extra,
    ];
    const r = await this.coordCmd(h, args);
    if (r.exitCode !== 0)
      throw new Error(`coord ${args.join(' ')} on ${h.name} exited ${r.exitCode}: ${r.stderr}`);
  }

  /** Step 1 on `name`: import its keepalived.conf, stop keepalived, start `coord join --mode vrrp`. */
  async toVrrp(name: string): Promise<StepResult> {
    const h = this.host(name);
    const out = join(this.lab.runDir, `${name}-vrrp.yaml`);
    await this.importSite(h, out, []);
    return this.measure(`${name}: keepalived → coord vrrp`, 'to-vrrp', async () => {
      await this.keepalived.get(name)?.stop(5000);
      const p = this.startCoord(h, out, 'coord-vrrp');
      await waitFor(
        `coord vrrp on ${name}`,
        async () => (await p.output()).includes('"vrrp instance started"'),
        { timeoutMs: 15_000 },
      );
      // The highest priority takes the VIP back after Master_Down_Interval (3 intervals and the skew).
      if (name === 'h1') await this.waitSole('h1', this.opts.advertInt * 4000 + 5000);
    });
  }

  /** Step 2 on `name`: the etcd-mode config with the hybrid vrrp block, in place of coord's VRRP mode. */
  async toHybrid(name: string): Promise<StepResult> {
    const h = this.host(name);
    const out = join(this.lab.runDir, `${name}-etcd.yaml`);
    await this.importSite(h, out, [
      '--mode',
      'etcd',
      '--etcd',
      this.lab.etcd.endpoints.join(','),
      '--cluster',
      'migration',
    ]);
    return this.measure(`${name}: coord vrrp → hybrid etcd`, 'to-hybrid', async () => {
      await this.procs.get(name)?.stop(5000);
      this.startCoord(h, out, 'coord-hybrid');
      if (name === 'h1') await this.waitSole('h1', 10_000);
      else await sleep(2000);
    });
  }

  /** Step 3 on `name`: the same config without the vrrp block (no keepalived left), coord restarted. */
  async dropVrrp(name: string): Promise<StepResult> {
    const h = this.host(name);
    const from = join(this.lab.runDir, `${name}-etcd.yaml`);
    const out = join(this.lab.runDir, `${name}-etcd-only.yaml`);
    const config = (await readConfigFile(from)) as { groups: Record<string, unknown>[] };
    for (const g of config.groups) delete g['vrrp'];
    // JSON is YAML.
    writeFileSync(out, JSON.stringify(config, null, 2));
    return this.measure(`${name}: drop VRRP (restart)`, 'drop-vrrp', async () => {
      await this.procs.get(name)?.stop(5000);
      this.startCoord(h, out, 'coord-etcd');
      if (name === 'h1') await this.waitSole('h1', 10_000);
      else await sleep(2000);
    });
  }

  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.stop(5000)));
    await Promise.all([...this.keepalived.values()].map((k) => k.stop(3000)));
  }

  /** Every step, in the order docs/migration.md gives. */
  async runAll(): Promise<StepResult[]> {
    await this.keepalivedRestart('h1');
    for (const n of ['h1', 'h2', 'h3']) await this.toVrrp(n);
    for (const n of ['h1', 'h2', 'h3']) await this.toHybrid(n);
    for (const n of ['h1', 'h2', 'h3']) await this.dropVrrp(n);
    return this.results;
  }
}
