/**
 * An in-memory etcd for tests: the {@link EtcdBackend} port with real etcd semantics where coord depends on them
 * (revisions, create/mod revisions, leases that expire on a scan like etcd's, keys deleted with their lease in
 * one revision, transactions, watches from a revision with history and compaction), all on a Clock — a FakeClock
 * in tests, so a whole cluster of nodes runs deterministically under faults.
 *
 * Faults are per client: {@link MemoryClient.cut} drops requests, replies or both (an nft blackhole, an asymmetric
 * cut, a reply lost after the write committed); calls then fail after the client's call timeout, keepalives are
 * lost, and watch events wait until the cut heals (a TCP stream resumes; etcd3 resumes the watch).
 */
import { CoordError, type Clock, type TimerHandle } from '@coord/core';
import type {
  Compare,
  EtcdBackend,
  Entry,
  KeepaliveHandlers,
  KeepaliveStream,
  TxnOp,
  TxnResult,
  WatchEvent,
  WatchHandle,
  WatchHandlers,
} from './backend.js';

export interface MemoryEtcdOptions {
  /** etcd checks for expired leases this often (it is 500 ms in etcd 3.4); 0 = exactly at expiry. */
  readonly expiryScanMs?: number;
  /** Smallest TTL etcd grants (it raises lower asks, docs/design.md). */
  readonly minTtlSec?: number;
}

interface Lease {
  readonly id: string;
  readonly ttlSec: number;
  expiresAt: number;
}

interface Revision {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

export type CutMode = 'both' | 'requests' | 'replies';

function unavailable(what: string): CoordError {
  return new CoordError('ERR_COORD_ETCD', `etcd: ${what} failed: deadline exceeded (memory etcd: cut)`, {
    hint: 'memory etcd: the client is cut off',
    details: { kind: 'deadline' },
  });
}

/** One etcd "server" in memory. Create clients with {@link MemoryEtcd.client}. */
export class MemoryEtcd {
  private rev = 1;
  private readonly kv = new Map<string, Entry>();
  private readonly leases = new Map<string, Lease>();
  private held: (() => void)[] = [];
  private readonly history: Revision[] = [];
  private compacted = 0;
  private nextLease = 0x1000;
  private readonly watchers = new Set<MemoryWatcher>();
  private scanTimer: TimerHandle | null = null;
  private down = false;

  constructor(
    readonly clock: Clock,
    private readonly opts: MemoryEtcdOptions = {},
  ) {
    this.armScan();
  }

  /** The current store revision. */
  get revision(): number {
    return this.rev;
  }

  /** A client: an {@link EtcdBackend} whose calls travel over its own (faultable) link. */
  client(
    name: string,
    opts: { clock?: Clock; latencyMs?: number; callTimeoutMs?: number } = {},
  ): MemoryClient {
    return new MemoryClient(
      this,
      name,
      opts.clock ?? this.clock,
      opts.latencyMs ?? 1,
      opts.callTimeoutMs ?? 2000,
    );
  }

  /** Lose quorum (every call fails until {@link restore}); leases do not expire meanwhile, as in etcd. */
  loseQuorum(): void {
    this.down = true;
  }

  /** Quorum is back: etcd extends every lease by its TTL on a leader change, so none expire at once. */
  restore(): void {
    this.down = false;
    const now = this.clock.now();
    for (const l of this.leases.values()) l.expiresAt = Math.max(l.expiresAt, now + l.ttlSec * 1000);
    const held = this.held;
    this.held = [];
    for (const fn of held) fn();
  }

  /** @internal Run `fn` once quorum is back (a keepalive waiting for a leader). */
  holdUntilRestored(fn: () => void): void {
    this.held.push(fn);
  }

  get available(): boolean {
    return !this.down;
  }

  /** Read a key directly (test assertions). */
  peek(key: string): Entry | undefined {
    return this.kv.get(key);
  }

  /** Keys under a prefix directly (test assertions). */
  peekPrefix(prefix: string): Entry[] {
    return [...this.kv.values()].filter((e) => e.key.startsWith(prefix));
  }

  /** Whether a lease still exists. */
  hasLease(id: string): boolean {
    return this.leases.has(id);
  }

  /** Drop history before `revision`: watches that need it get a compaction error. */
  compact(revision: number): void {
    this.compacted = Math.max(this.compacted, Math.min(revision, this.rev));
    while (this.history.length > 0 && (this.history[0]?.revision ?? Infinity) < this.compacted)
      this.history.shift();
  }

  close(): void {
    if (this.scanTimer !== null) this.clock.clearTimeout(this.scanTimer);
    this.scanTimer = null;
  }

