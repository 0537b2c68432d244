/**
 * `pnpm soak [--minutes N] [--seed S] [--json FILE] [--rounds N] [--kinds a,b] [--supervisor systemd|none]`: a
 * seeded, randomized fault schedule against a three-node coord cluster in the network-namespace lab, run as the
 * package's unit runs it (`--supervisor none`: as by hand, no `coord fence` after a crash), judged only by external observers
 * (the hosts' kernel address events and the client's ARP probes). Exit status: 0 clean, 1 a violation (two
 * holders, two MACs on one probe, no single holder after a heal, a dead observer), 2 the harness itself failed.
 *
 * Each round: inject (one fault, or two overlapping), hold, heal, wait for one answered holder (≤ 10 s), settle,
 * audit the observers, judge. The table reports time to one holder per fault kind against the targets.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { assertBuilt } from '../coord.js';
import { holderAt, type ArpReply, type ObserverHealth, type Timeline } from '../lab/index.js';
import {
  availability,
  droppedAt,
  judgeRound,
  LIVENESS_BOUND_MS,
  liveness,
  longestSilence,
  overlapMs,
  overlapOrigin,
  overlaps,
  recovery,
  sentAt,
  twoMacStretches,
  twoMacWindows,
  type Liveness,
  type ObserverAudit,
  type Overlap,
  type Recovery,
  type TwoMacWindow,
  type Violation,
} from './check.js';
import {
  ARP_INTERVAL_MS,
  ETCD_TIMING,
  HarnessError,
  INITIAL_PRIORITIES,
  pollUntil,
  RELOAD_PRIORITIES,
  SoakCluster,
  TTL_SEC,
  type InjectedFault,
} from './cluster.js';
import { createRng, parseSeed, randomSeed } from './prng.js';
import { formatTable, formatTotals, FENCE_TARGET_MS, summarize, type RoundSummaryInput } from './report.js';
import { formatStory } from './explain.js';
import { describeFault, ROUND_KINDS, schedule, type RoundKind, type RoundPlan } from './schedule.js';

/** After the heal and one answered holder: no address event for this long before the next round. */
const SETTLE_QUIET_MS = 1500;
/** …but never wait longer than this for the quiet (a flapping cluster still gets its next fault). */
const SETTLE_CAP_MS = 8000;
/** Rough length of a round beyond its faults (recovery, settle, audit), to stop before the budget runs out. */
const ROUND_OVERHEAD_MS = 4000;

/** A run of consecutive probes answered by the same host(s): the client's view of who answered, compressed. */
interface WireRun {
  /** 'h1', or 'h1+h2' while both answered each probe. */
  hosts: string;
  from: number;
  to: number;
  probes: number;
}

interface RoundRecord {
  index: number;
  kind: RoundKind;
  plan: string[];
  startedAt: number;
  endedAt: number;
  holdersBefore: string[];
  holdersAfter: string[];
  priorities: Record<string, number>;
  faults: (Omit<InjectedFault, 'spec'> & { fault: string })[];
  /** The recovery clock's start: the first injection, or quorum's return. */
  origin: number;
  recovery: Recovery;
  /** etcd-cut of the holder: cut → the cut holder's VIP gone. */
  fenceMs: number | undefined;
  overlaps: Overlap[];
  twoMacs: TwoMacWindow[];
  liveness: Liveness;
  observers: ObserverAudit;
  availability: { sent: number; answered: number; ratio: number } | undefined;
  longestSilenceMs: number;
  events: { t: number; host: string; op: 'add' | 'del' }[];
  wire: WireRun[];
  unexpectedExits: { node: string; at: number; code: number | null; signal: string | null }[];
  violations: Violation[];
  harnessError?: string;
  /**
   * Rounds with a violation: what the nodes' coord logged from 1 s before the round to its end, relative to the
   * origin. Explains the violation to a reader; never part of the verdict.
   */
  coordStory?: string[];
}

