import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isCoordError, nearestKey, type CoordError } from '@coord/core';
import { checkConfigFile, missingFileWarnings, summarize } from '../src/check.js';
import { buildJoinConfig } from '../src/join.js';
import { envArgs, unknownArguments } from '../src/options.js';
import { mergeConnection } from '../src/target.js';

const dir = mkdtempSync(join(tmpdir(), 'coord-check-'));
let n = 0;
function file(text: string): string {
  const p = join(dir, `c${++n}.yaml`);
  writeFileSync(p, text);
  return p;
}

const GOOD = `
etcd: [http://10.0.0.2:2379]
cluster: prod
node: lb1
groups:
  - name: web
    interface: eth0
    vips: [10.0.0.50/24]
    priority: 100
  - name: api
    interface: eth0
    vips: [10.0.0.60/24, "2001:db8::60/64"]
track:
  scripts:
    - { name: haproxy, command: "/usr/bin/pgrep -x haproxy", weight: -50 }
  interfaces: [{ name: eth1 }]
notify:
  leader: "/usr/local/bin/became-leader --quiet"
  timeout: 5
`;

describe('coord check-config', () => {
  it('accepts the minimal shape and a full one', async () => {
    const minimal = await checkConfigFile(
      file(
        'etcd: [http://10.0.0.2:2379]\ncluster: prod\nnode: lb1\ngroups:\n  - name: web\n    interface: eth0\n    vips: [10.0.0.50/24]\n    priority: 100\n',
      ),
    );
    expect(minimal.issues).toEqual([]);
    const full = await checkConfigFile(file(GOOD));
    expect(full.issues).toEqual([]);
    expect(full.config?.groups.map((g) => g.name)).toEqual(['web', 'api']);
    expect(full.config?.track.scripts[0]).toMatchObject({ name: 'haproxy', weight: -50, rise: 2, fall: 2 });
  });

  it('accepts the shipped example config', async () => {
    const example = fileURLToPath(new URL('../../../deploy/coord.example.yaml', import.meta.url));
    expect((await checkConfigFile(example)).issues).toEqual([]);
  });

  it.each([
    [
      'the same VIP in two groups',
      GOOD.replace('[10.0.0.60/24,', '[10.0.0.50/24,'),
      'groups[1].vips[0]',
      /configured twice/,
    ],
    [
      'a VIP without prefix',
      GOOD.replace('10.0.0.50/24', '10.0.0.50'),
      'groups[0].vips[0]',
      /no prefix length/,
    ],
    ['priority out of range', GOOD.replace('priority: 100', 'priority: 300'), 'groups[0].priority', /1-254/],
    [
      'priority 255 outside VRRP mode',
      GOOD.replace('priority: 100', 'priority: 255'),
      'groups[0].priority',
      /VRRP mode/,
    ],
    ['an unknown key', GOOD.replace('cluster: prod', 'cluster: prod\nclustr: x'), '(top)', /clustr/],
    [
      'a shell pipe in a track script',
      GOOD.replace('/usr/bin/pgrep -x haproxy', 'pgrep haproxy | wc -l'),
      'track.scripts[0].command',
      /./,
    ],
    [
      'VRRP mode without vrid',
      GOOD.replace('cluster: prod', 'cluster: prod\nmode: vrrp'),
      'groups[0].vrid',
      /virtual router id/,
    ],
    ['a node name with a slash', GOOD.replace('node: lb1', 'node: "lb/1"'), 'node', /letters, digits/],
  ])('refuses %s, naming the field', async (_what, text, path, message) => {
    const r = await checkConfigFile(file(text));
    expect(r.config).toBeUndefined();
    const issue = r.issues.find((i) => i.path === path);
    expect(issue, JSON.stringify(r.issues)).toBeDefined();
    expect(issue?.message).toMatch(message);
  });

  it('an unknown key gets the nearest real key as its hint, at its own level', async () => {
    const r = await checkConfigFile(
      file(
        GOOD.replace('cluster: prod', 'cluster: prod\netcd_outage: hold').replace(
          'priority: 100',
          'priority: 100\n    preemt: true\n    zzzzzzz: 1',
        ),
      ),
    );
    const top = r.issues.find((i) => i.path === '(top)');
    expect(top?.hint).toMatch(/did you mean etcdOutage \(not etcd_outage\)/);
    const group = r.issues.find((i) => i.path === 'groups[0]');
    expect(group?.hint).toMatch(/did you mean preempt \(not preemt\)/);
    // Nothing close: no guess.
    expect(group?.hint).not.toMatch(/zzzzzzz\)/);
  });

  it('a short or cut-short key: one slip at most, else the keys it begins', () => {
    expect(nearestKey('groups[0]', 'prio')).toBe('priority');
    expect(nearestKey('', 'tls')).toBeUndefined();
    expect(nearestKey('', 'ttk')).toBe('ttl');
    expect(nearestKey('', 'log')).toBe('logLevel or logFormat');
    expect(nearestKey('groups[0]', 'preemtDelay')).toBe('preemptDelay');
  });

  it('checks VRRP settings too (v2 whole-second adverts, 8-byte passwords)', async () => {
    const vrrp = `mode: vrrp\nnode: lb1\ngroups:\n  - name: web\n    interface: eth0\n    vips: [10.0.0.50/24]\n    vrid: 51\n    vrrpVersion: 2\n    advertInt: 0.5\n    authPass: "far-too-long"\n`;
    const r = await checkConfigFile(file(vrrp));
    expect(r.issues.map((i) => i.path).sort()).toEqual(['groups[0].advertInt', 'groups[0].authPass']);
  });

  it('hybrid mode: a vrrp block on an etcd-mode group, checked by the VRRP rules; refused in VRRP mode', async () => {
    const etcd = `etcd: [http://10.0.0.2:2379]\ncluster: prod\nnode: lb1\ngroups:\n  - name: web\n    interface: eth0\n    vips: [10.0.0.50/24]\n`;
    const ok = await checkConfigFile(file(`${etcd}    vrrp: { vrid: 51, advertInt: 0.1 }\n`));
    expect(ok.issues).toEqual([]);
    expect(ok.config?.groups[0]?.advertise).toEqual({
      vrid: 51,
      priority: 254,
      advertIntSec: 0.1,
      version: 3,
      unicastPeers: [],
      authPass: undefined,
    });
    // A VRRP-mode group has no VRRP settings of its own in etcd mode.
    expect(ok.config?.groups[0]?.vrrp).toBeUndefined();
    const v2 = await checkConfigFile(
      file(
        `${etcd}    vrrp: { vrid: 51, version: 2, advertInt: 0.5, authPass: far-too-long, priority: 255 }\n`,
      ),
    );
    expect(v2.issues.map((i) => i.path).sort()).toEqual([
      'groups[0].vrrp.advertInt',
      'groups[0].vrrp.authPass',
      'groups[0].vrrp.priority',
    ]);
    const inVrrp = await checkConfigFile(
      file(
        `mode: vrrp\nnode: lb1\ngroups:\n  - name: web\n    interface: eth0\n    vips: [10.0.0.50/24]\n    vrid: 51\n    vrrp: { vrid: 51 }\n`,
      ),
    );
    expect(inVrrp.issues.map((i) => i.path)).toEqual(['groups[0].vrrp']);
  });

  it('reports YAML syntax errors as config errors', async () => {
    await expect(checkConfigFile(file('groups: [\n  - name'))).rejects.toMatchObject({
      code: 'ERR_COORD_CONFIG',
    });
  });
});

