/**
 * The README's figures are generated from bench/results/ (test/bench/figures.ts); `pnpm check:readme` compares.
 * These tests pin what the generator may and may not say: maxima are called maxima, failed rounds are counted
 * and shown, every table names its machine, date, commit and etcd, and only the marked blocks are touched.
 */
import { describe, expect, it } from 'vitest';
import type { FailoverResults, Row } from './bench/failover.js';
import {
  firstDifference,
  judgeFootprint,
  regenerate,
  renderFailover,
  renderFootprint,
  renderMigration,
  renderReload,
  renderSwitchover,
  replaceBlock,
  type MigrationResults,
  type MigrationStep,
} from './bench/figures.js';
import type { CliRow, FootprintResults, NodeIdle, SystemIdle } from './bench/footprint.js';
import type { ReloadResults } from './bench/reload.js';

const envelope = {
  schema: 1 as const,
  date: '2026-11-29T10:00:00.000Z',
  durationSec: 600,
  commit: { sha: '0123456789abcdef0123456789abcdef01234567', dirty: false },
  machine: {
    cpus: 2,
    cpuModel: 'Test CPU',
    memGiB: 3.8,
    kernel: '6.1.0',
    node: 'v20.19.0',
    loadavg1: [1.5, 2.25] as [number, number],
  },
  args: ['--rounds', '3'],
};

function row(
  system: string,
  scenario: 'crash' | 'graceful' | 'freeze' | 'switchover',
  gaps: number[],
  failed = 0,
): Row {
  const sorted = [...gaps].sort((a, b) => a - b);
  return {
    system,
    scenario,
    roundsRun: gaps.length + failed,
    n: gaps.length,
    failed,
    gapsMs: gaps,
    p50: sorted[Math.ceil(sorted.length / 2) - 1],
    p99: undefined,
    max: sorted.at(-1),
    mean: undefined,
    doubleHolderSamples: 0,
    doubleHolderMs: system === 'keepalived-v3-100ms' && scenario === 'freeze' ? 2780 : 0,
    doubleReplyProbes: 0,
    noTakeover: system === 'keepalived-v3-1s' && scenario === 'freeze' ? 2 : 0,
    staleVipAfterCrash: system.startsWith('keepalived') && scenario === 'crash' ? gaps.length : 0,
    rounds: [],
  };
}

const failover: FailoverResults = {
  ...envelope,
  bench: 'failover',
  rounds: { requested: 3, total: 9, failed: 1 },
  config: {
    systems: { coord: {}, 'keepalived-v3-1s': {}, 'keepalived-v3-100ms': {} },
    scenarios: ['crash', 'graceful', 'freeze'],
    priorities: { h1: 150 },
    etcd: { members: 3, heartbeatMs: 50, electionMs: 500 },
    coordTtlSec: 1,
    arpIntervalMs: 10,
    samplerIntervalMs: 20,
    freezeMs: 3000,
    tailMs: 300,
    interleaved: true,
  },
  rows: [
    row('coord', 'crash', [1400, 1500, 1300]),
    row('coord', 'graceful', [30, 40], 1),
    row('coord', 'freeze', [600, 700, 650]),
    row('keepalived-v3-1s', 'crash', [3400, 3300, 3500]),
    row('keepalived-v3-1s', 'graceful', [620, 620, 630]),
    row('keepalived-v3-1s', 'freeze', [30, 35, 40]),
    row('keepalived-v3-100ms', 'crash', [280, 300, 320]),
    row('keepalived-v3-100ms', 'graceful', [70, 70, 80]),
    row('keepalived-v3-100ms', 'freeze', [10, 10, 10]),
  ],
};

const switchover: FailoverResults = {
  ...failover,
  rounds: { requested: 3, total: 6, failed: 0 },
  config: {
    ...failover.config,
    systems: {
      coord: { switchover: 'coord move default --to h2 (run on h3), then --release' },
      'keepalived-v3-1s': { switchover: "the holder's priority lowered, then SIGHUP" },
    },
    scenarios: ['switchover'],
  },
  rows: [row('coord', 'switchover', [30, 25, 45]), row('keepalived-v3-1s', 'switchover', [60, 70, 640])],
};

