import { describe, expect, it } from 'vitest';
import { CoordError, FakeClock, MemoryLogger, ipToBytes, nullLogger } from '@coord/core';
import {
  classifyIpv6,
  createRawVrrp6Transport,
  createVrrpInstance,
  decode,
  encode,
  isLinkLocal6,
  loadVrrpConfig,
  type RawDatagram6,
  type Received,
  type Vrrp6Addon,
} from '../src/index.js';

const LL = 'fe80::a8bb:ccff:fe00:1';
const PEER = 'fe80::a8bb:ccff:fe00:2';

function raw(over: Partial<RawDatagram6> = {}): RawDatagram6 {
  return {
    payload: Buffer.from('3147640100000000', 'hex'),
    src: ipToBytes(PEER),
    dst: ipToBytes('ff02::12'),
    hopLimit: 255,
    ifindex: 2,
    ...over,
  };
}

/** An addon double: records calls, lets the test deliver datagrams. */
function fakeAddon(opts: { ifindex?: number; openError?: Error } = {}) {
  const calls: string[] = [];
  const sent: { fd: number; dst: string; payload: Buffer; src: string; ifindex: number }[] = [];
  let callback: ((d: RawDatagram6) => void) | undefined;
  const addon: Vrrp6Addon = {
    ifindex: (name) => (calls.push(`ifindex ${name}`), opts.ifindex ?? 7),
    open: (ifindex) => {
      calls.push(`open ${ifindex}`);
      if (opts.openError) throw opts.openError;
      return 42;
    },
    receive: (fd, cb) => {
      calls.push(`receive ${fd}`);
      callback = cb;
    },
    send: (fd, dst, payload, src, ifindex) => {
      sent.push({ fd, dst: dst.toString('hex'), payload, src: src.toString('hex'), ifindex });
      return payload.length;
    },
    close: (fd) => void calls.push(`close ${fd}`),
  };
  return { addon, calls, sent, deliver: (d: RawDatagram6) => callback?.(d) };
}

describe('isLinkLocal6', () => {
  it('accepts fe80::/10 only', () => {
    expect(isLinkLocal6('fe80::1')).toBe(true);
    expect(isLinkLocal6('febf::1')).toBe(true);
    expect(isLinkLocal6('fec0::1')).toBe(false);
    expect(isLinkLocal6('2001:db8::1')).toBe(false);
    expect(isLinkLocal6('10.0.0.1')).toBe(false);
    expect(isLinkLocal6('nonsense')).toBe(false);
  });
});

describe('classifyIpv6', () => {
  it('passes an advert to ff02::12 with the header facts, addresses in canonical form', () => {
    expect(classifyIpv6(raw())).toEqual({
      ok: true,
      datagram: { payload: raw().payload, srcAddr: PEER, dstAddr: 'ff02::12', ttl: 255 },
    });
  });
  it('keeps the hop limit for the decoder (RFC 5798 §7.1 is checked there)', () => {
    const r = classifyIpv6(raw({ hopLimit: 64 }));
    expect(r?.ok && r.datagram.ttl).toBe(64);
  });
  it('passes unicast (the kernel delivers only datagrams for this host)', () => {
    const r = classifyIpv6(raw({ dst: ipToBytes(LL) }));
    expect(r?.ok && r.datagram.dstAddr).toBe(LL);
  });
  it('ignores other multicast groups', () => {
    expect(classifyIpv6(raw({ dst: ipToBytes('ff02::1') }))).toBeUndefined();
  });
  it('counts datagrams without the ancillary data as bad-ip-header', () => {
    const bad = { ok: false, reason: 'bad-ip-header' };
    expect(classifyIpv6(raw({ dst: undefined }))).toEqual(bad);
    expect(classifyIpv6(raw({ hopLimit: -1 }))).toEqual(bad);
    expect(classifyIpv6(raw({ src: Buffer.alloc(4) }))).toEqual(bad);
  });
});

