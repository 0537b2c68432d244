import { FakeClock } from '@coord/core';

/** Let every pending promise continuation run (a few macrotask turns). */
export async function flush(): Promise<void> {
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
}

/** Move `clock` forward `ms` in `step` ms steps, letting promises run after each step. */
export async function elapse(clock: FakeClock, ms: number, step = 5): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await flush();
  }
}

/** Poll `fn` while moving the clock, until it returns true or `ms` have passed on the clock. */
export async function until(clock: FakeClock, fn: () => boolean, ms = 10_000, step = 5): Promise<number> {
  const start = clock.now();
  while (!fn()) {
    if (clock.now() - start > ms) throw new Error(`condition not met within ${ms} ms of fake time`);
    clock.advance(step);
    await flush();
  }
  return clock.now() - start;
}