const stats = (n: number, p50: number, max: number) => ({ n, p50, p99: undefined, max, min: 1 });
const reload: ReloadResults = {
  ...envelope,
  bench: 'reload',
  rounds: { requested: 50, total: 50, failed: 0 },
  error: undefined,
  config: {
    hosts: ['h1', 'h2', 'h3'],
    holder: 'h1',
    reloads: 20,
    gapMs: 300,
    concurrency: 8,
    weights: [10, 20],
    pollMs: 10,
    samples: 10,
    etcd: { members: 1, heartbeatMs: 50, electionMs: 500 },
    latencyFrom: 'return',
  },
  reloadsUnderLoad: [
    {
      load: 'keepalive',
      holder: 'h1',
      holderAfter: ['h1'],
      changes: 20,
      changeErrors: 0,
      changeErrorSamples: [],
      etcdAlive: true,
      cliMs: stats(20, 1000, 1500),
      requests: 144_768,
      ok: 144_768,
      failed: 0,
      errors: {},
      bodies: {},
      requestsPerSec: 3000,
      appliedByNode: { h1: 20, h2: 20, h3: 20 },
      otherResultsByNode: {},
      masterReloads: { before: 0, after: 20, delta: 20 },
      failures: [],
    },
  ],
  propagation: {
    summary: [
      { what: 'last node, from return', stats: stats(10, 233, 311) },
      { what: 'coord log sinceChangeMs (all nodes)', stats: stats(30, 245, 362) },
      { what: 'coord log ms: driver run (all nodes)', stats: stats(30, 194, 313) },
    ],
    failedSamples: 0,
    pollerFailedRequests: 0,
    samples: [],
  },
};

function node(host: string, rssMiB: number, cpuPct: number): NodeIdle {
  return {
    host,
    holder: host === 'h1',
    ok: true,
    rssEndKb: rssMiB * 1024,
    rssMaxKb: rssMiB * 1024,
    hwmKb: rssMiB * 1024,
    pssEndKb: undefined,
    cpuTicks: 0,
    wallMs: 60_000,
    cpuPct,
    processes: [],
    perSecond: { rssKb: [], ticks: [] },
  };
}

function idleOf(
  system: 'coord' | 'keepalived',
  rss: [number, number, number],
  cpu: [number, number, number],
) {
  const stat = (v: [number, number, number]) => ({
    holder: v[0],
    median: [...v].sort((a, b) => a - b)[1],
    max: Math.max(...v),
  });
  const s: SystemIdle = {
    system,
    describe: system,
    processes: system,
    ok: true,
    settleMs: 3000,
    loadavg1AtStart: 0.5,
    idleSeconds: 60,
    nodes: ['h1', 'h2', 'h3'].map((h, i) => node(h, rss[i] ?? 0, cpu[i] ?? 0)),
    summary: { rssEndMiB: stat(rss), rssMaxMiB: stat(rss), cpuPct: stat(cpu) },
  };
  return s;
}

function cliRow(name: CliRow['name'], p50: number, max: number, failed = 0): CliRow {
  return {
    name,
    argv: [],
    runsMs: Array.from({ length: 20 - failed }, () => p50),
    warmupMs: 1,
    failed,
    errors: [],
    p50,
    max,
  };
}

const footprint: FootprintResults = {
  ...envelope,
  args: [],
  bench: 'footprint',
  rounds: { requested: 20, total: 146, failed: 1 },
  config: {
    hosts: ['h1', 'h2', 'h3'],
    priorities: { h1: 150, h2: 100, h3: 50 },
    etcd: { members: 1, heartbeatMs: 50, electionMs: 500 },
    coordTtlSec: 1,
    keepalived: { version: '2.2.7', vrrpVersion: 3, advertIntSec: 1 },
    idleSeconds: 60,
    settleSeconds: 5,
    sampleIntervalMs: 1000,
    clkTck: 100,
    cliRuns: 20,
    cliHost: 'h2',
    maxLoad: 1.5,
    coord: {
      kind: 'staged',
      command: ['/x/node', '/x/coord.mjs'],
      version: '0.1.0',
      node: { path: '/x/node', version: 'v20.19.0' },
    },
  },
  phases: [],
  idle: [
    idleOf('coord', [60.5, 58, 59.25], [0.8, 0.3, 0.25]),
    idleOf('keepalived', [13, 12.9, 12.8], [0.02, 0.01, 0]),
  ],
  cli: [
    cliRow('coord --version', 120, 180),
    cliRow('coord --help', 400, 450),
    cliRow('coord status', 350, 500, 1),
    cliRow('coord service list', 280, 300),
    cliRow('node -e 0', 50, 60),
    cliRow('keepalived --version', 3, 5),
  ],
};

