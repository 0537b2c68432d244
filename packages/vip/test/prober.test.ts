import { describe, expect, it } from 'vitest';
import { MemoryLogger } from '@coord/core';
import type { Vip } from '@coord/core';
import type { PacketAddon } from '../src/addon.js';
import { loadPacketAddon } from '../src/addon.js';
import {
  buildArpProbe,
  buildDadSolicitation,
  buildGratuitousArp,
  buildUnsolicitedNa,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
} from '../src/frames.js';
import { createWireProber, MAX_FRAMES_PER_DRAIN } from '../src/prober.js';
import type { ProbeSession } from '../src/prober.js';

const OUR_MAC = Buffer.from('0200000000aa', 'hex');
const PEER_MAC = Buffer.from('0200000000bb', 'hex');
const PEER = '02:00:00:00:00:bb';
const vip4: Vip = { address: '192.0.2.7', prefix: 32, family: 4 };
const vip6: Vip = { address: '2001:db8::7', prefix: 128, family: 6 };
const err = (message: string, code: string): Error => Object.assign(new Error(message), { code });

/** What a kernel answers to an ARP probe: a unicast reply from the address to the prober. */
function arpReply(from: Uint8Array, ip: string): Buffer {
  const f = buildGratuitousArp(from, ip, 'reply');
  f.set(OUR_MAC, 0); // unicast to the prober
  f.set(OUR_MAC, 32); // target hardware address: the prober
  f.fill(0, 38, 42); // target protocol address: the probe's sender, 0.0.0.0
  return f;
}

interface Socket {
  ifindex: number;
  ethertype: number | 'send';
  queue: Buffer[];
  closed: boolean;
}

/**
 * An in-memory packet layer for one interface, eth0 (index 2). `wire(frame)` delivers a frame to every open
 * receiving socket of its ethertype, as the kernel would. With `echo`, frames we send come back to our own
 * receiving sockets too: a kernel without PACKET_IGNORE_OUTGOING — the JS side must not count them.
 */
function fakeAddon(opts: { echo?: boolean } = {}) {
  const sockets = new Map<number, Socket>();
  let nextFd = 20;
  const sent: Buffer[] = [];
  const addon = {
    sockets,
    sent,
    failOpen: undefined as Error | undefined,
    failOpenRecv: undefined as Error | undefined,
    failSend: undefined as Error | undefined,
    failRecv: undefined as Error | undefined,
    wire(frame: Buffer): void {
      for (const s of sockets.values()) {
        if (!s.closed && s.ethertype === frame.readUInt16BE(12)) s.queue.push(frame);
      }
    },
    open(ifindex: number): number {
      if (addon.failOpen !== undefined) throw addon.failOpen;
      sockets.set(nextFd, { ifindex, ethertype: 'send', queue: [], closed: false });
      return nextFd++;
    },
    openRecv(ifindex: number, ethertype: number): number {
      if (addon.failOpenRecv !== undefined) throw addon.failOpenRecv;
      sockets.set(nextFd, { ifindex, ethertype, queue: [], closed: false });
      return nextFd++;
    },
    send(fd: number, frame: Buffer): number {
      if (addon.failSend !== undefined) throw addon.failSend;
      if (sockets.get(fd)?.ethertype !== 'send') throw err('not a send socket', 'EBADF');
      sent.push(frame);
      if (opts.echo === true) addon.wire(frame);
      return frame.length;
    },
    recv(fd: number): Buffer | null {
      if (addon.failRecv !== undefined) throw addon.failRecv;
      const s = sockets.get(fd);
      if (s === undefined || s.closed) throw err('recv(AF_PACKET): Bad file descriptor (EBADF)', 'EBADF');
      return s.queue.shift() ?? null;
    },
    close(fd: number): void {
      const s = sockets.get(fd);
      if (s === undefined || s.closed) throw err('close: Bad file descriptor (EBADF)', 'EBADF');
      s.closed = true;
    },
    hwaddr: (name: string): Buffer => {
      if (name !== 'eth0') throw err('ioctl(SIOCGIFHWADDR): No such device (ENODEV)', 'ENODEV');
      return Buffer.from(OUR_MAC);
    },
    ifindex: (name: string): number => (name === 'eth0' ? 2 : 0),
    nlOpen: (): number => {
      throw new Error('the prober must not touch addresses');
    },
    nlRequest: (): number => {
      throw new Error('the prober must not touch addresses');
    },
    nlPort: (): number => {
      throw new Error('the prober must not touch addresses');
    },
    nlIgnoreEchoes: (): number => {
      throw new Error('the prober must not touch addresses');
    },
    dropPages: (): number => {
      throw new Error('the prober must not touch memory');
    },
  } satisfies PacketAddon & Record<string, unknown>;
  return addon;
}

