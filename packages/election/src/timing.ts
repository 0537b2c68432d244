/**
 * The timing rules that keep one holder per VIP. All times are milliseconds on the node's own monotonic clock.
 *
 * Facts used (docs/design.md, "Measured facts"): etcd extends a lease when it *receives* a keepalive, so a
 * keepalive sent at `s` and acknowledged keeps the lease alive at least until `s + TTL`; etcd expires a silent
 * lease at TTL + 0-500 ms; the kernel usually removes an address whose `valid_lft` ran out 12-45 ms after the
 * whole second, but that is a measurement, not a bound — its lifetime worker can run much later. So the guard
 * below is only how long a successor waits *at least*; it then also waits until nobody answers for the VIP on
 * the wire (PROBE_* below, docs/design.md "Takeover after an unclean vacancy").
 */
export interface TimingConfig {
  /** TTL etcd granted (not the one asked for). */
  readonly ttlMs: number;
  /** Safety margin subtracted from the fencing deadline (clock-rate differences, scheduling). */
  readonly marginMs: number;
  /** An ack must arrive within this long of its send for it to refresh the kernel lifetime. */
  readonly ackWindowMs: number;
  /** `valid_lft` of the VIP in whole seconds. */
  readonly lifetimeSec: number;
}

/** Acks slower than this do not refresh the lifetime; wide enough for a loaded machine's etcd round trips. */
const ACK_WINDOW_MS = 125;

/**
 * A VIP add or refresh is sent only while at least this much of its ack window is left: the kernel's reply must
 * come back inside the window (a later one fences the holder), and on a busy machine reading that reply can take
 * tens of milliseconds although the kernel itself answers in one. With less left, the holder asks for a fresh
 * keepalive first (one etcd round trip) instead of racing the window.
 */
export const HOST_CHANGE_MIN_LEFT_MS = 50;

/**
 * Whether an ack of a keepalive sent at `sentAt` still leaves room, at `now`, for a VIP add or refresh to be
 * answered within the ack window (see HOST_CHANGE_MIN_LEFT_MS).
 */
export function ackUsable(t: TimingConfig, sentAt: number, now: number): boolean {
  return sentAt + t.ackWindowMs - now >= HOST_CHANGE_MIN_LEFT_MS;
}

/**
 * Default timing for a granted TTL (see README "How it stays safe"): lifetime = the TTL in whole seconds, so the
 * kernel never drops the VIP before the holder's own fencing deadline; ack window 125 ms; takeover guard 125 ms.
 */
export function defaultTiming(ttlMs: number): TimingConfig {
  return {
    ttlMs,
    marginMs: Math.max(50, Math.round(ttlMs * 0.1)),
    ackWindowMs: ACK_WINDOW_MS,
    lifetimeSec: Math.max(1, Math.floor(ttlMs / 1000)),
  };
}

/**
 * The holder's self-fencing deadline: it may hold the VIP until `sentAt + TTL − margin`, where `sentAt` is the send
 * time of its last acknowledged keepalive. Nobody else can be elected before `sentAt + TTL`.
 */
export function fenceDeadline(t: TimingConfig, lastAckedSentAt: number): number {
  return lastAckedSentAt + t.ttlMs - t.marginMs;
}

/**
 * `valid_lft`/`preferred_lft` for the VIP: whole seconds (the kernel's unit), so a frozen or killed agent loses the
 * address by itself — but never before the holder's own deadline would have fenced it.
 */
export function kernelLifetimeSec(t: TimingConfig): number {
  return t.lifetimeSec;
}

/**
 * The least a new holder waits before adding the VIP after the previous holder's lease *expired* (rather than being
 * released cleanly). The previous holder only added or refreshed its address within `ackWindowMs` of a keepalive
 * sent at `s`, so its `valid_lft` ran out by `s + ackWindow + lifetime`, while etcd could not expire the lease
 * before `s + TTL`: the difference is the guard, 125 ms with the default timing. When the kernel actually deletes
 * an expired address is not bounded (docs/design.md, "Kernel"), so the guard is not the whole wait: the successor
 * also waits until nobody answers for the VIP on the wire (PROBE_* below).
 */
export function takeoverGuardMs(t: TimingConfig): number {
  return Math.max(0, t.ackWindowMs + kernelLifetimeSec(t) * 1000 - t.ttlMs);
}

/** After an unclean vacancy the successor probes the VIP on the wire this often (RFC 5227 probe / DAD NS). */
export const PROBE_INTERVAL_MS = 25;
/** …and claims only once nobody has answered for this long (three probes). */
export const PROBE_QUIET_MS = 75;
/**
 * A leader that wants to add its VIP but gets this many acks in a row slower than the ack window cannot claim
 * safely: it hands the group over (and its node stops being a candidate until acks are prompt again).
 */
export const MAX_SLOW_ACKS = 4;

/**
 * A holder whose deadline passed removes its VIP at once but keeps its key and lease for this long, asking for a
 * prompt ack: one proves the lease alive (etcd cannot renew a lease it has expired), so the VIP goes back through
 * the same fresh-ack rule as any claim. An etcd raft election (0.5–1 s here) outlasts the 0.9 s deadline of TTL
 * 1 s, and the new etcd leader extends every lease, so the holder gets its VIP back instead of handing the group
 * to a node that must wait out a guard (docs/design.md, "Fencing"). Without a prompt ack by then it resigns, so
 * a healthy node can take over (under an asymmetric cut the resign may not arrive either: see the same section).
 */
export function fenceGraceMs(t: TimingConfig): number {
  return Math.round(t.ttlMs / 2);
}

/** A second fence this soon after the last one hands the group over at once: a holder must not flap the VIP. */
export function fenceRepeatMs(t: TimingConfig): number {
  return 3 * t.ttlMs;
}

/** Keepalive cadence: four per TTL, so one lost keepalive never costs the lease. */
export function keepaliveIntervalMs(t: TimingConfig): number {
  return Math.max(50, Math.floor(t.ttlMs / 4));
}