const readme = [
  '# x',
  'typed text stays',
  '<!-- figures:failover:begin -->',
  'stale',
  '<!-- figures:failover:end -->',
  'between',
  '<!-- figures:reload:begin (old comment) -->',
  '<!-- figures:reload:end -->',
  '<!-- figures:footprint:begin -->',
  '<!-- figures:footprint:end -->',
  '<!-- figures:migration:begin -->',
  '<!-- figures:migration:end -->',
  '<!-- figures:switchover:begin -->',
  '<!-- figures:switchover:end -->',
  'after',
].join('\n');

const step = (
  name: string,
  kind: MigrationStep['kind'],
  arp: [number, number],
  http: [number, number],
  failed = 0,
  outside = 0,
  two = 0,
): MigrationStep => ({
  step: name,
  kind,
  arpGapMs: { median: arp[0], max: arp[1] },
  httpGapMs: { median: http[0], max: http[1] },
  httpFailed: failed,
  httpFailedOutsideMoves: outside,
  httpTotal: 10_000,
  twoHolderMsMax: two,
});

const migration: MigrationResults = {
  ...envelope,
  bench: 'migration',
  rounds: { requested: 3, total: 3, failed: 0 },
  advertInt: 1,
  steps: [
    step('h1: keepalived restart (baseline)', 'keepalived', [25.4, 630], [842, 848], 9, 0, 5.3),
    step('h1: keepalived → coord vrrp', 'to-vrrp', [49.2, 620], [842, 1011], 8),
    step('h2: keepalived → coord vrrp', 'to-vrrp', [19, 52.4], [17, 18]),
    step('h3: keepalived → coord vrrp', 'to-vrrp', [32.5, 37], [14, 21]),
  ],
};

