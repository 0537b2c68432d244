import { describe, expect, it } from 'vitest';
import { FakeClock } from '@coord/core';
import {
  clusterKeys,
  decodeLastHolder,
  decodeMember,
  ElectionStore,
  ensurePeerKey,
  updateKey,
  type HolderFacts,
} from '../src/index.js';
import { MemoryEtcd } from '../src/testing.js';
import { elapse } from './support.js';

function setup() {
  const clock = new FakeClock(1000);
  const server = new MemoryEtcd(clock, { expiryScanMs: 500 });
  const client = server.client('n1');
  const keys = clusterKeys('c');
  const store = new ElectionStore(client, keys);
  const lease = (ttl = 1) => server.grant(ttl).leaseId;
  const facts = (node: string, leaseId: string): HolderFacts => ({
    node,
    leaseId,
    guardMs: 275,
    lifetimeMs: 1000,
  });
  return { clock, server, client, keys, store, lease, facts };
}

/** Run a store call to completion on the fake clock. */
async function call<T>(clock: FakeClock, p: Promise<T>): Promise<T> {
  let done = false;
  const r = p.finally(() => {
    done = true;
  });
  while (!done) await elapse(clock, 1, 1);
  return r;
}

describe('ElectionStore: how a vacancy began is read by the campaign that ends it', () => {
  it("a group's first election finds no record: unclean, nothing known", async () => {
    const s = setup();
    const r = await call(s.clock, s.store.campaign('g', s.facts('a', s.lease())));
    expect(r).toEqual({
      won: true,
      epoch: s.server.peek(s.keys.leader('g'))?.createRevision,
      vacancy: { clean: false, previous: undefined, guardMs: undefined, lifetimeMs: undefined },
    });
  });

  it('after a clean resign the next campaign is told clean; after a lease expiry, unclean with the guard', async () => {
    const s = setup();
    const la = s.lease(1);
    const a = await call(s.clock, s.store.campaign('g', s.facts('a', la)));
    if (!a.won) throw new Error('a lost');
    expect(await call(s.clock, s.store.resign('g', a.epoch, s.facts('a', la), true))).toBe(true);
    const lb = s.lease(1);
    const b = await call(s.clock, s.store.campaign('g', s.facts('b', lb)));
    expect(b).toMatchObject({ won: true, vacancy: { clean: true, previous: 'a' } });
    // b is killed: its lease expires, the leader key goes with it; the record stays, not released.
    await elapse(s.clock, 1600, 50);
    expect(s.server.peek(s.keys.leader('g'))).toBeUndefined();
    expect(decodeLastHolder(s.server.peek(s.keys.lastHolder('g'))?.value ?? Buffer.alloc(0))).toMatchObject({
      node: 'b',
      released: false,
    });
    const c = await call(s.clock, s.store.campaign('g', s.facts('c', s.lease(1))));
    expect(c).toMatchObject({
      won: true,
      vacancy: { clean: false, previous: 'b', guardMs: 275, lifetimeMs: 1000 },
    });
  });

  it('regression (stale clean vacancy): a node that only saw the clean release still learns the later expiry', async () => {
    // A releases cleanly; C's view stops there. B wins and dies unseen by C. C's campaign must be told unclean,
    // whatever C's view says — the campaign reads the record in the same transaction that wins.
    const s = setup();
    const la = s.lease(1);
    const a = await call(s.clock, s.store.campaign('g', s.facts('a', la)));
    if (!a.won) throw new Error('a lost');
    await call(s.clock, s.store.resign('g', a.epoch, s.facts('a', la), true));
    const b = await call(s.clock, s.store.campaign('g', s.facts('b', s.lease(1))));
    expect(b.won).toBe(true);
    await elapse(s.clock, 1600, 50);
    const c = await call(s.clock, s.store.campaign('g', s.facts('c', s.lease(1))));
    expect(c).toMatchObject({ won: true, vacancy: { clean: false, previous: 'b' } });
  });

  it('an unclean resign (VIP removal not confirmed) leaves the vacancy unclean', async () => {
    const s = setup();
    const la = s.lease(1);
    const a = await call(s.clock, s.store.campaign('g', s.facts('a', la)));
    if (!a.won) throw new Error('a lost');
    expect(await call(s.clock, s.store.resign('g', a.epoch, s.facts('a', la), false))).toBe(true);
    const b = await call(s.clock, s.store.campaign('g', s.facts('b', s.lease(1))));
    expect(b).toMatchObject({ won: true, vacancy: { clean: false, previous: 'a' } });
  });

  it('only the holder of the epoch can resign; a campaign against a held group loses', async () => {
    const s = setup();
    const la = s.lease(1);
    const a = await call(s.clock, s.store.campaign('g', s.facts('a', la)));
    if (!a.won) throw new Error('a lost');
    expect(await call(s.clock, s.store.campaign('g', s.facts('b', s.lease(1))))).toEqual({ won: false });
    expect(await call(s.clock, s.store.resign('g', a.epoch + 100, s.facts('b', la), true))).toBe(false);
    expect(s.server.peek(s.keys.leader('g'))).toBeDefined();
  });

  it('a hostile last-holder record cannot make a vacancy clean or stall it beyond the cap', async () => {
    const s = setup();
    s.server.put(s.keys.lastHolder('g'), JSON.stringify({ node: 'x', released: 'yes', guardMs: 1e9 }));
    const r = await call(s.clock, s.store.campaign('g', s.facts('a', s.lease())));
    expect(r).toMatchObject({ won: true, vacancy: { clean: false, previous: undefined } });
  });

  describe('handing over (docs/design.md, "Handing over")', () => {
    /** a holds g; b is a member (its record under its own lease). */
    async function held() {
      const s = setup();
      const la = s.lease(1);
      const lb = s.lease(1);
      const a = await call(s.clock, s.store.campaign('g', s.facts('a', la)));
      if (!a.won) throw new Error('a lost');
      const member = {
        node: 'b',
        groups: { g: { priority: 90, preempt: true, preemptDelayMs: 0, vips: [] } },
        interface: 'eth0',
        version: '1',
        startedAt: 1,
        candidate: true,
        takeover: { guardMs: 300, lifetimeMs: 2000 },
      };
      await call(s.clock, s.store.putMember(lb, member));
      const rev = s.server.peek(s.keys.member('b'))?.modRevision ?? 0;
      const to = { node: 'b', leaseId: lb, memberRevision: rev, guardMs: 300, lifetimeMs: 2000 };
      return { s, la, lb, epoch: a.epoch, to, member };
    }

    it('puts the key under the successor’s lease with a new epoch, marked, and records the successor', async () => {
      const { s, la, lb, epoch, to } = await held();
      expect(await call(s.clock, s.store.handOver('g', epoch, 'a', to))).toBe(true);
      const key = s.server.peek(s.keys.leader('g'));
      expect(key?.lease).toBe(lb);
      expect(key?.modRevision).toBeGreaterThan(epoch); // the successor's epoch is the handover's revision
      expect(JSON.parse(key?.value.toString() ?? '')).toEqual({
        node: 'b',
        leaseId: lb,
        handover: { from: 'a', epoch },
      });
      // The record says what b's own campaign would have said: b holds, not released, b's guard and lifetime.
      expect(decodeLastHolder(s.server.peek(s.keys.lastHolder('g'))?.value ?? Buffer.alloc(0))).toEqual({
        node: 'b',
        leaseId: lb,
        guardMs: 300,
        lifetimeMs: 2000,
        released: false,
      });
      // a's lease ending no longer touches the group; b resigns with its epoch (the key's mod revision).
      s.server.revoke(la);
      expect(s.server.peek(s.keys.leader('g'))).toBeDefined();
      const bEpoch = key?.modRevision ?? 0;
      expect(await call(s.clock, s.store.resign('g', bEpoch, s.facts('b', lb), true))).toBe(true);
      expect(s.server.peek(s.keys.leader('g'))).toBeUndefined();
    });

    it('applies only while the group is ours and the successor’s record is the one read', async () => {
      const { s, lb, epoch, to, member } = await held();
      expect(await call(s.clock, s.store.handOver('g', epoch + 100, 'a', to))).toBe(false);
      // b rewrote its record since we read it (say, a lower priority): no handover, nothing written.
      await call(s.clock, s.store.putMember(lb, { ...member, candidate: false }));
      expect(await call(s.clock, s.store.handOver('g', epoch, 'a', to))).toBe(false);
      expect(s.server.peek(s.keys.leader('g'))?.modRevision).toBe(epoch);
      expect(decodeLastHolder(s.server.peek(s.keys.lastHolder('g'))?.value ?? Buffer.alloc(0))?.node).toBe(
        'a',
      );
    });

    it('fails (nothing written) when the successor’s lease is gone', async () => {
      const { s, lb, epoch, to } = await held();
      s.server.revoke(lb); // b's member key goes with it: the record compare fails first
      expect(await call(s.clock, s.store.handOver('g', epoch, 'a', to))).toBe(false);
      expect(s.server.peek(s.keys.leader('g'))?.modRevision).toBe(epoch);
    });
  });

  it('member records round-trip; the candidate flag defaults to true for records without it', async () => {
    const s = setup();
    const l = s.lease(5);
    const rec = {
      node: 'a',
      groups: { g: { priority: 100, preempt: true, preemptDelayMs: 0, vips: ['10.0.0.1/24'] } },
      interface: 'eth0',
      version: '1',
      startedAt: 1,
      candidate: false,
    };
    await call(s.clock, s.store.putMember(l, rec));
    expect(decodeMember(s.server.peek(s.keys.member('a'))?.value ?? Buffer.alloc(0))).toEqual(rec);
    const { candidate: _omit, ...old } = rec;
    expect(decodeMember(Buffer.from(JSON.stringify(old)))?.candidate).toBe(true);
    expect(decodeMember(Buffer.from('{"node":"a","groups":{"g":{"priority":900}}}'))).toBeUndefined();
    expect(decodeMember(Buffer.from('not json'))).toBeUndefined();
  });
});

