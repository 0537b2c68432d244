/**
 * Address writes through the packet addon's synchronous rtnetlink request (native/packet.c): what is sent, in
 * what order, and the deadline checks around it. The addon is faked (nothing reaches the kernel's addresses);
 * the interface index of `lo` is read through the netlink library, as in production.
 */
import netlink from 'netlink';
import { describe, expect, it } from 'vitest';
import { FakeClock, isCoordError, parseCidr, type Vip } from '@coord/core';
import { createNetlinkVipPort, type SyncNetlink } from '../src/index.js';

const vip = ((): Vip => {
  const r = parseCidr('192.0.2.50/24');
  if (!r.ok) throw new Error(r.reason);
  return r.vip;
})();

const EEXIST = 17;
const EPERM = 1;

interface Sent {
  type: number;
  flags: number;
  seq: number;
  address?: string;
  prefix: number | undefined;
  validSec?: number;
}

/** A fake addon that decodes what it is asked to send and answers from `answers` (default 0: done). */
function fakeAddon(answers: number[] = [], onRequest: () => void = () => {}) {
  const sent: Sent[] = [];
  const closed: number[] = [];
  const addon: SyncNetlink = {
    nlOpen: () => 42,
    nlRequest: (fd, message) => {
      expect(fd).toBe(42);
      const [m] = netlink.parseMessages(message);
      if (m === undefined) throw new Error('nothing to parse');
      const a = netlink.rt.parseMessage(m.type, m.data);
      if (a.kind !== 'address') throw new Error(`sent a ${a.kind}`);
      sent.push({
        type: m.type,
        flags: m.flags,
        seq: m.seq,
        ...(a.attrs.local === undefined ? {} : { address: [...a.attrs.local].join('.') }),
        prefix: a.data.prefixlen,
        ...(a.attrs.cacheInfo === undefined ? {} : { validSec: a.attrs.cacheInfo.ifaValid }),
      });
      onRequest();
      return answers.shift() ?? 0;
    },
    close: (fd) => void closed.push(fd),
  };
  return { addon, sent, closed };
}

const { REQUEST, ACK } = netlink.Flags;
const { CREATE, EXCL, REPLACE } = netlink.FlagsNew;
const NEWADDR = 20;
const DELADDR = 21;

describe('address writes through the synchronous rtnetlink request', () => {
  it('an add is one NEWADDR (create, exclusive, acked); an address already there gets a REPLACE and is "present"', async () => {
    const clock = new FakeClock(1000);
    const { addon, sent } = fakeAddon([0, EEXIST, 0]);
    const port = createNetlinkVipPort({ clock, syncNetlink: addon });
    try {
      const life = { validSec: 1, preferredSec: 1, notAfter: 1100 };
      await expect(port.add('lo', vip, life)).resolves.toBe('added');
      await expect(port.add('lo', vip, life)).resolves.toBe('present');
      expect(sent.map((s) => [s.type, s.flags])).toEqual([
        [NEWADDR, REQUEST | ACK | CREATE | EXCL],
        [NEWADDR, REQUEST | ACK | CREATE | EXCL],
        [NEWADDR, REQUEST | ACK | REPLACE],
      ]);
      expect(sent.every((s) => s.address === '192.0.2.50' && s.prefix === 24 && s.validSec === 1)).toBe(true);
      expect(sent.map((s) => s.seq)).toEqual([1, 2, 3]); // each answer is matched to its own request
    } finally {
      port.close();
    }
  });

  it('a refresh whose bound passes while the kernel answers is "late-reply"; one already past sends nothing', async () => {
    const clock = new FakeClock(1000);
    // The "kernel" takes 30 ms: the request went out in time, its answer came after the bound.
    const { addon, sent } = fakeAddon([], () => clock.advance(30));
    const port = createNetlinkVipPort({ clock, syncNetlink: addon });
    try {
      await expect(port.refresh('lo', vip, { validSec: 1, preferredSec: 1, notAfter: 1020 })).resolves.toBe(
        'late-reply',
      );
      expect(sent).toHaveLength(1);
      await expect(port.refresh('lo', vip, { validSec: 1, preferredSec: 1, notAfter: 1020 })).resolves.toBe(
        'late',
      );
      expect(sent).toHaveLength(1);
      // The removal that follows a late reply goes the same way, without waiting for the event loop.
      await expect(port.remove('lo', vip)).resolves.toBe('removed');
      expect(sent.at(-1)).toMatchObject({ type: DELADDR, flags: REQUEST | ACK });
    } finally {
      port.close();
    }
  });

  it('repeated refreshes send what a fresh encoding would: a new lifetime, address or interface is encoded anew', async () => {
    const clock = new FakeClock(1000);
    const { addon, sent } = fakeAddon();
    const port = createNetlinkVipPort({ clock, syncNetlink: addon });
    const other = parseCidr('192.0.2.51/32');
    if (!other.ok) throw new Error(other.reason);
    try {
      const life = (validSec: number) => ({ validSec, preferredSec: validSec, notAfter: 5000 });
      await port.refresh('lo', vip, life(2));
      await port.refresh('lo', vip, life(2));
      await port.refresh('lo', vip, life(3));
      await port.refresh('lo', other.vip, life(2));
      await port.refresh('lo', vip, life(2));
      await port.remove('lo', vip);
      expect(sent.map((x) => [x.type, x.address, x.prefix, x.validSec, x.seq])).toEqual([
        [NEWADDR, '192.0.2.50', 24, 2, 1],
        [NEWADDR, '192.0.2.50', 24, 2, 2],
        [NEWADDR, '192.0.2.50', 24, 3, 3],
        [NEWADDR, '192.0.2.51', 32, 2, 4],
        [NEWADDR, '192.0.2.50', 24, 2, 5],
        [DELADDR, '192.0.2.50', 24, undefined, 6],
      ]);
    } finally {
      port.close();
    }
  });

  it('a refusal is a CoordError naming the errno; close releases the socket', async () => {
    const clock = new FakeClock(1000);
    const { addon, closed } = fakeAddon([EPERM]);
    const port = createNetlinkVipPort({ clock, syncNetlink: addon });
    const err = await port.add('lo', vip).catch((e: unknown) => e);
    expect(isCoordError(err) && err.code).toBe('ERR_COORD_NETLINK');
    expect((err as Error).message).toMatch(/EPERM/);
    port.close();
    expect(closed).toEqual([42]);
  });
});
