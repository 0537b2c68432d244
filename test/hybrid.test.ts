/**
 * Hybrid mode (docs/design.md, "Hybrid mode"): coord nodes elected through etcd that also send VRRP adverts, next
 * to a real keepalived 2.2.7 still in the cluster. keepalived must step down for them, stay BACKUP while any coord
 * node lives — through a coord crash failover far longer than its own Master_Down_Interval (0.36 s at advert 0.1 s)
 * — and take the VIP back only when the last coord node is gone.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  doubleReplyProbes,
  failoverGap,
  Lab,
  overlaps,
  watchVip,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import { assertBuilt, COORD_BIN, controlSocketFor, waitForHolder } from './coord.js';

let lab: Lab;
let vip: string;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, name: 'hybrid' });
  vip = lab.freeAddress(5);
});

afterAll(async () => {
  await lab?.destroy();
});

const VRID = 77;

function keepalivedConf(): string {
  return [
    'global_defs {\n  vrrp_version 3\n}',
    'vrrp_instance VI {',
    '  state BACKUP',
    '  interface eth0',
    `  virtual_router_id ${VRID}`,
    '  priority 100',
    '  advert_int 0.1',
    `  virtual_ipaddress {\n    ${vip}/${lab.subnet.prefix}\n  }`,
    '}',
    '',
  ].join('\n');
}

function startHybrid(h: LabHost, priority: number): LabProcess {
  const path = join(lab.runDir, `${h.name}-hybrid.yaml`);
  writeFileSync(
    path,
    [
      `etcd: [${lab.etcd.endpoints.join(', ')}]`,
      'cluster: hybrid',
      `node: ${h.name}`,
      `controlSocket: ${controlSocketFor(lab, h, 'hybrid')}`,
      'groups:',
      '  - name: web',
      '    interface: eth0',
      `    vips: [${vip}/${lab.subnet.prefix}]`,
      `    priority: ${priority}`,
      `    vrrp: { vrid: ${VRID}, priority: 200, advertInt: 0.1 }`,
      '',
    ].join('\n'),
  );
  return lab.spawn(h, process.execPath, [COORD_BIN, 'join', '--config', path], { name: 'coord-hybrid' });
}

const masterEntries = (log: string) => log.split('\n').filter((l) => /Entering MASTER STATE/.test(l)).length;

describe('hybrid mode next to keepalived', () => {
  it('keepalived steps down for the coord nodes, stays BACKUP through a coord crash, and takes over after the last one', async () => {
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    const keepalived = lab.startKeepalived(h1, keepalivedConf(), { name: 'keepalived-hybrid' });
    const coords: LabProcess[] = [];
    try {
      await waitForHolder(lab, vip, 'h1', 10_000);
      const watch = await watchVip(lab, vip, { arp: true });
      await watch.answered('h1');
      // The coord nodes join: their adverts (200) outrank keepalived (100), which steps down; etcd elects h2.
      const joinedAt = Date.now();
      coords.push(startHybrid(h2, 150), startHybrid(h3, 100));
      await waitForHolder(lab, vip, 'h2', 15_000);
      await watch.answered('h2', joinedAt);
      expect(await keepalived.output()).toMatch(/Entering BACKUP STATE/);
      const mastersBefore = masterEntries(await keepalived.output());
      // A follower advertises too, and says so.
      const local = await lab.exec(
        h3,
        process.execPath,
        [COORD_BIN, 'status', '--local', '--control-socket', controlSocketFor(lab, h3, 'hybrid')],
        { reject: false },
      );
      expect(local.stdout).toMatch(/VRRP \(hybrid\) vrid 77: [1-9]\d* adverts sent; no other VRRP Master/);

      // kill -9 of the coord holder: h3 takes over after the lease; h3's adverts keep keepalived BACKUP.
      const killedAt = Date.now();
      coords[0]?.signal('SIGKILL');
      await waitForHolder(lab, vip, 'h3', 5000);
      await watch.answered('h3', killedAt);
      expect(masterEntries(await keepalived.output())).toBe(mastersBefore);

      // The last coord node stops: it resigns over VRRP (priority 0) and keepalived takes the VIP back.
      const stoppedAt = Date.now();
      await coords[1]?.stop(5000);
      await waitForHolder(lab, vip, 'h1', 5000);
      await watch.answered('h1', stoppedAt);
      const ev = await watch.stop();
      const gap = (after: number, from: string, to: string) =>
        failoverGap(ev.arp!, { after, fromMac: ev.macs[from] ?? '', toMac: ev.macs[to] ?? '' }).gapMs;
      const gaps = {
        join: gap(joinedAt, 'h1', 'h2'),
        crash: gap(killedAt, 'h2', 'h3'),
        last: gap(stoppedAt, 'h3', 'h1'),
      };
      console.log(
        `hybrid: longest ARP gaps ms — keepalived→coord ${gaps.join}, coord crash ${gaps.crash}, coord→keepalived ${gaps.last}`,
      );
      // Never two holders: by the kernels' address events and on the wire.
      expect(overlaps(ev.timeline)).toEqual([]);
      expect(doubleReplyProbes(ev.arp!)).toEqual([]);
      expect(gaps.last).toBeLessThan(1000);
      expect(await keepalived.output()).not.toMatch(/invalid|mismatch/i);
    } finally {
      await Promise.all(coords.map((c) => c.stop(3000)));
      await keepalived.stop(3000);
    }
  });
});