describe('coord join flags', () => {
  it('merge over the file: flags win, --priority applies to every group', async () => {
    const c = await buildJoinConfig({ config: file(GOOD), priority: 120, node: 'lb2' });
    expect(c.node).toBe('lb2');
    expect(c.groups.map((g) => g.priority)).toEqual([120, 120]);
  });

  it('define one group from --interface/--vip, with track flags by position', async () => {
    const c = await buildJoinConfig({
      etcd: ['http://10.0.0.2:2379,http://10.0.0.3:2379'],
      cluster: 'prod',
      node: 'lb1',
      interface: 'eth0',
      vip: ['10.0.0.50/24'],
      trackScript: ['/usr/bin/true', '/usr/bin/false'],
      trackWeight: [-10],
      notifyFault: '/usr/local/bin/page-me',
    });
    expect(c.etcd.endpoints).toEqual(['http://10.0.0.2:2379', 'http://10.0.0.3:2379']);
    expect(c.groups).toHaveLength(1);
    expect(c.track.scripts.map((s) => s.weight)).toEqual([-10, undefined]);
    expect(c.notify.fault).toBe('/usr/local/bin/page-me');
  });

  it('refuse a bad endpoint with a hint', async () => {
    await expect(
      buildJoinConfig({
        etcd: ['10.0.0.2:2379'],
        cluster: 'p',
        node: 'a',
        interface: 'eth0',
        vip: ['10.0.0.5/24'],
      }),
    ).rejects.toMatchObject({
      code: 'ERR_COORD_CONFIG',
      hint: expect.stringMatching(/http:\/\//) as unknown,
    });
  });
});

describe('one validation path (issue: production etcd)', () => {
  const base =
    'cluster: prod\nnode: lb1\ngroups:\n  - name: web\n    interface: eth0\n    vips: [10.0.0.50/24]\n';
  const paths = async (text: string) => (await checkConfigFile(file(text))).issues;

  it('check-config refuses an endpoint without a scheme, as join does', async () => {
    const issues = await paths(`${base}etcd: [10.0.0.11:2379]\n`);
    expect(issues.map((i) => i.path)).toEqual(['etcd.endpoints[0]']);
    expect(issues[0]?.message).toMatch(/write endpoints as http:\/\/HOST:2379/);
  });

  it('refuses credentials in a URL and a password in the file, without echoing them', async () => {
    const url = await paths(`${base}etcd: ["http://root:s3cret@10.0.0.11:2379"]\n`);
    expect(url[0]?.message).toMatch(/user name or password in its URL/);
    expect(JSON.stringify(url)).not.toContain('s3cret');
    const inline = await paths(
      `${base}etcd: { endpoints: [https://10.0.0.11:2379], user: coord, password: s3cret }\n`,
    );
    expect(inline.map((i) => i.path)).toEqual(['etcd.password']);
    expect(JSON.stringify(inline)).not.toContain('s3cret');
    await expect(
      buildJoinConfig({
        etcd: ['http://root:s3cret@10.0.0.2:2379'],
        cluster: 'p',
        node: 'a',
        interface: 'eth0',
        vip: ['10.0.0.5/24'],
      }),
    ).rejects.toSatisfy((e: Error) => !e.message.includes('s3cret') && /in its URL/.test(e.message));
  });

  it('TLS settings: a cert needs its key, and TLS needs https endpoints', async () => {
    const noKey = await paths(`${base}etcd: { endpoints: [https://e:2379], cert: /etc/coord/n.pem }\n`);
    expect(noKey.map((i) => i.path)).toEqual(['etcd.key']);
    const http = await paths(`${base}etcd: { endpoints: [http://e:2379], cacert: /etc/coord/ca.pem }\n`);
    expect(http.map((i) => i.path)).toEqual(['etcd.endpoints']);
    const ok = await checkConfigFile(
      file(
        `${base}etcd: { endpoints: [https://e:2379], cacert: /c.pem, cert: /n.pem, key: /n.key, user: lb1, passwordFile: /p }\n`,
      ),
    );
    expect(ok.issues).toEqual([]);
    expect(ok.config?.etcd).toEqual({
      endpoints: ['https://e:2379'],
      caFile: '/c.pem',
      certFile: '/n.pem',
      keyFile: '/n.key',
      user: 'lb1',
      passwordFile: '/p',
    });
  });

  it('VRRP rules live in the schema: checked before anything touches the host', async () => {
    const v = 'mode: vrrp\nnode: lb1\ngroups:\n  - name: web\n    interface: eth0\n    vrid: 51\n';
    const mixed = await paths(`${v}    vips: [10.0.0.50/24, "2001:db8::50/64"]\n`);
    expect(mixed.map((i) => i.path)).toEqual(['groups[0].vips']);
    const v2v6 = await paths(`${v}    vrrpVersion: 2\n    vips: ["2001:db8::50/64"]\n`);
    expect(v2v6.map((i) => i.path)).toEqual(['groups[0].vrrpVersion']);
    const peer = await paths(`${v}    vips: [10.0.0.50/24]\n    unicastPeers: [lb2.example]\n`);
    expect(peer.map((i) => i.path)).toEqual(['groups[0].unicastPeers[0]']);
    const src = await paths(`${v}    vips: [10.0.0.50/24]\n    unicastSrc: "2001:db8::2"\n`);
    expect(src.map((i) => i.path)).toEqual(['groups[0].unicastSrc']);
  });

  it('metrics and controlSocket are settable in the file', async () => {
    const r = await checkConfigFile(
      file(`${base}etcd: [http://e:2379]\nmetrics: 127.0.0.1:9100\ncontrolSocket: /run/coord/a.sock\n`),
    );
    expect(r.config?.metrics).toBe('127.0.0.1:9100');
    expect(r.config?.controlSocket).toBe('/run/coord/a.sock');
    const bad = await paths(`${base}etcd: [http://e:2379]\nmetrics: localhost\n`);
    expect(bad.map((i) => i.path)).toEqual(['metrics']);
  });

  it('fast failover: flags and file merge, each VIP interface is tracked, VRRP mode refuses it', async () => {
    const c = await buildJoinConfig({
      config: file(GOOD),
      fastFailover: true,
      heartbeatMs: 20,
      peerPort: 7000,
      peerAddress: '10.0.0.11',
    });
    expect(c.fastFailover).toBe(true);
    expect(c.peer).toEqual({ heartbeatMs: 20, port: 7000, address: '10.0.0.11' });
    expect(c.track.interfaces).toEqual([
      { name: 'eth1', weight: undefined },
      { name: 'eth0', weight: undefined },
    ]);
    const off = await buildJoinConfig({ config: file(GOOD) });
    expect(off.fastFailover).toBe(false);
    expect(off.peer).toBeUndefined();
    expect(off.track.interfaces).toEqual([{ name: 'eth1', weight: undefined }]);
    const fromFile = await checkConfigFile(
      file(`${GOOD}fastFailover: true
peer: { port: 7100 }
`),
    );
    expect(fromFile.config?.peer).toEqual({ heartbeatMs: 50, port: 7100, address: undefined });
    const bad = await paths(`${base}etcd: [http://e:2379]
fastFailover: true
peer: { heartbeatMs: 5, address: eth0 }
`);
    expect(bad.map((i) => i.path).sort()).toEqual(['peer.address', 'peer.heartbeatMs']);
    const v =
      'mode: vrrp\nnode: lb1\nfastFailover: true\ngroups:\n  - name: web\n    interface: eth0\n    vrid: 51\n    vips: [10.0.0.50/24]\n';
    expect((await paths(v)).map((i) => i.path)).toEqual(['fastFailover']);
  });

  it('etcd outage: fence by default; hold runs the peer channel; the max takes a duration; VRRP mode refuses', async () => {
    const dflt = await buildJoinConfig({ config: file(GOOD) });
    expect(dflt.etcdOutage).toBe('fence');
    expect(dflt.etcdOutageMaxMs).toBe(300_000);
    const c = await buildJoinConfig({ config: file(GOOD), etcdOutage: 'hold', etcdOutageMax: '90s' });
    expect(c.etcdOutage).toBe('hold');
    expect(c.etcdOutageMaxMs).toBe(90_000);
    expect(c.peer).toEqual({ heartbeatMs: 50, port: 7969, address: undefined });
    expect(c.fastFailover).toBe(false);
    expect(summarize('coord.yaml', c)).toMatch(
      /; etcd outage: hold \(at most 90 s\) \(peer channel 7969\/udp\)$/,
    );
    expect(summarize('coord.yaml', dflt)).not.toMatch(/peer channel/);
    for (const [text, ms] of [
      ['2m', 120_000],
      ['1500ms', 1500],
      ['1h', 3_600_000],
    ] as const)
      expect((await buildJoinConfig({ config: file(GOOD), etcdOutageMax: text })).etcdOutageMaxMs).toBe(ms);
    const fromFile = await checkConfigFile(file(`${GOOD}etcdOutage: hold\netcdOutageMax: 45\n`));
    expect(fromFile.config?.etcdOutageMaxMs).toBe(45_000);
    const bad = await paths(`${base}etcd: [http://e:2379]\netcdOutage: keep\netcdOutageMax: 5 minutes\n`);
    expect(bad.map((i) => i.path).sort()).toEqual(['etcdOutage', 'etcdOutageMax']);
    const tooLong = await paths(`${base}etcd: [http://e:2379]\netcdOutageMax: 2h\n`);
    expect(tooLong.map((i) => i.message)).toEqual(['etcdOutageMax must be between 1 s and 60 min']);
    const v =
      'mode: vrrp\nnode: lb1\netcdOutage: hold\ngroups:\n  - name: web\n    interface: eth0\n    vrid: 51\n    vips: [10.0.0.50/24]\n';
    expect((await paths(v)).map((i) => i.path)).toEqual(['etcdOutage']);
  });

  it('a cluster name is checked the same way by every command', () => {
    expect(() => mergeConnection({}, { cluster: 'a/b', etcd: ['http://e:2379'] }, 'flags')).toThrow(
      /cluster/,
    );
    expect(mergeConnection({}, { cluster: 'prod', etcd: ['http://e:2379'] }, 'flags').cluster).toBe('prod');
  });
});

describe('COORD_* environment variables', () => {
  it('apply only to the options of the command being run; the command line wins', () => {
    const env = { COORD_CLUSTER: 'prod', COORD_ETCD: 'http://a:2379,http://b:2379', COORD_FOO: '1' };
    expect(envArgs(['check-config', 'x.yaml'], env)).toEqual([]);
    expect(envArgs(['status'], env)).toEqual([
      '--etcd=http://a:2379',
      '--etcd=http://b:2379',
      '--cluster=prod',
    ]);
    expect(envArgs(['status', '--cluster', 'other'], env)).toEqual([
      '--etcd=http://a:2379',
      '--etcd=http://b:2379',
    ]);
  });

  it('never turn COORD_ETCD_PASSWORD into an argument', () => {
    const args = envArgs(['join'], { COORD_ETCD_PASSWORD: 's3cret', COORD_ETCD_USER: 'lb1' });
    expect(args).toEqual(['--etcd-user=lb1']);
  });
});

describe('coord check-config: files this host does not have', () => {
  it('warns the HAProxy base file and binary, track and notify programs that are not here, with the field', async () => {
    const { config } = await checkConfigFile(
      file(`
etcd: [http://10.0.0.2:2379]
cluster: prod
node: lb1
groups: [{ name: web, interface: eth0, vips: [10.0.0.50/24] }]
haproxy: { config: /run/coord/haproxy.cfg, base: ${dir}/no-base.cfg, bin: /nonexistent/haproxy }
track:
  scripts: [{ command: "/nonexistent/check-haproxy --quiet" }, { command: "true" }]
notify:
  leader: "no-such-program-anywhere arg"
  stop: "/bin/true"
`),
    );
    expect(config).toBeDefined();
    const w = await missingFileWarnings(config!);
    expect(w.map((i) => i.path)).toEqual([
      'haproxy.base',
      'haproxy.bin',
      'track.scripts[0].command',
      'notify.leader',
    ]);
    expect(w[0]?.message).toBe(`${dir}/no-base.cfg does not exist here (or is not readable)`);
    expect(w[2]?.message).toMatch(/^\/nonexistent\/check-haproxy cannot be run here/);
    expect(w[2]?.hint).toMatch(/FAULT/);
  });

  it('warns nothing when every referenced file is here', async () => {
    const base = join(dir, 'base.cfg');
    writeFileSync(base, 'global\n');
    const { config } = await checkConfigFile(
      file(`
etcd: [http://10.0.0.2:2379]
cluster: prod
node: lb1
groups: [{ name: web, interface: eth0, vips: [10.0.0.50/24] }]
haproxy: { config: /run/coord/haproxy.cfg, base: ${base}, bin: /bin/sh }
track:
  scripts: [{ command: "sh -c 'exit 0'" }]
notify:
  any: "/bin/true"
`),
    );
    expect(await missingFileWarnings(config!)).toEqual([]);
  });
});

describe('config errors speak in flag and field names', () => {
  const flags = {
    config: '',
    etcd: ['http://10.0.0.2:2379'],
    cluster: 'prod',
    node: 'lb1',
    interface: 'eth0',
    vip: ['10.0.0.50/24'],
  };

  it('a config from flags alone names the flag the operator typed, with the limit in plain words', async () => {
    await expect(buildJoinConfig({ ...flags, peerPort: 70000, fastFailover: true })).rejects.toThrow(
      /^--peer-port: must be ≤ 65535$/,
    );
    await expect(buildJoinConfig({ ...flags, priority: 0 })).rejects.toThrow(
      /^--priority: priority must be 1-254/,
    );
    await expect(buildJoinConfig({ ...flags, vip: ['10.0.0.50/24', 'nonsense'] })).rejects.toThrow(
      /^--vip: /,
    );
  });

  it('every issue of a config from flags names its flag, not only the first', async () => {
    const e = await buildJoinConfig({ ...flags, priority: 0, peerPort: 70000, fastFailover: true }).catch(
      (x: unknown) => x,
    );
    expect(isCoordError(e)).toBe(true);
    const issues = (e as CoordError).details?.issues as { path: string }[];
    expect(issues.map((i) => i.path).sort()).toEqual(['--peer-port', '--priority']);
    expect((e as CoordError).message).toMatch(/^--\S+: .* \(and 1 more\)$/);
  });

  it('a config file keeps its YAML paths, with the same plain words', async () => {
    const { issues } = await checkConfigFile(
      file(`
etcd: [http://10.0.0.2:2379]
cluster: prod
node: lb1
fastFailover: true
peer: { port: 70000 }
groups: [{ name: web, interface: eth0, vips: [10.0.0.50/24], priority: "high" }]
`),
    );
    expect(issues.find((i) => i.path === 'peer.port')?.message).toBe('must be ≤ 65535');
    expect(issues.find((i) => i.path === 'groups[0].priority')?.message).toMatch(
      /^(must be|priority must be)/,
    );
    for (const i of issues) expect(i.message).not.toMatch(/^(Too big|Too small|Invalid input)/);
  });
});

describe('unknown flags', () => {
  it('are named as typed, once, with the closest flag of that command', () => {
    expect(unknownArguments('Unknown arguments: bogus-flag, bogusFlag', ['status', '--bogus-flag'])).toEqual({
      message: 'unknown flag --bogus-flag for coord status',
      hint: 'coord status --help lists the flags',
    });
    expect(unknownArguments('Unknown argument: clustr', ['status', '--clustr', 'x'])).toEqual({
      message: 'unknown flag --clustr for coord status',
      hint: 'did you mean --cluster? (coord status --help lists the flags)',
    });
    // A subcommand's own flags are the candidates.
    expect(
      unknownArguments('Unknown arguments: weigth', ['server', 'set', 'web', 'a', '1.2.3.4:80', '--weigth=5'])
        ?.hint,
    ).toBe('did you mean --weight? (coord server set --help lists the flags)');
    expect(unknownArguments('Unknown argument: extra', ['status', 'extra'])?.message).toBe(
      'unexpected argument extra for coord status',
    );
    expect(unknownArguments('Not enough non-option arguments', ['status'])).toBeUndefined();
  });
});