function openOk(addon: PacketAddon, vips: readonly Vip[], logger?: MemoryLogger): ProbeSession {
  const r = createWireProber({ addon, ...(logger === undefined ? {} : { logger }) }).open('eth0', vips);
  if (!r.ok) throw new Error(`open failed: ${r.reason}`);
  return r.session;
}

describe('probe()', () => {
  it('sends one ARP probe per IPv4 VIP and one DAD solicitation per IPv6 VIP, from our MAC', () => {
    const addon = fakeAddon();
    const s = openOk(addon, [vip4, vip6, { address: '192.0.2.8', prefix: 32, family: 4 }]);
    expect(s.probe()).toBe(3);
    expect(addon.sent).toEqual([
      buildArpProbe(OUR_MAC, '192.0.2.7'),
      buildDadSolicitation(OUR_MAC, '2001:db8::7'),
      buildArpProbe(OUR_MAC, '192.0.2.8'),
    ]);
    // One send socket and one receiving socket per family, all on eth0.
    expect([...addon.sockets.values()].map((x) => [x.ifindex, x.ethertype])).toEqual([
      [2, 'send'],
      [2, ETHERTYPE_ARP],
      [2, ETHERTYPE_IPV6],
    ]);
  });

  it('opens no IPv6 socket for IPv4 VIPs only (and no ARP socket for IPv6 only)', () => {
    const a4 = fakeAddon();
    openOk(a4, [vip4]);
    expect([...a4.sockets.values()].map((x) => x.ethertype)).toEqual(['send', ETHERTYPE_ARP]);
    const a6 = fakeAddon();
    openOk(a6, [vip6]);
    expect([...a6.sockets.values()].map((x) => x.ethertype)).toEqual(['send', ETHERTYPE_IPV6]);
  });

  it('returns 0 and logs once when sending fails, and never throws', () => {
    const addon = fakeAddon();
    const log = new MemoryLogger();
    const s = openOk(addon, [vip4, vip6], log);
    addon.failSend = err('send(AF_PACKET): Network is down (ENETDOWN)', 'ENETDOWN');
    for (let i = 0; i < 5; i++) expect(s.probe()).toBe(0);
    expect(log.records.filter((r) => r.message === 'probe not sent')).toHaveLength(1);
    expect(log.records[0]?.fields).toMatchObject({ iface: 'eth0', component: 'wire-prober' });
    addon.failSend = undefined;
    expect(s.probe()).toBe(2);
  });
});

