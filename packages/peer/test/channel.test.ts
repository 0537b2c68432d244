import { describe, expect, it } from 'vitest';
import { newClusterKey, openPeerSocket, PeerChannel, type PeerSocket } from '../src/index.js';

/** An in-memory network: what a channel sends is kept for the test to deliver (or drop, or replay). */
function wire(): { socket: PeerSocket; sent: { data: Buffer; to: string }[] } {
  const sent: { data: Buffer; to: string }[] = [];
  return {
    sent,
    socket: { send: (data, port, address) => sent.push({ data, to: `${address}:${port}` }), close: () => {} },
  };
}

function pair(opts: { keyB?: Buffer } = {}) {
  const key = newClusterKey();
  let now = 1000;
  const leases: Record<string, string> = { a: '11', b: '22' };
  const wa = wire();
  const wb = wire();
  const a = new PeerChannel({
    node: 'a',
    key,
    socket: wa.socket,
    now: () => now,
    currentLease: (n) => leases[n],
  });
  const b = new PeerChannel({
    node: 'b',
    key: opts.keyB ?? key,
    socket: wb.socket,
    now: () => now,
    currentLease: (n) => leases[n],
  });
  return { a, b, wa, wb, leases, advance: (ms: number) => (now += ms) };
}

const targets = [
  { node: 'a', address: '10.0.0.1', port: 7969 },
  { node: 'b', address: '10.0.0.2', port: 7969 },
];

describe('peer channel', () => {
  it('sends to every member but itself, and the receiver remembers what the holder said', () => {
    const { a, b, wa, advance } = pair();
    a.beat('11', [{ group: 'web', epoch: 42, deadlineInMs: 700 }], targets);
    expect(wa.sent.map((s) => s.to)).toEqual(['10.0.0.2:7969']);
    const data = wa.sent[0]?.data ?? Buffer.alloc(0);
    expect(b.receive(data)).toBe('accepted');
    const heard = b.lastHeard('a', '11');
    expect(heard?.groups.get('web')).toEqual({
      epoch: 42,
      holdsUntil: 1700,
      asking: false,
      promise: false,
      echoSeq: 0,
    });
    advance(120);
    expect(b.ages()).toEqual({ a: 120 });
    // Under another lease (a restarted peer) nothing was heard yet.
    expect(b.lastHeard('a', '12')).toBeUndefined();
  });

  it('drops and counts forgeries, replays, stale leases and strangers without remembering them', () => {
    const { a, b, wa, leases } = pair();
    a.beat('11', [{ group: 'web', epoch: 42, deadlineInMs: 700 }], targets);
    const data = wa.sent[0]?.data ?? Buffer.alloc(0);
    expect(b.receive(data)).toBe('accepted');
    expect(b.receive(data)).toBe('replayed');
    const forged = Buffer.from(data);
    forged[forged.length - 20] = (forged[forged.length - 20] ?? 0) ^ 1;
    expect(b.receive(forged)).toBe('mac');
    expect(b.receive(Buffer.from('hello'))).toBe('short');
    a.beat('11', [], targets);
    leases.a = '99'; // a's member record now names another lease: the old incarnation is not heard
    expect(b.receive(wa.sent[1]?.data ?? Buffer.alloc(0))).toBe('stale-lease');
    expect(b.counters.dropped).toEqual({ replayed: 1, mac: 1, short: 1, 'stale-lease': 1 });
    expect(b.lastHeard('a')?.groups.get('web')?.epoch).toBe(42);
  });

  it('a node with another cluster key hears nothing', () => {
    const { a, b, wa } = pair({ keyB: newClusterKey() });
    a.beat('11', [], targets);
    expect(b.receive(wa.sent[0]?.data ?? Buffer.alloc(0))).toBe('mac');
    expect(b.ages()).toEqual({});
  });

  it('forgets peers that left the cluster', () => {
    const { a, b, wa } = pair();
    a.beat('11', [], targets);
    b.receive(wa.sent[0]?.data ?? Buffer.alloc(0));
    b.retain(new Set(['b']));
    expect(b.lastHeard('a')).toBeUndefined();
  });

  it('carries heartbeats over real UDP on loopback', async () => {
    const key = newClusterKey();
    const received: Buffer[] = [];
    const rx = await openPeerSocket({ address: '127.0.0.1', port: 0, onMessage: (d) => received.push(d) });
    const tx = await openPeerSocket({ address: '127.0.0.1', port: 0, onMessage: () => {} });
    const leases: Record<string, string> = { a: '5' };
    const sender = new PeerChannel({ node: 'a', key, socket: tx, now: () => 0, currentLease: () => '5' });
    const receiver = new PeerChannel({
      node: 'b',
      key,
      socket: rx,
      now: () => 0,
      currentLease: (n) => leases[n],
    });
    sender.beat(
      '5',
      [{ group: 'g', epoch: 7, deadlineInMs: 500 }],
      [{ node: 'b', address: '127.0.0.1', port: rx.port }],
    );
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received.map((d) => receiver.receive(d))).toEqual(['accepted']);
    // A port in use is an error the caller can name, not a crash.
    await expect(
      openPeerSocket({ address: '127.0.0.1', port: rx.port, onMessage: () => {} }),
    ).rejects.toThrow(/EADDRINUSE/);
    sender.close();
    receiver.close();
  });
});
