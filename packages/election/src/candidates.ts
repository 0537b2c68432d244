/** A live member's claim to a VIP group, as published in its member record. */
export interface Candidate {
  readonly node: string;
  /** 1-254; the highest live priority holds the group. */
  readonly priority: number;
  /** Whether this member takes the group from a lower-priority holder. */
  readonly preempt: boolean;
  /** How long this member must have been live before it preempts. */
  readonly preemptDelayMs: number;
  /**
   * False while the member may not be elected: its view of the cluster is not synced since its session began,
   * or its etcd acks are too slow to claim a VIP (docs/design.md, "Candidacy"). Absent means true.
   */
  readonly candidate?: boolean;
  /** The etcd revision its member record was written at (absent: unknown). */
  readonly revision?: number;
}

/** Whether `m` may be elected at all. */
export function electable(m: Candidate): boolean {
  return m.priority >= 1 && m.candidate !== false;
}

/**
 * The order of precedence: higher priority first; equal priorities are broken by the node name, smaller first.
 * The name rule is deterministic and something an operator can predict from the config alone.
 */
export function compareCandidates(a: Candidate, b: Candidate): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

/** The member that should hold a vacant group, or undefined when nobody is eligible. */
export function bestCandidate(members: readonly Candidate[]): Candidate | undefined {
  let best: Candidate | undefined;
  for (const m of members) {
    if (!electable(m)) continue;
    if (best === undefined || compareCandidates(m, best) < 0) best = m;
  }
  return best;
}

/**
 * The strongest member that may preempt `holder`, and when: strictly higher priority, preemption enabled, and seen
 * live for at least its own preempt delay (`since` holds when the holder first saw each member with its current
 * priority). The caller hands over once `dueAt <= now`.
 */
export function preemptingChallenger(
  holder: Candidate,
  members: readonly Candidate[],
  since: Readonly<Record<string, number>>,
): { challenger: Candidate; dueAt: number } | undefined {
  let found: { challenger: Candidate; dueAt: number } | undefined;
  for (const m of members) {
    if (m.node === holder.node || !m.preempt || !electable(m) || m.priority <= holder.priority) continue;
    const seen = since[m.node];
    if (seen === undefined) continue;
    const dueAt = seen + m.preemptDelayMs;
    if (found === undefined || compareCandidates(m, found.challenger) < 0) found = { challenger: m, dueAt };
  }
  return found;
}
