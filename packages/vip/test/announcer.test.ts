import { describe, expect, it } from 'vitest';
import { MemoryLogger } from '@coord/core';
import { createAnnouncer } from '../src/announcer.js';
import type { PacketAddon } from '../src/addon.js';
import { loadPacketAddon } from '../src/addon.js';

const vip4 = { address: '192.0.2.7', prefix: 32, family: 4 } as const;
const vip6 = { address: '2001:db8::7', prefix: 128, family: 6 } as const;

/** An in-memory addon: records frames per fd, lets a test re-create an interface under a new index. */
function fakeAddon(): PacketAddon & {
  sent: { fd: number; frame: Buffer }[];
  indexOf: Map<string, number>;
  opened: number[];
  closed: number[];
} {
  let nextFd = 10;
  const self = {
    sent: [] as { fd: number; frame: Buffer }[],
    indexOf: new Map([['eth0', 2]]),
    opened: [] as number[],
    closed: [] as number[],
    open(ifindex: number) {
      self.opened.push(ifindex);
      return nextFd++;
    },
    send(fd: number, frame: Buffer) {
      self.sent.push({ fd, frame });
      return frame.length;
    },
    close(fd: number) {
      self.closed.push(fd);
    },
    hwaddr: () => Buffer.from('0200000000aa', 'hex'),
    ifindex: (name: string) => self.indexOf.get(name) ?? 0,
    // The announcer only sends: a receiving socket would be a leak.
    openRecv(): number {
      throw new Error('the announcer must not open a receiving socket');
    },
    recv: () => null,
    nlOpen(): number {
      throw new Error('the announcer must not touch addresses');
    },
    nlRequest(): number {
      throw new Error('the announcer must not touch addresses');
    },
    nlPort(): number {
      throw new Error('the announcer must not touch addresses');
    },
    nlIgnoreEchoes(): number {
      throw new Error('the announcer must not touch addresses');
    },
    dropPages(): number {
      throw new Error('the announcer must not touch memory');
    },
  };
  return self;
}

describe('createAnnouncer with the packet sender', () => {
  it('sends GARP request then reply on one cached socket', () => {
    const addon = fakeAddon();
    const a = createAnnouncer({ addon });
    expect(a.announce('eth0', vip4)).toEqual({
      ok: true,
      via: 'packet',
      frames: 2,
      mac: '02:00:00:00:00:aa',
    });
    expect(a.announce('eth0', vip4)).toMatchObject({ ok: true });
    expect(addon.opened).toEqual([2]);
    expect(addon.sent.map((s) => s.frame.readUInt16BE(20))).toEqual([1, 2, 1, 2]);
    a.close();
    expect(addon.closed).toEqual([10]);
  });

  it('sends one NA for an IPv6 VIP', () => {
    const addon = fakeAddon();
    expect(createAnnouncer({ addon }).announce('eth0', vip6)).toMatchObject({ ok: true, frames: 1 });
    expect(addon.sent[0]?.frame[54]).toBe(136);
  });

  it('reopens the socket when the interface was re-created under a new index', () => {
    const addon = fakeAddon();
    const a = createAnnouncer({ addon });
    a.announce('eth0', vip4);
    addon.indexOf.set('eth0', 9);
    a.announce('eth0', vip4);
    expect(addon.opened).toEqual([2, 9]);
    expect(addon.closed).toEqual([10]);
  });

  it('returns a failure (never throws) for a missing interface, and a send error drops the socket', () => {
    const addon = fakeAddon();
    const log = new MemoryLogger();
    const a = createAnnouncer({ addon, logger: log });
    expect(a.announce('nope0', vip4)).toEqual({ ok: false, reason: 'no interface nope0' });
    addon.send = () => {
      throw Object.assign(new Error('send(AF_PACKET): Network is down (ENETDOWN)'), { code: 'ENETDOWN' });
    };
    const failed = a.announce('eth0', vip4);
    expect(failed.ok).toBe(false);
    expect(!failed.ok && failed.reason).toContain('ENETDOWN');
    expect(addon.closed).toEqual([10]);
    expect(log.records.filter((r) => r.message === 'announce failed')).toHaveLength(2);
  });

  it('logs a repeating failure once and its recovery once', () => {
    const addon = fakeAddon();
    const log = new MemoryLogger();
    const a = createAnnouncer({ addon, logger: log });
    addon.indexOf.delete('eth0');
    for (let i = 0; i < 5; i++) expect(a.announce('eth0', vip4).ok).toBe(false);
    addon.indexOf.set('eth0', 4);
    expect(a.announce('eth0', vip4).ok).toBe(true);
    expect(a.announce('eth0', vip4).ok).toBe(true);
    expect(log.records.map((r) => r.message)).toEqual(['announce failed', 'announce recovered']);
  });
});

describe('createAnnouncer fallback', () => {
  it('spawns arping -U and -A without waiting, and warns once', () => {
    const log = new MemoryLogger();
    const spawned: string[][] = [];
    const a = createAnnouncer({
      addon: null,
      logger: log,
      spawn: (file, args) => spawned.push([file, ...args]),
    });
    expect(a.announce('eth0', vip4)).toEqual({ ok: true, via: 'arping', frames: 2 });
    expect(spawned).toEqual([
      ['arping', '-U', '-c', '1', '-I', 'eth0', '192.0.2.7'],
      ['arping', '-A', '-c', '1', '-I', 'eth0', '192.0.2.7'],
    ]);
    expect(log.records.filter((r) => r.level === 'warn')).toHaveLength(1);
  });

  it('reports that IPv6 cannot be announced without the packet sender', () => {
    const a = createAnnouncer({ addon: null, spawn: () => {} });
    expect(a.announce('eth0', vip6)).toMatchObject({ ok: false });
  });
});

describe('the built addon', () => {
  // `pnpm install` builds it (binding.gyp); the lab tests use it to put frames on a veth.
  it('loads and answers for the loopback interface without privileges', () => {
    const loaded = loadPacketAddon();
    expect(loaded).toMatchObject({ ok: true });
    if (!loaded.ok) return;
    expect(loaded.addon.ifindex('lo')).toBeGreaterThan(0);
    expect(loaded.addon.ifindex('no-such-if0')).toBe(0);
    expect(loaded.addon.hwaddr('lo')).toEqual(Buffer.alloc(6));
    expect(() => loaded.addon.hwaddr('no-such-if0')).toThrow(expect.objectContaining({ code: 'ENODEV' }));
    expect(() => loaded.addon.hwaddr('x'.repeat(16))).toThrow(/1-15/);
  });
});
