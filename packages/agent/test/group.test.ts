import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger, parseCidr, type GroupSettings, type Vip } from '@coord/core';
import { defaultTiming } from '@coord/election';
import type { AddressLifetime, Announcer, HostAddress, VipPort } from '@coord/vip';
import { GroupRunner, type GroupEtcdPort } from '../src/group.js';

const vip = (text: string): Vip => {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(r.reason);
  return r.vip;
};

/** Records every host and etcd action in one ordered log. */
function harness() {
  const log: string[] = [];
  const held = new Set<string>();
  const vipPort: VipPort = {
    list: () => Promise.resolve([...held].map((a): HostAddress => ({ address: a, prefix: 24, family: 4 }))),
    add: (_i: string, v: Vip, l?: AddressLifetime) => {
      log.push(`add ${v.address} valid=${l?.validSec}`);
      const was = held.has(v.address);
      held.add(v.address);
      return Promise.resolve(was ? 'present' : 'added');
    },
    refresh: (_i: string, v: Vip) => {
      log.push(`refresh ${v.address}`);
      return Promise.resolve('refreshed' as const);
    },
    remove: (_i: string, v: Vip) => {
      log.push(`remove ${v.address}`);
      return Promise.resolve(held.delete(v.address) ? 'removed' : 'absent');
    },
    close: () => {},
  };
  const announcer: Announcer = {
    announce: (_i, v) => {
      log.push(`announce ${v.address}`);
      return { ok: true, via: 'packet', frames: 2 };
    },
    close: () => {},
  };
  const etcd: GroupEtcdPort = {
    campaign: () => {
      log.push('campaign');
      return Promise.resolve({ won: true, epoch: 42 });
    },
    resign: (_g, epoch) => {
      log.push(`resign ${epoch}`);
      return Promise.resolve(true);
    },
    keepaliveNow: () => log.push('keepalive'),
    restartSession: () => log.push('restart-session'),
  };
  const settings: GroupSettings = {
    name: 'web',
    interface: 'eth0',
    vips: [vip('10.0.0.50/24')],
    priority: 100,
    preempt: true,
    preemptDelayMs: 0,
    announce: { count: 3, intervalMs: 100, refreshMs: 10_000 },
    vrrp: undefined,
  };
  const clock = new FakeClock();
  const runner = new GroupRunner({
    settings,
    node: 'lb1',
    vipPort,
    announcer,
    etcd,
    clock,
    logger: new MemoryLogger(),
    vacancyFallbackMs: 2000,
  });
  return { log, held, runner, clock };
}

const settle = () => new Promise((r) => setImmediate(r));

async function elect(h: ReturnType<typeof harness>) {
  const { runner, clock } = h;
  runner.dispatch({
    type: 'session-up',
    now: clock.now(),
    leaseId: 'L',
    timing: defaultTiming(1000),
    sentAt: clock.now(),
  });
  runner.dispatch({
    type: 'members-observed',
    now: clock.now(),
    members: [{ node: 'lb1', priority: 100, preempt: true, preemptDelayMs: 0 }],
  });
  runner.dispatch({ type: 'leader-observed', now: clock.now(), leader: null, clean: true });
  await settle();
  await settle();
}

describe('GroupRunner (effects against fake ports, fake clock)', () => {
  it('claims with a kernel lifetime, announces right after the add, and repeats the announcement', async () => {
    const h = harness();
    await elect(h);
    expect(h.log).toEqual(['campaign', 'add 10.0.0.50 valid=1', 'announce 10.0.0.50']);
    h.clock.advance(100);
    h.runner.dispatch({ type: 'session-acked', now: h.clock.now(), leaseId: 'L', sentAt: h.clock.now() - 1 });
    h.clock.advance(100);
    await settle();
    expect(h.log.filter((l) => l.startsWith('announce'))).toHaveLength(3);
  });

  it('a wall-clock jump of an hour changes nothing; the monotonic deadline still fences', async () => {
    const h = harness();
    await elect(h);
    h.clock.jumpWall(3_600_000);
    h.clock.advance(500);
    await settle();
    expect(h.runner.current.role).toBe('leader');
    expect(h.held.has('10.0.0.50')).toBe(true);
    h.clock.jumpWall(-7_200_000);
    h.clock.advance(500); // past last ack + TTL − margin, with no ack since
    await settle();
    expect(h.runner.current.role).toBe('follower');
    expect(h.held.has('10.0.0.50')).toBe(false);
    expect(h.log.slice(-2)).toEqual(['remove 10.0.0.50', 'restart-session']);
  });

  it('on stop, the VIP is removed before the leadership is released', async () => {
    const h = harness();
    await elect(h);
    h.runner.dispatch({ type: 'stop', now: h.clock.now() });
    await h.runner.settle();
    const remove = h.log.indexOf('remove 10.0.0.50');
    const resign = h.log.indexOf('resign 42');
    expect(remove).toBeGreaterThan(0);
    expect(resign).toBeGreaterThan(remove);
  });

  it('reconcile: the holder restores a VIP removed behind its back; a follower removes one it should not have', async () => {
    const h = harness();
    await elect(h);
    h.held.clear();
    h.runner.reconcile(new Set());
    h.runner.dispatch({ type: 'session-acked', now: h.clock.now(), leaseId: 'L', sentAt: h.clock.now() });
    await settle();
    expect(h.held.has('10.0.0.50')).toBe(true);

    const f = harness();
    f.held.add('10.0.0.50');
    f.runner.reconcile(new Set(['10.0.0.50']));
    await settle();
    expect(f.held.has('10.0.0.50')).toBe(false);
  });
});
