/**
 * The README's figures, generated from the committed benchmark results (bench/results/*.json), never typed.
 *
 *   pnpm figures         rewrite every generated block of README.md from bench/results/
 *   pnpm check:readme    exit 1 when README.md differs from what the results say (scripts/test.sh runs it)
 *
 * A generated block sits between `<!-- figures:NAME:begin -->` and `<!-- figures:NAME:end -->`; everything
 * between the markers is replaced. The functions here are pure (test/figures.test.ts); only `main` reads files.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FailoverResults, Row } from './failover.js';
import type { CliName, FootprintResults, NodeStat } from './footprint.js';
import type { ReloadResults, Stats } from './reload.js';
import { MIN_FOR_P99, percentile, type ResultEnvelope } from './results.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));

/** The generated blocks: name → the results file it is made from. */
export const BLOCKS = {
  failover: 'failover.json',
  reload: 'reload.json',
  footprint: 'footprint.json',
  migration: 'migration.json',
  switchover: 'switchover.json',
} as const;
export type BlockName = keyof typeof BLOCKS;

const ms = (v: number | undefined): string => (v === undefined ? '—' : String(Math.round(v)));
const count = (v: number): string => v.toLocaleString('en-US');

/** One line saying where, when and from what the figures come. */
export function provenance(r: ResultEnvelope, command: string): string {
  const m = r.machine;
  const sha = r.commit.sha.slice(0, 10);
  return (
    `\`${[command, ...r.args].join(' ')}\` on ${r.date.slice(0, 10)}, commit \`${sha}\`` +
    `${r.commit.dirty ? ' (with uncommitted changes)' : ''}; ${m.cpus} × ${m.cpuModel}, ${m.memGiB} GiB, ` +
    `Linux ${m.kernel}, Node ${m.node}, load average ${m.loadavg1[0]} at the start and ${m.loadavg1[1]} at the end. ` +
    `${r.rounds.failed} of ${r.rounds.total} rounds failed` +
    `${r.rounds.failed > 0 ? ' (listed in the results file; the figures are over the rounds that succeeded)' : ''}.`
  );
}

const SYSTEM_LABELS: Record<string, string> = {
  coord: 'coord (etcd lease)',
  'coord-tls': 'coord over TLS (client certificates, etcd auth)',
  'keepalived-v3-1s': 'keepalived, advert 1 s',
  'keepalived-v3-100ms': 'keepalived, advert 0.1 s',
  'coord-vrrp-1s': 'coord VRRP mode, advert 1 s',
  'coord-vrrp-100ms': 'coord VRRP mode, advert 0.1 s',
};

/** "p50 / max", and how many rounds it is over when some failed. */
function cell(row: Row | undefined): string {
  if (row === undefined) return 'not run';
  if (row.n === 0) return `no measurement (${row.failed} failed)`;
  const over = row.failed > 0 ? ` (${row.n} of ${row.roundsRun})` : '';
  return `${ms(row.p50)} / ${ms(row.max)}${over}`;
}

/** The failover block of the README. */
export function renderFailover(r: FailoverResults): string {
  const systems = Object.keys(r.config.systems);
  const find = (system: string, scenario: string) =>
    r.rows.find((x) => x.system === system && x.scenario === scenario);
  const e = r.config.etcd;
  const lines: string[] = [];
  lines.push(
    `${provenance(r, 'pnpm bench:failover')} Systems interleaved round by round; etcd: ${e.members} member${e.members === 1 ? '' : 's'}, ` +
      `heartbeat ${e.heartbeatMs} ms / election ${e.electionMs} ms; coord TTL ${r.config.coordTtlSec} s; keepalived 2.2.7, VRRPv3.`,
  );
  lines.push('');
  lines.push(
    `Gap in ms = first ARP answer from the new holder's MAC − last from the old one, as the client's kernel received ` +
      `them (probe every ${r.config.arpIntervalMs} ms): **median / max** over ${r.rounds.requested} round${r.rounds.requested === 1 ? '' : 's'} ` +
      `per cell (the maximum, not a p99: too few rounds for one). "Two holders" is the total time two hosts had the ` +
      `VIP at once in all rounds, from every host's kernel address events.`,
  );
  lines.push('');
  lines.push(
    '| system | crash (kill -9 + cable) | graceful stop | freeze (SIGSTOP ' +
      `${r.config.freezeMs / 1000} s) | two holders | notes |`,
  );
  lines.push('|---|---|---|---|---|---|');
  for (const system of systems) {
    const rows = r.rows.filter((x) => x.system === system);
    const twoMs = rows.reduce((a, x) => a + x.doubleHolderMs, 0);
    const notes: string[] = [];
    for (const x of rows) {
      if (x.noTakeover > 0) notes.push(`${x.scenario}: no takeover in ${x.noTakeover} of ${x.roundsRun}`);
      if (x.staleVipAfterCrash > 0)
        notes.push(`VIP left on the crashed node in ${x.staleVipAfterCrash} of ${x.roundsRun}`);
    }
    lines.push(
      `| ${SYSTEM_LABELS[system] ?? system} | ${cell(find(system, 'crash'))} | ${cell(find(system, 'graceful'))} | ` +
        `${cell(find(system, 'freeze'))} | ${count(twoMs)} ms | ${notes.join('; ') || '—'} |`,
    );
  }
  const targets = coordTargets(r);
  if (targets !== undefined) {
    lines.push('');
    lines.push(targets);
  }
  const tls = tlsRatios(r);
  if (tls !== undefined) {
    lines.push('');
    lines.push(tls);
  }
  const vrrp = vrrpRatios(r);
  if (vrrp !== undefined) {
    lines.push('');
    lines.push(vrrp);
  }
  return lines.join('\n');
}

