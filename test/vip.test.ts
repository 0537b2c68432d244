/**
 * @coord/vip against a real kernel: two network namespaces joined by a veth pair. The code under test runs in
 * namespace A (packages/vip/test/lab/driver.ts, one long-lived process answering JSON lines); namespace B is the
 * neighbour that must learn who owns the VIP. Nothing here touches the root namespace's addresses.
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGratuitousArp, buildUnsolicitedNa } from '@coord/vip';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DRIVER = fileURLToPath(new URL('../packages/vip/test/lab/driver.ts', import.meta.url));
const SUFFIX = randomBytes(3).toString('hex');
const NS_A = `vipA-${SUFFIX}`;
const NS_B = `vipB-${SUFFIX}`;
const IF_A = 'va';
const IF_B = 'vb';
const BOGUS_MAC = '02:00:00:00:00:99';
const CMD_TIMEOUT = { timeout: 10_000 };
/** The driver exits when its stdin closes; its stderr goes to the test output. */
const DRIVER_OPTIONS = {
  cwd: ROOT,
  stdin: 'pipe',
  stdout: 'pipe',
  stderr: 'inherit',
  reject: false,
} as const;

const created: string[] = [];
let driver: Driver | undefined;
let macA = '';

async function sh(file: string, args: string[]): Promise<string> {
  return (await execa(file, args, CMD_TIMEOUT)).stdout;
}
const inNs = (ns: string, file: string, args: string[]): Promise<string> =>
  sh('ip', ['netns', 'exec', ns, file, ...args]);

/** Poll `probe` until it returns a value other than undefined, or fail at the deadline. */
async function poll<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { message: string; code?: string; hint?: string };
}

/** The process in namespace A that runs @coord/vip; request() sends one JSON command and awaits its answer. */
class Driver {
  private next = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  readonly ready: Promise<void>;

  constructor(readonly proc: ResultPromise<typeof DRIVER_OPTIONS>) {
    let resolveReady: () => void = () => {};
    this.ready = new Promise((r) => (resolveReady = r));
    const rl = createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      if (reply.id === 0) resolveReady();
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
  }

  request(cmd: Record<string, unknown>, timeoutMs = 10_000): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`driver did not answer ${JSON.stringify(cmd)}`)),
        timeoutMs,
      );
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.proc.stdin.write(`${JSON.stringify({ id, ...cmd })}\n`);
    });
  }

  /** The result of a command that must succeed. */
  async ok(cmd: Record<string, unknown>, timeoutMs?: number): Promise<unknown> {
    const r = await this.request(cmd, timeoutMs);
    if (!r.ok) throw new Error(`${JSON.stringify(cmd)} failed: ${r.error?.message}`);
    return r.result;
  }
}

function d(): Driver {
  if (driver === undefined) throw new Error('driver not started');
  return driver;
}

interface IpAddr {
  local: string;
  prefixlen: number;
  valid_life_time?: number;
  tentative?: boolean;
}

/** Addresses on A's veth as ip(8) sees them: an observer independent of the code under test. */
async function ipAddrs(): Promise<IpAddr[]> {
  const out = JSON.parse(await sh('ip', ['-n', NS_A, '-j', 'addr', 'show', 'dev', IF_A])) as {
    addr_info: IpAddr[];
  }[];
  return out[0]?.addr_info ?? [];
}

/** B's neighbour-table MAC for `ip`, or undefined. */
async function neighMac(ip: string): Promise<string | undefined> {
  const out = JSON.parse(await sh('ip', ['-n', NS_B, '-j', 'neigh', 'show', ip, 'dev', IF_B])) as {
    lladdr?: string;
  }[];
  return out[0]?.lladdr;
}

