import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { clusterKeys } from '@coord/etcd';
import { MemoryEtcd } from '@coord/etcd/testing';
import {
  decodeRollout,
  encodeRollout,
  rolloutKey,
  serializeService,
  serviceKey,
  valueHash,
  type ApplyResult,
  type HaproxyDriver,
  type RolloutRecord,
} from '@coord/haproxy';
import { HaproxyLoop, type HaproxyStatus } from '../src/haproxy-loop.js';

/**
 * A driver that, like the real one, coalesces requests made while an apply is pending into that one apply, and
 * resolves them all with one result object carrying the newest request's revision.
 */
function coalescingDriver() {
  const waiters: { resolve: (r: ApplyResult) => void; revision: number | undefined }[] = [];
  let applies = 0;
  const driver: HaproxyDriver = {
    apply: (_services, meta) =>
      new Promise<ApplyResult>((resolve) => waiters.push({ resolve, revision: meta?.revision })),
    status: () => ({ pending: waiters.length > 0 }) as ReturnType<HaproxyDriver['status']>,
    stop: () => Promise.resolve(),
    stopHaproxy: () => Promise.resolve(true),
    gateSocket: () => undefined,
    prevalidate: () => Promise.resolve(true),
    serverSessions: () =>
      Promise.resolve(
        new Map([
          ['web/a', 3],
          ['web/b', 5],
        ]),
      ),
  };
  return {
    driver,
    /** Run the one pending apply (or its `count` oldest requests): each of them gets the same result. */
    finish(result: ApplyResult, count = waiters.length): void {
      applies++;
      const served = waiters.splice(0, count);
      const revision = served.at(-1)?.revision;
      const r: ApplyResult = revision === undefined ? result : { ...result, revision };
      for (const w of served) w.resolve(r);
    },
    get applies() {
      return applies;
    },
  };
}

/** A loop on {@link coalescingDriver}, with its log and every status it reported. */
function loopOnFakeDriver() {
  const d = coalescingDriver();
  const logger = new MemoryLogger();
  const reported: HaproxyStatus[] = [];
  const loop = new HaproxyLoop({
    cluster: 'lb',
    driver: d.driver,
    clock: new FakeClock(),
    logger,
    onApplied: (s) => reported.push(s),
  });
  return { d, logger, reported, loop };
}

describe('HaproxyLoop', () => {
  it('logs and reports one coalesced apply once, for the newest request', async () => {
    const { d, logger, reported, loop } = loopOnFakeDriver();
    // Two resyncs in a row (a watch that reconnected, then a queued re-read) before the debounced apply runs.
    loop.onView(52, [], new Map(), true);
    loop.onView(54, [], new Map(), true);
    d.finish({ result: 'applied', hash: 'abcdef0123456789', durationMs: 345, checkMs: 112, reloadMs: 180.4 });
    await new Promise((r) => setImmediate(r));
    expect(d.applies).toBe(1);
    const applied = logger.records.filter((r) => r.message === 'haproxy apply');
    expect(applied.map((r) => r.fields['revision'])).toEqual([54]);
    expect(applied[0]?.fields).toMatchObject({ ms: 345, checkMs: 112, reloadMs: 180 });
    expect(reported.map((s) => [s.revision, s.result])).toEqual([[54, 'applied']]);
    expect(loop.status?.result).toBe('applied');
  });

  it('logs a run that ended after a newer request was handed over, and the next run too; the state is the newest', async () => {
    const { d, logger, reported, loop } = loopOnFakeDriver();
    // Revision 70 runs at once; 71 (the same model again, a resync) arrives while it runs and waits for it.
    loop.onView(70, [], new Map(), true);
    loop.onView(71, [], new Map(), true);
    d.finish({ result: 'applied', hash: 'aaaaaaaaaaaa', durationMs: 200, via: 'reload' }, 1);
    await new Promise((r) => setImmediate(r));
    d.finish({ result: 'unchanged', hash: 'aaaaaaaaaaaa', durationMs: 3 });
    await new Promise((r) => setImmediate(r));
    expect(d.applies).toBe(2);
    const lines = logger.records.filter((r) => r.message === 'haproxy apply');
    // The reload is in the log even though a newer request was waiting when it ended.
    expect(lines.map((r) => [r.fields['revision'], r.fields['result']])).toEqual([
      [70, 'applied'],
      [71, 'unchanged'],
    ]);
    expect(reported.map((s) => [s.revision, s.result])).toEqual([[71, 'unchanged']]);
    expect(loop.status).toMatchObject({ revision: 71, configHash: 'aaaaaaaaaaaa' });
  });

  it('reports the current sessions of disabled servers (what coord server drain waits on), and only of those', async () => {
    const d = coalescingDriver();
    const loop = new HaproxyLoop({
      cluster: 'lb',
      driver: d.driver,
      clock: new FakeClock(),
      logger: new MemoryLogger(),
    });
    const service = (disabled: boolean) =>
      serializeService({
        name: 'web',
        binds: [{ address: '10.0.0.50', port: 80 }],
        mode: 'http',
        balance: 'roundrobin',
        check: true,
        servers: [
          { name: 'a', address: '10.0.1.1', port: 80, weight: 1, backup: false, disabled },
          { name: 'b', address: '10.0.1.2', port: 80, weight: 1, backup: false, disabled: false },
        ],
      });
    const view = (disabled: boolean) => {
      const key = serviceKey('lb', 'web');
      const entry = {
        key,
        value: Buffer.from(service(disabled)),
        modRevision: 1,
        createRevision: 1,
        lease: '0',
      };
      return new Map([[key, entry]]);
    };
    loop.onView(60, [], view(true), true);
    d.finish({ result: 'applied', hash: 'x', durationMs: 1 });
    await loop.pollDraining();
    expect(loop.status?.draining).toEqual({ 'web/a': 3 });
    loop.onView(61, [], view(false), true);
    await loop.pollDraining();
    expect(loop.status?.draining).toBeUndefined();
  });
});

