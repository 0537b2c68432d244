/**
 * coord against a production-like etcd: three members with TLS, --client-cert-auth and
 * authentication enabled, a throw-away CA made here. Nodes join with their own certificates and users bound to
 * the node role; they fail over with zero overlap; node credentials cannot change services, an admin's can; every
 * way of getting the connection wrong exits non-zero naming the problem; a certificate rotated in place is
 * picked up without the VIP moving.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, doubleHolderMs, waitFor, type LabHost, type LabProcess } from './lab/index.js';
import {
  assertBuilt,
  COORD_BIN,
  coordLog,
  holdersOf,
  startCoord,
  tlsNodeCredentials,
  waitForSingleHolder,
} from './coord.js';

let lab: Lab;
const CLUSTER = 'tls';
const procs = new Map<string, LabProcess>();

let vip: string;

function startNode(h: LabHost, priority: number): LabProcess {
  const p = startCoord(lab, h, {
    cluster: CLUSTER,
    vips: [`${vip}/${lab.subnet.prefix}`],
    priority,
    withoutEtcdFlags: true,
    extraArgs: [
      ...creds(`coord-${h.name}`),
      // Each node runs the HAProxy loop too: the services it reads need only the node role.
      '--haproxy-config',
      join(lab.runDir, `${h.name}-haproxy.cfg`),
      '--haproxy-run-dir',
      join(lab.runDir, `${h.name}-haproxy-run`),
    ],
  });
  procs.set(h.name, p);
  return p;
}

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, etcdMembers: 3, tls: { auth: true }, name: 'tls' });
  vip = lab.freeAddress(1);
  // The roles (coord etcd-roles --apply, with root), a user per node bound to the node role, an admin.
  await tlsNodeCredentials(lab, CLUSTER);
  await lab.tls().addUser('alice', `coord-admin-${CLUSTER}`, pw('alice'));
  lab.hosts.forEach((h, i) => startNode(h, 150 - i * 50));
});

afterAll(async () => {
  await Promise.all([...procs.values()].map((p) => p.stop(3000)));
  await lab?.destroy();
});

function pw(name: string): string {
  return join(lab.runDir, `${name}.password`);
}

/** Connection flags for `user` (a node or an admin), with its own client certificate. */
function creds(user: string, certFiles = lab.tls().client(user)): string[] {
  return [
    '--etcd',
    lab.etcd.endpoints.join(','),
    '--etcd-cacert',
    lab.tls().ca,
    '--etcd-cert',
    certFiles.cert,
    '--etcd-key',
    certFiles.key,
    '--etcd-user',
    user,
    '--etcd-password-file',
    pw(user),
  ];
}

async function coord(host: LabHost, args: string[]) {
  return lab.exec(host, process.execPath, [COORD_BIN, ...args], { reject: false, timeoutMs: 20_000 });
}