describe('createRawVrrp6Transport', () => {
  it('opens on the interface index, sends from the link-local address, receives through the addon', async () => {
    const f = fakeAddon();
    const t = createRawVrrp6Transport({
      interfaceName: 'eth0',
      linkLocal: LL,
      logger: nullLogger,
      addon: f.addon,
    });
    expect(t.destinations).toEqual(['ff02::12']);
    expect(f.calls).toEqual(['ifindex eth0', 'open 7', 'receive 42']);
    await t.send('ff02::12', Buffer.from([1, 2]));
    expect(f.sent).toEqual([
      {
        fd: 42,
        dst: ipToBytes('ff02::12').toString('hex'),
        payload: Buffer.from([1, 2]),
        src: ipToBytes(LL).toString('hex'),
        ifindex: 7,
      },
    ]);
    const got: Received[] = [];
    t.onReceive((r) => got.push(r));
    f.deliver(raw());
    f.deliver(raw({ dst: ipToBytes('ff02::1') }));
    expect(got).toHaveLength(1);
    t.close();
    t.close();
    expect(f.calls.filter((c) => c.startsWith('close'))).toEqual(['close 42']);
    await expect(t.send('ff02::12', Buffer.from([1]))).rejects.toThrow(/closed/);
    f.deliver(raw());
    expect(got).toHaveLength(1);
  });

  it('unicast peers become the destinations, canonicalised', () => {
    const f = fakeAddon();
    const t = createRawVrrp6Transport({
      interfaceName: 'eth0',
      linkLocal: LL,
      unicastPeers: ['FE80:0::A8BB:CCFF:FE00:2'],
      logger: nullLogger,
      addon: f.addon,
    });
    expect(t.destinations).toEqual([PEER]);
  });

  it('refuses a source that is not link-local, IPv4 peers and an unknown interface', () => {
    const f = fakeAddon();
    const base = { interfaceName: 'eth0', logger: nullLogger, addon: f.addon };
    expect(() => createRawVrrp6Transport({ ...base, linkLocal: '2001:db8::1' })).toThrow(CoordError);
    expect(() => createRawVrrp6Transport({ ...base, linkLocal: `${LL}%eth0` })).toThrow(/link-local/);
    expect(() => createRawVrrp6Transport({ ...base, linkLocal: LL, unicastPeers: ['10.0.0.1'] })).toThrow(
      /IPv6/,
    );
    const none = fakeAddon({ ifindex: 0 });
    expect(() => createRawVrrp6Transport({ ...base, linkLocal: LL, addon: none.addon })).toThrow(
      /no interface/,
    );
    expect(f.calls).toEqual([]);
  });

  it('a socket that cannot be opened is ERR_COORD_PERMISSION', () => {
    const f = fakeAddon({ openError: Object.assign(new Error('EPERM'), { code: 'EPERM' }) });
    try {
      createRawVrrp6Transport({ interfaceName: 'eth0', linkLocal: LL, logger: nullLogger, addon: f.addon });
      expect.unreachable();
    } catch (e) {
      expect((e as CoordError).code).toBe('ERR_COORD_PERMISSION');
    }
  });
});

describe('an IPv6 VRRP instance over the IPv6 transport', () => {
  it('sends adverts the IPv6 decoder accepts (pseudo-header with the link-local source), checks the hop limit', async () => {
    const config = loadVrrpConfig({
      vrid: 71,
      priority: 255,
      advertInt: 0.1,
      addresses: ['2001:db8:1::50'],
      primaryAddress: LL,
    });
    expect(config.family).toBe(6);
    const f = fakeAddon();
    const transport = createRawVrrp6Transport({
      interfaceName: 'eth0',
      linkLocal: config.primaryAddress,
      logger: nullLogger,
      addon: f.addon,
    });
    const clock = new FakeClock();
    const vips: string[] = [];
    const instance = createVrrpInstance({
      config,
      transport,
      clock,
      logger: new MemoryLogger(),
      vips: {
        claim: () => (vips.push('claim'), Promise.resolve()),
        release: () => (vips.push('release'), Promise.resolve()),
      },
    });
    instance.start();
    await new Promise<void>((r) => setImmediate(r));
    expect(instance.state()).toBe('master');
    const advert = f.sent[0];
    if (advert === undefined) throw new Error('no advert sent');
    expect(advert.dst).toBe(ipToBytes('ff02::12').toString('hex'));
    expect(
      decode(advert.payload, { version: 3, family: 6, srcAddr: LL, dstAddr: 'ff02::12', ttl: 255 }),
    ).toMatchObject({ ok: true, packet: { vrid: 71, priority: 255, addresses: ['2001:db8:1::50'] } });
    // The checksum covers the source: the same bytes from another address do not verify.
    expect(
      decode(advert.payload, { version: 3, family: 6, srcAddr: PEER, dstAddr: 'ff02::12', ttl: 255 }),
    ).toEqual({ ok: false, reason: 'bad-checksum' });

    // A peer's advert is decoded with the header facts the addon reported: hop limit 64 is not on-link.
    const peerAdvert = encode(
      { version: 3, vrid: 71, priority: 100, maxAdvertIntervalCs: 10, addresses: ['2001:db8:1::50'] },
      { family: 6, srcAddr: PEER, dstAddr: 'ff02::12' },
    );
    f.deliver(raw({ payload: peerAdvert, hopLimit: 64 }));
    expect(instance.counters().dropped).toEqual({ 'bad-ttl': 1 });
    f.deliver(raw({ payload: peerAdvert }));
    expect(instance.counters().advertsReceived).toBe(1);
    expect(instance.counters().dropped).toEqual({ 'bad-ttl': 1 });
    await instance.stop();
    expect(vips).toEqual(['claim', 'release']);
  });
});