describe('HaproxyLoop in a rolling rollout', () => {
  const cluster = 'lb';
  const base = {
    name: 'web',
    binds: [{ address: '10.0.0.50', port: 80 }],
    mode: 'http' as const,
    balance: 'roundrobin' as const,
    check: false,
    servers: [],
  };
  const previous = base;
  const next = { ...base, binds: [...base.binds, { address: '10.0.0.50', port: 81 }] };
  const nextText = serializeService(next);

  async function setup(me: string, result: ApplyResult['result']) {
    const clock = new FakeClock();
    const etcd = new MemoryEtcd(clock);
    const client = etcd.client(me, { latencyMs: 1 });
    const keys = clusterKeys(cluster);
    const record: RolloutRecord = {
      id: 'r1',
      service: 'web',
      next: valueHash(nextText),
      previous,
      order: ['h2', 'h1'],
      steps: {},
      state: 'running',
      startedAt: 0,
    };
    const applied: string[][] = [];
    let finishAll: ((r: ApplyResult) => void) | undefined;
    const driver: HaproxyDriver = {
      apply: (services) => {
        applied.push(services.flatMap((s) => s.binds.map((b) => `${s.name}:${b.port}`)));
        return new Promise<ApplyResult>((resolve) => (finishAll = resolve));
      },
      status: () => ({ pending: false }) as ReturnType<HaproxyDriver['status']>,
      stop: () => Promise.resolve(),
      stopHaproxy: () => Promise.resolve(true),
      gateSocket: () => undefined,
      prevalidate: () => Promise.resolve(true),
      serverSessions: () => Promise.resolve(new Map()),
    };
    const logger = new MemoryLogger();
    const loop = new HaproxyLoop({ cluster, driver, clock, logger, node: me });
    loop.attachEtcd(client);
    const run = async <T>(p: Promise<T>): Promise<T> => {
      let done = false;
      let value: T | undefined;
      void p.then((v) => {
        done = true;
        value = v;
      });
      for (let i = 0; i < 200 && !done; i++) {
        clock.advance(5);
        await new Promise((r) => setImmediate(r));
      }
      return value as T;
    };
    await run(client.put(keys.service('web'), nextText));
    await run(client.put(rolloutKey(cluster, 'web'), encodeRollout(record)));
    await run(client.put(keys.status('h1'), '{}'));
    await run(client.put(keys.status('h2'), '{}'));
    const view = async () => {
      const { revision, entries } = await run(client.range(keys.prefix));
      loop.onView(revision, [], new Map(entries.map((e) => [e.key, e])), true);
    };
    const finish = async () => {
      finishAll?.({
        result,
        hash: 'h',
        durationMs: 5,
        ...(result === 'applied' ? {} : { error: 'bind failed' }),
      });
      for (let i = 0; i < 50; i++) {
        clock.advance(5);
        await new Promise((r) => setImmediate(r));
      }
    };
    const stored = async () => {
      const { entry } = await run(client.get(rolloutKey(cluster, 'web')));
      return entry === undefined ? undefined : decodeRollout(entry.value);
    };
    return { view, finish, stored, applied, logger };
  }

  it('runs the previous version until its turn, then the new one, and records its pass', async () => {
    const h1 = await setup('h1', 'applied');
    await h1.view();
    expect(h1.applied).toEqual([['web:80']]); // h2 goes first: h1 keeps the previous version

    const h2 = await setup('h2', 'applied');
    await h2.view();
    expect(h2.applied).toEqual([['web:80', 'web:81']]);
    await h2.finish();
    const r = await h2.stored();
    expect(r?.state).toBe('running');
    expect(r?.steps['h2']?.state).toBe('ok');
  });

  it('records a failed apply, which stops the rollout; then the node runs the previous version again', async () => {
    const h2 = await setup('h2', 'rolled-back');
    await h2.view();
    await h2.finish();
    const r = await h2.stored();
    expect(r?.state).toBe('stopped');
    expect(r?.reason).toBe('h2: haproxy rolled-back: bind failed');
    await h2.view();
    expect(h2.applied.at(-1)).toEqual(['web:80']);
  });
});
