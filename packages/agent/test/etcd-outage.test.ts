/**
 * Riding out etcd outages (`--etcd-outage hold`, docs/design.md "Riding out etcd outages") in the simulated cluster
 * of sim.ts: real nodes, an in-memory etcd that can lose quorum or one client, an in-memory peer channel, and the
 * exact two-holder checker. Times are the fake clock's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Sim } from './sim.js';

let sim: Sim | undefined;
afterEach(() => {
  sim?.close();
  sim = undefined;
});

function three(o: { hold?: boolean; fast?: boolean; maxSec?: number } = {}): Sim {
  sim = new Sim({
    nodes: [
      { name: 'a', priority: 150 },
      { name: 'b', priority: 100 },
      { name: 'c', priority: 50 },
    ],
    fastFailover: o.fast ?? true,
    etcdOutage: o.hold === false ? 'fence' : 'hold',
    ...(o.maxSec === undefined ? {} : { etcdOutageMax: o.maxSec }),
  });
  return sim;
}

async function settled(s: Sim): Promise<number> {
  await s.startAll();
  await s.until('a holds', () => s.holder() === 'a', 3000);
  await s.run(1000);
  return s.node('a').node.status().groups[0]?.epoch ?? -1;
}

/** Run `ms`, sampling who holds the VIP on the LAN every `step` ms; returns the samples where it was not `who`. */
async function sample(
  s: Sim,
  ms: number,
  who: string[],
  step = 5,
): Promise<{ at: number; held: string[] }[]> {
  const off: { at: number; held: string[] }[] = [];
  const start = s.clock.now();
  for (let t = 0; t < ms; t += step) {
    await s.run(step, step);
    const held = s.lanHolders();
    if (held.join() !== who.join()) off.push({ at: s.clock.now() - start, held });
  }
  return off;
}

const holding = 'etcd unreachable: every other member promised; holding the VIP past the lease';

