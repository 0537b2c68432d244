import { errorMessage, sleep, type Clock, type Logger, type TimerHandle } from '@coord/core';
import type { EtcdBackend, KeepaliveStream } from './backend.js';

export interface SessionEvents {
  /**
   * A lease was granted: `ttlMs` is what etcd granted (it silently raises low TTLs); `revision` is the store
   * revision at the grant (a view synced at or after it knows everything that happened before this session).
   */
  up(e: {
    leaseId: string;
    ttlMs: number;
    sentAt: number;
    now: number;
    revision: number;
    /**
     * The lease this session lost before this one (unanswered keepalives), which etcd may still keep alive — a new
     * etcd leader extends every lease. The node revokes it once its VIP removals are done (docs/design.md,
     * "Leaving leadership"); undefined when the previous lease was left on purpose or there was none.
     */
    previousLeaseId?: string;
  }): void;
  /** A keepalive sent at `sentAt` was acknowledged (monotonic ms). */
  acked(e: { leaseId: string; sentAt: number; now: number }): void;
  /** The lease is gone or cannot be kept; a new one is being requested. */
  lost(e: { leaseId: string | null; reason: string; now: number }): void;
}

export interface SessionOptions {
  readonly etcd: EtcdBackend;
  readonly ttlSec: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly events: SessionEvents;
  /** Keepalive interval from the granted TTL. */
  readonly intervalMs: (ttlMs: number) => number;
  /**
   * Keep the lease while etcd does not answer, until etcd itself says it expired (`--etcd-outage hold`): etcd
   * extends every lease when it comes back, so a holder riding out an outage keeps its lease, its keys and its
   * epoch. Without, a lease unacknowledged for longer than its TTL is given up and a new one requested.
   */
  readonly keepUnanswered?: boolean;
}

/** Keepalives sent but not yet answered are matched to answers in order; this many at most. */
const MAX_PENDING = 64;
const STREAM_RETRY_MS = 100;

/**
 * One lease per node, kept alive by our own loop so we know the *send time* of every acknowledged keepalive —
 * the number self-fencing is built on. etcd3's own Lease reports a loss only after 2 × TTL (docs/design.md).
 * Every timer runs on the Clock port.
 */
export class EtcdSession {
  private leaseId: string | null = null;
  private ttlMs = 0;
  private stream: KeepaliveStream | null = null;
  private pending: number[] = [];
  private timer: TimerHandle | null = null;
  private closed = false;
  private generation = 0;
  private lastAckSentAt = 0;
  private grantRevision = 0;
  /** The lease lost to unanswered keepalives, handed to the next `up` (see SessionEvents.up). */
  private lostLease: string | null = null;

  constructor(private readonly opts: SessionOptions) {}

  get currentLeaseId(): string | null {
    return this.leaseId;
  }

  get grantedTtlMs(): number {
    return this.ttlMs;
  }

  /** The store revision when the current lease was granted (0 without a lease). */
  get startRevision(): number {
    return this.leaseId === null ? 0 : this.grantRevision;
  }

  /** Grant a lease and start keeping it alive; retried with backoff until it works or `close()`. */
  start(): void {
    void this.grantLoop(++this.generation);
  }

  /** Send one keepalive now (the election asks for a fresh ack before adding a VIP). */
  keepaliveNow(): void {
    this.sendKeepalive();
  }

  /**
   * Keep the lease, but open a fresh keepalive stream. Acks are matched to sends in order, so a reply that was
   * lost (a broken member, an asymmetric cut) would shift every later match onto an older send: safe (the
   * deadline only comes earlier) but every ack would look slow. After a fence the node starts matching afresh;
   * no ack of an earlier stream is ever matched to a send on the new one (that would make it look newer).
   *
   * `untilEtcdAnswers` (after a fence): no keepalive goes out until etcd has answered a time-to-live query for the
   * lease. A holder cut off from etcd's replies only would otherwise go on extending a lease it cannot use: the
   * new stream usually opens on a connection to another member that has not stalled yet, and every keepalive
   * that lands keeps a successor out for another TTL (docs/design.md, "Fencing"). The query extends nothing and,
   * like a keepalive, is answered only through etcd's leader, so an etcd election costs one round trip more; a
   * lease etcd no longer has is reported lost at once.
   */
  reopen(reason: string, opts: { untilEtcdAnswers?: boolean } = {}): void {
    if (this.closed || this.leaseId === null) return;
    const confirm = opts.untilEtcdAnswers === true;
    this.opts.logger.info('keepalive stream reopening', {
      reason,
      lease: this.leaseId,
      ...(confirm ? { firstAsking: 'lease time-to-live' } : {}),
    });
    this.teardownStream();
    // No ack in time: whatever the member in use is doing, ask another one (a dead or stalled member would hold
    // the time-to-live query and the new stream until their deadline).
    if (confirm) this.opts.etcd.avoid?.(`no keepalive ack in time (${reason})`);
    // A new generation: a stream still being opened (or reopened after an error) for the old one is closed when
    // it arrives, and its acks are never matched to sends on the new stream.
    const gen = ++this.generation;
    void (confirm ? this.confirmThenOpen(gen) : this.openStream(gen));
  }

