import type { Etcd3 } from 'etcd3';
import { errorMessage, type Clock, type Logger, type TimerHandle } from '@coord/core';
import { etcdError } from './client.js';

export interface SessionEvents {
  /** A lease was granted: `ttlMs` is what etcd granted (it silently raises low TTLs). */
  up(e: { leaseId: string; ttlMs: number; sentAt: number; now: number }): void;
  /** A keepalive sent at `sentAt` was acknowledged (monotonic ms). */
  acked(e: { leaseId: string; sentAt: number; now: number }): void;
  /** The lease is gone or cannot be kept; a new one is being requested. */
  lost(e: { leaseId: string | null; reason: string; now: number }): void;
}

export interface SessionOptions {
  readonly client: Etcd3;
  readonly ttlSec: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly events: SessionEvents;
  /** Keepalive interval from the granted TTL. */
  readonly intervalMs: (ttlMs: number) => number;
}

interface KeepaliveStream {
  write(req: { ID: string }): unknown;
  on(event: string, fn: (...args: never[]) => void): unknown;
  end(): unknown;
  removeAllListeners(): unknown;
}

/**
 * One lease per node, kept alive by our own loop so we know the *send time* of every acknowledged keepalive —
 * the number self-fencing is built on. etcd3's Lease only reports loss after 2 × TTL (LESSONS.md).
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

  constructor(private readonly opts: SessionOptions) {}

  get currentLeaseId(): string | null {
    return this.leaseId;
  }

  get grantedTtlMs(): number {
    return this.ttlMs;
  }

  /** Grant a lease and start keeping it alive; retried with backoff until it works or `close()`. */
  start(): void {
    void this.grantLoop(++this.generation);
  }

  /** Send one keepalive now (the election asks for a fresh ack before adding a VIP). */
  keepaliveNow(): void {
    this.sendKeepalive();
  }

  /** Drop this lease (best-effort revoke) and grant a new one: a fenced node never resumes silently. */
  restart(reason: string): void {
    const old = this.leaseId;
    this.teardownStream();
    this.leaseId = null;
    if (old !== null) this.revokeQuietly(old);
    this.opts.logger.info('session restarting', { reason, oldLease: old });
    if (!this.closed) void this.grantLoop(++this.generation);
  }

  /** Revoke the lease (deletes our keys at once) and stop. */
  async close(revoke = true): Promise<void> {
    this.closed = true;
    this.generation++;
    this.teardownStream();
    const id = this.leaseId;
    this.leaseId = null;
    if (revoke && id !== null) {
      try {
        await this.opts.client.leaseClient.leaseRevoke({ ID: id });
      } catch (e) {
        this.opts.logger.warn('lease revoke failed', { lease: id, error: errorMessage(e) });
      }
    }
  }

  private revokeQuietly(id: string): void {
    this.opts.client.leaseClient.leaseRevoke({ ID: id }).catch((e: unknown) => {
      this.opts.logger.debug('stale lease revoke failed', { lease: id, error: errorMessage(e) });
    });
  }

  private async grantLoop(gen: number): Promise<void> {
    let backoff = 100;
    while (!this.closed && gen === this.generation) {
      const sentAt = this.opts.clock.now();
      try {
        const res = await this.opts.client.leaseClient.leaseGrant({ TTL: this.opts.ttlSec });
        if (this.closed || gen !== this.generation) {
          this.revokeQuietly(res.ID);
          return;
        }
        this.leaseId = res.ID;
        this.ttlMs = Number(res.TTL) * 1000;
        this.lastAckSentAt = sentAt;
        if (Number(res.TTL) !== this.opts.ttlSec) {
          this.opts.logger.warn('etcd granted a different TTL', {
            asked: this.opts.ttlSec,
            granted: Number(res.TTL),
          });
        }
        this.opts.logger.info('session up', { lease: res.ID, ttlMs: this.ttlMs });
        this.opts.events.up({ leaseId: res.ID, ttlMs: this.ttlMs, sentAt, now: this.opts.clock.now() });
        // A stream that fails to open is retried for this lease; it never leads to a second lease.
        this.openStream(gen).catch((e: unknown) =>
          this.onStreamError(gen, e instanceof Error ? e : new Error(String(e))),
        );
        return;
      } catch (e) {
        this.opts.logger.warn('lease grant failed', {
          error: etcdError('lease grant', e).message,
          retryInMs: backoff,
        });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  private async openStream(gen: number): Promise<void> {
    const stream = (await this.opts.client.leaseClient.leaseKeepAlive()) as unknown as KeepaliveStream;
    if (this.closed || gen !== this.generation) {
      stream.end();
      return;
    }
    this.stream = stream;
    this.pending = [];
    stream.on('data', (res: { ID: string; TTL: string }) => this.onResponse(gen, res));
    stream.on('error', (err: Error) => this.onStreamError(gen, err));
    stream.on('end', () => this.onStreamError(gen, new Error('keepalive stream ended')));
    this.sendKeepalive();
  }

  private onResponse(gen: number, res: { ID: string; TTL: string }): void {
    if (gen !== this.generation || res.ID !== this.leaseId) return;
    const sentAt = this.pending.shift();
    const now = this.opts.clock.now();
    if (res.TTL === '0' || Number(res.TTL) <= 0) {
      this.lose(`lease ${res.ID} expired in etcd`);
      return;
    }
    if (sentAt === undefined) return;
    this.lastAckSentAt = Math.max(this.lastAckSentAt, sentAt);
    this.opts.events.acked({ leaseId: res.ID, sentAt, now });
  }

  private onStreamError(gen: number, err: Error): void {
    if (gen !== this.generation || this.closed) return;
    this.opts.logger.warn('keepalive stream failed', { error: errorMessage(err) });
    this.teardownStream();
    // Keep the lease if it may still be alive: reopen the stream; the election fences on its own deadline.
    setTimeout(() => {
      if (gen !== this.generation || this.closed || this.leaseId === null) return;
      this.openStream(gen).catch((e: unknown) =>
        this.onStreamError(gen, e instanceof Error ? e : new Error(String(e))),
      );
    }, 100);
  }

  private sendKeepalive(): void {
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
    const id = this.leaseId;
    if (id === null || this.stream === null) return;
    const now = this.opts.clock.now();
    // No ack for longer than the TTL: the lease is gone in etcd by now. Start over with a new one.
    if (now - this.lastAckSentAt > this.ttlMs + 500) {
      this.lose(`no keepalive acknowledged for ${Math.round(now - this.lastAckSentAt)} ms`);
      return;
    }
    // Bound the FIFO: responses that never came are not waited for forever.
    if (this.pending.length > 64) this.pending.shift();
    this.pending.push(now);
    try {
      this.stream.write({ ID: id });
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
    this.opts.events.lost({ leaseId: id, reason, now: this.opts.clock.now() });
    if (!this.closed) void this.grantLoop(++this.generation);
  }

  private teardownStream(): void {
    if (this.timer !== null) this.opts.clock.clearTimeout(this.timer);
    this.timer = null;
    const s = this.stream;
    this.stream = null;
    this.pending = [];
    if (s !== null) {
      s.removeAllListeners();
      s.on('error', () => {});
      try {
        s.end();
      } catch {
        // already closed
      }
    }
  }
}
