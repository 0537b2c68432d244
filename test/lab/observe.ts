import { readdirSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { execa } from 'execa';
import type {
  AddressEvent,
  ArpReply,
  ArpTick,
  ArpTimeline,
  HolderSample,
  IcmpReply,
  IcmpTimeline,
  ObserverHealth,
  Timeline,
} from './analysis.js';
import { parseAddressEvent, parsePingLine, splitMonitorTimestamp } from './plan.js';
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
  /** The `ip monitor` PIDs by host name (a test may kill one to prove a dead monitor is noticed). */
  readonly pids: ReadonlyMap<string, number>;
  /** Hosts holding the VIP right now, from the exact events (sorted). */
  holders(): string[];
  /**
   * The timeline so far (copies), without stopping, for checks while the sampler keeps running. Only `stop()`
   * proves the monitors with its canary, so each observer here reads unresponsive ("not proved"): a snapshot
   * is never evidence for `assertHandover`.
   */
  snapshot(): Timeline;
  /** Hosts whose `ip monitor` has exited: the sampler's state for them is frozen and must not be trusted. */
  deadMonitors(): string[];
  /** The latest add/del event so far (cheap, for "has it been quiet?"). */
  lastEvent(): AddressEvent | undefined;
  /**
   * When `host`'s kernel last reported the VIP added or replaced (a lifetime refresh is a replace, and ip monitor
   * shows it): the start of the lifetime its copy now runs on.
   */
  lastRefresh(host: string): number | undefined;
}

export interface ArpProber {
  stop(): Promise<ArpTimeline>;
  /** Replies so far (a copy), for polling while the prober runs. */
  snapshot(): ArpReply[];
  /** Probes sent so far, as last reported (the prober reports every 100 ms). */
  sentSoFar(): number;
  /** Those reports so far (a copy): `sent` probes had gone out by time `t`; proof that it still probes. */
  ticks(): ArpTick[];
  /** Whether the probing process still runs. */
  running(): boolean;
  /** Replies received at or after `t` (a copy; cheap when `t` is recent). */
  repliesSince(t: number): ArpReply[];
  /** The prober's PID (a test may kill it to prove a dead prober is noticed). */
  readonly pid: number;
}

export interface IcmpProber {
  stop(): Promise<IcmpTimeline>;
  snapshot(): IcmpReply[];
}

const PROBE_SCRIPT = fileURLToPath(new URL('./bin/arp-probe.py', import.meta.url));
/** Debian's interpreter, not whatever a shim on PATH points at. */
const PYTHON = '/usr/bin/python3';
/** Canary addresses live in 127.77.0.0/16 on `lo`: nothing in the lab manages or looks at them. */
const CANARY_PREFIX = '127.77.';
let canaries = 0;

