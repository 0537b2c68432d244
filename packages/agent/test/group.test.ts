import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger, parseCidr, type GroupSettings, type Vip } from '@coord/core';
import { defaultTiming, takeoverGuardMs, WIRE_CAP_LIFETIMES, type VacancyInfo } from '@coord/election';
import type { AddressLifetime, Announcer, HostAddress, VipPort } from '@coord/vip';
import { GroupRunner, type GroupEtcdPort, type ProbePort } from '../src/group.js';

const vip = (text: string): Vip => {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(r.reason);
  return r.vip;
};

interface HarnessOptions {
  vacancy?: VacancyInfo;
  /** Answers the fake wire gives to each drain (a stale copy elsewhere). */
  wire?: { answering: boolean };
  prober?: 'none';
}

/** Records every host and etcd action in one ordered log. */
function harness(opts: HarnessOptions = {}) {
  const log: string[] = [];
  const held = new Set<string>();
  const faults = {
    removeThrows: false,
    addResult: undefined as 'late-reply' | undefined,
    resignFailures: 0,
    lease: 'L' as string | null,
  };
  const vipPort: VipPort = {
    list: () => Promise.resolve([...held].map((a): HostAddress => ({ address: a, prefix: 24, family: 4 }))),
    add: (_i: string, v: Vip, l?: AddressLifetime) => {
      log.push(`add ${v.address} valid=${l?.validSec}`);
      const was = held.has(v.address);
      held.add(v.address);
      if (faults.addResult !== undefined) return Promise.resolve(faults.addResult);
      return Promise.resolve(was ? 'present' : 'added');
    },
    refresh: (_i: string, v: Vip) => {
      log.push(`refresh ${v.address}`);
      return Promise.resolve('refreshed' as const);
    },
    remove: (_i: string, v: Vip) => {
      log.push(`remove ${v.address}`);
      if (faults.removeThrows) return Promise.reject(new Error('Request rejected: EPERM'));
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
      return Promise.resolve({ won: true, epoch: 42, vacancy: opts.vacancy ?? { clean: true } });
    },
    resign: (_g, epoch, clean) => {
      log.push(`resign ${epoch}${clean ? '' : ' unclean'}`);
      if (faults.resignFailures > 0) {
        faults.resignFailures--;
        return Promise.reject(new Error('etcd: resign failed: etcdserver: leader changed'));
      }
      return Promise.resolve(true);
    },
    isCurrentLease: (id) => id === faults.lease,
    keepaliveNow: () => log.push('keepalive'),
    restartSession: (reason) => log.push(`restart-session (${reason})`),
  };
  const probes = { opened: 0, sent: 0, closed: 0 };
  const prober: ProbePort = {
    open: () => {
      probes.opened++;
      return {
        ok: true,
        session: {
          probe: () => {
            probes.sent++;
            return 1;
          },
          drain: () =>
            opts.wire?.answering === true
              ? [{ address: '10.0.0.50', mac: '02:00:00:00:00:99', kind: 'arp-reply' }]
              : [],
          close: () => {
            probes.closed++;
          },
        },
      };
    },
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
    syncGroup: undefined,
    advertise: undefined,
    follows: undefined,
  };
  const clock = new FakeClock();
  const logger = new MemoryLogger();
  const runner = new GroupRunner({
    settings,
    node: 'lb1',
    vipPort,
    announcer,
    ...(opts.prober === 'none' ? {} : { prober }),
    etcd,
    clock,
    logger,
    vacancyFallbackMs: 2000,
  });
  return { log, held, runner, clock, faults, probes, logger };
}

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

type Harness = ReturnType<typeof harness>;

async function elect(h: Harness) {
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
  runner.dispatch({ type: 'leader-observed', now: clock.now(), leader: null });
  await settle();
}

/**
 * Move time in small steps, acking a keepalive every 100 ms, letting promises run. Each ack answers a send
 * `ackAgeMs` before it: 1 ms is a healthy session; past the ack window it keeps the lease but refreshes nothing.
 */
