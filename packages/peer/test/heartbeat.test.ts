import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeHeartbeat,
  encodeHeartbeat,
  MAC_BYTES,
  MAX_GROUPS,
  newClusterKey,
  ReplayGuard,
  type Heartbeat,
} from '../src/index.js';

const key = newClusterKey();
const hb: Heartbeat = {
  node: 'lb1',
  leaseId: '7786902022915280930',
  seq: 41,
  groups: [
    { group: 'web', epoch: 3427, deadlineInMs: 812, asking: true, promise: false, echoSeq: 0 },
    { group: 'dns', epoch: 0, deadlineInMs: 0, asking: false, promise: true, echoSeq: 9_007_199_254_740_991 },
  ],
};

describe('heartbeat codec', () => {
  it('round-trips every field, 64-bit lease IDs included', () => {
    const wire = encodeHeartbeat(hb, key);
    expect(decodeHeartbeat(wire, key)).toEqual({ ok: true, heartbeat: hb });
    const max = { ...hb, leaseId: '18446744073709551615', groups: [] };
    expect(decodeHeartbeat(encodeHeartbeat(max, key), key)).toEqual({ ok: true, heartbeat: max });
  });

  it('fits a full heartbeat in one datagram below the IPv6 minimum MTU', () => {
    const groups = Array.from({ length: MAX_GROUPS }, (_, i) => ({
      group: `group-${i}`.padEnd(20, 'x'),
      epoch: Number.MAX_SAFE_INTEGER,
      deadlineInMs: 999,
    }));
    const wire = encodeHeartbeat({ ...hb, node: 'n'.repeat(63), groups }, key);
    expect(wire.length).toBeLessThanOrEqual(1232);
  });

  it('drops a datagram signed with another key, or changed in any byte, as a MAC failure', () => {
    const wire = encodeHeartbeat(hb, key);
    expect(decodeHeartbeat(wire, newClusterKey())).toEqual({ ok: false, reason: 'mac' });
    // Every byte of the body and of the MAC is covered (the fixed framing fields fail their own checks first).
    for (let i = 8; i < wire.length; i++) {
      const bad = Buffer.from(wire);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      expect(decodeHeartbeat(bad, key), `byte ${i}`).toEqual({ ok: false, reason: 'mac' });
    }
  });

  it('names what is wrong with malformed input and never throws', () => {
    const wire = encodeHeartbeat(hb, key);
    expect(decodeHeartbeat(Buffer.alloc(0), key)).toEqual({ ok: false, reason: 'short' });
    expect(decodeHeartbeat(wire.subarray(0, 30), key)).toEqual({ ok: false, reason: 'short' });
    expect(decodeHeartbeat(wire.subarray(0, wire.length - 1), key)).toEqual({ ok: false, reason: 'length' });
    const magic = Buffer.from(wire);
    magic.write('VRRP', 0, 'latin1');
    expect(decodeHeartbeat(magic, key)).toEqual({ ok: false, reason: 'magic' });
    const version = Buffer.from(wire);
    version[4] = 1; // the layout before promises
    expect(decodeHeartbeat(version, key)).toEqual({ ok: false, reason: 'version' });
    expect(decodeHeartbeat(Buffer.concat([wire, Buffer.alloc(1)]), key)).toEqual({
      ok: false,
      reason: 'length',
    });
    // Random garbage of every small size: a reason, never an exception.
    for (let n = 0; n < 200; n++) {
      const r = decodeHeartbeat(newClusterKey().subarray(0, n % 33), key);
      expect(r.ok).toBe(false);
    }
  });

  it('a flag this version does not define is malformed even with a valid MAC', () => {
    const wire = encodeHeartbeat({ ...hb, groups: [{ group: 'g', epoch: 1, deadlineInMs: 0 }] }, key);
    const size = wire.length - MAC_BYTES;
    const body = Buffer.from(wire.subarray(0, size));
    body[size - 9] = 0x80; // the flags byte of the only group
    const signed = Buffer.concat([
      body,
      createHmac('sha256', key).update(body).digest().subarray(0, MAC_BYTES),
    ]);
    expect(decodeHeartbeat(signed, key)).toEqual({ ok: false, reason: 'malformed' });
    body[size - 9] = 0x03; // asking and promise together decode (the receiver judges them)
    const both = Buffer.concat([
      body,
      createHmac('sha256', key).update(body).digest().subarray(0, MAC_BYTES),
    ]);
    expect(decodeHeartbeat(both, key)).toMatchObject({ ok: true });
  });

  it('a body that lies about its group count is malformed even with a valid MAC (a buggy peer)', () => {
    const wire = encodeHeartbeat(hb, key);
    const size = wire.length - MAC_BYTES;
    const lying = Buffer.from(wire.subarray(0, size));
    lying[5] = 3; // says three groups, carries two
    const signed = Buffer.concat([
      lying,
      createHmac('sha256', key).update(lying).digest().subarray(0, MAC_BYTES),
    ]);
    expect(decodeHeartbeat(signed, key)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses to sign with a short key or out-of-range values', () => {
    expect(() => encodeHeartbeat(hb, Buffer.alloc(16))).toThrow(/at least 32 bytes/);
    expect(() => encodeHeartbeat({ ...hb, node: '' }, key)).toThrow(/node name/);
    expect(() => encodeHeartbeat({ ...hb, leaseId: '-1' }, key)).toThrow(/lease ID/);
    expect(() => encodeHeartbeat({ ...hb, leaseId: '18446744073709551616' }, key)).toThrow(/lease ID/);
    expect(() =>
      encodeHeartbeat({ ...hb, groups: [{ group: 'g', epoch: -1, deadlineInMs: 0 }] }, key),
    ).toThrow(/epoch/);
  });
});

describe('replay guard', () => {
  it('accepts increasing sequences of the current lease; drops replays, old incarnations and strangers', () => {
    const leases: Record<string, string> = { lb1: hb.leaseId };
    const guard = new ReplayGuard((node) => leases[node]);
    expect(guard.check(hb)).toBe('accepted');
    expect(guard.check({ ...hb, seq: 42 })).toBe('accepted');
    expect(guard.check({ ...hb, seq: 42 })).toBe('replayed');
    expect(guard.check(hb)).toBe('replayed');
    // lb1 restarted: a new lease. Its old heartbeats, whatever their sequence, no longer count.
    leases['lb1'] = '7786902022915281000';
    expect(guard.check({ ...hb, seq: 1000 })).toBe('stale-lease');
    expect(guard.check({ ...hb, leaseId: '7786902022915281000', seq: 0 })).toBe('accepted');
    expect(guard.check({ ...hb, node: 'lb9' })).toBe('unknown-node');
    expect(guard.drops).toEqual({ replayed: 2, 'stale-lease': 1, 'unknown-node': 1 });
  });
});