describe('updateKey', () => {
  it('retries a read-modify-write that raced with another writer', async () => {
    const s = setup();
    s.server.put('/k', '0');
    let raced = false;
    const r = await call(
      s.clock,
      updateKey(s.client, '/k', (cur) => {
        if (!raced) {
          raced = true;
          s.server.put('/k', '5'); // someone else wrote in between our read and our write
        }
        return { put: String(Number(cur?.toString() ?? '0') + 1) };
      }),
    );
    expect(r.changed).toBe(true);
    expect(s.server.peek('/k')?.value.toString()).toBe('6');
  });
});

describe('ensurePeerKey', () => {
  it('the first node creates the key, later ones read the same one; a key in etcd is never replaced', async () => {
    const s = setup();
    const first = Buffer.alloc(32, 1);
    expect(await call(s.clock, ensurePeerKey(s.client, s.keys, first))).toEqual(first);
    expect(await call(s.clock, ensurePeerKey(s.client, s.keys, Buffer.alloc(32, 2)))).toEqual(first);
  });

  it('refuses a value that is not a 32-byte key, naming the key to delete', async () => {
    const s = setup();
    await call(
      s.clock,
      s.client.put(s.keys.peerKey, JSON.stringify({ key: Buffer.alloc(8).toString('base64') })),
    );
    const outcome = await call(
      s.clock,
      ensurePeerKey(s.client, s.keys, Buffer.alloc(32, 2)).then(
        () => 'accepted',
        (e: unknown) => (e instanceof Error ? e.message : String(e)),
      ),
    );
    expect(outcome).toBe('/coord/c/peer/key in etcd does not hold a 32-byte peer key');
  });
});
