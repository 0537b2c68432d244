/**
 * The peer channel: every node sends a heartbeat to every member it knows from etcd each interval, and keeps what
 * it last heard from each (docs/design.md, "Peer channel"). The channel decides nothing: it tells the node how long
 * each peer has been silent and what the peer said it held, and counts what it dropped. Sockets are a port, so the
 * whole channel runs in unit tests without a network.
 */
import { decodeHeartbeat, encodeHeartbeat, type DropReason, type GroupBeat } from './heartbeat.js';
import { ReplayGuard, type ReplayVerdict } from './replay.js';

/** Where a member receives heartbeats, as its member record in etcd says. */
export interface PeerTarget {
  readonly node: string;
  readonly address: string;
  readonly port: number;
}

/** Sends datagrams; the channel never waits for a send. */
export interface PeerSocket {
  send(data: Buffer, port: number, address: string): void;
  close(): void;
}

/** What a peer said in its newest accepted heartbeat. */
export interface PeerHeard {
  readonly node: string;
  readonly leaseId: string;
  /** Our monotonic time when it arrived. */
  readonly at: number;
  /** Per group: the epoch the peer leads at (0: not leading) and when its own deadline falls on our clock. */
  readonly groups: ReadonlyMap<string, { readonly epoch: number; readonly holdsUntil: number | null }>;
}

export type ChannelDrop = DropReason | Exclude<ReplayVerdict, 'accepted'>;

export interface PeerChannelOptions {
  readonly node: string;
  readonly key: Buffer;
  readonly socket: PeerSocket;
  readonly now: () => number;
  /** The lease the node's member record names in our view of etcd (undefined: not a member now). */
  readonly currentLease: (node: string) => string | undefined;
  /** Called after every accepted heartbeat (the node re-evaluates its suspicions). */
  readonly onHeard?: (heard: PeerHeard) => void;
}

export class PeerChannel {
  private seq = 0;
  private readonly guard: ReplayGuard;
  private readonly heard = new Map<string, PeerHeard>();
  private readonly dropped = new Map<ChannelDrop, number>();
  private sent = 0;

  constructor(private readonly opts: PeerChannelOptions) {
    this.guard = new ReplayGuard(opts.currentLease);
  }

  /** Send one heartbeat to each target (never to ourselves). A failed send is the network's loss, not ours. */
  beat(leaseId: string, groups: readonly GroupBeat[], targets: readonly PeerTarget[]): void {
    // Sequence numbers only grow: a restart gets a new lease, so the receiver's replay guard starts afresh.
    this.seq++;
    const data = encodeHeartbeat({ node: this.opts.node, leaseId, seq: this.seq, groups }, this.opts.key);
    for (const t of targets) {
      if (t.node === this.opts.node) continue;
      this.opts.socket.send(data, t.port, t.address);
      this.sent++;
    }
  }

  /** One datagram from the network: accepted (and remembered) or dropped and counted. Never throws. */
  receive(data: Buffer): 'accepted' | ChannelDrop {
    const decoded = decodeHeartbeat(data, this.opts.key);
    if (!decoded.ok) return this.drop(decoded.reason);
    const hb = decoded.heartbeat;
    if (hb.node === this.opts.node) return this.drop('unknown-node');
    const verdict = this.guard.check(hb);
    if (verdict !== 'accepted') return this.drop(verdict);
    const at = this.opts.now();
    const heard: PeerHeard = {
      node: hb.node,
      leaseId: hb.leaseId,
      at,
      groups: new Map(
        hb.groups.map((g) => [
          g.group,
          { epoch: g.epoch, holdsUntil: g.deadlineInMs > 0 ? at + g.deadlineInMs : null },
        ]),
      ),
    };
    this.heard.set(hb.node, heard);
    this.opts.onHeard?.(heard);
    return 'accepted';
  }

  /** The newest accepted heartbeat of `node` under `leaseId` (a restarted peer starts unheard). */
  lastHeard(node: string, leaseId?: string): PeerHeard | undefined {
    const h = this.heard.get(node);
    return h === undefined || (leaseId !== undefined && h.leaseId !== leaseId) ? undefined : h;
  }

  /** Milliseconds since each peer's newest accepted heartbeat (for status and metrics). */
  ages(): Record<string, number> {
    const now = this.opts.now();
    return Object.fromEntries([...this.heard].map(([node, h]) => [node, Math.round(now - h.at)]));
  }

  /** Forget peers that are no longer members (their next heartbeat would be dropped anyway). */
  retain(nodes: ReadonlySet<string>): void {
    for (const node of [...this.heard.keys()]) {
      if (nodes.has(node)) continue;
      this.heard.delete(node);
      this.guard.forget(node);
    }
  }

  get counters(): { sent: number; dropped: Readonly<Partial<Record<ChannelDrop, number>>> } {
    return { sent: this.sent, dropped: Object.fromEntries(this.dropped) };
  }

  close(): void {
    this.opts.socket.close();
  }

  private drop(reason: ChannelDrop): ChannelDrop {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    return reason;
  }
}