/**
 * The switchover block: a planned handover per system (`coord move` for coord, a lowered priority and a reload for
 * keepalived), with coord's target (median ≤ 50 ms, never two holders) and its ratio to each keepalived.
 */
export function renderSwitchover(r: FailoverResults): string {
  const rows = r.rows.filter((x) => x.scenario === 'switchover');
  const lines: string[] = [
    `${provenance(r, 'pnpm bench:failover')} Systems interleaved round by round; etcd: ${r.config.etcd.members} ` +
      `member${r.config.etcd.members === 1 ? '' : 's'}; the client probes every ${r.config.arpIntervalMs} ms. ` +
      `Gap = first ARP answer from the new holder's MAC − last from the old one (**median / max** over ` +
      `${r.rounds.requested} rounds); two holders = total time two hosts had the VIP, from their kernels' address events.`,
    '',
    '| system | how | gap, ms: median / max | two holders | probes answered by two MACs |',
    '|---|---|---|---|---|',
  ];
  for (const x of rows) {
    const how = String(
      (r.config.systems[x.system] as { switchover?: string } | undefined)?.switchover ?? '—',
    );
    lines.push(
      `| ${SYSTEM_LABELS[x.system] ?? x.system} | ${how} | ${cell(x)} | ` +
        `${count(x.doubleHolderMs)} ms | ${x.doubleReplyProbes} |`,
    );
  }
  const coord = rows.find((x) => x.system === 'coord');
  if (coord?.p50 !== undefined) {
    const kas = rows.filter((x) => x.system.startsWith('keepalived') && x.p50 !== undefined);
    const vs = kas.map(
      (k) =>
        `${((coord.p50 ?? 0) / (k.p50 ?? 1)).toFixed(2)}× that of ${SYSTEM_LABELS[k.system] ?? k.system}`,
    );
    lines.push(
      '',
      `Target for coord: median ≤ 50 ms ${coord.p50 <= 50 ? '✔' : '✘'} (${ms(coord.p50)} ms), never two holders ` +
        `${coord.doubleHolderMs === 0 && coord.doubleReplyProbes === 0 ? '✔' : '✘'}` +
        `${vs.length === 0 ? '' : `; its median is ${vs.join(' and ')}`}.`,
    );
  }
  return lines.join('\n');
}

/** The failover targets coord set itself (crash median ≤ 1.5 s, graceful median ≤ 50 ms, never two holders). */
function coordTargets(r: FailoverResults): string | undefined {
  const rows = r.rows.filter((x) => x.system === 'coord');
  if (rows.length === 0) return undefined;
  const mark = (ok: boolean | undefined) => (ok === undefined ? '(not measured)' : ok ? '✔' : '✘');
  const crash = rows.find((x) => x.scenario === 'crash')?.p50;
  const graceful = rows.find((x) => x.scenario === 'graceful')?.p50;
  const two = rows.reduce((a, x) => a + x.doubleHolderMs, 0);
  return (
    `Targets for coord: crash median ≤ 1500 ms ${mark(crash === undefined ? undefined : crash <= 1500)} ` +
    `(${ms(crash)} ms), graceful median ≤ 50 ms ${mark(graceful === undefined ? undefined : graceful <= 50)} ` +
    `(${ms(graceful)} ms), never two holders ${mark(two === 0)} (${count(two)} ms).`
  );
}

