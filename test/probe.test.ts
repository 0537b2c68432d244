/**
 * The takeover probe (@coord/vip WireProber) against real kernels: h1 runs the prober, h2 holds (or stops
 * holding) the VIP with nothing but `ip addr`, the client is a bystander that sends frames of its own. The
 * prober and the bystander run packages/vip/test/lab/driver.ts inside their namespaces; nothing is sent from
 * the root namespace. ip(8) in h2's namespace is the independent observer of when the kernel deleted a VIP.
 */
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildArpProbe,
  buildDadSolicitation,
  buildGratuitousArp,
  buildUnsolicitedNa,
  type WireAnswer,
} from '@coord/vip';
import { Lab, waitFor, type LabHost } from './lab/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DRIVER = fileURLToPath(new URL('../packages/vip/test/lab/driver.ts', import.meta.url));
/** Probe cadence inside a round loop: probe, wait this long, read the answers. */
const INTERVAL_MS = 20;
/** The IPv6 VIP: the lab's hosts have no IPv6 addresses, and each lab is its own link. */
const VIP6 = '2001:db8::c0:201';
/** A MAC nobody in the lab has: frames h1 sends under it must still never be read back as answers. */
const SPOOFED_MAC = Buffer.from('02000000beef', 'hex');

const DRIVER_OPTIONS = {
  cwd: ROOT,
  stdin: 'pipe',
  stdout: 'pipe',
  stderr: 'inherit',
  reject: false,
} as const;

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { message: string };
}

/** As in packages/vip/test/lab/driver.ts. */
interface ProbeRound {
  t: number;
  sent: number;
  drainedAt: number;
  answers: WireAnswer[];
}

/** A driver process in one namespace; `ok(cmd)` sends one JSON command and returns its result. */
class Driver {
  private next = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  readonly ready: Promise<void>;
  readonly proc: ResultPromise<typeof DRIVER_OPTIONS>;

  constructor(readonly host: LabHost) {
    this.proc = execa(
      'ip',
      ['netns', 'exec', host.ns, 'node', '--conditions=source', '--import', 'tsx', DRIVER],
      DRIVER_OPTIONS,
    );
    let resolveReady: () => void = () => {};
    this.ready = new Promise((r) => (resolveReady = r));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      if (reply.id === 0) resolveReady();
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
  }

  async ok(cmd: Record<string, unknown>, timeoutMs = 15_000): Promise<unknown> {
    const id = this.next++;
    const r = await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.host.name}: no answer to ${JSON.stringify(cmd)}`)),
        timeoutMs,
      );
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      this.proc.stdin.write(`${JSON.stringify({ id, ...cmd })}\n`);
    });
    if (!r.ok) throw new Error(`${this.host.name}: ${JSON.stringify(cmd)} failed: ${r.error?.message}`);
    return r.result;
  }

  /** Close stdin (the driver exits), then SIGKILL by PID if it has not gone within 3 s. */
  async stop(): Promise<void> {
    this.proc.stdin.end();
    const exited = await Promise.race([
      this.proc.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 3000)),
    ]);
    if (!exited && this.proc.pid !== undefined) process.kill(this.proc.pid, 'SIGKILL');
  }
}

let lab: Lab;
let h1: LabHost;
let h2: LabHost;
let prober: Driver;
let bystander: Driver;
let vip4: string;
const figures: Record<string, unknown>[] = [];

beforeAll(async () => {
  lab = await Lab.create({ hosts: 2, name: 'probe' });
  [h1, h2] = lab.hosts as [LabHost, LabHost];
  vip4 = lab.freeAddress(1);
  prober = new Driver(h1);
  bystander = new Driver(lab.client);
  const started = Promise.all([prober.ready, bystander.ready]);
  await Promise.race([
    started,
    new Promise((_, reject) => setTimeout(() => reject(new Error('drivers did not start')), 30_000)),
  ]);
});

afterAll(async () => {
  await Promise.all([prober?.stop(), bystander?.stop()]);
  await lab?.destroy();
  for (const f of figures) console.log(`probe figures ${JSON.stringify(f)}`);
});

const cidr4 = (): string => `${vip4}/32`;
const cidr6 = `${VIP6}/128`;
const mac = (text: string): Buffer => Buffer.from(text.replaceAll(':', ''), 'hex');

async function probeRounds(cidrs: string[], rounds: number): Promise<ProbeRound[]> {
  return (await prober.ok({
    op: 'probe',
    iface: 'eth0',
    cidrs,
    rounds,
    intervalMs: INTERVAL_MS,
  })) as ProbeRound[];
}

async function sendFrom(d: Driver, frame: Buffer): Promise<void> {
  await d.ok({ op: 'frame', iface: 'eth0', hex: frame.toString('hex') });
}

describe('the wire probe against a holder that has the VIP, then not', () => {
  const cases = [
    { family: 4, kind: 'arp-reply', cidr: cidr4, add: [] as string[] },
    // nodad: usable at once, as coord adds IPv6 VIPs; a tentative address is not answered for.
    { family: 6, kind: 'na', cidr: () => cidr6, add: ['nodad'] },
  ] as const;
  for (const c of cases) {
    it(`IPv${c.family}: every probe is answered by h2's MAC while it has the VIP, none after ip addr del`, async () => {
      await lab.exec(h2, 'ip', ['addr', 'add', c.cidr(), 'dev', 'eth0', ...c.add]);
      const address = c.cidr().split('/')[0];
      const held = await probeRounds([c.cidr()], 10);
      expect(held.map((r) => r.sent)).toEqual(Array(10).fill(1));
      // The kernel answers inside the softirq that carries the probe: each round reads its own answer.
      for (const r of held) expect(r.answers).toEqual([{ address, mac: h2.mac, kind: c.kind }]);

