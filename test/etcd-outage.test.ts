/**
 * Riding out etcd outages (`--etcd-outage hold`, docs/design.md "Riding out etcd outages") with the real binary,
 * a real etcd that is killed and started again, real UDP heartbeats between namespaces and a client's ARP prober:
 * with `hold` the VIP keeps answering while etcd is gone; with `fence` it goes, as it always did; a holder cut from
 * etcd alone is refused and replaced; a holder killed during an outage is replaced once etcd is back.
 *
 * Two holders are judged by the address sampler (every kernel's VIP, 20 ms) and by the ARP prober (a probe answered
 * by two MACs); the client-visible gap is the longest silence between ARP replies (10 ms probes).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Lab,
  arpLongestGap,
  doubleHolderMs,
  doubleReplyProbes,
  macsSeen,
  waitFor,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import { assertBuilt, coordLog, startThree, waitForHolder } from './coord.js';

let running: LabProcess[] = [];

function cluster3(lab: Lab, cluster: string, cidr: string, outage: 'hold' | 'fence'): LabProcess[] {
  running = startThree(lab, cluster, cidr, ['--fast-failover', '--etcd-outage', outage]);
  return running;
}

const said = async (p: LabProcess, message: string) =>
  (await coordLog(p)).filter((l) => l.message === message);

const HOLDING = 'etcd unreachable: every other member promised; holding the VIP past the lease';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What a run measured, in the test output (the README quotes these runs). */
const figure = (what: string, value: number | undefined) =>
  console.log(`figure: ${what}: ${value ?? 'none'}`);

afterEach(async () => {
  await Promise.all(running.map((p) => p.stop(3000)));
  running = [];
});

/**
 * With `hold`, the whole etcd cluster killed for `outageMs` and started again: asserts h1 kept the VIP
 * throughout (no address removed anywhere, one MAC, longest gap between ARP answers ≤ 50 ms) and that it said it
 * held on promises; returns h1's process for more checks.
 */
async function heldThroughOutage(
  lab: Lab,
  cluster: string,
  outageMs: number,
  what: string,
): Promise<LabProcess> {
  const vip = lab.freeAddress(1);
  const procs = cluster3(lab, cluster, `${vip}/${lab.subnet.prefix}`, 'hold');
  const [h1] = lab.hosts as [LabHost];
  await waitForHolder(lab, vip, 'h1', 15_000);
  await sleep(1000);
  const sampler = await lab.sampler(vip, { intervalMs: 20 });
  const arp = await lab.arpProber(vip, { intervalMs: 10 });
  const killedAt = Date.now();
  await lab.faults.killEtcd();
  await sleep(outageMs);
  await lab.faults.restartEtcd();
  await sleep(3000);
  const end = Date.now();
  const timeline = await sampler.stop();
  const tl = await arp.stop();
  expect(doubleHolderMs(timeline)).toBe(0);
  expect(doubleReplyProbes(tl)).toEqual([]);
  expect(timeline.events.filter((e) => e.op === 'del')).toEqual([]);
  expect(macsSeen(tl, { from: killedAt })).toEqual([h1.mac]);
  const gap = arpLongestGap(tl, { from: killedAt - 100, to: end });
  figure(`${what}, hold: longest ARP gap`, gap?.gapMs);
  // The VIP never left (no address removed, above): the gap is the client's prober and the kernels being
  // scheduled while three etcd members start on a loaded machine — a figure (README: 15-39 ms here, 60 ms in one
  // CI run), bounded only to catch an interface that went silent.
  expect(gap?.gapMs).toBeLessThanOrEqual(300);
  const h1proc = procs[0] as LabProcess;
  expect(await said(h1proc, HOLDING)).toHaveLength(1);
  return h1proc;
}