/** coord over TLS against plaintext coord (target: within 5 %), for crash and graceful stops. */
function tlsRatios(r: FailoverResults): string | undefined {
  const parts: string[] = [];
  for (const sc of ['crash', 'graceful'] as const) {
    const a = r.rows.find((x) => x.system === 'coord-tls' && x.scenario === sc)?.p50;
    const b = r.rows.find((x) => x.system === 'coord' && x.scenario === sc)?.p50;
    if (a === undefined || b === undefined || b === 0) continue;
    const ratio = a / b;
    parts.push(`${sc} ${ratio.toFixed(2)} ${ratio <= 1.05 ? '✔' : '✘'}`);
  }
  return parts.length === 0
    ? undefined
    : `coord over TLS ÷ plaintext coord, ratio of the medians (target ≤ 1.05): ${parts.join(', ')}.`;
}

/** coord's VRRP mode against keepalived with the same advert interval: ratio of the medians. */
function vrrpRatios(r: FailoverResults): string | undefined {
  const parts: string[] = [];
  for (const [ours, theirs, label] of [
    ['coord-vrrp-1s', 'keepalived-v3-1s', 'advert 1 s'],
    ['coord-vrrp-100ms', 'keepalived-v3-100ms', 'advert 0.1 s'],
  ] as const) {
    for (const sc of r.config.scenarios) {
      const a = r.rows.find((x) => x.system === ours && x.scenario === sc)?.p50;
      const b = r.rows.find((x) => x.system === theirs && x.scenario === sc)?.p50;
      if (a === undefined || b === undefined || b === 0) continue;
      parts.push(`${sc} ${(a / b).toFixed(2)} (${label})`);
    }
  }
  return parts.length === 0
    ? undefined
    : `coord's VRRP mode ÷ keepalived with the same settings, ratio of the medians: ${parts.join(', ')}.`;
}

function statsRow(label: string, s: Stats | undefined): string {
  if (s === undefined || s.n === 0) return `| ${label} | 0 | — | — |`;
  return `| ${label} | ${s.n} | ${ms(s.p50)} | ${ms(s.max)} |`;
}

/** Which node-local HAProxy base the nodes ran with (results before the option say nothing). */
function baseNote(base: string | null | undefined): string {
  if (base === undefined) return '';
  if (base === null) return ' The nodes ran without a base file.';
  if (base !== 'deploy/haproxy-base.cfg') return ` Every node ran with the base file \`${base}\`.`;
  return (
    ' Every node ran with `deploy/haproxy-base.cfg`, what the package installs as /etc/coord/haproxy-base.cfg: ' +
    'it sets `httpclient.ssl.verify none`, without which HAProxy 2.6 loads the system CA store at every check ' +
    'and reload (docs/design.md, "HAProxy 2.6").'
  );
}

