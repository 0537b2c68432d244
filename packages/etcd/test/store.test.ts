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
