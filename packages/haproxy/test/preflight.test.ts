import { describe, expect, it } from 'vitest';
import { parseService, unbindableAddresses, type Service } from '../src/index.js';

function svc(name: string, addresses: string[]): Service {
  const r = parseService({ name, binds: addresses.map((address) => ({ address, port: 80 })), servers: [] });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.service;
}

const env = {
  nonlocalBind4: false,
  nonlocalBind6: false,
  localAddresses: new Set(['10.0.0.1', '2001:db8::1']),
};

describe('unbindableAddresses', () => {
  it('accepts local addresses and wildcards', () => {
    expect(unbindableAddresses([svc('web', ['10.0.0.1', '2001:db8::1', '0.0.0.0', '::'])], env)).toEqual([]);
  });

  it('names each bind that cannot work, per family', () => {
    const services = [svc('web', ['10.0.0.1', '10.0.0.50']), svc('v6', ['2001:db8::50'])];
    expect(unbindableAddresses(services, env).map((e) => e.path)).toEqual(['web.binds.1', 'v6.binds.0']);
    expect(unbindableAddresses(services, { ...env, nonlocalBind4: true }).map((e) => e.path)).toEqual([
      'v6.binds.0',
    ]);
    expect(unbindableAddresses(services, { ...env, nonlocalBind4: true, nonlocalBind6: true })).toEqual([]);
  });

  it('compares canonical forms (the model canonicalises IPv6)', () => {
    expect(unbindableAddresses([svc('web', ['2001:DB8:0::1'])], env)).toEqual([]);
  });
});
