/**
 * The HAProxy loop end to end: `coord service set` / `server set` on one node → every node's own HAProxy serves
 * it (and the VIP holder serves it through the VIP); a model HAProxy refuses leaves the running config alone and
 * says so in `coord status`; restarting coord keeps the same HAProxy master; a node cut off from etcd while the
 * model changes converges after it heals.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { showProc } from '@coord/haproxy';
import { Lab, waitFor, type LabHost, type LabProcess } from './lab/index.js';
import { assertBuilt, COORD_BIN, coordLog, startCoord, waitForSingleHolder } from './coord.js';

const HTTP_CLIENT = fileURLToPath(new URL('./lab/bin/http-client.ts', import.meta.url));

let lab: Lab;
let vip: string;
const procs = new Map<string, LabProcess>();

function coordArgs(h: LabHost): string[] {
  return [
    '--haproxy-config',
    join(lab.runDir, `${h.name}-haproxy.cfg`),
    '--haproxy-run-dir',
    join(lab.runDir, `${h.name}-haproxy-run`),
  ];
}

function startNode(h: LabHost): LabProcess {
  const p = startCoord(lab, h, {
    cluster: 'lb',
    vips: [`${vip}/${lab.subnet.prefix}`],
    extraArgs: coordArgs(h),
  });
  procs.set(h.name, p);
  return p;
}

/** Run the coord CLI from a host (as an operator on that node would). */
async function coord(h: LabHost, args: string[]) {
  const r = await lab.exec(
    h,
    process.execPath,
    [COORD_BIN, ...args, '--etcd', lab.etcd.endpoints.join(','), '--cluster', 'lb'],
    {
      reject: false,
      timeoutMs: 20_000,
    },
  );
  return r;
}

/** GET from the client namespace; the body, or "ERR …". */
async function get(url: string, timeoutMs = 2000): Promise<string> {
  const r = await lab.exec(
    lab.client,
    process.execPath,
    [
      '-e',
      `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${timeoutMs}) }).then(r => r.text()).then(t => process.stdout.write(t), e => process.stdout.write('ERR ' + e.message))`,
    ],
    { reject: false, timeoutMs: 10_000 },
  );
  return r.stdout;
}

/** `n` GETs in a row from the client namespace (one process): each body, or "ERR …". */
async function getMany(url: string, n: number): Promise<string[]> {
  const r = await lab.exec(
    lab.client,
    process.execPath,
    [
      '-e',
      `(async () => { const out = []; for (let i = 0; i < ${n}; i++) out.push(await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(2000) }).then(r => r.text(), e => 'ERR ' + e.message)); process.stdout.write(JSON.stringify(out)); })()`,
    ],
    { reject: false, timeoutMs: 20_000 },
  );
  return JSON.parse(r.stdout || '[]') as string[];
}

function backend(port: number, body: string): LabProcess {
  return lab.spawn(
    lab.client,
    process.execPath,
    [
      '-e',
      // /slow answers after 3 s: a session still open on the server while it is drained.
      `require('http').createServer((q, r) => q.url === '/slow' ? setTimeout(() => r.end(${JSON.stringify(body)}), 3000) : r.end(${JSON.stringify(body)})).listen(${port}, ${JSON.stringify(lab.client.ip)})`,
    ],
    { name: `backend-${body}` },
  );
}

function masterPid(h: LabHost): Promise<string> {
  return lab
    .exec(h, 'cat', [join(lab.runDir, `${h.name}-haproxy-run`, 'haproxy.pid')])
    .then((r) => r.stdout.trim());
}

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, name: 'hap' });
  vip = lab.freeAddress(4);
  backend(9001, 'backend-A');
  backend(9002, 'backend-B');
  for (const h of lab.hosts) startNode(h);
  await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
});

afterAll(async () => {
  await Promise.all([...procs.values()].map((p) => p.stop(5000)));
  // coord leaves HAProxy running on purpose (a coord restart must not drop traffic): stop the masters here.
  for (const h of lab?.hosts ?? []) {
    const pid = await masterPid(h).catch(() => '');
    if (/^\d+$/.test(pid)) await lab.exec(h, 'kill', ['-USR1', pid], { reject: false });
  }
  await lab?.destroy();
});