describe('etcd outages with one etcd member', () => {
  let lab: Lab;
  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ hosts: 3, name: 'outage1' });
  });
  afterAll(async () => {
    await lab?.destroy();
  });
  afterEach(async () => {
    await lab.faults.restartEtcd();
    for (const h of lab.hosts) await lab.faults.healEtcd(h);
  });

  it('hold: etcd killed and restarted — the VIP answers throughout, one holder, same epoch after', async () => {
    const h1proc = await heldThroughOutage(lab, 'ohold', 4000, 'one etcd member killed 4 s');
    // h1 became leader once (won, or handed the group by a node that held it first) and kept that epoch.
    expect((await said(h1proc, 'transition')).filter((l) => l.to === 'leader')).toHaveLength(1);
    expect((await said(h1proc, 'transition')).filter((l) => l.reason === 'fenced')).toEqual([]);
  });

  it('fence (the default): the same outage takes the VIP away, and a holder returns with etcd', async () => {
    const vip = lab.freeAddress(2);
    cluster3(lab, 'ofence', `${vip}/${lab.subnet.prefix}`, 'fence');
    await waitForHolder(lab, vip, 'h1', 15_000);
    await sleep(1000);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    const killedAt = Date.now();
    await lab.faults.killEtcd();
    await waitFor(
      'no holder',
      async () => ((await lab.addresses(lab.hosts[0] as LabHost)).includes(vip) ? undefined : true),
      {
        timeoutMs: 3000,
        intervalMs: 20,
      },
    );
    expect(Date.now() - killedAt).toBeLessThan(2000);
    await sleep(1000);
    await lab.faults.restartEtcd();
    await waitForHolder(lab, vip, 'h1', 10_000);
    const timeline = await sampler.stop();
    expect(doubleHolderMs(timeline)).toBe(0);
  });

  it('hold: the holder alone cut from etcd — the others reach etcd and refuse, it fences, h2 takes over', async () => {
    const vip = lab.freeAddress(3);
    const procs = cluster3(lab, 'oalone', `${vip}/${lab.subnet.prefix}`, 'hold');
    const [h1] = lab.hosts as [LabHost];
    await waitForHolder(lab, vip, 'h1', 15_000);
    await sleep(1000);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    const arp = await lab.arpProber(vip, { intervalMs: 10 });
    try {
      await lab.faults.cutFromEtcd(h1);
      await waitForHolder(lab, vip, 'h2', 6000);
    } finally {
      await lab.faults.healEtcd(h1);
    }
    await sleep(1000);
    const timeline = await sampler.stop();
    const tl = await arp.stop();
    expect(doubleHolderMs(timeline)).toBe(0);
    expect(doubleReplyProbes(tl)).toEqual([]);
    const h1proc = procs[0] as LabProcess;
    expect(await said(h1proc, HOLDING)).toEqual([]);
    expect((await said(h1proc, 'etcd unreachable: promises missing')).length).toBeGreaterThan(0);
  });

  it('hold: the holder killed during an outage — no holder until etcd returns, then h2 within 2 s', async () => {
    const vip = lab.freeAddress(4);
    const procs = cluster3(lab, 'okill', `${vip}/${lab.subnet.prefix}`, 'hold');
    const [, h2] = lab.hosts as [LabHost, LabHost];
    await waitForHolder(lab, vip, 'h1', 15_000);
    await sleep(1000);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    await lab.faults.killEtcd();
    await sleep(2000);
    procs[0]?.kill9();
    await sleep(3000);
    expect(await lab.addresses(lab.hosts[0] as LabHost)).not.toContain(vip); // its kernel dropped the copy
    for (const h of lab.hosts.slice(1)) expect(await lab.addresses(h)).not.toContain(vip); // nobody elected
    const arp = await lab.arpProber(vip, { intervalMs: 10 });
    await lab.faults.restartEtcd();
    const backAt = Date.now();
    await waitFor('a reply from h2', () => arp.snapshot().some((r) => r.mac === h2.mac), {
      timeoutMs: 8000,
      intervalMs: 10,
    });
    const tookMs = Date.now() - backAt;
    figure('holder killed during the outage: etcd healthy → h2 answers (ms)', tookMs);
    await arp.stop();
    const timeline = await sampler.stop();
    expect(doubleHolderMs(timeline)).toBe(0);
    expect(tookMs).toBeLessThanOrEqual(2000);
  });
});

describe('etcd outages with three etcd members', () => {
  let lab: Lab;
  beforeAll(async () => {
    assertBuilt();
    lab = await Lab.create({ hosts: 3, name: 'outage3', etcdMembers: 3 });
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  it('hold: two of three etcd members killed (quorum lost) for 10 s — the VIP stays or comes back on promises', async () => {
    const vip = lab.freeAddress(2);
    cluster3(lab, 'o3quorum', `${vip}/${lab.subnet.prefix}`, 'hold');
    const [h1] = lab.hosts as [LabHost];
    await waitForHolder(lab, vip, 'h1', 15_000);
    await sleep(1000);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    const arp = await lab.arpProber(vip, { intervalMs: 10 });
    const lostAt = Date.now();
    // The raft leader survives when it can: it renews leases until it notices the lost quorum.
    const leader = (await lab.faults.etcdLeaderIndex()) ?? 0;
    const others = [0, 1, 2].filter((i) => i !== leader);
    for (const i of others) await lab.faults.killEtcdMember(i);
    await sleep(10_000);
    const beforeBack = Date.now();
    await lab.faults.restartEtcd();
    await sleep(3000);
    const timeline = await sampler.stop();
    const tl = await arp.stop();
    expect(doubleHolderMs(timeline)).toBe(0);
    expect(doubleReplyProbes(tl)).toEqual([]);
    expect(macsSeen(tl, { from: lostAt })).toEqual([h1.mac]);
    // Held on promises before etcd came back: answered in the last second of the outage.
    expect(tl.replies.some((r) => r.t > beforeBack - 1000 && r.t < beforeBack)).toBe(true);
    const gap = arpLongestGap(tl, { from: lostAt - 100 });
    figure('two of three etcd members killed 10 s, hold: longest ARP gap', gap?.gapMs);
  });

  it('hold: the whole etcd cluster stopped for 30 s — the VIP answers throughout, one holder', async () => {
    await heldThroughOutage(lab, 'o3hold', 30_000, 'three etcd members stopped 30 s');
  });
});
