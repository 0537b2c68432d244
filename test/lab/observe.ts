import { readdirSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import type {
  AddressEvent,
  ArpReply,
  ArpTimeline,
  HolderSample,
  IcmpReply,
  IcmpTimeline,
  Timeline,
} from './analysis.js';
import { parseAddressEvent, parsePingLine } from './plan.js';
import { safeKill, waitFor } from './proc.js';

/** The part of a host an observer needs. */
export interface ObservedHost {
  name: string;
  ns: string;
  ip: string;
}

/** Lets the lab kill observers it did not get back (a test that throws before `stop()`). */
export interface ObserverContext {
  track(pid: number): void;
  untrack(pid: number): void;
}

export interface Sampler {
  stop(): Promise<Timeline>;
}

export interface ArpProber {
  stop(): Promise<ArpTimeline>;
  /** Replies so far (a copy), for polling while the prober runs. */
  snapshot(): ArpReply[];
}

export interface IcmpProber {
  stop(): Promise<IcmpTimeline>;
  snapshot(): IcmpReply[];
}

const PROBE_SCRIPT = fileURLToPath(new URL('./bin/arp-probe.py', import.meta.url));
/** Debian's interpreter, not whatever a shim on PATH points at. */
const PYTHON = '/usr/bin/python3';

function hasSocket(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) =>
      readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:'),
    );
  } catch {
    return false;
  }
}

function onLines(stdout: Readable | null, fn: (line: string) => void): void {
  if (stdout === null) throw new Error('observer started without a stdout pipe');
  createInterface({ input: stdout }).on('line', fn);
}

async function halt(child: PromiseLike<unknown>, pid: number, ctx: ObserverContext): Promise<void> {
  safeKill(pid, 'SIGTERM');
  const timer = setTimeout(() => safeKill(pid, 'SIGKILL'), 2000);
  await Promise.resolve(child).catch(() => undefined);
  clearTimeout(timer);
  ctx.untrack(pid);
}

function addressesOf(json: string, vip: string): Set<string> {
  const links = JSON.parse(json) as { ifname?: string; addr_info?: { local?: string }[] }[];
  const ifaces = new Set<string>();
  for (const l of links) {
    if ((l.addr_info ?? []).some((a) => a.local === vip) && l.ifname !== undefined) ifaces.add(l.ifname);
  }
  return ifaces;
}

/**
 * Watch which hosts hold `vip` on any interface. One `ip monitor address` per host namespace reports every
 * kernel add/delete the moment it happens (exact, and far cheaper than polling); a snapshot taken after the
 * monitor is listening gives the starting state. Periodic samples are derived from that state every
 * `intervalMs`.
 */
export async function startSampler(
  hosts: readonly ObservedHost[],
  vip: string,
  { intervalMs = 20 }: { intervalMs?: number },
  ctx: ObserverContext,
): Promise<Sampler> {
  const held = new Map<string, Set<string>>(hosts.map((h) => [h.name, new Set<string>()]));
  const events: AddressEvent[] = [];
  const samples: HolderSample[] = [];
  const live = new Map<string, boolean>();
  const holders = (): string[] =>
    [...held]
      .filter(([, s]) => s.size > 0)
      .map(([h]) => h)
      .sort();
  const monitors = hosts.map((h) => {
    const child = execa('ip', ['-o', '-n', h.ns, 'monitor', 'address'], {
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'ignore',
      reject: false,
      buffer: false,
      cleanup: true,
    });
    const pid = child.pid ?? -1;
    ctx.track(pid);
    onLines(child.stdout, (line) => {
      const t = Date.now();
      if (live.get(h.name) !== true) return;
      const ev = parseAddressEvent(line);
      if (ev?.address !== vip) return;
      const set = held.get(h.name) ?? new Set<string>();
      const before = set.size > 0;
      if (ev.op === 'add') set.add(ev.iface);
      else set.delete(ev.iface);
      held.set(h.name, set);
      const after = set.size > 0;
      if (before !== after) events.push({ t, host: h.name, op: after ? 'add' : 'del' });
    });
    return { host: h, child, pid };
  });
  await Promise.all(monitors.map((m) => waitFor(`ip monitor in ${m.host.ns}`, () => hasSocket(m.pid))));
  await Promise.all(
    monitors.map(async (m) => {
      live.set(m.host.name, true);
      const r = await execa('ip', ['-j', '-n', m.host.ns, 'addr', 'show'], { timeout: 5000 });
      const ifaces = addressesOf(r.stdout, vip);
      const set = held.get(m.host.name) ?? new Set<string>();
      for (const i of ifaces) set.add(i);
      held.set(m.host.name, set);
    }),
  );
  const start = Date.now();
  const initial = holders();
  samples.push({ t: start, holders: initial });
  const timer = setInterval(() => samples.push({ t: Date.now(), holders: holders() }), intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      const end = Date.now();
      samples.push({ t: end, holders: holders() });
      await Promise.all(monitors.map((m) => halt(m.child, m.pid, ctx)));
      return { vip, intervalMs, start, end, initial, samples, events: events.filter((e) => e.t >= start) };
    },
  };
}

