/**
 * Which etcd member a node talks to: one at a time, as etcd's own Go client pins one endpoint, and another one
 * as soon as the member in use fails or stalls (docs/design.md, "etcd client: one member at a time").
 *
 * etcd3 draws a member at random for every call and every stream. After the member a node used died, each new
 * call or stream still went to it one time in three, and over a connection that was not refused outright (a host
 * that is down, a proxy, a stalled path) it waited for its whole deadline: in the soak, a holder whose member was
 * killed had its time-to-live query, its new lease and its resign all wait until the member came back, 2.2–2.9 s
 * to one holder instead of about 1 s.
 */

/** How long a member that failed is passed over when another one is chosen (it may be back by then). */
export const MEMBER_FAILED_MS = 3000;

export interface MemberSwitch {
  readonly from: string;
  readonly to: string;
  readonly reason: string;
}

/** Something bound to one member that must move when the node leaves it (an open watch). */
export interface MemberBound {
  readonly member: number;
  /** Called once, when the node leaves `member`: re-open on the member in use now. */
  move(): void;
}

export class MemberChoice {
  private inUse: number;
  private readonly failedAt: number[];
  private readonly bound = new Set<MemberBound & { moved: boolean }>();

  constructor(
    private readonly endpoints: readonly string[],
    private readonly opts: {
      readonly now: () => number;
      /** The first member used: spreads the nodes over the members. */
      readonly first?: number;
      readonly onSwitch?: (s: MemberSwitch) => void;
    },
  ) {
    this.inUse = Math.min(Math.max(0, opts.first ?? 0), endpoints.length - 1);
    this.failedAt = endpoints.map(() => -Infinity);
  }

  /** The member new calls and streams go to. */
  get current(): number {
    return this.inUse;
  }

  get endpoint(): string {
    return this.endpoints[this.inUse] ?? '';
  }

  /**
   * `member` failed (a call could not reach it, a stream broke) or stalled (no answer in time). When it is the one
   * in use, move to the next member that has not failed within {@link MEMBER_FAILED_MS}, or else simply the next,
   * and move whatever is bound to the member left. Returns whether the member in use changed.
   */
  leave(member: number, reason: string): boolean {
    const now = this.opts.now();
    this.failedAt[member] = now;
    if (member !== this.inUse || this.endpoints.length < 2) return false;
    let next = (member + 1) % this.endpoints.length;
    for (let k = 1; k < this.endpoints.length; k++) {
      const m = (member + k) % this.endpoints.length;
      if (now - (this.failedAt[m] ?? -Infinity) >= MEMBER_FAILED_MS) {
        next = m;
        break;
      }
    }
    this.inUse = next;
    this.opts.onSwitch?.({ from: this.endpoints[member] ?? '', to: this.endpoint, reason });
    for (const b of [...this.bound]) if (b.member === member) this.move(b);
    return true;
  }

  /** Track `b` until `release`; it is moved when the node leaves its member. */
  bind(b: MemberBound): { release(): void; moveIfStale(): void } {
    const entry = { member: b.member, move: () => b.move(), moved: false };
    this.bound.add(entry);
    return {
      release: () => void this.bound.delete(entry),
      // Bound to a member the node has already left (its stream broke later): move it now.
      moveIfStale: () => {
        if (entry.member !== this.inUse) this.move(entry);
      },
    };
  }

  private move(entry: MemberBound & { moved: boolean }): void {
    this.bound.delete(entry);
    if (entry.moved) return;
    entry.moved = true;
    entry.move();
  }
}
