/**
 * Time as a port. Every safety decision uses `now()` — a monotonic clock in milliseconds — so a wall-clock jump
 * (NTP step, operator `date -s`) cannot extend or shorten a lease. `wallNow()` is only for display.
 */
export interface Clock {
  /** Monotonic milliseconds (arbitrary origin). */
  now(): number;
  /** Wall-clock epoch milliseconds, for logs and status only. */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export interface TimerHandle {
  readonly id: number;
}

/** The process clock: `performance.now()` is monotonic. */
export function systemClock(): Clock {
  const timers = new Map<number, NodeJS.Timeout>();
  let next = 1;
  return {
    now: () => performance.now(),
    wallNow: () => Date.now(),
    setTimeout(fn, ms) {
      const id = next++;
      timers.set(
        id,
        setTimeout(
          () => {
            timers.delete(id);
            fn();
          },
          Math.max(0, ms),
        ),
      );
      return { id };
    },
    clearTimeout(handle) {
      const t = timers.get(handle.id);
      if (t !== undefined) clearTimeout(t);
      timers.delete(handle.id);
    },
  };
}

/** Resolves after `ms` on `clock` (a fake clock in tests). */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

/** A repeating timer on `clock`; `stop()` cancels it. The next run is armed after `fn` returns. */
export interface Repeating {
  stop(): void;
}

export function every(clock: Clock, ms: number, fn: () => void): Repeating {
  let handle: TimerHandle | null = null;
  let stopped = false;
  const arm = (): void => {
    handle = clock.setTimeout(() => {
      handle = null;
      if (stopped) return;
      fn();
      if (!stopped) arm();
    }, ms);
  };
  arm();
  return {
    stop() {
      stopped = true;
      if (handle !== null) clock.clearTimeout(handle);
      handle = null;
    },
  };
}

/**
 * Race `promise` against `ms` on `clock`: the promise's value, or `fallback` when the time runs out first (the
 * promise keeps running; its later rejection is swallowed).
 */
export async function within<T, F>(
  clock: Clock,
  ms: number,
  promise: Promise<T>,
  fallback: F,
): Promise<T | F> {
  let handle: TimerHandle | null = null;
  const timeout = new Promise<F>((resolve) => {
    handle = clock.setTimeout(() => resolve(fallback), ms);
  });
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    if (handle !== null) clock.clearTimeout(handle);
  }
}

/** A clock tests move by hand. Timers fire in deadline order during `advance`. */
export class FakeClock implements Clock {
  private t: number;
  private wallOffset: number;
  private seq = 1;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 0, wallStart = 1_700_000_000_000) {
    this.t = start;
    this.wallOffset = wallStart - start;
  }

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.t + this.wallOffset;
  }

  /** Jump the wall clock only (the monotonic clock is unaffected). */
  jumpWall(ms: number): void {
    this.wallOffset += ms;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.seq++;
    this.pending.set(id, { at: this.t + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    this.pending.delete(handle.id);
  }

  /** Move time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let nextId: number | undefined;
      let nextAt = Infinity;
      for (const [id, p] of this.pending) {
        if (p.at <= end && p.at < nextAt) {
          nextAt = p.at;
          nextId = id;
        }
      }
      if (nextId === undefined) break;
      const p = this.pending.get(nextId);
      this.pending.delete(nextId);
      this.t = Math.max(this.t, nextAt);
      p?.fn();
    }
    this.t = end;
  }

  /**
   * Move time forward without firing anything: a stalled event loop (GC pause, SIGSTOP). The overdue timers fire,
   * in deadline order, at the next `advance`.
   */
  stall(ms: number): void {
    this.t += ms;
  }

  get pendingTimers(): number {
    return this.pending.size;
  }
}