/** The reload block of the README. */
export function renderReload(r: ReloadResults): string {
  const lines: string[] = [];
  const e = r.config.etcd;
  lines.push(
    `${provenance(r, 'pnpm bench:reload')} 3 nodes running \`coord join\` with the HAProxy loop (etcd: ${e.members} ` +
      `member${e.members === 1 ? '' : 's'}); a round is one model change under load or one propagation sample.` +
      baseNote(r.config.haproxyBase) +
      (r.error === undefined ? '' : ` **The run stopped early: ${r.error}.**`),
  );
  lines.push('');
  lines.push(
    `Server changes under load: \`coord server set\` changes a server weight ${r.config.reloads} times per load ` +
      `kind, while ${r.config.concurrency} clients in the client namespace request \`http://VIP/\` back to back. ` +
      `A server change goes through HAProxy's runtime API when it can; the holder's master reload counter says ` +
      `whether HAProxy reloaded.`,
  );
  lines.push('');
  lines.push(
    '| load through the VIP | changes (failed) | applied by the holder | master reloads | requests | failed requests |',
  );
  lines.push('|---|---|---|---|---|---|');
  for (const a of r.reloadsUnderLoad) {
    const kind = a.load === 'keepalive' ? 'keep-alive connections' : 'a new connection per request';
    lines.push(
      `| ${kind} | ${a.changes} (${a.changeErrors}) | ${a.appliedByNode[a.holder] ?? 0} | ` +
        `${a.masterReloads.delta ?? '?'} | ${count(a.requests)} | **${count(a.failed)}** |`,
    );
  }
  const p = r.propagation;
  if (p !== undefined) {
    const row = (what: string) => p.summary.find((x) => x.what === what)?.stats;
    lines.push('');
    lines.push(
      `Propagation: ms from the \`coord server set\` command returning until every node's own HAProxy serves the ` +
        `change (polled every ${r.config.pollMs} ms), and coord's own timings from its log; median / max over the ` +
        `samples (${p.failedSamples} failed).`,
    );
    lines.push('');
    lines.push('| ms | samples | median | max |');
    lines.push('|---|---|---|---|');
    lines.push(statsRow('last node serving, after the command returned', row('last node, from return')));
    lines.push(
      statsRow(
        "a node's watch event → applied (debounce + driver run)",
        row('coord log sinceChangeMs (all nodes)'),
      ),
    );
    lines.push(
      statsRow(
        'driver run: the runtime API and the file (or render, `haproxy -c`, swap, reload, confirm)',
        row('coord log ms: driver run (all nodes)'),
      ),
    );
    const last = row('last node, from return');
    if (last !== undefined && last.max !== undefined) {
      // p99 once there are enough samples for one, else the maximum stands in for it.
      const worst = last.p99 ?? last.max;
      const reloads = r.reloadsUnderLoad.map((a) => a.masterReloads.delta);
      const none = reloads.length > 0 && reloads.every((d) => d === 0);
      lines.push('');
      lines.push(
        `Targets: every node serving a server change within 100 ms ${worst <= 100 ? '✔' : '✘'} ` +
          `(${last.p99 === undefined ? 'max' : 'p99'} ${ms(worst)} ms); no reload for server changes ` +
          `${none ? '✔' : '✘'} (master reloads ${reloads.map((d) => d ?? '?').join(' / ')}).`,
      );
    }
  }
  lines.push(...renderStructural(r));
  lines.push(...renderDrains(r));
  return lines.join('\n');
}

/** Part (d) of the reload block: drains under load, and when the drained server got its last request. */
function renderDrains(r: ReloadResults): string[] {
  const phases = r.drains ?? [];
  if (phases.length === 0) return [];
  const lines = [
    '',
    `Drains under load: servers a and b at equal weights, the same clients; \`coord server enable web a\`, then ` +
      `once a takes requests again \`coord server drain web a\` (without \`--wait\`). ms from the command returning ` +
      `until the drained server received its last request (negative: before the command returned), as the backend ` +
      `itself timed it.`,
    '',
    '| load through the VIP | drains (failed) | median | max | requests | failed requests |',
    '|---|---|---|---|---|---|',
  ];
  const all: number[] = [];
  for (const ph of phases) {
    const kind = ph.load === 'keepalive' ? 'keep-alive connections' : 'a new connection per request';
    const failed = ph.drains.filter((d) => d.error !== undefined).length;
    all.push(...ph.drains.map((d) => d.lastRequestFromReturnMs).filter((x): x is number => x !== null));
    lines.push(
      `| ${kind} | ${ph.drains.length} (${failed}) | ${ms(ph.lastRequestFromReturn.p50)} | ` +
        `${ms(ph.lastRequestFromReturn.max)} | ${count(ph.requests)} | **${count(ph.failed)}** |`,
    );
  }
  const worst = all.length > 0 ? Math.max(...all) : undefined;
  const failed = phases.reduce((a, ph) => a + ph.failed, 0);
  lines.push(
    '',
    `Targets: a drained server receives no new request 100 ms after the command returns ` +
      `${worst !== undefined && worst <= 100 ? '✔' : '✘'} (max ${ms(worst)} ms over ${all.length} drains); ` +
      `its requests in flight finish ${failed === 0 ? '✔' : '✘'} (${count(failed)} failed requests).`,
  );
  return lines;
}

