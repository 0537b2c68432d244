import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import {
  classifyIpv4,
  createDropLogLimiter,
  createVrrpInstance,
  decode,
  encode,
  loadVrrpConfig,
  masterDownIntervalMs,
  type Received,
  type VrrpConfig,
  type VrrpPacket,
  type VrrpTransport,
} from '../src/index.js';

/** An in-memory transport that records what was sent and lets the test inject datagrams. */
function fakeTransport(destinations: string[] = ['224.0.0.18']) {
  const sent: { dstAddr: string; payload: Buffer }[] = [];
  const log: string[] = [];
  let handler: ((r: Received) => void) | undefined;
  let failSends = false;
  const transport: VrrpTransport = {
    destinations,
    send(dstAddr, payload) {
      if (failSends) return Promise.reject(new Error('ENETUNREACH'));
      sent.push({ dstAddr, payload });
      log.push(`send ${payload[2]}`);
      return Promise.resolve();
    },
    onReceive(h) {
      handler = h;
    },
    close() {},
  };
  return {
    transport,
    sent,
    log,
    deliver: (r: Received) => handler?.(r),
    failSends: (v: boolean) => (failSends = v),
  };
}

const flush = () => new Promise<void>((r) => setImmediate(r));

function setup(overrides: Partial<Parameters<typeof loadVrrpConfig>[0]> = {}, destinations?: string[]) {
  const config = loadVrrpConfig({
    vrid: 51,
    priority: 100,
    addresses: ['10.0.0.50'],
    primaryAddress: '10.0.0.2',
    ...overrides,
  });
  const clock = new FakeClock();
  const net = fakeTransport(
    destinations ?? (config.unicastPeers.length ? [...config.unicastPeers] : undefined),
  );
  const logger = new MemoryLogger();
  const vipLog = net.log;
  const vips = {
    claim: () => (vipLog.push('claim'), Promise.resolve()),
    release: () => (vipLog.push('release'), Promise.resolve()),
  };
  const transitions: string[] = [];
  const instance = createVrrpInstance({
    config,
    transport: net.transport,
    vips,
    clock,
    logger,
    onTransition: (t) => transitions.push(`${t.from}>${t.to}:${t.reason}`),
  });
  return { config, clock, net, logger, instance, transitions };
}

function datagram(config: VrrpConfig, packet: VrrpPacket, srcAddr: string, dstAddr = '224.0.0.18'): Received {
  return {
    ok: true,
    datagram: { payload: encode(packet, { family: 4, srcAddr, dstAddr }), srcAddr, dstAddr, ttl: 255 },
  };
}
const v3 = (priority: number): VrrpPacket => ({
  version: 3,
  vrid: 51,
  priority,
  maxAdvertIntervalCs: 100,
  addresses: ['10.0.0.50'],
});

