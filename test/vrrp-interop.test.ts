/**
 * VRRP wire compatibility with a real keepalived 2.2.7: coord's runner and keepalived on two hosts (network
 * namespaces) of one bridge, each side as Master and as Backup, v2 (with auth_pass) and v3, multicast and
 * unicast, crash and graceful failover both ways, preemption and no-preempt. The VIP holder is read from the
 * interfaces themselves. keepalived must never log "invalid" or "mismatch" about coord's adverts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encode, internetChecksum, type VrrpPacket } from '@coord/vrrp';
import { execa } from 'execa';
import { COORD_BIN } from './coord.js';
import {
  createVrrpLab,
  keepalivedConfig,
  run,
  waitFor,
  type CoordProcess,
  type VrrpLab,
} from './fixtures/vrrp/netlab.js';

let lab: VrrpLab;
const figures: string[] = [];

beforeAll(async () => {
  lab = await createVrrpLab();
});
// A failed test must not leave a keepalived holding the VIP for the next one.
afterEach(async () => {
  await lab.reset();
});
afterAll(async () => {
  await lab?.close();
  if (figures.length > 0) console.log(`VRRP interop failover figures:\n  ${figures.join('\n  ')}`);
});

/** Wait until exactly `ns` holds the VIP; returns the elapsed ms since `t0`. */
async function soleHolder(ns: string, withinMs: number, t0 = performance.now()): Promise<number> {
  await waitFor(`${ns} as the only VIP holder`, async () => (await lab.vipHolders()).join() === ns, withinMs);
  return performance.now() - t0;
}

