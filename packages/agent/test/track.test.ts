import { describe, expect, it } from 'vitest';
import { FakeClock, MemoryLogger } from '@coord/core';
import type { LinkEvent } from '@coord/vip';
import {
  createTracker,
  effectivePriority,
  initialTrackState,
  trackStep,
  type LinkWatcher,
  type TrackOutcome,
  type TrackState,
} from '../src/track.js';
import type { CommandRunner, RunOptions, RunResult } from '../src/runner.js';

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function replay(cfg: { rise: number; fall: number }, start: TrackState, probes: string): string {
  let s = start;
  let out = '';
  for (const p of probes) {
    s = trackStep(cfg, s, p === '+');
    out += s.healthy ? 'H' : 'F';
  }
  return out;
}

describe('trackStep', () => {
  const failed: TrackState = { healthy: false, streak: 0 };
  const healthy: TrackState = { healthy: true, streak: 0 };
  it.each([
    // rise, fall, start, probes (+ ok, - fail), states after each probe
    [3, 2, failed, '+++', 'FFH'],
    [3, 2, failed, '++-+++', 'FFFFFH'],
    [3, 2, healthy, '-+-', 'HHH'],
    [3, 2, healthy, '--', 'HF'],
    [3, 2, healthy, '-+--+', 'HHHFF'],
    [1, 1, healthy, '-+-+', 'FHFH'],
    [2, 3, healthy, '---++', 'HHFFH'],
    [0, 0, failed, '+-', 'HF'], // below 1 counts as 1
  ])('rise %i fall %i from %o: %s -> %s', (rise, fall, start, probes, expected) => {
    expect(replay({ rise, fall }, start, probes)).toBe(expected);
  });

  it('starts failed, one success from healthy (keepalived init rise-1)', () => {
    const cfg = { rise: 3, fall: 2 };
    expect(initialTrackState(cfg)).toEqual({ healthy: false, streak: 2 });
    expect(replay(cfg, initialTrackState(cfg), '+')).toBe('H');
    // A first failure loses the head start: the full rise is needed afterwards.
    expect(replay(cfg, initialTrackState(cfg), '-+++')).toBe('FFFH');
  });

  it('keeps the same object when nothing changes', () => {
    const s = { healthy: true, streak: 0 };
    expect(trackStep({ rise: 2, fall: 2 }, s, true)).toBe(s);
  });
});

describe('effectivePriority', () => {
  it.each([
    ['no checks', 100, [], 100, false],
    ['healthy weightless', 100, [{ healthy: true }], 100, false],
    ['failed weightless is fault', 100, [{ healthy: false }], 100, true],
    ['weight 0 failing is fault', 100, [{ healthy: false, weight: 0 }], 100, true],
    ['negative weight failing lowers', 100, [{ healthy: false, weight: -30 }], 70, false],
    ['negative weight healthy does nothing', 100, [{ healthy: true, weight: -30 }], 100, false],
    ['positive weight healthy raises', 100, [{ healthy: true, weight: 20 }], 120, false],
    ['positive weight failing withholds', 100, [{ healthy: false, weight: 20 }], 100, false],
    ['clamped at 1', 50, [{ healthy: false, weight: -100 }], 1, false],
    ['clamped at 254', 250, [{ healthy: true, weight: 50 }], 254, false],
    [
      'mixed',
      100,
      [
        { healthy: false, weight: -10 },
        { healthy: false, weight: -15 },
        { healthy: true, weight: 5 },
      ],
      80,
      false,
    ],
  ])('%s', (_name, base, checks, priority, fault) => {
    const r = effectivePriority(base, checks);
    expect(r.priority).toBe(priority);
    expect(r.fault).toBe(fault);
  });

  it('names every failing check in the reasons', () => {
    const r = effectivePriority(100, [
      { name: 'script chk', healthy: false, weight: -10 },
      { name: 'interface eth0', healthy: false },
      { healthy: true },
      { healthy: false, weight: 5 },
    ]);
    expect(r.reasons).toEqual([
      'script chk failed (weight -10)',
      'interface eth0 failed (fault)',
      'check #3 failed (bonus 5 withheld)',
    ]);
  });
});

