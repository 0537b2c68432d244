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
  /** Its sequence number (what a promise to this peer echoes). */
  readonly seq: number;
  /** Our monotonic time when it arrived. */
  readonly at: number;
  /**
   * Per group: the epoch the peer leads at (0: not leading), when its own deadline falls on our clock, whether it
   * asks for promises (a holder cut from etcd) or gives one (a follower cut from etcd), and which of the group
   * holder's heartbeats it heard last.
   */
  readonly groups: ReadonlyMap<string, HeardGroup>;
}

export interface HeardGroup {
  readonly epoch: number;
  readonly holdsUntil: number | null;
  readonly asking: boolean;
  readonly promise: boolean;
  readonly echoSeq: number;
}

/** Send times of our own recent heartbeats are kept this long (a promise echoing an older one is no use). */
const SENT_KEPT = 256;

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
  /** Our recent sequence numbers → when we sent them (our clock). */
  private readonly sentAt = new Map<number, number>();

  constructor(private readonly opts: PeerChannelOptions) {
    this.guard = new ReplayGuard(opts.currentLease);
  }

  /**
   * Send one heartbeat to each target (never to ourselves). A failed send is the network's loss, not ours.
   * Returns its sequence number.
   */
  beat(leaseId: string, groups: readonly GroupBeat[], targets: readonly PeerTarget[]): number {
    // Sequence numbers only grow: a restart gets a new lease, so the receiver's replay guard starts afresh.
    this.seq++;
    this.sentAt.set(this.seq, this.opts.now());
    this.sentAt.delete(this.seq - SENT_KEPT);
    const data = encodeHeartbeat({ node: this.opts.node, leaseId, seq: this.seq, groups }, this.opts.key);
    for (const t of targets) {
      if (t.node === this.opts.node) continue;
      this.opts.socket.send(data, t.port, t.address);
      this.sent++;
    }
    return this.seq;
  }

  /** When we sent our heartbeat `seq` (undefined: not one of our recent ones). */
  sentTime(seq: number): number | undefined {
    return this.sentAt.get(seq);
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
      seq: hb.seq,
      at,
      groups: new Map(
        hb.groups.map((g) => [
          g.group,
          {
            epoch: g.epoch,
            holdsUntil: g.deadlineInMs > 0 ? at + g.deadlineInMs : null,
            asking: g.asking === true,
            promise: g.promise === true,
            echoSeq: g.echoSeq ?? 0,
          },
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
