/**
 * Runs inside a lab network namespace (`ip netns exec NS node --conditions=source --import tsx driver.ts`)
 * and executes @coord/vip operations sent as JSON lines on stdin, answering one JSON line each on stdout.
 * One long-lived process per namespace keeps lab tests fast (no Node start-up per operation) and lets
 * timings be taken where the work happens.
 */
import { createInterface } from 'node:readline';
import { isCoordError, parseCidr } from '@coord/core';
import type { Vip } from '@coord/core';
import {
  announcementFrames,
  buildGratuitousArp,
  createAnnouncer,
  createNetlinkVipPort,
  createWireProber,
  loadPacketAddon,
  watchAddresses,
  watchLinks,
} from '../../src/index.js';
import type { AddressEvent, AddressLifetime, LinkEvent, ProbeSession, WireAnswer } from '../../src/index.js';

export type Command =
  | { op: 'add'; iface: string; cidr: string; lifetime?: AddressLifetime }
  | { op: 'refresh'; iface: string; cidr: string; lifetime: AddressLifetime }
  | { op: 'remove'; iface: string; cidr: string }
  | { op: 'list'; iface: string }
  | { op: 'announce'; iface: string; cidr: string }
  | { op: 'garp'; iface: string; cidr: string; form: 'request' | 'reply' }
  | { op: 'expiry'; iface: string; cidr: string; validSec: number; refreshAfterMs?: number }
  | { op: 'bench'; iface: string; cidr: string; n: number }
  | { op: 'announceFallback'; iface: string; cidr: string }
  | { op: 'frame'; iface: string; hex: string }
  | { op: 'mac'; iface: string }
  | { op: 'watch' }
  | { op: 'events' }
  | { op: 'watchAddresses' }
  | { op: 'addressEvents' }
  | { op: 'probe'; iface: string; cidrs: string[]; rounds: number; intervalMs: number }
  | { op: 'probeStart'; iface: string; cidrs: string[]; intervalMs: number }
  | { op: 'probeRounds' }
  | { op: 'probeStop' };

/**
 * One round of the wire probe: probes sent at `t`, answers read at `drainedAt` (epoch ms, comparable with other
 * processes' timestamps). Each round first reads what arrived since the last one (`late`, counted for the
 * previous round), then probes, waits `intervalMs` and reads again.
 */
export interface ProbeRound {
  t: number;
  sent: number;
  drainedAt: number;
  answers: WireAnswer[];
}

/** A probe loop running in the background until probeStop. */
interface Probing {
  rounds: ProbeRound[];
  stop: boolean;
  done: Promise<void>;
}

const port = createNetlinkVipPort();
const announcer = createAnnouncer();
const linkEvents: LinkEvent[] = [];
/** What two address watchers saw: one that filters the echoes of this port's writes, one that does not. */
const addressEvents: { filtered: AddressEvent[]; all: AddressEvent[] } = { filtered: [], all: [] };
let fallback: ReturnType<typeof createAnnouncer> | undefined;
const prober = createWireProber();
let probing: Probing | undefined;

function openProbe(iface: string, cidrs: string[]): ProbeSession {
  const r = prober.open(iface, cidrs.map(vipOf));
  if (!r.ok) throw new Error(r.reason);
  return r.session;
}

/** Probe, wait, drain — until `rounds` are done or `state.stop` is set; then close the session. */
async function probeLoop(
  session: ProbeSession,
  intervalMs: number,
  rounds: ProbeRound[],
  until: () => boolean,
): Promise<void> {
  try {
    while (!until()) {
      const late = session.drain();
      const previous = rounds[rounds.length - 1];
      if (previous !== undefined) previous.answers.push(...late);
      const t = Date.now();
      const sent = session.probe();
      await new Promise((r) => setTimeout(r, intervalMs));
      rounds.push({ t, sent, answers: session.drain(), drainedAt: Date.now() });
    }
  } finally {
    session.close();
  }
}

/** Send raw bytes (negative controls: a frame the code under test would never build). */
function sendFrame(iface: string, frame: Buffer): void {
  const loaded = loadPacketAddon();
  if (!loaded.ok) throw new Error(loaded.reason);
  const a = loaded.addon;
  const fd = a.open(a.ifindex(iface));
  try {
    a.send(fd, frame);
  } finally {
    a.close(fd);
  }
}

function vipOf(cidr: string): Vip {
  const p = parseCidr(cidr);
  if (!p.ok) throw new Error(p.reason);
  return p.vip;
}

