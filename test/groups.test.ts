/**
 * Two VIP groups on one node, configured by YAML: they share one etcd lease. When the node is cut off from
 * etcd, both groups must fence (the shared lease is revoked only after every group removed its VIP), the other
 * node takes both, and neither VIP ever has two holders; after healing, the preferred node takes both back.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, assertFencedRemoval, assertHandover, overlaps, watchVip, type LabHost } from './lab/index.js';
import { assertBuilt, COORD_BIN, controlSocketFor, coordLog, waitForHolder } from './coord.js';

let lab: Lab;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 2, name: 'groups' });
});

afterAll(async () => {
  await lab?.destroy();
});

function configFor(
  h: LabHost,
  priority: number,
  vips: [string, string],
  sync?: { apiPriority: number },
): string {
  const path = join(lab.runDir, `${h.name}-coord${sync === undefined ? '' : '-sync'}.yaml`);
  writeFileSync(
    path,
    [
      `etcd: [${lab.etcd.endpoints.join(', ')}]`,
      'cluster: groups',
      `node: ${h.name}`,
      'ttl: 1',
      'groups:',
      '  - name: web',
      '    interface: eth0',
      `    vips: [${vips[0]}/${lab.subnet.prefix}]`,
      `    priority: ${priority}`,
      ...(sync === undefined ? [] : ['    syncGroup: front']),
      '  - name: api',
      '    interface: eth0',
      `    vips: [${vips[1]}/${lab.subnet.prefix}]`,
      `    priority: ${sync?.apiPriority ?? priority}`,
      ...(sync === undefined ? [] : ['    syncGroup: front']),
      '',
    ].join('\n'),
  );
  return path;
}

describe('two groups on one node', () => {
  it('both fence when the node is cut from etcd, never two holders of either VIP, both come back', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const vips: [string, string] = [lab.freeAddress(1), lab.freeAddress(2)];
    const procs = [
      [h1, 200],
      [h2, 100],
    ].map(([h, p]) => {
      const host = h as LabHost;
      return lab.spawn(
        host,
        process.execPath,
        [
          COORD_BIN,
          'join',
          '--config',
          configFor(host, p as number, vips),
          '--control-socket',
          controlSocketFor(lab, host, 'groups'),
        ],
        { name: 'coord-groups' },
      );
    });
    try {
      for (const v of vips) await waitForHolder(lab, v, 'h1', 15_000);
      const watches = await Promise.all(vips.map((v) => watchVip(lab, v, { arp: true })));
      for (const w of watches) await w.answered('h1');
      const cutAt = Date.now();
      await lab.faults.cutFromEtcd(h1);
      try {
        for (const v of vips) await waitForHolder(lab, v, 'h2', 5000);
      } finally {
        await lab.faults.healEtcd(h1);
      }
      for (const v of vips) await waitForHolder(lab, v, 'h1', 10_000);
      const healedAt = Date.now();
      for (const w of watches) await w.answered('h1', healedAt);
      const evidence = await Promise.all(watches.map((w) => w.stop()));
      const log = await coordLog(procs[0]!);
      for (const ev of evidence) {
        // Each VIP: away to h2 and back, exactly, never two holders, seen by live observers.
        assertHandover(ev, {
          initial: 'h1',
          final: 'h1',
          events: ['h1:del', 'h2:add', 'h2:del', 'h1:add'],
          onlyEvents: true,
          faultAt: cutAt,
        });
        // Both groups fenced on the shared lease's deadline and removed their VIP themselves.
        assertFencedRemoval(ev, log, { host: 'h1', faultAt: cutAt, releasedBy: cutAt + 1000 });
      }
    } finally {
      await Promise.all(procs.map((p) => p.stop(5000)));
    }
  });

  it('a sync group: web goes where api is, whatever its own priority, through a stop and a restart', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const vips: [string, string] = [lab.freeAddress(3), lab.freeAddress(4)];
    // api leads the sync group (its name sorts first). On its own, web would go to h2 (150 over 50); bound to
    // api (h1: 200 over 100), it stays with api.
    const start = (h: LabHost, api: number, web: number) =>
      lab.spawn(
        h,
        process.execPath,
        [
          COORD_BIN,
          'join',
          '--config',
          configFor(h, web, vips, { apiPriority: api }),
          '--control-socket',
          controlSocketFor(lab, h, 'groups-sync'),
        ],
        { name: 'coord-sync' },
      );
    let p1 = start(h1, 200, 50);
    const p2 = start(h2, 100, 150);
    try {
      for (const v of vips) await waitForHolder(lab, v, 'h1', 15_000);
      const watches = await Promise.all(vips.map((v) => watchVip(lab, v, { arp: true })));
      // h1 stops: both go to h2 together.
      await p1.stop(5000);
      for (const v of vips) await waitForHolder(lab, v, 'h2', 5000);
      // h1 is back: api preempts (200 over 100) and web follows it.
      p1 = start(h1, 200, 50);
      for (const v of vips) await waitForHolder(lab, v, 'h1', 15_000);
      await new Promise((r) => setTimeout(r, 1500));
      for (const v of vips) await waitForHolder(lab, v, 'h1', 100);
      const evidence = await Promise.all(watches.map((w) => w.stop()));
      for (const ev of evidence) expect(overlaps(ev.timeline)).toEqual([]);
      expect(await p2.output()).toMatch(/"reason":"sync-group"/);
    } finally {
      await Promise.all([p1, p2].map((p) => p.stop(5000)));
    }
  });
});