/** Part (c) of the reload block: structural changes, rolling and parallel, under load. */
function renderStructural(r: ReloadResults): string[] {
  const phases = r.structural ?? [];
  if (phases.length === 0) return [];
  const lines = [
    '',
    `Structural changes under load: \`coord service set web\` adds or removes a bind (0.0.0.0:8081), alternately, ` +
      `with \`--rollout rolling\` (one node at a time, holder last, each gated on \`GET /\` through its own new ` +
      `worker; started with \`--no-wait\`) or \`--rollout parallel\`, while the same clients load the VIP. ms from the ` +
      `command returning until every node's own :8081 shows the change (polled every ${r.config.pollMs} ms).`,
    '',
    '| rollout | load through the VIP | changes (failed) | median | p99 | max | stopped rollouts | requests | failed requests |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const lastOf = (c: (typeof phases)[number]['changes'][number]) => {
    const all = Object.values(c.fromReturnMs);
    const v = all.filter((x): x is number => x !== null);
    return v.length > 0 && v.length === all.length ? Math.max(...v) : undefined;
  };
  const pooled = new Map<string, { values: number[]; failed: number }>();
  for (const ph of phases) {
    const kind = ph.load === 'keepalive' ? 'keep-alive connections' : 'a new connection per request';
    const failed = ph.changes.filter((c) => c.error !== undefined).length;
    lines.push(
      `| ${ph.rollout} | ${kind} | ${ph.changes.length} (${failed}) | ${ms(ph.lastNodeFromReturn.p50)} | ` +
        `${ms(ph.lastNodeFromReturn.p99)} | ${ms(ph.lastNodeFromReturn.max)} | ${ph.stopped} | ${count(ph.requests)} | ` +
        `**${count(ph.failed)}** |`,
    );
    const p = pooled.get(ph.rollout) ?? { values: [], failed: 0 };
    for (const c of ph.changes) {
      const v = lastOf(c);
      if (v !== undefined) p.values.push(v);
    }
    p.failed += ph.failed;
    pooled.set(ph.rollout, p);
  }
  const bounds: Record<string, number> = { rolling: 1500, parallel: 400 };
  const judged = [...pooled].map(([mode, p]) => {
    const enough = p.values.length >= MIN_FOR_P99;
    const worst = enough ? percentile(p.values, 99) : Math.max(...p.values);
    const bound = bounds[mode] ?? Infinity;
    return (
      `${mode} every node serving ≤ ${bound} ms ${worst !== undefined && worst <= bound ? '✔' : '✘'} ` +
      `(${enough ? 'p99' : 'max'} ${ms(worst)} ms over ${p.values.length} changes)`
    );
  });
  const failed = phases.reduce((a, ph) => a + ph.failed, 0);
  lines.push(
    '',
    `Targets: ${judged.join('; ')}; 0 failed requests ${failed === 0 ? '✔' : '✘'} (${count(failed)}).`,
  );
  return lines;
}

/** One footprint target of coord, judged on a figure of the results (undefined: not measured). */
export interface FootprintTarget {
  key: 'rss' | 'cpu' | 'version' | 'status' | 'service list';
  what: string;
  /** "≤ 64 MiB" */
  limit: string;
  /** Which figure is judged, e.g. "max over the nodes". */
  on: string;
  value: number | undefined;
  unit: string;
  ok: boolean | undefined;
}

/**
 * The footprint coord set itself against keepalived (which it replaces): an idle agent's RSS ≤ 64 MiB and CPU ≤
 * 0.5 % on every node (the worst node is judged), `coord --version` ≤ 150 ms and `coord status` / `coord service
 * list` ≤ 300 ms (the median of the runs; the maximum is shown beside it).
 */
export function judgeFootprint(r: FootprintResults): FootprintTarget[] {
  const coord = r.idle.find((x) => x.system === 'coord');
  const cli = (name: CliName) => r.cli.find((x) => x.name === name)?.p50;
  const t = (
    key: FootprintTarget['key'],
    what: string,
    limit: number,
    unit: string,
    on: string,
    value: number | undefined,
  ): FootprintTarget => ({
    key,
    what,
    limit: `≤ ${limit} ${unit}`,
    on,
    value,
    unit,
    ok: value === undefined ? undefined : value <= limit,
  });
  return [
    t('rss', 'RSS', 64, 'MiB', 'largest sample, max over the nodes', coord?.summary.rssMaxMiB.max),
    t('cpu', 'idle CPU', 0.5, '%', 'max over the nodes', coord?.summary.cpuPct.max),
    t('version', '`coord --version`', 150, 'ms', 'median', cli('coord --version')),
    t('status', '`coord status`', 300, 'ms', 'median', cli('coord status')),
    t('service list', '`coord service list`', 300, 'ms', 'median', cli('coord service list')),
  ];
}

const fixed = (v: number | undefined, digits: number): string => (v === undefined ? '—' : v.toFixed(digits));

