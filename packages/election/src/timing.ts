/**
 * The timing rules that keep one holder per VIP. All times are milliseconds on the node's own monotonic clock.
 *
 * Facts used (LESSONS.md): etcd extends a lease when it *receives* a keepalive, so a keepalive sent at `s` and
 * acknowledged keeps the lease alive at least until `s + TTL`; etcd expires a silent lease at TTL + 0-500 ms; the
 * kernel removes an address whose `valid_lft` ran out within ~0.2 s after the whole second.
 */
export interface TimingConfig {
  /** TTL etcd granted (not the one asked for). */
  readonly ttlMs: number;
  /** Safety margin subtracted from the fencing deadline (clock-rate differences, scheduling). */
  readonly marginMs: number;
  /** An ack must arrive within this long of its send for it to refresh the kernel lifetime. */
  readonly ackWindowMs: number;
  /** How late past `valid_lft` the kernel may remove an expired address (measured: < 200 ms). */
  readonly kernelSlackMs: number;
}

/** Default margins (see README "Safety"). */
export function defaultTiming(ttlMs: number): TimingConfig {
  return { ttlMs, marginMs: Math.max(50, Math.round(ttlMs * 0.1)), ackWindowMs: 25, kernelSlackMs: 250 };
}

/**
 * The holder's self-fencing deadline: it may hold the VIP until `sentAt + TTL − margin`, where `sentAt` is the send
 * time of its last acknowledged keepalive. Nobody else can be elected before `sentAt + TTL`.
 */
export function fenceDeadline(t: TimingConfig, lastAckedSentAt: number): number {
  return lastAckedSentAt + t.ttlMs - t.marginMs;
}

/**
 * `valid_lft`/`preferred_lft` for the VIP: whole seconds (the kernel's unit), at least 1 and at most the TTL, so a
 * frozen or killed agent loses the address by itself.
 */
export function kernelLifetimeSec(t: TimingConfig): number {
  return Math.max(1, Math.floor(t.ttlMs / 1000));
}

/**
 * How long a new holder waits before adding the VIP after the previous holder's lease *expired* (rather than being
 * released cleanly). The previous holder only added or refreshed its address within `ackWindowMs` of a keepalive
 * sent at `s`, so the kernel removed it by `s + ackWindow + lifetime + slack`, while etcd could not expire the lease
 * before `s + TTL`. The difference is the guard; with TTL 1 s it is ~0.3 s.
 */
export function takeoverGuardMs(t: TimingConfig): number {
  return Math.max(0, t.ackWindowMs + kernelLifetimeSec(t) * 1000 + t.kernelSlackMs - t.ttlMs);
}

/** Keepalive cadence: four per TTL, so one lost keepalive never costs the lease. */
export function keepaliveIntervalMs(t: TimingConfig): number {
  return Math.max(50, Math.floor(t.ttlMs / 4));
}
