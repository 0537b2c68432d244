/**
 * A small seeded PRNG for the soak's fault schedule. Math.random cannot be seeded, and the whole point of a
 * printed seed is that the same seed replays the same schedule on any machine and Node version: mulberry32 is
 * 32-bit integer arithmetic only (Math.imul, shifts), so its output is identical everywhere.
 */

/** Draws in [0, 1) and the few shapes a schedule needs. Every draw advances the state by exactly one step. */
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max] (both inclusive). */
  int(min: number, max: number): number;
  /** A float in [min, max). */
  float(min: number, max: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** One element, uniformly. */
  pick<T>(items: readonly T[]): T;
  /** One element with probability proportional to its weight. */
  weighted<T>(items: readonly (readonly [T, number])[]): T;
}

/** Parse a `--seed`: a whole number 0 … 2³² − 1 (decimal or 0x hex). */
export function parseSeed(text: string): number {
  const n = /^0x[0-9a-f]+$/i.test(text)
    ? Number.parseInt(text, 16)
    : /^[0-9]+$/.test(text)
      ? Number(text)
      : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new RangeError(`--seed must be a whole number 0..4294967295, got "${text}"`);
  return n;
}

/** A fresh seed for a run that was not given one (printed, so the run can be replayed). */
export function randomSeed(random: () => number = Math.random): number {
  return Math.floor(random() * 0x1_0000_0000) >>> 0;
}

/** mulberry32 (Tommy Ettinger's public-domain generator): period 2³², good enough to pick faults. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
  const rng: Rng = {
    next,
    int(min, max) {
      if (!Number.isInteger(min) || !Number.isInteger(max) || max < min)
        throw new RangeError(`int(${min}, ${max}): need whole numbers with min <= max`);
      return min + Math.floor(next() * (max - min + 1));
    },
    float: (min, max) => min + next() * (max - min),
    chance: (p) => next() < p,
    pick(items) {
      if (items.length === 0) throw new RangeError('pick from an empty list');
      return items[Math.floor(next() * items.length)] as (typeof items)[number];
    },
    weighted(items) {
      const total = items.reduce((s, [, w]) => s + Math.max(0, w), 0);
      if (total <= 0) throw new RangeError('weighted pick needs a positive total weight');
      let x = next() * total;
      for (const [item, w] of items) {
        x -= Math.max(0, w);
        if (x < 0) return item;
      }
      return (items.at(-1) as readonly [(typeof items)[number][0], number])[0];
    },
  };
  return rng;
}
