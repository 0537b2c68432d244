import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { errorMessage, type Clock, type Logger } from '@coord/core';

/** One key as the view holds it. */
export interface Entry {
  readonly key: string;
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly lease: string;
}

/** A change batch: everything that happened at one or more revisions, applied atomically to the view. */
export interface ViewChange {
  readonly revision: number;
  /** Keys put or deleted in this batch (a resync reports every key that differs). */
  readonly puts: readonly Entry[];
  readonly deletes: readonly Entry[];
  /** True when the batch comes from a full re-read (start, reconnect, compaction). */
  readonly resync: boolean;
}

export interface ViewHealth {
  readonly connected: boolean;
  readonly revision: number;
  /** Monotonic ms of the last response from etcd on the watch (or of the last read). */
  readonly lastHeardAt: number;
  readonly resyncs: number;
}

export interface PrefixViewOptions {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onChange: (change: ViewChange, view: ReadonlyMap<string, Entry>) => void;
}

function toEntry(kv: IKeyValue): Entry {
  return {
    key: kv.key.toString(),
    value: kv.value,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease),
  };
}

/**
 * A local mirror of every key under a prefix: read everything at revision R, watch from R + 1, and on a watch
 * error, a reconnect or a compaction, re-read and diff (confd #628, vip-manager #394: watches that die silently).
 */
export class PrefixView {
  private readonly entries = new Map<string, Entry>();
  private watcher: Watcher | null = null;
  private revision = 0;
  private connected = false;
  private lastHeardAt = 0;
  private resyncs = 0;
  private closed = false;
  private syncing = false;
  private resyncQueued = false;

  constructor(private readonly opts: PrefixViewOptions) {}

  get health(): ViewHealth {
    return {
      connected: this.connected,
      revision: this.revision,
      lastHeardAt: this.lastHeardAt,
      resyncs: this.resyncs,
    };
  }

  get snapshot(): ReadonlyMap<string, Entry> {
    return this.entries;
  }

  /** Resolves after the first successful read. */
  async start(): Promise<void> {
    await this.resync();
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.watcher;
    this.watcher = null;
    if (w !== null) await w.cancel().catch(() => undefined);
  }

  /** Force a full re-read (e.g. after the node healed from a partition). */
  requestResync(reason: string): void {
    if (this.closed) return;
    if (this.syncing) {
      this.resyncQueued = true;
      return;
    }
    this.opts.logger.info('view resync', { prefix: this.opts.prefix, reason });
    void this.resync().catch(() => undefined);
  }

  private async resync(): Promise<void> {
    this.syncing = true;
    let backoff = 100;
    try {
      for (;;) {
        if (this.closed) return;
        try {
          await this.readAndWatch();
          return;
        } catch (e) {
          this.connected = false;
          this.opts.logger.warn('view read failed', {
            prefix: this.opts.prefix,
            error: errorMessage(e),
            retryInMs: backoff,
          });
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(backoff * 2, 1000);
        }
      }
    } finally {
      this.syncing = false;
      if (this.resyncQueued && !this.closed) {
        this.resyncQueued = false;
        this.requestResync('queued');
      }
    }
  }

  private async readAndWatch(): Promise<void> {
    const old = this.watcher;
    this.watcher = null;
    if (old !== null) void old.cancel().catch(() => undefined);
    const res = await this.opts.client.getAll().prefix(this.opts.prefix).exec();
    const revision = Number(res.header.revision);
    const fresh = new Map(res.kvs.map((kv) => [kv.key.toString(), toEntry(kv)] as const));
    const puts: Entry[] = [];
    const deletes: Entry[] = [];
    for (const [k, e] of fresh) {
      const before = this.entries.get(k);
      if (before === undefined || before.modRevision !== e.modRevision) puts.push(e);
    }
    for (const [k, e] of this.entries) if (!fresh.has(k)) deletes.push(e);
    this.entries.clear();
    for (const [k, e] of fresh) this.entries.set(k, e);
    this.revision = revision;
    this.lastHeardAt = this.opts.clock.now();
    this.resyncs++;
    this.notify({ revision, puts, deletes, resync: true });

    const watcher = await this.opts.client
      .watch()
      .prefix(this.opts.prefix)
      .startRevision(String(revision + 1))
      .create();
    if (this.closed) {
      await watcher.cancel();
      return;
    }
    this.watcher = watcher;
    this.connected = true;
    watcher.on('data', (r: IWatchResponse) => this.onData(watcher, r));
    watcher.on('disconnected', () => {
      if (this.watcher !== watcher) return;
      this.connected = false;
      this.opts.logger.warn('watch disconnected', { prefix: this.opts.prefix });
    });
    watcher.on('connected', () => {
      if (this.watcher !== watcher) return;
      // etcd3 resumes the watch itself; re-read anyway so nothing missed during the gap is trusted to it.
      if (!this.connected) this.requestResync('watch reconnected');
    });
    watcher.on('error', (err: Error) => {
      if (this.watcher !== watcher) return;
      this.connected = false;
      this.requestResync(`watch error: ${errorMessage(err)}`);
    });
  }

  /** A consumer's bug (or a value it chokes on) must not kill the watch or the process. */
  private notify(change: ViewChange): void {
    try {
      this.opts.onChange(change, this.entries);
    } catch (e) {
      this.opts.logger.error('view consumer failed', { prefix: this.opts.prefix, error: errorMessage(e) });
    }
  }

  private onData(watcher: Watcher, r: IWatchResponse): void {
    if (this.watcher !== watcher) return;
    this.lastHeardAt = this.opts.clock.now();
    this.connected = true;
    if (r.events.length === 0) return;
    const puts: Entry[] = [];
    const deletes: Entry[] = [];
    for (const ev of r.events) {
      const entry = toEntry(ev.kv);
      if (ev.type === 'Delete') {
        const before = this.entries.get(entry.key);
        this.entries.delete(entry.key);
        deletes.push(before ?? entry);
      } else {
        this.entries.set(entry.key, entry);
        puts.push(entry);
      }
      this.revision = Math.max(this.revision, entry.modRevision);
    }
    this.revision = Math.max(this.revision, Number(r.header.revision));
    this.notify({ revision: this.revision, puts, deletes, resync: false });
  }
}
