/**
 * HAProxy driven by the driver, for real: HAProxy 2.6 runs inside a network namespace this test creates (through
 * a one-line wrapper around `ip netns exec`), the driver runs here and talks to HAProxy's master socket, which is a
 * unix path and so reachable from any namespace. Clients run inside the namespace too. Nothing is bound or sent
 * in the root namespace.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLogger, systemClock } from '@coord/core';
import {
  createHaproxyDriver,
  parseService,
  probeGateOnce,
  render,
  socketCommand,
  showProc,
  type HaproxyDriver,
  type HaproxyDriverOptions,
  type Service,
  type ServiceInput,
  unbindableAddresses,
} from '@coord/haproxy';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const NS = `hapx-${randomBytes(3).toString('hex')}`;
const LOAD = join(import.meta.dirname, '../packages/haproxy/test/lab/http-load.ts');
const ROOT = join(import.meta.dirname, '..');
const clock = systemClock();
let dir: string;
let options: HaproxyDriverOptions;
let driver: HaproxyDriver;

interface LoadResult {
  ok: number;
  failed: number;
  errors: Record<string, number>;
  bodies: Record<string, number>;
}

function svc(input: ServiceInput): Service {
  const r = parseService(input);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.service;
}

/**
 * The service under test; `n` lets a test make a structural change (its maxconn: a new hash → a reload — a
 * server's weight would go through the runtime API instead).
 */
function web(n = 1, extra: Partial<ServiceInput> = {}): Service {
  return svc({
    name: 'web',
    binds: [{ address: '127.0.0.1', port: 8080 }],
    maxconn: 1000 + n,
    servers: [ORIGIN],
    ...extra,
  });
}
const ORIGIN = { name: 'origin', address: '127.0.0.1', port: 9000, weight: 1 };
/** A second origin (answers "two"), for server changes. */
const TWO = { name: 'two', address: '127.0.0.1', port: 9001, weight: 1 };

function nsExec(args: string[], timeout = 15_000) {
  return execa('ip', ['netns', 'exec', NS, ...args], { timeout, cwd: ROOT });
}

async function get(count = 1): Promise<LoadResult> {
  const r = await execa(
    'ip',
    [
      'netns',
      'exec',
      NS,
      process.execPath,
      '--import',
      'tsx',
      LOAD,
      'http://127.0.0.1:8080/',
      '1',
      '--count',
      String(count),
    ],
    {
      timeout: 15_000,
      cwd: ROOT,
    },
  );
  return JSON.parse(r.stdout) as LoadResult;
}