/** Start tcpdump in B, wait until it listens, run `act`, and return the lines of `count` captured packets. */
async function capture(filter: string[], count: number, act: () => Promise<unknown>): Promise<string[]> {
  const td = execa(
    'ip',
    ['netns', 'exec', NS_B, 'tcpdump', '-i', IF_B, '-c', String(count), '-nn', '-e', '-vv', '-l', ...filter],
    {
      timeout: 10_000,
      reject: false,
    },
  );
  let listening = false;
  td.stderr.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('listening on')) listening = true;
  });
  await poll('tcpdump to listen', 5000, () => Promise.resolve(listening ? true : undefined));
  await act();
  const r = await td;
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.split('\n').filter((l) => l.trim() !== '');
}

beforeAll(async () => {
  for (const ns of [NS_A, NS_B]) {
    await sh('ip', ['netns', 'add', ns]);
    created.push(ns);
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // No DAD: addresses are usable at once, and nothing waits a second for it.
    await inNs(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  }
  await sh('ip', ['-n', NS_A, 'link', 'add', IF_A, 'type', 'veth', 'peer', 'name', IF_B, 'netns', NS_B]);
  await sh('ip', ['-n', NS_A, 'addr', 'add', '192.0.2.1/24', 'dev', IF_A]);
  await sh('ip', ['-n', NS_B, 'addr', 'add', '192.0.2.2/24', 'dev', IF_B]);
  await sh('ip', ['-n', NS_A, 'addr', 'add', '2001:db8::1/64', 'dev', IF_A, 'nodad']);
  await sh('ip', ['-n', NS_B, 'addr', 'add', '2001:db8::2/64', 'dev', IF_B, 'nodad']);
  await sh('ip', ['-n', NS_A, 'link', 'set', IF_A, 'up']);
  await sh('ip', ['-n', NS_B, 'link', 'set', IF_B, 'up']);
  macA =
    (JSON.parse(await sh('ip', ['-n', NS_A, '-j', 'link', 'show', IF_A])) as { address: string }[])[0]
      ?.address ?? '';
  expect(macA).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);

  const proc = execa(
    'ip',
    ['netns', 'exec', NS_A, 'node', '--conditions=source', '--import', 'tsx', DRIVER],
    DRIVER_OPTIONS,
  );
  driver = new Driver(proc);
  await Promise.race([
    driver.ready,
    new Promise((_, reject) => setTimeout(() => reject(new Error('driver did not start')), 20_000)),
  ]);
});

afterAll(async () => {
  if (driver !== undefined) {
    driver.proc.stdin.end(); // the driver exits when its stdin closes
    const pid = driver.proc.pid;
    const exited = await Promise.race([
      driver.proc.then(() => true),
      new Promise((r) => setTimeout(() => r(false), 3000)),
    ]);
    if (exited !== true && pid !== undefined) process.kill(pid, 'SIGKILL');
  }
  for (const ns of created) await execa('ip', ['netns', 'del', ns], { reject: false, timeout: 10_000 });
});