function wireRuns(replies: readonly ArpReply[], macOwner: ReadonlyMap<string, string>): WireRun[] {
  const bySeq = new Map<number, { t: number; hosts: Set<string> }>();
  for (const r of replies) {
    const e = bySeq.get(r.seq) ?? { t: r.t, hosts: new Set<string>() };
    e.hosts.add(macOwner.get(r.mac) ?? r.mac);
    bySeq.set(r.seq, e);
  }
  const out: WireRun[] = [];
  for (const [, e] of [...bySeq].sort((a, b) => a[0] - b[0])) {
    const hosts = [...e.hosts].sort().join('+');
    const last = out.at(-1);
    if (last?.hosts === hosts) {
      last.to = Math.round(e.t);
      last.probes++;
    } else out.push({ hosts, from: Math.round(e.t), to: Math.round(e.t), probes: 1 });
  }
  return out;
}

function parseKinds(text: string | undefined): RoundKind[] | undefined {
  if (text === undefined) return undefined;
  const kinds = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const k of kinds)
    if (!ROUND_KINDS.includes(k as RoundKind))
      throw new Error(`unknown fault kind "${k}" (known: ${ROUND_KINDS.join(', ')})`);
  return kinds as RoundKind[];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '2' },
      seed: { type: 'string' },
      json: { type: 'string' },
      rounds: { type: 'string' },
      kinds: { type: 'string' },
      'fast-failover': { type: 'boolean', default: false },
      'etcd-outage': { type: 'string', default: 'fence' },
      supervisor: { type: 'string', default: 'systemd' },
    },
  });
  const minutes = Number(values.minutes);
  if (!Number.isFinite(minutes) || minutes <= 0) throw new Error('--minutes must be a positive number');
  const maxRounds = values.rounds === undefined ? Infinity : Number(values.rounds);
  if (!(maxRounds === Infinity || (Number.isInteger(maxRounds) && maxRounds > 0)))
    throw new Error('--rounds must be a positive whole number');
  const seed = values.seed === undefined ? randomSeed() : parseSeed(values.seed);
  const etcdOutage = values['etcd-outage'];
  if (etcdOutage !== 'fence' && etcdOutage !== 'hold') throw new Error('--etcd-outage must be fence or hold');
  const supervisor = values.supervisor;
  if (supervisor !== 'systemd' && supervisor !== 'none')
    throw new Error('--supervisor must be systemd (the unit: coord fence after coord ends) or none');
  const kinds = parseKinds(values.kinds);
  const command = [
    'pnpm soak',
    `--minutes ${values.minutes}`,
    `--seed ${seed}`,
    ...(values.rounds === undefined ? [] : [`--rounds ${values.rounds}`]),
    ...(values.kinds === undefined ? [] : [`--kinds ${values.kinds}`]),
    ...(values['fast-failover'] ? ['--fast-failover'] : []),
    ...(etcdOutage === 'hold' ? ['--etcd-outage hold'] : []),
    ...(supervisor === 'none' ? ['--supervisor none'] : []),
  ].join(' ');
  const t0 = Date.now();
  const jsonPath = resolve(
    values.json ?? `bench-results/soak-${seed}-${new Date(t0).toISOString().replace(/[:.]/g, '-')}.json`,
  );
  assertBuilt();

  const log = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
  log(`seed ${seed}   reproduce: ${command}`);
  const budgetEnd = t0 + minutes * 60_000;
  const records: RoundRecord[] = [];
  let harnessFailure: string | undefined;
  let finalTimeline: Timeline | undefined;
  let finalReplies: ArpReply[] = [];
  /** How each observer ended: every `ip monitor` reported its canary, the prober delivered its final report. */
  let finalObservers: ObserverHealth[] = [];
  let firstRoundAt: number | undefined;
  let lastRoundEnd: number | undefined;
  let probesSentTotal = 0;
  let availabilityTotal: number | undefined;

  const writeJson = (
    done: boolean,
    totals?: {
      twoHolderMs: number;
      twoMacWindows: number;
      availability?: number;
      probesSent: number;
      observersAtEnd: ObserverHealth[];
    },
  ) => {
    const json = {
      tool: 'coord soak',
      seed,
      command,
      done,
      machine: { cpus: cpus().length, node: process.version },
      startedAt: new Date(t0).toISOString(),
      durationSec: Math.round((Date.now() - t0) / 1000),
      config: {
        minutes,
        kinds: kinds ?? ROUND_KINDS,
        fastFailover: values['fast-failover'],
        etcdOutage,
        supervisor,
        ttlSec: TTL_SEC,
        etcd: { members: 3, ...ETCD_TIMING },
        initialPriorities: INITIAL_PRIORITIES,
        reloadPriorities: RELOAD_PRIORITIES,
        arpIntervalMs: ARP_INTERVAL_MS,
        livenessBoundMs: LIVENESS_BOUND_MS,
        settleQuietMs: SETTLE_QUIET_MS,
      },
      lab: { prefix: cluster.lab.prefix, runDir: cluster.lab.runDir, vip: cluster.vip },
      harnessFailure,
      observerSelfTest: cluster.selfTest,
      rounds: records,
      ...(totals === undefined ? {} : { totals }),
    };
    mkdirSync(dirname(jsonPath), { recursive: true });
    writeFileSync(jsonPath, `${JSON.stringify(json, null, 1)}\n`);
  };

  const cluster = await SoakCluster.start(log, {
    fastFailover: values['fast-failover'],
    etcdOutage,
    supervisor,
  });
  try {
    const { lab } = cluster;
    log(`VIP ${cluster.vip}; nodes ${cluster.names.join(', ')}; first holder ${cluster.holders().join()}`);
    await settle(cluster, Date.now());
    const rng = createRng(seed);
    const plans = schedule(rng, {
      nodes: cluster.names,
      etcdMembers: lab.etcd.members.length,
      priorities: RELOAD_PRIORITIES,
      ...(kinds === undefined ? {} : { kinds }),
    });
    for (const plan of plans) {
      if (plan.index > maxRounds) break;
      const length = Math.max(...plan.faults.map((f) => f.atMs + f.holdMs)) + ROUND_OVERHEAD_MS;
      if (Date.now() + length > budgetEnd && plan.index > 1) {
        log(`time budget spent: stopping before round ${plan.index}`);
        break;
      }
      firstRoundAt ??= Date.now();
      const rec = await runRound(cluster, plan, log);
      records.push(rec);
      lastRoundEnd = rec.endedAt;
      writeJson(false);
      if (rec.harnessError !== undefined) {
        harnessFailure = `round ${rec.index}: ${rec.harnessError}`;
        break;
      }
      if (rec.violations.some((v) => v.kind === 'dead-observer')) {
        log('an observer died: nothing after this could be trusted, stopping');
        break;
      }
    }
  } catch (e) {
    harnessFailure = e instanceof Error ? (e.stack ?? e.message) : String(e);
    log(`harness failed: ${harnessFailure}`);
  } finally {
    try {
      await cluster.stopNodes();
      // The prober first, then the sampler: its canary check comes after the measurement, never inside it.
      const arp = await cluster.arp.stop();
      finalTimeline = await cluster.sampler.stop();
      finalReplies = arp.replies;
      finalObservers = [...finalTimeline.observers, arp.observer];
      if (firstRoundAt !== undefined && lastRoundEnd !== undefined) {
        // The final report has every probe's send time: as progress reports, exact.
        const everyProbe = arp.probes.map((t, i) => ({ t, sent: i + 1 }));
        const a = availability(arp.replies, everyProbe, { from: firstRoundAt, to: lastRoundEnd });
        availabilityTotal = a?.ratio;
        probesSentTotal = a?.sent ?? 0;
      }
    } finally {
      await cluster.destroy();
    }
  }

  if (finalTimeline === undefined) {
    console.log(`\nharness failure: the sampler did not stop cleanly; ${harnessFailure ?? ''}`);
    return 2;
  }
  // Overall figures over the whole observed run (also outside rounds: the initial claim, the final stop), after
  // the observers' self-test (which made two holders on purpose).
  const after = { from: cluster.selfTest.to + 1, to: finalTimeline.end };
  const allOverlaps = overlaps(finalTimeline, after).filter((o) => o.ms > 0);
  const twoHolderMs = overlapMs(allOverlaps);
  const allTwoMacs = twoMacWindows(finalReplies, cluster.macOwner, after);
  // An observer that stopped working makes everything it reported worthless, the last round included.
  const deadAtEnd = finalObservers.filter((o) => !o.aliveAtStop || !o.responsive);
  writeJson(true, {
    twoHolderMs,
    twoMacWindows: allTwoMacs.length,
    ...(availabilityTotal === undefined ? {} : { availability: availabilityTotal }),
    probesSent: probesSentTotal,
    observersAtEnd: finalObservers,
  });

  const summaryInput: RoundSummaryInput[] = records.map((r) => ({
    index: r.index,
    kind: r.kind,
    faults: r.plan,
    recoveryMs: r.recovery.ms,
    outageMs: r.recovery.outageMs,
    fenceMs: r.fenceMs,
    harnessError: r.harnessError,
    violations: r.violations,
  }));
  const violations = records.reduce((s, r) => s + r.violations.length, 0);
  console.log('');
  console.log(formatTable(summarize(summaryInput)));
  console.log('');
  console.log(
    formatTotals({
      seed,
      command,
      rounds: records.length,
      durationSec: Math.round((Date.now() - t0) / 1000),
      twoHolderMs,
      twoMacWindows: allTwoMacs.length,
      availability: availabilityTotal,
      probesSent: probesSentTotal,
      violations,
      harnessErrors: records.filter((r) => r.harnessError !== undefined).length,
    }),
  );
  const bad = records.filter((r) => r.violations.length > 0);
  if (bad.length > 0 || allOverlaps.length > 0 || allTwoMacs.length > 0 || deadAtEnd.length > 0) {
    console.log('\nviolations:');
    for (const r of bad)
      for (const v of r.violations)
        console.log(`  round ${r.index} (${r.plan.join(' + ')}): ${v.kind}: ${v.detail}`);
    // Outside any round (the initial election, the final stop) counts too.
    const inRounds = (t: number) => records.some((r) => t >= r.startedAt && t <= r.endedAt);
    for (const o of allOverlaps.filter((x) => !inRounds(x.from)))
      console.log(`  outside rounds: two-holders: ${o.hosts.join('+')} for ${o.ms} ms at ${o.from}`);
    for (const o of deadAtEnd)
      console.log(`  at the end: dead-observer: ${o.name} (${o.detail ?? 'not working'})`);
    for (const w of twoMacStretches(allTwoMacs.filter((x) => !inRounds(x.t))))
      console.log(
        `  outside rounds: two-macs: ${w.probes} probe(s) from seq ${w.fromSeq} answered by ${w.hosts.join(' and ')}`,
      );
  }
  const exits = records.flatMap((r) => r.unexpectedExits.map((u) => ({ round: r.index, ...u })));
  for (const u of exits)
    console.log(
      `note: round ${u.round}: coord on ${u.node} exited by itself (code ${u.code}, signal ${u.signal})`,
    );
  if (harnessFailure !== undefined) console.log(`\nharness failure: ${harnessFailure}`);
  console.log(`\nwrote ${jsonPath}`);
  if (violations > 0 || allOverlaps.length > 0 || allTwoMacs.length > 0 || deadAtEnd.length > 0) return 1;
  if (harnessFailure !== undefined) return 2;
  return 0;
}