  // ── server side, called by clients once a request "arrives" ──────────────────────────────────────────────

  /** @internal */
  assertUp(what: string): void {
    if (this.down) throw unavailable(what);
  }

  /** @internal */
  grant(ttlSec: number): { leaseId: string; ttlSec: number; revision: number } {
    const ttl = Math.max(ttlSec, this.opts.minTtlSec ?? 1);
    const id = String(this.nextLease++);
    this.leases.set(id, { id, ttlSec: ttl, expiresAt: this.clock.now() + ttl * 1000 });
    return { leaseId: id, ttlSec: ttl, revision: this.rev };
  }

  /** @internal The TTL left after a keepalive, or 0 when the lease is gone. */
  keepalive(id: string): number {
    const l = this.leases.get(id);
    if (l === undefined) return 0;
    l.expiresAt = this.clock.now() + l.ttlSec * 1000;
    return l.ttlSec;
  }

  /** @internal Seconds left on a lease, truncated, as etcd answers them; −1 when it is gone. */
  timeToLive(id: string): number {
    const l = this.leases.get(id);
    if (l === undefined) return -1;
    return Math.max(0, Math.trunc((l.expiresAt - this.clock.now()) / 1000));
  }

  /** @internal */
  revoke(id: string): void {
    if (!this.leases.has(id)) return;
    this.expireLease(id);
  }

  /** @internal */
  range(prefix: string): { revision: number; entries: Entry[] } {
    return { revision: this.rev, entries: this.peekPrefix(prefix).sort((a, b) => (a.key < b.key ? -1 : 1)) };
  }

  /** @internal */
  txn(compares: readonly Compare[], success: readonly TxnOp[], failure: readonly TxnOp[]): TxnResult {
    const ok = compares.every((c) => {
      const e = this.kv.get(c.key);
      const actual = e === undefined ? 0 : c.target === 'create' ? e.createRevision : e.modRevision;
      return actual === c.value;
    });
    const ops = ok ? success : failure;
    for (const op of ops) {
      if (op.type === 'put' && op.lease !== undefined && op.lease !== '0' && !this.leases.has(op.lease))
        throw new CoordError(
          'ERR_COORD_ETCD',
          'etcd: transaction failed: etcdserver: requested lease not found',
          {
            details: { kind: 'lease-not-found' },
          },
        );
    }
    const writes = ops.some((op) => op.type !== 'get');
    const revision = writes ? this.rev + 1 : this.rev;
    const events: WatchEvent[] = [];
    const results = ops.map((op): Entry | undefined => {
      const before = this.kv.get(op.key);
      switch (op.type) {
        case 'get':
          return before;
        case 'put': {
          const entry: Entry = {
            key: op.key,
            value: Buffer.from(op.value),
            createRevision: before?.createRevision ?? revision,
            modRevision: revision,
            lease: op.lease ?? '0',
          };
          this.kv.set(op.key, entry);
          events.push({ type: 'put', entry });
          return op.prevKv === true ? before : undefined;
        }
        case 'delete':
          if (before !== undefined) {
            this.kv.delete(op.key);
            events.push({
              type: 'delete',
              entry: { ...before, value: Buffer.alloc(0), modRevision: revision },
            });
          }
          return undefined;
      }
    });
    if (events.length > 0) this.commit(revision, events);
    return { succeeded: ok, revision: events.length > 0 ? revision : this.rev, results };
  }

  /** Put a key directly (a test playing a hostile or foreign writer). Returns the revision. */
  put(key: string, value: string, lease?: string): number {
    return this.txn([], [{ type: 'put', key, value, ...(lease === undefined ? {} : { lease }) }], [])
      .revision;
  }

  /** Delete a key directly. */
  delete(key: string): number {
    return this.txn([], [{ type: 'delete', key }], []).revision;
  }

  /** @internal */
  addWatcher(w: MemoryWatcher): void {
    this.watchers.add(w);
    w.deliverFrom(this.history, this.compacted);
  }

  /** @internal */
  removeWatcher(w: MemoryWatcher): void {
    this.watchers.delete(w);
  }

  /** @internal */
  historySince(): { history: readonly Revision[]; compacted: number } {
    return { history: this.history, compacted: this.compacted };
  }

  private commit(revision: number, events: readonly WatchEvent[]): void {
    this.rev = revision;
    const r = { revision, events };
    this.history.push(r);
    for (const w of this.watchers) w.offer(r, this.compacted);
  }

  private expireLease(id: string): void {
    this.leases.delete(id);
    const attached = [...this.kv.values()].filter((e) => e.lease === id);
    if (attached.length === 0) return;
    this.txn(
      [],
      attached.map((e): TxnOp => ({ type: 'delete', key: e.key })),
      [],
    );
  }

