/**
 * The coord demo: three load balancers, one VIP, a client that keeps asking "who has the VIP?" every 10 ms.
 * We crash the holder, pull its cable, bring it back, and stop a holder politely — and show what the client saw.
 * Everything runs in network namespaces on this machine and is torn down at the end.
 */
import { execa } from 'execa';
import { assertBuilt, COORD_BIN, startCoord, waitForHolder, waitForSingleHolder } from './coord.js';
import { describeLab } from './lab/describe.js';
import { doubleHolderMs, failoverGap, Lab, type LabHost, type LabProcess } from './lab/index.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s = '') => console.log(s);
const step = (s: string) => say(`\n${bold(`▶ ${s}`)}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

assertBuilt();
const t0 = performance.now();
step('Building the lab: a switch, three load balancers (h1-h3), a client and a 3-member etcd cluster');
const lab = await Lab.create({ name: 'demo', hosts: 3, etcdMembers: 3 });
try {
  say(describeLab(lab));
  say(`lab up in ${Math.round(performance.now() - t0)} ms`);
  const vip = lab.freeAddress(1);
  const cidr = `${vip}/${lab.subnet.prefix}`;
  const host = (n: string) => lab.host(n);
  const macOwner = new Map(lab.hosts.map((h) => [h.mac, h.name]));
  const who = (mac: string | undefined) =>
    mac === undefined ? '(nobody)' : `${macOwner.get(mac) ?? '?'} (${mac})`;
  const priorities: Record<string, number> = { h1: 150, h2: 100, h3: 50 };
  const procs = new Map<string, LabProcess>();
  const join = (h: LabHost) => {
    procs.set(
      h.name,
      startCoord(lab, h, { cluster: 'demo', vips: [cidr], priority: priorities[h.name] ?? 100 }),
    );
  };
  const status = async () => {
    const r = await execa(
      'ip',
      [
        'netns',
        'exec',
        lab.client.ns,
        process.execPath,
        COORD_BIN,
        'status',
        '--etcd',
        lab.etcd.endpoints.join(','),
        '--cluster',
        'demo',
      ],
      { reject: false },
    );
    say(
      r.stdout
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n'),
    );
  };

  step(`Starting "coord join" on h1 (priority 150), h2 (100) and h3 (50) for VIP ${cidr}, lease TTL 1 s`);
  for (const h of lab.hosts) join(h);
  // The highest priority (h1) ends up holding; a node that started sooner may hold for a moment before that.
  await waitForHolder(lab, vip, 'h1', 15_000);
  const first = 'h1';
  say(`${first} holds ${vip}. What etcd says (coord status, run from the client):`);
  await sleep(2100); // let every node publish its status once
  await status();

  const story = async (
    title: string,
    fault: (holder: string) => Promise<void>,
    after?: () => Promise<void>,
  ) => {
    const holder = await waitForSingleHolder(lab, vip);
    step(title.replace('HOLDER', holder));
    const arp = await lab.arpProber(vip, { intervalMs: 10 });
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    await sleep(300);
    const faultAt = Date.now();
    await fault(holder);
    const next = await waitForSingleHolder(lab, vip, { not: holder, timeoutMs: 8000 });
    await sleep(400);
    const seen = await arp.stop();
    const timeline = await sampler.stop();
    await after?.();
    const gap = failoverGap(seen, { after: faultAt, fromMac: host(holder).mac, toMac: host(next).mac });
    const rel = (t: number | undefined) =>
      t === undefined ? '—' : `${t - faultAt >= 0 ? '+' : ''}${Math.round(t - faultAt)} ms`;
    say(`  the client's ARP probes (every 10 ms), times relative to the event:`);
    say(`    last answer from the old holder   ${rel(gap.lastOld)}  ${who(host(holder).mac)}`);
    say(`    first answer from the new holder  ${rel(gap.firstNew)}  ${who(host(next).mac)}`);
    say(`    ${bold(`gap the client saw: ${gap.gapMs === undefined ? '?' : Math.round(gap.gapMs)} ms`)}`);
    const dead = [...timeline.observers, seen.observer].filter((o) => !o.aliveAtStop || !o.responsive);
    say(
      `  two hosts held the VIP at once for ${bold(`${doubleHolderMs(timeline)} ms`)} (exact, from every host's kernel address events)` +
        (dead.length === 0 ? '' : ` — BUT observers failed: ${dead.map((o) => o.name).join(', ')}`),
    );
    say(`  client's neighbour entry for ${vip} now points at ${who(await lab.clientNeighbourMac(vip))}`);
    return next;
  };

  await story(
    'Crash: kill -9 the holder (HOLDER) and pull its cable. Its lease expires; the kernel drops its copy of the VIP by itself',
    async (h) => {
      procs.get(h)?.kill9();
      await lab.faults.linkDown(host(h));
    },
    async () => {
      // Repair: the crashed node gets its cable back and restarts; with the highest priority it preempts (cleanly).
      const crashed = lab.hosts.find((x) => !(procs.get(x.name)?.running ?? false));
      if (crashed !== undefined) await lab.faults.linkUp(crashed);
    },
  );

  const crashed = lab.hosts.find((x) => !(procs.get(x.name)?.running ?? false));
  if (crashed !== undefined) {
    await story(
      `Repair: ${crashed.name} comes back with priority ${priorities[crashed.name]}; it preempts HOLDER with a clean handover (VIP removed, then released)`,
      () => {
        join(crashed);
        return Promise.resolve();
      },
    );
  }

  await story(
    'Graceful: systemctl stop on the holder (HOLDER): SIGTERM removes the VIP, then releases the lease',
    async (h) => {
      await procs.get(h)?.stop(5000);
    },
  );

  step('Final state');
  await sleep(2100);
  await status();
  step('Tearing down');
} finally {
  await lab.destroy();
  say(`lab torn down; demo took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