/**
 * Wait until exactly one host holds the VIP and answers the client (a reply at or after `from`), every node that
 * should run is up, and nothing has changed for SETTLE_QUIET_MS since then (or since the last address event).
 * Gives up waiting for the answered holder at `from + LIVENESS_BOUND_MS`, and for the rest SETTLE_CAP_MS later.
 */
async function settle(c: SoakCluster, from: number): Promise<void> {
  const answered = () => {
    const h = c.holders();
    if (h.length !== 1 || h[0] === undefined) return false;
    const mac = c.host(h[0]).mac;
    return c.arp.repliesSince(Math.max(from, Date.now() - 100)).some((r) => r.mac === mac);
  };
  const gotOne = await pollUntil(answered, from + LIVENESS_BOUND_MS);
  if (!gotOne) return;
  const cap = Date.now() + SETTLE_CAP_MS;
  while (!(await c.nodesUp()) && Date.now() < cap) await sleep(100);
  const upAt = Date.now();
  await pollUntil(() => {
    const quietSince = Math.max(upAt, c.sampler.lastEvent()?.t ?? 0);
    return Date.now() - quietSince >= SETTLE_QUIET_MS && answered();
  }, cap);
}

async function auditObservers(c: SoakCluster, from: number, to: number): Promise<ObserverAudit> {
  const deadMonitors = c.sampler.deadMonitors();
  // The sampler's state must match the kernel's: retried, since an event may be in flight between the two reads.
  let samplerMismatch: ObserverAudit['samplerMismatch'] = [];
  for (let attempt = 0; attempt < 4; attempt++) {
    samplerMismatch = [];
    for (const name of c.names) {
      const kernel = (await c.lab.addresses(c.host(name))).includes(c.vip);
      const sampler = c.holders().includes(name);
      if (kernel !== sampler) samplerMismatch.push({ host: name, sampler, kernel });
    }
    if (samplerMismatch.length === 0) break;
    await sleep(150);
  }
  const ticks = c.arp.ticks();
  const a = sentAt(ticks, from) ?? 0;
  const b = sentAt(ticks, to) ?? 0;
  return {
    deadMonitors,
    samplerMismatch,
    proberRunning: c.arp.running(),
    probesSent: Math.round(b - a),
    probesExpected: (to - from) / ARP_INTERVAL_MS,
  };
}

