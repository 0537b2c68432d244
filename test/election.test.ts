/**
 * `coord join` in the lab: real etcd, real netlink, real GARP, three hosts. Every failover is judged by one check
 * (test/lab/evidence.ts): no overlap at all in the exact kernel address events, the expected holders and events,
 * every observer alive at the end, and the client answered before and after the fault — and the client's neighbour
 * entry moved to the new holder's MAC.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Lab,
  assertFencedRemoval,
  doubleReplyProbes,
  failoverGap,
  assertHandover,
  coordTransitions,
  waitFor,
  watchVip,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import {
  assertBuilt,
  COORD_BIN,
  configFileFor,
  coordLog,
  holdersOf,
  startCoord,
  startCoordFromFile,
  writeNodeConfig,
  waitForHolder,
  waitForSingleHolder,
  type JoinOptions,
} from './coord.js';

let lab: Lab;
let running: LabProcess[] = [];
let seq = 0;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, name: 'elect' });
});

afterEach(async () => {
  await Promise.all(running.map((p) => p.stop(3000)));
  running = [];
});

afterAll(async () => {
  await lab?.destroy();
});

/** A fresh cluster name and VIP per test, so tests never see each other's state. */
function scenario(): { cluster: string; vip: string; cidr: string } {
  seq++;
  const vip = lab.freeAddress(seq);
  return { cluster: `t${seq}`, vip, cidr: `${vip}/${lab.subnet.prefix}` };
}

function join(host: LabHost, o: JoinOptions): LabProcess {
  const p = startCoord(lab, host, o);
  running.push(p);
  return p;
}

function byName(name: string): LabHost {
  return lab.host(name);
}

/** Make the client resolve the VIP (so it has a neighbour entry GARP can update). */
async function touchFromClient(vip: string): Promise<void> {
  await lab.exec(lab.client, 'ping', ['-c', '1', '-W', '1', vip], { reject: false });
}

/** Wait until `p` has logged `message` at or after `since` (epoch ms); returns the line's time. */
function logged(p: LabProcess, message: string, since = 0, timeoutMs = 10_000): Promise<number> {
  return waitFor(
    `"${message}" in ${p.name}'s log`,
    async () =>
      (await coordLog(p))
        .filter((l) => l['message'] === message)
        .map((l) => Date.parse(String(l['timestamp'])))
        .find((t) => t >= since),
    { timeoutMs, intervalMs: 50 },
  );
}