/** The VIP stays on `ns` alone for `ms` (sampled every 50 ms): no flapping, never two holders. */
async function holdsSteadily(ns: string, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    expect(await lab.vipHolders()).toEqual([ns]);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What a restarting agent does first (docs/design.md, "keepalived 2.2.7"): a killed holder left its VIP behind. */
async function removeStaleVip(ns: string): Promise<void> {
  await run('ip', ['-n', ns, 'addr', 'flush', 'dev', 'eth0', 'to', `${lab.vip}/32`]);
}

function lastCounters(c: CoordProcess): { dropped?: Record<string, number> } & Record<string, unknown> {
  const f = c
    .facts()
    .filter((x) => x.fact === 'counters')
    .at(-1);
  return (f?.counters ?? {}) as { dropped?: Record<string, number> } & Record<string, unknown>;
}

function complaints(log: string): string[] {
  return log.split('\n').filter((l) => /invalid|mismatch/i.test(l));
}

describe('coord VRRP ⇄ keepalived 2.2.7', () => {
  it('v3 multicast, advert 0.1 s: preemption, graceful and crash failover in both directions', async () => {
    const { h1, h2 } = lab;
    const ka = (priority: number) =>
      lab.startKeepalived(
        h2,
        keepalivedConfig({ version: 3, vrid: 61, priority, advertInt: 0.1, vip: lab.vip }),
      );
    const coord = (priority: number) => lab.startCoord(h1, { vrid: 61, priority, advertInt: 0.1 });

    let k = await ka(100);
    await soleHolder(h2.ns, 5000);
    // A higher-priority coord preempts keepalived, and keepalived accepts it as Master.
    let c = await coord(150);
    await soleHolder(h1.ns, 3000);
    await waitFor('keepalived BACKUP', () => k.lastState() === 'BACKUP', 2000);
    await holdsSteadily(h1.ns, 1000);

    let t0 = performance.now();
    let stopped = c.stop();
    figures.push(`v3 0.1 s graceful coord→keepalived: ${(await soleHolder(h2.ns, 2000, t0)).toFixed(0)} ms`);
    await stopped;

    c = await coord(150);
    await soleHolder(h1.ns, 3000);
    t0 = performance.now();
    await c.kill9();
    await waitFor('keepalived MASTER', () => k.lastState() === 'MASTER', 3000);
    figures.push(
      `v3 0.1 s crash coord→keepalived: ${(performance.now() - t0).toFixed(0)} ms (keepalived MASTER)`,
    );
    await removeStaleVip(h1.ns);
    await soleHolder(h2.ns, 2000);

    // A lower-priority coord stays Backup and decodes every keepalived advert.
    c = await coord(50);
    await holdsSteadily(h2.ns, 1200);
    expect(c.lastState()).toBe('backup');
    expect(lastCounters(c)).toMatchObject({ dropped: {}, advertsSent: 0 });
    expect(lastCounters(c).advertsReceived).toBeGreaterThan(5);

    t0 = performance.now();
    const killed = k.kill9();
    await waitFor('coord master', () => c.lastState() === 'master', 3000);
    const crashMs = performance.now() - t0;
    figures.push(`v3 0.1 s crash keepalived→coord: ${crashMs.toFixed(0)} ms (coord master)`);
    // A crash sends no priority 0: coord waited Master_Down_Interval (0.38 s) less the time since the last advert.
    expect(crashMs).toBeGreaterThan(250);
    await killed;
    await removeStaleVip(h2.ns);
    await soleHolder(h1.ns, 2000);
    expect(complaints(k.log())).toEqual([]);

    // keepalived (100, preempt) takes the VIP back from coord (50); then resigns gracefully.
    k = await ka(100);
    await soleHolder(h2.ns, 3000);
    await waitFor('coord backup', () => c.lastState() === 'backup', 2000);
    t0 = performance.now();
    stopped = k.stop(); // keepalived takes ~1 s to exit after its priority-0 advert: do not count that
    figures.push(`v3 0.1 s graceful keepalived→coord: ${(await soleHolder(h1.ns, 2000, t0)).toFixed(0)} ms`);
    await stopped;
    await c.stop();
    expect(complaints(k.log())).toEqual([]);
  });

  it('no-preempt: a higher-priority coord stays Backup behind a keepalived Master', async () => {
    const { h1, h2 } = lab;
    const k = await lab.startKeepalived(
      h2,
      keepalivedConfig({ version: 3, vrid: 62, priority: 100, advertInt: 0.1, vip: lab.vip }),
    );
    await soleHolder(h2.ns, 5000);
    const c = await lab.startCoord(h1, { vrid: 62, priority: 200, advertInt: 0.1, preempt: false });
    await holdsSteadily(h2.ns, 1500);
    expect(c.lastState()).toBe('backup');
    // …and takes over when keepalived leaves.
    await k.stop();
    await soleHolder(h1.ns, 2000);
    await c.stop();
    await waitFor('VIP released', async () => (await lab.vipHolders()).length === 0, 2000);
    expect(complaints(k.log())).toEqual([]);
  });

  it('v2 multicast with auth_pass, advert 1 s: keepalived accepts coord as Master and vice versa', async () => {
    const { h1, h2 } = lab;
    const ka = (priority: number) =>
      lab.startKeepalived(
        h2,
        keepalivedConfig({
          version: 2,
          vrid: 63,
          priority,
          advertInt: 1,
          vip: lab.vip,
          authPass: 'coord-pw',
        }),
      );
    let c = await lab.startCoord(h1, {
      vrid: 63,
      priority: 200,
      version: 2,
      advertInt: 1,
      authPass: 'coord-pw',
    });
    await soleHolder(h1.ns, 6000);
    const k = await ka(100);
    // Longer than keepalived's Master_Down_Interval (3 × 1 s + 0.61 s): had it rejected coord's adverts,
    // it would have claimed the VIP by now.
    await holdsSteadily(h1.ns, 4200);
    expect(k.lastState()).toBe('BACKUP');

    let t0 = performance.now();
    const stopped = c.stop();
    figures.push(`v2 1 s graceful coord→keepalived: ${(await soleHolder(h2.ns, 3000, t0)).toFixed(0)} ms`);
    await stopped;

    c = await lab.startCoord(h1, { vrid: 63, priority: 50, version: 2, advertInt: 1, authPass: 'coord-pw' });
    await waitFor(
      'coord decoded keepalived adverts',
      () => Number(lastCounters(c).advertsReceived) >= 1,
      3000,
    );
    expect(lastCounters(c)).toMatchObject({ dropped: {} });
    expect(c.lastState()).toBe('backup');

    t0 = performance.now();
    await k.kill9();
    await waitFor('coord master', () => c.lastState() === 'master', 6000);
    figures.push(`v2 1 s crash keepalived→coord: ${(performance.now() - t0).toFixed(0)} ms (coord master)`);
    await removeStaleVip(h2.ns);
    await soleHolder(h1.ns, 2000);
    await c.stop();
    expect(complaints(k.log())).toEqual([]);
  });

  it('v2 with a wrong auth_pass: each side rejects the other (and says why)', async () => {
    const { h1, h2 } = lab;
    // coord as the address owner (255) advertises at once; keepalived must refuse those adverts.
    const c = await lab.startCoord(h1, {
      vrid: 69,
      priority: 255,
      version: 2,
      advertInt: 1,
      authPass: 'wrong',
    });
    const k = await lab.startKeepalived(
      h2,
      keepalivedConfig({
        version: 2,
        vrid: 69,
        priority: 100,
        advertInt: 1,
        vip: lab.vip,
        authPass: 'coord-pw',
      }),
    );
    await waitFor('keepalived refuses the password', () => /received an invalid passwd/.test(k.log()), 5000);
    // Refusing coord, keepalived times out and advertises itself; coord counts those as auth-failed.
    await waitFor(
      'coord counts auth-failed',
      () => Number(lastCounters(c).dropped?.['auth-failed'] ?? 0) >= 1,
      7000,
    );
    expect(c.lastState()).toBe('master');
    const stopped = k.stop();
    await c.stop();
    await stopped;
  });

  it('v3 unicast, advert 0.1 s: preemption, crash and graceful failover', async () => {
    const { h1, h2 } = lab;
    const k = await lab.startKeepalived(
      h2,
      keepalivedConfig({
        version: 3,
        vrid: 64,
        priority: 100,
        advertInt: 0.1,
        vip: lab.vip,
        unicast: { src: h2.address, peer: h1.address },
      }),
    );
    await soleHolder(h2.ns, 5000);
    const coord = (priority: number) =>
      lab.startCoord(h1, { vrid: 64, priority, advertInt: 0.1, unicastPeers: [h2.address] });
    let c = await coord(150);
    await soleHolder(h1.ns, 3000);
    await waitFor('keepalived BACKUP', () => k.lastState() === 'BACKUP', 2000);
    await holdsSteadily(h1.ns, 800);

    let t0 = performance.now();
    await c.kill9();
    await waitFor('keepalived MASTER', () => k.lastState() === 'MASTER', 3000);
    figures.push(
      `v3 unicast crash coord→keepalived: ${(performance.now() - t0).toFixed(0)} ms (keepalived MASTER)`,
    );
    await removeStaleVip(h1.ns);

    c = await coord(50);
    await holdsSteadily(h2.ns, 1200);
    expect(c.lastState()).toBe('backup');
    expect(lastCounters(c)).toMatchObject({ dropped: {} });
    t0 = performance.now();
    const stopped = k.stop();
    figures.push(
      `v3 unicast graceful keepalived→coord: ${(await soleHolder(h1.ns, 2000, t0)).toFixed(0)} ms`,
    );
    await stopped;
    await c.stop();
    expect(complaints(k.log())).toEqual([]);
  });

  for (const [coordPriority, keepalivedPriority] of [
    [150, 100],
    [100, 150],
  ] as const) {
    it(`VRRP blocked, then restored → one Master within 3 × advert + skew (coord ${coordPriority}, keepalived ${keepalivedPriority})`, async () => {
      const { h1, h2 } = lab;
      const winner = coordPriority > keepalivedPriority ? h1 : h2;
      const vrid = coordPriority > keepalivedPriority ? 67 : 68;
      const k = await lab.startKeepalived(
        h2,
        keepalivedConfig({ version: 3, vrid, priority: keepalivedPriority, advertInt: 0.1, vip: lab.vip }),
      );
      await soleHolder(h2.ns, 5000);
      const c = await lab.startCoord(h1, { vrid, priority: coordPriority, advertInt: 0.1 });
      await soleHolder(winner.ns, 3000);
      await lab.blockVrrp(true);
      // Partitioned VRRP: the Backup no longer hears the Master and claims the VIP too (the protocol's split).
      await waitFor('two holders while blocked', async () => (await lab.vipHolders()).length === 2, 3000);
      const t0 = performance.now();
      await lab.blockVrrp(false);
      // The lower priority Master yields on the first advert of the higher one it hears: the protocol bound is
      // 3 × advert + Skew_Time; 250 ms more for two processes reporting through pipes on a loaded 2-core box.
      await waitFor(
        'the lower priority side back to Backup',
        () => (winner === h1 ? k.lastState() === 'BACKUP' : c.lastState() === 'backup'),
        2000,
      );
      const stateMs = performance.now() - t0;
      const holderMs = await soleHolder(winner.ns, 2000, t0);
      figures.push(
        `v3 0.1 s VRRP unblocked (${winner === h1 ? 'coord' : 'keepalived'} wins): one Master ${stateMs.toFixed(0)} ms, one VIP holder ${holderMs.toFixed(0)} ms`,
      );
      expect(stateMs).toBeLessThan(3 * 100 + (156 / 256) * 100 + 250);
      expect(c.lastState()).toBe(winner === h1 ? 'master' : 'backup');
      await holdsSteadily(winner.ns, 500);
      const stopped = k.stop();
      await c.stop();
      await stopped;
      await removeStaleVip(h1.ns);
      await removeStaleVip(h2.ns);
      expect(complaints(k.log())).toEqual([]);
    });
  }

  it('malformed adverts on the wire are dropped and counted by reason; the Master stays Master', async () => {
    const { h1, h2 } = lab;
    const c = await lab.startCoord(h1, { vrid: 65, priority: 200, advertInt: 0.1 });
    await soleHolder(h1.ns, 3000);
    const wire = { family: 4, srcAddr: h2.address, dstAddr: '224.0.0.18' } as const;
    // Each would make coord yield if it were accepted: priority 254 beats 200.
    const winner: VrrpPacket = {
      version: 3,
      vrid: 65,
      priority: 254,
      maxAdvertIntervalCs: 10,
      addresses: [lab.vip],
    };
    const good = encode(winner, wire);
    /** `good` with one change and a fixed checksum, so that only the intended check trips. */
    const mutated = (change: (b: Buffer) => void): string => {
      const b = Buffer.from(good);
      change(b);
      b.writeUInt16BE(0, 6);
      const pseudo = Buffer.concat([
        Buffer.from(h2.address.split('.').map(Number)),
        Buffer.from([224, 0, 0, 18, 0, 112, 0, b.length]),
      ]);
      b.writeUInt16BE(internetChecksum([pseudo, b]), 6);
      return b.toString('hex');
    };
    const packets = [
      { hex: good.toString('hex'), ttl: 64 }, // bad-ttl
      { hex: Buffer.from(good.map((x, i) => (i === good.length - 1 ? x ^ 1 : x))).toString('hex'), ttl: 255 }, // bad-checksum
      { hex: mutated((b) => (b[0] = 0x41)), ttl: 255 }, // bad-version
      { hex: mutated((b) => (b[0] = 0x32)), ttl: 255 }, // bad-type
      { hex: mutated((b) => (b[3] = 3)), ttl: 255 }, // length-mismatch
      { hex: good.subarray(0, 6).toString('hex'), ttl: 255 }, // too-short
      { hex: encode({ ...winner, vrid: 66 }, wire).toString('hex'), ttl: 255 }, // other-vrid
      {
        hex: encode(
          {
            version: 2,
            vrid: 65,
            priority: 254,
            advertIntervalSec: 1,
            auth: { type: 'none' },
            addresses: [lab.vip],
          },
          wire,
        ).toString('hex'),
        ttl: 255,
      }, // version-mismatch
      { hex: 'ff'.repeat(300), ttl: 255 }, // garbage: bad-version
    ];
    await lab.inject(h2, packets);
    await waitFor('drops counted', () => Object.keys(lastCounters(c).dropped ?? {}).length >= 7, 3000);
    expect(lastCounters(c).dropped).toEqual({
      'bad-ttl': 1,
      'bad-checksum': 1,
      'bad-version': 2,
      'bad-type': 1,
      'length-mismatch': 1,
      'too-short': 1,
      'other-vrid': 1,
      'version-mismatch': 1,
    });
    expect(c.lastState()).toBe('master');
    await holdsSteadily(h1.ns, 300);
    // The same advert, well-formed, is obeyed: the drops above were for the right reasons.
    await lab.inject(h2, [{ hex: good.toString('hex'), ttl: 255 }]);
    await waitFor('coord yields to the valid advert', () => c.lastState() === 'backup', 2000);
    await c.stop();
  });

  it('coord doctor hears keepalived advertising the VIP it is asked about, and says so before anything is held', async () => {
    const { h1, h2 } = lab;
    await lab.startKeepalived(
      h2,
      keepalivedConfig({ version: 3, vrid: 62, priority: 100, advertInt: 1, vip: lab.vip }),
    );
    await soleHolder(h2.ns, 6000);
    const doctor = (extra: string[]) =>
      execa(
        'ip',
        [
          'netns',
          'exec',
          h1.ns,
          process.execPath,
          COORD_BIN,
          'doctor',
          '--interface',
          'eth0',
          '--vip',
          `${lab.vip}/24`,
          '--json',
          '--config',
          '',
          ...extra,
        ],
        { reject: false, timeout: 30_000 },
      );
    // etcd mode (nothing listens at that endpoint: its findings fail too; this test reads the VRRP one).
    const etcdMode = await doctor(['--etcd', 'http://127.0.0.1:9', '--cluster', 'doc']);
    expect(etcdMode.exitCode, etcdMode.stderr).toBe(2);
    type Report = { findings: { check: string; verdict: string; detail: string }[] };
    const vrrpFinding = (stdout: string) =>
      (JSON.parse(stdout) as Report).findings.find((f) => f.check === 'vrrp on eth0');
    expect(vrrpFinding(etcdMode.stdout)?.verdict).toBe('fail');
    expect(vrrpFinding(etcdMode.stdout)?.detail).toContain(
      `${h2.address} (VRID 62, VRRPv3, priority 100) advertises ${lab.vip}, a VIP of group default`,
    );
    // VRRP mode with keepalived's VRID and version: a peer, no conflict.
    const peer = await doctor(['--mode', 'vrrp', '--vrid', '62']);
    expect(vrrpFinding(peer.stdout)?.verdict, peer.stdout + peer.stderr).toBe('pass');
  });
});
