/**
 * `coord service set` / `coord server set`: a bad flag is named, and nothing asked of etcd, before any connection —
 * also when etcd is unreachable (the endpoint below refuses at once; a test that reached it would fail with exit 5).
 */
import { describe, expect, it } from 'vitest';
import { isCoordError } from '@coord/core';
import { serverSet, serviceSet } from '../src/services.js';

const target = { etcd: ['http://127.0.0.1:1'], cluster: 't', timeout: 1, config: '' };

async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!isCoordError(e)) throw new Error(`expected a CoordError, got ${String(e)}`);
  return { code: e.exitCode, message: e.message };
}

describe('flags are checked before etcd is asked', () => {
  it('service set: a bind that is not ADDR:PORT, a balance or maxconn out of range', async () => {
    expect(await refusal(serviceSet({ ...target, name: 'web', bind: ['nope'] }))).toEqual({
      code: 2,
      message: '--bind: "nope" is not ADDR:PORT',
    });
    const r = await refusal(serviceSet({ ...target, name: 'web', bind: ['10.0.0.50:80'], maxconn: -1 }));
    expect(r.code).toBe(2);
    expect(r.message).toMatch(/^service web: maxconn/);
  });

  it('server set: a weight over the limit', async () => {
    const r = await refusal(
      serverSet({ ...target, service: 'web', name: 's1', address: '10.0.0.1:80', weight: 999 }),
    );
    expect(r.code).toBe(2);
    expect(r.message).toMatch(/^server s1: .*weight/);
  });
});
