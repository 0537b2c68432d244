import { describe, expect, it } from 'vitest';
import {
  LIMITS,
  checkServiceSet,
  parseService,
  parseServiceJson,
  serializeService,
  type ParseResult,
  type ServiceInput,
} from '../src/index.js';
import { decodeServiceEntries, serviceKey, serviceNameFromKey, servicesPrefix } from '../src/index.js';

const good: ServiceInput = {
  name: 'web',
  binds: [{ address: '10.0.0.50', port: 80 }],
  servers: [{ name: 's1', address: '10.0.1.1', port: 8080 }],
};

function withServer(patch: Record<string, unknown>): unknown {
  return { ...good, servers: [{ name: 's1', address: '10.0.1.1', port: 8080, ...patch }] };
}

/**
 * The fields a refusal names ([] when the value was accepted). A refusal must name the field that is wrong: a
 * refusal for some other reason would hide that the field under test was never checked.
 */
function refused(r: ParseResult): string[] {
  return r.ok ? [] : [...new Set(r.errors.map((e) => e.path))].sort();
}

describe('parseService', () => {
  it('accepts a minimal service and fills defaults', () => {
    const r = parseService(good);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.service).toMatchObject({ mode: 'http', balance: 'roundrobin', check: true });
    expect(r.service.servers[0]).toMatchObject({ weight: 1, backup: false, disabled: false });
  });

  it('canonicalises IPv6 and hostnames so equal services render equal bytes', () => {
    const r = parseService({
      ...good,
      binds: [{ address: '2001:DB8:0:0::1', port: 443 }],
      servers: [{ name: 's1', address: 'Backend-1.Example.com', port: 1 }],
    });
    expect(r.ok && r.service.binds[0]?.address).toBe('2001:db8::1');
    expect(r.ok && r.service.servers[0]?.address).toBe('backend-1.example.com');
  });

  // Each of these would, if rendered, add a directive, break a line or confuse HAProxy's tokenizer.
  const hostileNames = [
    'web\nlisten evil',
    'web evil',
    'web"',
    "web'",
    'web#x',
    '-web',
    '.web',
    '',
    'a'.repeat(64),
    'web;x',
    'web\\x',
    'wéb',
    'web\r',
    'web\t',
    '${HOME}',
  ];
  it.each(hostileNames)('refuses service name %j', (name) => {
    expect(refused(parseService({ ...good, name }))).toEqual(['name']);
  });
  it.each(hostileNames)('refuses server name %j', (name) => {
    expect(refused(parseService(withServer({ name })))).toEqual(['servers.0.name']);
  });

  const hostileAddresses = [
    '10.0.1.1 check inter 1',
    '10.0.1.1\n  server x 1.2.3.4:80',
    'fe80::1%eth0',
    '10.0.1.256',
    '1.2.3',
    'host_name',
    'host..name',
    '-host',
    'host-',
    `${'a'.repeat(64)}.com`,
    `${'abc.'.repeat(64)}com`,
    'unix@/tmp/x',
    'ipv4@1.2.3.4',
    '/tmp/sock',
    '"x"',
    '',
    ' 10.0.1.1',
  ];
  it.each(hostileAddresses)('refuses server address %j', (address) => {
    expect(refused(parseService(withServer({ address })))).toEqual(['servers.0.address']);
  });
  it.each([...hostileAddresses, 'example.com', '*', '0'])('refuses bind address %j', (address) => {
    expect(refused(parseService({ ...good, binds: [{ address, port: 80 }] }))).toEqual(['binds.0.address']);
  });

  // [label, value, the field the refusal must name ('' = the value as a whole)]
  it.each([
    ['port 0', withServer({ port: 0 }), 'servers.0.port'],
    ['port 65536', withServer({ port: 65536 }), 'servers.0.port'],
    ['port as string', withServer({ port: '80' }), 'servers.0.port'],
    ['fractional port', withServer({ port: 80.5 }), 'servers.0.port'],
    ['weight 257', withServer({ weight: 257 }), 'servers.0.weight'],
    ['negative weight', withServer({ weight: -1 }), 'servers.0.weight'],
    ['unknown server key', withServer({ extra: 'check inter 1' }), 'servers.0'],
    ['unknown service key', { ...good, option: 'httpchk' }, ''],
    ['mode with directive', { ...good, mode: 'http\n' }, 'mode'],
    ['unknown balance', { ...good, balance: 'uri' }, 'balance'],
    ['maxconn 0', { ...good, maxconn: 0 }, 'maxconn'],
    ['no binds', { ...good, binds: [] }, 'binds'],
    [
      'too many binds',
      {
        ...good,
        binds: Array.from({ length: LIMITS.maxBinds + 1 }, (_, i) => ({ address: '10.0.0.1', port: i + 1 })),
      },
      'binds',
    ],
    ['duplicate server names', { ...good, servers: [good.servers[0], good.servers[0]] }, 'servers.1.name'],
    ['duplicate binds', { ...good, binds: [good.binds[0], good.binds[0]] }, 'binds.1'],
    ['array', [good], ''],
    ['null', null, ''],
  ])('refuses %s, naming the field', (_label, value, path) => {
    expect(refused(parseService(value))).toEqual([path]);
  });

  it('accepts how a service rolls out, and refuses a check that could break the request line or does not fit', () => {
    expect(parseService({ ...good, rollout: 'parallel', rolloutCheck: '/healthz?full=1' }).ok).toBe(true);
    expect(parseService({ ...good, mode: 'tcp', rolloutCheck: 'tcp' }).ok).toBe(true);
    expect(refused(parseService({ ...good, rollout: 'canary' }))).toEqual(['rollout']);
    expect(refused(parseService({ ...good, rolloutCheck: '/a b' }))).toEqual(['rolloutCheck']);
    expect(refused(parseService({ ...good, rolloutCheck: '/a\r\nHost: x' }))).toEqual(['rolloutCheck']);
    expect(refused(parseService({ ...good, rolloutCheck: 'healthz' }))).toEqual(['rolloutCheck']);
    expect(refused(parseService({ ...good, mode: 'tcp', rolloutCheck: '/healthz' }))).toEqual([
      'rolloutCheck',
    ]);
  });

  it('accepts weight 0 and 256, backup and disabled', () => {
    expect(parseService(withServer({ weight: 0, backup: true })).ok).toBe(true);
    expect(parseService(withServer({ weight: 256, disabled: true })).ok).toBe(true);
  });
});

