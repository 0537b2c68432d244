/**
 * One way to connect for every command, with the real binary: a node's config file gives `status`,
 * `status --local` and `reload-config` everything they need; a cut-off etcd fails a command within --timeout;
 * `join` says "waiting for etcd" once and "connected to etcd" when it is.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Lab, waitFor, type LabHost, type LabProcess } from './lab/index.js';
import {
  assertBuilt,
  COORD_BIN,
  coordLog,
  holdersOf,
  startCoord,
  waitForHolder,
  waitForSingleHolder,
} from './coord.js';

let lab: Lab;
let running: LabProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 2, name: 'cli' });
});

afterEach(async () => {
  await Promise.all(running.map((p) => p.stop(3000)));
  running = [];
});

afterAll(async () => {
  await lab?.destroy();
});

const h = (i: number): LabHost => lab.hosts[i] as LabHost;

/** A node's YAML config, as an operator would write /etc/coord/coord.yaml. */
function nodeConfig(host: LabHost, cluster: string, vip: string): string {
  const path = join(lab.runDir, `${host.name}-${cluster}.yaml`);
  writeFileSync(
    path,
    [
      `etcd: [${lab.etcd.endpoints.join(', ')}]`,
      `cluster: ${cluster}`,
      `node: ${host.name}`,
      `controlSocket: ${join(lab.runDir, `${host.name}-${cluster}-yaml.sock`)}`,
      'groups:',
      '  - name: web',
      '    interface: eth0',
      `    vips: [${vip}/${lab.subnet.prefix}]`,
      '',
    ].join('\n'),
  );
  return path;
}

function coord(host: LabHost, args: string[], env: Record<string, string> = {}) {
  return lab.exec(host, process.execPath, [COORD_BIN, ...args], { reject: false, timeoutMs: 30_000, env });
}

describe('one way to connect', () => {
  it('a node config file is all status, status --local and reload-config need', async () => {
    const host = h(0);
    const vip = lab.freeAddress(1);
    const cfg = nodeConfig(host, 'files', vip);
    running.push(
      lab.spawn(host, process.execPath, [COORD_BIN, 'join', '--config', cfg], { name: 'coord-files' }),
    );
    await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    // COORD_CONFIG is the same as --config; no --etcd, no --cluster.
    const st = await coord(host, ['status', '--json'], { COORD_CONFIG: cfg });
    expect(st.stderr).toBe('');
    const status = JSON.parse(st.stdout) as { cluster: string; groups: { holder: string | null }[] };
    expect(status.cluster).toBe('files');
    expect(status.groups[0]?.holder).toBe(host.name);
    const local = await coord(host, ['status', '--local', '--json', '--config', cfg]);
    expect(local.exitCode).toBe(0);
    expect(JSON.parse(local.stdout)).toMatchObject({ node: host.name });
    const reload = await coord(host, ['reload-config', '--config', cfg]);
    expect(reload.stdout).toMatch(/no change/);
    // What a running node cannot apply is named and refused as a whole (exit 3: `systemctl reload` fails with it).
    const text = readFileSync(cfg, 'utf8');
    writeFileSync(cfg, `${text}logLevel: debug\n`);
    const refused = await coord(host, ['reload-config', '--config', cfg]);
    writeFileSync(cfg, text);
    expect(refused.exitCode).toBe(3);
    expect(refused.stdout).toMatch(/not applied, needs a restart: logLevel/);
    // A COORD_* variable of an option the command does not have is ignored, not an error.
    const check = await coord(host, ['check-config', cfg], { COORD_CLUSTER: 'other', COORD_TIMEOUT: '3' });
    expect(check.exitCode).toBe(0);
    expect(check.stdout).toMatch(/OK/);
  });

  it('a command against a cut-off etcd fails within --timeout, saying so', async () => {
    const host = h(1);
    await lab.faults.cutFromEtcd(host);
    try {
      const started = Date.now();
      const r = await coord(host, [
        'status',
        '--etcd',
        lab.etcd.endpoints.join(','),
        '--cluster',
        'x',
        '--timeout',
        '2',
      ]);
      const took = Date.now() - started;
      expect(r.exitCode).toBe(5);
      expect(r.stderr).toMatch(/did not answer within 2 s/);
      // What an unreachable etcd means for the cluster, not only for this command.
      expect(r.stderr).toMatch(/no new holder can be elected/);
      expect(r.stderr).toMatch(/coord status --local/);
      // 2 s, plus starting Node and loading the CLI on a loaded 2-core machine.
      expect(took).toBeLessThan(2000 + 3000);
    } finally {
      await lab.faults.healEtcd(host);
    }
  });

  it('join says "waiting for etcd" once while it cannot reach it, then "connected to etcd"', async () => {
    const host = h(1);
    const vip = lab.freeAddress(2);
    await lab.faults.cutFromEtcd(host);
    let p: LabProcess;
    try {
      p = lab.spawn(
        host,
        process.execPath,
        [COORD_BIN, 'join', '--config', nodeConfig(host, 'waiting', vip)],
        {
          name: 'coord-waiting',
        },
      );
      running.push(p);
      await waitFor('the waiting line', async () =>
        (await coordLog(p)).some((l) => l.message === 'waiting for etcd') ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, 4000)); // several retries go by
    } finally {
      await lab.faults.healEtcd(host);
    }
    await waitFor(
      'connected',
      async () => ((await coordLog(p)).some((l) => l.message === 'connected to etcd') ? true : undefined),
      { timeoutMs: 15_000 },
    );
    const log = await coordLog(p);
    const waiting = log.filter((l) => l.message === 'waiting for etcd');
    expect(waiting).toHaveLength(1);
    expect(waiting[0]?.level).toBe('warn');
    expect(String(waiting[0]?.at)).toBe(lab.etcd.endpoints.join(','));
    expect(log.filter((l) => l.level === 'warn' && /etcd/.test(String(l.message)))).toHaveLength(1);
    await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
  });
});

