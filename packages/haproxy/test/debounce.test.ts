import { FakeClock } from '@coord/core';
import { describe, expect, it } from 'vitest';
import { Debouncer, dueAt, noteChange } from '../src/index.js';

const config = { quietMs: 100, maxWaitMs: 1000 };

describe('debounce rules', () => {
  it('waits for a quiet window after the last change', () => {
    let s = noteChange(undefined, 0);
    s = noteChange(s, 50);
    expect(dueAt(config, s)).toBe(150);
  });
  it('never waits longer than maxWait after the first change', () => {
    let s = noteChange(undefined, 0);
    s = noteChange(s, 990);
    expect(dueAt(config, s)).toBe(1000);
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
    // A change every 20 ms is never quiet for 100 ms: only max-wait fires, once per second, plus the tail.
    expect(fires.length).toBeGreaterThanOrEqual(10);
    expect(fires.length).toBeLessThanOrEqual(11);
    for (let i = 1; i < fires.length; i++)
      expect((fires[i] ?? 0) - (fires[i - 1] ?? 0)).toBeLessThanOrEqual(1000);
    expect(d.pending).toBe(false);
  });

  it('fires once per isolated change, quietMs after it', () => {
    const clock = new FakeClock();
    const fires: number[] = [];
    const d = new Debouncer(clock, config, () => fires.push(clock.now()));
    d.poke();
    clock.advance(500);
    d.poke();
    clock.advance(500);
    expect(fires).toEqual([100, 600]);
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