describe('drain()', () => {
  it('returns nothing when nothing is pending', () => {
    const s = openOk(fakeAddon(), [vip4, vip6]);
    expect(s.drain()).toEqual([]);
    expect(s.drain()).toEqual([]);
  });

  it('counts an ARP reply, an ARP request (announcement) and an NA from another MAC', () => {
    const addon = fakeAddon();
    const s = openOk(addon, [vip4, vip6]);
    addon.wire(arpReply(PEER_MAC, '192.0.2.7'));
    addon.wire(buildGratuitousArp(PEER_MAC, '192.0.2.7', 'request'));
    addon.wire(buildUnsolicitedNa(PEER_MAC, '2001:db8::7'));
    expect(s.drain()).toEqual([
      { address: '192.0.2.7', mac: PEER, kind: 'arp-reply' },
      { address: '192.0.2.7', mac: PEER, kind: 'arp-request' },
      { address: '2001:db8::7', mac: PEER, kind: 'na' },
    ]);
    expect(s.drain()).toEqual([]); // read once
  });

  it('counts every answering frame, from each claimant', () => {
    const addon = fakeAddon();
    const s = openOk(addon, [vip4]);
    const other = Buffer.from('0200000000cc', 'hex');
    addon.wire(arpReply(PEER_MAC, '192.0.2.7'));
    addon.wire(arpReply(other, '192.0.2.7'));
    addon.wire(arpReply(PEER_MAC, '192.0.2.7'));
    expect(s.drain().map((a) => a.mac)).toEqual([PEER, '02:00:00:00:00:cc', PEER]);
  });

  it('ignores our own probes even when the kernel hands them back', () => {
    const addon = fakeAddon({ echo: true });
    const s = openOk(addon, [vip4, vip6]);
    expect(s.probe()).toBe(2);
    expect(addon.sockets.get(21)?.queue).toHaveLength(1); // the echo really arrived
    expect(s.drain()).toEqual([]);
  });

  const ignored: [string, Buffer][] = [
    ["another host's ARP probe for the VIP (sender IP 0.0.0.0)", buildArpProbe(PEER_MAC, '192.0.2.7')],
    ["another host's DAD probe for the VIP", buildDadSolicitation(PEER_MAC, '2001:db8::7')],
    ['an ARP reply for the VIP from our own MAC', arpReply(OUR_MAC, '192.0.2.7')],
    ['a GARP for the VIP from our own MAC', buildGratuitousArp(OUR_MAC, '192.0.2.7', 'request')],
    ['an NA for the VIP from our own MAC', buildUnsolicitedNa(OUR_MAC, '2001:db8::7')],
    ['an ARP reply for another address', arpReply(PEER_MAC, '192.0.2.99')],
    ['an NA for another address', buildUnsolicitedNa(PEER_MAC, '2001:db8::99')],
    ['an ARP request *targeting* the VIP from another address', withSenderIp(PEER_MAC, '192.0.2.1')],
    ['an ARP packet with another opcode (RARP reply)', withOp(arpReply(PEER_MAC, '192.0.2.7'), 4)],
    [
      'an NA with hop limit 254 (not from the link)',
      withHopLimit(buildUnsolicitedNa(PEER_MAC, vip6.address)),
    ],
    ['a truncated ARP frame', arpReply(PEER_MAC, '192.0.2.7').subarray(0, 41)],
    ['a truncated NA', buildUnsolicitedNa(PEER_MAC, '2001:db8::7').subarray(0, 77)],
  ];
  for (const [what, frame] of ignored) {
    it(`does not count ${what}`, () => {
      const addon = fakeAddon();
      const s = openOk(addon, [vip4, vip6]);
      addon.wire(frame);
      expect(s.drain()).toEqual([]);
    });
  }

  it('does not count frames of another ethertype (an IPv4 packet), even on its sockets', () => {
    const addon = fakeAddon();
    const s = openOk(addon, [vip4, vip6]);
    const ipv4 = arpReply(PEER_MAC, '192.0.2.7');
    ipv4.writeUInt16BE(0x0800, 12);
    for (const sock of addon.sockets.values()) sock.queue.push(ipv4); // a kernel that misdelivers
    expect(s.drain()).toEqual([]);
  });

  it('reports the VIP as the caller wrote it, matching on the address value', () => {
    const addon = fakeAddon();
    const s = openOk(addon, [{ address: '2001:DB8:0::7', prefix: 128, family: 6 }]);
    addon.wire(buildUnsolicitedNa(PEER_MAC, '2001:db8::7'));
    expect(s.drain()).toEqual([{ address: '2001:DB8:0::7', mac: PEER, kind: 'na' }]);
  });

  it('reads at most MAX_FRAMES_PER_DRAIN frames per socket per call (a flood); the rest waits for the next', () => {
    const addon = fakeAddon();
    const log = new MemoryLogger();
    const s = openOk(addon, [vip4], log);
    const n = MAX_FRAMES_PER_DRAIN + 10;
    for (let i = 0; i < n; i++) addon.wire(arpReply(PEER_MAC, '192.0.2.7'));
    expect(s.drain()).toHaveLength(MAX_FRAMES_PER_DRAIN);
    expect(log.records.map((r) => r.message)).toEqual(['probe drain cut short by a flood']);
    expect(s.drain()).toHaveLength(10);
  });

  it('returns what it read when receiving fails, logs once, and never throws', () => {
    const addon = fakeAddon();
    const log = new MemoryLogger();
    const s = openOk(addon, [vip4, vip6], log);
    addon.wire(buildUnsolicitedNa(PEER_MAC, '2001:db8::7'));
    addon.failRecv = err('recv(AF_PACKET): Network is down (ENETDOWN)', 'ENETDOWN');
    expect(s.drain()).toEqual([]);
    expect(s.drain()).toEqual([]);
    expect(log.records.filter((r) => r.message === 'probe answers not read')).toHaveLength(1);
    addon.failRecv = undefined;
    expect(s.drain()).toHaveLength(1);
  });
});