describe('netlink VIP port in a namespace', () => {
  it('adds, lists, re-adds, refreshes and removes an IPv4 VIP; ip(8) agrees at each step', async () => {
    const vip = '192.0.2.100/32';
    expect(
      await d().ok({ op: 'add', iface: IF_A, cidr: vip, lifetime: { validSec: 30, preferredSec: 30 } }),
    ).toBe('added');
    let seen = (await ipAddrs()).find((a) => a.local === '192.0.2.100');
    expect(seen?.prefixlen).toBe(32);
    expect(seen?.valid_life_time).toBeLessThanOrEqual(30);

    const listed = (await d().ok({ op: 'list', iface: IF_A })) as { address: string; validSec?: number }[];
    expect(listed.find((a) => a.address === '192.0.2.100')).toMatchObject({ prefix: 32, family: 4 });
    expect(listed.map((a) => a.address)).toContain('192.0.2.1');

    // Already there → 'present', and the lifetime is the one asked for now.
    expect(
      await d().ok({ op: 'add', iface: IF_A, cidr: vip, lifetime: { validSec: 600, preferredSec: 600 } }),
    ).toBe('present');
    seen = (await ipAddrs()).find((a) => a.local === '192.0.2.100');
    expect(seen?.valid_life_time).toBeGreaterThan(30);

    await d().ok({ op: 'refresh', iface: IF_A, cidr: vip, lifetime: { validSec: 10, preferredSec: 10 } });
    seen = (await ipAddrs()).find((a) => a.local === '192.0.2.100');
    expect(seen?.valid_life_time).toBeLessThanOrEqual(10);

    expect(await d().ok({ op: 'remove', iface: IF_A, cidr: vip })).toBe('removed');
    expect((await ipAddrs()).some((a) => a.local === '192.0.2.100')).toBe(false);
    expect(await d().ok({ op: 'remove', iface: IF_A, cidr: vip })).toBe('absent');
    // Documented: like the kernel, a refresh of a VIP that has gone (expired) puts it back.
    await d().ok({ op: 'refresh', iface: IF_A, cidr: vip, lifetime: { validSec: 10, preferredSec: 10 } });
    expect((await ipAddrs()).some((a) => a.local === '192.0.2.100')).toBe(true);
    expect(await d().ok({ op: 'remove', iface: IF_A, cidr: vip })).toBe('removed');
    // The interface's own address was never touched.
    expect((await ipAddrs()).some((a) => a.local === '192.0.2.1')).toBe(true);
  });

  it('adds an IPv6 VIP usable at once (no DAD, not tentative) and removes it', async () => {
    await inNs(NS_A, 'sysctl', ['-qw', `net.ipv6.conf.${IF_A}.accept_dad=1`]); // the VIP must not rely on the lab's setting
    const vip = '2001:db8::100/128';
    expect(await d().ok({ op: 'add', iface: IF_A, cidr: vip })).toBe('added');
    const seen = (await ipAddrs()).find((a) => a.local === '2001:db8::100');
    expect(seen).toBeDefined();
    expect(seen?.tentative).toBeUndefined();
    expect(await d().ok({ op: 'remove', iface: IF_A, cidr: vip })).toBe('removed');
    expect(await d().ok({ op: 'remove', iface: IF_A, cidr: vip })).toBe('absent');
  });

  it('fails with ERR_COORD_NETLINK and a hint naming a missing interface', async () => {
    const r = await d().request({ op: 'add', iface: 'nope0', cidr: '192.0.2.100/32' });
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('ERR_COORD_NETLINK');
    expect(r.error?.hint).toContain('"nope0"');
  });

  for (const cidr of ['192.0.2.101/32', '2001:db8::101/128']) {
    it(`lets the kernel remove ${cidr} when its lifetime runs out, and a refresh restarts the clock`, async () => {
      const once = (await d().ok({ op: 'expiry', iface: IF_A, cidr, validSec: 1 }, 15_000)) as {
        gone: boolean;
        afterAddMs: number;
      };
      expect(once.gone).toBe(true);
      expect(once.afterAddMs).toBeGreaterThanOrEqual(900);
      expect(once.afterAddMs).toBeLessThan(2500);

      const refreshed = (await d().ok(
        { op: 'expiry', iface: IF_A, cidr, validSec: 2, refreshAfterMs: 1000 },
        15_000,
      )) as {
        gone: boolean;
        afterAddMs: number;
        afterRefreshMs: number;
      };
      expect(refreshed.gone).toBe(true);
      // Without the refresh it would have gone ~2 s after the add; with it, ~2 s after the refresh.
      expect(refreshed.afterRefreshMs).toBeGreaterThanOrEqual(1900);
      expect(refreshed.afterAddMs).toBeGreaterThanOrEqual(2800);
      expect(refreshed.afterRefreshMs).toBeLessThan(3500);
    });
  }
});