async function runRound(c: SoakCluster, plan: RoundPlan, log: (s: string) => void): Promise<RoundRecord> {
  const startedAt = Date.now();
  const holdersBefore = c.holders();
  const priorities = c.priorities();
  const planText = plan.faults.map(describeFault);
  log(`round ${plan.index}: ${planText.join(' + ')} (holder ${holdersBefore.join(',') || 'none'})`);
  let harnessError: string | undefined;
  const done: InjectedFault[] = [];
  await Promise.all(
    plan.faults.map(async (f) => {
      await sleep(Math.max(0, startedAt + f.atMs - Date.now()));
      try {
        done.push(await c.runFault(f));
      } catch (e) {
        harnessError ??= e instanceof HarnessError || e instanceof Error ? e.message : String(e);
      }
    }),
  );
  if (harnessError !== undefined) {
    log(`  harness error: ${harnessError}; repairing the lab`);
    await c.repairAll().catch((e: unknown) => {
      harnessError += `; repair failed: ${String(e)}`;
    });
  }
  done.sort((x, y) => x.injectedAt - y.injectedAt);
  const healedAt = Math.max(startedAt, ...done.map((d) => d.healedAt));
  await settle(c, healedAt);
  const unexpected = c.reapUnexpected();
  const endedAt = Date.now();
  const observers = await auditObservers(c, startedAt, endedAt);

  // Judge from the observers only.
  const tl = c.sampler.snapshot();
  const replies = c.arp.repliesSince(startedAt).filter((r) => r.t <= endedAt);
  const w = { from: startedAt, to: endedAt };
  const quorumBack = done.find((d) => d.quorumBackAt !== undefined)?.quorumBackAt;
  const firstInjection = done[0]?.injectedAt ?? startedAt;
  const origin = quorumBack ?? firstInjection;
  // Loss towards etcd leaves the holder serving until it bites (if it does): timed from the VIP leaving.
  const bites = plan.kind === 'etcd-loss';
  let rec = recovery(tl, replies, c.macOwner, origin, endedAt, healedAt, { bites });
  // Two faults: timed from the one that hit the holder (check.ts), not from one on another node seconds before.
  const hit =
    plan.kind === 'overlap' && quorumBack === undefined && rec.leftAt !== undefined && !rec.fromLeaving
      ? overlapOrigin(
          done.map((d) => ({ ...d, kind: d.spec.kind })),
          rec.leftAt,
        )
      : undefined;
  if (hit !== undefined && hit > origin && rec.backAt !== undefined)
    rec = { ...rec, ms: rec.backAt - hit, fromLeaving: hit === rec.leftAt };
  let fenceMs: number | undefined;
  for (const d of done) {
    if (d.spec.kind !== 'etcd-cut' || d.target === undefined) continue;
    if (holderAt(tl, d.injectedAt).join() !== d.target) continue;
    const dropped = droppedAt(tl, d.target, d.injectedAt);
    if (dropped !== undefined && dropped <= d.healedAt)
      fenceMs = Math.max(fenceMs ?? 0, dropped - d.injectedAt);
    else if (d.healedAt - d.injectedAt >= FENCE_TARGET_MS)
      fenceMs = Math.max(fenceMs ?? 0, d.healedAt - d.injectedAt);
  }
  const live = liveness(tl, replies, c.macOwner, healedAt, endedAt);
  const roundOverlaps = overlaps(tl, w);
  const twoMacs = twoMacWindows(replies, c.macOwner, w);
  const violations = judgeRound({ overlaps: roundOverlaps, twoMacs, liveness: live, observers });
  const record: RoundRecord = {
    index: plan.index,
    kind: plan.kind,
    plan: planText,
    startedAt,
    endedAt,
    holdersBefore,
    holdersAfter: c.holders(),
    priorities,
    faults: done.map(({ spec, ...rest }) => ({ fault: describeFault(spec), ...rest })),
    origin: hit !== undefined && hit > origin ? hit : origin,
    recovery: rec,
    fenceMs,
    overlaps: roundOverlaps,
    twoMacs,
    liveness: live,
    observers,
    availability: availability(replies, c.arp.ticks(), w),
    longestSilenceMs: Math.round(longestSilence(replies, w)),
    events: tl.events.filter((e) => e.t >= startedAt && e.t <= endedAt),
    wire: wireRuns(replies, c.macOwner),
    unexpectedExits: unexpected.map((u) => ({
      node: u.node,
      at: u.at,
      code: u.exit.code,
      signal: u.exit.signal,
    })),
    violations,
    ...(harnessError === undefined ? {} : { harnessError }),
  };
  if (violations.length > 0)
    record.coordStory = formatStory(await c.story({ from: startedAt - 1000, to: endedAt }), origin);
  const targets = done.map((d) => `${d.spec.kind}→${d.target ?? 'etcd'}`).join(', ');
  const notes = done.flatMap((d) => d.notes);
  log(
    `  ${targets}: one holder after ${rec.ms === undefined ? 'NEVER' : `${Math.round(rec.ms)} ms`}` +
      (rec.afterHeal
        ? ' (it left after the heal)'
        : rec.fromLeaving
          ? ' (from when it left)'
          : quorumBack === undefined
            ? ''
            : ' (from quorum return)') +
      (fenceMs === undefined ? '' : `, fenced in ${Math.round(fenceMs)} ms`) +
      `, silence ${record.longestSilenceMs} ms, holder now ${record.holdersAfter.join(',') || 'none'}` +
      (violations.length === 0
        ? ''
        : `  VIOLATIONS: ${[...new Set(violations.map((v) => v.kind))]
            .map((k) => `${violations.filter((v) => v.kind === k).length}× ${k}`)
            .join(', ')}`),
  );
  for (const v of violations) log(`  ${v.kind}: ${v.detail}`);
  if (violations.length > 0) {
    const rel = (t: number) => `${t >= origin ? '+' : ''}${Math.round(t - origin)}`;
    log(
      `  kernel events (ms from the injection): ${record.events.map((e) => `${rel(e.t)} ${e.host} ${e.op}`).join(', ')}`,
    );
    log(
      `  client's view: ${record.wire
        .filter((r) => r.to >= origin - 500)
        .map((r) => `${r.hosts} ${rel(r.from)}..${rel(r.to)} (${r.probes})`)
        .join(', ')}`,
    );
    log("  coord's own account (its logs; explains, never judges):");
    for (const line of record.coordStory ?? []) log(`    ${line}`);
  }
  for (const n of notes) log(`  note: ${n}`);
  for (const u of unexpected) log(`  note: coord on ${u.node} exited by itself: ${JSON.stringify(u.exit)}`);
  return record;
}

try {
  process.exitCode = await main();
} catch (e) {
  console.error(e);
  process.exitCode = 2;
}
