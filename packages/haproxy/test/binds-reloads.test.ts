import { describe, expect, it } from 'vitest';
import { checkServiceSet, judgeReload, parseService, type ShowProc } from '../src/index.js';

const svc = (address: string) =>
  parseService({
    name: 'web',
    binds: [{ address, port: 80 }],
    servers: [{ name: 'a', address: '10.0.1.1', port: 8080 }],
  });

describe('bind addresses a listener can use', () => {
  it.each([
    ['::ffff:10.0.0.50', 'IPv4-mapped: would hide a clash with 10.0.0.50:80'],
    ['fe80::1', 'link-local: no scope, the bind fails at reload after haproxy -c passed'],
    ['ff02::1', 'multicast'],
    ['224.0.0.18', 'multicast'],
    ['169.254.1.1', 'IPv4 link-local'],
  ])('refuses %s (%s)', (address) => {
    const r = svc(address);
    expect(r.ok).toBe(false);
  });

  it('accepts ordinary unicast addresses, and still sees clashes between services', () => {
    for (const a of ['10.0.0.50', '0.0.0.0', '2001:db8::50', '::']) expect(svc(a).ok, a).toBe(true);
    const a = svc('10.0.0.50');
    const b = parseService({ name: 'api', binds: [{ address: '10.0.0.50', port: 80 }], servers: [] });
    if (!a.ok || !b.ok) throw new Error('setup');
    expect(checkServiceSet([a.service, b.service])).not.toEqual([]);
  });
});

describe('judgeReload', () => {
  const proc = (reloads: number, failed: number, workers: [number, number][]): ShowProc => ({
    master: { pid: 100, reloads, failedReloads: failed },
    workers: workers.map(([pid, r]) => ({ pid, reloads: r })),
  });

  it('an earlier failed reload does not condemn the next one while its worker is still starting', () => {
    const before = proc(3, 1, [[200, 0]]);
    expect(judgeReload(before, proc(4, 1, [[200, 1]]))).toBe('pending');
    expect(
      judgeReload(
        before,
        proc(4, 1, [
          [200, 1],
          [201, 0],
        ]),
      ),
    ).toBe('succeeded');
    expect(judgeReload(before, proc(4, 2, [[200, 1]]))).toBe('failed');
  });
});