describe('parseServiceJson', () => {
  it('reports the path of each problem', () => {
    const r = parseServiceJson(JSON.stringify(withServer({ port: 0, address: 'bad address' })));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path).sort()).toEqual(['servers.0.address', 'servers.0.port']);
  });

  it.each(['', '{', 'null', '"web"', '{"name":"web"}', '\u0000'])('never throws on garbage %j', (text) => {
    expect(parseServiceJson(text).ok).toBe(false);
  });

  it('refuses oversized values before parsing them', () => {
    const r = parseServiceJson(`{"name":"${'a'.repeat(LIMITS.maxJsonBytes)}"}`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]?.message).toMatch(/limit/);
  });

  it('round-trips through serializeService, from bytes too', () => {
    const r = parseService(good);
    if (!r.ok) throw new Error('fixture invalid');
    const again = parseServiceJson(Buffer.from(serializeService(r.service)));
    expect(again).toEqual(r);
  });
});

describe('checkServiceSet', () => {
  it('finds duplicate names and binds shared between services', () => {
    const a = parseService(good);
    const b = parseService({ ...good, name: 'api' });
    if (!a.ok || !b.ok) throw new Error('fixture invalid');
    expect(checkServiceSet([a.service, b.service])[0]?.message).toMatch(/already bound by service "web"/);
    expect(
      checkServiceSet([a.service, a.service]).some((e) => /duplicate service name/.test(e.message)),
    ).toBe(true);
    expect(checkServiceSet([a.service])).toEqual([]);
  });
});

describe('etcd key layout', () => {
  it('puts one service per key under the cluster prefix', () => {
    expect(serviceKey('prod', 'web')).toBe('/coord/prod/services/web');
    expect(serviceNameFromKey('prod', servicesPrefix('prod') + 'web')).toBe('web');
    expect(serviceNameFromKey('prod', '/coord/other/services/web')).toBeUndefined();
    expect(serviceNameFromKey('prod', '/coord/prod/services/a/b')).toBeUndefined();
  });
});

describe('decodeServiceEntries', () => {
  const key = (n: string) => serviceKey('prod', n);
  const value = (patch: Record<string, unknown> = {}) => JSON.stringify({ ...good, ...patch });

  it('decodes every valid entry by name', () => {
    const r = decodeServiceEntries('prod', [
      { key: key('web'), value: value() },
      {
        key: key('api'),
        value: Buffer.from(value({ name: 'api', binds: [{ address: '10.0.0.51', port: 80 }] })),
      },
    ]);
    expect([...r.services.keys()].sort()).toEqual(['api', 'web']);
    expect(r.errors).toEqual([]);
  });

  it('keeps the last good version of a service whose new value is garbage, and reports it', () => {
    const first = decodeServiceEntries('prod', [{ key: key('web'), value: value() }]);
    const r = decodeServiceEntries(
      'prod',
      [{ key: key('web'), value: '{"name":"web","binds":"\n listen x"}' }],
      first.services,
    );
    expect(r.services.get('web')).toEqual(first.services.get('web'));
    expect(r.errors).toMatchObject([{ key: key('web'), keptPrevious: true }]);
  });

  it('refuses a value filed under another name and a key that is not a service key', () => {
    const r = decodeServiceEntries('prod', [
      { key: key('api'), value: value() },
      { key: '/coord/prod/services/bad name', value: value() },
    ]);
    expect(r.services.size).toBe(0);
    expect(r.errors.map((e) => e.keptPrevious)).toEqual([false, false]);
    expect(r.errors[0]?.errors[0]?.message).toMatch(/stored under key "api"/);
  });

  it('treats a key missing from the read as a deleted service', () => {
    const first = decodeServiceEntries('prod', [{ key: key('web'), value: value() }]);
    expect(decodeServiceEntries('prod', [], first.services).services.size).toBe(0);
  });
});