  /**
   * Leave this lease and grant a new one (after a VIP removal failed; a fence keeps its lease: see reopen). With
   * `revoke`, the old lease is revoked (its keys vanish at once); without, it is only no longer kept alive and
   * expires on its own — what a node does when it cannot confirm its VIP is gone, so a successor's guard starts
   * at the expiry.
   */
  restart(reason: string, revoke: boolean): void {
    const old = this.leaseId;
    this.teardownStream();
    this.leaseId = null;
    // Left on purpose: revoked here, or (a VIP removal failed) to expire on its own, never revoked later.
    this.lostLease = null;
    if (old !== null && revoke) this.revokeQuietly(old);
    this.opts.logger.info('session restarting', { reason, oldLease: old, revoked: revoke && old !== null });
    if (!this.closed) void this.grantLoop(++this.generation);
  }

  /** Stop; with `revoke`, revoke the lease (deletes our keys at once), else let it expire. */
  async close(revoke = true): Promise<void> {
    this.closed = true;
    this.generation++;
    this.teardownStream();
    const id = this.leaseId;
    this.leaseId = null;
    if (revoke && id !== null) {
      try {
        await this.opts.etcd.revoke(id);
      } catch (e) {
        this.opts.logger.warn('lease revoke failed', { lease: id, error: errorMessage(e) });
      }
    }
  }

  private revokeQuietly(id: string): void {
    this.opts.etcd.revoke(id).catch((e: unknown) => {
      this.opts.logger.debug('stale lease revoke failed', { lease: id, error: errorMessage(e) });
    });
  }

  /**
   * The longest wait between two lease grants: one keepalive interval (250 ms at TTL 1 s), the rate a live session
   * talks to etcd anyway, and never more than the 1 s it always was (a long TTL's interval is longer). A 1 s cap
   * cost a whole backoff step after etcd came back: in a 30-minute soak (seed 125, quorum lost for 1.4 s) one node
   * got its lease 0.75 s after the others, and the group waited for it.
   */
  private grantRetryCapMs(): number {
    return Math.min(1000, Math.max(100, this.opts.intervalMs(this.opts.ttlSec * 1000)));
  }

  private async grantLoop(gen: number): Promise<void> {
    let backoff = 100;
    let failures = 0;
    while (!this.closed && gen === this.generation) {
      const sentAt = this.opts.clock.now();
      try {
        const res = await this.opts.etcd.grant(this.opts.ttlSec);
        if (this.closed || gen !== this.generation) {
          this.revokeQuietly(res.leaseId);
          return;
        }
        this.leaseId = res.leaseId;
        this.ttlMs = res.ttlSec * 1000;
        this.lastAckSentAt = sentAt;
        this.grantRevision = res.revision;
        if (res.ttlSec !== this.opts.ttlSec) {
          this.opts.logger.warn('etcd granted a different TTL', {
            asked: this.opts.ttlSec,
            granted: res.ttlSec,
          });
        }
        this.opts.logger.info('session up', {
          lease: res.leaseId,
          ttlMs: this.ttlMs,
          ...(failures > 0 ? { afterFailedGrants: failures } : {}),
        });
        const previous = this.lostLease;
        this.lostLease = null;
        this.opts.events.up({
          leaseId: res.leaseId,
          ttlMs: this.ttlMs,
          sentAt,
          now: this.opts.clock.now(),
          revision: res.revision,
          ...(previous === null ? {} : { previousLeaseId: previous }),
        });
        // A stream that fails to open is retried for this lease; it never leads to a second lease.
        void this.openStream(gen);
        return;
      } catch (e) {
        failures++;
        // One line when etcd goes away, then quiet retries: a cut-off node must not flood its log.
        const fields = { error: errorMessage(e), retryInMs: backoff };
        if (failures === 1) this.opts.logger.warn('lease grant failed', fields);
        else this.opts.logger.debug('lease grant failed', fields);
        await sleep(this.opts.clock, backoff);
        backoff = Math.min(backoff * 2, this.grantRetryCapMs());
      }
    }
  }