/** A runner the test answers by hand: each call waits until the test resolves it. */
function fakeRunner() {
  const calls: { argv: readonly string[]; options: RunOptions; resolve: (r: RunResult) => void }[] = [];
  const run: CommandRunner = (argv, options) =>
    new Promise<RunResult>((resolve) => calls.push({ argv, options, resolve }));
  const answer = async (ok: boolean, extra: Partial<RunResult> = {}): Promise<void> => {
    const c = calls.shift();
    if (c === undefined) throw new Error('no pending run');
    c.resolve({
      ok,
      timedOut: false,
      durationMs: 5,
      stderrTail: '',
      ...(ok ? { exitCode: 0 } : { exitCode: 1 }),
      ...extra,
    });
    await flush();
  };
  return { run, calls, answer };
}

function fakeLinks() {
  let listener: ((e: LinkEvent) => void) | undefined;
  let closed = 0;
  const links: LinkWatcher = (onEvent) => {
    listener = onEvent;
    return {
      close() {
        closed++;
      },
    };
  };
  return {
    links,
    emit: (e: LinkEvent) => listener?.(e),
    get closed() {
      return closed;
    },
    get watching() {
      return listener !== undefined;
    },
  };
}

describe('createTracker', () => {
  const script = {
    name: 'chk',
    argv: ['/usr/local/bin/chk'],
    intervalMs: 1000,
    timeoutMs: 500,
    rise: 2,
    fall: 2,
  };

  it('runs a script at start and on its interval, through the hysteresis, reporting only changes', async () => {
    const clock = new FakeClock();
    const r = fakeRunner();
    const changes: TrackOutcome[] = [];
    const t = createTracker({
      scripts: [script],
      interfaces: [],
      base: 100,
      clock,
      logger: new MemoryLogger(),
      onChange: (o) => changes.push(o),
      run: r.run,
    });
    expect(t.current()).toEqual({ priority: 100, fault: true, reasons: ['script chk failed (fault)'] });
    t.start();
    clock.advance(0);
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0]?.argv).toEqual(['/usr/local/bin/chk']);
    expect(r.calls[0]?.options.timeoutMs).toBe(500);
    await r.answer(true); // first success is enough at start
    expect(changes).toEqual([{ priority: 100, fault: false, reasons: [] }]);

    clock.advance(999);
    expect(r.calls).toHaveLength(0);
    clock.advance(1);
    expect(r.calls).toHaveLength(1);
    await r.answer(false); // one failure: still healthy (fall 2)
    expect(changes).toHaveLength(1);
    clock.advance(1000);
    await r.answer(false, { timedOut: true });
    expect(changes).toHaveLength(2);
    expect(changes[1]).toEqual({ priority: 100, fault: true, reasons: ['script chk failed (fault)'] });
    expect(t.results()[0]).toMatchObject({
      kind: 'script',
      name: 'chk',
      healthy: false,
      runs: 3,
      failures: 2,
    });
    t.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it('never overlaps runs of one script: a slow run delays the next', async () => {
    const clock = new FakeClock();
    const r = fakeRunner();
    const t = createTracker({
      scripts: [script],
      interfaces: [],
      base: 100,
      clock,
      logger: new MemoryLogger(),
      onChange: () => {},
      run: r.run,
    });
    t.start();
    clock.advance(0);
    clock.advance(5000);
    await flush();
    expect(r.calls).toHaveLength(1); // still the first run
    await r.answer(true);
    // Started 5000 ms ago, so the interval has passed: the next run comes at once, not 1000 ms later.
    clock.advance(0);
    expect(r.calls).toHaveLength(1);
    clock.advance(300);
    await r.answer(true);
    clock.advance(699);
    expect(r.calls).toHaveLength(0);
    clock.advance(1); // interval counted start to start
    expect(r.calls).toHaveLength(1);
    t.stop();
  });

  it('a weighted script lowers priority instead of faulting; a throwing runner counts as failure', async () => {
    const clock = new FakeClock();
    let n = 0;
    const changes: TrackOutcome[] = [];
    const t = createTracker({
      scripts: [{ ...script, weight: -20, rise: 1, fall: 1 }],
      interfaces: [],
      base: 100,
      clock,
      logger: new MemoryLogger(),
      onChange: (o) => changes.push(o),
      run: () => {
        n++;
        return n === 1
          ? Promise.resolve({ ok: true, exitCode: 0, timedOut: false, durationMs: 1, stderrTail: '' })
          : Promise.reject(new Error('boom'));
      },
    });
    expect(t.current().priority).toBe(80);
    t.start();
    clock.advance(0);
    await flush();
    expect(changes.map((c) => c.priority)).toEqual([100]);
    clock.advance(1000);
    await flush();
    expect(changes.map((c) => [c.priority, c.fault])).toEqual([
      [100, false],
      [80, false],
    ]);
    expect(t.results()[0]?.last?.stderrTail).toBe('boom');
    t.stop();
  });

  it('follows link events for tracked interfaces, at once, and ignores others', () => {
    const clock = new FakeClock();
    const l = fakeLinks();
    const changes: TrackOutcome[] = [];
    const t = createTracker({
      scripts: [],
      interfaces: [{ name: 'eth0' }, { name: 'eth1', weight: -50 }],
      base: 150,
      clock,
      logger: new MemoryLogger(),
      onChange: (o) => changes.push(o),
      links: l.links,
    });
    expect(t.current()).toMatchObject({ priority: 100, fault: true }); // unknown links start failed
    t.start();
    expect(l.watching).toBe(true);
    l.emit({ iface: 'eth0', up: true, carrier: true });
    expect(changes).toEqual([
      { priority: 100, fault: false, reasons: ['interface eth1 failed (weight -50)'] },
    ]);
    l.emit({ iface: 'eth1', up: true, carrier: true });
    expect(changes.at(-1)).toEqual({ priority: 150, fault: false, reasons: [] });
    l.emit({ iface: 'eth9', up: false, carrier: false });
    l.emit({ iface: 'eth0', up: true, carrier: true }); // repeat: no change
    expect(changes).toHaveLength(2);
    l.emit({ iface: 'eth0', up: true, carrier: false }); // carrier lost
    expect(changes.at(-1)).toMatchObject({ fault: true, reasons: ['interface eth0 failed (fault)'] });
    l.emit({ iface: 'eth1', up: false, carrier: false }); // admin down: priority changes under fault
    expect(changes.at(-1)).toMatchObject({ priority: 100, fault: true });
    expect(t.results()).toEqual([
      { kind: 'interface', name: 'eth0', healthy: false, link: { iface: 'eth0', up: true, carrier: false } },
      {
        kind: 'interface',
        name: 'eth1',
        healthy: false,
        weight: -50,
        link: { iface: 'eth1', up: false, carrier: false },
      },
    ]);
    t.stop();
    expect(l.closed).toBe(1);
    l.emit({ iface: 'eth0', up: true, carrier: true }); // after stop: ignored
    expect(changes).toHaveLength(4);
  });

  it('drops a result that arrives after stop and schedules nothing more', async () => {
    const clock = new FakeClock();
    const r = fakeRunner();
    const changes: TrackOutcome[] = [];
    const t = createTracker({
      scripts: [script],
      interfaces: [],
      base: 100,
      clock,
      logger: new MemoryLogger(),
      onChange: (o) => changes.push(o),
      run: r.run,
    });
    t.start();
    clock.advance(0);
    t.stop();
    await r.answer(true);
    expect(changes).toEqual([]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a script that cannot run (missing program) says so at warn on its first run, and stays failed', async () => {
    // Regression: a missing --track-script put the node in FAULT with nothing logged above debug.
    const clock = new FakeClock();
    const logger = new MemoryLogger();
    const t = createTracker({
      scripts: [{ ...script, argv: ['/nonexistent/check-haproxy'] }],
      interfaces: [],
      base: 100,
      clock,
      logger,
      onChange: () => {},
    });
    t.start();
    clock.advance(0);
    for (let i = 0; i < 50 && t.results()[0]?.runs === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const warn = logger.records.find((r) => r.message === 'track script failing from the start');
    expect(warn?.level).toBe('warn');
    expect(String(warn?.fields.stderr)).toMatch(/cannot run \/nonexistent\/check-haproxy/);
    expect(t.current().fault).toBe(true);
    t.stop();
  });
});