describe('createVrrpInstance', () => {
  it('becomes Master after Master_Down_Interval, claims the VIPs and advertises every interval', async () => {
    const { clock, net, instance, transitions, config } = setup();
    instance.start();
    expect(instance.state()).toBe('backup');
    clock.advance(Math.ceil(masterDownIntervalMs(3, 100, 100)) - 1);
    expect(instance.state()).toBe('backup');
    clock.advance(1); // timers are armed in whole milliseconds, rounded up
    await flush();
    expect(instance.state()).toBe('master');
    expect(net.log).toEqual(['send 100', 'claim']);
    clock.advance(3000);
    await flush();
    expect(net.sent).toHaveLength(4);
    const last = net.sent.at(-1);
    expect(
      last && decode(last.payload, { family: 4, srcAddr: '10.0.0.2', dstAddr: '224.0.0.18', ttl: 255 }),
    ).toEqual({
      ok: true,
      packet: { ...v3(100), addresses: config.addresses },
    });
    expect(transitions).toEqual(['initialize>backup:startup', 'backup>master:master-down-timer']);
  });

  it('yields to a higher priority advert (releases), and stop() sends nothing from Backup', async () => {
    const { clock, net, instance, config } = setup();
    instance.start();
    clock.advance(4000);
    net.deliver(datagram(config, v3(200), '10.0.0.3'));
    await flush();
    expect(instance.state()).toBe('backup');
    expect(net.log).toEqual(['send 100', 'claim', 'release']);
    await instance.stop();
    expect(net.log).toHaveLength(3);
    expect(instance.state()).toBe('initialize');
  });

  it('stop() from Master sends priority 0 before releasing the VIPs', async () => {
    const { clock, net, instance } = setup({ priority: 255 });
    instance.start();
    expect(instance.state()).toBe('master');
    clock.advance(1000);
    await instance.stop();
    expect(net.log[0]).toBe('send 255'); // RFC 5798 §6.4.1: advertise, then claim
    expect(net.log.filter((l) => l === 'claim')).toHaveLength(1);
    expect(net.log.slice(-2)).toEqual(['send 0', 'release']);
    expect(clock.pendingTimers).toBe(0);
  });

  it('setPriority: a Master advertises its new priority at once and yields to a Backup that now outranks it', async () => {
    const { clock, net, instance, config } = setup({ priority: 150 });
    instance.start();
    clock.advance(4000);
    await flush();
    expect(instance.state()).toBe('master');
    instance.setPriority(90); // a weighted track script failed
    await flush();
    expect(net.log.at(-1)).toBe('send 90');
    net.deliver(datagram(config, v3(100), '10.0.0.3'));
    await flush();
    expect(instance.state()).toBe('backup');
    expect(net.log.at(-1)).toBe('release');
  });

  it('setPriority: a Backup that now outranks the Master takes over (preemption), out-of-range values are ignored', async () => {
    const { clock, net, instance, config } = setup({ priority: 50 });
    instance.start();
    net.deliver(datagram(config, v3(100), '10.0.0.3'));
    clock.advance(500);
    net.deliver(datagram(config, v3(100), '10.0.0.3'));
    expect(instance.state()).toBe('backup');
    instance.setPriority(0);
    instance.setPriority(255);
    instance.setPriority(150);
    // The Master's lower-priority adverts are now discarded; Master_Down_Interval runs out.
    for (let t = 0; t < 4000; t += 1000) {
      clock.advance(1000);
      net.deliver(datagram(config, v3(100), '10.0.0.3'));
    }
    await flush();
    expect(instance.state()).toBe('master');
    expect(net.log).toContain('send 150');
  });

  it('counts malformed, foreign and unauthenticated datagrams without changing state', async () => {
    const { clock, net, instance, config } = setup({ version: 2, authPass: 'pw' });
    instance.start();
    const v2 = (priority: number, password: string): VrrpPacket => ({
      version: 2,
      vrid: 51,
      priority,
      advertIntervalSec: 1,
      auth: { type: 'simple', password },
      addresses: ['10.0.0.50'],
    });
    net.deliver({ ok: false, reason: 'bad-ip-header' });
    net.deliver({
      ok: true,
      datagram: { payload: Buffer.from('garbage'), srcAddr: '10.0.0.3', dstAddr: '224.0.0.18', ttl: 255 },
    });
    net.deliver(datagram(config, v2(200, 'wrong'), '10.0.0.3'));
    net.deliver(datagram(config, { ...v2(200, 'pw'), vrid: 52 }, '10.0.0.3'));
    const bad = datagram(config, v2(200, 'pw'), '10.0.0.3');
    if (bad.ok) net.deliver({ ok: true, datagram: { ...bad.datagram, ttl: 64 } });
    clock.advance(Math.ceil(masterDownIntervalMs(2, 100, 100)));
    await flush();
    expect(instance.state()).toBe('master');
    expect(instance.counters().dropped).toEqual({
      'bad-ip-header': 1,
      'too-short': 1,
      'auth-failed': 1,
      'other-vrid': 1,
      'bad-ttl': 1,
    });
    // A good advert with the password is obeyed.
    net.deliver(datagram(config, v2(200, 'pw'), '10.0.0.3'));
    expect(instance.state()).toBe('backup');
    expect(instance.counters().advertsReceived).toBe(2);
  });

  it('unicast: sends to every peer (checksum per destination) and ignores non-peers', async () => {
    const { clock, net, instance, config } = setup({ unicastPeers: ['10.0.0.3', '10.0.0.4'], priority: 255 });
    instance.start();
    await flush();
    expect(net.sent.map((s) => s.dstAddr)).toEqual(['10.0.0.3', '10.0.0.4']);
    for (const s of net.sent) {
      expect(decode(s.payload, { family: 4, srcAddr: '10.0.0.2', dstAddr: s.dstAddr, ttl: 255 }).ok).toBe(
        true,
      );
    }
    net.deliver(datagram(config, v3(255), '10.0.0.9', '10.0.0.2'));
    expect(instance.counters().dropped).toEqual({ 'not-a-peer': 1 });
    clock.advance(1);
  });

  it('a failing send or VIP call is logged and counted, never thrown', async () => {
    const { clock, net, instance, logger } = setup({ priority: 255 });
    net.failSends(true);
    instance.start();
    clock.advance(2000);
    await flush();
    expect(instance.state()).toBe('master');
    expect(instance.counters().sendErrors).toBe(3);
    expect(logger.records.some((r) => r.message === 'vrrp advert not sent')).toBe(true);
    await instance.stop();
  });
});

describe('timer that fires early', () => {
  it('is re-armed, not lost (a 0.4 ms early wake-up once silenced a Master: only 2 adverts were ever sent)', async () => {
    const config = loadVrrpConfig({
      vrid: 1,
      priority: 255,
      addresses: ['10.0.0.50'],
      primaryAddress: '10.0.0.2',
    });
    const base = new FakeClock();
    // A clock whose timers fire 0.4 ms before their deadline, like Node's whole-millisecond timers can.
    const early = Object.assign(Object.create(base) as FakeClock, {
      setTimeout: (fn: () => void, ms: number) => base.setTimeout(fn, Math.max(0, ms - 0.4)),
    });
    const net = fakeTransport();
    const instance = createVrrpInstance({
      config,
      transport: net.transport,
      vips: { claim: () => Promise.resolve(), release: () => Promise.resolve() },
      clock: early,
      logger: new MemoryLogger(),
    });
    instance.start();
    base.advance(10_000);
    await flush();
    expect(net.sent.length).toBeGreaterThanOrEqual(10);
  });
});

