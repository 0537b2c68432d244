/**
 * The lab proves itself before anything is proven in it: every fault must do exactly what it says, and every
 * observer must see exactly what happened, or a passing coord test means nothing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import {
  doubleReplyProbes,
  handoverProblems,
  Lab,
  macsSeen,
  sweepStale,
  waitFor,
  watchVip,
  type LabHost,
} from './lab/index.js';

const HOLD_LAB = fileURLToPath(new URL('./lab/bin/hold-lab.ts', import.meta.url));

let lab: Lab;
let h1: LabHost;
let h2: LabHost;
let h3: LabHost;

function namespacesNow(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

const addVip = (host: LabHost, vip: string) =>
  lab.exec(host, 'ip', ['addr', 'add', `${vip}/32`, 'dev', 'eth0']);
const delVip = (host: LabHost, vip: string) =>
  lab.exec(host, 'ip', ['addr', 'del', `${vip}/32`, 'dev', 'eth0']);

beforeAll(async () => {
  const t0 = performance.now();
  lab = await Lab.create({ name: 'selftest', hosts: 3, etcdMembers: 3 });
  const ms = Math.round(performance.now() - t0);
  console.log(`lab ${lab.prefix} (${lab.subnet.base}/24, 3 hosts, 3 etcd members) up in ${ms} ms`);
  [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
  expect(ms).toBeLessThan(15_000);
});

afterAll(async () => {
  await lab.destroy();
});

describe('lab topology', () => {
  it('gives every lab its own prefix, subnet and namespaces with one eth0 each', async () => {
    expect(lab.prefix).toMatch(/^coordlab-selftest-[0-9a-f]{6}$/);
    expect(lab.subnet.base).toMatch(/^10\.(2[0-4]\d|250)\.\d+\.0$/);
    const present = new Set(namespacesNow());
    for (const ns of lab.namespaces) expect(present.has(ns)).toBe(true);
    expect(await lab.addresses(h1)).toContain(h1.ip);
    expect(lab.freeAddress(3)).toBe(lab.subnet.base.replace(/\.0$/, '.203'));
    const sysctl = await lab.exec(h2, 'sysctl', [
      '-n',
      'net.ipv4.ip_nonlocal_bind',
      'net.ipv4.conf.eth0.arp_accept',
    ]);
    expect(sysctl.stdout.split('\n')).toEqual(['1', '1']);
    // Nothing of the lab lives in the root namespace.
    const rootLinks = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
    expect(rootLinks).not.toContain('p-h1');
  });

  it('runs a healthy etcd cluster reachable from every host', async () => {
    await lab.etcdctl(h1, ['put', 'lab/selftest', 'hello']);
    const got = await lab.etcdctl(h3, ['get', 'lab/selftest', '--print-value-only']);
    expect(got.stdout).toBe('hello');
    expect(lab.etcd.endpoints).toHaveLength(3);
    expect(await lab.faults.etcdLeaderIndex()).toBeTypeOf('number');
  });
});

describe('observers', () => {
  it('the sampler sees an address added and removed by hand, on the right host, in order', async () => {
    const vip = lab.freeAddress(1);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    const tAdd = Date.now();
    await addVip(h2, vip);
    await waitFor('sampler sees h2', () => lab.addresses(h2).then((a) => a.includes(vip)));
    await new Promise((r) => setTimeout(r, 100));
    await delVip(h2, vip);
    const tDel = Date.now();
    await new Promise((r) => setTimeout(r, 60));
    const tl = await sampler.stop();
    expect(tl.initial).toEqual([]);
    expect(tl.events.map((e) => `${e.host}:${e.op}`)).toEqual(['h2:add', 'h2:del']);
    expect(tl.events[0]?.t).toBeGreaterThanOrEqual(tAdd);
    expect(tl.events[1]?.t).toBeLessThanOrEqual(tDel + 50);
    expect(tl.samples.some((s) => s.holders.join() === 'h2')).toBe(true);
    expect(tl.samples.at(-1)?.holders).toEqual([]);
  });

  it('the ARP prober records the holder MAC, and two MACs when two hosts hold the address', async () => {
    const vip = lab.freeAddress(2);
    await addVip(h1, vip);
    const arp = await lab.arpProber(vip, { intervalMs: 10 });
    await waitFor('a reply from h1', () => arp.snapshot().some((r) => r.mac === h1.mac));
    const tBoth = Date.now();
    await addVip(h3, vip);
    await waitFor('a reply from h3', () => arp.snapshot().some((r) => r.mac === h3.mac));
    await new Promise((r) => setTimeout(r, 100));
    const tl = await arp.stop();
    await delVip(h1, vip);
    await delVip(h3, vip);
    expect(macsSeen(tl, { to: tBoth })).toEqual([h1.mac]);
    expect(macsSeen(tl, { from: tBoth })).toEqual([h1.mac, h3.mac].sort());
    // The same broadcast probe answered by both hosts: the signature of a split brain on the wire.
    expect(doubleReplyProbes(tl).length).toBeGreaterThan(3);
    expect(tl.sent).toBeGreaterThan(10);
    expect(await lab.clientNeighbourMac(vip)).toMatch(/^02:c0:/);
  });

  it('the ICMP prober sees replies every interval while someone holds the address', async () => {
    const vip = lab.freeAddress(3);
    await addVip(h2, vip);
    const icmp = await lab.icmpProber(vip, { intervalMs: 10 });
    await waitFor('50 ping replies', () => icmp.snapshot().length >= 50, { timeoutMs: 5000 });
    const tl = await icmp.stop();
    await delVip(h2, vip);
    const span = (tl.replies.at(-1)?.t ?? 0) - (tl.replies[0]?.t ?? 0);
    expect(span / tl.replies.length).toBeLessThan(20);
    expect(Math.abs((tl.replies[0]?.t ?? 0) - Date.now())).toBeLessThan(10_000);
    expect(tl.observer).toMatchObject({ aliveAtStop: true, responsive: true });
  });

  it('observers report whether they were alive at the end; a dead one is not taken as evidence', async () => {
    const vip = lab.freeAddress(7);
    await addVip(h2, vip);
    const watch = await watchVip(lab, vip, { arp: true });
    await waitFor('a reply from h2', () => watch.arp?.snapshot().some((r) => r.mac === h2.mac));
    const faultAt = Date.now();
    await delVip(h2, vip);
    await addVip(h3, vip);
    await waitFor('a reply from h3', () => watch.arp?.snapshot().some((r) => r.mac === h3.mac));
    // `ip monitor` stamps h3's add when it reads it, which can be after h3's first ARP reply was recorded: let a
    // few more replies come so one falls after the stamp (the checker counts answers after the final add).
    await new Promise((r) => setTimeout(r, 200));
    const live = await watch.stop();
    expect(live.timeline.observers.map((o) => o.name)).toEqual([
      'ip monitor h1',
      'ip monitor h2',
      'ip monitor h3',
    ]);
    const handover = { initial: 'h2', final: 'h3', events: ['h2:del', 'h3:add'], onlyEvents: true, faultAt };
    expect(handoverProblems(live, handover)).toEqual([]);

    // The same handover, watched by a sampler one of whose monitors died and a prober that died: refused.
    const sampler = await lab.sampler(vip);
    const arp = await lab.arpProber(vip);
    await waitFor('a reply from h3', () => arp.snapshot().some((r) => r.mac === h3.mac));
    process.kill(sampler.pids.get('h3') ?? -1, 'SIGKILL');
    process.kill(arp.pid, 'SIGKILL');
    const faultAt2 = Date.now();
    await delVip(h3, vip); // unseen: the monitor of h3 is dead
    await addVip(h2, vip);
    await new Promise((r) => setTimeout(r, 100));
    const dead = { timeline: await sampler.stop(), arp: await arp.stop(), macs: live.macs };
    await delVip(h2, vip);
    expect(dead.timeline.observers.find((o) => o.name === 'ip monitor h3')).toMatchObject({
      aliveAtStop: false,
      responsive: false,
    });
    expect(dead.arp.observer).toMatchObject({ aliveAtStop: false, responsive: false });
    const problems = handoverProblems(dead, { ...handover, initial: 'h3', final: 'h2', faultAt: faultAt2 });
    expect(problems.join('\n')).toMatch(/ip monitor h3 was not working/);
    expect(problems.join('\n')).toMatch(/arp prober was not working/);
    // What the frozen picture claims: h3 kept it (no delete seen) while h2 added it.
    expect(problems.join('\n')).toMatch(/two holders/);
  });
});

describe('faults', () => {
  // Once failed under load: replies read late by a busy prober were stamped after the link went down. Reply times
  // are now the client kernel's receive stamps, and the window is judged by the probes sent inside it.
  it('link down stops the host answering ARP; link up restores it', async () => {
    const vip = lab.freeAddress(4);
    await addVip(h1, vip);
    const arp = await lab.arpProber(vip, { intervalMs: 10 });
    await waitFor('a reply from h1', () => arp.snapshot().length > 0);
    await lab.faults.linkDown(h1);
    const tDown = Date.now(); // the port is down from (before) here…
    const sentAtDown = arp.sentSoFar();
    await waitFor('30 probes with the cable out', () => arp.sentSoFar() >= sentAtDown + 30, {
      timeoutMs: 5000,
    });
    const tUpCalled = Date.now(); // …until (after) here
    await lab.faults.linkUp(h1);
    const tUp = Date.now();
    await waitFor('replies after link up', () => arp.snapshot().some((r) => r.t > tUp), { timeoutMs: 5000 });
    const tl = await arp.stop();
    await delVip(h1, vip);
    expect(tl.observer).toMatchObject({ aliveAtStop: true, responsive: true });
    // Date.now() is whole ms (floored): compare floored kernel stamps, so no slack is needed at either edge.
    const inWindow = (t: number) => Math.floor(t) > tDown && Math.floor(t) < tUpCalled;
    // The prober kept probing while the cable was out (by its own send times)…
    const probesSent = tl.probes.filter(inWindow);
    expect(probesSent.length).toBeGreaterThanOrEqual(20);
    // …and nothing answered any of them: no reply reached the client's kernel in the window.
    expect(tl.replies.filter((r) => inWindow(r.t))).toEqual([]);
    // Control: the same prober got answers before and after.
    expect(tl.replies.some((r) => r.t < tDown)).toBe(true);
    expect(tl.replies.some((r) => r.t > tUp && r.mac === h1.mac)).toBe(true);
  });

  it('cutting a host from etcd makes its etcdctl time out while the LAN still works', async () => {
    await lab.faults.cutFromEtcd(h2);
    try {
      const t0 = Date.now();
      const r = await lab.etcdctl(h2, ['get', 'lab/selftest'], { reject: false });
      expect(r.exitCode).not.toBe(0);
      expect(`${r.stderr}`).toMatch(/deadline|timeout|context/i);
      expect(Date.now() - t0).toBeGreaterThan(900);
      await lab.exec(h2, 'ping', ['-c', '1', '-W', '1', h3.ip]);
      // Other hosts are unaffected.
      expect((await lab.etcdctl(h3, ['get', 'lab/selftest', '--print-value-only'])).stdout).toBe('hello');
    } finally {
      await lab.faults.healEtcd(h2);
    }
    expect((await lab.etcdctl(h2, ['get', 'lab/selftest', '--print-value-only'])).stdout).toBe('hello');
    await lab.faults.healEtcd(h2); // idempotent
  });

  it('netem loss towards etcd loses etcd traffic only, and clears', async () => {
    await lab.faults.netem(h3, { lossPct: 100 });
    try {
      const r = await lab.etcdctl(h3, ['get', 'lab/selftest'], { reject: false });
      expect(r.exitCode).not.toBe(0);
      await lab.exec(h3, 'ping', ['-c', '1', '-W', '1', h1.ip]);
    } finally {
      await lab.faults.clearNetem(h3);
    }
    expect((await lab.etcdctl(h3, ['get', 'lab/selftest', '--print-value-only'])).stdout).toBe('hello');
    await lab.faults.netem(h3, { lossPct: 50 });
    try {
      const etcdIp = lab.etcd.members[0]?.ip ?? '';
      const r = await lab.exec(h3, 'ping', ['-q', '-c', '60', '-i', '0.005', '-W', '1', etcdIp], {
        reject: false,
      });
      const received = Number(/(\d+) received/.exec(r.stdout)?.[1]);
      expect(received).toBeGreaterThan(5);
      expect(received).toBeLessThan(55);
      const lan = await lab.exec(h3, 'ping', ['-q', '-c', '60', '-i', '0.005', '-W', '1', h1.ip]);
      expect(lan.stdout).toContain(' 0% packet loss');
    } finally {
      await lab.faults.clearNetem(h3);
    }
  });

  it('netem delay slows the host requests to etcd by the delay; etcd->host and the LAN stay fast', async () => {
    const timedGet = async (): Promise<number> => {
      const t0 = performance.now();
      await lab.etcdctl(h1, ['get', 'lab/selftest']);
      return performance.now() - t0;
    };
    const base = await timedGet();
    // A watch opened before the delay: events flowing etcd -> h1 are not delayed (netem-like, egress only).
    const watch = lab.spawn(h1, 'etcdctl', [
      '--endpoints',
      lab.etcd.endpoints.join(','),
      'watch',
      'lab/delay',
    ]);
    await new Promise((r) => setTimeout(r, 300));
    await lab.faults.netem(h1, { delayMs: 250 });
    try {
      const slow = await timedGet();
      expect(slow).toBeGreaterThan(base + 200);
      const ping = await lab.exec(h1, 'ping', ['-c', '3', '-i', '0.01', h2.ip]);
      expect(Number(/= [\d.]+\/([\d.]+)\//.exec(ping.stdout)?.[1])).toBeLessThan(50);
      // A write from another host reaches h1's existing watch without delay (the delay is h1 -> etcd only)...
      // Timed from the put's return (the write is committed by then), not from spawning etcdctl, whose start-up
      // on a loaded machine is itself a few hundred ms; a delayed event would arrive ~250 ms after the commit.
      await lab.etcdctl(h2, ['put', 'lab/delay', 'x']);
      const tPut = Date.now();
      await waitFor('the watch event', async () => (await watch.output()).includes('lab/delay'), {
        intervalMs: 10,
      });
      expect(Date.now() - tPut).toBeLessThan(150);
    } finally {
      await watch.stop();
      await lab.faults.clearNetem(h1);
    }
    expect(await timedGet()).toBeLessThan(base + 150);
  });

  it('killing the etcd raft leader keeps a 3-member cluster writable; the member comes back', async () => {
    const leader = await waitFor('an etcd leader', () => lab.faults.etcdLeaderIndex());
    await lab.faults.killEtcdMember(leader);
    expect(lab.etcd.members[leader]?.process?.running).toBe(false);
    await waitFor(
      'a write after the leader died',
      async () => (await lab.etcdctl(h1, ['put', 'lab/after-kill', 'ok'], { reject: false })).exitCode === 0,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const next = await waitFor('a new leader', () => lab.faults.etcdLeaderIndex());
    expect(next).not.toBe(leader);
    await lab.faults.restartEtcdMember(leader);
    expect(lab.etcd.members[leader]?.process?.running).toBe(true);
    expect((await lab.etcdctl(h2, ['get', 'lab/after-kill', '--print-value-only'])).stdout).toBe('ok');
  });
});

describe('daemons', () => {
  it('keepalived runs in a host with its own files, takes the VIP, and kill9 kills parent and VRRP child', async () => {
    const vip = lab.freeAddress(5);
    const sampler = await lab.sampler(vip);
    const ka = lab.startKeepalived(
      h3,
      `global_defs {\n  router_id ${h3.name}\n  vrrp_version 3\n}\n` +
        `vrrp_instance VI_LAB {\n  state BACKUP\n  interface eth0\n  virtual_router_id 77\n  priority 100\n` +
        `  advert_int 0.1\n  virtual_ipaddress {\n    ${vip}/32 dev eth0\n  }\n}\n`,
    );
    await waitFor('keepalived holds the VIP', () => lab.addresses(h3).then((a) => a.includes(vip)), {
      timeoutMs: 10_000,
    });
    const child = Number(readFileSync(ka.vrrpPidFile, 'utf8').trim());
    expect(child).toBeGreaterThan(0);
    ka.kill9();
    await ka.exited;
    await waitFor('VRRP child gone', () => !existsSync(`/proc/${child}`), { timeoutMs: 3000 });
    const tl = await sampler.stop();
    expect(tl.events.filter((e) => e.op === 'add').map((e) => e.host)).toEqual(['h3']);
    // A killed holder leaves the VIP behind (docs/design.md, "keepalived 2.2.7"): the lab shows it, the test cleans it.
    expect(await lab.addresses(h3)).toContain(vip);
    await delVip(h3, vip);
  });

  it('haproxy runs master-worker with a pid file and a master socket in the run dir', async () => {
    const cfg = join(lab.runDir, 'selftest-haproxy.cfg');
    const vip = lab.freeAddress(6);
    writeFileSync(
      cfg,
      `global\n  log stderr format raw local0\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n` +
        `  timeout server 5s\nfrontend fe\n  bind ${vip}:8080\n  http-request return status 200 content-type text/plain string ok\n`,
    );
    const hp = lab.startHaproxy(h2, cfg);
    await waitFor('haproxy pid file', () => existsSync(hp.pidFile));
    const ask = (cmd: string) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect(hp.masterSocket, () => sock.end(`${cmd}\n`));
        let out = '';
        sock.on('data', (d: Buffer) => (out += d.toString()));
        sock.on('end', () => resolve(out));
        sock.on('error', reject);
      });
    // The socket file appears at bind(); the master accepts a little later, and the worker later still.
    const reply = await waitFor('master and worker in show proc', async () => {
      const r = await ask('show proc');
      return /worker/.test(r) ? r : undefined;
    });
    expect(reply).toMatch(/master/);
    expect(reply).toMatch(/worker/);
    const exit = await hp.stop(3000);
    expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);
  });
});

describe('teardown', () => {
  it('leaves no namespace, process or record behind, and is idempotent', async () => {
    const other = await Lab.create({ name: 'teardown', hosts: 1 });
    const h = other.hosts[0] as LabHost;
    const sleeper = other.spawn(h, 'sleep', ['300']);
    const etcdPid = other.etcd.members[0]?.process?.pid ?? -1;
    const sampler = await other.sampler(other.freeAddress(1));
    void sampler; // never stopped on purpose: destroy must clean it up
    expect(namespacesNow().filter((n) => n.startsWith(other.prefix))).toHaveLength(4);
    await other.destroy();
    await other.destroy();
    expect(namespacesNow().filter((n) => n.startsWith(other.prefix))).toEqual([]);
    expect(existsSync(`/proc/${sleeper.pid}`)).toBe(false);
    expect(existsSync(`/proc/${etcdPid}`)).toBe(false);
    expect(existsSync(`/run/coord-lab/${other.prefix}.owner`)).toBe(false);
    expect(() => other.spawn(h, 'true')).toThrow(/destroyed/);
    // The shared lab is untouched by the other lab's teardown.
    expect(namespacesNow()).toContain(h1.ns);
  });

  it.each(['SIGTERM', 'SIGKILL'] as const)(
    'an owner ended by %s leaves nothing behind (exit hooks, else the next sweep)',
    async (sig) => {
      const holder = execa(process.execPath, ['--import', 'tsx', HOLD_LAB], {
        reject: false,
        stdin: 'ignore',
      });
      let line = '';
      holder.stdout?.on('data', (d: Buffer) => (line += d.toString()));
      const { prefix, pid } = await waitFor(
        'the holder lab',
        () => (line.includes('\n') ? (JSON.parse(line) as { prefix: string; pid: number }) : undefined),
        { timeoutMs: 20_000 },
      );
      expect(namespacesNow().filter((n) => n.startsWith(`${prefix}-`))).toHaveLength(4);
      process.kill(pid, sig);
      await holder;
      if (sig === 'SIGKILL') {
        // Nothing ran in the owner: its namespaces stay until someone sweeps (every Lab.create does, first;
        // another lab starting concurrently may already have done it).
        sweepStale();
      }
      expect(namespacesNow().filter((n) => n.startsWith(`${prefix}-`))).toEqual([]);
      expect(existsSync(`/run/coord-lab/${prefix}.owner`)).toBe(false);
      const inside = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
      expect(inside).not.toContain(prefix);
    },
  );
});
