import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import { serializeService, serviceKey, type ApplyResult, type HaproxyDriver } from '@coord/haproxy';
import { HaproxyLoop, type HaproxyStatus } from '../src/haproxy-loop.js';

/** A driver that, like the real one, coalesces requests made while an apply is pending into that one apply. */
function coalescingDriver() {
  const waiters: ((r: ApplyResult) => void)[] = [];
  let applies = 0;
  const driver: HaproxyDriver = {
    apply: () => new Promise<ApplyResult>((resolve) => waiters.push(resolve)),
    status: () => ({ pending: waiters.length > 0 }) as ReturnType<HaproxyDriver['status']>,
    stop: () => Promise.resolve(),
    stopHaproxy: () => Promise.resolve(true),
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
    /** Run the one pending apply: every waiter gets its result. */
    finish(result: ApplyResult): void {
      applies++;
      for (const w of waiters.splice(0)) w(result);
    },
    get applies() {
      return applies;
    },
  };
}

describe('HaproxyLoop', () => {
  it('logs and reports one coalesced apply once, for the newest request', async () => {
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
    // Two resyncs in a row (a watch that reconnected, then a queued re-read) before the debounced apply runs.
    loop.onView(52, [], new Map(), true);
    loop.onView(54, [], new Map(), true);
    d.finish({ result: 'applied', hash: 'abcdef0123456789', durationMs: 345, checkMs: 112 });
    await new Promise((r) => setImmediate(r));
    expect(d.applies).toBe(1);
    const applied = logger.records.filter((r) => r.message === 'haproxy apply');
    expect(applied.map((r) => r.fields['revision'])).toEqual([54]);
    expect(reported.map((s) => [s.revision, s.result])).toEqual([[54, 'applied']]);
    expect(loop.status?.result).toBe('applied');
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