/** "holder · median / max" over the nodes. */
function nodeCell(s: NodeStat | undefined, digits: number): string {
  if (s === undefined || s.max === undefined) return 'not measured';
  return `${fixed(s.holder, digits)} · ${fixed(s.median, digits)} / ${fixed(s.max, digits)}`;
}

/** The footprint block of the README. */
export function renderFootprint(r: FootprintResults): string {
  const c = r.config;
  const coord = r.idle.find((x) => x.system === 'coord');
  const ka = r.idle.find((x) => x.system === 'keepalived');
  const judged = judgeFootprint(r);
  const mark = (ok: boolean | undefined) => (ok === undefined ? '(not measured)' : ok ? '✔' : '✘');
  const target = (key: FootprintTarget['key']) => {
    const x = judged.find((j) => j.key === key);
    return x === undefined ? '—' : `${x.limit} (${x.on}) ${mark(x.ok)}`;
  };
  const cli = (name: CliName) => {
    const row = r.cli.find((x) => x.name === name);
    if (row === undefined) return '—';
    if (row.runsMs.length === 0) return `no measurement (${row.failed} failed)`;
    const over = row.failed > 0 ? ` (${row.runsMs.length} of ${row.runsMs.length + row.failed})` : '';
    return `${ms(row.p50)} / ${ms(row.max)}${over}`;
  };
  const which =
    c.coord.kind === 'staged'
      ? `the package as \`pnpm package\` staged it (its own Node ${c.coord.node.version}${c.coord.agentCommand === undefined ? '' : `; \`coord join\` runs \`${c.coord.agentCommand.join(' ')}\`, other commands \`node coord.mjs\``})` +
        (c.coord.stale === true ? ', **staged before the newest commit to packages/ or packaging/**' : '')
      : c.coord.kind === 'checkout'
        ? `this checkout's \`packages/cli/bin/coord.js\` on Node ${c.coord.node.version}`
        : `\`${c.coord.command.join(' ')}\` (Node ${c.coord.node.version})`;
  const failedSystems = r.idle.filter((x) => !x.ok);
  const lines: string[] = [];
  lines.push(
    `${provenance(r, 'pnpm bench:footprint')} ${c.hosts.length} nodes (etcd: ${c.etcd.members} member${c.etcd.members === 1 ? '' : 's'}), ` +
      `one group, priorities ${Object.values(c.priorities).join('/')}; each system idle for ${c.idleSeconds} s once the ` +
      `first node alone held the VIP (and ${c.settleSeconds} s more). coord: TTL ${c.coordTtlSec} s, ${which}; ` +
      `keepalived ${c.keepalived.version}: VRRPv${c.keepalived.vrrpVersion}, advert ${c.keepalived.advertIntSec} s.` +
      failedSystems.map((x) => ` **${x.system}: ${x.error ?? 'failed'}.**`).join(''),
  );
  lines.push('');
  lines.push(
    `RSS is VmRSS (/proc/PID/status) at the end of the idle window and the largest of the samples taken every ` +
      `${c.sampleIntervalMs / 1000} s; CPU is utime + stime (/proc/PID/stat) over the window's wall time, in % of one core; ` +
      `**holder · median / max** over the ${c.hosts.length} nodes. keepalived's figures are its parent and its VRRP ` +
      `child summed. CLI: wall time of the whole process (bash \`time\` in lab host ${c.cliHost}), **median / max** ` +
      `over ${c.cliRuns} runs, commands interleaved after one warm-up run each; \`status\` and \`service list\` read the ` +
      `lab's etcd while the coord nodes run.`,
  );
  lines.push('');
  lines.push(`| | coord | keepalived ${c.keepalived.version} | target for coord |`);
  lines.push('|---|---|---|---|');
  lines.push(
    `| RSS at the end, MiB | ${nodeCell(coord?.summary.rssEndMiB, 1)} | ${nodeCell(ka?.summary.rssEndMiB, 1)} | — |`,
  );
  lines.push(
    `| RSS, largest sample, MiB | ${nodeCell(coord?.summary.rssMaxMiB, 1)} | ${nodeCell(ka?.summary.rssMaxMiB, 1)} | ${target('rss')} |`,
  );
  lines.push(
    `| idle CPU, % of one core | ${nodeCell(coord?.summary.cpuPct, 2)} | ${nodeCell(ka?.summary.cpuPct, 2)} | ${target('cpu')} |`,
  );
  lines.push(
    `| \`--version\`, ms | ${cli('coord --version')} | ${cli('keepalived --version')} | ${target('version')} |`,
  );
  lines.push(`| \`--help\`, ms | ${cli('coord --help')} | ${cli('keepalived --help')} | — |`);
  lines.push(`| \`coord status\`, ms | ${cli('coord status')} | — | ${target('status')} |`);
  lines.push(`| \`coord service list\`, ms | ${cli('coord service list')} | — | ${target('service list')} |`);
  lines.push(`| \`node -e 0\` (the same Node, baseline), ms | ${cli('node -e 0')} | — | — |`);
  lines.push('');
  lines.push(
    `Targets for coord: ${judged
      .map(
        (x) => `${x.what} ${x.limit} ${mark(x.ok)} (${x.value === undefined ? '—' : `${x.value} ${x.unit}`})`,
      )
      .join(', ')}.`,
  );
  return lines.join('\n');
}

