/**
 * `coord reload-config` / SIGHUP: only priorities and preemption change on a running node. Everything else in the
 * file must be reported as needing a restart, never answered with "no change" while the file says otherwise.
 */
import { describe, expect, it } from 'vitest';
import { validateNodeConfig, type NodeConfig } from '@coord/core';
import { changesNeedingRestart } from '../src/join-config.js';

const group = (over: Record<string, unknown> = {}) => ({
  name: 'web',
  interface: 'eth0',
  vips: ['10.0.0.50/24'],
  priority: 150,
  ...over,
});

function config(over: Record<string, unknown> = {}, groups: unknown[] = [group()]): NodeConfig {
  const r = validateNodeConfig({
    node: 'lb1',
    etcd: ['http://10.0.0.2:2379'],
    cluster: 'prod',
    groups,
    ...over,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

describe('changesNeedingRestart', () => {
  it('lets priority, preempt and preemptDelay through: the node applies those live', () => {
    const next = config({}, [group({ priority: 90, preempt: false, preemptDelay: 7 })]);
    expect(changesNeedingRestart(config(), next)).toEqual([]);
    expect(changesNeedingRestart(config(), config())).toEqual([]);
  });

  it('names a changed health check, hook, HAProxy setting or log level by its YAML key', () => {
    const cur = config();
    const next = config({
      track: { scripts: [{ command: '/usr/bin/true', interval: 3 }] },
      notify: { leader: '/usr/local/bin/on-leader' },
      haproxy: { config: '/etc/haproxy/coord.cfg' },
      logLevel: 'debug',
      ttl: 2,
    });
    expect(changesNeedingRestart(cur, next).sort()).toEqual([
      'haproxy',
      'logLevel',
      'notify',
      'track',
      'ttl',
    ]);
  });

  it('names group settings other than priority and preemption, and groups added or removed', () => {
    const cur = config();
    const next = config({}, [
      group({ announce: { count: 5 }, vips: ['10.0.0.50/24', '10.0.0.51/24'] }),
      group({ name: 'db', vips: ['10.0.0.60/24'] }),
    ]);
    expect(changesNeedingRestart(cur, next)).toEqual([
      'groups.web.vips',
      'groups.web.announce',
      'groups.db (added)',
    ]);
    expect(changesNeedingRestart(next, cur)).toContain('groups.db (removed)');
  });

  it('names each changed key once, and not what is derived from another (sync leaders, tracked VIP links)', () => {
    const two = (sync: string | undefined) => [
      group({ name: 'web', ...(sync === undefined ? {} : { syncGroup: sync }) }),
      group({ name: 'zz', vips: ['10.0.0.60/24'], syncGroup: 'pair' }),
    ];
    // web joins zz's sync group: zz's sync leader changes too, but its YAML did not.
    expect(changesNeedingRestart(config({}, two(undefined)), config({}, two('pair')))).toEqual([
      'groups.web.syncGroup',
    ]);
    // Fast failover tracks the VIP interface by itself: turning it on is not a change of track.
    expect(changesNeedingRestart(config(), config({ fastFailover: true })).sort()).toEqual([
      'fastFailover',
      'peer',
    ]);
  });

  it('the same groups in another order need a restart, and say so', () => {
    const a = group();
    const b = group({ name: 'db', vips: ['10.0.0.60/24'] });
    expect(changesNeedingRestart(config({}, [a, b]), config({}, [b, a]))).toEqual(['groups (their order)']);
  });
});
