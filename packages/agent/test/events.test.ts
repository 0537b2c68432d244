import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { clusterKeys, decodeEvent } from '@coord/etcd';
import { MemoryEtcd } from '@coord/etcd/testing';
import { EventLog } from '../src/events.js';

async function settle(clock: FakeClock, ms = 200): Promise<void> {
  for (let i = 0; i < ms / 5; i++) {
    clock.advance(5);
    await new Promise((r) => setImmediate(r));
  }
}

/** An event log on a fake clock and an in-memory etcd. */
function setup(opts: { retentionMs?: number; rotateMs?: number; maxPerMinute?: number } = {}) {
  const clock = new FakeClock();
  const etcd = new MemoryEtcd(clock);
  const keys = clusterKeys('c');
  const log = new EventLog({
    etcd: etcd.client('n1', { latencyMs: 1 }),
    keys,
    node: 'n1',
    clock,
    logger: new MemoryLogger(),
    ...opts,
  });
  return { clock, etcd, keys, log };
}

describe('EventLog (coord events)', () => {
  it('writes events in order under a retention lease, rotates the lease, and etcd drops them after retention', async () => {
    const { clock, etcd, keys, log } = setup({ retentionMs: 60_000, rotateMs: 10_000 });
    log.record({
      group: 'g',
      kind: 'transition',
      from: 'follower',
      to: 'leader',
      reason: 'elected',
      epoch: 7,
    });
    log.record({ group: 'g', kind: 'vip-claimed', epoch: 7, ms: 12 });
    await settle(clock);
    const sorted = () => etcd.peekPrefix(keys.events).sort((a, b) => (a.key < b.key ? -1 : 1));
    const first = sorted();
    expect(first.map((e) => decodeEvent(e.value)?.kind)).toEqual(['transition', 'vip-claimed']);
    expect(new Set(first.map((e) => e.lease)).size).toBe(1);
    await settle(clock, 11_000);
    log.record({ group: 'g', kind: 'vip-released', reason: 'stopping' });
    await settle(clock);
    const leases = new Set(sorted().map((e) => e.lease));
    expect(leases.size).toBe(2); // a new lease after the rotation period
    // After retention + rotation, the first lease (and its events) is gone; the newer event stays a while.
    await settle(clock, 60_000);
    expect(sorted().map((e) => decodeEvent(e.value)?.kind)).toEqual(['vip-released']);
    await settle(clock, 11_000);
    expect(etcd.peekPrefix(keys.events)).toEqual([]);
  });

  it('drops what exceeds the rate limit instead of flooding etcd', async () => {
    const { clock, etcd, keys, log } = setup({ maxPerMinute: 5 });
    for (let i = 0; i < 20; i++) log.record({ group: 'g', kind: 'vip-released', reason: `r${i}` });
    await settle(clock, 500);
    expect(etcd.peekPrefix(keys.events)).toHaveLength(5);
    expect(log.droppedCount).toBe(15);
  });
});
