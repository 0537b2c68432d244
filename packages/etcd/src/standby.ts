/**
 * A standby connection to every etcd member, apart from the ones calls use, so that a resign still reaches etcd
 * when the path to the member in use stalls (docs/design.md, "Fencing": a cut of etcd's replies).
 *
 * Under a cut of etcd's replies a node's requests still arrive, but only over a connection that was open before
 * the cut and has nothing unanswered in flight: once TCP waits for an acknowledgement that never comes it sends
 * nothing new, and a new connection never completes its handshake. The connection in use has the keepalives in
 * flight, and any connection with HTTP/2 keepalive pings may have one in flight; so the standby connections are
 * their own (grpc-js gives channels with other options other connections) and send no pings. Each carries one
 * idle stream: it opens the connection, keeps grpc-js from closing it as idle, and ends when the connection
 * does, which is how a dropped one is noticed and opened again. A backend keeps two such sets, one per
 * `BroadcastLane` (backend.ts): a connection under a cut carries one write.
 */

/** How long after a standby stream ended (its member down, the connection dropped) it is opened again. */
export const STANDBY_RETRY_MS = 1000;

/** An open idle stream: closed when the backend closes. */
export interface IdleStream {
  close(): void;
}

/**
 * Open an idle stream on `member`; call `onEnd` once if it ends by itself (an error, the server closing it).
 * Rejects when it cannot be opened.
 */
export type OpenIdle = (member: number, onEnd: () => void) => Promise<IdleStream>;

interface Attempt {
  ended: boolean;
  stream: IdleStream | undefined;
}

/** One idle stream per member, each opened again {@link STANDBY_RETRY_MS} after it ends. */
export class StandbyStreams {
  private readonly live = new Map<number, Attempt>();
  private readonly retries = new Map<number, ReturnType<typeof setTimeout>>();
  private closed = false;

  constructor(
    private readonly members: number,
    private readonly open: OpenIdle,
    private readonly retryMs = STANDBY_RETRY_MS,
  ) {}

  start(): void {
    for (let m = 0; m < this.members; m++) this.connect(m);
  }

  /** The members with an open idle stream. */
  get openMembers(): number[] {
    return [...this.live.keys()].sort((a, b) => a - b);
  }

  /**
   * End every stream and open it again at once, through whatever `open` now uses (new clients after a TLS
   * rotation): closing a gRPC client does not end the calls still open on it.
   */
  reopen(): void {
    for (const [m, a] of [...this.live]) {
      a.ended = true;
      this.live.delete(m);
      a.stream?.close();
      this.connect(m);
    }
  }

  close(): void {
    this.closed = true;
    for (const t of this.retries.values()) clearTimeout(t);
    this.retries.clear();
    for (const a of this.live.values()) {
      a.ended = true;
      a.stream?.close();
    }
    this.live.clear();
  }

  private connect(m: number): void {
    this.retries.delete(m);
    if (this.closed) return;
    const attempt: Attempt = { ended: false, stream: undefined };
    const ended = (): void => {
      if (attempt.ended) return;
      attempt.ended = true;
      if (this.live.get(m) === attempt) this.live.delete(m);
      this.later(m);
    };
    this.open(m, ended).then((stream) => {
      attempt.stream = stream;
      if (this.closed) {
        attempt.ended = true;
        stream.close();
      } else if (!attempt.ended) this.live.set(m, attempt);
    }, ended);
  }

  private later(m: number): void {
    if (this.closed || this.retries.has(m)) return;
    const t = setTimeout(() => this.connect(m), this.retryMs);
    t.unref?.();
    this.retries.set(m, t);
  }
}
