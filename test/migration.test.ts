/**
 * The migration of docs/migration.md, run in the lab (test/migration.ts): three keepalived 2.2.7 nodes serving
 * HTTP through a VIP become coord VRRP-mode nodes, then hybrid etcd-mode nodes, then plain etcd-mode nodes, one
 * node at a time, under client load. The figures are printed (`pnpm bench:migration` writes them); the test holds
 * the outcome: one holder serving HTTP after every step, never two holders outside VRRP's own preemption, and at
 * most a second without ARP answers in any step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from './lab/index.js';
import { assertBuilt } from './coord.js';
import { Migration } from './migration.js';

let lab: Lab;
let m: Migration | undefined;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, name: 'migration' });
});

afterAll(async () => {
  await m?.stop();
  await lab?.destroy();
});

describe('keepalived → coord, node by node, under load', () => {
  it('every step keeps one holder serving HTTP; two holders only in a VRRP preemption', async () => {
    const lines: string[] = [];
    m = new Migration(lab, { advertInt: 0.2, log: (l) => lines.push(l) });
    await m.start();
    const steps = await m.runAll();
    console.log(`migration steps:\n  ${lines.join('\n  ')}`);
    expect(steps).toHaveLength(10);
    for (const s of steps) {
      // The preferred node (h1) holds after every step: the VIP never ends up elsewhere.
      expect(s.holderAfter, s.step).toEqual(['h1']);
      expect(s.httpOk, s.step).toBeGreaterThan(0);
      // Requests fail only where the VIP moved (connections the new holder never saw are reset).
      expect(s.httpFailedOutsideMoves, s.step).toBe(0);
      expect(s.arpGapMs ?? 0, s.step).toBeLessThan(1000);
      // A VRRP preemption (keepalived's own, or coord's VRRP mode taking the VIP back) overlaps by design, briefly.
      const vrrp = s.kind === 'to-vrrp' || s.kind === 'keepalived';
      if (vrrp) expect(s.twoHolderMs, s.step).toBeLessThan(300);
      else {
        expect(s.twoHolderMs, s.step).toBe(0);
        expect(s.twoMacProbes, s.step).toBe(0);
      }
    }
  });
});