  private armScan(): void {
    const scan = this.opts.expiryScanMs ?? 500;
    const next = (): number => {
      if (scan > 0) return scan;
      let soonest = Infinity;
      for (const l of this.leases.values()) soonest = Math.min(soonest, l.expiresAt);
      return Number.isFinite(soonest) ? Math.max(1, soonest - this.clock.now()) : 50;
    };
    const tick = (): void => {
      if (!this.down) {
        const now = this.clock.now();
        for (const l of [...this.leases.values()]) if (l.expiresAt <= now) this.expireLease(l.id);
      }
      this.scanTimer = this.clock.setTimeout(tick, next());
    };
    this.scanTimer = this.clock.setTimeout(tick, next());
  }
}

/** @internal A watch of one client. */
class MemoryWatcher {
  nextRevision: number;
  private cancelled = false;
  private failed = false;

  constructor(
    private readonly client: MemoryClient,
    readonly prefix: string,
    fromRevision: number,
    private readonly handlers: WatchHandlers,
  ) {
    this.nextRevision = fromRevision;
  }

  cancel(): void {
    this.cancelled = true;
  }

  /** Deliver history from `nextRevision` (at creation and when a cut heals). */
  deliverFrom(history: readonly Revision[], compacted: number): void {
    if (this.cancelled || this.failed) return;
    if (this.nextRevision < compacted) {
      this.failed = true;
      this.client.deliver(() =>
        this.handlers.onError(new Error(`etcdserver: mvcc: required revision has been compacted`)),
      );
      return;
    }
    for (const r of history) if (r.revision >= this.nextRevision) this.offer(r, compacted);
  }

  offer(r: Revision, compacted: number): void {
    if (this.cancelled || this.failed || r.revision < this.nextRevision) return;
    if (!this.client.receives) return; // held back; delivered from history when the cut heals
    if (this.nextRevision < compacted) {
      this.failed = true;
      this.client.deliver(() =>
        this.handlers.onError(new Error('etcdserver: mvcc: required revision has been compacted')),
      );
      return;
    }
    this.nextRevision = r.revision + 1;
    const events = r.events.filter((e) => e.entry.key.startsWith(this.prefix));
    if (events.length === 0) return;
    this.client.deliver(() => {
      if (!this.cancelled) this.handlers.onEvents(r.revision, events);
    });
  }

  disconnected(): void {
    if (!this.cancelled) this.client.deliver(() => this.handlers.onDisconnected());
  }

  connected(): void {
    if (!this.cancelled) this.client.deliver(() => this.handlers.onConnected());
  }
}

/** One node's link to a {@link MemoryEtcd}: an {@link EtcdBackend} with faults. */
export class MemoryClient implements EtcdBackend {
  private cutMode: CutMode | null = null;
  private readonly watchers = new Set<MemoryWatcher>();
  private readonly streams = new Set<{ handlers: KeepaliveHandlers; open: boolean }>();
  private closed = false;
  /** Calls that reached etcd, by kind (tests assert on them). */
  readonly calls: string[] = [];
  /** Keepalives that reached etcd (applied), on any stream. */
  keepalivesArrived = 0;
  /** Why the session asked to use another member (`avoid`), in order; one member here, so nothing moves. */
  readonly avoided: string[] = [];

  constructor(
    readonly server: MemoryEtcd,
    readonly name: string,
    private readonly clock: Clock,
    public latencyMs: number,
    private readonly callTimeoutMs: number,
  ) {}

  /** Drop this client's requests, replies or both until {@link heal}. */
  cut(mode: CutMode = 'both', opts: { notifyWatches?: boolean } = {}): void {
    this.cutMode = mode;
    if (opts.notifyWatches === true) for (const w of this.watchers) w.disconnected();
  }

  heal(): void {
    const was = this.cutMode;
    this.cutMode = null;
    if (was === null) return;
    const { history, compacted } = this.server.historySince();
    for (const w of this.watchers) w.deliverFrom(history, compacted);
  }

  get isCut(): boolean {
    return this.cutMode !== null;
  }

  /** @internal Whether watch events currently reach this client. */
  get receives(): boolean {
    return this.cutMode !== 'both' && this.cutMode !== 'replies';
  }

  private get sends(): boolean {
    return this.cutMode !== 'both' && this.cutMode !== 'requests';
  }

  /** @internal Run `fn` on this client's side after the link latency. */
  deliver(fn: () => void): void {
    this.clock.setTimeout(() => {
      if (!this.closed) fn();
    }, this.latencyMs);
  }

