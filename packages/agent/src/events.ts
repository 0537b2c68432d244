import { errorMessage, type Clock, type Logger } from '@coord/core';
import {
  encodeEvent,
  eventKeySuffix,
  type ClusterKeys,
  type EtcdBackend,
  type EventRecord,
} from '@coord/etcd';

/**
 * The cluster's history for `coord events`: each node writes its own transitions and VIP claims/releases under
 * `events/`. Retention is bounded by etcd itself: events are attached to a lease of `retentionMs` + one rotation
 * period, and the writer starts a new lease every rotation period, so an event lives between `retentionMs` and
 * `retentionMs` + `rotateMs` and nobody has to prune. Writes never block or fail anything: they are queued (at
 * most `maxQueued`, at most `maxPerMinute` per minute — a flapping node cannot flood etcd), written one at a time,
 * and dropped (counted, logged once) when etcd does not take them.
 */
export interface EventLogOptions {
  readonly etcd: EtcdBackend;
  readonly keys: ClusterKeys;
  readonly node: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly retentionMs?: number;
  readonly rotateMs?: number;
  readonly maxPerMinute?: number;
  readonly maxQueued?: number;
}

export const DEFAULT_EVENT_RETENTION_MS = 7 * 24 * 3600_000;

export class EventLog {
  private readonly queue: EventRecord[] = [];
  private writing = false;
  private lease: { id: string; at: number } | undefined;
  private seq = 0;
  private window = { start: 0, count: 0 };
  private dropped = 0;
  private warned = false;
  private stopped = false;

  constructor(private readonly opts: EventLogOptions) {}

  /** Queue one event (the node it happened on and the time are filled in). */
  record(e: Omit<EventRecord, 'at' | 'node'>): void {
    if (this.stopped) return;
    const now = this.opts.clock.now();
    if (now - this.window.start >= 60_000) this.window = { start: now, count: 0 };
    if (
      this.window.count >= (this.opts.maxPerMinute ?? 120) ||
      this.queue.length >= (this.opts.maxQueued ?? 100)
    ) {
      this.dropped++;
      return;
    }
    this.window.count++;
    this.queue.push({ ...e, at: this.opts.clock.wallNow(), node: this.opts.node });
    void this.flush();
  }

  /** Events not written (rate limit, full queue, etcd away) since the start. */
  get droppedCount(): number {
    return this.dropped;
  }

  /** Wait (at most `ms`) for the queued events to be written; later ones are dropped. */
  async stop(ms: number): Promise<void> {
    const deadline = this.opts.clock.now() + ms;
    while ((this.writing || this.queue.length > 0) && this.opts.clock.now() < deadline)
      await new Promise<void>((r) => this.opts.clock.setTimeout(r, 10));
    this.stopped = true;
    this.queue.length = 0;
  }

  private async flush(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      for (let e = this.queue.shift(); e !== undefined && !this.stopped; e = this.queue.shift()) {
        try {
          const lease = await this.currentLease();
          await this.opts.etcd.put(
            `${this.opts.keys.events}${eventKeySuffix(e, this.seq++)}`,
            encodeEvent(e),
            lease,
          );
        } catch (err) {
          this.dropped++;
          this.lease = undefined;
          if (!this.warned) {
            this.warned = true;
            this.opts.logger.warn(
              'an event for coord events was not written (etcd); later ones may be lost too',
              {
                error: errorMessage(err),
              },
            );
          }
        }
      }
    } finally {
      this.writing = false;
    }
  }

  private async currentLease(): Promise<string> {
    const rotateMs = this.opts.rotateMs ?? 3600_000;
    const now = this.opts.clock.now();
    if (this.lease !== undefined && now - this.lease.at < rotateMs) return this.lease.id;
    const ttlSec = Math.ceil(((this.opts.retentionMs ?? DEFAULT_EVENT_RETENTION_MS) + rotateMs) / 1000);
    const granted = await this.opts.etcd.grant(ttlSec);
    this.lease = { id: granted.leaseId, at: now };
    return granted.leaseId;
  }
}