describe('announcements seen by the neighbour namespace', () => {
  it('puts a GARP request and a GARP reply on the wire, both broadcast from our MAC', async () => {
    await d().ok({ op: 'add', iface: IF_A, cidr: '192.0.2.110/32' });
    const lines = await capture(['arp'], 2, async () => {
      const r = (await d().ok({ op: 'announce', iface: IF_A, cidr: '192.0.2.110/32' })) as {
        via: string;
        mac: string;
      };
      expect(r).toMatchObject({ ok: true, via: 'packet', frames: 2, mac: macA });
    });
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toContain(`${macA} > ff:ff:ff:ff:ff:ff`);
    expect(lines[0]).toContain('Request who-has 192.0.2.110 tell 192.0.2.110');
    expect(lines[1]).toContain(`Reply 192.0.2.110 is-at ${macA}`);
  });

  // Linux only lets an ARP override a neighbour entry updated within `locktime` when it recognises it as
  // gratuitous (net/ipv4/arp.c, arp_is_garp: target IP = sender IP, and for the reply form target MAC = sender
  // MAC). Each form must do it on its own, because some devices honour only one of them (kube-vip #80). The lock
  // is raised to 5 s so that every frame below lands inside it; the controls send the same frame made not
  // gratuitous and must be ignored, so an update proves the frame was taken as gratuitous, not merely as ARP.
  const LOCK_MS = 5000;
  /** Point B's entry for each address at a bogus MAC (a fresh update: the lock starts now); returns when. */
  async function lockedEntries(...ips: string[]): Promise<number> {
    await inNs(NS_B, 'sysctl', ['-qw', `net.ipv4.neigh.${IF_B}.locktime=${LOCK_MS / 10}`]);
    const since = Date.now();
    for (const ip of ips) {
      await sh('ip', ['-n', NS_B, 'neigh', 'replace', ip, 'lladdr', BOGUS_MAC, 'dev', IF_B, 'nud', 'stale']);
      expect(await neighMac(ip)).toBe(BOGUS_MAC);
    }
    return since;
  }
  const learned = (ip: string, what: string) =>
    poll(`B to learn ${macA} for ${ip} from ${what}`, LOCK_MS, async () =>
      (await neighMac(ip)) === macA ? true : undefined,
    );

  for (const form of ['request', 'reply'] as const) {
    it(`updates an existing neighbour entry with the ${form} form alone`, async () => {
      const since = await lockedEntries('192.0.2.110');
      await d().ok({ op: 'garp', iface: IF_A, cidr: '192.0.2.110/32', form });
      await learned('192.0.2.110', `a GARP ${form}`);
      expect(Date.now() - since).toBeLessThan(LOCK_MS); // inside the lock: only a gratuitous ARP could do it
    });

    it(`control: a ${form} that is not gratuitous does not override the entry`, async () => {
      const [plain, marker] = ['192.0.2.114', '192.0.2.115'];
      const since = await lockedEntries(plain, marker);
      const frame = buildGratuitousArp(Buffer.from(macA.replaceAll(':', ''), 'hex'), plain, form);
      // ARP payload from byte 14: sender MAC at 22, sender IP at 28, target MAC at 32, target IP at 38.
      if (form === 'request')
        frame.set([192, 0, 2, 99], 38); // who-has 192.0.2.99 (nobody's) tell 192.0.2.114
      else frame.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 32); // target MAC ≠ sender MAC
      await d().ok({ op: 'frame', iface: IF_A, hex: frame.toString('hex') });
      // A real GARP of the same form for the marker, sent after it on the same wire: once the marker has been
      // learned, the plain frame has been processed too.
      await d().ok({ op: 'garp', iface: IF_A, cidr: `${marker}/32`, form });
      await learned(marker, `a GARP ${form}`);
      expect(await neighMac(plain)).toBe(BOGUS_MAC);
      expect(Date.now() - since).toBeLessThan(LOCK_MS);
      // And the plain frame is a well-formed ARP that B does learn once no lock is in the way: only the lock,
      // which gratuitous ARPs override, kept it out above.
      await inNs(NS_B, 'sysctl', ['-qw', `net.ipv4.neigh.${IF_B}.locktime=0`]);
      await d().ok({ op: 'frame', iface: IF_A, hex: frame.toString('hex') });
      await learned(plain, `a plain ARP ${form} without a lock`);
    });
  }

  it('creates a neighbour entry in a peer with arp_accept=1 that never talked to the VIP', async () => {
    await inNs(NS_B, 'sysctl', ['-qw', `net.ipv4.conf.${IF_B}.arp_accept=1`]);
    await d().ok({ op: 'add', iface: IF_A, cidr: '192.0.2.111/32' });
    expect(await neighMac('192.0.2.111')).toBeUndefined();
    await d().ok({ op: 'announce', iface: IF_A, cidr: '192.0.2.111/32' });
    await poll('B to create an entry for 192.0.2.111', 2000, async () =>
      (await neighMac('192.0.2.111')) === macA ? true : undefined,
    );
  });

  it('sends an unsolicited NA (override, hop limit 255, valid checksum) that updates the neighbour', async () => {
    await d().ok({ op: 'add', iface: IF_A, cidr: '2001:db8::110/128' });
    await sh('ip', [
      '-n',
      NS_B,
      'neigh',
      'replace',
      '2001:db8::110',
      'lladdr',
      BOGUS_MAC,
      'dev',
      IF_B,
      'nud',
      'stale',
    ]);
    const lines = await capture(['icmp6 and ip6[40] == 136'], 1, async () => {
      expect(await d().ok({ op: 'announce', iface: IF_A, cidr: '2001:db8::110/128' })).toMatchObject({
        ok: true,
        frames: 1,
      });
    });
    const text = lines.join('\n');
    expect(text).toContain(`${macA} > 33:33:00:00:00:01`);
    expect(text).toContain('hlim 255');
    expect(text).toContain('2001:db8::110 > ff02::1');
    expect(text).toContain('neighbor advertisement, length 32, tgt is 2001:db8::110');
    expect(text).toContain('Flags [override]');
    expect(text).toContain(`link-address option (2), length 8 (1): ${macA}`); // type 2 = target LLA (tcpdump says "destination")
    expect(text).toContain('icmp6 sum ok');
    // The kernel drops an NA with a bad checksum or hop limit, so this is the end-to-end proof.
    await poll(`B to learn ${macA} for 2001:db8::110`, 2000, async () =>
      (await neighMac('2001:db8::110')) === macA ? true : undefined,
    );
  });
});

