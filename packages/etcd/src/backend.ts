/**
 * The few etcd operations coord uses, as a port. The production implementation wraps etcd3 (`etcd3.ts`, the only
 * file that imports it); `testing.ts` implements the same port in memory on a fake clock, so the session, the view
 * and a whole node run in unit tests under faults (docs/design.md, "Testing the safety code").
 *
 * Every method rejects with a CoordError (code ERR_COORD_ETCD) — errors are translated once, at this boundary.
 */

/** One key as etcd holds it. */
export interface Entry {
  readonly key: string;
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  /** Lease id as a decimal string; '0' when the key has no lease. */
  readonly lease: string;
}

/** A comparison of a transaction; coord only ever compares for equality. */
export interface Compare {
  readonly key: string;
  readonly target: 'create' | 'mod';
  readonly value: number;
}

export type TxnOp =
  | {
      readonly type: 'put';
      readonly key: string;
      readonly value: string;
      readonly lease?: string;
      readonly prevKv?: boolean;
    }
  | { readonly type: 'delete'; readonly key: string }
  | { readonly type: 'get'; readonly key: string };

export interface TxnResult {
  readonly succeeded: boolean;
  /** The store revision after the transaction (its own revision when it wrote anything). */
  readonly revision: number;
  /** One per op of the branch that ran: a put's previous entry (with `prevKv`), a get's entry, else undefined. */
  readonly results: readonly (Entry | undefined)[];
}

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  /** For a delete: the key and the revision of the deletion (value empty). */
  readonly entry: Entry;
}

export interface WatchHandlers {
  /** Events of one or more revisions, in order; `revision` is the newest revision the response covers. */
  onEvents(revision: number, events: readonly WatchEvent[]): void;
  onDisconnected(): void;
  onConnected(): void;
  /** The watch cannot continue (compaction, cancelled by the server): re-read and watch again. */
  onError(error: Error): void;
}

export interface WatchHandle {
  cancel(): Promise<void>;
}

export interface KeepaliveHandlers {
  /** etcd answered a keepalive for `leaseId`; `ttlSec` ≤ 0 means the lease no longer exists. */
  onAck(leaseId: string, ttlSec: number): void;
  /** The stream failed or ended; no further acks come from it. */
  onError(error: Error): void;
}

/**
 * The standby connections a broadcast goes through. Under a cut of etcd's replies a connection carries one write:
 * once TCP has timed out that write's unacknowledged copy it sends nothing new until an acknowledgement comes,
 * so a second write queued behind it lands seconds late, if at all (docs/design.md, "Standby connections").
 * A write that ends a holder's claim (a resign, a handover) therefore never shares its connections with a member
 * record, which a fenced node writes first.
 */
export type BroadcastLane = 'member' | 'leadership';

export interface KeepaliveStream {
  /** Send one keepalive; throws when the stream is already closed. */
  send(leaseId: string): void;
  close(): void;
}

export interface EtcdBackend {
  /** `revision`: the store revision when the lease was granted (a view synced at or after it is current). */
  grant(ttlSec: number): Promise<{ leaseId: string; ttlSec: number; revision: number }>;
  revoke(leaseId: string): Promise<void>;
  /**
   * The seconds etcd has left on a lease, truncated (0 while under a second is left), or −1 when etcd no longer
   * has it. Extends nothing; etcd answers it only through its leader, as it does a keepalive.
   */
  timeToLive(leaseId: string): Promise<number>;
  keepalive(handlers: KeepaliveHandlers): Promise<KeepaliveStream>;
  range(prefix: string): Promise<{ revision: number; entries: Entry[] }>;
  get(key: string): Promise<{ revision: number; entry: Entry | undefined }>;
  put(key: string, value: string, lease?: string): Promise<{ revision: number }>;
  txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure?: readonly TxnOp[],
  ): Promise<TxnResult>;
  /**
   * Unless `answered` settles first (the same write, sent the ordinary way), send a transaction, unanswered,
   * through every standby connection the backend keeps (a backend built with `standby`: client.ts, standby.ts),
   * so that it lands although the path to the member in use has stalled. Only for a transaction whose comparisons
   * make a late or second copy a no-op (a resign guarded by the epoch, a record guarded by its revision): a copy
   * can still land first when etcd answers slowly, and the ordinary write then finds its comparison false.
   * `lane`: which set of standby connections carries it (see {@link BroadcastLane}).
   * Optional: a backend without standby connections has nothing to add.
   */
  broadcast?(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    answered: Promise<unknown>,
    lane: BroadcastLane,
  ): void;
  /**
   * The member in use did not answer in time (a fence, a session lost to silence): send what comes next, and
   * move open watches, to another member (members.ts). Optional: a backend with one member has nowhere to go.
   */
  avoid?(reason: string): void;
  /** Watch every key under `prefix` from `fromRevision` on. */
  watch(prefix: string, fromRevision: number, handlers: WatchHandlers): Promise<WatchHandle>;
  close(): void;
}

/** What a read-only command needs of etcd (the gRPC backend, or etcd's JSON gateway: gateway.ts). */
export type EtcdReader = Pick<EtcdBackend, 'range' | 'get' | 'close'>;
