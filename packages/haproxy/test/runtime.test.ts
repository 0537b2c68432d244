import { describe, expect, it } from 'vitest';
import {
  parseServerSessions,
  parseService,
  runtimePlan,
  type Service,
  type ServiceInput,
} from '../src/index.js';

function svc(input: Partial<ServiceInput> & { servers: ServiceInput['servers'] }): Service {
  const r = parseService({ name: 'web', binds: [{ address: '10.0.0.50', port: 80 }], ...input });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.service;
}

const a = { name: 'a', address: '10.0.1.1', port: 8080, weight: 10 };
const b = { name: 'b', address: '10.0.1.2', port: 8080, weight: 10 };
const commands = (before: Service[], after: Service[]) => {
  const p = runtimePlan(before, after);
  return p.ok ? p.commands.map((c) => c.command) : p.reason;
};

describe('runtime plan (server changes without a reload)', () => {
  it('adds a server in maintenance, turns its health check on, then enables it', () => {
    expect(commands([svc({ servers: [a] })], [svc({ servers: [a, b] })])).toEqual([
      'add server web/b 10.0.1.2:8080 weight 10 check inter 2s rise 2 fall 3',
      'enable health web/b',
      'enable server web/b',
    ]);
    // Without checks, a backup, a disabled one, an IPv6 one.
    expect(
      commands(
        [svc({ check: false, servers: [] })],
        [
          svc({
            check: false,
            servers: [
              { ...b, backup: true, disabled: true },
              { name: 'c', address: '2001:db8::7', port: 80 },
            ],
          }),
        ],
      ),
    ).toEqual([
      'add server web/b 10.0.1.2:8080 weight 10 backup',
      'add server web/c [2001:db8::7]:80 weight 1',
      'enable server web/c',
    ]);
  });

  it('removes a server by putting it in maintenance first (HAProxy deletes only those)', () => {
    expect(commands([svc({ servers: [a, b] })], [svc({ servers: [a] })])).toEqual([
      'disable server web/b',
      'del server web/b',
    ]);
  });

  it('changes weight, address and state in place; removals come first, additions last', () => {
    expect(
      commands(
        [svc({ servers: [a, b] })],
        [
          svc({
            servers: [
              { ...a, weight: 3, port: 9090, disabled: true },
              { ...b, name: 'c' },
            ],
          }),
        ],
      ),
    ).toEqual([
      'disable server web/b',
      'del server web/b',
      'set server web/a addr 10.0.1.1 port 9090',
      'set server web/a weight 3',
      'disable server web/a',
      'add server web/c 10.0.1.2:8080 weight 10 check inter 2s rise 2 fall 3',
      'enable health web/c',
      'enable server web/c',
    ]);
    expect(commands([svc({ servers: [{ ...a, disabled: true }] })], [svc({ servers: [a] })])).toEqual([
      'enable server web/a',
    ]);
  });

  it('anything beyond servers reloads, with the reason', () => {
    const one = [svc({ servers: [a] })];
    expect(commands(one, [svc({ servers: [a], balance: 'leastconn' })])).toMatch(
      /changed beyond its servers/,
    );
    expect(commands(one, [svc({ servers: [a], binds: [{ address: '10.0.0.51', port: 80 }] })])).toMatch(
      /beyond its servers/,
    );
    expect(commands(one, [...one, svc({ name: 'api', servers: [] })])).toMatch(/services added or removed/);
    expect(commands(one, [svc({ name: 'api', servers: [a] })])).toMatch(/services added or removed/);
    expect(commands(one, [svc({ servers: [{ ...a, backup: true }] })])).toMatch(/backup/);
    expect(commands(one, [svc({ servers: [a, { ...b, address: 'b.example.net' }] })])).toMatch(/host name/);
    expect(commands(one, one)).toMatch(/no server change/);
  });

  it('judges HAProxy 2.6 answers: a refusal is never taken for success', () => {
    const p = runtimePlan([svc({ servers: [a] })], [svc({ servers: [b] })]);
    if (!p.ok) throw new Error(p.reason);
    const [disable, del, add] = p.commands;
    expect(disable?.accepts('')).toBe(true);
    expect(disable?.accepts('No such server.\n')).toBe(false);
    expect(del?.accepts('Server deleted.\n')).toBe(true);
    expect(del?.accepts('Server still has connections attached to it, cannot remove it.\n')).toBe(false);
    expect(add?.accepts('New server registered.\n')).toBe(true);
    expect(add?.accepts('Already exists a server with the same name in backend.\n')).toBe(false);
  });
});

describe('show stat → sessions per server', () => {
  it('reads scur of server rows only, by proxy/server, and never throws on anything else', () => {
    const csv = [
      '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type',
      'web,FRONTEND,,,4,9,2000,77,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0',
      'web,a,0,0,3,5,,40,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,0,5,0,,1,2,1,,40,,2',
      'web,b,0,0,0,2,,37,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,5,0,,1,2,2,,37,,2',
      'web,BACKEND,0,0,3,9,200,77,0,0,0,0,,0,0,0,0,UP,2,2,0,,0,5,0,,1,2,0,,77,,1',
      '',
    ].join('\n');
    expect(parseServerSessions(csv)).toEqual(
      new Map([
        ['web/a', 3],
        ['web/b', 0],
      ]),
    );
    expect(parseServerSessions('')).toEqual(new Map());
    expect(parseServerSessions('Unknown command\n')).toEqual(new Map());
  });
});
