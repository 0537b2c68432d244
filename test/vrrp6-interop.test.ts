/**
 * VRRPv3 over IPv6 (RFC 5798: ff02::12, hop limit 255, link-local source) with a real keepalived 2.2.7: coord's
 * runner (packages/vrrp, native IPv6 transport) and keepalived on two hosts (network namespaces) of one bridge,
 * each side as Master and as Backup, graceful failover both ways; the on-link check (hop limit) with injected
 * adverts. keepalived must never log "invalid" or "mismatch" about coord's adverts. Every name carries a random
 * suffix; only this lab's namespaces are touched and only the PIDs it started are killed.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encode } from '@coord/vrrp';
import { run, waitFor } from './fixtures/vrrp/netlab.js';

const ROOT = new URL('../', import.meta.url).pathname;
const RUNNER = new URL('./fixtures/vrrp/run-instance.ts', import.meta.url).pathname;
const VIP = '2001:db8:1::50';

interface Host {
  readonly ns: string;
  linkLocal: string;
}
interface Proc {
  facts(): Record<string, unknown>[];
  log(): string;
  stop(): Promise<void>;
}

const suffix = Math.random().toString(36).slice(2, 8);
const sw = `vrrp6-${suffix}-sw`;
const h1: Host = { ns: `vrrp6-${suffix}-h1`, linkLocal: '' };
const h2: Host = { ns: `vrrp6-${suffix}-h2`, linkLocal: '' };
const created: string[] = [];
const kills: (() => Promise<void>)[] = [];
const figures: string[] = [];
let dir = '';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function killAll(): Promise<void> {
  for (const k of kills.splice(0).reverse()) await k().catch(() => undefined);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), `vrrp6-${suffix}-`));
  for (const ns of [sw, h1.ns, h2.ns]) {
    await run('ip', ['netns', 'add', ns]);
    created.push(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  // No multicast snooping: ff02::12 is flooded like on a plain switch.
  await run('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
  await run('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
  for (const [i, h] of [h1, h2].entries()) {
    // No DAD: the link-local address is usable (not tentative) as soon as the link is up.
    await run('ip', ['netns', 'exec', h.ns, 'sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0']);
    await run('ip', [
      '-n',
      sw,
      'link',
      'add',
      `p${i}`,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      h.ns,
    ]);
    await run('ip', ['-n', sw, 'link', 'set', `p${i}`, 'master', 'br0', 'up']);
    await run('ip', ['netns', 'exec', h.ns, 'sysctl', '-qw', 'net.ipv6.conf.eth0.accept_dad=0']);
    await run('ip', ['-n', h.ns, 'link', 'set', 'eth0', 'up']);
    h.linkLocal = await waitFor(
      `link-local address in ${h.ns}`,
      async () => {
        const out = await run('ip', ['-n', h.ns, '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']);
        if (out.includes('tentative')) return undefined;
        return /inet6 (fe80::[0-9a-f:]+)\//.exec(out)?.[1];
      },
      5000,
    );
  }
});

afterEach(async () => {
  await killAll();
  for (const h of [h1, h2]) {
    await execa('ip', ['-n', h.ns, '-6', 'addr', 'del', `${VIP}/64`, 'dev', 'eth0'], { reject: false });
  }
});

afterAll(async () => {
  await killAll();
  for (const ns of created.reverse())
    await execa('ip', ['netns', 'del', ns], { reject: false, timeout: 10_000 });
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  if (figures.length > 0) console.log(`VRRPv3/IPv6 interop figures:\n  ${figures.join('\n  ')}`);
});

async function vipHolders(): Promise<string[]> {
  const out: string[] = [];
  for (const h of [h1, h2]) {
    const addrs = await run('ip', ['-n', h.ns, '-6', '-o', 'addr', 'show', 'dev', 'eth0']);
    if (addrs.includes(` ${VIP}/`)) out.push(h.ns);
  }
  return out;
}

/** Wait until exactly `ns` holds the VIP; returns the elapsed ms since `t0`. */
async function soleHolder(ns: string, withinMs: number, t0 = performance.now()): Promise<number> {
  await waitFor(`${ns} as the only VIP holder`, async () => (await vipHolders()).join() === ns, withinMs);
  return performance.now() - t0;
}