/** A canary address no other sampler of this process uses (namespaces are per lab, labs per process). */
function nextCanary(): string {
  const n = canaries++ % 65_024;
  return `${CANARY_PREFIX}${Math.floor(n / 254)}.${(n % 254) + 1}`;
}

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
 * `intervalMs`. With `-ts`, `ip` stamps each event when it reads it, so an event's time does not depend on how
 * late a busy test process gets the line; events are kept in time order across hosts. Each monitor runs at
 * real-time priority (`chrt -f`), so it reads an event as soon as the kernel sends it: as an ordinary process on
 * the loaded 2-core lab it once stamped a removal 13 ms late and the sampler reported a handover as 2.9 ms of two
 * holders, which the holders' own logs (removal acknowledged before the handover was written) and the client's ARP
 * view (no probe answered by both) contradicted (soak seed 111, round 3).
 *
 * `stop()` first proves every monitor still works: it adds and removes a canary address (127.77.x.y/32 on `lo`,
 * which no coord, keepalived or HAProxy of the lab looks at) in each host and waits for each monitor to report
 * it. The result says, per host, whether the monitor was alive and reporting (`observers`).
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
  const exitedEarly = new Set<string>();
  /** Per host, the time of the VIP's last RTM_NEWADDR: its add or a lifetime refresh. */
  const lastNew = new Map<string, number>();
  let stopped = false;
  /** Canary addresses each monitor reported, per host. */
  const canariesSeen = new Map<string, Set<string>>(hosts.map((h) => [h.name, new Set<string>()]));
  const holders = (): string[] =>
    [...held]
      .filter(([, s]) => s.size > 0)
      .map(([h]) => h)
      .sort();
  const monitors = hosts.map((h) => {
    // -ts: `ip` stamps each message when it reads it (see splitMonitorTimestamp); chrt execs it at real-time
    // priority, so it reads at once (the PID stays ip's).
    const child = execa('chrt', ['-f', '50', 'ip', '-o', '-ts', '-n', h.ns, 'monitor', 'address'], {
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'ignore',
      reject: false,
      buffer: false,
      cleanup: true,
    });
    const pid = child.pid ?? -1;
    ctx.track(pid);
    void child.then(() => exitedEarly.add(h.name));
    onLines(child.stdout, (raw) => {
      const stamped = splitMonitorTimestamp(raw);
      const t = stamped.t ?? Date.now();
      const line = stamped.rest;
      if (live.get(h.name) !== true) return;
      const ev = parseAddressEvent(line);
      if (ev !== undefined && ev.iface === 'lo' && ev.address.startsWith(CANARY_PREFIX)) {
        canariesSeen.get(h.name)?.add(`${ev.op} ${ev.address}`);
        return;
      }
      if (ev?.address !== vip) return;
      if (ev.op === 'add') lastNew.set(h.name, t);
      const set = held.get(h.name) ?? new Set<string>();
      const before = set.size > 0;
      if (ev.op === 'add') set.add(ev.iface);
      else set.delete(ev.iface);
      held.set(h.name, set);
      const after = set.size > 0;
      if (before !== after) {
        // Kept in time order: each host's monitor stamps its own events, and the pipes deliver them with
        // different delays, so a later-stamped event can arrive first.
        let i = events.length;
        while (i > 0 && (events[i - 1]?.t ?? 0) > t) i--;
        events.splice(i, 0, { t, host: h.name, op: after ? 'add' : 'del' });
      }
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
  const observed = (e: AddressEvent): boolean => e.t >= start;
  return {
    pids: new Map(monitors.map((m) => [m.host.name, m.pid])),
    holders,
    lastRefresh: (host) => lastNew.get(host),
    lastEvent: () => {
      const e = events.at(-1);
      return e === undefined || !observed(e) ? undefined : { ...e };
    },
    deadMonitors: () => (stopped ? [] : hosts.map((h) => h.name).filter((n) => exitedEarly.has(n))),
    snapshot: () => ({
      vip,
      intervalMs,
      start,
      end: Date.now(),
      initial: [...initial],
      samples: samples.map((x) => ({ t: x.t, holders: [...x.holders] })),
      events: events.filter(observed).map((e) => ({ ...e })),
      observers: monitors.map((m) => ({
        name: `ip monitor ${m.host.name}`,
        aliveAtStop: !exitedEarly.has(m.host.name),
        responsive: false,
        detail: 'a snapshot: only stop() proves a monitor with its canary',
      })),
    }),
    async stop() {
      stopped = true;
      clearInterval(timer);
      const end = Date.now();
      samples.push({ t: end, holders: holders() });
      const canary = nextCanary();
      const observers = await Promise.all(
        monitors.map(async (m): Promise<ObserverHealth> => {
          const name = `ip monitor ${m.host.name}`;
          if (exitedEarly.has(m.host.name)) {
            return { name, aliveAtStop: false, responsive: false, detail: 'exited before stop()' };
          }
          const seen = canariesSeen.get(m.host.name) ?? new Set<string>();
          const problem = await proveCanary(m.host.ns, canary, seen);
          return problem === undefined
            ? { name, aliveAtStop: true, responsive: true }
            : { name, aliveAtStop: !exitedEarly.has(m.host.name), responsive: false, detail: problem };
        }),
      );
      await Promise.all(monitors.map((m) => halt(m.child, m.pid, ctx)));
      return {
        vip,
        intervalMs,
        start,
        end,
        initial,
        samples,
        events: events.filter((e) => e.t >= start && e.t <= end),
        observers,
      };
    },
  };
}

/** Add and remove `canary` in `ns`; undefined when the monitor reported both, else what it missed. */
async function proveCanary(ns: string, canary: string, seen: Set<string>): Promise<string | undefined> {
  const change = (op: 'add' | 'del') =>
    execa('ip', ['-n', ns, 'addr', op, `${canary}/32`, 'dev', 'lo'], { timeout: 5000, reject: false });
  for (const op of ['add', 'del'] as const) {
    const r = await change(op);
    if (r.exitCode !== 0) return `could not ${op} canary ${canary}: ${String(r.stderr)}`;
    try {
      await waitFor(`ip monitor in ${ns} to report canary ${op}`, () => seen.has(`${op} ${canary}`), {
        timeoutMs: 5000,
        intervalMs: 10,
      });
    } catch {
      if (op === 'add') await change('del');
      return `canary ${op} ${canary} not reported within 5 s`;
    }
  }
  return undefined;
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
  let done: { sent: number; probes: number[] } | undefined;
  let sentSoFar = 0;
  const ticks: ArpTick[] = [];
  onLines(child.stdout, (line) => {
    let msg: { type?: string; t?: number; mac?: string; seq?: number; sent?: number; probes?: number[] };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.type === 'ready') ready = msg.t ?? Date.now();
    if (msg.type === 'sent') {
      sentSoFar = msg.sent ?? sentSoFar;
      if (sentSoFar > 0) ticks.push({ t: msg.t ?? Date.now(), sent: sentSoFar });
    }
    if (msg.type === 'done') done = { sent: msg.sent ?? 0, probes: msg.probes ?? [] };
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
    pid,
    snapshot: () => [...replies],
    sentSoFar: () => sentSoFar,
    ticks: () => ticks.map((x) => ({ ...x })),
    running: () => !exitedEarly,
    repliesSince: (t) => {
      // Replies come in kernel receive order: scan back from the newest.
      let i = replies.length;
      while (i > 0 && (replies[i - 1]?.t ?? 0) >= t) i--;
      return replies.slice(i).map((r) => ({ ...r }));
    },
    async stop() {
      const aliveAtStop = !exitedEarly;
      if (aliveAtStop) {
        safeKill(pid, 'SIGTERM');
        await waitFor('the ARP prober to report', () => done !== undefined, {
          timeoutMs: 3000,
          intervalMs: 10,
        }).catch(() => undefined);
      }
      await halt(child, pid, ctx);
      // The final report (every probe's send time) comes only from a prober that was working when told to stop.
      const observer: ObserverHealth =
        aliveAtStop && done !== undefined
          ? { name: 'arp prober', aliveAtStop, responsive: true }
          : {
              name: 'arp prober',
              aliveAtStop,
              responsive: false,
              detail: aliveAtStop ? 'no final report after SIGTERM' : 'exited before stop()',
            };
      return {
        vip,
        intervalMs,
        start,
        end: Date.now(),
        sent: done?.sent ?? 0,
        probes: done?.probes ?? [],
        replies,
        garps,
        observer,
      };
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
  let exitedEarly = false;
  let lastLineAt = 0;
  void child.then(() => {
    exitedEarly = true;
  });
  onLines(child.stdout, (line) => {
    if (line.startsWith('PING ')) started = true;
    const p = parsePingLine(line);
    if (p !== undefined) lastLineAt = Date.now();
    if (p?.kind === 'reply') replies.push({ t: p.t, seq: p.seq, rttMs: p.rttMs });
    if (p?.kind === 'missing') missing.push({ t: p.t, seq: p.seq });
  });
  const start = await waitFor('ping started', () => {
    if (exitedEarly) throw new Error('ping exited');
    return started ? Date.now() : undefined;
  });
  return {
    snapshot: () => [...replies],
    async stop() {
      const stopAt = Date.now();
      const aliveAtStop = !exitedEarly;
      // With -O, ping prints a line for every probe, answered or not: silence means it stopped working.
      const quietMs = stopAt - Math.max(lastLineAt, start);
      const responsive = aliveAtStop && quietMs <= Math.max(1000, 20 * intervalMs);
      await halt(child, pid, ctx);
      const observer: ObserverHealth = responsive
        ? { name: 'ping', aliveAtStop, responsive }
        : {
            name: 'ping',
            aliveAtStop,
            responsive,
            detail: aliveAtStop ? `no output for ${quietMs} ms before stop()` : 'exited before stop()',
          };
      return { vip, intervalMs, start, end: Date.now(), replies, missing, observer };
    },
  };
}
