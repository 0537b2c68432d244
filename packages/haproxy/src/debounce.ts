import type { Clock, TimerHandle } from '@coord/core';

/**
 * Coalesce bursts of changes into few reloads: fire once the changes have been quiet for `quietMs`, but never
 * later than `maxWaitMs` after the first unapplied change, so a steady stream still gets applied.
 */
export interface DebounceConfig {
  quietMs: number;
  maxWaitMs: number;
}

export const DEFAULT_DEBOUNCE: DebounceConfig = { quietMs: 50, maxWaitMs: 1000 };

/** Unapplied changes: when the first and the last arrived (monotonic ms). */
export interface DebounceState {
  readonly firstAt: number;
  readonly lastAt: number;
}

/** Pure: the state after a change at `now`. */
export function noteChange(state: DebounceState | undefined, now: number): DebounceState {
  return state === undefined ? { firstAt: now, lastAt: now } : { firstAt: state.firstAt, lastAt: now };
}

/** Pure: when the pending changes are due. */
export function dueAt(config: DebounceConfig, state: DebounceState): number {
  return Math.min(state.lastAt + config.quietMs, state.firstAt + config.maxWaitMs);
}

/** The clock-driven shell around {@link noteChange}/{@link dueAt}: calls `fire` when the pending changes are due. */
export class Debouncer {
  private state: DebounceState | undefined;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly config: DebounceConfig,
    private readonly fire: () => void,
  ) {}

  /** Record a change and (re)arm the timer. */
  poke(): void {
    this.state = noteChange(this.state, this.clock.now());
    this.arm();
  }

  get pending(): boolean {
    return this.state !== undefined;
  }

  cancel(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.state = undefined;
  }

  private arm(): void {
    if (this.state === undefined) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    const wait = dueAt(this.config, this.state) - this.clock.now();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.state = undefined;
      this.fire();
    }, wait);
  }
}