      await lab.exec(h2, 'ip', ['addr', 'del', c.cidr(), 'dev', 'eth0']);
      expect(await lab.addresses(h2)).not.toContain(address);
      const gone = await probeRounds([c.cidr()], 12);
      expect(gone.map((r) => r.sent)).toEqual(Array(12).fill(1));
      expect(gone.flatMap((r) => r.answers)).toEqual([]);
    });
  }
});

describe('what is and is not an answer on a real wire', () => {
  it("counts a bystander's announcements, not its probes, and never reads back h1's own frames", async () => {
    const client = mac(lab.client.mac);
    await prober.ok({ op: 'probeStart', iface: 'eth0', cidrs: [cidr4(), cidr6], intervalMs: INTERVAL_MS });
    try {
      // Not answers: the bystander probing for the same addresses (RFC 5227 §2.1.1, RFC 4862 §5.4.2) …
      await sendFrom(bystander, buildArpProbe(client, vip4));
      await sendFrom(bystander, buildDadSolicitation(client, VIP6));
      // … and claims h1 itself puts on the wire under a MAC that is not its own: the own-MAC check
      // cannot drop them, the receiving socket must never be handed outgoing frames.
      await sendFrom(prober, buildGratuitousArp(SPOOFED_MAC, vip4, 'request'));
      await sendFrom(prober, buildUnsolicitedNa(SPOOFED_MAC, VIP6));
      // Answers, sent last on the same path: once they have been read, everything above has been too.
      await sendFrom(bystander, buildGratuitousArp(client, vip4, 'request'));
      await sendFrom(bystander, buildUnsolicitedNa(client, VIP6));
      await waitFor(
        'both announcements read by the prober',
        async () =>
          ((await prober.ok({ op: 'probeRounds' })) as ProbeRound[]).flatMap((r) => r.answers).length >= 2,
        { timeoutMs: 5000 },
      );
    } finally {
      const rounds = (await prober.ok({ op: 'probeStop' })) as ProbeRound[];
      const answers = rounds.flatMap((r) => r.answers);
      expect(answers).toHaveLength(2);
      expect(answers).toEqual(
        expect.arrayContaining([
          { address: vip4, mac: lab.client.mac, kind: 'arp-request' },
          { address: VIP6, mac: lab.client.mac, kind: 'na' },
        ]),
      );
      // One ARP probe and one DAD solicitation per round: one session holds both families.
      expect(new Set(rounds.map((r) => r.sent))).toEqual(new Set([2]));
    }
  });
});

/** `[2026-11-28T05:27:48.216972] Deleted 3: eth0    inet 10.1.2.201/32 …` from `ip -ts -o monitor` (TZ=UTC). */
function parseMonitorLine(line: string): { t: number; deleted: boolean; address: string } | undefined {
  const m =
    /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?\]\s+(Deleted\s+)?\d+:\s+\S+\s+inet6?\s+([^/\s]+)/.exec(line);
  if (m?.[1] === undefined || m[4] === undefined) return undefined;
  const t = Date.parse(`${m[1]}Z`) + Number(`0${m[2] ?? ''}`) * 1000;
  return { t, deleted: m[3] !== undefined, address: m[4] };
}

