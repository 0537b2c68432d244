import { describe, expect, it } from 'vitest';
import { CoordError } from '@coord/core';
import { loadVrrpConfig, validateVrrpConfig, type VrrpConfigInput } from '../src/index.js';

const base: VrrpConfigInput = {
  vrid: 51,
  priority: 100,
  addresses: ['10.0.0.50'],
  primaryAddress: '10.0.0.1',
};

describe('validateVrrpConfig', () => {
  it('applies the defaults: v3, 1 s, preempt, multicast, no auth', () => {
    expect(validateVrrpConfig(base)).toEqual({
      ok: true,
      config: {
        vrid: 51,
        priority: 100,
        version: 3,
        family: 4,
        advertIntervalCs: 100,
        addresses: ['10.0.0.50'],
        primaryAddress: '10.0.0.1',
        unicastPeers: [],
        auth: { type: 'none' },
        preempt: true,
      },
    });
  });
  it('accepts CLI strings and the v2 password', () => {
    const r = validateVrrpConfig({
      ...base,
      vrid: '255',
      priority: '1',
      version: '2',
      advertInt: '3',
      authPass: 'secret12',
      unicastPeers: '10.0.0.2',
      preempt: false,
    });
    expect(r).toMatchObject({
      ok: true,
      config: {
        vrid: 255,
        priority: 1,
        version: 2,
        advertIntervalCs: 300,
        unicastPeers: ['10.0.0.2'],
        preempt: false,
      },
    });
  });
  it('v3 takes centisecond intervals; IPv6 works with v3', () => {
    expect(validateVrrpConfig({ ...base, advertInt: 0.1 })).toMatchObject({
      config: { advertIntervalCs: 10 },
    });
    expect(
      validateVrrpConfig({ ...base, addresses: ['fe80::50'], primaryAddress: 'FE80::0:1' }),
    ).toMatchObject({ config: { family: 6, primaryAddress: 'fe80::1' } });
  });
  const bad: [string, Partial<VrrpConfigInput>, string][] = [
    ['vrid 0', { vrid: 0 }, 'vrid'],
    ['vrid 256', { vrid: 256 }, 'vrid'],
    ['priority 0', { priority: 0 }, 'priority'],
    ['priority 1.5', { priority: 1.5 }, 'priority'],
    ['version 4', { version: 4 }, 'vrrp-version'],
    ['v2 fractional interval', { version: 2, advertInt: 0.5 }, 'advert-int'],
    ['v3 interval 41 s', { advertInt: 41 }, 'advert-int'],
    ['v3 interval 0.001 s', { advertInt: 0.001 }, 'advert-int'],
    ['interval text', { advertInt: 'fast' }, 'advert-int'],
    ['password on v3', { authPass: 'x' }, 'auth-pass'],
    ['password of 9 bytes', { version: 2, authPass: '123456789' }, 'auth-pass'],
    ['peer not an address', { unicastPeers: ['host'] }, 'unicast-peer'],
    ['peer is ourselves', { unicastPeers: ['10.0.0.1'] }, 'unicast-peer'],
    ['no VIP', { addresses: [] }, 'vip'],
    ['VIP twice', { addresses: ['10.0.0.50', '10.0.0.50'] }, 'vip'],
    ['mixed families', { addresses: ['fe80::1'] }, 'vip'],
    ['v2 with IPv6', { version: 2, primaryAddress: 'fe80::1', addresses: ['fe80::2'] }, 'vrrp-version'],
    ['preempt as text', { preempt: 'yes' }, 'preempt'],
  ];
  for (const [what, patch, field] of bad) {
    it(`refuses ${what}, naming --${field}`, () => {
      const r = validateVrrpConfig({ ...base, ...patch });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.errors.map((e) => e.field)).toContain(field);
    });
  }
  it('loadVrrpConfig throws ERR_COORD_CONFIG listing every field', () => {
    try {
      loadVrrpConfig({ ...base, vrid: 0, priority: 300 });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CoordError);
      expect((e as CoordError).code).toBe('ERR_COORD_CONFIG');
      expect((e as CoordError).message).toMatch(/--vrid.*--priority/);
    }
  });
});
