import { FakeClock } from '@coord/core';
import { describe, expect, it } from 'vitest';
import { Debouncer, dueAt, noteChange } from '../src/index.js';

const config = { quietMs: 100, maxWaitMs: 1000 };

describe('debounce rules', () => {
  it('a change after a quiet window (or the first one ever) is due at once', () => {
    expect(dueAt(config, noteChange(config, undefined, 0, undefined))).toBe(0);
    expect(dueAt(config, noteChange(config, undefined, 500, 400))).toBe(500);
    // Another change before that fire joins it: still due at once.
    const s = noteChange(config, noteChange(config, undefined, 500, 400), 500, 500);
    expect(dueAt(config, s)).toBe(500);
  });
  it('a change within the quiet window of the one before waits for a quiet window after the last change', () => {
    let s = noteChange(config, undefined, 20, 0);
    s = noteChange(config, s, 50, 20);
    expect(dueAt(config, s)).toBe(150);
  });
  it('never waits longer than maxWait after the first change of a burst', () => {
    let s = noteChange(config, undefined, 10, 0);
    s = noteChange(config, s, 990, 10);
    expect(dueAt(config, s)).toBe(1010);
  });
});

describe('Debouncer', () => {
  it('turns a burst of 500 changes in 10 s into about one fire per max-wait', () => {
    const clock = new FakeClock();
    const fires: number[] = [];
    const d = new Debouncer(clock, config, () => fires.push(clock.now()));
    for (let i = 0; i < 500; i++) {
      d.poke();
      clock.advance(20);
    }
    clock.advance(200);
    // The first change fires at once; after it a change every 20 ms is never quiet for 100 ms: only max-wait
    // fires, once per second, plus the tail.
    expect(fires[0]).toBe(0);
    expect(fires.length).toBeGreaterThanOrEqual(11);
    expect(fires.length).toBeLessThanOrEqual(12);
    // No change waits longer than max-wait for a fire.
    for (let at = 0; at < 500 * 20; at += 20)
      expect((fires.find((f) => f >= at) ?? Infinity) - at).toBeLessThanOrEqual(1000);
    expect(d.pending).toBe(false);
  });

  it('fires once per isolated change, at once', () => {
    const clock = new FakeClock();
    const fires: number[] = [];
    const d = new Debouncer(clock, config, () => fires.push(clock.now()));
    d.poke();
    clock.advance(500);
    d.poke();
    clock.advance(500);
    expect(fires).toEqual([0, 500]);
  });

  it('a pair of changes fires twice: the first at once, the second quietMs after it', () => {
    const clock = new FakeClock();
    const fires: number[] = [];
    const d = new Debouncer(clock, config, () => fires.push(clock.now()));
    d.poke();
    clock.advance(30);
    d.poke();
    clock.advance(500);
    expect(fires).toEqual([0, 130]);
  });

  it('cancel drops pending changes and the timer', () => {
    const clock = new FakeClock();
    let fired = 0;
    const d = new Debouncer(clock, config, () => fired++);
    d.poke();
    d.cancel();
    clock.advance(5000);
    expect(fired).toBe(0);
    expect(clock.pendingTimers).toBe(0);
  });
});