async function holdsSteadily(ns: string, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    expect(await vipHolders()).toEqual([ns]);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function spawn(host: Host, cmd: string[], onData: (d: string) => void): { pid: number; done: Promise<void> } {
  const child = execa('ip', ['netns', 'exec', host.ns, ...cmd], {
    cwd: ROOT,
    reject: false,
    buffer: false,
    stdin: 'ignore',
    all: true,
  });
  child.all?.on('data', (d: Buffer) => onData(d.toString()));
  return { pid: child.pid ?? -1, done: child.then(() => undefined) };
}

async function startCoord(host: Host, priority: number): Promise<Proc & { lastState(): string | undefined }> {
  const input = {
    vrid: 71,
    priority,
    advertInt: 0.1,
    addresses: [VIP],
    primaryAddress: host.linkLocal,
  };
  const json = JSON.stringify({ input, iface: 'eth0', prefix: 64 });
  const facts: Record<string, unknown>[] = [];
  let text = '';
  let partial = '';
  const p = spawn(host, [process.execPath, '--conditions=source', '--import', 'tsx', RUNNER, json], (d) => {
    text += d;
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (l.startsWith('{')) facts.push(JSON.parse(l) as Record<string, unknown>);
  });
  const kill = async (sig: NodeJS.Signals): Promise<void> => {
    if (alive(p.pid)) process.kill(p.pid, sig);
    await p.done;
  };
  kills.push(() => kill('SIGKILL'));
  await waitFor(
    `coord started in ${host.ns}: ${text}`,
    () => facts.some((f) => f.fact === 'started'),
    15_000,
  );
  return {
    facts: () => facts,
    log: () => text,
    lastState: () => facts.filter((f) => f.fact === 'transition').at(-1)?.to as string | undefined,
    stop: () => kill('SIGTERM'),
  };
}

function counters(c: Proc): Record<string, unknown> & { dropped?: Record<string, number> } {
  const f = c
    .facts()
    .filter((x) => x.fact === 'counters' || x.fact === 'stopped')
    .at(-1);
  return (f?.counters ?? {}) as Record<string, unknown> & { dropped?: Record<string, number> };
}

async function startKeepalived(
  host: Host,
  priority: number,
): Promise<Proc & { lastState(): string | undefined }> {
  const name = `ka-${host.ns}-${kills.length}`;
  const cfg = join(dir, `${name}.conf`);
  const vrrpPidFile = join(dir, `${name}.vrrp.pid`);
  writeFileSync(
    cfg,
    [
      'global_defs {\n  vrrp_version 3\n}',
      'vrrp_instance VI6 {',
      '  state BACKUP',
      '  interface eth0',
      '  virtual_router_id 71',
      `  priority ${priority}`,
      '  advert_int 0.1',
      `  virtual_ipaddress {\n    ${VIP}/64\n  }`,
      '}',
      '',
    ].join('\n'),
  );
  let log = '';
  const args = ['keepalived', '-n', '-l', '-D', '-f', cfg, '-p', join(dir, `${name}.pid`), '-r', vrrpPidFile];
  const p = spawn(host, args, (d) => (log += d));
  const childPid = await waitFor(
    'keepalived VRRP child pid file',
    () =>
      existsSync(vrrpPidFile) ? Number(readFileSync(vrrpPidFile, 'utf8').trim()) || undefined : undefined,
    10_000,
  );
  const gone = () => waitFor('keepalived VRRP child gone', () => !alive(childPid), 5000);
  kills.push(async () => {
    if (alive(p.pid)) process.kill(p.pid, 'SIGSTOP');
    for (const pid of [childPid, p.pid]) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await p.done;
    await gone();
  });
  return {
    facts: () => [],
    log: () => log,
    lastState: () => [...log.matchAll(/Entering (MASTER|BACKUP|FAULT) STATE/g)].at(-1)?.[1],
    stop: async () => {
      if (alive(p.pid)) process.kill(p.pid, 'SIGTERM');
      await p.done;
      await gone();
    },
  };
}

const complaints = (log: string): string[] => log.split('\n').filter((l) => /invalid|mismatch/i.test(l));

/** Send VRRP payloads from `host` to ff02::12 on eth0, each with its own hop limit (python3: sendmsg cmsg). */
async function inject(host: Host, packets: { hex: string; hopLimit: number }[]): Promise<void> {
  const script = [
    'import json, socket, struct, sys',
    'packets = json.loads(sys.argv[1])',
    'idx = socket.if_nametoindex("eth0")',
    's = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 112)',
    's.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")',
    's.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, struct.pack("i", idx))',
    'for p in packets:',
    '    hop = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("i", p["hopLimit"]))]',
    '    s.sendmsg([bytes.fromhex(p["hex"])], hop, 0, ("ff02::12", 0, 0, idx))',
  ].join('\n');
  await execa('ip', ['netns', 'exec', host.ns, 'python3', '-c', script, JSON.stringify(packets)], {
    timeout: 10_000,
  });
}

describe('coord VRRPv3 over IPv6 ⇄ keepalived 2.2.7', () => {
  it('coord preempts keepalived, then hands over gracefully (coord Master, keepalived Backup)', async () => {
    const k = await startKeepalived(h2, 100);
    await soleHolder(h2.ns, 5000);
    const c = await startCoord(h1, 150);
    await soleHolder(h1.ns, 3000);
    await waitFor('keepalived BACKUP', () => k.lastState() === 'BACKUP', 2000);
    await holdsSteadily(h1.ns, 1000);
    expect(k.log()).toContain(`advert from ${h1.linkLocal} with higher priority 150`);
    expect(counters(c).dropped).toEqual({});
    const t0 = performance.now();
    const stopped = c.stop();
    figures.push(`graceful coord→keepalived: ${(await soleHolder(h2.ns, 2000, t0)).toFixed(0)} ms`);
    await stopped;
    expect(k.log()).toMatch(/Backup received priority 0 advertisement/);
    await waitFor('keepalived MASTER', () => k.lastState() === 'MASTER', 1000);
    await k.stop();
    expect(complaints(k.log())).toEqual([]);
  });

  it('keepalived Master, coord Backup decoding every advert, then graceful failover to coord', async () => {
    const k = await startKeepalived(h2, 150);
    await soleHolder(h2.ns, 5000);
    const c = await startCoord(h1, 100);
    await holdsSteadily(h2.ns, 1200);
    expect(c.lastState()).toBe('backup');
    expect(counters(c).dropped).toEqual({});
    expect(counters(c).advertsSent).toBe(0);
    expect(Number(counters(c).advertsReceived)).toBeGreaterThan(5);
    const t0 = performance.now();
    const stopped = k.stop(); // keepalived takes ~1 s to exit after its priority-0 advert: do not count that
    figures.push(`graceful keepalived→coord: ${(await soleHolder(h1.ns, 2000, t0)).toFixed(0)} ms`);
    await stopped;
    expect(c.lastState()).toBe('master');
    await c.stop();
    await waitFor('VIP released', async () => (await vipHolders()).length === 0, 2000);
    expect(complaints(k.log())).toEqual([]);
  });

  it('on-link check: an advert with hop limit 64 is dropped, the same with 255 is obeyed', async () => {
    const c = await startCoord(h1, 200);
    await soleHolder(h1.ns, 3000);
    const hex = encode(
      { version: 3, vrid: 71, priority: 254, maxAdvertIntervalCs: 10, addresses: [VIP] },
      { family: 6, srcAddr: h2.linkLocal, dstAddr: 'ff02::12' },
    ).toString('hex');
    await inject(h2, [{ hex, hopLimit: 64 }]);
    await waitFor('bad-ttl counted', () => counters(c).dropped?.['bad-ttl'] === 1, 2000);
    expect(c.lastState()).toBe('master');
    await inject(h2, [{ hex, hopLimit: 255 }]);
    await waitFor('coord yields to the valid advert', () => c.lastState() === 'backup', 2000);
    expect(counters(c).dropped).toEqual({ 'bad-ttl': 1 });
    await c.stop();
  });
});