describe('what the neighbour must reject, and the arping fallback', () => {
  // Proves the NA test above is not vacuous: the peer kernel really checks the checksum and the hop limit
  // (RFC 4861 §7.1.2). Each bad NA is followed by a good NA for another target on the same wire; once the
  // good one has been applied, the bad one has been processed too, so no fixed sleep is needed.
  const corruptions: [string, (f: Buffer) => void][] = [
    ['a wrong checksum', (f) => (f[56] = (f[56] ?? 0) ^ 0xff)],
    ['hop limit 254', (f) => (f[21] = 254)],
  ];
  for (const [what, corrupt] of corruptions) {
    it(`drops an NA with ${what}`, async () => {
      const mac = Buffer.from(macA.replaceAll(':', ''), 'hex');
      const [bad, good] = ['2001:db8::120', '2001:db8::121'];
      for (const ip of [bad, good]) {
        await sh('ip', [
          '-n',
          NS_B,
          'neigh',
          'replace',
          ip,
          'lladdr',
          BOGUS_MAC,
          'dev',
          IF_B,
          'nud',
          'stale',
        ]);
      }
      const badFrame = buildUnsolicitedNa(mac, bad);
      corrupt(badFrame);
      await d().ok({ op: 'frame', iface: IF_A, hex: badFrame.toString('hex') });
      await d().ok({ op: 'frame', iface: IF_A, hex: buildUnsolicitedNa(mac, good).toString('hex') });
      await poll('the good NA to be applied', 2000, async () =>
        (await neighMac(good)) === macA ? true : undefined,
      );
      expect(await neighMac(bad)).toBe(BOGUS_MAC);
    });
  }

  it('falls back to arping without waiting for it, and both GARP forms still reach the wire', async () => {
    await d().ok({ op: 'add', iface: IF_A, cidr: '192.0.2.130/32' });
    const lines = await capture(['arp and host 192.0.2.130'], 2, async () => {
      const r = (await d().ok({ op: 'announceFallback', iface: IF_A, cidr: '192.0.2.130/32' })) as {
        ok: boolean;
        via: string;
        ms: number;
      };
      expect(r).toMatchObject({ ok: true, via: 'arping' });
      expect(r.ms).toBeLessThan(300); // spawning only (4-10 ms measured); arping itself runs ~1 s
    });
    const text = lines.join('\n');
    expect(text).toContain('Request who-has 192.0.2.130');
    expect(text).toContain(`Reply 192.0.2.130 is-at ${macA}`);
  });
});

