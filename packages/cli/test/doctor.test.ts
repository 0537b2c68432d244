import { describe, expect, it } from 'vitest';
import { parseCidr, validateNodeConfig, type NodeConfig, type Vip } from '@coord/core';
import {
  exitCodeOf,
  formatFindings,
  haproxyVersion,
  inSubnet,
  judge,
  worst,
  type Finding,
  type HostFacts,
  type InterfaceFacts,
  type VrrpAdvert,
  type VrrpHeard,
} from '../src/doctor.js';

function config(extra: Record<string, unknown> = {}): NodeConfig {
  const r = validateNodeConfig({
    node: 'lb1',
    etcd: ['http://10.0.0.2:2379'],
    cluster: 'prod',
    groups: [{ name: 'web', interface: 'eth0', vips: ['10.0.0.50/24'] }],
    ...extra,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

const vip = (s: string): Vip => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.reason);
  return r.vip;
};

/** An asymmetric matcher typed as the string it stands for (expect.stringMatching is `any`). */
function matching(re: RegExp): string {
  const m: unknown = expect.stringMatching(re);
  return m as string;
}

const ALL_CAPS = (1n << 40n) - 1n;

function eth0(patch: Partial<InterfaceFacts> = {}): InterfaceFacts {
  return {
    name: 'eth0',
    exists: true,
    others: ['lo', 'eth0'],
    carrier: true,
    mtu: 1500,
    addresses: [{ address: '10.0.0.11', prefix: 24, family: 4 }],
    arpIgnore: [0, 0],
    arpAnnounce: [0, 0],
    arpFilter: [0, 0],
    rpFilter: [0, 2],
    ...patch,
  };
}

function healthy(patch: Partial<HostFacts> = {}): HostFacts {
  return {
    interfaces: [eth0()],
    nonlocalBind4: 1,
    capEff: ALL_CAPS,
    etcd: {
      endpoints: ['https://10.0.0.2:2379'],
      tls: true,
      user: true,
      latenciesMs: [2, 3, 2, 4, 3],
      grantedTtlSec: 1,
    },
    clockSynced: { synced: true, source: 'timedatectl' },
    ...patch,
  };
}

const by = (fs: readonly Finding[], check: string): Finding | undefined =>
  fs.find((f) => f.check.startsWith(check));

describe('coord doctor: judging the facts', () => {
  it('passes a host that has everything, and exits 0', () => {
    const fs = judge(config(), healthy());
    expect(fs.filter((f) => f.verdict !== 'pass')).toEqual([]);
    expect(exitCodeOf(worst(fs))).toBe(0);
    expect(by(fs, 'interface eth0')?.detail).toMatch(
      /carrier up, MTU 1500, VIPs in its subnet: 10.0.0.50\/24/,
    );
  });

  it('fails a missing interface, naming it and the ones that exist', () => {
    const fs = judge(
      config(),
      healthy({ interfaces: [{ name: 'eth0', exists: false, others: ['lo', 'ens3'] }] }),
    );
    const f = by(fs, 'interface eth0');
    expect(f).toMatchObject({ verdict: 'fail' });
    expect(f?.detail).toMatch(/no interface eth0 on this host \(there are: lo, ens3\)/);
    expect(exitCodeOf(worst(fs))).toBe(2);
  });

  it('fails ip_nonlocal_bind=0 unless coord sets it (then warns that it does not survive a reboot)', () => {
    expect(
      by(judge(config(), healthy({ nonlocalBind4: 0 })), 'sysctl net.ipv4.ip_nonlocal_bind'),
    ).toMatchObject({
      verdict: 'fail',
      fix: matching(/sysctl -w net.ipv4.ip_nonlocal_bind=1.*99-coord.conf/),
    });
    const withHaproxy = config({ haproxy: { config: '/run/coord/haproxy.cfg' } });
    expect(
      by(
        judge(withHaproxy, healthy({ nonlocalBind4: 0, haproxy: { version: '2.6.12' } })),
        'sysctl net.ipv4.ip_nonlocal_bind',
      ),
    ).toMatchObject({ verdict: 'warn', detail: matching(/sets it to 1 at start/) });
    // IPv6 is checked only when a group has an IPv6 VIP.
    const v6 = config({ groups: [{ name: 'web', interface: 'eth0', vips: ['2001:db8::50/64'] }] });
    expect(by(judge(config(), healthy({ nonlocalBind6: 0 })), 'sysctl net.ipv6')).toBeUndefined();
    expect(by(judge(v6, healthy({ nonlocalBind6: 0 })), 'sysctl net.ipv6.ip_nonlocal_bind')?.verdict).toBe(
      'fail',
    );
  });

  it('fails no carrier, and an MTU below 1280 with an IPv6 VIP', () => {
    expect(
      by(judge(config(), healthy({ interfaces: [eth0({ carrier: false })] })), 'interface')?.verdict,
    ).toBe('fail');
    const v6 = config({ groups: [{ name: 'web', interface: 'eth0', vips: ['2001:db8::50/64'] }] });
    const fs = judge(
      v6,
      healthy({
        interfaces: [eth0({ mtu: 1000, addresses: [{ address: '2001:db8::11', prefix: 64, family: 6 }] })],
      }),
    );
    expect(fs.find((f) => f.detail.includes('MTU 1000'))?.verdict).toBe('fail');
  });

  it("warns a VIP outside the interface's subnets (its own copy does not count)", () => {
    const fs = judge(
      config(),
      healthy({
        interfaces: [
          eth0({
            addresses: [
              { address: '192.168.1.11', prefix: 24, family: 4 },
              { address: '10.0.0.50', prefix: 24, family: 4 }, // the VIP itself, held now
            ],
          }),
        ],
      }),
    );
    expect(by(fs, 'interface eth0')).toMatchObject({
      verdict: 'warn',
      detail: matching(/10.0.0.50\/24 is in none of eth0's subnets \(192.168.1.11\/24\)/),
    });
    expect(exitCodeOf(worst(fs))).toBe(1);
  });

  it('judges arp_ignore, arp_filter and rp_filter by their effective values (the larger of all and the interface)', () => {
    const f = (patch: Partial<InterfaceFacts>) => judge(config(), healthy({ interfaces: [eth0(patch)] }));
    expect(by(f({ arpIgnore: [1, 0] }), 'sysctl net.ipv4.conf.{all,eth0}.arp_ignore')?.verdict).toBe('pass');
    expect(by(f({ arpIgnore: [0, 2] }), 'sysctl net.ipv4.conf.{all,eth0}.arp_ignore')?.verdict).toBe('warn');
    expect(by(f({ arpIgnore: [8, 0] }), 'sysctl net.ipv4.conf.{all,eth0}.arp_ignore')?.verdict).toBe('fail');
    expect(by(f({ arpFilter: [0, 1] }), 'sysctl net.ipv4.conf.{all,eth0}.arp_filter')?.verdict).toBe('warn');
    expect(by(f({ rpFilter: [1, 0] }), 'sysctl net.ipv4.conf.{all,eth0}.rp_filter')).toMatchObject({
      verdict: 'warn',
      fix: matching(/rp_filter=2/),
    });
    expect(by(f({ rpFilter: [2, 0] }), 'sysctl net.ipv4.conf.{all,eth0}.rp_filter')?.detail).toBe(
      '2 (loose)',
    );
  });

  it('fails missing capabilities, naming each and what it is for', () => {
    const noRaw = ALL_CAPS & ~(1n << 13n);
    const f = by(judge(config(), healthy({ capEff: noRaw })), 'capabilities');
    expect(f).toMatchObject({
      verdict: 'fail',
      detail: 'missing CAP_NET_RAW (gratuitous ARP, wire probes, VRRP)',
    });
    // CAP_NET_BIND_SERVICE matters only when coord runs HAProxy.
    const noBind = ALL_CAPS & ~(1n << 10n);
    expect(by(judge(config(), healthy({ capEff: noBind })), 'capabilities')?.verdict).toBe('pass');
    const withHaproxy = config({ haproxy: { config: '/run/coord/haproxy.cfg' } });
    expect(
      by(judge(withHaproxy, healthy({ capEff: noBind, haproxy: { version: '2.6.12' } })), 'capabilities')
        ?.detail,
    ).toMatch(/CAP_NET_BIND_SERVICE/);
  });

  it('judges the HAProxy version, and fails a binary that does not run', () => {
    const c = config({ haproxy: { config: '/run/coord/haproxy.cfg' } });
    expect(haproxyVersion('HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/')).toBe(
      '2.6.12',
    );
    expect(by(judge(c, healthy({ haproxy: { version: '2.6.12' } })), 'haproxy')?.verdict).toBe('pass');
    expect(by(judge(c, healthy({ haproxy: { version: '2.2.9' } })), 'haproxy')?.verdict).toBe('warn');
    expect(by(judge(c, healthy({ haproxy: { version: '1.7.14' } })), 'haproxy')?.verdict).toBe('fail');
    expect(
      by(judge(c, healthy({ haproxy: { error: 'cannot run /usr/sbin/haproxy: ENOENT' } })), 'haproxy'),
    ).toMatchObject({
      verdict: 'fail',
      fix: matching(/apt install haproxy/),
    });
  });

  it('judges etcd: unreachable fails with the hint, slow reads, plaintext, permissions and a TTL raised by etcd', () => {
    const etcd = healthy().etcd!;
    const f = (patch: Partial<typeof etcd>) => judge(config(), healthy({ etcd: { ...etcd, ...patch } }));
    expect(
      by(f({ error: { message: 'connect ECONNREFUSED', hint: 'is etcd running?' } }), 'etcd'),
    ).toMatchObject({
      verdict: 'fail',
      fix: 'is etcd running?',
    });
    expect(by(f({ latenciesMs: [30, 31, 29] }), 'etcd latency')?.verdict).toBe('warn');
    expect(by(f({ latenciesMs: [80, 90, 85] }), 'etcd latency')?.verdict).toBe('fail');
    expect(by(f({ tls: false, endpoints: ['http://10.0.0.2:2379'] }), 'etcd TLS')?.verdict).toBe('warn');
    expect(by(f({ tls: false, endpoints: ['http://127.0.0.1:2379'] }), 'etcd TLS')?.verdict).toBe('pass');
    expect(by(f({ writeError: 'permission denied' }), 'etcd permissions')).toMatchObject({
      verdict: 'fail',
      fix: matching(/coord etcd-roles --cluster prod/),
    });
    expect(by(f({ grantedTtlSec: 2 }), 'etcd lease TTL')).toMatchObject({
      verdict: 'warn',
      detail: matching(/asked for 1 s, etcd granted 2 s/),
    });
    // VRRP mode does not use etcd.
    const vrrp = config({
      mode: 'vrrp',
      groups: [{ name: 'web', interface: 'eth0', vips: ['10.0.0.50/24'], vrid: 51 }],
    });
    expect(by(judge(vrrp, healthy()), 'etcd')).toBeUndefined();
  });

  it('warns an unsynchronized clock, and one nothing can vouch for', () => {
    expect(
      by(judge(config(), healthy({ clockSynced: { synced: false, source: 'timedatectl' } })), 'clock')
        ?.verdict,
    ).toBe('warn');
    const { clockSynced: _, ...unknown } = healthy();
    expect(by(judge(config(), unknown), 'clock')?.detail).toMatch(/cannot tell/);
  });

  it('judges VRRP on the link: keepalived still advertising a VIP fails in etcd mode; in VRRP mode, version and addresses', () => {
    const keepalived = (over: Partial<VrrpAdvert> = {}): VrrpAdvert => ({
      src: '10.0.0.12',
      vrid: 51,
      version: 3,
      priority: 100,
      addresses: ['10.0.0.50'],
      ...over,
    });
    const heard = (...adverts: VrrpAdvert[]): VrrpHeard[] => [{ iface: 'eth0', listenedMs: 2500, adverts }];
    expect(by(judge(config(), healthy({ vrrp: heard() })), 'vrrp on eth0')).toMatchObject({
      verdict: 'pass',
      detail: 'no VRRP adverts heard in 2.5 s',
    });
    const etcdMode = by(judge(config(), healthy({ vrrp: heard(keepalived()) })), 'vrrp on eth0');
    expect(etcdMode).toMatchObject({ verdict: 'fail', fix: matching(/stop keepalived .* on 10.0.0.12/) });
    expect(etcdMode?.detail).toMatch(
      /10.0.0.12 \(VRID 51, VRRPv3, priority 100\) advertises 10.0.0.50, a VIP of group web/,
    );
    // Other addresses on the link are none of our business.
    expect(
      by(judge(config(), healthy({ vrrp: heard(keepalived({ addresses: ['10.0.0.99'] })) })), 'vrrp on eth0')
        ?.verdict,
    ).toBe('pass');
    const vrrp = config({
      mode: 'vrrp',
      groups: [{ name: 'web', interface: 'eth0', vips: ['10.0.0.50/24'], vrid: 51 }],
    });
    expect(by(judge(vrrp, healthy({ vrrp: heard(keepalived()) })), 'vrrp on eth0')?.verdict).toBe('pass');
    expect(
      by(judge(vrrp, healthy({ vrrp: heard(keepalived({ version: 2 })) })), 'vrrp on eth0'),
    ).toMatchObject({
      verdict: 'fail',
      detail: matching(/speaks VRRPv2; group web is VRRPv3/),
    });
    expect(
      by(
        judge(vrrp, healthy({ vrrp: heard(keepalived({ addresses: ['10.0.0.50', '10.0.0.51'] })) })),
        'vrrp on eth0',
      ),
    ).toMatchObject({ verdict: 'warn' });
    expect(by(judge(vrrp, healthy({ vrrp: heard(keepalived({ vrid: 52 })) })), 'vrrp on eth0')).toMatchObject(
      {
        verdict: 'fail',
        detail: matching(/under another VRID than group web \(51\)/),
      },
    );
    // Hybrid mode (etcd mode with a vrrp block): keepalived on the same VRID is expected, unless it outranks coord.
    const hybrid = config({
      groups: [{ name: 'web', interface: 'eth0', vips: ['10.0.0.50/24'], vrrp: { vrid: 51, priority: 200 } }],
    });
    expect(by(judge(hybrid, healthy({ vrrp: heard(keepalived()) })), 'vrrp on eth0')?.verdict).toBe('pass');
    expect(
      by(judge(hybrid, healthy({ vrrp: heard(keepalived({ priority: 220 })) })), 'vrrp on eth0'),
    ).toMatchObject({ verdict: 'fail', detail: matching(/would never step down for coord/) });
    expect(
      by(
        judge(
          config(),
          healthy({ vrrp: [{ iface: 'eth0', listenedMs: 0, adverts: [], error: 'no CAP_NET_RAW' }] }),
        ),
        'vrrp on eth0',
      )?.verdict,
    ).toBe('warn');
  });

  it('prints one line per finding, a fix under each that has one, and a total', () => {
    const text = formatFindings(judge(config(), healthy({ nonlocalBind4: 0 })));
    expect(text).toMatch(/^FAIL  sysctl net.ipv4.ip_nonlocal_bind: 0: /m);
    expect(text).toMatch(/^ {6}fix: sysctl -w net.ipv4.ip_nonlocal_bind=1/m);
    expect(text.split('\n').at(-1)).toMatch(/passed, 0 warning\(s\), 1 failed$/);
  });

  it('inSubnet compares the leading prefix bits, per family', () => {
    expect(inSubnet(vip('10.0.0.50/32'), { address: '10.0.0.1', prefix: 24, family: 4 })).toBe(true);
    expect(inSubnet(vip('10.0.1.50/32'), { address: '10.0.0.1', prefix: 24, family: 4 })).toBe(false);
    expect(inSubnet(vip('10.0.0.200/32'), { address: '10.0.0.1', prefix: 25, family: 4 })).toBe(false);
    expect(inSubnet(vip('2001:db8::5/128'), { address: '2001:db8::1', prefix: 64, family: 6 })).toBe(true);
    expect(inSubnet(vip('2001:db8::5/128'), { address: '10.0.0.1', prefix: 0, family: 4 })).toBe(false);
  });
});