  private async openStream(gen: number): Promise<void> {
    let stream: KeepaliveStream;
    try {
      stream = await this.opts.etcd.keepalive({
        onAck: (leaseId, ttlSec) => this.onResponse(gen, leaseId, ttlSec),
        onError: (err) => this.onStreamError(gen, err),
      });
    } catch (e) {
      this.onStreamError(gen, e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (this.closed || gen !== this.generation) {
      stream.close();
      return;
    }
    // One stream at a time: acks are matched to the sends of the stream they came on.
    if (this.stream !== null) this.teardownStream();
    this.stream = stream;
    this.pending = [];
    this.sendKeepalive();
  }

  private async confirmThenOpen(gen: number): Promise<void> {
    const id = this.leaseId;
    const current = (): boolean => !this.closed && gen === this.generation && id === this.leaseId;
    this.armLossCheck(gen);
    while (id !== null && current()) {
      let ttlSec: number;
      try {
        ttlSec = await this.opts.etcd.timeToLive(id);
      } catch (e) {
        this.opts.logger.debug('lease time-to-live failed', { lease: id, error: errorMessage(e) });
        await sleep(this.opts.clock, STREAM_RETRY_MS);
        continue;
      }
      if (!current()) return;
      if (ttlSec < 0) this.lose(`lease ${id} expired in etcd`);
      else await this.openStream(gen);
      return;
    }
  }

  /**
   * While no stream is open (waiting for etcd to answer first), report the loss at the moment a keepalive would
   * have: no ack for longer than the TTL + 500 ms.
   */
  private armLossCheck(gen: number): void {
    if (this.opts.keepUnanswered === true) return;
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    const due = this.lastAckSentAt + this.ttlMs + 500 - this.opts.clock.now();
    this.timer = this.opts.clock.setTimeout(
      () => {
        this.timer = null;
        if (this.closed || gen !== this.generation || this.leaseId === null || this.stream !== null) return;
        if (!this.loseIfSilent()) this.armLossCheck(gen);
      },
      Math.max(1, due + 1),
    );
  }

  /**
   * No ack for longer than the TTL + 500 ms: the lease is gone in etcd by now. Report the loss (and start over
   * with a new lease) and return true; never with `keepUnanswered`.
   */
  private loseIfSilent(): boolean {
    const silent = this.opts.clock.now() - this.lastAckSentAt;
    if (this.opts.keepUnanswered === true || silent <= this.ttlMs + 500) return false;
    const reason = `no keepalive acknowledged for ${Math.round(silent)} ms`;
    this.opts.etcd.avoid?.(reason);
    this.lose(reason);
    return true;
  }

  private onResponse(gen: number, leaseId: string, ttlSec: number): void {
    if (gen !== this.generation || leaseId !== this.leaseId) return;
    const sentAt = this.pending.shift();
    const now = this.opts.clock.now();
    if (ttlSec <= 0) {
      this.lose(`lease ${leaseId} expired in etcd`);
      return;
    }
    if (sentAt === undefined) return;
    this.lastAckSentAt = Math.max(this.lastAckSentAt, sentAt);
    this.opts.events.acked({ leaseId, sentAt, now });
    // An answer to a keepalive sent more than a TTL ago: the stream lost replies while etcd was away (it stayed
    // open, its requests unanswered), so every later answer would be matched to an older send and the lease would
    // look about to expire however fresh it is. Match afresh on a new stream (`--etcd-outage hold` keeps its lease
    // through the outage and needs the first fresh ack to count).
    if (gen === this.generation && now - sentAt > this.ttlMs)
      this.reopen('answers were lost while etcd was away');
  }

  private onStreamError(gen: number, err: Error): void {
    if (gen !== this.generation || this.closed) return;
    this.opts.logger.warn('keepalive stream failed', { error: errorMessage(err) });
    this.teardownStream();
    // Keep the lease if it may still be alive: reopen the stream; the election fences on its own deadline.
    this.opts.clock.setTimeout(() => {
      if (gen !== this.generation || this.closed || this.leaseId === null) return;
      void this.openStream(gen);
    }, STREAM_RETRY_MS);
  }

  private sendKeepalive(): void {
    const id = this.leaseId;
    // No stream: nothing to send on, and the timer (if any) is the loss check of a reopen waiting for etcd.
    if (id === null || this.stream === null) return;
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
    if (this.loseIfSilent()) return;
    const now = this.opts.clock.now();
    // Bound the FIFO: responses that never came are not waited for forever.
    if (this.pending.length > MAX_PENDING) this.pending.shift();
    this.pending.push(now);
    try {
      this.stream.send(id);
    } catch (e) {
      this.onStreamError(this.generation, e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.timer = this.opts.clock.setTimeout(() => this.sendKeepalive(), this.opts.intervalMs(this.ttlMs));
  }

  private lose(reason: string): void {
    const id = this.leaseId;
    this.opts.logger.warn('session lost', { lease: id, reason });
    this.teardownStream();
    this.leaseId = null;
    if (id !== null) this.lostLease = id;
    this.opts.events.lost({ leaseId: id, reason, now: this.opts.clock.now() });
    if (!this.closed) void this.grantLoop(++this.generation);
  }

  private teardownStream(): void {
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
    const s = this.stream;
    this.stream = null;
    this.pending = [];
    s?.close();
  }
}
