import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { CoordError } from '@coord/core';
import { checkConfigObject } from '../src/check.js';
import { convertFile, importKeepalived, type ImportArgs } from '../src/import.js';
import {
  buildTree,
  KeepalivedSyntaxError,
  parseKeepalived,
  stripComment,
  substitute,
  tokenize,
} from '../src/keepalived/parse.js';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'keepalived');
const at = { file: 'k.conf', line: 1 };

/** Convert a fixture; the YAML must pass coord check-config, whatever was left out. */
async function convert(name: string, extra: Partial<ImportArgs> = {}) {
  const r = await convertFile({ file: join(FIXTURES, name), mode: 'vrrp', configId: 'lb2', ...extra });
  const config = parseYaml(r.yaml) as Record<string, unknown>;
  const check = checkConfigObject(structuredClone(config));
  expect(check.issues).toEqual([]);
  return { ...r, config, groups: config['groups'] as Record<string, unknown>[] };
}

/** Parse text given in memory (files by path), as keepalived would for config id `id`. */
function parseText(files: Record<string, string>, id = 'lb1') {
  return parseKeepalived('/k/keepalived.conf', {
    configId: id,
    read: (p) => {
      const t = files[p];
      return t === undefined
        ? Promise.reject(Object.assign(new Error('absent'), { code: 'ENOENT' }))
        : Promise.resolve(t);
    },
    expand: (pattern, cwd) => {
      const full = resolve(cwd, pattern);
      const re = new RegExp(`^${full.replace(/[.+^$()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
      return Promise.resolve(
        Object.keys(files)
          .filter((f) => re.test(f))
          .sort(),
      );
    },
  });
}

describe('keepalived language', () => {
  it('strips # and ! comments outside double quotes only', () => {
    expect(stripComment('script "/bin/check #1 !x" # why')).toBe('script "/bin/check #1 !x" ');
    expect(stripComment('priority 100 ! old')).toBe('priority 100 ');
  });

  it('tokenizes quotes as one word and braces as words of their own; an undefined ${X} stays whole', () => {
    expect(tokenize('script "/usr/bin/x --a b"', at)).toEqual(['script', '/usr/bin/x --a b']);
    expect(tokenize('virtual_ipaddress {10.0.0.1/24}', at)).toEqual([
      'virtual_ipaddress',
      '{',
      '10.0.0.1/24',
      '}',
    ]);
    expect(tokenize('script /bin/x ${UNDEF}/y', at)).toEqual(['script', '/bin/x', '${UNDEF}/y']);
    expect(() => tokenize('script "/bin/x', at)).toThrow(KeepalivedSyntaxError);
  });

  it('substitutes parameters at use, recursively, as keepalived.conf(5) shows', () => {
    const params = new Map([
      ['ADDRESS_BASE', '10.2.${ADDRESS_BASE_SUB}'],
      ['ADDRESS_BASE_SUB', '0'],
      ['P', '240'],
    ]);
    expect(substitute('${ADDRESS_BASE}.100/32', params, at)).toBe('10.2.0.100/32');
    expect(substitute('priority $P', params, at)).toBe('priority 240');
    // $NAME needs whitespace or the end after it; an undefined parameter is left alone.
    expect(substitute('x $Pz ${NOPE}', params, at)).toBe('x $Pz ${NOPE}');
    expect(() => substitute('$L', new Map([['L', 'a $L']]), at)).toThrow(/refers to itself/);
  });

  it('builds blocks whose brace opens on the next line or closes on the same one', () => {
    const tree = buildTree(
      ['vrrp_instance A', '{', 'interface eth0', 'virtual_ipaddress { 10.0.0.1/24 }', '}'].map((text, i) => ({
        text,
        at: { file: 'k', line: i + 1 },
      })),
    );
    expect(tree).toEqual([
      {
        words: ['vrrp_instance', 'A'],
        at: { file: 'k', line: 1 },
        children: [
          { words: ['interface', 'eth0'], at: { file: 'k', line: 3 } },
          {
            words: ['virtual_ipaddress'],
            at: { file: 'k', line: 4 },
            children: [{ words: ['10.0.0.1/24'], at: { file: 'k', line: 4 } }],
          },
        ],
      },
    ]);
  });

  it('keeps @ID lines for that config id only, @^ID lines for every other, and counts them', async () => {
    const text = ['global_defs {', '@lb1 router_id one', '@^lb1 router_id other', '}'].join('\n');
    const one = await parseText({ '/k/keepalived.conf': text }, 'lb1');
    expect(one.nodes[0]?.children?.map((n) => n.words)).toEqual([['router_id', 'one']]);
    expect(one.conditionals).toBe(2);
    const two = await parseText({ '/k/keepalived.conf': text }, 'lb2');
    expect(two.nodes[0]?.children?.map((n) => n.words)).toEqual([['router_id', 'other']]);
  });

  it('expands a multi-line definition into lines, conditionals inside read at each use', async () => {
    const r = await parseText({
      '/k/keepalived.conf': [
        '$I= \\',
        'vrrp_instance V${N} { \\',
        '  @lb1 priority 150 \\',
        '  @^lb1 priority 50 \\',
        '}',
        '$N=1',
        '$I',
        '$N=2',
        '$I',
      ].join('\n'),
    });
    expect(r.nodes.map((n) => [n.words, n.children?.map((c) => c.words), n.at.line])).toEqual([
      [['vrrp_instance', 'V1'], [['priority', '150']], 7],
      [['vrrp_instance', 'V2'], [['priority', '150']], 9],
    ]);
  });

  it('reads includes relative to the including file, in name order, and reports one that matches nothing', async () => {
    const r = await parseText({
      '/k/keepalived.conf': 'include conf.d/*.conf\ninclude none/*.conf',
      '/k/conf.d/b.conf': 'vrrp_instance B {\n}',
      '/k/conf.d/a.conf': 'vrrp_instance A {\n}\ninclude ../more/x.conf',
      '/k/more/x.conf': 'vrrp_script X {\n}',
    });
    expect(r.nodes.map((n) => n.words.join(' '))).toEqual([
      'vrrp_instance A',
      'vrrp_script X',
      'vrrp_instance B',
    ]);
    expect(r.nodes[1]?.at).toEqual({ file: '/k/more/x.conf', line: 1 });
    expect(r.notes.map((n) => [n.at, n.what])).toEqual([
      [{ file: '/k/keepalived.conf', line: 2 }, 'include none/*.conf'],
    ]);
    expect(r.notes[0]?.why).toMatch(/no file/);
  });

  it('refuses what keepalived cannot read: unbalanced braces, an include loop, an open quote', async () => {
    for (const [name, message] of [
      ['unclosed.conf', /never closed/],
      ['extra-close.conf', /closes no block/],
      ['orphan-brace.conf', /no keyword before it/],
      ['loop.conf', /includes itself/],
      ['quote.conf', /double quote is not closed/],
    ] as const)
      await expect(
        parseKeepalived(join(FIXTURES, 'malformed', name), { configId: 'x' }),
        name,
      ).rejects.toThrow(message);
  });
});

describe('coord import keepalived', () => {
  it('converts instances, scripts and hooks, with keepalived defaults made explicit', async () => {
    const r = await convert('basic.conf');
    expect(r.config['mode']).toBe('vrrp');
    expect(r.config['node']).toBe('lb1');
    expect(r.groups).toEqual([
      {
        name: 'VI_1',
        interface: 'eth0',
        // keepalived adds an address without a prefix as /32.
        vips: ['10.0.0.50/24', '10.0.0.51/32'],
        priority: 150,
        vrid: 51,
        // keepalived's default version is 2, coord's 3: always written.
        vrrpVersion: 2,
        advertInt: 1,
        authPass: 's3cret',
        // Its own garp_master_repeat; the next instance does not inherit it.
        announce: { count: 2 },
      },
      { name: 'VI_6', interface: 'eth0', vips: ['2001:db8::50/64'], priority: 100, vrid: 52, vrrpVersion: 3 },
    ]);
    expect(r.config['track']).toEqual({
      scripts: [
        {
          name: 'chk_haproxy',
          command: '/usr/bin/killall -0 haproxy',
          interval: 2,
          timeout: 3,
          rise: 2,
          fall: 3,
          weight: -20,
        },
      ],
      // keepalived puts an instance in FAULT when its interface goes down.
      interfaces: [{ name: 'eth0' }],
    });
    expect(r.config['notify']).toEqual({
      leader: '/etc/keepalived/notify.sh master',
      follower: '/etc/keepalived/notify.sh backup',
      fault: '/etc/keepalived/notify.sh fault',
    });
    // Each converted block names its source line.
    expect(r.yaml).toContain('# vrrp_instance VI_1 (basic.conf:23)');
    expect(r.yaml).toContain('# vrrp_script chk_haproxy (basic.conf:14)');
    expect(r.exitCode).toBe(3);
    expect(r.notConverted).toEqual([
      expect.stringMatching(/^basic\.conf:3: notification_email: coord sends no mail/),
      expect.stringMatching(/^basic\.conf:6: notification_email_from/),
      expect.stringMatching(/^basic\.conf:7: smtp_server/),
      expect.stringMatching(/^basic\.conf:8: smtp_connect_timeout/),
      expect.stringMatching(/^basic\.conf:10: enable_script_security/),
      expect.stringMatching(/^basic\.conf:11: script_user root/),
      expect.stringMatching(/^basic\.conf:34: 10\.0\.0\.50\/24 label eth0:vip/),
    ]);
    // VI_6 had no notify_backup: coord's hook runs for it too.
    expect(r.review).toEqual([
      expect.stringMatching(/^basic\.conf:41: .*notify\.follower for every group/),
      expect.stringMatching(/^basic\.conf:42: .*notify\.fault for every group/),
    ]);
    // The lists are in the YAML too, for whoever opens the file.
    expect(r.yaml).toContain('#   basic.conf:3: notification_email');
  });

  it('gives one file a config per host through @ conditionals and parameters; exit 0 when all converted', async () => {
    const hosts = await Promise.all(
      ['lb1', 'lb2', 'lb3'].map((id) => convert('conditional.conf', { configId: id })),
    );
    expect(hosts.map((h) => h.exitCode)).toEqual([0, 0, 0]);
    expect(hosts.map((h) => h.config['node'])).toEqual(['lb1', 'lb2', 'lb3']);
    expect(hosts.map((h) => h.groups.map((g) => g['priority']))).toEqual([
      [150, 150],
      [100, 100],
      [50, 50],
    ]);
    expect(hosts.map((h) => h.groups[0]?.['unicastPeers'])).toEqual([
      ['10.20.0.2', '10.20.0.3'],
      ['10.20.0.1', '10.20.0.3'],
      ['10.20.0.1', '10.20.0.2'],
    ]);
    expect(hosts[0]?.groups.map((g) => [g['name'], g['vrid'], g['vips']])).toEqual([
      ['VI_1', 1, ['10.20.30.1/24']],
      ['VI_2', 2, ['10.20.30.2/24']],
    ]);
    expect(hosts[0]?.yaml).toContain('config id lb1');
  });

  it('converts preemption, unicast, announcements and tracked interfaces with weights', async () => {
    const r = await convert('unicast.conf');
    expect(r.groups[0]).toEqual({
      name: 'web',
      interface: 'ens3',
      vips: ['192.168.1.100/24'],
      priority: 90,
      preempt: false,
      preemptDelay: 30,
      vrid: 10,
      vrrpVersion: 3, // global_defs vrrp_version 3
      advertInt: 0.5,
      unicastPeers: ['192.168.1.12', '192.168.1.13'],
      unicastSrc: '192.168.1.11',
      announce: { count: 4, interval: 0.05, refresh: 30 },
    });
    expect(r.config['track']).toMatchObject({
      scripts: [{ name: 'chk_http', interval: 1, timeout: 1, rise: 2, fall: 2, weight: -40 }],
      interfaces: [{ name: 'ens4', weight: -30 }, { name: 'ens5' }, { name: 'ens3' }],
    });
    expect(r.config['notify']).toEqual({ any: '/usr/local/bin/keepalived-notify' });
    expect(r.notConverted.map((x) => x.split(':').slice(0, 3).join(':'))).toEqual([
      'unicast.conf:7: vrrp_garp_master_delay 5',
      'unicast.conf:15: user nobody',
      'unicast.conf:37: virtual_ipaddress_excluded',
      'unicast.conf:18: vrrp_script chk_unused',
    ]);
    expect(r.review.join('\n')).toMatch(/INSTANCE NAME STATE PRIORITY as arguments/);
  });

  it('in etcd mode, moves the VRRP settings to a hybrid vrrp block, keeps excluded VIPs with the rest, tops priority at 254', async () => {
    const r = await convert('unicast.conf', {
      mode: 'etcd',
      etcd: ['http://10.0.0.2:2379'],
      cluster: 'prod',
    });
    expect(r.config).toMatchObject({ mode: 'etcd', etcd: ['http://10.0.0.2:2379'], cluster: 'prod' });
    expect(r.groups[0]).toEqual({
      name: 'web',
      interface: 'ens3',
      vips: ['192.168.1.100/24', '192.168.1.101/24'],
      priority: 90,
      preempt: false,
      preemptDelay: 30,
      announce: { count: 4, interval: 0.05, refresh: 30 },
    });
    // Excluded VIPs would change the address list of the hybrid adverts: no vrrp block, and it says why.
    expect(r.notConverted.join('\n')).toMatch(
      /unicast\.conf:22: vrrp block: the hybrid adverts would list the excluded/,
    );
    // Otherwise the VRRP settings move into the vrrp block (hybrid mode), above any keepalived priority.
    const hybrid = await convert('basic.conf', {
      mode: 'etcd',
      etcd: ['http://10.0.0.2:2379'],
      cluster: 'prod',
    });
    expect(hybrid.groups[0]).toMatchObject({
      name: 'VI_1',
      priority: 150,
      vrrp: { vrid: 51, priority: 254, advertInt: 1, version: 2, authPass: 's3cret' },
    });
    expect(hybrid.groups[0]).not.toHaveProperty('vrid');
    expect(hybrid.yaml).toContain('delete it once none is left');
    const owner = await convert('unsupported.conf', { mode: 'etcd' });
    expect(owner.groups[0]?.['priority']).toBe(254);
    expect(owner.review.join('\n')).toMatch(/priority 255: etcd mode tops out at 254/);
    // Without --etcd and --cluster the placeholders are marked for review in the file.
    expect(owner.yaml).toMatch(/# REVIEW: the endpoints of your etcd cluster/);
  });

  it('lists what has no coord equivalent, by file:line, and still writes a valid config', async () => {
    const r = await convert('unsupported.conf');
    // The sync group binds both instances.
    expect(r.groups.map((g) => [g['name'], g['vips'], g['syncGroup']])).toEqual([
      ['VI_A', ['10.1.0.10/24'], 'G1'],
      ['VI_B', ['10.2.0.11/24'], 'G1'],
    ]);
    expect(r.groups[1]?.['authPass']).toBeUndefined();
    expect(r.notConverted.map((x) => x.split(': ')[0] + ': ' + x.split(': ')[1])).toEqual([
      'unsupported.conf:3: vrrp_strict',
      'unsupported.conf:18: use_vmac',
      'unsupported.conf:21: 10.2.0.10/24 dev eth1',
      'unsupported.conf:29: authentication',
      'unsupported.conf:11: notify_master /usr/local/bin/g1-up.sh',
      'unsupported.conf:39: virtual_server 10.1.0.10',
      'unsupported.conf:52: static_ipaddress',
    ]);
    expect(r.notConverted[5]).toMatch(/coord drives HAProxy, not LVS/);
  });

  it('follows includes through directories and names each block by its own file', async () => {
    const r = await convert('include/keepalived.conf');
    expect(r.groups.map((g) => g['name'])).toEqual(['web', 'api']);
    expect(r.yaml).toContain('# vrrp_instance web (conf.d/10-web.conf:1)');
    expect(r.yaml).toContain('# vrrp_script chk_haproxy (scripts/checks.conf:1)');
    expect(r.summary).toMatch(/from 5 files/);
    expect(r.notConverted).toEqual([
      expect.stringMatching(/^keepalived\.conf:6: include missing\/\*\.conf: matches no file/),
    ]);
  });

  it('leaves out a command only a shell could run, and says why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coord-import-'));
    const file = join(dir, 'keepalived.conf');
    writeFileSync(
      file,
      [
        'vrrp_script chk { ',
        '  script "pidof haproxy | grep -q ."',
        '}',
        'vrrp_instance V {',
        '  interface eth0',
        '  virtual_router_id 7',
        '  virtual_ipaddress {',
        '    10.0.0.7/24',
        '  }',
        '  track_script {',
        '    chk',
        '  }',
        '}',
      ].join('\n'),
    );
    const r = await convertFile({ file, mode: 'vrrp', configId: 'x' });
    expect(parseYaml(r.yaml)).not.toHaveProperty('track.scripts');
    expect(r.notConverted).toEqual([
      expect.stringMatching(/^keepalived\.conf:1: vrrp_script chk: .*without a shell.*: left out$/),
    ]);
  });

  it('writes --out with mode 0600, never over an existing file without --force, nothing on bad input', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coord-import-'));
    const out = join(dir, 'coord.yaml');
    const errs: string[] = [];
    const args: ImportArgs = { file: join(FIXTURES, 'conditional.conf'), mode: 'vrrp', configId: 'lb1', out };
    expect(
      await importKeepalived(
        args,
        () => undefined,
        (t) => errs.push(t),
      ),
    ).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readFileSync(out, 'utf8')).toMatch(/node: lb1/);
    expect(errs.join('')).toMatch(/converted 2 vrrp_instances .* → /);
    await expect(
      importKeepalived(
        args,
        () => undefined,
        () => undefined,
      ),
    ).rejects.toThrow(/exists; not overwritten/);
    expect(
      await importKeepalived(
        { ...args, force: true, configId: 'lb2' },
        () => undefined,
        () => undefined,
      ),
    ).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/node: lb2/);
    const bad = join(dir, 'bad.yaml');
    const e = await importKeepalived(
      { ...args, file: join(FIXTURES, 'malformed', 'unclosed.conf'), out: bad },
      () => undefined,
      () => undefined,
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CoordError);
    expect((e as CoordError).exitCode).toBe(2);
    expect(() => statSync(bad)).toThrow();
  });
});
