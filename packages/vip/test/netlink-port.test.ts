import { describe, expect, it } from 'vitest';
import { addressRequest, normalizeLifetime, toHostAddress } from '../src/netlink-port.js';
import { toLinkEvent } from '../src/links.js';
import { FOREVER } from '../src/types.js';

const v4 = { address: '192.0.2.10', prefix: 32, family: 4 } as const;
const v6 = { address: '2001:db8::10', prefix: 64, family: 6 } as const;

describe('normalizeLifetime', () => {
  it('rounds up to whole seconds and keeps preferred ≤ valid (the kernel rejects preferred > valid)', () => {
    expect(normalizeLifetime({ validSec: 1.2, preferredSec: 5 })).toEqual({ validSec: 2, preferredSec: 2 });
    expect(normalizeLifetime({ validSec: FOREVER, preferredSec: FOREVER })).toEqual({
      validSec: FOREVER,
      preferredSec: FOREVER,
    });
    expect(normalizeLifetime({ validSec: 1e12, preferredSec: -3 })).toEqual({
      validSec: FOREVER,
      preferredSec: 0,
    });
  });

  it('refuses a zero valid lifetime, which would mean "remove now"', () => {
    expect(() => normalizeLifetime({ validSec: 0, preferredSec: 0 })).toThrow(RangeError);
  });
});

describe('addressRequest', () => {
  it('IPv4: AF_INET, local = address = VIP, lifetime in IFA_CACHEINFO', () => {
    const r = addressRequest(7, v4, { validSec: 3, preferredSec: 2 });
    expect(r.data).toEqual({ family: 2, prefixlen: 32, index: 7 });
    expect(r.attrs.local).toEqual(Buffer.from([192, 0, 2, 10]));
    expect(r.attrs.address).toEqual(Buffer.from([192, 0, 2, 10]));
    expect(r.attrs.cacheInfo).toEqual({ ifaValid: 3, ifaPrefered: 2, cstamp: 0, tstamp: 0 });
  });

  it('IPv6: AF_INET6 with nodad, so the VIP is usable at once after a failover', () => {
    const r = addressRequest(3, v6);
    expect(r.data).toMatchObject({ family: 10, prefixlen: 64, index: 3, flags: { nodad: true } });
    expect(r.attrs.flags).toEqual({ nodad: true });
    expect(r.attrs.cacheInfo).toBeUndefined();
    expect(r.attrs.local?.length).toBe(16);
  });
});

describe('toHostAddress', () => {
  it('decodes an IPv4 address with remaining lifetimes', () => {
    expect(
      toHostAddress({
        kind: 'address',
        data: { family: 2, prefixlen: 24, index: 2 },
        attrs: { local: Buffer.from([10, 1, 2, 3]), cacheInfo: { ifaValid: 9, ifaPrefered: 4 } },
      }),
    ).toEqual({
      address: '10.1.2.3',
      prefix: 24,
      family: 4,
      validSec: 9,
      preferredSec: 4,
      permanent: false,
      secondary: false,
    });
  });

  it("reports permanent and secondary addresses (a host's own address is permanent and primary)", () => {
    const own = toHostAddress({
      kind: 'address',
      data: { family: 2, prefixlen: 24, index: 2, flags: { permanent: true } },
      attrs: { local: Buffer.from([10, 1, 2, 3]) },
    });
    expect(own).toMatchObject({ permanent: true, secondary: false });
    const extra = toHostAddress({
      kind: 'address',
      data: { family: 2, prefixlen: 24, index: 2 },
      attrs: { local: Buffer.from([10, 1, 2, 50]), flags: { permanent: true, secondary: true } },
    });
    expect(extra).toMatchObject({ permanent: true, secondary: true });
  });

  it('decodes IPv6 from IFA_ADDRESS when there is no IFA_LOCAL', () => {
    const bytes = Buffer.alloc(16);
    bytes[0] = 0xfe;
    bytes[1] = 0x80;
    bytes[15] = 1;
    expect(
      toHostAddress({ kind: 'address', data: { family: 10, prefixlen: 64 }, attrs: { address: bytes } }),
    ).toEqual({ address: 'fe80::1', prefix: 64, family: 6, permanent: false, secondary: false });
  });

  it('skips other families and malformed lengths instead of throwing', () => {
    expect(
      toHostAddress({ kind: 'address', data: { family: 17 }, attrs: { local: Buffer.alloc(4) } }),
    ).toBeUndefined();
    expect(
      toHostAddress({ kind: 'address', data: { family: 2 }, attrs: { local: Buffer.alloc(16) } }),
    ).toBeUndefined();
    expect(toHostAddress({ kind: 'address', data: { family: 2 }, attrs: {} })).toBeUndefined();
  });
});

describe('toLinkEvent', () => {
  it('reports up and carrier from IFLA_CARRIER', () => {
    expect(
      toLinkEvent(
        { kind: 'link', data: { flags: { up: true } }, attrs: { ifname: 'eth0', carrier: 0 } },
        false,
      ),
    ).toEqual({ iface: 'eth0', up: true, carrier: false });
  });

  it('falls back to IFF_LOWER_UP, and reports a deleted link as down', () => {
    const msg = {
      kind: 'link' as const,
      data: { flags: { up: true as const, lowerUp: true as const } },
      attrs: { ifname: 'eth1' },
    };
    expect(toLinkEvent(msg, false)).toEqual({ iface: 'eth1', up: true, carrier: true });
    expect(toLinkEvent(msg, true)).toEqual({ iface: 'eth1', up: false, carrier: false });
  });

  it('ignores a message without a name', () => {
    expect(toLinkEvent({ kind: 'link', data: {}, attrs: {} }, false)).toBeUndefined();
  });
});