async function pollUntil<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = clock.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (clock.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coord-hapx-'));
  await execa('ip', ['netns', 'add', NS], { timeout: 5000 });
  await execa('ip', ['-n', NS, 'link', 'set', 'lo', 'up'], { timeout: 5000 });
  // The rollback test needs a bind that `haproxy -c` accepts but the reload cannot do.
  await nsExec(['sysctl', '-q', '-w', 'net.ipv4.ip_nonlocal_bind=0']);
  const wrapper = join(dir, 'haproxy-in-ns');
  await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${NS} haproxy "$@"\n`);
  await chmod(wrapper, 0o755);
  // The node-local base: an origin server inside HAProxy itself, so the lab needs no other process. Every HTTP
  // frontend on the path needs idle-close-on-response (without it here: 17 resets in 62k requests), and then a
  // short keep-alive timeout, or the old workers' pooled connections to it keep them alive until it expires.
  await writeFile(
    join(dir, 'base.cfg'),
    ['9000 string ok', '9001 string two']
      .map(
        (x) =>
          `frontend origin-${x.slice(0, 4)}\n  mode http\n  timeout client 30s\n  timeout http-keep-alive 500ms\n  bind 127.0.0.1:${x.slice(0, 4)}\n  option idle-close-on-response\n  http-request return status 200 content-type text/plain ${x.slice(5)}\n`,
      )
      .join(''),
  );
  options = {
    configPath: join(dir, 'etc', 'haproxy.cfg'),
    basePath: join(dir, 'base.cfg'),
    haproxyBin: wrapper,
    runDir: join(dir, 'run'),
    logger: new MemoryLogger(),
    clock,
    globals: { hardStopAfter: '30s', mworkerMaxReloads: 100 },
    debounce: { quietMs: 20, maxWaitMs: 200 },
  };
  driver = createHaproxyDriver(options);
});

afterAll(async () => {
  await driver?.stop();
  await driver?.stopHaproxy({ hard: true }).catch(() => false);
  // Anything still running in our namespace was started by this file: end it by PID.
  const pids = await execa('ip', ['netns', 'pids', NS], { timeout: 5000, reject: false });
  for (const pid of pids.stdout.split('\n').filter((p) => /^\d+$/.test(p))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await execa('ip', ['netns', 'del', NS], { timeout: 5000, reject: false });
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('haproxy driver against HAProxy 2.6 in a namespace', () => {
  it('starts HAProxy on the first apply and serves; the same model again is unchanged', async () => {
    const first = await driver.apply([web()], { revision: 1 });
    expect(first.result, first.error).toBe('applied');
    expect(driver.status()).toMatchObject({ running: true, hash: first.hash });
    expect(await get(3)).toMatchObject({ ok: 3, failed: 0 });
    // The master leads its own session, so neither a terminal hang-up nor a signal to coord's process group
    // reaches it: a coord restart does not take traffic down with it.
    const pid = driver.status().masterPid ?? 0;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const sid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
    expect(sid).toBe(pid);
    expect(sid).not.toBe(process.pid);
    const again = await driver.apply([web()], { revision: 2 });
    expect(again).toMatchObject({ result: 'unchanged', hash: first.hash });
  });

  it('refuses a config haproxy -c rejects and leaves the running one untouched', async () => {
    const before = await readFile(options.configPath, 'utf8');
    const pid = driver.status().masterPid;
    // Field validation accepts the hostname; HAProxy cannot resolve it (no DNS in the namespace).
    const bad = web(1, { servers: [{ name: 'origin', address: 'no-such-host.invalid', port: 9000 }] });
    const r = await driver.apply([bad], { revision: 3 });
    expect(r.result).toBe('invalid');
    expect(r.error).toMatch(/no-such-host\.invalid/);
    expect(await readFile(options.configPath, 'utf8')).toBe(before);
    expect(driver.status()).toMatchObject({ masterPid: pid, lastError: r.error });
    expect(await get(2)).toMatchObject({ ok: 2, failed: 0 });
  });

  it('a config checked ahead of its turn (prevalidate) is applied without a second haproxy -c; one it refuses never is', async () => {
    expect(await driver.prevalidate([web(7)])).toBe(true);
    const r = await driver.apply([web(7)], { revision: 5, now: true });
    expect(r.result, r.error).toBe('applied');
    expect(r.prevalidated).toBe(true);
    // Used once: the same text again later is checked again.
    const next = await driver.apply([web(8)], { revision: 6 });
    expect(next.prevalidated).toBeUndefined();
    // A new server HAProxy cannot resolve (no address in the server state file to fall back on).
    const bad = web(1, { servers: [ORIGIN, { name: 'ghost', address: 'no-such-host.invalid', port: 9000 }] });
    expect(await driver.prevalidate([bad])).toBe(false);
    expect((await driver.apply([bad], { revision: 7 })).result).toBe('invalid');
    expect((await driver.apply([web(1)], { revision: 8 })).result).toBe('applied');
    // Its frontend also listens on the gate socket, and answers there.
    const gate = driver.gateSocket('web');
    expect(gate).toBe(join(options.runDir, 'gate', 'web.sock'));
    expect(await probeGateOnce(gate ?? '', '/', 2000)).toEqual({ ok: true });
  });

  it('rolls back a config that passes haproxy -c but cannot be loaded (non-local bind)', async () => {
    const before = await readFile(options.configPath, 'utf8');
    const pid = driver.status().masterPid;
    const hash = driver.status().hash;
    const unbindable = web(1, {
      binds: [
        { address: '127.0.0.1', port: 8080 },
        { address: '192.0.2.10', port: 80 },
      ],
    });
    const r = await driver.apply([unbindable], { revision: 4 });
    expect(r.result, r.error).toBe('rolled-back');
    expect(r.error).toMatch(/192\.0\.2\.10/);
    expect(await readFile(options.configPath, 'utf8')).toBe(before);
    expect(driver.status()).toMatchObject({ masterPid: pid, hash });
    expect(await get(2)).toMatchObject({ ok: 2, failed: 0 });
  });

  it('with a bind preflight, refuses the same config before HAProxy pauses its listeners', async () => {
    const before = await readFile(options.configPath, 'utf8');
    await driver.stop();
    // HAProxy's namespace, described the way readBindEnvironment would describe it from inside.
    const addrs = JSON.parse(
      (await execa('ip', ['-n', NS, '-j', 'addr', 'show'], { timeout: 5000 })).stdout,
    ) as {
      addr_info: { local: string }[];
    }[];
    const env = {
      nonlocalBind4: false,
      nonlocalBind6: false,
      localAddresses: new Set(addrs.flatMap((l) => l.addr_info.map((a) => a.local))),
    };
    driver = createHaproxyDriver({
      ...options,
      preflight: (s) => Promise.resolve(unbindableAddresses(s, env)),
    });
    const unbindable = web(1, {
      binds: [
        { address: '127.0.0.1', port: 8080 },
        { address: '192.0.2.10', port: 80 },
      ],
    });
    const r = await driver.apply([unbindable], { revision: 5 });
    expect(r.result).toBe('invalid');
    expect(r.error).toMatch(/192\.0\.2\.10 is not on this node/);
    expect(r.durationMs).toBeLessThan(1000);
    expect(await readFile(options.configPath, 'utf8')).toBe(before);
  });

  it('a restarted driver re-attaches to the running master instead of restarting it', async () => {
    const pid = driver.status().masterPid;
    await driver.stop();
    driver = createHaproxyDriver(options);
    expect((await driver.apply([web()], { revision: 5 })).result).toBe('unchanged');
    expect(driver.status().masterPid).toBe(pid);
    const changed = await driver.apply([web(2)], { revision: 6 });
    expect(changed.result).toBe('applied');
    expect(driver.status().masterPid).toBe(pid);
    expect(await get(2)).toMatchObject({ ok: 2, failed: 0 });
  });

  it('starts a new master when the old one died behind its back, even for an unchanged model', async () => {
    const sock = join(options.runDir, 'master.sock');
    const before = await showProc(sock);
    if (!before.ok) throw new Error(before.reason);
    for (const pid of [before.proc.master.pid, ...before.proc.workers.map((w) => w.pid)])
      process.kill(pid, 'SIGKILL');
    const r = await driver.apply([web(2)], { revision: 7 });
    expect(r.result, r.error).toBe('applied');
    expect(driver.status().masterPid).not.toBe(before.proc.master.pid);
    expect(await get(2)).toMatchObject({ ok: 2, failed: 0 });
  });

  it('server add, weight, disable and remove go through the runtime API: no reload, the file matches, traffic follows', async () => {
    expect((await driver.apply([web()], { revision: 50 })).result).toMatch(/applied|unchanged/);
    const sock = join(options.runDir, 'master.sock');
    const before = await showProc(sock);
    if (!before.ok) throw new Error(before.reason);
    const { reloads, runtimeApplies } = driver.status();
    const step = async (servers: ServiceInput['servers'], revision: number) => {
      const r = await driver.apply([web(1, { servers })], { revision });
      expect(r, r.error).toMatchObject({ result: 'applied', via: 'runtime' });
      expect(await readFile(options.configPath, 'utf8')).toBe(
        render({
          services: [web(1, { servers })],
          globals: {
            ...options.globals,
            statsSocket: join(options.runDir, 'stats.sock'),
            serverStateFile: join(options.runDir, 'server-state'),
            gateSocketDir: join(options.runDir, 'gate'),
          },
          base: await readFile(options.basePath ?? '', 'utf8'),
        }),
      );
      return r;
    };
    await step([ORIGIN, TWO], 51);
    const even = (await get(20)).bodies; // roundrobin over both, at once
    expect(Math.min(even['ok'] ?? 0, even['two'] ?? 0)).toBeGreaterThanOrEqual(8);
    await step([ORIGIN, { ...TWO, weight: 3 }], 52);
    const weighted = (await get(20)).bodies;
    expect(weighted['two'] ?? 0).toBeGreaterThanOrEqual(13);
    expect(weighted['ok'] ?? 0).toBeGreaterThanOrEqual(3);
    await step([{ ...ORIGIN, disabled: true }, TWO], 53);
    expect((await get(10)).bodies).toEqual({ two: 10 });
    await step([ORIGIN], 54);
    expect((await get(10)).bodies).toEqual({ ok: 10 });
    expect(driver.status()).toMatchObject({ reloads, runtimeApplies: runtimeApplies + 4 });
    const after = await showProc(sock);
    if (!after.ok) throw new Error(after.reason);
    expect(after.proc.master.reloads).toBe(before.proc.master.reloads); // the master never re-executed
    const current = (p: typeof after) =>
      p.ok && p.proc.workers.filter((w) => w.reloads === 0).map((w) => w.pid);
    expect(current(after)).toEqual(current(before)); // the same worker serves every change
    // A structural change still reloads.
    const structural = await driver.apply([web(2)], { revision: 55 });
    expect(structural).toMatchObject({ result: 'applied', via: 'reload' });
    expect(driver.status().reloads).toBe(reloads + 1);
  });

  it('a server change the runtime API cannot make (its socket gone) is applied by a validated reload', async () => {
    const { reloads } = driver.status();
    await rm(join(options.runDir, 'stats.sock'), { force: true });
    const r = await driver.apply([web(2, { servers: [ORIGIN, TWO] })], { revision: 60 });
    expect(r).toMatchObject({ result: 'applied', via: 'reload' });
    expect(r.runtimeFallback).toMatch(/add server web\/two|ENOENT/);
    expect(driver.status().reloads).toBe(reloads + 1);
    expect(Object.keys((await get(20)).bodies).sort()).toEqual(['ok', 'two']);
    // HAProxy passes its listeners to the new worker: the path deleted by hand stays gone until HAProxy restarts,
    // and every server change keeps falling back to a reload meanwhile — slower, never wrong.
    const again = await driver.apply([web(2)], { revision: 61 });
    expect(again).toMatchObject({ result: 'applied', via: 'reload' });
    expect(again.runtimeFallback).toMatch(/ENOENT/);
    // A new master binds the path again (for the tests below).
    expect(await driver.stopHaproxy()).toBe(true);
    expect(await driver.apply([web(2)], { revision: 62 })).toMatchObject({ result: 'applied', via: 'start' });
  });

  it('health-check state survives a reload (server state file): a dead server stays DOWN, no request reaches it', async () => {
    // Sorted after 'origin', so its first check after a start comes half an interval (1 s) late: started afresh,
    // it would be UP (not checked yet) for that long and take half the requests.
    const dead = { name: 'zdead', address: '127.0.0.1', port: 9009, weight: 1 };
    const stats = join(options.runDir, 'stats.sock');
    const status = async () => {
      const csv = await socketCommand(stats, 'show stat');
      const row = csv.split('\n').find((l) => l.startsWith('web,zdead,'));
      return row?.split(',')[17];
    };
    expect((await driver.apply([web(3, { servers: [ORIGIN, dead] })], { revision: 70 })).result).toBe(
      'applied',
    );
    // Three failed checks 2 s apart.
    await pollUntil(
      'dead to be DOWN',
      async () => ((await status())?.startsWith('DOWN') ? true : undefined),
      15_000,
    );
    const r = await driver.apply([web(4, { servers: [ORIGIN, dead] })], { revision: 71 });
    expect(r).toMatchObject({ result: 'applied', via: 'reload' });
    // The new worker starts from the saved state: DOWN at once (afresh it would be UP until three checks failed).
    expect(await status()).toMatch(/^DOWN/);
    expect(await get(20)).toMatchObject({ ok: 20, failed: 0, bodies: { ok: 20 } });
  });

  it('debounces a burst of 500 changes into a few reloads, ending at the last one', async () => {
    const reloadsBefore = driver.status().reloads;
    const results: Promise<unknown>[] = [];
    for (let i = 0; i < 500; i++) {
      results.push(driver.apply([web(3 + (i % 200))], { revision: 100 + i }));
      if (i % 25 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(results);
    const reloads = driver.status().reloads - reloadsBefore;
    expect(reloads).toBeGreaterThanOrEqual(1);
    expect(reloads).toBeLessThanOrEqual(5);
    expect(await readFile(options.configPath, 'utf8')).toContain(`maxconn ${1000 + 3 + (499 % 200)}`);
  });

  it('the base file the package installs (deploy/haproxy-base.cfg) passes haproxy -c in front of a render', async () => {
    const base = await readFile(join(ROOT, 'deploy/haproxy-base.cfg'), 'utf8');
    // Its CA-store line must be a keyword this HAProxy knows, or every node's first check would fail.
    expect(base).toMatch(/^\s*httpclient\.ssl\.verify none$/m);
    const file = join(dir, 'with-packaged-base.cfg');
    await writeFile(file, render({ services: [web(3)], base }));
    const r = await execa('haproxy', ['-c', '-f', file], { reject: false, all: true, timeout: 10_000 });
    expect(r.exitCode, r.all).toBe(0);
  });

  it('confirms 30 idle reloads, each within a bound', async () => {
    const durations: number[] = [];
    const checks: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await driver.apply([web(i % 2 === 0 ? 20 : 21)], { revision: 500 + i });
      expect(r.result, r.error).toBe('applied');
      // The stages the log reports add up to no more than the whole run.
      expect(r.via).toBe('reload');
      expect(r.reloadMs).toBeGreaterThan(0);
      expect((r.checkMs ?? 0) + (r.reloadMs ?? 0)).toBeLessThanOrEqual(r.durationMs);
      durations.push(r.durationMs);
      checks.push(r.checkMs ?? 0);
    }
    durations.sort((a, b) => a - b);
    checks.sort((a, b) => a - b);
    const figures = {
      reloads: 30,
      p50: Math.round(percentile(durations, 50)),
      p99: Math.round(percentile(durations, 99)),
      checkP50: Math.round(percentile(checks, 50)),
    };
    console.log('haproxy idle reload figures', JSON.stringify(figures));
    expect(figures.p99).toBeLessThan(3000);
  });

  it('reloads 50 times under keep-alive load with 0 failed requests and bounded old workers', async () => {
    const load: ResultPromise = execa(
      'ip',
      ['netns', 'exec', NS, process.execPath, '--import', 'tsx', LOAD, 'http://127.0.0.1:8080/', '8'],
      {
        timeout: 60_000,
        cwd: ROOT,
        stdin: 'pipe',
      },
    );
    // Let the clients open their keep-alive connections first.
    await new Promise((r) => setTimeout(r, 300));
    const durations: number[] = [];
    const checks: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await driver.apply([web(i % 2 === 0 ? 10 : 11)], { revision: 1000 + i });
      expect(r.result, r.error).toBe('applied');
      durations.push(r.durationMs);
      checks.push(r.checkMs ?? 0);
    }
    checks.sort((a, b) => a - b);
    load.stdin?.end();
    const out = JSON.parse((await load).stdout as string) as LoadResult;
    durations.sort((a, b) => a - b);
    const figures = {
      reloads: 50,
      p50: Math.round(percentile(durations, 50)),
      p99: Math.round(percentile(durations, 99)),
      checkP50: Math.round(percentile(checks, 50)),
      ...out,
    };
    console.log('haproxy reload figures', JSON.stringify(figures));
    expect(out.ok).toBeGreaterThan(100);
    expect(out.failed, JSON.stringify(out.errors)).toBe(0);
    // Old workers exit once their idle keep-alive connections close: none left after a short while.
    const sock = join(options.runDir, 'master.sock');
    await pollUntil('old workers to exit', async () => {
      const p = await showProc(sock);
      return p.ok && p.proc.workers.every((w) => w.reloads === 0) ? true : undefined;
    });
  });
});
