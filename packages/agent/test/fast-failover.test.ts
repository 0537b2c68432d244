/**
 * Fast failover (docs/design.md, "Peer channel and fast failover") in the simulated cluster of sim.ts: real nodes, an in-memory etcd
 * and peer channel, probes answered by every kernel that holds the VIP and has carrier, and the exact two-holder
 * checker. Times are the fake clock's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { initialState, type GroupState } from '@coord/election';
import { FastFailover, suspicion, SUSPECT_MISSES, type FastFailoverGroup } from '../src/fast-failover.js';
import { Sim } from './sim.js';

let sim: Sim | undefined;
afterEach(() => {
  sim?.close();
  sim = undefined;
});

function three(): Sim {
  sim = new Sim({
    nodes: [
      { name: 'a', priority: 150 },
      { name: 'b', priority: 100 },
      { name: 'c', priority: 50 },
    ],
    fastFailover: true,
  });
  return sim;
}

async function settled(s: Sim): Promise<void> {
  await s.startAll();
  await s.until('a holds', () => s.holder() === 'a', 3000);
  await s.run(1000);
}

const revokes = (s: Sim, node: string) =>
  s.logs(node, 'fast failover: revoking the silent holder’s lease (nobody answers for the VIP)');

describe('fast failover in a simulated cluster', () => {
  it('kill -9 with the cable pulled: b revokes a’s lease and holds within 350 ms, never two holders on the LAN', async () => {
    const s = three();
    await settled(s);
    s.kill('a');
    s.setLink('a', false);
    const took = await s.until('b holds on the LAN', () => s.lanHolders().join() === 'b', 3000, 1);
    expect(took).toBeLessThanOrEqual(350);
    expect(revokes(s, 'b')).toHaveLength(1);
    expect(revokes(s, 'c')).toHaveLength(0); // only the node the group would elect acts
    const won = s.logs('b', 'transition').filter((f) => f.to === 'leader');
    expect(won.at(-1)?.reason).toBe('elected'); // claimed at once: the vacancy was checked on the wire
    // a's copy expires on its own host; its cable goes back in after that.
    await s.run(2000);
    s.setLink('a', true);
    await s.run(500);
    expect(s.holders()).toEqual(['b']);
    expect(s.lan.violations).toEqual([]);
  });

  it('a frozen holder’s kernel still answers: nobody revokes, the lease decides as without fast failover', async () => {
    const s = three();
    await settled(s);
    s.node('a').clock.freeze();
    await s.run(400);
    expect(
      s.logs('b', 'fast failover: the silent holder’s VIP still answers; waiting for its lease'),
    ).toHaveLength(1);
    await s.until('b holds', () => s.holder() === 'b', 5000);
    s.node('a').clock.thaw();
    await s.run(2000);
    expect(revokes(s, 'b')).toHaveLength(0);
    expect(s.lan.violations).toEqual([]);
  });

  it('30 % of heartbeats lost for 20 s: suspicions come and go, no takeover', async () => {
    const s = three();
    await settled(s);
    s.udpLoss = 0.3;
    await s.run(20_000);
    expect(s.holders()).toEqual(['a']);
    expect(revokes(s, 'b')).toHaveLength(0);
    expect(s.lan.violations).toEqual([]);
  });

  it('heartbeats blocked entirely: a node that hears none of its peers suspects nobody', async () => {
    const s = three();
    await settled(s);
    s.udpLoss = 1;
    await s.run(5000);
    expect(s.holders()).toEqual(['a']);
    expect(revokes(s, 'b')).toHaveLength(0);
    expect(s.lan.violations).toEqual([]);
  });

  it('one-way cut (etcd’s replies lost): the holder fences and gives up, its resign cannot land, b revokes its lease', async () => {
    const s = three();
    await settled(s);
    const a = s.node('a');
    // etcd's replies are lost; keepalives still arrive (the lease lives), a's resign never lands (over a real
    // link its connection cannot be set up again).
    a.client.cut('replies');
    const txn = a.client.txn.bind(a.client);
    a.client.txn = () => new Promise(() => {});
    const took = await s.until('b holds', () => s.holder() === 'b', 5000, 1);
    // Deadline (0.9 s) + fence grace (0.5 s) + three heartbeats saying so + the wire check; the lease itself
    // lives on, kept alive by keepalives that still arrive.
    expect(took).toBeLessThan(1900);
    const gaveUp = s.logs(
      'b',
      'fast failover: the holder gave the group up but its key remains; probing the wire',
    );
    expect(gaveUp).toHaveLength(1);
    expect(revokes(s, 'b')).toHaveLength(1);
    a.client.txn = txn;
    a.client.heal();
    await s.run(3000);
    expect(s.lan.violations).toEqual([]);
  });

  it('holder cut from the LAN with coord running: b takes over; a learns its lease is gone and drops the VIP before its cable is back', async () => {
    const s = three();
    await settled(s);
    s.setLink('a', false);
    await s.until('b holds on the LAN', () => s.lanHolders().join() === 'b', 3000, 1);
    await s.until('a dropped its copy', () => !s.node('a').kernel.holds(s.address), 1000, 1);
    s.setLink('a', true);
    await s.run(3000);
    expect(s.lan.violations).toEqual([]);
  });

  it('without fast failover on the holder the channel stays silent and nobody is suspected', async () => {
    sim = new Sim({
      nodes: [
        { name: 'a', priority: 150 },
        { name: 'b', priority: 100 },
      ],
    });
    const s = sim;
    await settled(s);
    s.kill('a');
    s.setLink('a', false);
    const took = await s.until('b holds on the LAN', () => s.lanHolders().join() === 'b', 5000);
    expect(took).toBeGreaterThan(900); // the lease's expiry, as before
    expect(s.lan.violations).toEqual([]);
  });
});

describe('suspicion', () => {
  const base = (): GroupState => ({
    ...initialState(),
    session: {
      leaseId: '2',
      timing: { ttlMs: 1000, marginMs: 100, ackWindowMs: 125, lifetimeSec: 1 },
      lastAckSentAt: 900,
      lastAckAt: 901,
    },
    leader: { node: 'a', epoch: 9, leaseId: '1' },
    leaderKnown: true,
    members: [
      { node: 'a', priority: 150, preempt: true, preemptDelayMs: 0 },
      { node: 'b', priority: 100, preempt: true, preemptDelayMs: 0 },
      { node: 'c', priority: 50, preempt: true, preemptDelayMs: 0 },
    ],
  });
  const heard = (at: number, epoch = 9, holds = true) => ({
    node: 'a',
    leaseId: '1',
    seq: 1,
    at,
    groups: new Map([
      ['g', { epoch, holdsUntil: holds ? at + 800 : null, asking: false, promise: false, echoSeq: 0 }],
    ]),
  });
  const ask = (o: {
    self?: string;
    state?: GroupState;
    heardAt?: number;
    epoch?: number;
    holds?: boolean;
    others?: (number | undefined)[];
    now?: number;
  }) =>
    suspicion({
      self: o.self ?? 'b',
      state: o.state ?? base(),
      heard: o.heardAt === undefined ? undefined : heard(o.heardAt, o.epoch, o.holds),
      group: 'g',
      now: o.now ?? 1000,
      heartbeatMs: 50,
      othersHeardAt: o.others ?? [990],
    });
  const silent = 1000 - SUSPECT_MISSES * 50;

  it('suspects a holder heard holding this epoch and silent for three heartbeats, from the next best only', () => {
    expect(ask({ heardAt: silent })).toEqual({
      suspect: true,
      kind: 'silent',
      node: 'a',
      leaseId: '1',
      epoch: 9,
      silentMs: 150,
    });
    expect(ask({ heardAt: silent + 1 }).suspect).toBe(false); // two and a bit heartbeats
    expect(ask({ self: 'c', heardAt: silent }).suspect).toBe(false); // b would be elected, not c
  });

  it('never suspects a holder it never heard holding this epoch, or one that is not holding', () => {
    expect(ask({}).suspect).toBe(false);
    expect(ask({ heardAt: silent, epoch: 8 }).suspect).toBe(false);
    expect(ask({ heardAt: silent, holds: false }).suspect).toBe(false);
  });

  it('a holder heard saying it leads nothing here while its key remains has abandoned the group', () => {
    expect(ask({ heardAt: 990, epoch: 0, holds: false })).toMatchObject({ suspect: true, kind: 'abandoned' });
    // Still leading this epoch without the VIP (the fence grace, waiting for a prompt ack): not abandoned.
    expect(ask({ heardAt: 990, epoch: 9, holds: false }).suspect).toBe(false);
    // Its newest word counts, however long ago (the caller waits until it has stood for three heartbeats).
    expect(ask({ heardAt: silent - 500, epoch: 0, holds: false })).toMatchObject({ kind: 'abandoned' });
  });

  it('a node that hears none of its other peers suspects nobody (the silence is likely its own)', () => {
    expect(ask({ heardAt: silent, others: [undefined] }).suspect).toBe(false);
    expect(ask({ heardAt: silent, others: [500] }).suspect).toBe(false);
    expect(ask({ heardAt: silent, others: [] }).suspect).toBe(true); // two nodes: nobody else to hear
  });

  it('a node whose own etcd does not answer suspects nobody (no revoke could land, no campaign follow)', () => {
    const quiet = {
      ...base(),
      session: { ...(base().session as NonNullable<GroupState['session']>), lastAckSentAt: 640 },
    };
    expect(ask({ heardAt: silent, state: quiet }).suspect).toBe(false);
    const answering = {
      ...base(),
      session: { ...(base().session as NonNullable<GroupState['session']>), lastAckSentAt: 660 },
    };
    expect(ask({ heardAt: silent, state: answering }).suspect).toBe(true);
  });

  it('only a follower with a session suspects', () => {
    expect(ask({ heardAt: silent, state: { ...base(), role: 'campaigning' } }).suspect).toBe(false);
    expect(ask({ heardAt: silent, state: { ...base(), session: null } }).suspect).toBe(false);
  });
});

describe('FastFailover', () => {
  it('vouches for a won vacancy only when it began with our own revoke, and only briefly', () => {
    const clock = new FakeClock(0);
    const revoked: string[] = [];
    const state: GroupState = {
      ...initialState(),
      session: {
        leaseId: '2',
        timing: { ttlMs: 1000, marginMs: 100, ackWindowMs: 125, lifetimeSec: 1 },
        lastAckSentAt: 0,
        lastAckAt: 0,
      },
      leader: { node: 'a', epoch: 9, leaseId: '1' },
      leaderKnown: true,
      members: [
        { node: 'a', priority: 150, preempt: true, preemptDelayMs: 0 },
        { node: 'b', priority: 100, preempt: true, preemptDelayMs: 0 },
      ],
    };
    const ff = new FastFailover({
      self: 'b',
      heartbeatMs: 50,
      clock,
      logger: new MemoryLogger(),
      prober: { open: () => ({ ok: true, session: { probe: () => 1, drain: () => [], close: () => {} } }) },
      lastHeard: (node) =>
        node === 'a'
          ? {
              node: 'a',
              leaseId: '1',
              seq: 1,
              at: 0,
              groups: new Map([
                ['g', { epoch: 9, holdsUntil: 800, asking: false, promise: false, echoSeq: 0 }],
              ]),
            }
          : undefined,
      revoke: (lease) => {
        revoked.push(lease);
        return Promise.resolve();
      },
    });
    const groups: FastFailoverGroup[] = [{ name: 'g', interface: 'eth0', vips: [], state: () => state }];
    clock.advance(150);
    ff.evaluate(groups);
    expect(revoked).toEqual([]); // probing first
    clock.advance(100);
    expect(revoked).toEqual(['1']);
    expect(ff.vouchesFor('g', '1')).toBe(true);
    expect(ff.vouchesFor('g', '7')).toBe(false);
    clock.advance(600);
    expect(ff.vouchesFor('g', '1')).toBe(false);
    ff.close();
  });
});