describe('link watcher', () => {
  it('reports the current state, then a link going down and up', async () => {
    await d().ok({ op: 'watch' });
    const events = async (): Promise<{ iface: string; up: boolean; carrier: boolean }[]> =>
      (await d().ok({ op: 'events' })) as { iface: string; up: boolean; carrier: boolean }[];
    await poll('the initial state of va', 2000, async () =>
      (await events()).find((e) => e.iface === IF_A && e.up && e.carrier),
    );
    const before = (await events()).length;
    await sh('ip', ['-n', NS_B, 'link', 'set', IF_B, 'down']); // the peer going away drops our carrier
    await poll('carrier loss on va', 2000, async () =>
      (await events()).slice(before).find((e) => e.iface === IF_A && e.up && !e.carrier),
    );
    await sh('ip', ['-n', NS_A, 'link', 'set', IF_A, 'down']);
    await poll('va down', 2000, async () =>
      (await events()).slice(before).find((e) => e.iface === IF_A && !e.up),
    );
    await sh('ip', ['-n', NS_B, 'link', 'set', IF_B, 'up']);
    await sh('ip', ['-n', NS_A, 'link', 'set', IF_A, 'up']);
    await poll('va up with carrier again', 2000, async () =>
      (await events()).slice(before).find((e) => e.iface === IF_A && e.up && e.carrier),
    );
  });
});

describe('address watcher', () => {
  it("filters the notifications of the port's own writes in the kernel, and nothing else", async () => {
    type Seen = { op: 'add' | 'del'; address: { address: string } };
    const { echoPort } = (await d().ok({ op: 'watchAddresses' })) as { echoPort: number | null };
    expect(echoPort).toEqual(expect.any(Number));
    const own = '192.0.2.140';
    const foreign = '192.0.2.141';
    const lifetime = { validSec: 30, preferredSec: 30 };
    expect(await d().ok({ op: 'add', iface: IF_A, cidr: `${own}/24`, lifetime })).toBe('added');
    for (let i = 0; i < 3; i++)
      expect(await d().ok({ op: 'refresh', iface: IF_A, cidr: `${own}/24`, lifetime })).toBe('refreshed');
    await sh('ip', ['-n', NS_A, 'addr', 'add', `${foreign}/24`, 'dev', IF_A]);
    expect(await d().ok({ op: 'remove', iface: IF_A, cidr: `${own}/24` })).toBe('removed');
    await sh('ip', ['-n', NS_A, 'addr', 'del', `${foreign}/24`, 'dev', IF_A]);
    const seen = async () => (await d().ok({ op: 'addressEvents' })) as { filtered: Seen[]; all: Seen[] };
    const of = (events: Seen[], address: string) =>
      events.filter((e) => e.address.address === address).map((e) => e.op);
    // Each socket's notifications arrive in order: once both saw the last change, they saw all before it.
    const done = await poll('the foreign removal', 2000, async () => {
      const s = await seen();
      return of(s.all, foreign).includes('del') && of(s.filtered, foreign).includes('del') ? s : undefined;
    });
    // The unfiltered watcher saw our add and each refresh (RTM_NEWADDR with our port) and our removal.
    expect(of(done.all, own)).toEqual(['add', 'add', 'add', 'add', 'del']);
    // The filtered one: only our removal; somebody else's add and removal both.
    expect(of(done.filtered, own)).toEqual(['del']);
    expect(of(done.filtered, foreign)).toEqual(['add', 'del']);
  });
});
