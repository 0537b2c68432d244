/**
 * `coord doctor`: check this host for what `coord join` needs, before it joins — each finding is pass, warn or fail
 * with what to do about it. Facts are gathered first (files under /proc and /sys, netlink, `haproxy -v`, etcd), then
 * judged by pure functions, so every rule is unit-tested without a host.
 *
 * Exit status, like a monitoring plugin: 0 all passed, 1 the worst was a warning, 2 something failed.
 */
import { readFile, readdir } from 'node:fs/promises';
import { execa } from 'execa';
import { errorMessage, formatCidr, ipToBytes, nullLogger, type NodeConfig, type Vip } from '@coord/core';
import type { HostAddress } from '@coord/vip';

export type Verdict = 'pass' | 'warn' | 'fail';

export interface Finding {
  /** What was checked, stable for scripts (`interface eth0`, `sysctl net.ipv4.ip_nonlocal_bind`). */
  readonly check: string;
  readonly verdict: Verdict;
  readonly detail: string;
  /** What to do, when not a pass. */
  readonly fix?: string;
}

/** The interface a group uses, as this host has it (undefined: no such interface). */
export interface InterfaceFacts {
  readonly name: string;
  readonly exists: boolean;
  /** Every interface on the host, for the "did you mean" of a missing one. */
  readonly others: readonly string[];
  readonly carrier?: boolean;
  readonly mtu?: number;
  readonly addresses?: readonly HostAddress[];
  /** net.ipv4.conf.{all,IFACE}.* as read (undefined: unreadable). */
  readonly arpIgnore?: readonly [number | undefined, number | undefined];
  readonly arpAnnounce?: readonly [number | undefined, number | undefined];
  readonly arpFilter?: readonly [number | undefined, number | undefined];
  readonly rpFilter?: readonly [number | undefined, number | undefined];
}

export interface EtcdFacts {
  readonly endpoints: readonly string[];
  readonly tls: boolean;
  readonly user: boolean;
  /** Undefined when etcd answered; else why not (and what the client suggested). */
  readonly error?: { message: string; hint?: string };
  /** Round trips of a read, ms. */
  readonly latenciesMs?: readonly number[];
  /** The TTL etcd granted for the TTL coord asks for. */
  readonly grantedTtlSec?: number;
  /** Whether a write and delete under the cluster's prefix were allowed; the error otherwise. */
  readonly writeError?: string;
}

export interface HostFacts {
  readonly nonlocalBind4?: number;
  readonly nonlocalBind6?: number;
  /** CapEff of this process (bit n = capability n). */
  readonly capEff?: bigint;
  readonly interfaces: readonly InterfaceFacts[];
  /** `haproxy -v`'s version (e.g. 2.6.12), or the error running it; undefined: no HAProxy configured. */
  readonly haproxy?: { version: string } | { error: string };
  readonly etcd?: EtcdFacts;
  /** Whether the wall clock is synchronized (undefined: nothing here can tell). */
  readonly clockSynced?: { synced: boolean; source: string };
  /** VRRP adverts heard on each VIP interface (IPv4) while listening; undefined: not listened. */
  readonly vrrp?: readonly VrrpHeard[];
}

/** One VRRP router's advert, as heard on an interface. */
export interface VrrpAdvert {
  readonly src: string;
  readonly vrid: number;
  readonly version: 2 | 3;
  readonly priority: number;
  readonly addresses: readonly string[];
}

export interface VrrpHeard {
  readonly iface: string;
  readonly listenedMs: number;
  /** The last advert of each router and VRID. */
  readonly adverts: readonly VrrpAdvert[];
  /** Why nothing could be heard (no IPv4 address, no CAP_NET_RAW). */
  readonly error?: string;
}

const CAP_NET_BIND_SERVICE = 10n;
const CAP_NET_ADMIN = 12n;
const CAP_NET_RAW = 13n;

