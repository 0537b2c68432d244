/**
 * Two VIP groups on one node, configured by YAML: they share one etcd lease. When the node is cut off from
 * etcd, both groups must fence (the shared lease is revoked only after every group removed its VIP), the other
 * node takes both, and neither VIP ever has two holders; after healing, the preferred node takes both back.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, doubleHolderSamples, type LabHost } from './lab/index.js';
import { assertBuilt, COORD_BIN, controlSocketFor, waitForHolder } from './coord.js';

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
      const samplers = await Promise.all(vips.map((v) => lab.sampler(v, { intervalMs: 20 })));
      await lab.faults.cutFromEtcd(h1);
      try {
        for (const v of vips) await waitForHolder(lab, v, 'h2', 5000);
      } finally {
        await lab.faults.healEtcd(h1);
      }
      for (const v of vips) await waitForHolder(lab, v, 'h1', 10_000);
      const timelines = await Promise.all(samplers.map((s) => s.stop()));
      for (const t of timelines) expect(doubleHolderSamples(t)).toEqual([]);
      const log = await procs[0]!.output();
      expect(log).toMatch(/fenced|session lost/);
    } finally {
      await Promise.all(procs.map((p) => p.stop(5000)));
    }
  });
});