describe('coord join --haproxy-config', () => {
  it('a service set on one node is served by every node and through the VIP', async () => {
    expect(
      (await coord(lab.hosts[0]!, ['service', 'set', 'web', '--bind', `${vip}:80`, '--bind', '0.0.0.0:8080']))
        .exitCode,
    ).toBe(0);
    expect(
      (await coord(lab.hosts[0]!, ['server', 'set', 'web', 'a', `${lab.client.ip}:9001`])).exitCode,
    ).toBe(0);
    for (const h of lab.hosts) {
      await waitFor(
        `${h.name} to serve web`,
        async () => ((await get(`http://${h.ip}:8080/`)) === 'backend-A' ? true : undefined),
        { timeoutMs: 15_000, intervalMs: 200 },
      );
    }
    expect(await get(`http://${vip}/`)).toBe('backend-A');
    const list = await coord(lab.hosts[1]!, ['service', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toMatchObject({
      services: [{ name: 'web', servers: [{ name: 'a', port: 9001 }] }],
    });
    await waitFor(
      'coord status to show every node converged',
      async () => {
        const st = await coord(lab.hosts[2]!, ['status', '--json']);
        const s = JSON.parse(st.stdout) as { members: { haproxy: { converged: boolean } | null }[] };
        return s.members.length === 3 && s.members.every((m) => m.haproxy?.converged === true)
          ? true
          : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 300 },
    );
  });

  it('a change that needs a reload rolls out one node at a time, holder last; one that does not serve stops at the first node', async () => {
    const holder = await waitForSingleHolder(lab, vip);
    const setWeb = (...more: string[]) =>
      coord(lab.hosts[0]!, [
        'service',
        'set',
        'web',
        '--bind',
        `${vip}:80`,
        '--bind',
        '0.0.0.0:8080',
        ...more,
      ]);
    const set = await setWeb('--bind', '0.0.0.0:8081', '--rollout-check', '/');
    expect(set.exitCode, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/rolling out to \S+ → \S+ → \S+ \(one at a time, holders last\)/);
    expect(set.stdout).toMatch(/rollout of web done in [\d.]+ s: every node serves it/);
    type Rollout = {
      service: string;
      state: string;
      order: string[];
      steps: Record<string, { state: string; at: number }>;
      reason?: string;
    };
    const status = async () =>
      JSON.parse((await coord(lab.hosts[1]!, ['status', '--json'])).stdout) as { rollouts: Rollout[] };
    const web = (await status()).rollouts.find((r) => r.service === 'web');
    expect(web?.state).toBe('done');
    expect(web?.order).toHaveLength(3);
    expect(web?.order.at(-1)).toBe(holder);
    // Each node passed after the one before it.
    const at = (web?.order ?? []).map((n) => web?.steps[n]?.at ?? NaN);
    expect(at.every((t, i) => i === 0 || t >= (at[i - 1] ?? Infinity))).toBe(true);
    for (const h of lab.hosts) expect(await get(`http://${h.ip}:8081/`)).toBe('backend-A');

    // A new service with no server: \`haproxy -c\` accepts it, but it answers 503. The first node's gate fails,
    // the rollout stops, and that node goes back to the previous version (no api service); the others never ran it.
    const setApi = () =>
      coord(lab.hosts[0]!, ['service', 'set', 'api', '--bind', '0.0.0.0:8090', '--rollout-check', '/']);
    const bad = await setApi();
    expect(bad.exitCode, bad.stderr + bad.stdout).toBe(7);
    expect(bad.stderr).toMatch(
      /rollout of api stopped: \S+: gate \/: GET \/ answered 503; every node runs the previous version/,
    );
    const api = (await status()).rollouts.find((r) => r.service === 'api');
    expect(api?.state).toBe('stopped');
    const first = api?.order[0] ?? '';
    expect(api?.steps[first]?.state).toBe('failed');
    expect(Object.keys(api?.steps ?? {})).toEqual([first]);
    for (const h of lab.hosts)
      await waitFor(
        `${h.name} to serve no api (the previous version)`,
        async () => ((await get(`http://${h.ip}:8090/`, 1000)).startsWith('ERR') ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 200 },
      );
    for (const h of lab.hosts) expect(await get(`http://${h.ip}:8080/`)).toBe('backend-A');
    const human = await coord(lab.hosts[2]!, ['status']);
    expect(human.stdout).toMatch(/rollout api: STOPPED/);
    const list = await coord(lab.hosts[2]!, ['service', 'list']);
    expect(list.stdout).toMatch(/ROLLOUT STOPPED/);
    // Fixed outside the rollout (a server for it), the same value set again retries the rollout, and it passes.
    expect(
      (await coord(lab.hosts[0]!, ['server', 'set', 'api', 'a', `${lab.client.ip}:9001`])).exitCode,
    ).toBe(0);
    const retried = await setApi();
    expect(retried.exitCode, retried.stderr).toBe(0);
    expect(retried.stdout).toMatch(/rollout of api done/);
    for (const h of lab.hosts) expect(await get(`http://${h.ip}:8090/`)).toBe('backend-A');
    expect((await coord(lab.hosts[0]!, ['service', 'rm', 'api'])).exitCode).toBe(0);

    // --rollout parallel: every node at once, no rollout record, nothing to wait for.
    const parallel = await setWeb('--rollout', 'parallel');
    expect(parallel.exitCode, parallel.stderr).toBe(0);
    expect(parallel.stdout).not.toMatch(/rolling out/);
    expect((await status()).rollouts.filter((r) => r.service === 'web')).toEqual([]);
    for (const h of lab.hosts)
      await waitFor(
        `${h.name} to stop serving :8081`,
        async () => ((await get(`http://${h.ip}:8081/`, 1000)).startsWith('ERR') ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 100 },
      );
  });

  it('server set, disable, enable and rm from the CLI reach every node through the runtime API: no reload', async () => {
    const reloads = async () =>
      Promise.all(
        lab.hosts.map(async (h) => {
          const p = await showProc(join(lab.runDir, `${h.name}-haproxy-run`, 'master.sock'));
          if (!p.ok) throw new Error(p.reason);
          return p.proc.master.reloads;
        }),
      );
    const before = await reloads();
    /** Until every node's own bind answers only from `bodies` (and each of them), five requests in a row. */
    const serves = async (what: string, bodies: string[]) => {
      for (const h of lab.hosts)
        await waitFor(
          `${h.name} to serve ${what}`,
          async () => {
            const seen = new Set(await getMany(`http://${h.ip}:8080/`, 6));
            return [...seen].sort().join() === bodies.join() ? true : undefined;
          },
          { timeoutMs: 10_000, intervalMs: 50 },
        );
    };
    const ok = async (args: string[]) => expect((await coord(lab.hosts[0]!, args)).exitCode).toBe(0);
    await ok(['server', 'set', 'web', 'b', `${lab.client.ip}:9002`]);
    await serves('a and b', ['backend-A', 'backend-B']);
    await ok(['server', 'disable', 'web', 'a']);
    await serves('b alone', ['backend-B']);
    const again = await coord(lab.hosts[1]!, ['server', 'disable', 'web', 'a']);
    expect(again.stdout).toMatch(/already disabled/);
    await ok(['server', 'enable', 'web', 'a']);
    await ok(['server', 'rm', 'web', 'b']);
    await serves('a alone', ['backend-A']);
    expect(await reloads()).toEqual(before);
    for (const h of lab.hosts) {
      const log = await coordLog(procs.get(h.name) as LabProcess);
      expect(
        log.filter((l) => l.message === 'haproxy servers changed through the runtime API').length,
      ).toBeGreaterThanOrEqual(3);
    }
    const missing = await coord(lab.hosts[0]!, ['server', 'disable', 'web', 'zz']);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr).toMatch(/no server web\/zz/);
  });

  it('server drain --wait returns once no node has a session on the server any more', async () => {
    const h1 = lab.hosts[0]!;
    const slowStarted = Date.now();
    const slow = get(`http://${h1.ip}:8080/slow`, 8000); // 3 s on backend-A through h1's HAProxy
    await new Promise((r) => setTimeout(r, 500));
    const drain = await coord(h1, ['server', 'drain', 'web', 'a', '--wait', '20s']);
    const drainedAt = Date.now();
    expect(drain.exitCode, drain.stderr).toBe(0);
    expect(drain.stdout).toMatch(/server web\/a drained: 0 sessions on h1, h2, h3/);
    expect(await slow).toBe('backend-A'); // the session in flight finished on the drained server
    expect(drainedAt - slowStarted).toBeGreaterThanOrEqual(3000); // and the drain waited for it
    const short = await coord(h1, ['server', 'drain', 'web', 'a', '--wait', 'soon']);
    expect(short.exitCode).toBe(2);
    expect(short.stderr).toMatch(/--wait soon is not a duration/);
    expect((await coord(h1, ['server', 'enable', 'web', 'a'])).exitCode).toBe(0);
    for (const h of lab.hosts)
      await waitFor(
        `${h.name} to serve a again`,
        async () => ((await get(`http://${h.ip}:8080/`)) === 'backend-A' ? true : undefined),
        { timeoutMs: 10_000, intervalMs: 100 },
      );
  });

  it('refuses hostile input at set time, and a model HAProxy rejects never replaces the running config', async () => {
    const hostile = await coord(lab.hosts[0]!, [
      'server',
      'set',
      'web',
      'evil\nbackend',
      `${lab.client.ip}:9001`,
    ]);
    expect(hostile.exitCode).not.toBe(0);
    // Refused for the field that is wrong, by its path in the model.
    expect(hostile.stderr).toMatch(/servers\.\d+\.name: /);
    // Valid in the model, refused by `haproxy -c`: a server name that does not resolve.
    expect(
      (await coord(lab.hosts[0]!, ['server', 'set', 'web', 'ghost', 'no-such-host.invalid:80'])).exitCode,
    ).toBe(0);
    await waitFor(
      'every node to report the invalid model',
      async () => {
        const st = await coord(lab.hosts[1]!, ['status', '--json']);
        const s = JSON.parse(st.stdout) as {
          members: { haproxy: { result: string; error?: string } | null }[];
        };
        return s.members.length === 3 &&
          s.members.every((m) => m.haproxy?.result === 'invalid' && (m.haproxy.error ?? '') !== '')
          ? true
          : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 300 },
    );
    for (const h of lab.hosts) expect(await get(`http://${h.ip}:8080/`)).toBe('backend-A');
    const human = await coord(lab.hosts[1]!, ['status']);
    expect(human.stdout).toMatch(/NOT CONVERGED/);
    expect((await coord(lab.hosts[0]!, ['server', 'rm', 'web', 'ghost'])).exitCode).toBe(0);
    // Removing what is not there (a typo) fails and says so, rather than printing success.
    const again = await coord(lab.hosts[0]!, ['server', 'rm', 'web', 'ghost']);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/no server web\/ghost: nothing removed/);
    const noService = await coord(lab.hosts[0]!, ['service', 'rm', 'nosuch']);
    expect(noService.exitCode).toBe(2);
    expect(noService.stderr).toMatch(/no service nosuch: nothing removed/);
    await waitFor(
      'convergence after the fix',
      async () => {
        const st = await coord(lab.hosts[1]!, ['status', '--json']);
        const s = JSON.parse(st.stdout) as { members: { haproxy: { converged: boolean } | null }[] };
        return s.members.every((m) => m.haproxy?.converged === true) ? true : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 300 },
    );
  });

  it('restarting coord keeps the same HAProxy master, serving throughout', async () => {
    const h2 = lab.hosts[1]!;
    const before = await masterPid(h2);
    expect(before).toMatch(/^\d+$/);
    // Two clients, a new connection per request, from before the stop until after the re-attach: every request
    // must succeed and the listener must never go quiet.
    const load = lab.spawn(
      lab.client,
      process.execPath,
      ['--import', 'tsx', HTTP_CLIENT, 'load', `http://${h2.ip}:8080/`, '2', 'close'],
      { name: 'load-h2' },
    );
    await waitFor('the load client to be served', async () => (await load.output()).includes('"firstOk"'), {
      timeoutMs: 15_000,
    });
    const stopAt = Date.now();
    await procs.get(h2.name)?.stop(5000);
    startNode(h2);
    await waitFor(
      'h2 coord to come back',
      async () =>
        (await procs.get(h2.name)?.output())?.includes('haproxy master re-attached') ? true : undefined,
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    const backAt = Date.now();
    await load.stop(10_000);
    const line = (await load.output()).split('\n').find((l) => l.startsWith('{"mode"'));
    const r = JSON.parse(line ?? '{}') as {
      ok: number;
      failed: number;
      errors: Record<string, number>;
      bodies: Record<string, number>;
      longestGapMs: number;
      start: number;
      end: number;
    };
    expect(r.start).toBeLessThan(stopAt);
    expect(r.end).toBeGreaterThan(backAt);
    expect(r.failed, JSON.stringify(r.errors)).toBe(0);
    expect(Object.keys(r.bodies)).toEqual(['backend-A']);
    expect(r.ok).toBeGreaterThan(20);
    // Each request takes a few ms; a second without an answer would be an outage, not a slow client.
    expect(r.longestGapMs).toBeLessThan(1000);
    expect(await masterPid(h2)).toBe(before);
  });

  it('a node cut off from etcd while the model changes (and etcd compacts) converges after it heals', async () => {
    const h3 = lab.hosts[2]!;
    // Taken when the heal begins: h3 may resync and apply before healEtcd() itself returns.
    let healedAt = Infinity;
    await lab.faults.cutFromEtcd(h3);
    // A silent cut keeps h3's connections: what etcd sent during it would be retransmitted at the heal and the
    // watch would carry on (each change its own apply; seen once in CI). Abort them: h3 must reconnect after the
    // heal, from a revision etcd has compacted, and re-read — the path under test.
    await lab.faults.abortEtcdConnections(h3);
    try {
      expect(
        (await coord(lab.hosts[0]!, ['server', 'set', 'web', 'b', `${lab.client.ip}:9002`])).exitCode,
      ).toBe(0);
      expect(
        (await coord(lab.hosts[0]!, ['server', 'set', 'web', 'a', `${lab.client.ip}:9001`, '--disabled']))
          .exitCode,
      ).toBe(0);
      await waitFor(
        'h1 to serve the new model',
        async () => ((await get(`http://${lab.hosts[0]!.ip}:8080/`)) === 'backend-B' ? true : undefined),
        { timeoutMs: 15_000, intervalMs: 200 },
      );
      expect(await get(`http://${h3.ip}:8080/`)).toBe('backend-A');
      // Compact etcd past everything h3 has seen: its watch cannot resume from its revision and must re-read.
      const head = await lab.etcdctl(lab.hosts[0]!, ['get', '/coord/lb/services/web', '-w', 'json']);
      const revision = (JSON.parse(head.stdout) as { header: { revision: number } }).header.revision;
      const compact = await lab.etcdctl(lab.hosts[0]!, ['compact', String(revision)]);
      expect(compact.exitCode).toBe(0);
    } finally {
      healedAt = Date.now();
      await lab.faults.healEtcd(h3);
    }
    await waitFor(
      'h3 to converge',
      async () => ((await get(`http://${h3.ip}:8080/`)) === 'backend-B' ? true : undefined),
      { timeoutMs: 20_000, intervalMs: 300 },
    );
    // Two writes were missed while cut off; the resync applies them as one reload.
    await new Promise((r) => setTimeout(r, 1000));
    const applied = (await coordLog(procs.get(h3.name)!)).filter(
      (l) =>
        l.message === 'haproxy apply' &&
        l.result === 'applied' &&
        Date.parse(String(l.timestamp)) >= healedAt,
    );
    expect(applied).toHaveLength(1);
  });
});