async function healthy(h: Harness, ms: number, ackAgeMs = 1) {
  for (let t = 0; t < ms; t += 25) {
    h.clock.advance(25);
    if (h.clock.now() % 100 === 0)
      h.runner.dispatch({
        type: 'session-acked',
        now: h.clock.now(),
        leaseId: 'L',
        sentAt: h.clock.now() - ackAgeMs,
      });
    await settle();
  }
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
    // Fenced: the VIP is gone at once; the key waits out the fence grace for a prompt ack, then is resigned.
    expect(h.held.has('10.0.0.50')).toBe(false);
    expect(h.log.at(-1)).toBe('remove 10.0.0.50');
    h.clock.advance(500);
    await settle();
    expect(h.runner.current.role).toBe('follower');
    expect(h.log.at(-1)).toBe('resign 42');
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

    expect(h.logger.records.map((r) => r.message)).toContain('vip missing on holder; restoring');

    const f = harness();
    f.held.add('10.0.0.50');
    f.runner.reconcile(new Set(['10.0.0.50']));
    await settle();
    expect(f.held.has('10.0.0.50')).toBe(false);
  });

  it('reconcile: a VIP whose lifetime ran out (acks late, none to refresh it with) is logged as expired', async () => {
    const h = harness();
    await elect(h);
    // Acks keep the lease (each answers a send 200 ms before): the deadline moves, but none is prompt enough to
    // refresh the kernel lifetime (1 s) with.
    await healthy(h, 1100, 200);
    expect(h.log.filter((l) => l.startsWith('refresh'))).toEqual([]);
    expect(h.runner.current.role).toBe('leader');
    h.held.clear(); // the kernel's lifetime worker
    h.runner.reconcile(new Set());
    const expired = h.logger.records.find((r) => r.message === 'vip expired on holder');
    expect(expired?.fields).toMatchObject({ epoch: 42 });
    expect(h.logger.records.map((r) => r.message)).not.toContain('vip missing on holder; restoring');
  });

  it('a failed VIP removal never resigns or revokes: the lease is left to expire (issue: failed removal)', async () => {
    // Regression: the group deleted its leader key and the node revoked the lease while the VIP was still on the
    // interface, so the successor's guard started too early (≈700 ms with two holders).
    const h = harness();
    await elect(h);
    h.faults.removeThrows = true;
    h.runner.dispatch({ type: 'stop', now: h.clock.now() });
    await h.runner.settle();
    expect(h.log.some((l) => l.startsWith('resign'))).toBe(false);
    expect(h.log).toContain('restart-session (group web: vip removal failed)');
    expect(h.runner.removalFailed).toBe(true);
  });

  it('a netlink add answered after the ack window removes the VIP at once and fences', async () => {
    const h = harness();
    h.faults.addResult = 'late-reply';
    await elect(h);
    await settle();
    // Removed at once; a fresh keepalive is asked for, whose prompt ack would put it back.
    expect(h.log.slice(0, 2)).toEqual(['campaign', 'add 10.0.0.50 valid=1']);
    expect(h.log.slice(2, 4).sort()).toEqual(['keepalive', 'remove 10.0.0.50']);
    expect(h.held.has('10.0.0.50')).toBe(false);
    expect(h.log.some((l) => l.startsWith('announce'))).toBe(false);
    // The prompt ack put it back once; late again, the second fence of the epoch hands the group over.
    expect(h.log.filter((l) => l.startsWith('add'))).toHaveLength(2);
    expect(h.runner.current.role).toBe('follower');
    expect(h.log.at(-1)).toBe('resign 42');
  });

  it('no gratuitous ARP after the deadline, even when the announce timer fires before the fence timer', async () => {
    const h = harness();
    await elect(h);
    const announced = () => h.log.filter((l) => l.startsWith('announce')).length;
    expect(announced()).toBe(1);
    // The event loop stalls for 2 s with the announce burst pending: past the deadline both timers are due.
    h.clock.stall(2000);
    h.clock.advance(0);
    await settle();
    expect(announced()).toBe(1);
    expect(h.held.has('10.0.0.50')).toBe(false);
    expect(h.runner.current.vipHeld).toBe(false);
  });

  it('retries a resign that failed while its lease lives, and stops once the lease is gone', async () => {
    const h = harness();
    await elect(h);
    h.faults.resignFailures = 2;
    h.runner.dispatch({ type: 'stop', now: h.clock.now() });
    await settle();
    for (let i = 0; i < 10; i++) {
      h.clock.advance(100);
      await settle();
    }
    expect(h.log.filter((l) => l === 'resign 42')).toHaveLength(3);

    const g = harness();
    await elect(g);
    g.faults.resignFailures = 100;
    g.runner.dispatch({ type: 'stop', now: g.clock.now() });
    await settle();
    g.clock.advance(100);
    await settle();
    g.faults.lease = 'L2'; // the session moved on: the old key dies with its lease
    for (let i = 0; i < 20; i++) {
      g.clock.advance(200);
      await settle();
    }
    expect(g.log.filter((l) => l === 'resign 42')).toHaveLength(2);
  });

  it('after an unclean vacancy it probes the wire and claims only once nobody answers', async () => {
    const wire = { answering: true };
    const h = harness({ vacancy: { clean: false, guardMs: undefined, lifetimeMs: undefined }, wire });
    await elect(h);
    expect(h.probes.opened).toBe(1);
    expect(h.log).toEqual(['campaign']);
    const guard = takeoverGuardMs(defaultTiming(1000));
    await healthy(h, guard + 200);
    // The guard is over but a stale copy still answers: no add.
    expect(h.held.has('10.0.0.50')).toBe(false);
    expect(h.probes.sent).toBeGreaterThan(10);
    wire.answering = false;
    await healthy(h, 200);
    expect(h.held.has('10.0.0.50')).toBe(true);
    expect(h.probes.closed).toBe(1);
  });

  it('without a prober it waits the full cap (guard + two lifetimes) after an unclean vacancy', async () => {
    const h = harness({
      vacancy: { clean: false, guardMs: undefined, lifetimeMs: undefined },
      prober: 'none',
    });
    await elect(h);
    const cap = takeoverGuardMs(defaultTiming(1000)) + WIRE_CAP_LIFETIMES * 1000;
    await healthy(h, cap - 50);
    expect(h.held.has('10.0.0.50')).toBe(false);
    await healthy(h, 200);
    expect(h.held.has('10.0.0.50')).toBe(true);
  });
});