describe('--etcd-outage hold in a simulated cluster', () => {
  it('etcd loses quorum for 30 s: the holder keeps its VIP throughout on promises, and keeps its epoch after', async () => {
    const s = three();
    const epoch = await settled(s);
    s.etcd.loseQuorum();
    expect(await sample(s, 30_000, ['a'])).toEqual([]);
    expect(s.logs('a', holding)).toHaveLength(1);
    expect(s.node('a').node.status().groups[0]?.outage?.holdingMsLeft).toBeGreaterThan(0);
    expect(s.node('b').node.status().groups[0]?.outage?.promisedTo).toBe('a');
    s.etcd.restore();
    expect(await sample(s, 3000, ['a'])).toEqual([]);
    expect(s.node('a').node.status().groups[0]?.epoch).toBe(epoch);
    expect(s.node('b').node.status().groups[0]?.outage?.promisedTo).toBeNull();
    expect(s.lan.violations).toEqual([]);
  });

  it('without fast failover too: the peer channel runs for the hold alone', async () => {
    const s = three({ fast: false });
    await settled(s);
    s.etcd.loseQuorum();
    expect(await sample(s, 10_000, ['a'])).toEqual([]);
    s.etcd.restore();
    expect(await sample(s, 3000, ['a'])).toEqual([]);
    expect(s.lan.violations).toEqual([]);
  });

  it('fence (the default): the same outage takes the VIP away within the lease', async () => {
    const s = three({ hold: false });
    await settled(s);
    s.etcd.loseQuorum();
    const gone = await s.until('no holder', () => s.lanHolders().length === 0, 3000, 5);
    expect(gone).toBeLessThanOrEqual(1000);
    await s.run(5000);
    expect(s.lanHolders()).toEqual([]);
    s.etcd.restore();
    await s.until('a holder again', () => s.lanHolders().length === 1, 5000);
    expect(s.lan.violations).toEqual([]);
  });

  it('fence: after quorum returns, a node revokes the lease it lost, so its old key does not wait for the lease', async () => {
    const s = three({ hold: false });
    await settled(s);
    s.etcd.loseQuorum();
    await s.run(3000);
    expect(s.lanHolders()).toEqual([]);
    s.etcd.restore();
    // etcd's new leader extends every lease by its TTL: without the revoke the old key lasts about that long.
    const back = await s.until('a holder again', () => s.lanHolders().length === 1, 5000);
    console.log(`quorum back: one holder after ${back} ms`);
    expect(back).toBeLessThan(700);
    expect(s.logs('a', 'previous lease revoked').length).toBeGreaterThan(0);
    expect(s.lan.violations).toEqual([]);
  });

  it('the holder alone cut from etcd: the others reach it and refuse, the holder fences, b takes over', async () => {
    const s = three();
    await settled(s);
    s.node('a').client.cut('both');
    expect(await s.until('b holds', () => s.lanHolders().join() === 'b', 5000, 1)).toBeLessThan(2000);
    expect(s.logs('a', holding)).toHaveLength(0);
    expect(s.logs('a', 'etcd unreachable: promises missing').at(-1)?.missing).toBe('b,c');
    expect(
      s.logs(
        'b',
        'etcd unreachable: promised the holder not to campaign until it releases, recovers or falls silent',
      ),
    ).toHaveLength(0);
    await s.run(3000);
    expect(s.holders()).toEqual(['b']);
    s.node('a').client.heal();
    await s.run(3000);
    expect(s.holders()).toEqual(['a']); // back with a new lease, and it preempts
    expect(s.lan.violations).toEqual([]);
  });

  it('the holder killed during an outage: no holder until etcd returns, then one within 2 s', async () => {
    const s = three();
    await settled(s);
    s.etcd.loseQuorum();
    await s.run(2000);
    s.kill('a');
    await s.run(5000);
    expect(s.holders()).toEqual([]); // its kernel dropped the address; nobody may be elected without etcd
    s.etcd.restore();
    const took = await s.until('b holds', () => s.holder() === 'b', 5000, 1);
    expect(took).toBeLessThanOrEqual(2000);
    expect(s.lan.violations).toEqual([]);
  });

  it('a member dies during the outage: its promise is missing, so the holder fences', async () => {
    const s = three();
    await settled(s);
    s.etcd.loseQuorum();
    await s.run(2000);
    expect(s.holders()).toEqual(['a']);
    s.kill('c');
    const gone = await s.until('a fenced', () => s.holders().length === 0, 3000, 5);
    expect(gone).toBeLessThanOrEqual(1500);
    await s.run(3000);
    expect(s.logs('a', 'etcd unreachable: a promise ran out; VIP removed').at(-1)?.member).toBe('c');
    expect(s.holders()).toEqual([]);
    s.etcd.restore();
    await s.until('a holder again', () => s.holders().length === 1, 5000);
    expect(s.lan.violations).toEqual([]);
  });

  it('one member still reaches etcd for a moment (a raft leader renews leases until it notices): the holder fences, then takes its VIP back on the late promise', async () => {
    const s = three();
    await settled(s);
    s.node('a').client.cut('both');
    s.node('b').client.cut('both');
    await s.run(700);
    s.node('c').client.cut('both');
    const off = await sample(s, 5000, ['a']);
    expect(off.length).toBeGreaterThan(0); // fenced while c refused
    expect(off.at(-1)?.at ?? Infinity).toBeLessThan(1000); // and back within the fence grace
    expect(s.logs('a', 'etcd unreachable: promises missing').at(-1)?.missing).toBe('c');
    expect(s.logs('a', holding)).toHaveLength(1);
    // Here etcd itself stayed up (only the clients were cut), so a's lease expired meanwhile: once healed, the
    // group is elected anew (a real quorum loss keeps every lease: the 30 s test above).
    for (const n of ['a', 'b', 'c']) s.node(n).client.heal();
    await s.until('one holder again', () => s.lanHolders().length === 1, 5000);
    await s.run(2000);
    expect(s.lanHolders()).toHaveLength(1);
    expect(s.lan.violations).toEqual([]);
  });

  it('never longer than etcdOutageMax past the lease', async () => {
    const s = three({ maxSec: 2 });
    await settled(s);
    s.etcd.loseQuorum();
    const gone = await s.until('a fenced', () => s.holders().length === 0, 10_000, 5);
    expect(gone).toBeGreaterThanOrEqual(2000);
    expect(gone).toBeLessThanOrEqual(3500);
    expect(s.lan.violations).toEqual([]);
  });
});