describe('coord against etcd with TLS, client certificates and authentication', () => {
  it('etcd-roles --apply created both roles with their prefixes; applying again changes nothing', async () => {
    const again = await coord(lab.hosts[0] as LabHost, [
      'etcd-roles',
      '--cluster',
      CLUSTER,
      '--apply',
      ...lab.tls().rootArgs(),
    ]);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toMatch(/role coord-node-tls existed/);
    const role = await lab.exec(lab.etcd.host, 'etcdctl', [
      '--endpoints',
      lab.etcd.endpoints.join(','),
      ...lab.tls().etcdctlArgs(),
      'role',
      'get',
      `coord-node-${CLUSTER}`,
    ]);
    expect(role.stdout).toMatch(/KV Read:[\s\S]*\/coord\/tls\//);
    expect(role.stdout).toMatch(/KV Write:[\s\S]*\/coord\/tls\/members\//);
    expect(role.stdout).not.toMatch(/KV Write:[\s\S]*\/coord\/tls\/services\//);
  });

  it('nodes join with their certificates and users; a crash fails over with zero overlap', async () => {
    // The nodes start one after another on a busy host: a lower-priority node that is up first may hold the VIP
    // until h1 (150) preempts it. The test is about TLS joins and the crash, so it starts from h1 holding.
    await waitFor(
      'h1 to hold the VIP',
      async () => ((await holdersOf(lab, vip)).join() === 'h1' ? true : undefined),
      { timeoutMs: 20_000 },
    );
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    procs.get('h1')?.kill9();
    await waitForSingleHolder(lab, vip, { not: 'h1', timeoutMs: 8000 });
    const timeline = await sampler.stop();
    expect(doubleHolderMs(timeline)).toBe(0);
    expect(timeline.events.some((e) => e.host === 'h1' && e.op === 'del')).toBe(true);
    // h1 comes back (same certificate and user) and preempts with a clean handover.
    startNode(lab.hosts[0] as LabHost, 150);
    await waitFor(
      'h1 to hold again',
      async () => ((await holdersOf(lab, vip)).join() === 'h1' ? true : undefined),
      {
        timeoutMs: 15_000,
      },
    );
  });

  it("a node's user may ask etcd how long its lease has left (a fenced holder asks before its next keepalive)", async () => {
    const etcdctl = (args: string[]) =>
      lab.exec(lab.etcd.host, 'etcdctl', ['--endpoints', lab.etcd.endpoints.join(','), ...args], {
        reject: false,
        timeoutMs: 10_000,
      });
    const member = await etcdctl([
      ...lab.tls().etcdctlArgs(),
      'get',
      `/coord/${CLUSTER}/members/h2`,
      '-w',
      'json',
    ]);
    // An int64: read as digits (JSON.parse would round it).
    const lease = /"lease":(\d+)/.exec(member.stdout)?.[1];
    expect(lease).toBeDefined();
    const files = lab.tls().client('coord-h2');
    const password = readFileSync(pw('coord-h2'), 'utf8').trim();
    const ttl = await etcdctl([
      '--cacert',
      lab.tls().ca,
      '--cert',
      files.cert,
      '--key',
      files.key,
      '--user',
      `coord-h2:${password}`,
      'lease',
      'timetolive',
      BigInt(String(lease)).toString(16),
    ]);
    expect(ttl.stderr).toBe('');
    expect(ttl.stdout).toMatch(/granted with TTL\(1s\), remaining\(\d+s\)/);
  });

  it('node credentials cannot change services; an admin can; status works with either', async () => {
    const h2 = lab.hosts[1] as LabHost;
    const denied = await coord(h2, [
      'service',
      'set',
      'web',
      '--bind',
      `${lab.freeAddress(1)}:80`,
      '--cluster',
      CLUSTER,
      ...creds('coord-h2'),
    ]);
    expect(denied.exitCode).toBe(4);
    expect(denied.stderr).toMatch(/may not write \/coord\/tls\/services\//);
    expect(denied.stderr).toMatch(/coord-admin-tls/);
    const ok = await coord(h2, [
      'service',
      'set',
      'web',
      '--bind',
      `${lab.freeAddress(1)}:80`,
      '--cluster',
      CLUSTER,
      ...creds('alice'),
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.exitCode).toBe(0);
    // Every node's HAProxy converges on the model an admin wrote (status read with a node's credentials).
    type Status = {
      members: { node: string; haproxy: { converged: boolean } | null }[];
      model: { services: number };
    };
    const converged = await waitFor(
      'every node to serve the new model',
      async () => {
        const st = await coord(h2, ['status', '--json', '--cluster', CLUSTER, ...creds('coord-h2')]);
        if (st.exitCode !== 0) throw new Error(st.stderr);
        const status = JSON.parse(st.stdout) as Status;
        return status.model.services === 1 && status.members.every((m) => m.haproxy?.converged === true)
          ? status
          : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect(converged.members.map((m) => m.node).sort()).toEqual(['h1', 'h2', 'h3']);
  });

  it('every wrong connection setting exits non-zero and names the problem', async () => {
    const h3 = lab.hosts[2] as LabHost;
    const base = ['status', '--cluster', CLUSTER, '--timeout', '4'];
    const expectFail = async (args: string[], pattern: RegExp) => {
      const r = await coord(h3, [...base, ...args]);
      expect(r.exitCode, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(pattern);
      return r;
    };
    // A CA that did not sign the servers' certificates.
    const foreign = lab.tls().foreignClient('coord-h3');
    const wrongCa = creds('coord-h3');
    wrongCa[wrongCa.indexOf('--etcd-cacert') + 1] = foreign.ca;
    await expectFail(wrongCa, /--etcd-cacert|not signed|certificate/i);
    // An expired client certificate.
    await expectFail(
      creds('coord-h3', lab.tls().client('coord-h3', { days: -1, file: 'expired-h3' })),
      /expired|certificate/i,
    );
    // A wrong password (and it is not echoed).
    writeFileSync(pw('wrong'), 'not-the-password\n', { mode: 0o600 });
    const wrongPw = creds('coord-h3');
    wrongPw[wrongPw.indexOf('--etcd-password-file') + 1] = pw('wrong');
    const r = await expectFail(wrongPw, /authentication failed|user name or password/i);
    expect(r.stderr).not.toContain('not-the-password');
    // A missing key file.
    const noKey = creds('coord-h3');
    noKey[noKey.indexOf('--etcd-key') + 1] = '/nonexistent/coord-h3.key';
    await expectFail(noKey, /cannot read --etcd-key \/nonexistent\/coord-h3.key/);
    // No user while etcd has authentication enabled, and a certificate whose name is no etcd user either (with
    // --client-cert-auth etcd takes the user from the certificate's CN).
    const nobody = lab.tls().client('nobody');
    const noUser = [
      '--etcd',
      lab.etcd.endpoints.join(','),
      '--etcd-cacert',
      lab.tls().ca,
      '--etcd-cert',
      nobody.cert,
      '--etcd-key',
      nobody.key,
    ];
    await expectFail(noUser, /--etcd-user|permission|authentication/i);
  });

  it('a client certificate rotated in place is picked up without the VIP moving', async () => {
    const holder = await waitForSingleHolder(lab, vip, { timeoutMs: 20_000 });
    const host = lab.host(holder);
    const sampler = await lab.sampler(vip, { intervalMs: 20 });
    const current = lab.tls().client(`coord-${holder}`);
    const next = lab.tls().client(`coord-${holder}`, { file: `client-coord-${holder}-rotated` });
    copyFileSync(next.cert, current.cert);
    copyFileSync(next.key, current.key);
    const proc = procs.get(holder) as LabProcess;
    await waitFor(
      'the holder to reload its TLS material',
      async () =>
        (await coordLog(proc)).some((l) => l.message === 'etcd TLS material reloaded') ? true : undefined,
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    // It keeps talking to etcd with the new material: its lease keeps being renewed for a while.
    await new Promise((r) => setTimeout(r, 3000));
    const timeline = await sampler.stop();
    expect(timeline.events).toEqual([]);
    expect(await holdersOf(lab, vip)).toEqual([host.name]);
  });
});
