import type { Clock, TimerHandle } from '@coord/core';

/**
 * Coalesce bursts of changes into few reloads. A change after a quiet window (nothing changed for `quietMs`) is
 * applied at once: an operator's single change should not wait for a burst that is not coming. Changes that follow
 * it within `quietMs` are a burst: they fire once the changes have been quiet for `quietMs`, but never later than
 * `maxWaitMs` after the first of them, so a steady stream still gets applied. A burst so costs at most one apply
 * more than waiting for quiet would (the leading one), and an isolated change no wait at all.
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
  /** The first of them came after a quiet window: due at once. */
  readonly leading: boolean;
}

/**
 * Pure: the state after a change at `now`; `previousAt` is when the change before it arrived (applied or not),
 * undefined when there was none.
 */
export function noteChange(
  config: DebounceConfig,
  state: DebounceState | undefined,
  now: number,
  previousAt: number | undefined,
): DebounceState {
  if (state !== undefined) return { ...state, lastAt: now };
  const leading = previousAt === undefined || now - previousAt >= config.quietMs;
  return { firstAt: now, lastAt: now, leading };
}

/** Pure: when the pending changes are due. */
export function dueAt(config: DebounceConfig, state: DebounceState): number {
  if (state.leading) return state.firstAt;
  return Math.min(state.lastAt + config.quietMs, state.firstAt + config.maxWaitMs);
}

/** The clock-driven shell around {@link noteChange}/{@link dueAt}: calls `fire` when the pending changes are due. */
export class Debouncer {
  private state: DebounceState | undefined;
  private lastChangeAt: number | undefined;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly config: DebounceConfig,
    private readonly fire: () => void,
  ) {}

  /** Record a change and (re)arm the timer. */
  poke(): void {
    const now = this.clock.now();
    this.state = noteChange(this.config, this.state, now, this.lastChangeAt);
    this.lastChangeAt = now;
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
    const wait = Math.max(0, dueAt(this.config, this.state) - this.clock.now());
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.state = undefined;
      this.fire();
    }, wait);
  }
}