  /**
   * One unary call: the request travels (unless requests are cut), is applied, and the reply travels back
   * (unless replies are cut). A call that gets no reply fails after the call timeout, like a gRPC deadline.
   */
  private call<T>(what: string, apply: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timeout = (): void => {
        this.clock.setTimeout(() => reject(unavailable(what)), this.callTimeoutMs);
      };
      if (!this.sends) {
        timeout();
        return;
      }
      this.clock.setTimeout(() => {
        let result: T;
        try {
          this.server.assertUp(what);
          this.calls.push(what);
          result = apply();
        } catch (e) {
          if (!this.receives) timeout();
          else this.deliver(() => reject(e instanceof Error ? e : new Error(String(e))));
          return;
        }
        if (!this.receives) timeout();
        else this.deliver(() => resolve(result));
      }, this.latencyMs);
    });
  }

  /** A request that needs no reply: applied once it arrives; fails only when etcd itself does. */
  private sent<T>(what: string, apply: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.clock.setTimeout(() => {
        try {
          this.server.assertUp(what);
          this.calls.push(what);
          resolve(apply());
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      }, this.latencyMs);
    });
  }

  grant(ttlSec: number): Promise<{ leaseId: string; ttlSec: number; revision: number }> {
    return this.call('lease grant', () => this.server.grant(ttlSec));
  }

  revoke(leaseId: string): Promise<void> {
    return this.call('lease revoke', () => this.server.revoke(leaseId));
  }

  timeToLive(leaseId: string): Promise<number> {
    return this.call('lease time-to-live', () => this.server.timeToLive(leaseId));
  }

  /** Keepalive streams opened and not closed (test assertions). */
  get openStreams(): number {
    return this.streams.size;
  }

  keepalive(handlers: KeepaliveHandlers): Promise<KeepaliveStream> {
    // grpc-js opens a stream without waiting for a reply (its headers and first message go out together): with
    // only etcd's replies cut it opens, and what is sent on it reaches etcd.
    const open = this.cutMode === 'replies' ? this.sent.bind(this) : this.call.bind(this);
    return open('lease keepalive', () => {
      const s = { handlers, open: true };
      this.streams.add(s);
      const stream: KeepaliveStream = {
        send: (leaseId) => {
          if (!s.open) throw new Error('keepalive stream closed');
          if (!this.sends) return;
          const arrive = (): void => {
            if (!s.open) return; // a closed stream's requests are cancelled in etcd
            // etcd without a leader holds a keepalive until it has one again (a follower waits for the leader
            // to forward it to), and answers it then.
            if (!this.server.available) {
              this.server.holdUntilRestored(arrive);
              return;
            }
            const ttl = this.server.keepalive(leaseId);
            this.keepalivesArrived++;
            if (!this.receives) return;
            this.deliver(() => {
              if (s.open) s.handlers.onAck(leaseId, ttl);
            });
          };
          this.clock.setTimeout(arrive, this.latencyMs);
        },
        close: () => {
          s.open = false;
          this.streams.delete(s);
        },
      };
      return stream;
    });
  }

  range(prefix: string): Promise<{ revision: number; entries: Entry[] }> {
    return this.call(`reading ${prefix}`, () => this.server.range(prefix));
  }

  get(key: string): Promise<{ revision: number; entry: Entry | undefined }> {
    return this.call(`reading ${key}`, () => ({
      revision: this.server.revision,
      entry: this.server.peek(key),
    }));
  }

  put(key: string, value: string, lease?: string): Promise<{ revision: number }> {
    return this.call(`writing ${key}`, () => ({
      revision: this.server.txn(
        [],
        [{ type: 'put', key, value, ...(lease === undefined ? {} : { lease }) }],
        [],
      ).revision,
    }));
  }

  txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    return this.call('transaction', () => this.server.txn(compares, success, failure));
  }

  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Promise<WatchHandle> {
    return this.call(`watching ${prefix}`, () => {
      const w = new MemoryWatcher(this, prefix, fromRevision, handlers);
      this.watchers.add(w);
      this.server.addWatcher(w);
      const handle: WatchHandle = {
        cancel: () => {
          w.cancel();
          this.watchers.delete(w);
          this.server.removeWatcher(w);
          return Promise.resolve();
        },
      };
      return handle;
    });
  }

  avoid(reason: string): void {
    this.avoided.push(reason);
  }

  close(): void {
    this.closed = true;
    for (const s of this.streams) s.open = false;
    for (const w of this.watchers) {
      w.cancel();
      this.server.removeWatcher(w);
    }
  }
}
export * from './testing-pki.js';