describe('coord maintenance', () => {
  it('on: the holder hands over at once and stays out across a restart; off: it takes the group back', async () => {
    const [a, b] = [h(0), h(1)];
    const vip = lab.freeAddress(33);
    const cidr = `${vip}/${lab.subnet.prefix}`;
    const node = (host: LabHost, priority: number) =>
      startCoord(lab, host, { cluster: 'maint', vips: [cidr], priority });
    let pa = node(a, 150);
    running.push(pa, node(b, 100));
    await waitForHolder(lab, vip, a.name, 15_000);
    const etcd = ['--etcd', lab.etcd.endpoints.join(','), '--cluster', 'maint', '--config', ''];
    const on = await coord(b, ['maintenance', 'on', '--node', a.name, '--reason', 'kernel upgrade', ...etcd]);
    expect(on.exitCode).toBe(0);
    expect(on.stdout).toMatch(
      new RegExp(`^maintenance on for ${a.name}: it hands its groups to other nodes`),
    );
    await waitForHolder(lab, vip, b.name, 5000);
    const st = await coord(b, ['status', ...etcd]);
    expect(st.stdout).toMatch(
      new RegExp(`${a.name} .*MAINTENANCE \\(kernel upgrade\\): coord maintenance off --node ${a.name}`),
    );
    // A restart does not end it: a (priority 150) stays out.
    await pa.stop(5000);
    pa = node(a, 150);
    running.push(pa);
    await waitFor('a to be up again', async () =>
      (await coordLog(pa)).some(
        (l) =>
          l.message ===
          'maintenance on: handing the groups over and not campaigning until coord maintenance off',
      )
        ? true
        : undefined,
    );
    await new Promise((r) => setTimeout(r, 2000));
    expect(await holdersOf(lab, vip)).toEqual([b.name]);
    const off = await coord(b, ['maintenance', 'off', '--node', a.name, ...etcd]);
    expect(off.exitCode).toBe(0);
    expect(off.stdout).toMatch(/^maintenance off for h1/);
    await waitForHolder(lab, vip, a.name, 5000);
  });
});