async function until(cond: () => Promise<boolean>, deadlineMs: number): Promise<boolean> {
  const end = performance.now() + deadlineMs;
  while (performance.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return false;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? NaN;
}
const median = (xs: number[]): number => quantile(xs, 0.5);

async function run(cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case 'add':
      return port.add(cmd.iface, vipOf(cmd.cidr), cmd.lifetime);
    case 'refresh':
      return port.refresh(cmd.iface, vipOf(cmd.cidr), cmd.lifetime);
    case 'remove':
      return port.remove(cmd.iface, vipOf(cmd.cidr));
    case 'list':
      return port.list(cmd.iface);
    case 'announce': {
      const t0 = performance.now();
      const r = announcer.announce(cmd.iface, vipOf(cmd.cidr));
      return { ...r, ms: performance.now() - t0 };
    }
    case 'garp': {
      // One form only, so a test can prove each form is accepted on its own.
      const loaded = loadPacketAddon();
      if (!loaded.ok) throw new Error(loaded.reason);
      sendFrame(
        cmd.iface,
        buildGratuitousArp(loaded.addon.hwaddr(cmd.iface), vipOf(cmd.cidr).address, cmd.form),
      );
      return 'sent';
    }
    case 'announceFallback': {
      // The arping path, as when the addon is missing: must return at once although arping runs ~1 s.
      fallback ??= createAnnouncer({ addon: null });
      const t0 = performance.now();
      const r = fallback.announce(cmd.iface, vipOf(cmd.cidr));
      return { ...r, ms: performance.now() - t0 };
    }
    case 'frame':
      sendFrame(cmd.iface, Buffer.from(cmd.hex, 'hex'));
      return 'sent';
    case 'mac': {
      const loaded = loadPacketAddon();
      if (!loaded.ok) throw new Error(loaded.reason);
      return loaded.addon.hwaddr(cmd.iface).toString('hex');
    }
    case 'expiry': {
      // Add with a short lifetime, optionally refresh once, and time when the kernel removes it.
      const vip = vipOf(cmd.cidr);
      const present = async (): Promise<boolean> =>
        (await port.list(cmd.iface)).some((a) => a.address === vip.address);
      const lifetime = { validSec: cmd.validSec, preferredSec: cmd.validSec };
      await port.remove(cmd.iface, vip);
      const t0 = performance.now();
      await port.add(cmd.iface, vip, lifetime);
      let tRefresh: number | undefined;
      if (cmd.refreshAfterMs !== undefined) {
        await new Promise((r) => setTimeout(r, cmd.refreshAfterMs));
        if (!(await present())) throw new Error('expired before the refresh');
        tRefresh = performance.now();
        await port.refresh(cmd.iface, vip, lifetime);
      }
      const gone = await until(async () => !(await present()), cmd.validSec * 1000 + 3000);
      const t1 = performance.now();
      return {
        gone,
        afterAddMs: t1 - t0,
        afterRefreshMs: tRefresh === undefined ? undefined : t1 - tRefresh,
      };
    }
    case 'bench': {
      const vip = vipOf(cmd.cidr);
      const adds: number[] = [];
      const removes: number[] = [];
      const announces: number[] = [];
      await port.remove(cmd.iface, vip);
      for (let i = 0; i < cmd.n; i++) {
        let t = performance.now();
        await port.add(cmd.iface, vip, { validSec: 30, preferredSec: 30 });
        adds.push(performance.now() - t);
        t = performance.now();
        announcer.announce(cmd.iface, vip);
        announces.push(performance.now() - t);
        t = performance.now();
        await port.remove(cmd.iface, vip);
        removes.push(performance.now() - t);
      }
      const frames = announcementFrames(Buffer.alloc(6), vip).length;
      return {
        frames,
        addMedianMs: median(adds.slice(1)),
        addFirstMs: adds[0],
        removeMedianMs: median(removes.slice(1)),
        announceMedianMs: median(announces.slice(1)),
        addP99Ms: quantile(adds.slice(1), 0.99),
        announceP99Ms: quantile(announces.slice(1), 0.99),
        announceMaxMs: Math.max(...announces.slice(1)),
        announceFirstMs: announces[0],
      };
    }
    case 'watch':
      watchLinks((e) => linkEvents.push(e));
      return 'watching';
    case 'events':
      return linkEvents;
    case 'watchAddresses': {
      const echoPort = port.echoPort?.() ?? null;
      watchAddresses((e) => addressEvents.filtered.push(e), { ignoreEchoesOf: echoPort });
      watchAddresses((e) => addressEvents.all.push(e));
      return { echoPort };
    }
    case 'addressEvents':
      return addressEvents;
    case 'probe': {
      const rounds: ProbeRound[] = [];
      await probeLoop(
        openProbe(cmd.iface, cmd.cidrs),
        cmd.intervalMs,
        rounds,
        () => rounds.length >= cmd.rounds,
      );
      return rounds;
    }
    case 'probeStart': {
      if (probing !== undefined) throw new Error('already probing');
      const session = openProbe(cmd.iface, cmd.cidrs);
      const state: Probing = { rounds: [], stop: false, done: Promise.resolve() };
      state.done = probeLoop(session, cmd.intervalMs, state.rounds, () => state.stop);
      probing = state;
      return 'probing';
    }
    case 'probeRounds':
      return probing?.rounds ?? [];
    case 'probeStop': {
      const state = probing;
      if (state === undefined) throw new Error('not probing');
      state.stop = true;
      await state.done;
      probing = undefined;
      return state.rounds;
    }
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const { id, ...cmd } = JSON.parse(line) as Command & { id: number };
  run(cmd).then(
    (result) => process.stdout.write(`${JSON.stringify({ id, ok: true, result })}\n`),
    (e: unknown) =>
      process.stdout.write(
        `${JSON.stringify({
          id,
          ok: false,
          error: {
            message: e instanceof Error ? e.message : String(e),
            code: isCoordError(e) ? e.code : undefined,
            hint: isCoordError(e) ? e.hint : undefined,
          },
        })}\n`,
      ),
  );
});
rl.on('close', () => {
  if (probing !== undefined) probing.stop = true;
  port.close();
  announcer.close();
  fallback?.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ id: 0, ok: true, result: 'ready' })}\n`);