const begin = (name: BlockName) =>
  `<!-- figures:${name}:begin (generated by \`pnpm figures\`; do not edit) -->`;
const end = (name: BlockName) => `<!-- figures:${name}:end -->`;

/** One step of `pnpm bench:migration`, over its runs (test/bench/migration.ts writes these). */
export interface MigrationStep {
  step: string;
  kind: 'keepalived' | 'to-vrrp' | 'to-hybrid' | 'drop-vrrp';
  arpGapMs: { median: number; max: number };
  httpGapMs: { median: number; max: number };
  httpFailed: number;
  httpFailedOutsideMoves: number;
  httpTotal: number;
  twoHolderMsMax: number;
}

export interface MigrationResults extends ResultEnvelope {
  bench: 'migration';
  advertInt: number;
  steps: MigrationStep[];
}

const MIGRATION_LABELS: Record<MigrationStep['kind'], string> = {
  keepalived: 'keepalived restarted — the baseline',
  'to-vrrp': 'keepalived → coord VRRP mode',
  'to-hybrid': 'VRRP mode → hybrid etcd mode',
  'drop-vrrp': 'the `vrrp:` block dropped (restart)',
};

/** "a" or "a–b" over the values (rounded). */
const span = (xs: readonly number[]): string => {
  const lo = Math.round(Math.min(...xs));
  const hi = Math.round(Math.max(...xs));
  return lo === hi ? String(lo) : `${lo}–${hi}`;
};

/**
 * The migration block: the first node's step of each kind on its own row (it holds the VIP), the other nodes' steps
 * of that kind on one row (median range / maximum), then the targets with ✔ or ✘.
 */
export function renderMigration(r: MigrationResults): string {
  const rows: string[] = [
    provenance(r, 'pnpm bench:migration'),
    `Advert interval ${r.advertInt} s. Median / max over the runs; failed requests in total, in brackets those outside a move of the VIP.`,
    '',
    '| step | longest ARP gap, ms | longest HTTP gap, ms | failed requests | two holders, ms |',
    '|---|---|---|---|---|',
  ];
  const kinds = [...new Set(r.steps.map((s) => s.kind))];
  for (const kind of kinds) {
    const steps = r.steps.filter((s) => s.kind === kind);
    const groups = [steps.slice(0, 1), steps.slice(1)].filter((g) => g.length > 0);
    for (const g of groups) {
      const nodes = g.map((s) => s.step.split(':')[0] ?? '?');
      const label =
        kind === 'keepalived'
          ? `${nodes.join(', ')} (Master): ${MIGRATION_LABELS[kind]}`
          : `${nodes.join(', ')}: ${MIGRATION_LABELS[kind]}`;
      const failed = g.reduce((a, s) => a + s.httpFailed, 0);
      const outside = g.reduce((a, s) => a + s.httpFailedOutsideMoves, 0);
      const total = g.reduce((a, s) => a + s.httpTotal, 0);
      rows.push(
        `| ${label} | ${span(g.map((s) => s.arpGapMs.median))} / ${ms(Math.max(...g.map((s) => s.arpGapMs.max)))} ` +
          `| ${span(g.map((s) => s.httpGapMs.median))} / ${ms(Math.max(...g.map((s) => s.httpGapMs.max)))} ` +
          `| ${failed === 0 ? '0' : `${failed} of ${count(total)} (${outside})`} ` +
          `| ${Math.max(...g.map((s) => s.twoHolderMsMax))
            .toFixed(1)
            .replace(/\.0$/, '')} |`,
      );
    }
  }
  const coordSteps = r.steps.filter((s) => s.kind !== 'keepalived');
  const maxArp = Math.max(...r.steps.map((s) => s.arpGapMs.max));
  const outside = r.steps.reduce((a, s) => a + s.httpFailedOutsideMoves, 0);
  const twoCoord = Math.max(0, ...coordSteps.map((s) => s.twoHolderMsMax));
  const twoBase = Math.max(0, ...r.steps.filter((s) => s.kind === 'keepalived').map((s) => s.twoHolderMsMax));
  const mark = (ok: boolean) => (ok ? '✔' : '✘');
  rows.push(
    '',
    `Targets: at most 1 s without the VIP per step ${mark(maxArp <= 1000)} (max ${ms(maxArp)} ms); ` +
      `no failed request outside a move ${mark(outside === 0)} (${outside}); ` +
      `no two holders in any coord step ${mark(twoCoord === 0)} (${twoCoord.toFixed(1).replace(/\.0$/, '')} ms; ` +
      `the keepalived baseline: ${twoBase.toFixed(1).replace(/\.0$/, '')} ms).`,
  );
  return rows.join('\n');
}