describe('log format', () => {
  it('--log-format text writes dated lines for people, whatever stderr is', async () => {
    const host = h(1);
    const p = startCoord(lab, host, {
      cluster: 'logfmt',
      vips: [`${lab.freeAddress(32)}/${lab.subnet.prefix}`],
      extraArgs: ['--log-format', 'text'],
    });
    running.push(p);
    const line = await waitFor('a text "session up" line', async () =>
      (await p.output()).split('\n').find((l) => l.includes('session up')),
    );
    expect(line).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} info session up .*lease=/);
    expect(line).not.toMatch(/\x1b\[/); // no colour codes into a file
  });
});

describe('mistyped names', () => {
  it('status of a cluster nobody uses exits 2 and says so, instead of an empty report', async () => {
    const r = await coord(h(0), [
      'status',
      '--etcd',
      lab.etcd.endpoints.join(','),
      '--cluster',
      'nosuchcluster',
      '--config',
      '',
    ]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/no cluster nosuchcluster in etcd: nothing under \/coord\/nosuchcluster\//);
    expect(r.stderr).toMatch(/hint: check --cluster/);
  });
});

describe("reads over etcd's JSON gateway", () => {
  const READ_BOTH = fileURLToPath(new URL('./fixtures/etcd/read-both.ts', import.meta.url));
  interface Read {
    revision: number;
    entries: { key: string; value: string; createRevision: number; modRevision: number; lease: string }[];
  }
  type Answer = Read | { error: string; message: string } | null;
  /** The fixture reads one prefix both ways, inside `host`'s namespace. */
  async function readBoth(l: Lab, host: LabHost, endpoints: readonly string[], prefix: string) {
    const settings = { endpoints, caFile: undefined, certFile: undefined, keyFile: undefined };
    const args = ['--conditions=source', '--import', 'tsx', READ_BOTH, JSON.stringify({ settings, prefix })];
    const r = await l.exec(host, process.execPath, args, {
      reject: false,
      timeoutMs: 20_000,
    });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as { gateway: Answer; grpc: Answer };
  }

  it('give what gRPC gives (values, revisions, 64-bit lease ids); a closed port is GatewayUnavailable', async () => {
    const host = h(0);
    running.push(
      startCoord(lab, host, { cluster: 'gw', vips: [`${lab.freeAddress(34)}/${lab.subnet.prefix}`] }),
    );
    const prefix = '/coord/gw/members/';
    const both = await waitFor(
      'the member record',
      async () => {
        const r = await readBoth(lab, host, lab.etcd.endpoints, prefix);
        // Both reads after the node wrote its record (the gateway's is the earlier one).
        return (r.gateway as Read).entries?.length === 1 ? r : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 300 },
    );
    const grpc = both.grpc as Read;
    expect(both.gateway).toEqual({ revision: expect.any(Number) as number, entries: grpc.entries });
    expect((both.gateway as Read).revision).toBeLessThanOrEqual(grpc.revision);
    // The member key is bound to the node's lease: an id above 2^53, kept exact.
    expect(BigInt(grpc.entries[0]?.lease ?? '0')).toBeGreaterThan(2n ** 53n);
    const closed = await readBoth(
      lab,
      host,
      lab.etcd.members.map((m) => `http://${m.ip}:9`),
      prefix,
    );
    expect(closed.gateway).toMatchObject({ error: 'GatewayUnavailable' });
  });

  it('with the gateway off, status and service list read over gRPC instead', async () => {
    const off = await Lab.create({ hosts: 1, name: 'nogw', etcdArgs: ['--enable-grpc-gateway=false'] });
    try {
      const host = off.hosts[0] as LabHost;
      const vip = off.freeAddress(1);
      running.push(startCoord(off, host, { cluster: 'nogw', vips: [`${vip}/${off.subnet.prefix}`] }));
      await waitForHolder(off, vip, host.name, 15_000);
      const gw = await readBoth(off, host, off.etcd.endpoints, '/coord/nogw/');
      expect(gw.gateway).toMatchObject({ error: 'GatewayUnavailable' });
      expect((gw.gateway as { message: string }).message).toMatch(/HTTP 404/);
      const etcd = ['--etcd', off.etcd.endpoints.join(','), '--cluster', 'nogw', '--config', ''];
      const st = await off.exec(host, process.execPath, [COORD_BIN, 'status', '--json', ...etcd], {
        reject: false,
        timeoutMs: 20_000,
      });
      expect(st.stderr).toBe('');
      expect(st.exitCode).toBe(0);
      const status = JSON.parse(st.stdout) as { groups: { holder: string | null }[] };
      expect(status.groups[0]?.holder).toBe(host.name);
      const list = await off.exec(host, process.execPath, [COORD_BIN, 'service', 'list', '--json', ...etcd], {
        reject: false,
        timeoutMs: 20_000,
      });
      expect(list.stderr).toBe('');
      expect(list.exitCode).toBe(0);
      expect(JSON.parse(list.stdout)).toMatchObject({ services: [] });
    } finally {
      await Promise.all(running.map((p) => p.stop(3000)));
      running = [];
      await off.destroy();
    }
  });
});

describe('coord doctor', () => {
  interface Report {
    verdict: 'pass' | 'warn' | 'fail';
    findings: { check: string; verdict: 'pass' | 'warn' | 'fail'; detail: string; fix?: string }[];
  }
  const doctor = (host: LabHost, iface: string, vip: string, extra: string[] = []) =>
    coord(host, [
      'doctor',
      '--config',
      '',
      '--etcd',
      lab.etcd.endpoints.join(','),
      '--cluster',
      'doctor',
      '--node',
      host.name,
      '--interface',
      iface,
      '--vip',
      `${vip}/${lab.subnet.prefix}`,
      ...extra,
    ]);
  const sysctl = (host: LabHost, value: number) =>
    lab.exec(host, 'sysctl', ['-qw', `net.ipv4.ip_nonlocal_bind=${value}`]);

  it('fails a host with ip_nonlocal_bind=0 and a wrong interface, naming both with a fix', async () => {
    const host = h(1);
    await sysctl(host, 0);
    try {
      const r = await doctor(host, 'eth9', lab.freeAddress(30));
      expect(r.exitCode).toBe(2);
      expect(r.stdout).toMatch(
        /^FAIL {2}interface eth9: no interface eth9 on this host \(there are: .*eth0/m,
      );
      expect(r.stdout).toMatch(/^FAIL {2}sysctl net.ipv4.ip_nonlocal_bind: 0: /m);
      expect(r.stdout).toMatch(/^ {6}fix: sysctl -w net.ipv4.ip_nonlocal_bind=1/m);
    } finally {
      await sysctl(host, 1);
    }
  });

  it('passes a correct host; only what the lab cannot give (TLS to etcd, a synced clock) may warn', async () => {
    const host = h(1);
    await sysctl(host, 1);
    const r = await doctor(host, 'eth0', lab.freeAddress(31), ['--json']);
    const report = JSON.parse(r.stdout) as Report;
    const notPassed = report.findings.filter((f) => f.verdict !== 'pass');
    expect(notPassed.filter((f) => !['etcd TLS', 'clock'].includes(f.check))).toEqual([]);
    expect(r.exitCode).toBe(notPassed.length === 0 ? 0 : 1);
    const checks = report.findings.map((f) => f.check);
    for (const c of ['interface eth0', 'capabilities', 'etcd latency', 'etcd permissions', 'etcd lease TTL'])
      expect(checks).toContain(c);
    expect(report.findings.find((f) => f.check === 'etcd lease TTL')?.detail).toBe('1 s granted as asked');
    // It left nothing in etcd: the probe key went with its lease.
    const left = await lab.etcdctl(host, ['get', '--prefix', '--keys-only', '/coord/doctor/']);
    expect(left.stdout.trim()).toBe('');
  });
});