describe('README figures from bench/results', () => {
  it('names the run: command, date, commit, machine, load, rounds and failed rounds, etcd', () => {
    const text = renderFailover(failover);
    expect(text).toContain('`pnpm bench:failover --rounds 3` on 2026-11-29, commit `0123456789`');
    expect(text).toContain('2 × Test CPU, 3.8 GiB, Linux 6.1.0, Node v20.19.0');
    expect(text).toContain('load average 1.5 at the start and 2.25 at the end');
    expect(text).toContain('1 of 9 rounds failed');
    expect(text).toContain('etcd: 3 members, heartbeat 50 ms / election 500 ms');
    expect(renderFailover({ ...failover, commit: { ...failover.commit, dirty: true } })).toContain(
      'with uncommitted changes',
    );
  });

  it('reports median and maximum, never a p99 of a few rounds, and shows failed rounds per cell', () => {
    const text = renderFailover(failover);
    expect(text).toMatch(/\*\*median \/ max\*\*/);
    expect(text).toContain('the maximum, not a p99');
    expect(text.replace('not a p99', '')).not.toMatch(/p99/);
    expect(text).toContain('| coord (etcd lease) | 1400 / 1500 | 30 / 40 (2 of 3) | 650 / 700 | 0 ms | — |');
    expect(text).toContain('| keepalived, advert 0.1 s | 300 / 320 | 70 / 80 | 10 / 10 | 2,780 ms |');
    expect(text).toContain('freeze: no takeover in 2 of 3');
    expect(text).toContain('VIP left on the crashed node in 3 of 3');
    expect(text).toContain('crash median ≤ 1500 ms ✔ (1400 ms), graceful median ≤ 50 ms ✔ (30 ms)');
  });

  it('says when a target is missed', () => {
    const slow = {
      ...failover,
      rows: failover.rows.map((r) => (r.system === 'coord' ? { ...r, p50: 2000 } : r)),
    };
    expect(renderFailover(slow)).toMatch(/crash median ≤ 1500 ms ✘ \(2000 ms\)/);
  });

  it('renders the reload figures with failed requests and propagation maxima', () => {
    const text = renderReload(reload);
    expect(text).toContain('`pnpm bench:reload --rounds 3`');
    expect(text).toContain('| keep-alive connections | 20 (0) | 20 | 20 | 144,768 | **0** |');
    expect(text).toContain('| last node serving, after the command returned | 10 | 233 | 311 |');
    expect(text).toContain(
      'within 100 ms ✘ (max 311 ms); no reload for server changes ✘ (master reloads 20)',
    );
    // Results from before --haproxy-base say nothing of a base file; newer ones say which one the nodes ran with.
    expect(text).not.toContain('base file');
    const withBase = (haproxyBase: string | null) =>
      renderReload({ ...reload, config: { ...reload.config, haproxyBase } });
    expect(withBase('deploy/haproxy-base.cfg')).toContain(
      'Every node ran with `deploy/haproxy-base.cfg`, what the package installs as /etc/coord/haproxy-base.cfg',
    );
    expect(withBase(null)).toContain('The nodes ran without a base file.');
  });

  it('renders the drains with the target judged on the worst drain, and nothing for results without them', () => {
    expect(renderReload(reload)).not.toContain('Drains under load');
    const drain = (i: number, last: number | null) => ({
      i,
      tInvoke: 0,
      tReturn: 1000,
      cliMs: 1000,
      exitCode: 0,
      lastRequestFromReturnMs: last,
    });
    const phase = (load: 'keepalive' | 'close', lasts: number[], failed: number) => ({
      load,
      drains: lasts.map((v, i) => drain(i + 1, v)),
      lastRequestFromReturn: {
        n: lasts.length,
        p50: lasts[1],
        p99: undefined,
        max: Math.max(...lasts),
        min: 0,
      },
      requests: 5000,
      ok: 5000 - failed,
      failed,
      errors: {},
    });
    const ok = renderReload({ ...reload, drains: [phase('keepalive', [-90, -60, -20], 0)] });
    expect(ok).toContain('| keep-alive connections | 3 (0) | -60 | -20 | 5,000 | **0** |');
    expect(ok).toContain('no new request 100 ms after the command returns ✔ (max -20 ms over 3 drains)');
    expect(ok).toContain('its requests in flight finish ✔ (0 failed requests)');
    const late = renderReload({
      ...reload,
      drains: [phase('keepalive', [-90, -60, -20], 0), phase('close', [10, 20, 140], 2)],
    });
    expect(late).toContain('✘ (max 140 ms over 6 drains)');
    expect(late).toContain('its requests in flight finish ✘ (2 failed requests)');
  });

  it('renders the footprint: both systems per node, CLI median / max, and each target with ✔ or ✘', () => {
    const text = renderFootprint(footprint);
    expect(text).toContain('`pnpm bench:footprint` on 2026-11-29, commit `0123456789`');
    expect(text).toContain('1 of 146 rounds failed');
    expect(text).toContain('the package as `pnpm package` staged it (its own Node v20.19.0');
    expect(text).toContain("keepalived's figures are its parent and its VRRP child summed");
    expect(text).toContain('**holder · median / max** over the 3 nodes');
    expect(text).toContain(
      '| RSS, largest sample, MiB | 60.5 · 59.3 / 60.5 | 13.0 · 12.9 / 13.0 | ≤ 64 MiB (largest sample, max over the nodes) ✔ |',
    );
    expect(text).toContain(
      '| idle CPU, % of one core | 0.80 · 0.30 / 0.80 | 0.02 · 0.01 / 0.02 | ≤ 0.5 % (max over the nodes) ✘ |',
    );
    expect(text).toContain('| `--version`, ms | 120 / 180 | 3 / 5 | ≤ 150 ms (median) ✔ |');
    expect(text).toContain('| `coord status`, ms | 350 / 500 (19 of 20) | — | ≤ 300 ms (median) ✘ |');
    expect(text).toContain('| `--help`, ms | 400 / 450 | — | — |');
    expect(text).toContain('| `node -e 0` (the same Node, baseline), ms | 50 / 60 | — | — |');
    expect(text).toContain(
      'Targets for coord: RSS ≤ 64 MiB ✔ (60.5 MiB), idle CPU ≤ 0.5 % ✘ (0.8 %), `coord --version` ≤ 150 ms ✔ (120 ms), ' +
        '`coord status` ≤ 300 ms ✘ (350 ms), `coord service list` ≤ 300 ms ✔ (280 ms).',
    );
    expect(text).not.toMatch(/p99/);
  });

  it('says when the staged coord is older than the code, and what was not measured', () => {
    const stale = {
      ...footprint,
      config: { ...footprint.config, coord: { ...footprint.config.coord, stale: true } },
    };
    expect(renderFootprint(stale)).toContain(
      '**staged before the newest commit to packages/ or packaging/**',
    );
    const noCoord = { ...footprint, idle: footprint.idle.filter((x) => x.system !== 'coord'), cli: [] };
    expect(judgeFootprint(noCoord).every((t) => t.ok === undefined)).toBe(true);
    expect(renderFootprint(noCoord)).toContain('RSS ≤ 64 MiB (not measured)');
  });

  it('renders the migration: the holder’s step alone, the others’ steps of a kind on one row, and the targets', () => {
    const text = renderMigration(migration);
    expect(text).toContain('`pnpm bench:migration --rounds 3` on 2026-11-29, commit `0123456789`');
    expect(text).toContain(
      '| h1 (Master): keepalived restarted — the baseline | 25 / 630 | 842 / 848 | 9 of 10,000 (0) | 5.3 |',
    );
    expect(text).toContain(
      '| h1: keepalived → coord VRRP mode | 49 / 620 | 842 / 1011 | 8 of 10,000 (0) | 0 |',
    );
    expect(text).toContain('| h2, h3: keepalived → coord VRRP mode | 19–33 / 52 | 14–17 / 21 | 0 | 0 |');
    expect(text).toContain(
      'Targets: at most 1 s without the VIP per step ✔ (max 630 ms); no failed request outside a move ✔ (0); ' +
        'no two holders in any coord step ✔ (0 ms; the keepalived baseline: 5.3 ms).',
    );
    const bad = {
      ...migration,
      steps: [
        ...migration.steps,
        step('h1: drop VRRP (restart)', 'drop-vrrp', [60, 1200], [900, 1300], 3, 1, 2),
      ],
    };
    expect(renderMigration(bad)).toContain(
      'at most 1 s without the VIP per step ✘ (max 1200 ms); no failed request outside a move ✘ (1); no two holders in any coord step ✘ (2 ms',
    );
  });

  it('renders the planned switchover per system with how it was done, and coord’s target and ratio', () => {
    const text = renderSwitchover(switchover);
    expect(text).toContain(
      '| coord (etcd lease) | coord move default --to h2 (run on h3), then --release | 30 / 45 | 0 ms | 0 |',
    );
    expect(text).toContain(
      '| keepalived, advert 1 s | the holder’s priority lowered, then SIGHUP'.replace('’', "'"),
    );
    expect(text).toContain(
      'Target for coord: median ≤ 50 ms ✔ (30 ms), never two holders ✔; its median is 0.43× that of keepalived, advert 1 s.',
    );
    const slow = { ...switchover, rows: [row('coord', 'switchover', [80, 90, 70])] };
    expect(renderSwitchover(slow)).toContain('median ≤ 50 ms ✘ (80 ms)');
  });

  it('replaces only what is between the markers, and fails without them or without results', () => {
    const out = regenerate(readme, { failover, reload, footprint, migration, switchover });
    expect(out.startsWith('# x\ntyped text stays\n<!-- figures:failover:begin')).toBe(true);
    expect(out).not.toContain('stale');
    expect(out).toContain('\n<!-- figures:failover:end -->\nbetween\n');
    expect(out).toContain('<!-- figures:reload:end -->\n<!-- figures:footprint:begin');
    expect(out.endsWith('<!-- figures:switchover:end -->\nafter')).toBe(true);
    expect(regenerate(out, { failover, reload, footprint, migration, switchover })).toBe(out);
    expect(() => replaceBlock('no markers', 'failover', 'x')).toThrow(/no "<!-- figures:failover:begin/);
    expect(() =>
      regenerate(readme, { failover, reload: undefined, footprint, migration, switchover }),
    ).toThrow(/reload.json is missing/);
    expect(() =>
      regenerate(readme, { failover, reload, footprint: undefined, migration, switchover }),
    ).toThrow(/footprint.json is missing/);
    expect(() =>
      regenerate(readme, { failover, reload, footprint, migration: undefined, switchover }),
    ).toThrow(/migration.json is missing/);
  });

  it('points at the first line where README and results disagree', () => {
    const out = regenerate(readme, { failover, reload, footprint, migration, switchover });
    const edited = out.replace('1400 / 1500', '1300 / 1500');
    expect(firstDifference(edited, out)).toMatch(/^line \d+:\n {2}README: .*1300 \/ 1500/);
    expect(firstDifference(out, out)).toBeUndefined();
  });
});
