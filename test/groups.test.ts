/**
 * Two VIP groups on one node, configured by YAML: they share one etcd lease. When the node is cut off from
 * etcd, both groups must fence (the shared lease is revoked only after every group removed its VIP), the other
 * node takes both, and neither VIP ever has two holders; after healing, the preferred node takes both back.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Lab, assertFencedRemoval, assertHandover, watchVip, type LabHost } from './lab/index.js';
import { assertBuilt, COORD_BIN, controlSocketFor, coordLog, waitForHolder } from './coord.js';

let lab: Lab;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 2, name: 'groups' });
});

afterAll(async () => {
  await lab?.destroy();
});

function configFor(h: LabHost, priority: number, vips: [string, string]): string {
  const path = join(lab.runDir, `${h.name}-coord.yaml`);
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
      '  - name: api',
      '    interface: eth0',
      `    vips: [${vips[1]}/${lab.subnet.prefix}]`,
      `    priority: ${priority}`,
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
});