/** The ack window of TTL 1 s less the room an add needs (docs/design.md, "Timing"): slower acks cannot claim. */
const SLOW_ACK_MS = 75;
const LATENCY_WARN_MS = 25;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** Whether `vip` lies in the network of `a` (same family, same leading `a.prefix` bits). */
export function inSubnet(vip: Vip, a: HostAddress): boolean {
  if (vip.family !== a.family) return false;
  const x = ipToBytes(vip.address);
  const y = ipToBytes(a.address);
  let bits = a.prefix;
  for (let i = 0; i < x.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((x[i] ?? 0) & mask) !== ((y[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** The kernel uses the larger of `all` and the interface's value for these (Documentation/networking/ip-sysctl). */
const effective = (v: readonly [number | undefined, number | undefined] | undefined): number | undefined =>
  v === undefined || (v[0] === undefined && v[1] === undefined) ? undefined : Math.max(v[0] ?? 0, v[1] ?? 0);

function judgeNonlocalBind(config: NodeConfig, facts: HostFacts): Finding[] {
  const out: Finding[] = [];
  const mode = config.haproxy?.nonlocalBind;
  const families = new Set(config.groups.flatMap((g) => g.vips.map((v) => v.family)));
  for (const family of [4, 6] as const) {
    if (!families.has(family)) continue;
    const name = `net.${family === 4 ? 'ipv4' : 'ipv6'}.ip_nonlocal_bind`;
    const value = family === 4 ? facts.nonlocalBind4 : facts.nonlocalBind6;
    const check = `sysctl ${name}`;
    const persist = `sysctl -w ${name}=1, and persist it in /etc/sysctl.d/ (the package installs /usr/lib/sysctl.d/99-coord.conf)`;
    if (value === 1)
      out.push({ check, verdict: 'pass', detail: '1: HAProxy can bind VIPs this node does not hold' });
    else if (value === undefined)
      out.push({ check, verdict: 'warn', detail: 'unreadable', fix: `check /proc/sys/net/…; ${persist}` });
    else if (family === 4 && mode === 'set')
      out.push({
        check,
        verdict: 'warn',
        detail: `${value}: coord join sets it to 1 at start (haproxy.nonlocalBind: set), but only until reboot`,
        fix: persist,
      });
    else if (mode === 'ignore')
      out.push({ check, verdict: 'pass', detail: `${value} (haproxy.nonlocalBind: ignore)` });
    else
      out.push({
        check,
        verdict: 'fail',
        detail: `${value}: HAProxy cannot bind a VIP on a node that does not hold it, so it fails to start on followers`,
        fix: persist,
      });
  }
  return out;
}

function judgeInterface(config: NodeConfig, i: InterfaceFacts): Finding[] {
  const check = `interface ${i.name}`;
  if (!i.exists) {
    return [
      {
        check,
        verdict: 'fail',
        detail: `no interface ${i.name} on this host (there are: ${i.others.join(', ') || 'none'})`,
        fix: 'set the group’s interface to the one that carries the VIP subnet (ip -br link)',
      },
    ];
  }
  const out: Finding[] = [];
  const vips = config.groups.filter((g) => g.interface === i.name).flatMap((g) => g.vips);
  if (i.carrier === false)
    out.push({
      check,
      verdict: 'fail',
      detail: 'no carrier: nothing reaches this node through it',
      fix: `check the cable/link of ${i.name} (ip link show ${i.name})`,
    });
  const v6 = vips.some((v) => v.family === 6);
  if (i.mtu !== undefined && v6 && i.mtu < 1280)
    out.push({
      check,
      verdict: 'fail',
      detail: `MTU ${i.mtu} is below IPv6's minimum 1280`,
      fix: `ip link set ${i.name} mtu 1500`,
    });
  const own = (i.addresses ?? []).filter((a) => !vips.some((v) => v.address === a.address));
  for (const vip of vips) {
    const net = own.find((a) => inSubnet(vip, a));
    if (net === undefined && i.addresses !== undefined)
      out.push({
        check,
        verdict: 'warn',
        detail: `VIP ${formatCidr(vip)} is in none of ${i.name}'s subnets (${own.map((a) => `${a.address}/${a.prefix}`).join(', ') || 'no addresses'}): neighbours reach it only if something routes it here`,
        fix: `put the VIP in the subnet of ${i.name}, or route it to every node`,
      });
  }
  if (out.length === 0)
    out.push({
      check,
      verdict: 'pass',
      detail: [
        i.carrier === undefined ? 'carrier unknown' : 'carrier up',
        ...(i.mtu === undefined ? [] : [`MTU ${i.mtu}`]),
        vips.length === 0 ? '' : `VIPs in its subnet: ${vips.map(formatCidr).join(', ')}`,
      ]
        .filter((x) => x !== '')
        .join(', '),
    });
  return [...out, ...judgeArp(i)];
}

function judgeArp(i: InterfaceFacts): Finding[] {
  const out: Finding[] = [];
  const sys = (k: string) => `sysctl net.ipv4.conf.{all,${i.name}}.${k}`;
  const ignore = effective(i.arpIgnore);
  if (ignore !== undefined) {
    if (ignore <= 1) out.push({ check: sys('arp_ignore'), verdict: 'pass', detail: String(ignore) });
    else
      out.push({
        check: sys('arp_ignore'),
        verdict: ignore === 2 ? 'warn' : 'fail',
        detail:
          ignore === 2
            ? '2: the holder answers ARP for the VIP only from senders in the VIP’s own subnet'
            : `${ignore}: the holder does not answer ARP for the VIP`,
        fix: `sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.${i.name}.arp_ignore=1 (or 0)`,
      });
  }
  const announce = effective(i.arpAnnounce);
  if (announce !== undefined)
    out.push({
      check: sys('arp_announce'),
      verdict: 'pass',
      detail: `${announce}${announce === 2 ? ' (ARP requests use the best local address, never the VIP)' : ''}`,
    });
  const filter = i.arpFilter === undefined ? undefined : (i.arpFilter[0] ?? 0) | (i.arpFilter[1] ?? 0);
  if (filter !== undefined)
    out.push(
      filter === 0
        ? { check: sys('arp_filter'), verdict: 'pass', detail: '0' }
        : {
            check: sys('arp_filter'),
            verdict: 'warn',
            detail: `1: ARP for the VIP is answered only if the route back to the asker leaves through ${i.name}`,
            fix: `make sure clients are routed through ${i.name}, or set arp_filter=0`,
          },
    );
  const rp = effective(i.rpFilter);
  if (rp !== undefined)
    out.push(
      rp === 1
        ? {
            check: sys('rp_filter'),
            verdict: 'warn',
            detail:
              '1 (strict): traffic for the VIP that arrives where the route back does not leave is dropped',
            fix: `sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.${i.name}.rp_filter=2 (loose)`,
          }
        : { check: sys('rp_filter'), verdict: 'pass', detail: `${rp}${rp === 2 ? ' (loose)' : ''}` },
    );
  return out;
}

function judgeCapabilities(config: NodeConfig, capEff: bigint | undefined): Finding[] {
  const check = 'capabilities';
  if (capEff === undefined) return [{ check, verdict: 'warn', detail: 'could not read /proc/self/status' }];
  const has = (c: bigint) => (capEff & (1n << c)) !== 0n;
  const missing = [
    ...(has(CAP_NET_ADMIN) ? [] : ['CAP_NET_ADMIN (add and remove VIPs)']),
    ...(has(CAP_NET_RAW) ? [] : ['CAP_NET_RAW (gratuitous ARP, wire probes, VRRP)']),
    ...(config.haproxy !== undefined && !has(CAP_NET_BIND_SERVICE)
      ? ['CAP_NET_BIND_SERVICE (HAProxy binding ports below 1024)']
      : []),
  ];
  if (missing.length === 0) return [{ check, verdict: 'pass', detail: 'everything coord join needs' }];
  return [
    {
      check,
      verdict: 'fail',
      detail: `missing ${missing.join(', ')}`,
      fix: 'run as root, or give the service AmbientCapabilities= for them (the packaged unit does)',
    },
  ];
}

/** The first x.y(.z) of `haproxy -v`. */
export function haproxyVersion(text: string): string | undefined {
  return /version (\d+\.\d+(?:\.\d+)?)/i.exec(text)?.[1];
}

function judgeHaproxy(config: NodeConfig, h: HostFacts['haproxy']): Finding[] {
  if (config.haproxy === undefined || h === undefined) return [];
  const check = `haproxy ${config.haproxy.bin}`;
  if ('error' in h)
    return [
      {
        check,
        verdict: 'fail',
        detail: h.error,
        fix: 'apt install haproxy, or set haproxy.bin to where it is',
      },
    ];
  const [major = 0, minor = 0] = h.version.split('.').map(Number);
  const v = major * 100 + minor;
  if (v < 108)
    return [
      {
        check,
        verdict: 'fail',
        detail: `${h.version}: coord runs HAProxy in master-worker mode (-W, 1.8 and later)`,
        fix: 'install HAProxy 2.6 or later',
      },
    ];
  if (v < 206)
    return [
      {
        check,
        verdict: 'warn',
        detail: `${h.version}: server changes through the runtime API were tested with 2.6; older versions may reload instead`,
        fix: 'install HAProxy 2.6 or later (Debian 12 ships 2.6)',
      },
    ];
  return [{ check, verdict: 'pass', detail: `${h.version}, master-worker and runtime API` }];
}

function isLoopback(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
    return host === 'localhost' || host === '::1' || host.startsWith('127.');
  } catch {
    return false;
  }
}

function judgeEtcd(config: NodeConfig, e: EtcdFacts | undefined): Finding[] {
  if (config.mode !== 'etcd' || e === undefined) return [];
  const where = e.endpoints.join(',');
  if (e.error !== undefined)
    return [
      {
        check: 'etcd',
        verdict: 'fail',
        detail: `${where}: ${e.error.message}`,
        fix: e.error.hint ?? 'check the endpoints, the network path to them and that etcd has quorum',
      },
    ];
  const out: Finding[] = [];
  const ms = median(e.latenciesMs ?? []);
  const latency = `${ms.toFixed(1)} ms median over ${e.latenciesMs?.length ?? 0} reads`;
  out.push(
    ms >= SLOW_ACK_MS
      ? {
          check: 'etcd latency',
          verdict: 'fail',
          detail: `${latency}: slower than the ${SLOW_ACK_MS} ms a holder needs to claim its VIP`,
          fix: 'run etcd near the nodes (same site, SSD), or raise --ttl',
        }
      : ms >= LATENCY_WARN_MS
        ? {
            check: 'etcd latency',
            verdict: 'warn',
            detail: `${latency}: little room under the ${SLOW_ACK_MS} ms a holder needs`,
            fix: 'run etcd near the nodes (same site, SSD)',
          }
        : { check: 'etcd latency', verdict: 'pass', detail: latency },
  );
  const remote = e.endpoints.filter((x) => !isLoopback(x));
  out.push(
    e.tls
      ? { check: 'etcd TLS', verdict: 'pass', detail: `https${e.user ? ', with a user' : ''}` }
      : remote.length === 0
        ? { check: 'etcd TLS', verdict: 'pass', detail: 'plaintext, loopback only' }
        : {
            check: 'etcd TLS',
            verdict: 'warn',
            detail: `plaintext to ${remote.join(',')}: anyone on the path can read and forge elections`,
            fix: 'use https:// endpoints with etcd.cacert (and client certificates or a user): docs/etcd-auth.md',
          },
  );
  out.push(
    e.writeError === undefined
      ? {
          check: 'etcd permissions',
          verdict: 'pass',
          detail: `read and write under /coord/${config.cluster}/`,
        }
      : {
          check: 'etcd permissions',
          verdict: 'fail',
          detail: e.writeError,
          fix: `coord etcd-roles --cluster ${config.cluster ?? 'NAME'} prints the role this node needs`,
        },
  );
  if (e.grantedTtlSec !== undefined)
    out.push(
      e.grantedTtlSec > config.ttlSec
        ? {
            check: 'etcd lease TTL',
            verdict: 'warn',
            detail: `asked for ${config.ttlSec} s, etcd granted ${e.grantedTtlSec} s (its minimum follows its election timeout): crash failover takes that much longer`,
            fix: `use --ttl ${e.grantedTtlSec}, or lower etcd's --election-timeout`,
          }
        : { check: 'etcd lease TTL', verdict: 'pass', detail: `${config.ttlSec} s granted as asked` },
    );
  return out;
}

function judgeClock(c: HostFacts['clockSynced']): Finding {
  if (c === undefined)
    return {
      check: 'clock',
      verdict: 'warn',
      detail: 'cannot tell whether the clock is synchronized (no timedatectl or chronyc answered)',
      fix: 'run an NTP client (systemd-timesyncd, chrony): elections use monotonic clocks, but logs, events and TLS certificates need the wall clock',
    };
  return c.synced
    ? { check: 'clock', verdict: 'pass', detail: `synchronized (${c.source})` }
    : {
        check: 'clock',
        verdict: 'warn',
        detail: `not synchronized (${c.source})`,
        fix: 'start an NTP client (timedatectl set-ntp true, or chrony)',
      };
}

/**
 * VRRP traffic on a VIP's link: in etcd mode any VRRP router advertising one of our VIPs would hold it next to
 * coord (keepalived left running during a migration); in VRRP mode the peers of a group must speak its version
 * and list the same addresses, and no other VRID may advertise them.
 */
function judgeVrrp(config: NodeConfig, heard: readonly VrrpHeard[] | undefined): Finding[] {
  const out: Finding[] = [];
  const who = (a: VrrpAdvert) => `${a.src} (VRID ${a.vrid}, VRRPv${a.version}, priority ${a.priority})`;
  for (const h of heard ?? []) {
    const check = `vrrp on ${h.iface}`;
    if (h.error !== undefined) {
      out.push({
        check,
        verdict: 'warn',
        detail: `could not listen for VRRP adverts: ${h.error}`,
        fix: 'run coord doctor as root (CAP_NET_RAW) to check for keepalived or other VRRP routers on this link',
      });
      continue;
    }
    const groups = config.groups.filter((g) => g.interface === h.iface);
    const problems: Finding[] = [];
    for (const g of groups) {
      const ours = new Set(g.vips.map((v) => v.address));
      // The VRID a group speaks: its own in VRRP mode, its hybrid vrrp block in etcd mode (docs/design.md).
      const v = g.vrrp ?? g.advertise;
      for (const a of h.adverts) {
        const shared = a.addresses.filter((x) => ours.has(x));
        const sameVrid = v !== undefined && a.vrid === v.vrid;
        if (
          sameVrid &&
          g.advertise !== undefined &&
          a.version === g.advertise.version &&
          a.priority >= g.advertise.priority
        )
          problems.push({
            check,
            verdict: 'fail',
            detail: `${who(a)} advertises at or above group ${g.name}'s hybrid priority ${g.advertise.priority}: it would never step down for coord`,
            fix: `raise vrrp.priority of group ${g.name} above ${a.priority} (at most 254), or lower the keepalived priority`,
          });
        if (v === undefined && shared.length > 0)
          problems.push({
            check,
            verdict: 'fail',
            detail: `${who(a)} advertises ${shared.join(', ')}, a VIP of group ${g.name}: it would hold it next to coord`,
            fix: `stop keepalived (or the VRRP router) on ${a.src} before coord holds ${shared.join(', ')} in etcd mode, or join its cluster with coord join --mode vrrp --vrid ${a.vrid} first (README, migrating from keepalived)`,
          });
        else if (v !== undefined && !sameVrid && shared.length > 0)
          problems.push({
            check,
            verdict: 'fail',
            detail: `${who(a)} advertises ${shared.join(', ')} under another VRID than group ${g.name} (${v.vrid}): two VRRP clusters for one address`,
            fix: `use --vrid ${a.vrid} for group ${g.name}, or stop the other router`,
          });
        else if (sameVrid && a.version !== v.version)
          problems.push({
            check,
            verdict: 'fail',
            detail: `${who(a)} speaks VRRPv${a.version}; group ${g.name} is VRRPv${v.version}: they would not see each other and both become Master`,
            fix: `set vrrpVersion: ${a.version} (keepalived: vrrp_version) on one side`,
          });
        else if (sameVrid && [...a.addresses].sort().join() !== [...ours].sort().join())
          problems.push({
            check,
            verdict: 'warn',
            detail: `${who(a)} lists ${a.addresses.join(', ') || 'no address'}; group ${g.name} has ${[...ours].join(', ')}`,
            fix: 'list the same virtual addresses on every router of the VRID (keepalived logs a mismatch otherwise)',
          });
      }
    }
    out.push(
      ...(problems.length > 0
        ? problems
        : [
            {
              check,
              verdict: 'pass' as const,
              detail:
                h.adverts.length === 0
                  ? `no VRRP adverts heard in ${(h.listenedMs / 1000).toFixed(1)} s`
                  : `VRRP heard from ${h.adverts.map(who).join(', ')}: none conflicts with this config`,
            },
          ]),
    );
  }
  return out;
}

/** Every finding for `config` on a host with `facts`. */
export function judge(config: NodeConfig, facts: HostFacts): Finding[] {
  return [
    ...judgeVrrp(config, facts.vrrp),
    ...facts.interfaces.flatMap((i) => judgeInterface(config, i)),
    ...judgeNonlocalBind(config, facts),
    ...judgeCapabilities(config, facts.capEff),
    ...judgeHaproxy(config, facts.haproxy),
    ...judgeEtcd(config, facts.etcd),
    judgeClock(facts.clockSynced),
  ];
}

export function worst(findings: readonly Finding[]): Verdict {
  return findings.some((f) => f.verdict === 'fail')
    ? 'fail'
    : findings.some((f) => f.verdict === 'warn')
      ? 'warn'
      : 'pass';
}

/** 0 pass, 1 warn, 2 fail. */
export function exitCodeOf(v: Verdict): number {
  return v === 'pass' ? 0 : v === 'warn' ? 1 : 2;
}

export function formatFindings(findings: readonly Finding[]): string {
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${f.verdict.toUpperCase().padEnd(4)}  ${f.check}: ${f.detail}`);
    if (f.fix !== undefined) lines.push(`      fix: ${f.fix}`);
  }
  const n = (v: Verdict) => findings.filter((f) => f.verdict === v).length;
  lines.push(`${n('pass')} passed, ${n('warn')} warning(s), ${n('fail')} failed`);
  return lines.join('\n');
}

// ── gathering facts on this host ────────────────────────────────────────────────────────────────────────────

async function readNumber(path: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(path, 'utf8')).trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

const confPair = async (iface: string, key: string): Promise<[number | undefined, number | undefined]> => [
  await readNumber(`/proc/sys/net/ipv4/conf/all/${key}`),
  await readNumber(`/proc/sys/net/ipv4/conf/${iface}/${key}`),
];

async function interfaceFacts(
  name: string,
  list: (iface: string) => Promise<HostAddress[]>,
): Promise<InterfaceFacts> {
  const all = await readdir('/sys/class/net').catch(() => [] as string[]);
  if (!all.includes(name)) return { name, exists: false, others: all };
  const carrier = await readNumber(`/sys/class/net/${name}/carrier`); // unreadable while the link is down
  const mtu = await readNumber(`/sys/class/net/${name}/mtu`);
  const addresses = await list(name).catch(() => undefined);
  return {
    name,
    exists: true,
    others: all,
    carrier: carrier === undefined ? false : carrier === 1,
    ...(mtu === undefined ? {} : { mtu }),
    ...(addresses === undefined ? {} : { addresses }),
    arpIgnore: await confPair(name, 'arp_ignore'),
    arpAnnounce: await confPair(name, 'arp_announce'),
    arpFilter: await confPair(name, 'arp_filter'),
    rpFilter: await confPair(name, 'rp_filter'),
  };
}

async function capEff(): Promise<bigint | undefined> {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(await readFile('/proc/self/status', 'utf8'));
    return m?.[1] === undefined ? undefined : BigInt(`0x${m[1]}`);
  } catch {
    return undefined;
  }
}

async function haproxyFacts(bin: string): Promise<HostFacts['haproxy']> {
  try {
    const r = await execa(bin, ['-v'], { reject: false, timeout: 5000 });
    const v = haproxyVersion(r.stdout);
    if (r.exitCode === 0 && v !== undefined) return { version: v };
    return { error: `\`${bin} -v\` exited ${String(r.exitCode)}: ${(r.stderr || r.stdout).slice(0, 200)}` };
  } catch (e) {
    return { error: `cannot run ${bin}: ${errorMessage(e)}` };
  }
}

async function clockFacts(): Promise<HostFacts['clockSynced']> {
  const t = await execa('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], {
    reject: false,
    timeout: 3000,
  }).catch(() => undefined);
  const v = t?.exitCode === 0 ? t.stdout.trim() : '';
  if (v === 'yes' || v === 'no') return { synced: v === 'yes', source: 'timedatectl' };
  const c = await execa('chronyc', ['-n', 'tracking'], { reject: false, timeout: 3000 }).catch(
    () => undefined,
  );
  if (c?.exitCode === 0) {
    const status = /^Leap status\s*:\s*(.+)$/m.exec(c.stdout)?.[1]?.trim();
    if (status !== undefined) return { synced: status === 'Normal', source: `chronyc: ${status}` };
  }
  return undefined;
}

/**
 * Listen for VRRP adverts (IPv4, multicast and unicast to this host) on `iface` for `ms`, as a VRRP router on the
 * link would hear them.
 */
async function vrrpFacts(
  iface: string,
  addresses: readonly HostAddress[] | undefined,
  ms: number,
): Promise<VrrpHeard> {
  const primary = addresses?.find(
    (a) => a.family === 4 && a.permanent === true && a.secondary !== true,
  )?.address;
  if (primary === undefined)
    return { iface, listenedMs: 0, adverts: [], error: `${iface} has no IPv4 address to listen on` };
  const { createRawVrrpTransport, decode } = await import('@coord/vrrp');
  let transport: import('@coord/vrrp').VrrpTransport;
  try {
    transport = createRawVrrpTransport({
      interfaceAddress: primary,
      interfaceName: iface,
      logger: nullLogger,
    });
  } catch (e) {
    return { iface, listenedMs: 0, adverts: [], error: errorMessage(e) };
  }
  const heard = new Map<string, VrrpAdvert>();
  transport.onReceive((r) => {
    if (!r.ok) return;
    const d = r.datagram;
    const p = decode(d.payload, { family: 4, srcAddr: d.srcAddr, dstAddr: d.dstAddr, ttl: d.ttl });
    if (!p.ok) return;
    const a = p.packet;
    heard.set(`${d.srcAddr}/${a.vrid}`, {
      src: d.srcAddr,
      vrid: a.vrid,
      version: a.version,
      priority: a.priority,
      addresses: a.addresses,
    });
  });
  await new Promise((r) => setTimeout(r, ms));
  transport.close();
  return { iface, listenedMs: ms, adverts: [...heard.values()] };
}

export interface GatherPorts {
  /** Addresses on an interface (the netlink port's list). */
  readonly listAddresses: (iface: string) => Promise<HostAddress[]>;
  /** How long to listen for VRRP adverts on each VIP interface (0: not at all; default 2500 ms). */
  readonly vrrpListenMs?: number;
  /** etcd's answers, when the config is in etcd mode. */
  etcd?: () => Promise<EtcdFacts>;
}

/** Read everything {@link judge} needs from this host. */
export async function gatherFacts(config: NodeConfig, ports: GatherPorts): Promise<HostFacts> {
  const names = [...new Set(config.groups.map((g) => g.interface))];
  const [interfaces, caps, haproxy, clock, etcd] = await Promise.all([
    Promise.all(names.map((n) => interfaceFacts(n, ports.listAddresses))),
    capEff(),
    config.haproxy === undefined ? Promise.resolve(undefined) : haproxyFacts(config.haproxy.bin),
    clockFacts(),
    ports.etcd === undefined ? Promise.resolve(undefined) : ports.etcd(),
  ]);
  const listenMs = ports.vrrpListenMs ?? 2500;
  const vrrp =
    listenMs <= 0
      ? undefined
      : await Promise.all(
          interfaces.filter((i) => i.exists).map((i) => vrrpFacts(i.name, i.addresses, listenMs)),
        );
  const nonlocalBind4 = await readNumber('/proc/sys/net/ipv4/ip_nonlocal_bind');
  const nonlocalBind6 = await readNumber('/proc/sys/net/ipv6/ip_nonlocal_bind');
  return {
    interfaces,
    ...(nonlocalBind4 === undefined ? {} : { nonlocalBind4 }),
    ...(nonlocalBind6 === undefined ? {} : { nonlocalBind6 }),
    ...(caps === undefined ? {} : { capEff: caps }),
    ...(haproxy === undefined ? {} : { haproxy }),
    ...(clock === undefined ? {} : { clockSynced: clock }),
    ...(etcd === undefined ? {} : { etcd }),
    ...(vrrp === undefined ? {} : { vrrp }),
  };
}

/**
 * Ask etcd what `coord join` will need from it: reads (timed), a lease of the configured TTL (what etcd grants),
 * and a write and delete under the cluster's `peer/` prefix (which the node role may write; nobody reads
 * `peer/doctor-*`). The lease is revoked at the end, taking the probe key with it if the delete failed.
 */
export async function etcdFacts(config: NodeConfig, timeoutMs = 5000): Promise<EtcdFacts> {
  const { clusterKeys, createEtcdBackend, loadConnection } = await import('@coord/etcd');
  const base: EtcdFacts = {
    endpoints: config.etcd.endpoints,
    tls: config.etcd.endpoints.some((e) => e.startsWith('https:')),
    user: config.etcd.user !== undefined,
  };
  let etcd: ReturnType<typeof createEtcdBackend> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const within = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
  try {
    etcd = createEtcdBackend(loadConnection(config.etcd, { callTimeoutMs: timeoutMs }));
    const client = etcd;
    const keys = clusterKeys(config.cluster ?? '');
    const latenciesMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await within(client.get(keys.member(config.node)));
      latenciesMs.push(performance.now() - t0);
    }
    const lease = await within(client.grant(config.ttlSec));
    let writeError: string | undefined;
    try {
      const key = `${keys.peer}doctor-${config.node}`;
      await within(client.put(key, JSON.stringify({ doctor: true }), lease.leaseId));
      await within(client.txn([{ key, target: 'create', value: 0 }], [], [{ type: 'delete', key }]));
    } catch (e) {
      writeError = errorMessage(e);
    }
    await within(client.revoke(lease.leaseId)).catch(() => undefined);
    return {
      ...base,
      latenciesMs,
      grantedTtlSec: lease.ttlSec,
      ...(writeError === undefined ? {} : { writeError }),
    };
  } catch (e) {
    const hint = (e as { hint?: unknown }).hint;
    return {
      ...base,
      error: { message: errorMessage(e), ...(typeof hint === 'string' ? { hint } : {}) },
    };
  } finally {
    etcd?.close();
  }
}