/**
 * Broadcast ARP requests for `vip` from the client every `intervalMs` and record every reply and gratuitous
 * ARP with its MAC. iputils arping cannot go below one second, so a small AF_PACKET script does the probing.
 */
export async function startArpProber(
  client: ObservedHost,
  vip: string,
  { intervalMs = 10 }: { intervalMs?: number },
  ctx: ObserverContext,
): Promise<ArpProber> {
  const child = execa(
    'ip',
    ['netns', 'exec', client.ns, PYTHON, '-u', PROBE_SCRIPT, 'eth0', client.ip, vip, String(intervalMs)],
    { stdin: 'ignore', stdout: 'pipe', stderr: 'inherit', reject: false, buffer: false, cleanup: true },
  );
  const pid = child.pid ?? -1;
  ctx.track(pid);
  const replies: ArpReply[] = [];
  const garps: ArpReply[] = [];
  let ready: number | undefined;
  let sent = 0;
  onLines(child.stdout, (line) => {
    let msg: { type?: string; t?: number; mac?: string; seq?: number; sent?: number };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.type === 'ready') ready = msg.t ?? Date.now();
    if (msg.type === 'done') sent = msg.sent ?? 0;
    if ((msg.type === 'reply' || msg.type === 'garp') && msg.mac !== undefined) {
      const r: ArpReply = { t: msg.t ?? Date.now(), mac: msg.mac, seq: msg.seq ?? 0, kind: msg.type };
      (msg.type === 'reply' ? replies : garps).push(r);
    }
  });
  let exitedEarly = false;
  void child.then(() => {
    exitedEarly = true;
  });
  const start = await waitFor('ARP prober ready', () => {
    if (exitedEarly) throw new Error('ARP prober exited (see stderr)');
    return ready;
  });
  return {
    snapshot: () => [...replies],
    async stop() {
      await halt(child, pid, ctx);
      return { vip, intervalMs, start, end: Date.now(), sent, replies, garps };
    },
  };
}

/** `ping -D -O -i` from the client: each reply with the ping process's own timestamp, and each miss. */
export async function startIcmpProber(
  client: ObservedHost,
  vip: string,
  { intervalMs = 10 }: { intervalMs?: number },
  ctx: ObserverContext,
): Promise<IcmpProber> {
  const interval = (intervalMs / 1000).toFixed(3);
  const child = execa('ip', ['netns', 'exec', client.ns, 'ping', '-n', '-D', '-O', '-i', interval, vip], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    reject: false,
    buffer: false,
    cleanup: true,
  });
  const pid = child.pid ?? -1;
  ctx.track(pid);
  const replies: IcmpReply[] = [];
  const missing: { t: number; seq: number }[] = [];
  let started = false;
  onLines(child.stdout, (line) => {
    if (line.startsWith('PING ')) started = true;
    const p = parsePingLine(line);
    if (p?.kind === 'reply') replies.push({ t: p.t, seq: p.seq, rttMs: p.rttMs });
    if (p?.kind === 'missing') missing.push({ t: p.t, seq: p.seq });
  });
  const start = await waitFor('ping started', () => (started ? Date.now() : undefined));
  return {
    snapshot: () => [...replies],
    async stop() {
      await halt(child, pid, ctx);
      return { vip, intervalMs, start, end: Date.now(), replies, missing };
    },
  };
}