describe('stop() on a stalled link', () => {
  it('releases the VIPs after a bounded wait even if adverts never leave the socket', async () => {
    const config = loadVrrpConfig({
      vrid: 1,
      priority: 255,
      addresses: ['10.0.0.50'],
      primaryAddress: '10.0.0.2',
    });
    const clock = new FakeClock();
    const log: string[] = [];
    const stalled: VrrpTransport = {
      destinations: ['224.0.0.18'],
      send: () => new Promise<void>(() => {}), // the socket never becomes writable
      onReceive: () => {},
      close: () => {},
    };
    const instance = createVrrpInstance({
      config,
      transport: stalled,
      vips: {
        claim: () => (log.push('claim'), Promise.resolve()),
        release: () => (log.push('release'), Promise.resolve()),
      },
      clock,
      logger: new MemoryLogger(),
    });
    instance.start();
    expect(instance.state()).toBe('master');
    const t0 = Date.now();
    await instance.stop();
    expect(log).toContain('release');
    expect(Date.now() - t0).toBeLessThan(5000);
  }, 10_000);
});

describe('drop warnings', () => {
  it('are rate-limited per reason: the first at once, then the count once per interval', () => {
    const limit = createDropLogLimiter(10_000);
    expect(limit('bad-ttl', 0)).toBe(1);
    expect(limit('bad-ttl', 1)).toBeUndefined();
    expect(limit('auth-failed', 2)).toBe(1);
    expect(limit('bad-ttl', 5_000)).toBeUndefined();
    expect(limit('bad-ttl', 10_000)).toBe(3);
    expect(limit('bad-ttl', 30_000)).toBe(1);
  });
  it('a flood of bad adverts logs one warning; other VRIDs log none', async () => {
    const { net, instance, config, logger } = setup();
    instance.start();
    for (let i = 0; i < 500; i++) {
      const d = datagram(config, v3(200), '10.0.0.3');
      if (d.ok) net.deliver({ ok: true, datagram: { ...d.datagram, ttl: 1 } });
      net.deliver(datagram(config, { ...v3(200), vrid: 52 }, '10.0.0.3'));
    }
    await flush();
    expect(instance.counters().dropped).toEqual({ 'bad-ttl': 500, 'other-vrid': 500 });
    const warnings = logger.records.filter((r) => r.message === 'vrrp packets dropped');
    expect(warnings.map((w) => w.fields)).toEqual([
      { vrid: 51, reason: 'bad-ttl', count: 1, from: '10.0.0.3' },
    ]);
  });
});

describe('classifyIpv4 (raw socket input)', () => {
  const header = (proto: number, dst: number[]) =>
    Buffer.from([
      0x45,
      0xc0,
      0,
      32,
      0,
      1,
      0,
      0,
      255,
      proto,
      0,
      0,
      10,
      0,
      0,
      3,
      ...dst,
      ...Array<number>(12).fill(0),
    ]);
  it('keeps VRRP to the group or to us, ignores other destinations, flags broken headers', () => {
    expect(classifyIpv4(header(112, [224, 0, 0, 18]), '10.0.0.2')).toMatchObject({
      ok: true,
      datagram: { srcAddr: '10.0.0.3', dstAddr: '224.0.0.18', ttl: 255 },
    });
    expect(classifyIpv4(header(112, [10, 0, 0, 2]), '10.0.0.2')).toMatchObject({ ok: true });
    expect(classifyIpv4(header(112, [10, 0, 0, 9]), '10.0.0.2')).toBeUndefined();
    expect(classifyIpv4(header(6, [224, 0, 0, 18]), '10.0.0.2')).toEqual({
      ok: false,
      reason: 'bad-ip-header',
    });
    expect(classifyIpv4(Buffer.alloc(3), '10.0.0.2')).toEqual({ ok: false, reason: 'bad-ip-header' });
  });
});

describe('a slow VIP port', () => {
  it('never delays adverts (a 1 s GARP would let a Backup at advert 0.1 s take over)', async () => {
    const config = loadVrrpConfig({
      vrid: 1,
      priority: 255,
      advertInt: 0.1,
      addresses: ['10.0.0.50'],
      primaryAddress: '10.0.0.2',
    });
    const clock = new FakeClock();
    const net = fakeTransport();
    let releaseClaim: () => void = () => undefined;
    const instance = createVrrpInstance({
      config,
      transport: net.transport,
      vips: {
        claim: () => new Promise<void>((r) => (releaseClaim = r)), // hangs until the test lets it go
        release: () => (net.log.push('release'), Promise.resolve()),
      },
      clock,
      logger: new MemoryLogger(),
    });
    instance.start();
    for (let i = 0; i < 10; i++) {
      clock.advance(100);
      await flush();
    }
    expect(net.sent).toHaveLength(11);
    const stopping = instance.stop();
    await flush();
    expect(net.log.at(-1)).toBe('send 0');
    releaseClaim();
    await stopping;
    expect(net.log.at(-1)).toBe('release');
  });
});