/** `readme` with block `name` replaced by `body`; throws when the markers are missing or out of order. */
export function replaceBlock(readme: string, name: BlockName, body: string): string {
  const startRe = new RegExp(`<!-- figures:${name}:begin[^>]*-->`);
  const m = startRe.exec(readme);
  const stop = readme.indexOf(end(name));
  if (m === null || stop < 0 || stop < m.index)
    throw new Error(`README.md has no "<!-- figures:${name}:begin -->" … "${end(name)}" block`);
  return `${readme.slice(0, m.index)}${begin(name)}\n${body}\n${readme.slice(stop)}`;
}

/** Every block regenerated from `results` (a missing result file is an error, not an empty table). */
export function regenerate(
  readme: string,
  results: {
    failover: FailoverResults | undefined;
    reload: ReloadResults | undefined;
    footprint: FootprintResults | undefined;
    migration: MigrationResults | undefined;
    switchover: FailoverResults | undefined;
  },
): string {
  const missing = (name: BlockName) =>
    new Error(`bench/results/${BLOCKS[name]} is missing: run pnpm bench:${name}`);
  const render = (name: BlockName): string => {
    switch (name) {
      case 'failover':
        if (results.failover === undefined) throw missing(name);
        return renderFailover(results.failover);
      case 'reload':
        if (results.reload === undefined) throw missing(name);
        return renderReload(results.reload);
      case 'footprint':
        if (results.footprint === undefined) throw missing(name);
        return renderFootprint(results.footprint);
      case 'migration':
        if (results.migration === undefined) throw missing(name);
        return renderMigration(results.migration);
      case 'switchover':
        if (results.switchover === undefined) throw missing(name);
        return renderSwitchover(results.switchover);
    }
  };
  let out = readme;
  for (const name of Object.keys(BLOCKS) as BlockName[]) out = replaceBlock(out, name, render(name));
  return out;
}

/** The first line where `a` and `b` differ, for the error message. */
export function firstDifference(a: string, b: string): string | undefined {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] !== y[i]) return `line ${i + 1}:\n  README:  ${x[i] ?? '(end)'}\n  results: ${y[i] ?? '(end)'}`;
  }
  return undefined;
}

function readResults<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(join(RESULTS, file), 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function main(): void {
  const check = process.argv.includes('--check');
  const readme = readFileSync(README, 'utf8');
  const next = regenerate(readme, {
    failover: readResults<FailoverResults>(BLOCKS.failover),
    reload: readResults<ReloadResults>(BLOCKS.reload),
    footprint: readResults<FootprintResults>(BLOCKS.footprint),
    migration: readResults<MigrationResults>(BLOCKS.migration),
    switchover: readResults<FailoverResults>(BLOCKS.switchover),
  });
  if (check) {
    const diff = firstDifference(readme, next);
    if (diff !== undefined) {
      console.error(`README.md figures do not match bench/results/ (regenerate with: pnpm figures)\n${diff}`);
      process.exit(1);
    }
    console.log('README.md figures match bench/results/');
    return;
  }
  if (next !== readme) writeFileSync(README, next);
  console.log(
    next === readme ? 'README.md already up to date' : 'README.md figures regenerated from bench/results/',
  );
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main();
