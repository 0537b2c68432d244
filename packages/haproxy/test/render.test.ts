import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  configHash,
  gateSocketPath,
  parseService,
  render,
  validateGlobals,
  type Service,
  type ServiceInput,
} from '../src/index.js';

const fixtures = join(import.meta.dirname, 'fixtures');

function svc(input: ServiceInput): Service {
  const r = parseService(input);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.service;
}

const services: Service[] = [
  svc({
    name: 'web',
    binds: [
      { address: '10.0.0.50', port: 80 },
      { address: '2001:db8::50', port: 80 },
    ],
    maxconn: 2000,
    servers: [
      { name: 'web2', address: '10.0.1.2', port: 8080, weight: 50 },
      { name: 'web1', address: '10.0.1.1', port: 8080 },
      { name: 'spare', address: 'spare.example.com', port: 8080, backup: true },
      { name: 'old', address: '2001:db8::99', port: 8080, disabled: true, weight: 0 },
    ],
  }),
  svc({
    name: 'db',
    binds: [{ address: '10.0.0.51', port: 5432 }],
    mode: 'tcp',
    balance: 'leastconn',
    check: false,
    servers: [{ name: 'pg1', address: '10.0.2.1', port: 5432 }],
  }),
];

const base =
  'frontend stats\n  bind 127.0.0.1:8404\n  http-request return status 200 content-type text/plain string ok\n';

describe('render', () => {
  // Goldens: `vitest run -u` rewrites them; review the diff like code. A missing golden is written when run
  // locally but fails under CI=1 (set by .ci/run), so CI never passes by creating its own expectation.
  it('matches the golden file (services sorted, defaults from docs/design.md)', async () => {
    await expect(render({ services })).toMatchFileSnapshot(join(fixtures, 'two-services.cfg'));
  });

  it('matches the golden file with a base config and explicit globals', async () => {
    const text = render({
      services,
      base,
      globals: {
        hardStopAfter: '5s',
        mworkerMaxReloads: 5,
        statsSocket: '/run/coord/stats.sock',
        timeouts: { client: '1m' },
      },
    });
    await expect(text).toMatchFileSnapshot(join(fixtures, 'with-base.cfg'));
  });

  // The goldens above contain a DNS name HAProxy cannot resolve here; this one is checked by HAProxy itself, so
  // the bytes pinned in a golden are also bytes HAProxy 2.6 accepts (globals, base, both modes, IPv6, flags).
  it('matches a golden file that `haproxy -c` accepts', async () => {
    const ipOnly = services.map((s) => ({ ...s, servers: s.servers.filter((x) => x.name !== 'spare') }));
    const golden = join(fixtures, 'validated.cfg');
    const text = render({
      services: ipOnly,
      base,
      globals: { hardStopAfter: '5s', mworkerMaxReloads: 5, timeouts: { client: '1m' } },
    });
    await expect(text).toMatchFileSnapshot(golden);
    // The same bytes as the golden (just matched), checked from a copy: a golden written by this very run (`-u`,
    // or a first local run) reaches the disk only after the test.
    const dir = mkdtempSync(join(tmpdir(), 'coord-golden-'));
    try {
      writeFileSync(join(dir, 'validated.cfg'), text);
      const r = spawnSync('haproxy', ['-c', '-f', join(dir, 'validated.cfg')], {
        encoding: 'utf8',
        timeout: 10_000,
      });
      expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/Configuration file is valid/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is deterministic: order of services, binds and servers does not change the bytes or the hash', () => {
    const shuffled = [...services]
      .reverse()
      .map((s) => ({ ...s, servers: [...s.servers].reverse(), binds: [...s.binds].reverse() }));
    expect(render({ services: shuffled })).toBe(render({ services }));
    expect(configHash(render({ services: shuffled }))).toBe(configHash(render({ services })));
  });

  it('changes the hash when anything that matters changes', () => {
    const h = configHash(render({ services }));
    const [web, db] = services as [Service, Service];
    const heavier = {
      ...web,
      servers: web.servers.map((s) => (s.name === 'web1' ? { ...s, weight: 2 } : s)),
    };
    expect(configHash(render({ services: [heavier, db] }))).not.toBe(h);
    expect(configHash(render({ services, base }))).not.toBe(h);
    expect(configHash(render({ services: [db] }))).not.toBe(h);
    expect(configHash(render({ services }))).toMatch(/^[0-9a-f]{64}$/);
  });

  it('with a server state file, the global names it and coord’s defaults load it', () => {
    const text = render({ services, globals: { serverStateFile: '/run/coord/haproxy/server-state' } });
    expect(text).toMatch(/^global\n(?:  .*\n)*  server-state-file \/run\/coord\/haproxy\/server-state\n/m);
    expect(text).toMatch(/^defaults coord\n(?:  .*\n)*  load-server-state-from-file global\n/m);
    expect(render({ services })).not.toMatch(/server-state/);
  });

  it('gives every frontend a gate socket in the gate directory, unless its path would not fit a Unix socket', () => {
    const text = render({ services, globals: { gateSocketDir: '/run/coord/haproxy/gate' } });
    expect(text).toMatch(
      /^frontend web\n(?:  .*\n)*  bind unix@\/run\/coord\/haproxy\/gate\/web\.sock mode 600\n/m,
    );
    expect(text).toMatch(
      /^frontend db\n(?:  .*\n)*  bind unix@\/run\/coord\/haproxy\/gate\/db\.sock mode 600\n/m,
    );
    expect(gateSocketPath('/run/coord/gate/', 'web')).toBe('/run/coord/gate/web.sock');
    const long = `/${'d'.repeat(90)}`;
    expect(gateSocketPath(long, 'web')).toBeUndefined();
    expect(render({ services, globals: { gateSocketDir: long } })).not.toMatch(/unix@/);
    expect(render({ services })).not.toMatch(/unix@/);
  });

  it('renders configs `haproxy -c` accepts, including an empty service set with a stats socket', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coord-render-'));
    const ipOnly = services.map((s) => ({ ...s, servers: s.servers.filter((x) => x.name !== 'spare') }));
    try {
      const cases = [
        render({ services: [], globals: { statsSocket: join(dir, 'stats.sock') } }),
        render({ services: ipOnly, base }),
        // With a server state file that does not exist yet (a first start): HAProxy starts its servers afresh.
        render({ services: ipOnly, globals: { serverStateFile: join(dir, 'no-state-yet') } }),
        // Every frontend with its rollout gate socket, tcp and http alike.
        render({ services: ipOnly, globals: { gateSocketDir: dir } }),
      ];
      cases.forEach((text, i) => {
        writeFileSync(join(dir, `${i}.cfg`), text);
        execFileSync('haproxy', ['-c', '-q', '-f', join(dir, `${i}.cfg`)], {
          timeout: 10_000,
          stdio: 'pipe',
        });
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [{ hardStopAfter: '30s\n  daemon' }, 'hardStopAfter'],
    [{ mworkerMaxReloads: 0 }, 'mworkerMaxReloads'],
    [{ statsSocket: '/run/x.sock level admin' }, 'statsSocket'],
    [{ serverStateFile: '/run/state\n  daemon' }, 'serverStateFile'],
    [{ timeouts: { client: '5 s' } }, 'timeouts.client'],
    [{ gateSocketDir: '/run/gate mode 666' }, 'gateSocketDir'],
  ])('refuses hostile node-local globals %j', (g, path) => {
    expect(validateGlobals(g).map((e) => e.path)).toEqual([path]);
  });
});