/** Kernel address events in `host`, timestamped by ip(8) in the namespace as it reads them. */
async function monitorAddresses(host: LabHost) {
  const child = execa('ip', ['-ts', '-o', '-n', host.ns, 'monitor', 'address'], {
    env: { TZ: 'UTC' },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'inherit',
    reject: false,
    buffer: false,
  });
  const events: { t: number; deleted: boolean; address: string }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const e = parseMonitorLine(line);
    if (e !== undefined) events.push(e);
  });
  const stop = async (): Promise<void> => {
    if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    await child;
  };
  try {
    // Listening once it reports a change we make: a sentinel address added and deleted until seen.
    const sentinel = lab.freeAddress(9);
    await waitFor(
      `ip monitor in ${host.name}`,
      async () => {
        await lab.exec(host, 'ip', ['addr', 'add', `${sentinel}/32`, 'dev', 'eth0']);
        await lab.exec(host, 'ip', ['addr', 'del', `${sentinel}/32`, 'dev', 'eth0']);
        return events.some((e) => e.address === sentinel && e.deleted);
      },
      { timeoutMs: 5000 },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { events, stop };
}

describe('a VIP with a 1 s kernel lifetime (the crashed holder)', () => {
  const cases = [
    { family: 4, address: () => vip4, prefix: 32, add: [] as string[] },
    { family: 6, address: () => VIP6, prefix: 128, add: ['nodad'] },
  ] as const;
  for (const c of cases) {
    it(`IPv${c.family}: is answered for until the kernel deletes it, and not after`, async () => {
      const address = c.address();
      const monitor = await monitorAddresses(h2);
      await prober.ok({
        op: 'probeStart',
        iface: 'eth0',
        cidrs: [`${address}/${c.prefix}`],
        intervalMs: INTERVAL_MS,
      });
      let rounds: ProbeRound[] = [];
      try {
        await waitFor(
          'probing to run',
          async () => ((await prober.ok({ op: 'probeRounds' })) as ProbeRound[]).length >= 3,
        );
        const beforeAdd = Date.now();
        await lab.exec(h2, 'ip', [
          'addr',
          'add',
          `${address}/${c.prefix}`,
          'dev',
          'eth0',
          'valid_lft',
          '1',
          'preferred_lft',
          '1',
          ...c.add,
        ]);
        const del = await waitFor(
          'the kernel to delete the VIP',
          () => monitor.events.find((e) => e.address === address && e.deleted),
          { timeoutMs: 10_000 },
        );
        await waitFor(
          '12 probes after the delete',
          async () =>
            ((await prober.ok({ op: 'probeRounds' })) as ProbeRound[]).filter(
              (r) => r.t >= del.t + INTERVAL_MS,
            ).length >= 12,
          { timeoutMs: 10_000 },
        );
        rounds = (await prober.ok({ op: 'probeStop' })) as ProbeRound[];
        const add = monitor.events.find((e) => e.address === address && !e.deleted);
        expect(add).toBeDefined();
        if (add === undefined) return;

        // Only h2 ever answers, and only for the VIP.
        const kind = c.family === 4 ? 'arp-reply' : 'na';
        for (const a of rounds.flatMap((r) => r.answers)) expect(a).toEqual({ address, mac: h2.mac, kind });
        // Nothing before the add was even started.
        expect(rounds.filter((r) => r.drainedAt < beforeAdd).flatMap((r) => r.answers)).toEqual([]);
        // Every probe sent while the kernel had the VIP was answered. ip(8) stamps the delete as it reads the
        // event, a little after the kernel made it: probes in the last 200 ms before the stamp are not judged.
        const heldRounds = rounds.filter((r) => r.t >= add.t && r.t <= del.t - 200);
        expect(heldRounds.length).toBeGreaterThanOrEqual(10);
        expect(heldRounds.filter((r) => r.answers.length === 0).map((r) => r.t - add.t)).toEqual([]);
        // No answer to any probe sent after the delete (one round later, so no reply can still be in flight).
        const after = rounds.filter((r) => r.t >= del.t + INTERVAL_MS);
        expect(after.length).toBeGreaterThanOrEqual(12);
        expect(after.flatMap((r) => r.answers)).toEqual([]);

        const answered = rounds.filter((r) => r.answers.length > 0);
        const last = answered[answered.length - 1];
        const firstSilent = rounds.find((r) => r.t > (last?.t ?? Infinity));
        figures.push({
          family: c.family,
          kernelDeleteAfterAddMs: Math.round(del.t - add.t),
          lastAnsweredProbeBeforeDeleteMs: last === undefined ? null : Math.round(del.t - last.t),
          lastAnswerReadBeforeDeleteMs: last === undefined ? null : Math.round(del.t - last.drainedAt),
          firstUnansweredProbeMinusDeleteMs:
            firstSilent === undefined ? null : Math.round(firstSilent.t - del.t),
          answeredRounds: answered.length,
          silentRoundsAfterDelete: after.length,
        });
      } finally {
        await monitor.stop();
        if (rounds.length === 0) await prober.ok({ op: 'probeStop' }).catch(() => undefined);
      }
    });
  }
});
