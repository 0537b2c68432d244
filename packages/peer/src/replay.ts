/**
 * Replay protection for authenticated heartbeats. A sender's incarnation is its etcd lease: a heartbeat counts
 * only if its lease is the one the sender's member record in etcd names now, and only if its sequence number is
 * higher than any seen for that lease. So a captured heartbeat replayed later is dropped — within the lease by
 * its sequence, after the sender restarted by its lease — and nobody without the key can make a new one.
 */
import type { Heartbeat } from './heartbeat.js';

export type ReplayVerdict = 'accepted' | 'replayed' | 'stale-lease' | 'unknown-node';

export class ReplayGuard {
  private readonly last = new Map<string, { leaseId: string; seq: number }>();
  private readonly dropped = new Map<Exclude<ReplayVerdict, 'accepted'>, number>();

  /** `currentLease(node)`: the lease the node's member record names in our view of etcd (undefined: none). */
  constructor(private readonly currentLease: (node: string) => string | undefined) {}

  check(hb: Heartbeat): ReplayVerdict {
    const verdict = this.judge(hb);
    if (verdict === 'accepted') this.last.set(hb.node, { leaseId: hb.leaseId, seq: hb.seq });
    else this.dropped.set(verdict, (this.dropped.get(verdict) ?? 0) + 1);
    return verdict;
  }

  /** Heartbeats dropped so far, by reason (for metrics and `coord status`). */
  get drops(): Readonly<Record<Exclude<ReplayVerdict, 'accepted'>, number>> {
    return {
      replayed: this.dropped.get('replayed') ?? 0,
      'stale-lease': this.dropped.get('stale-lease') ?? 0,
      'unknown-node': this.dropped.get('unknown-node') ?? 0,
    };
  }

  /** Forget a node that left the cluster. */
  forget(node: string): void {
    this.last.delete(node);
  }

  private judge(hb: Heartbeat): ReplayVerdict {
    const lease = this.currentLease(hb.node);
    if (lease === undefined) return 'unknown-node';
    if (lease !== hb.leaseId) return 'stale-lease';
    const seen = this.last.get(hb.node);
    if (seen !== undefined && seen.leaseId === hb.leaseId && hb.seq <= seen.seq) return 'replayed';
    return 'accepted';
  }
}
