/**
 * The takeover after an unclean vacancy, with the real binary, real etcd and real kernels:
 * the successor does not trust a constant for how long the old holder's kernel keeps the VIP — it waits while the
 * VIP is still answered on the wire, and claims as soon as it is not.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Lab, doubleHolderMs, waitFor, type LabHost, type LabProcess } from './lab/index.js';
import { assertBuilt, coordLog, holdersOf, startCoord, waitForHolder } from './coord.js';

let lab: Lab;
let running: LabProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, name: 'takeover' });
});

afterEach(async () => {
  await Promise.all(running.map((p) => p.stop(3000)));
  running = [];
});

afterAll(async () => {
  await lab?.destroy();
});

describe('takeover after an unclean vacancy', () => {
  it('waits while the dead holder’s copy still answers ARP, and claims right after it is gone', async () => {
    const vip = lab.freeAddress(1);
    const cidr = `${vip}/${lab.subnet.prefix}`;
    const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
    const procs = [
      startCoord(lab, h1, { cluster: 'wire', vips: [cidr], priority: 150 }),
      startCoord(lab, h2, { cluster: 'wire', vips: [cidr], priority: 100 }),
      startCoord(lab, h3, { cluster: 'wire', vips: [cidr], priority: 50 }),
    ];
    running = procs;
    await waitForHolder(lab, vip, 'h1', 15_000);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    // h1 dies, and its kernel keeps the VIP far beyond the lifetime (what a stuck lifetime worker, a failed
    // removal or a frozen VM look like from the outside).
    procs[0]?.kill9();
    await lab.exec(h1, 'ip', [
      'addr',
      'change',
      cidr,
      'dev',
      'eth0',
      'valid_lft',
      'forever',
      'preferred_lft',
      'forever',
    ]);
    const h2proc = procs[1] as LabProcess;
    await waitFor(
      'h2 to win and see the old copy answer',
      async () =>
        (await coordLog(h2proc)).some((l) => l.message === 'vip still answered on the wire; waiting')
          ? true
          : undefined,
      { timeoutMs: 5000, intervalMs: 20 },
    );
    await new Promise((r) => setTimeout(r, 400));
    expect(await holdersOf(lab, vip)).toEqual(['h1']);
    const removedAt = Date.now();
    await lab.exec(h1, 'ip', ['addr', 'del', cidr, 'dev', 'eth0']);
    await waitForHolder(lab, vip, 'h2', 3000);
    const timeline = await sampler.stop();
    // Exact, from the kernel events: never two holders.
    expect(doubleHolderMs(timeline)).toBe(0);
    const del = timeline.events.find((e) => e.host === 'h1' && e.op === 'del');
    const add = timeline.events.find((e) => e.host === 'h2' && e.op === 'add');
    expect(del).toBeDefined();
    expect(add).toBeDefined();
    expect(add!.t).toBeGreaterThanOrEqual(del!.t);
    // It claimed promptly once the wire went quiet (75 ms of silence + a fresh ack), not after a fixed wait.
    expect(add!.t - removedAt).toBeLessThan(600);
    const won = (await coordLog(h2proc)).filter((l) => l.message === 'transition' && l.to === 'leader');
    expect(won.at(-1)?.reason).toBe('elected-guarded');
  });
});