describe('close()', () => {
  it('closes every socket once; afterwards probe and drain do nothing', () => {
    const addon = fakeAddon();
    const s = openOk(addon, [vip4, vip6]);
    addon.wire(arpReply(PEER_MAC, '192.0.2.7'));
    s.close();
    s.close();
    expect([...addon.sockets.values()].every((x) => x.closed)).toBe(true);
    expect(s.probe()).toBe(0);
    expect(s.drain()).toEqual([]);
    expect(addon.sent).toEqual([]);
  });
});

describe('open() failures are results', () => {
  it('without the addon', () => {
    expect(createWireProber({ addon: null }).open('eth0', [vip4])).toEqual({
      ok: false,
      reason: 'native packet addon disabled',
    });
  });

  it('for an interface that does not exist, opening nothing', () => {
    const addon = fakeAddon();
    const r = createWireProber({ addon }).open('eth9', [vip4]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/"eth9" does not exist/);
    expect(addon.sockets.size).toBe(0);
  });

  it('for EPERM (no CAP_NET_RAW), with a hint', () => {
    const addon = fakeAddon();
    addon.failOpen = err('socket(AF_PACKET): Operation not permitted (EPERM)', 'EPERM');
    const r = createWireProber({ addon }).open('eth0', [vip4]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/EPERM.*CAP_NET_RAW/);
  });

  it('closing the sockets it had already opened when a later one fails', () => {
    const addon = fakeAddon();
    addon.failOpenRecv = err('bind(AF_PACKET): No such device (ENODEV)', 'ENODEV');
    const r = createWireProber({ addon }).open('eth0', [vip4, vip6]);
    expect(r).toMatchObject({ ok: false });
    expect(addon.sockets.size).toBe(1);
    expect([...addon.sockets.values()].every((x) => x.closed)).toBe(true);
  });

  it('for a VIP list that is empty, malformed, of the wrong family or unspecified', () => {
    const prober = createWireProber({ addon: fakeAddon() });
    const bad: [readonly Vip[], RegExp][] = [
      [[], /no VIPs/],
      [[{ address: 'not-an-ip', prefix: 32, family: 4 }], /not an IP address/],
      [[{ address: '2001:db8::1', prefix: 32, family: 4 }], /not an IPv4 address/],
      [[{ address: '0.0.0.0', prefix: 32, family: 4 }], /unspecified/],
      [[{ address: '::', prefix: 128, family: 6 }], /unspecified/],
    ];
    for (const [vips, reason] of bad) {
      const r = prober.open('eth0', vips);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.reason).toMatch(reason);
    }
  });

  it('when the addon misbehaves in a way it never should (throws from ifindex)', () => {
    const addon = fakeAddon();
    const r = createWireProber({
      addon: {
        ...addon,
        ifindex: () => {
          throw err('interface name must be 1-15 characters', 'EINVAL');
        },
      },
    }).open('eth0', [vip4]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toContain('1-15');
  });
});

describe('the built addon (no privileges needed)', () => {
  it('refuses a bad receive socket request and reports a bad fd by errno name', () => {
    const loaded = loadPacketAddon();
    expect(loaded).toMatchObject({ ok: true });
    if (!loaded.ok) return;
    expect(() => loaded.addon.openRecv(0, ETHERTYPE_ARP)).toThrow(
      expect.objectContaining({ code: 'EINVAL' }),
    );
    expect(() => loaded.addon.openRecv(1, 0x10000)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => loaded.addon.recv(-1)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('is what createWireProber uses by default: a missing interface is a result', () => {
    const r = createWireProber().open('no-such-if0', [vip4]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(/"no-such-if0" does not exist/);
  });
});

function withSenderIp(mac: Uint8Array, sender: string): Buffer {
  const f = buildArpProbe(mac, '192.0.2.7');
  f.set(Buffer.from(sender.split('.').map(Number)), 28);
  return f;
}

function withOp(f: Buffer, op: number): Buffer {
  f.writeUInt16BE(op, 20);
  return f;
}

function withHopLimit(f: Buffer): Buffer {
  f[21] = 254;
  return f;
}
