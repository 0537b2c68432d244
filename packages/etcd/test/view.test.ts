import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { PrefixView, type ViewChange } from '../src/index.js';
import { MemoryEtcd } from '../src/testing.js';
import { elapse, until } from './support.js';

function setup() {
  const clock = new FakeClock(1000);
  const server = new MemoryEtcd(clock);
  const client = server.client('n1');
  const changes: ViewChange[] = [];
  const logger = new MemoryLogger();
  let throwOnce = false;
  const view = new PrefixView({
    etcd: client,
    prefix: '/p/',
    clock,
    logger,
    onChange: (c) => {
      changes.push(c);
      if (throwOnce) {
        throwOnce = false;
        throw new Error('consumer bug');
      }
    },
  });
  return {
    clock,
    server,
    client,
    changes,
    logger,
    view,
    throwNext: () => {
      throwOnce = true;
    },
  };
}

const keys = (v: PrefixView) => [...v.snapshot.keys()].sort();

describe('PrefixView (memory etcd, fake clock)', () => {
  it('reads everything at R, then applies every change from R + 1 on; deletes carry the entry they removed', async () => {
    const s = setup();
    s.server.put('/p/a', '1');
    s.server.put('/other', 'x');
    const started = s.view.start();
    await until(s.clock, () => s.view.health.connected);
    await started;
    expect(keys(s.view)).toEqual(['/p/a']);
    expect(s.changes[0]).toMatchObject({ resync: true });
    const createdAt = s.server.peek('/p/a')?.createRevision;
    s.server.put('/p/b', '2');
    s.server.delete('/p/a');
    await until(s.clock, () => s.view.health.revision === s.server.revision);
    expect(keys(s.view)).toEqual(['/p/b']);
    const del = s.changes.flatMap((c) => c.deletes);
    expect(del).toHaveLength(1);
    expect(del[0]?.key).toBe('/p/a');
    expect(del[0]?.createRevision).toBe(createdAt);
    expect(del[0]?.value.toString()).toBe('1');
  });

  it('a cut link holds events back; they arrive in order when it heals (the watch resumes)', async () => {
    const s = setup();
    void s.view.start();
    await until(s.clock, () => s.view.health.connected);
    s.client.cut('both');
    s.server.put('/p/x', '1');
    s.server.put('/p/x', '2');
    await elapse(s.clock, 200);
    expect(s.view.snapshot.has('/p/x')).toBe(false);
    s.client.heal();
    await until(s.clock, () => s.view.snapshot.get('/p/x')?.value.toString() === '2');
    expect(s.view.health.revision).toBe(s.server.revision);
  });

  it('a compaction during a cut makes it re-read and diff: nothing missed is trusted to the watch', async () => {
    const s = setup();
    s.server.put('/p/gone', '1');
    void s.view.start();
    await until(s.clock, () => s.view.health.connected);
    s.client.cut('both');
    s.server.delete('/p/gone');
    s.server.put('/p/new', '1');
    s.server.compact(s.server.revision);
    s.client.heal();
    await until(s.clock, () => s.view.health.resyncs === 2 && s.view.health.connected);
    expect(keys(s.view)).toEqual(['/p/new']);
    const last = s.changes.at(-1);
    expect(last?.resync).toBe(true);
    expect(last?.deletes.map((d) => d.key)).toEqual(['/p/gone']);
    expect(last?.puts.map((p) => p.key)).toEqual(['/p/new']);
  });

  it('reports a disconnect in its health and re-reads on reconnect', async () => {
    const s = setup();
    void s.view.start();
    await until(s.clock, () => s.view.health.connected);
    s.client.cut('both', { notifyWatches: true });
    await until(s.clock, () => !s.view.health.connected);
    s.client.heal();
    s.view.requestResync('test: reconnect');
    await until(s.clock, () => s.view.health.connected && s.view.health.resyncs === 2);
  });

  it('a consumer that throws does not kill the watch', async () => {
    const s = setup();
    void s.view.start();
    await until(s.clock, () => s.view.health.connected);
    s.throwNext();
    s.server.put('/p/a', '1');
    await until(s.clock, () => s.view.snapshot.has('/p/a'));
    s.server.put('/p/b', '1');
    await until(s.clock, () => s.view.snapshot.has('/p/b'));
    expect(s.logger.records.some((r) => r.message === 'view consumer failed')).toBe(true);
  });

  it('keeps retrying the first read while etcd is unreachable, with one warning', async () => {
    const s = setup();
    s.client.cut('both');
    const started = s.view.start();
    await elapse(s.clock, 8000, 50);
    expect(
      s.logger.records.filter((r) => r.message === 'waiting for etcd' && r.level === 'warn'),
    ).toHaveLength(1);
    s.client.heal();
    await until(s.clock, () => s.view.health.connected, 5000);
    await started;
    expect(s.logger.records.map((r) => r.message)).toContain('connected to etcd');
  });
});
