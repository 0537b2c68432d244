import { errorMessage, sleep, type Clock, type Logger } from '@coord/core';
import type { EtcdBackend, Entry, WatchHandle } from './backend.js';

export type { Entry } from './backend.js';

/** A change batch: everything that happened at one or more revisions, applied atomically to the view. */
export interface ViewChange {
  readonly revision: number;
  /** Keys put or deleted in this batch (a resync reports every key that differs). */
  readonly puts: readonly Entry[];
  /** Deleted keys, each with the entry the view held for it (its value and create revision). */
  readonly deletes: readonly Entry[];
  /** True when the batch comes from a full re-read (start, reconnect, compaction). */
  readonly resync: boolean;
}

export interface ViewHealth {
  /** The watch is established and has not reported a disconnect since. */
  readonly connected: boolean;
  /** The revision the view is complete at. */
  readonly revision: number;
  /** Monotonic ms of the last response from etcd on the watch (or of the last read). */
  readonly lastHeardAt: number;
  readonly resyncs: number;
}

export interface PrefixViewOptions {
  readonly etcd: EtcdBackend;
  readonly prefix: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onChange: (change: ViewChange, view: ReadonlyMap<string, Entry>) => void;
  /** Where etcd is, for the one "waiting for etcd at …" line (e.g. the endpoints). */
  readonly target?: string;
  /** Called whenever `connected` changes (a node's candidacy depends on it). */
  readonly onHealth?: (health: ViewHealth) => void;
}

/**
 * A local mirror of every key under a prefix: read everything at revision R, watch from R + 1, and on a watch
 * error, a reconnect or a compaction, re-read and diff (confd #628, vip-manager #394: watches that die silently).
 * Every timer runs on the Clock port.
 */
export class PrefixView {
  private readonly entries = new Map<string, Entry>();
  private watch: WatchHandle | null = null;
  /** Identity of the current watch: callbacks of an older one are ignored. */
  private watchGen = 0;
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
    this.watchGen++;
    const w = this.watch;
    this.watch = null;
    if (w !== null) await w.cancel();
  }

  /** Force a full re-read (e.g. after the node's session came back from a partition). */
  requestResync(reason: string): void {
    if (this.closed) return;
    if (this.syncing) {
      this.resyncQueued = true;
      return;
    }
    this.opts.logger.info('view resync', { prefix: this.opts.prefix, reason });
    void this.resync();
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.opts.onHealth?.(this.health);
  }

  private async resync(): Promise<void> {
    this.syncing = true;
    let backoff = 100;
    let failures = 0;
    try {
      for (;;) {
        if (this.closed) return;
        try {
          await this.readAndWatch();
          if (failures > 0)
            this.opts.logger.info('connected to etcd', {
              at: this.opts.target ?? 'etcd',
              prefix: this.opts.prefix,
              failures,
            });
          return;
        } catch (e) {
          this.setConnected(false);
          failures++;
          // One line when etcd cannot be read (then quiet retries), and one when it can again.
          const fields = {
            at: this.opts.target ?? 'etcd',
            reason: errorMessage(e),
            prefix: this.opts.prefix,
          };
          if (failures === 1) this.opts.logger.warn('waiting for etcd', fields);
          else this.opts.logger.debug('still waiting for etcd', { ...fields, retryInMs: backoff });
          await sleep(this.opts.clock, backoff);
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
    const gen = ++this.watchGen;
    const old = this.watch;
    this.watch = null;
    this.setConnected(false);
    if (old !== null) void old.cancel();
    const res = await this.opts.etcd.range(this.opts.prefix);
    if (this.closed || gen !== this.watchGen) return;
    const fresh = new Map(res.entries.map((e) => [e.key, e] as const));
    const puts: Entry[] = [];
    const deletes: Entry[] = [];
    for (const [k, e] of fresh) {
      const before = this.entries.get(k);
      if (before === undefined || before.modRevision !== e.modRevision) puts.push(e);
    }
    for (const [k, e] of this.entries) if (!fresh.has(k)) deletes.push(e);
    this.entries.clear();
    for (const [k, e] of fresh) this.entries.set(k, e);
    this.revision = res.revision;
    this.lastHeardAt = this.opts.clock.now();
    this.resyncs++;
    this.notify({ revision: res.revision, puts, deletes, resync: true });

    const watch = await this.opts.etcd.watch(this.opts.prefix, res.revision + 1, {
      onEvents: (revision, events) => {
        if (gen !== this.watchGen) return;
        this.lastHeardAt = this.opts.clock.now();
        this.setConnected(true);
        if (events.length === 0) {
          this.revision = Math.max(this.revision, revision);
          return;
        }
        const puts: Entry[] = [];
        const deletes: Entry[] = [];
        for (const ev of events) {
          if (ev.type === 'delete') {
            const before = this.entries.get(ev.entry.key);
            this.entries.delete(ev.entry.key);
            deletes.push(before ?? ev.entry);
          } else {
            this.entries.set(ev.entry.key, ev.entry);
            puts.push(ev.entry);
          }
          this.revision = Math.max(this.revision, ev.entry.modRevision);
        }
        this.revision = Math.max(this.revision, revision);
        this.notify({ revision: this.revision, puts, deletes, resync: false });
      },
      onDisconnected: () => {
        if (gen !== this.watchGen) return;
        this.opts.logger.warn('watch disconnected', { prefix: this.opts.prefix });
        this.setConnected(false);
      },
      onConnected: () => {
        if (gen !== this.watchGen) return;
        // The client resumes the watch itself; re-read anyway so nothing missed during the gap is trusted to it.
        if (!this.connected) this.requestResync('watch reconnected');
      },
      onError: (err) => {
        if (gen !== this.watchGen) return;
        this.setConnected(false);
        this.requestResync(`watch error: ${errorMessage(err)}`);
      },
    });
    if (this.closed || gen !== this.watchGen) {
      await watch.cancel();
      return;
    }
    this.watch = watch;
    this.setConnected(true);
  }

  /** A consumer's bug (or a value it chokes on) must not kill the watch or the process. */
  private notify(change: ViewChange): void {
    try {
      this.opts.onChange(change, this.entries);
    } catch (e) {
      this.opts.logger.error('view consumer failed', { prefix: this.opts.prefix, error: errorMessage(e) });
    }
  }
}
