/**
 * The lab's address and naming plan, as pure functions: the same inputs always give the same namespaces,
 * interfaces, addresses and MACs, so tests, the CLI and the sweeper agree without sharing state.
 */

/** An IPv4 /24 chosen for one lab. Every lab gets its own so concurrent labs never look alike in logs. */
export interface LabSubnet {
  /** Network address, e.g. `10.201.7.0`. */
  readonly base: string;
  readonly prefix: 24;
}

/** Prefix shared by every namespace this library creates; `sweep` only ever touches names starting with it. */
export const LAB_NS_PREFIX = 'coordlab-';

/** Host numbers inside the /24 (the last octet). VIPs live at 200+n so they never collide with hosts. */
export const PLAN = {
  firstHost: 11,
  client: 100,
  vipBase: 200,
  maxVips: 39,
  firstEtcd: 241,
  etcdClientPort: 2379,
  etcdPeerPort: 2380,
  /** etcd's second client port: only the per-host delay proxy uses it, so nft never redirects it. */
  etcdDirectPort: 2479,
  /** The delay proxy in each host listens on 127.0.0.1:(proxyBasePort + member index). */
  proxyBasePort: 23790,
} as const;

/** Draw a random /24 inside 10.200.0.0–10.250.255.0 (the range reserved for labs). */
export function randomSubnet(random: () => number = Math.random): LabSubnet {
  const b = 200 + Math.floor(random() * 51);
  const c = Math.floor(random() * 256);
  return { base: `10.${b}.${c}.0`, prefix: 24 };
}

/** The address `host` (last octet) in `subnet`. */
export function addressIn(subnet: LabSubnet, host: number): string {
  if (!Number.isInteger(host) || host < 1 || host > 254)
    throw new RangeError(`host octet out of range: ${host}`);
  const [a, b, c] = subnet.base.split('.');
  return `${a}.${b}.${c}.${host}`;
}

/**
 * A locally administered, deterministic MAC (02:…) from the subnet and host octet, so a MAC in a timeline tells
 * the reader which host answered without a lookup table.
 */
export function macFor(subnet: LabSubnet, host: number): string {
  const [, b, c] = subnet.base.split('.').map(Number);
  const hex = (n: number | undefined): string => (n ?? 0).toString(16).padStart(2, '0');
  return `02:c0:${hex(b)}:${hex(c)}:00:${hex(host)}`;
}

/** A lab prefix: `coordlab-<name>-<6 hex>`; the name is squeezed to [a-z0-9] so it is safe in file names. */
export function makePrefix(name: string | undefined, random: () => number = Math.random): string {
  const clean = (name ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '')
    .slice(0, 12);
  const suffix = Math.floor(random() * 0xffffff)
    .toString(16)
    .padStart(6, '0');
  return clean === '' ? `${LAB_NS_PREFIX}${suffix}` : `${LAB_NS_PREFIX}${clean}-${suffix}`;
}

/** The lab prefix a namespace name belongs to, or undefined when it is not one of ours. */
export function prefixOfNamespace(ns: string): string | undefined {
  if (!ns.startsWith(LAB_NS_PREFIX)) return undefined;
  const m = /^(coordlab-(?:[a-z0-9]{1,12}-)?[0-9a-f]{6})-[a-z0-9]+$/.exec(ns);
  return m?.[1];
}

/** Namespace names of one lab. */
export function namespaceNames(
  prefix: string,
  hosts: number,
): { sw: string; etcd: string; client: string; hosts: string[] } {
  return {
    sw: `${prefix}-sw`,
    etcd: `${prefix}-etcd`,
    client: `${prefix}-client`,
    hosts: Array.from({ length: hosts }, (_, i) => `${prefix}-h${i + 1}`),
  };
}

/** Parse one line of `ip -o monitor address`; undefined for lines that are not IPv4/IPv6 address events. */
export function parseAddressEvent(
  line: string,
): { op: 'add' | 'del'; iface: string; address: string; prefixLength: number } | undefined {
  const m = /^(Deleted )?(?:\[[^\]]*\]\s*)?\d+:\s+(\S+)\s+inet6?\s+([0-9a-fA-F.:]+)\/(\d+)/.exec(line);
  if (m === null) return undefined;
  const [, deleted, iface, address, plen] = m;
  if (iface === undefined || address === undefined || plen === undefined) return undefined;
  return { op: deleted === undefined ? 'add' : 'del', iface, address, prefixLength: Number(plen) };
}

/**
 * Split the `[2026-11-28T05:46:56.587728] ` prefix that `ip -ts monitor` puts on each line: the time `ip` read the
 * kernel's message, in local time with microseconds. Taken by `ip` itself, it is free of the pipe and of the
 * reader's event-loop delays (tens of ms on a loaded machine). `t` is undefined when there is no prefix.
 */
export function splitMonitorTimestamp(line: string): { t: number | undefined; rest: string } {
  const m = /^\[(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})\]\s*/.exec(line);
  if (m === null) return { t: undefined, rest: line };
  const [y, mo, d, h, mi, sec, us] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const t = new Date(y, mo - 1, d, h, mi, sec).getTime() + us / 1000;
  return { t, rest: line.slice(m[0].length) };
}

/** Parse one line of `ping -D -O`: a reply or a "no answer yet" report, with the ping process's epoch time. */
export function parsePingLine(
  line: string,
):
  | { kind: 'reply'; t: number; seq: number; rttMs: number }
  | { kind: 'missing'; t: number; seq: number }
  | undefined {
  const reply = /^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms/.exec(line);
  if (reply !== null) {
    return { kind: 'reply', t: Number(reply[1]) * 1000, seq: Number(reply[2]), rttMs: Number(reply[3]) };
  }
  const missing = /^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)/.exec(line);
  if (missing !== null) return { kind: 'missing', t: Number(missing[1]) * 1000, seq: Number(missing[2]) };
  return undefined;
}