describe('coord join (etcd mode)', () => {
  it('fails over after kill -9 and link down of the holder; the client follows the new MAC', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    // The takeover runs on agents that gave back their start-up pages (5 s after start): the code it needs comes
    // back from the page cache (docs/design.md, "Footprint: the runtime's file pages").
    await Promise.all([...procs.values()].map((p) => logged(p, 'released start-up pages of the runtime')));
    // …and that do not wake for the notifications of their own address writes (docs/design.md, "Footprint:
    // the holder's own notifications"); the takeover below must not need them.
    await Promise.all(
      [...procs.values()].map((p) => logged(p, 'own address notifications filtered in the kernel')),
    );
    await touchFromClient(s.vip);
    expect(await lab.clientNeighbourMac(s.vip)).toBe(byName(first).mac);
    const watch = await watchVip(lab, s.vip, { arp: true, icmp: true });
    await watch.answered(first);
    const faultAt = Date.now();
    procs.get(first)?.kill9();
    await lab.faults.linkDown(byName(first));
    const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 5000 });
    await waitFor('client neighbour entry on the new MAC', async () =>
      (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
    );
    await watch.answered(second, faultAt);
    await waitFor('a ping reply from the new holder', () =>
      watch.icmp?.snapshot().some((r) => r.t > faultAt),
    );
    const ev = await watch.stop();
    await lab.faults.linkUp(byName(first));
    // One move: the crashed holder's kernel drops its copy when the lifetime runs out, the new holder adds the VIP
    // after its guard and a quiet wire. Which of the two comes first is not bounded — the kernel's lifetime worker
    // can run late (docs/design.md, "Kernel"), and a copy on a host without carrier is invisible to the wire check
    // and answers nobody — so two holders are judged on the wire for the host whose cable was pulled (a CI run on
    // a loaded machine saw its delete 15 ms after the successor's add).
    assertHandover(ev, {
      initial: first,
      final: second,
      events: [`${first}:del`, `${second}:add`],
      onlyEvents: true,
      faultAt,
      withoutCarrier: { host: first, from: faultAt },
    });
    const newAdd = ev.timeline.events.find((e) => e.host === second && e.op === 'add');
    expect(newAdd!.t - faultAt).toBeLessThan(4000);
  });

  it('on SIGTERM the holder removes the VIP before releasing, and a follower claims at once', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    // Every node must be in the cluster (its view read) before the stop: a node that joins after the release
    // cannot know it was clean and, rightly, waits out the guard.
    for (const p of procs.values()) await logged(p, 'session up');
    await touchFromClient(s.vip);
    const watch = await watchVip(lab, s.vip, { arp: true });
    await watch.answered(first);
    const holder = procs.get(first)!;
    const faultAt = Date.now();
    const exit = await holder.stop(5000);
    const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 3000 });
    await watch.answered(second, faultAt);
    const ev = await watch.stop();
    expect(exit.code).toBe(0);
    assertHandover(ev, {
      initial: first,
      final: second,
      events: [`${first}:del`, `${second}:add`],
      onlyEvents: true,
      faultAt,
    });
    // A clean release, handed straight to the next node in the same etcd write: it waited out no guard.
    const log = await coordLog(procs.get(second)!);
    const elected = log.filter((l) => l.message === 'transition' && l.to === 'leader');
    expect(elected.at(-1)?.reason).toBe('handed-over');
    const oldLog = await coordLog(holder);
    expect(oldLog.find((l) => l.message === 'handed over')?.to).toBe(second);
    const released = oldLog.findIndex((l) => l.message === 'vip released');
    const resigned = oldLog.findIndex((l) => l.message === 'resigned');
    expect(released).toBeGreaterThanOrEqual(0);
    expect(resigned).toBeGreaterThan(released);
    await waitFor('client neighbour entry on the new MAC', async () =>
      (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
    );
  });

  it('coord move hands the group to a named node in one write, whatever the priorities, until it fails or --release', async () => {
    const s = scenario();
    const [h1, h2, h3] = [byName('h1'), byName('h2'), byName('h3')];
    const procs = new Map(
      [
        [h1, 150],
        [h2, 100],
        [h3, 50],
      ].map(([h, priority]) => [
        (h as LabHost).name,
        join(h as LabHost, { cluster: s.cluster, vips: [s.cidr], priority: priority as number }),
      ]),
    );
    await waitForHolder(lab, s.vip, 'h1', 15_000);
    for (const p of procs.values()) await logged(p, 'session up');
    const cli = (args: string[]) =>
      lab.exec(
        h2,
        process.execPath,
        [COORD_BIN, ...args, '--etcd', lab.etcd.endpoints.join(','), '--cluster', s.cluster, '--config', ''],
        {
          reject: false,
          timeoutMs: 20_000,
        },
      );
    await touchFromClient(s.vip);
    const watch = await watchVip(lab, s.vip, { arp: true });
    await watch.answered('h1');
    const movedAt = Date.now();
    const moved = await cli(['move', 'default', '--to', 'h3', '--wait']);
    expect(moved.exitCode, moved.stderr).toBe(0);
    expect(moved.stdout).toMatch(
      /^default moved to h3 in \d+ ms \(from the move to etcd naming h3 the holder; h1 handed it over in one write\)/,
    );
    await watch.answered('h3', movedAt);
    // h1 (priority 150, preemption on) does not take it back.
    await new Promise((r) => setTimeout(r, 1500));
    const ev = await watch.stop();
    assertHandover(ev, {
      initial: 'h1',
      final: 'h3',
      events: ['h1:del', 'h3:add'],
      onlyEvents: true,
      faultAt: movedAt,
    });
    const gap = failoverGap(ev.arp!, { after: movedAt, fromMac: h1.mac, toMac: h3.mac });
    expect(gap.gapMs).toBeDefined();
    // A handover, not a failover: a few tens of ms (README, graceful stop). A bound, not a benchmark: CI machines
    // are loaded.
    expect(gap.gapMs!).toBeLessThanOrEqual(200);
    console.log(
      `coord move h1 → h3: ${gap.gapMs} ms between the last ARP answer from h1 and the first from h3`,
    );
    expect(doubleReplyProbes(ev.arp!)).toEqual([]);
    const st = await cli(['status']);
    expect(st.stdout).toMatch(/default +holder h3 .*MOVED to h3/);
    // The history says why the VIP moved, as each node wrote it.
    const events = await cli(['events', '--group', 'default', '--since', '1m', '--json']);
    const history = events.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { node: string; kind: string; to?: string; reason?: string; at: number });
    const leaderBy = (n: string) =>
      history.filter((e) => e.node === n && e.kind === 'transition' && e.to === 'leader');
    expect(leaderBy('h3').at(-1)?.reason).toBe('handed-over');
    expect(history.filter((e) => e.node === 'h1' && e.kind === 'transition').at(-1)?.reason).toBe(
      'preempted',
    );
    expect(history.some((e) => e.node === 'h3' && e.kind === 'vip-claimed' && e.at >= movedAt)).toBe(true);
    expect(history.map((e) => e.at)).toEqual([...history.map((e) => e.at)].sort((x, y) => x - y));
    expect(st.stdout).toMatch(/h3 +alive +priority default:moved here/);

    // Not to a node that cannot hold it.
    const bad = await cli(['move', 'default', '--to', 'h9']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/h9 is not an alive member of group default/);

    // The target fails (stops): the move is over; after its restart priorities decide (h1 holds, h3 stays out).
    await procs.get('h3')!.stop(5000);
    await waitForHolder(lab, s.vip, 'h1', 5000);
    procs.set('h3', join(h3, { cluster: s.cluster, vips: [s.cidr], priority: 50 }));
    await logged(procs.get('h3')!, 'session up');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await holdersOf(lab, s.vip)).toEqual(['h1']);
    expect((await cli(['status'])).stdout).toMatch(/a move to h3 ended: it restarted/);

    // Move to h2, then --release: h1 (priority 150, preempt) takes it back.
    expect((await cli(['move', 'default', '--to', 'h2', '--wait'])).exitCode).toBe(0);
    expect(await holdersOf(lab, s.vip)).toEqual(['h2']);
    const released = await cli(['move', 'default', '--release']);
    expect(released.stdout).toMatch(/^move of default released/);
    await waitForHolder(lab, s.vip, 'h1', 5000);
  });

  it('coord drill moves the group to the next node and back, timing both gaps from ARP probes', async () => {
    const s = scenario();
    const [h1, h2, h3] = [byName('h1'), byName('h2'), byName('h3')];
    const procs: LabProcess[] = [];
    for (const [h, priority] of [
      [h1, 150],
      [h2, 100],
      [h3, 50],
    ] as const) {
      writeNodeConfig(lab, h, { cluster: s.cluster, vips: [s.cidr], priority });
      const p = startCoordFromFile(lab, h, s.cluster);
      running.push(p);
      procs.push(p);
    }
    await waitForHolder(lab, s.vip, 'h1', 15_000);
    for (const p of procs) await logged(p, 'session up');
    const drill = (h: LabHost, args: string[]) =>
      lab.exec(
        h,
        process.execPath,
        [COORD_BIN, 'drill', 'default', '--config', configFileFor(lab, h, s.cluster), ...args],
        { reject: false, timeoutMs: 40_000 },
      );
    const watch = await watchVip(lab, s.vip, { arp: true });
    await watch.answered('h1');

    // From h3, which holds nothing: the next node by priority is h2, and back to h1. A bound for a loaded CI
    // machine, not a benchmark (a move's gap is tens of ms here).
    const fromH3 = await drill(h3, ['--max-gap', '1s']);
    expect(fromH3.exitCode, fromH3.stdout + fromH3.stderr).toBe(0);
    const line = (from: LabHost, to: LabHost) =>
      new RegExp(
        `${from.name} → ${to.name}: last answer from ${from.mac} at \\+[\\d.]+ ms, first from ${to.mac} at \\+[\\d.]+ ms \\(after the move was written\\): gap [\\d.]+ ms`,
      );
    expect(fromH3.stdout).toMatch(line(h1, h2));
    expect(fromH3.stdout).toMatch(line(h2, h1));
    expect(fromH3.stdout).toMatch(/^ok: default went h1 → h2 → h1 with gaps of [\d.]+ ms and [\d.]+ ms/m);
    console.log(fromH3.stdout.trim());
    // The client's own probes agree: never two MACs on one probe; h1 holds again and no move record is left.
    expect(doubleReplyProbes((await watch.stop()).arp!)).toEqual([]);
    expect(await holdersOf(lab, s.vip)).toEqual(['h1']);
    const cli = (h: LabHost, args: string[]) =>
      lab.exec(h, process.execPath, [COORD_BIN, ...args, '--config', configFileFor(lab, h, s.cluster)], {
        reject: false,
        timeoutMs: 20_000,
      });
    expect((await cli(h2, ['status'])).stdout).not.toMatch(/MOVED/);

    // From the holder itself, through a named node: its own side is read from its interface. The drill refuses a
    // target that may not be elected now, and on a loaded machine h3 may be proving its etcd acks prompt again
    // (the first drill's probes ran on its host): wait until the cluster sees it as a candidate.
    await waitFor(
      'h3 to stand as a candidate',
      async () => {
        const st = JSON.parse((await cli(h2, ['status', '--json'])).stdout) as {
          members: { node: string; candidate: boolean }[];
        };
        return st.members.find((m) => m.node === 'h3')?.candidate === true || undefined;
      },
      { intervalMs: 200 },
    );
    const fromH1 = await drill(h1, ['--to', 'h3', '--json', '--max-gap', '1s']);
    expect(fromH1.exitCode, fromH1.stdout + fromH1.stderr).toBe(0);
    const report = JSON.parse(fromH1.stdout) as {
      ok: boolean;
      steps: {
        from: string;
        to: string;
        fromMac: string;
        toMac: string;
        gapMs: number;
        overlapRounds: number;
      }[];
    };
    expect(report.ok).toBe(true);
    expect(report.steps.map((x) => [x.from, x.to, x.fromMac, x.toMac])).toEqual([
      ['h1', 'h3', h1.mac, h3.mac],
      ['h3', 'h1', h3.mac, h1.mac],
    ]);
    for (const x of report.steps) {
      expect(x.gapMs).toBeGreaterThan(0);
      expect(x.overlapRounds).toBe(0);
    }
    await waitForHolder(lab, s.vip, 'h1', 5000);

    // Not while a move is in effect (the drill would end it), and not to a node that cannot hold the group.
    expect((await cli(h2, ['move', 'default', '--to', 'h2', '--wait'])).exitCode).toBe(0);
    const during = await drill(h3, []);
    expect(during.exitCode).toBe(2);
    expect(during.stderr).toMatch(/a move of default to h2 is in effect/);
    expect((await cli(h2, ['move', 'default', '--release'])).exitCode).toBe(0);
    await waitForHolder(lab, s.vip, 'h1', 5000);
    const nowhere = await drill(h3, ['--to', 'h9']);
    expect(nowhere.exitCode).toBe(2);
    expect(nowhere.stderr).toMatch(/h9 is not an alive member of group default/);
    expect(await holdersOf(lab, s.vip)).toEqual(['h1']);
  });

  it('SIGSTOP of the holder for 2 × TTL: never two holders, and the resumed node does not take it back', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    for (const p of procs.values()) await logged(p, 'session up');
    await touchFromClient(s.vip);
    const watch = await watchVip(lab, s.vip, { arp: true });
    await watch.answered(first);
    const holder = procs.get(first)!;
    const faultAt = Date.now();
    holder.signal('SIGSTOP');
    const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 4000 });
    // The pause lasts 2 × TTL in total (or a bit more).
    await new Promise((r) => setTimeout(r, Math.max(0, faultAt + 2000 - Date.now())));
    const resumedAt = Date.now();
    holder.signal('SIGCONT');
    // Proof that the resumed node runs again: it logs that it is no longer the leader. Then give it time to do
    // something wrong.
    const stepDown = await waitFor(
      'the resumed node to step down',
      async () => coordTransitions(await coordLog(holder), faultAt).find((t) => t.from === 'leader'),
      { timeoutMs: 5000, intervalMs: 50 },
    );
    expect(stepDown.t).toBeGreaterThanOrEqual(resumedAt - 5);
    expect(stepDown.reason).toMatch(/^(fenced|session-lost)$/);
    await new Promise((r) => setTimeout(r, 1000));
    const ev = await watch.stop();
    // One move only: the frozen holder's kernel dropped the VIP (lifetime), the new holder added it, and the
    // resumed node did not add it back.
    assertHandover(ev, {
      initial: first,
      final: second,
      events: [`${first}:del`, `${second}:add`],
      onlyEvents: true,
      faultAt,
    });
    const del = ev.timeline.events.find((e) => e.op === 'del');
    expect(del!.t).toBeLessThan(resumedAt);
    await waitFor('client neighbour entry on the new MAC', async () =>
      (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
    );
  });

  it('a holder cut off from etcd (LAN kept) drops the VIP by its own deadline; one new holder', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    await touchFromClient(s.vip);
    const watch = await watchVip(lab, s.vip, { arp: true });
    await watch.answered(first);
    const cutAt = Date.now();
    await lab.faults.cutFromEtcd(byName(first));
    let second: string;
    try {
      second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 5000 });
      await watch.answered(second, cutAt);
      const ev = await watch.stop();
      assertHandover(ev, {
        initial: first,
        final: second,
        events: [`${first}:del`, `${second}:add`],
        onlyEvents: true,
        faultAt: cutAt,
      });
      // coord removed the VIP itself (its 'vip released' line, reason "fenced…", is written only when the
      // address was still there), by its deadline: last acked keepalive send (before the cut) + TTL − margin
      // (100 ms), so < TTL after the cut. The kernel's copy could not have expired before that: it was refreshed
      // at or after that send, with a 1 s lifetime. Checked on coord's own clock (its log), not an observer's.
      const fenced = assertFencedRemoval(ev, await coordLog(procs.get(first)!), {
        host: first,
        faultAt: cutAt,
        releasedBy: cutAt + 1000,
      });
      console.log(`cut from etcd: ${first} fenced and released the VIP ${fenced.t - cutAt} ms after the cut`);
      await waitFor('client neighbour entry on the new MAC', async () =>
        (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
      );
    } finally {
      await lab.faults.healEtcd(byName(first));
    }
    // After healing, the cut node rejoins as a follower (equal priority: no preemption) and the VIP stays put.
    const healedAt = Date.now();
    const after = await watchVip(lab, s.vip);
    await logged(procs.get(first)!, 'session up', healedAt, 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    assertHandover(await after.stop(), { initial: second, final: second, events: [], onlyEvents: true });
  });

  it('a higher-priority node that joins preempts with a clean handover', async () => {
    const s = scenario();
    join(byName('h2'), { cluster: s.cluster, vips: [s.cidr], priority: 100 });
    join(byName('h3'), { cluster: s.cluster, vips: [s.cidr], priority: 50 });
    // h3 may win first if it starts sooner; h2 then preempts it. Wait for the settled state.
    await waitForHolder(lab, s.vip, 'h2');
    await touchFromClient(s.vip);
    const watch = await watchVip(lab, s.vip, { arp: true });
    await watch.answered('h2');
    const joinedAt = Date.now();
    const h1 = join(byName('h1'), { cluster: s.cluster, vips: [s.cidr], priority: 200 });
    await waitForSingleHolder(lab, s.vip, { not: 'h2', timeoutMs: 5000 });
    await watch.answered('h1', joinedAt);
    const ev = await watch.stop();
    assertHandover(ev, {
      initial: 'h2',
      final: 'h1',
      events: ['h2:del', 'h1:add'],
      onlyEvents: true,
      faultAt: joinedAt,
    });
    const [del, add] = ev.timeline.events;
    expect(add!.t - del!.t).toBeLessThan(800);
    // Clean: h2 released first and handed the group to h1 in the same write, so h1 waited out no guard.
    const elected = (await coordLog(h1)).filter((l) => l.message === 'transition' && l.to === 'leader');
    expect(elected.at(-1)?.reason).toBe('handed-over');
  });

  it('with --no-preempt, a higher-priority node that joins leaves the holder alone', async () => {
    const s = scenario();
    join(byName('h2'), { cluster: s.cluster, vips: [s.cidr], priority: 100 });
    expect(await waitForSingleHolder(lab, s.vip)).toBe('h2');
    const watch = await watchVip(lab, s.vip);
    const late = join(byName('h1'), { cluster: s.cluster, vips: [s.cidr], priority: 200, preempt: false });
    await logged(late, 'session up');
    await new Promise((r) => setTimeout(r, 2000));
    assertHandover(await watch.stop(), { initial: 'h2', final: 'h2', events: [], onlyEvents: true });
  });

  it('a restarting agent removes a stale VIP left on its interface before anything else', async () => {
    const s = scenario();
    join(byName('h1'), { cluster: s.cluster, vips: [s.cidr], priority: 200 });
    expect(await waitForSingleHolder(lab, s.vip)).toBe('h1');
    // What a killed agent leaves behind when no lifetime was set: a permanent copy of the VIP.
    await lab.exec(byName('h3'), 'ip', ['addr', 'add', s.cidr, 'dev', 'eth0']);
    expect(await holdersOf(lab, s.vip)).toEqual(['h1', 'h3']);
    const p = join(byName('h3'), { cluster: s.cluster, vips: [s.cidr], priority: 50 });
    await waitFor('h3 to drop the stale VIP', async () =>
      (await holdersOf(lab, s.vip)).join() === 'h1' ? true : undefined,
    );
    // The session must come up for "before anything else" to mean something.
    await logged(p, 'session up');
    const log = await coordLog(p);
    const removed = log.findIndex((l) => l.message === 'stale vip removed at start');
    const session = log.findIndex((l) => l.message === 'session up');
    expect(removed).toBeGreaterThanOrEqual(0);
    expect(session).toBeGreaterThan(removed);
  });
});
