/**
 * `coord join` in the lab: real etcd, real netlink, real GARP, three hosts. Every failover test asserts the
 * invariant the project exists for — zero 20 ms samples with two holders — and that the client's neighbour
 * entry moved to the new holder's MAC.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Lab,
  doubleHolderSamples,
  waitFor,
  type LabHost,
  type LabProcess,
  type Timeline,
} from './lab/index.js';
import {
  assertBuilt,
  coordLog,
  holdersOf,
  startCoord,
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

function expectNoDoubleHolder(t: Timeline): void {
  const doubles = doubleHolderSamples(t);
  expect(doubles, `samples with two holders: ${JSON.stringify(doubles.slice(0, 3))}`).toEqual([]);
  expect(t.samples.length).toBeGreaterThan(10);
}

describe('coord join (etcd mode)', () => {
  it('fails over after kill -9 and link down of the holder; the client follows the new MAC', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    await touchFromClient(s.vip);
    expect(await lab.clientNeighbourMac(s.vip)).toBe(byName(first).mac);
    const sampler = await lab.sampler(s.vip, { intervalMs: 20 });
    const icmp = await lab.icmpProber(s.vip, { intervalMs: 10 });
    const faultAt = Date.now();
    procs.get(first)?.kill9();
    await lab.faults.linkDown(byName(first));
    const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 5000 });
    await waitFor('client neighbour entry on the new MAC', async () =>
      (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
    );
    const ping = await icmp.stop();
    const timeline = await sampler.stop();
    await lab.faults.linkUp(byName(first));
    expectNoDoubleHolder(timeline);
    // The crashed holder lost the VIP by itself (kernel lifetime), before the new holder added it.
    const oldDel = timeline.events.find((e) => e.host === first && e.op === 'del');
    const newAdd = timeline.events.find((e) => e.host === second && e.op === 'add');
    expect(oldDel).toBeDefined();
    expect(newAdd).toBeDefined();
    expect(oldDel!.t).toBeLessThanOrEqual(newAdd!.t);
    // The client got answers again from the new holder.
    expect(ping.replies.some((r) => r.t > (newAdd?.t ?? Infinity))).toBe(true);
    expect(newAdd!.t - faultAt).toBeLessThan(4000);
  });

  it('on SIGTERM the holder removes the VIP before releasing, and a follower claims at once', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    // Every node must be in the cluster (its view read) before the stop: a node that joins after the release
    // cannot know it was clean and, rightly, waits out the guard.
    for (const p of procs.values()) {
      await waitFor('every node to join', async () =>
        (await p.output()).includes('"session up"') ? true : undefined,
      );
    }
    await touchFromClient(s.vip);
    const sampler = await lab.sampler(s.vip, { intervalMs: 20 });
    const holder = procs.get(first)!;
    const exit = await holder.stop(5000);
    const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 3000 });
    await new Promise((r) => setTimeout(r, 300)); // keep sampling after a (fast) handover
    const timeline = await sampler.stop();
    expect(exit.code).toBe(0);
    expectNoDoubleHolder(timeline);
    const del = timeline.events.find((e) => e.host === first && e.op === 'del');
    const add = timeline.events.find((e) => e.host === second && e.op === 'add');
    expect(del!.t).toBeLessThanOrEqual(add!.t);
    // A clean release: the next holder did not wait out a takeover guard.
    const log = await coordLog(procs.get(second)!);
    const elected = log.filter((l) => l.message === 'transition' && l.to === 'leader');
    expect(elected.at(-1)?.reason).toBe('elected');
    const oldLog = await coordLog(holder);
    const released = oldLog.findIndex((l) => l.message === 'vip released');
    const resigned = oldLog.findIndex((l) => l.message === 'resigned');
    expect(released).toBeGreaterThanOrEqual(0);
    expect(resigned).toBeGreaterThan(released);
    await waitFor('client neighbour entry on the new MAC', async () =>
      (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
    );
  });

  it('SIGSTOP of the holder for 2 × TTL: never two holders, and the resumed node does not take it back', async () => {
    const s = scenario();
    const procs = new Map(lab.hosts.map((h) => [h.name, join(h, { cluster: s.cluster, vips: [s.cidr] })]));
    const first = await waitForSingleHolder(lab, s.vip);
    // Every node must be in the cluster (its view read) before the stop: a node that joins after the release
    // cannot know it was clean and, rightly, waits out the guard.
    for (const p of procs.values()) {
      await waitFor('every node to join', async () =>
        (await p.output()).includes('"session up"') ? true : undefined,
      );
    }
    await touchFromClient(s.vip);
    const sampler = await lab.sampler(s.vip, { intervalMs: 20 });
    const holder = procs.get(first)!;
    holder.signal('SIGSTOP');
    const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 4000 });
    await new Promise((r) => setTimeout(r, 2000 - 0)); // the pause lasts 2 × TTL in total (or a bit more)
    holder.signal('SIGCONT');
    // Give the resumed node time to do something wrong.
    await new Promise((r) => setTimeout(r, 1500));
    const timeline = await sampler.stop();
    expectNoDoubleHolder(timeline);
    expect(await holdersOf(lab, s.vip)).toEqual([second]);
    const log = await coordLog(holder);
    const lastLeaderExit = log.filter((l) => l.message === 'transition' && l.from === 'leader').at(-1);
    expect(String(lastLeaderExit?.reason)).toMatch(/^(fenced|session-lost)$/);
    await waitFor('client neighbour entry on the new MAC', async () =>
      (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
    );
  });

  it('a holder cut off from etcd (LAN kept) drops the VIP by its own deadline; one new holder', async () => {
    const s = scenario();
    lab.hosts.forEach((h) => join(h, { cluster: s.cluster, vips: [s.cidr] }));
    const first = await waitForSingleHolder(lab, s.vip);
    await touchFromClient(s.vip);
    const sampler = await lab.sampler(s.vip, { intervalMs: 20 });
    const cutAt = Date.now();
    await lab.faults.cutFromEtcd(byName(first));
    try {
      const second = await waitForSingleHolder(lab, s.vip, { not: first, timeoutMs: 5000 });
      const timeline = await sampler.stop();
      expectNoDoubleHolder(timeline);
      const del = timeline.events.find((e) => e.host === first && e.op === 'del');
      expect(del).toBeDefined();
      // Deadline = last acked keepalive send + TTL − margin: under 1 s after the cut, plus slack for a loaded CI machine.
      expect(del!.t - cutAt).toBeLessThan(1600);
      expect(second).not.toBe(first);
      await waitFor('client neighbour entry on the new MAC', async () =>
        (await lab.clientNeighbourMac(s.vip)) === byName(second).mac ? true : undefined,
      );
    } finally {
      await lab.faults.healEtcd(byName(first));
    }
    // After healing, the cut node rejoins as a follower (equal priority: no preemption) and the VIP stays put.
    await new Promise((r) => setTimeout(r, 2000));
    const after = await holdersOf(lab, s.vip);
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(first);
  });

  it('a higher-priority node that joins preempts with a clean handover', async () => {
    const s = scenario();
    join(byName('h2'), { cluster: s.cluster, vips: [s.cidr], priority: 100 });
    join(byName('h3'), { cluster: s.cluster, vips: [s.cidr], priority: 50 });
    // h3 may win first if it starts sooner; h2 then preempts it. Wait for the settled state.
    await waitForHolder(lab, s.vip, 'h2');
    const sampler = await lab.sampler(s.vip, { intervalMs: 20 });
    const h1 = join(byName('h1'), { cluster: s.cluster, vips: [s.cidr], priority: 200 });
    await waitForSingleHolder(lab, s.vip, { not: 'h2', timeoutMs: 5000 });
    const timeline = await sampler.stop();
    expect(await holdersOf(lab, s.vip)).toEqual(['h1']);
    expectNoDoubleHolder(timeline);
    const del = timeline.events.find((e) => e.host === 'h2' && e.op === 'del');
    const add = timeline.events.find((e) => e.host === 'h1' && e.op === 'add');
    expect(add!.t - del!.t).toBeGreaterThanOrEqual(0);
    expect(add!.t - del!.t).toBeLessThan(800);
    // Clean: h2 released first, so h1 did not wait out a takeover guard.
    const elected = (await coordLog(h1)).filter((l) => l.message === 'transition' && l.to === 'leader');
    expect(elected.at(-1)?.reason).toBe('elected');
  });

  it('with --no-preempt, a higher-priority node that joins leaves the holder alone', async () => {
    const s = scenario();
    join(byName('h2'), { cluster: s.cluster, vips: [s.cidr], priority: 100 });
    expect(await waitForSingleHolder(lab, s.vip)).toBe('h2');
    const late = join(byName('h1'), { cluster: s.cluster, vips: [s.cidr], priority: 200, preempt: false });
    await waitFor('h1 to register', async () =>
      (await late.output()).includes('session up') ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 2000));
    expect(await holdersOf(lab, s.vip)).toEqual(['h2']);
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
    const log = await coordLog(p);
    const removed = log.findIndex((l) => l.message === 'stale vip removed at start');
    const session = log.findIndex((l) => l.message === 'session up');
    expect(removed).toBeGreaterThanOrEqual(0);
    expect(session === -1 || removed < session).toBe(true);
  });
});
