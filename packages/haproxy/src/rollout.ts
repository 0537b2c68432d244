import { createHash } from 'node:crypto';
import * as z from 'zod';
import { ServiceSchema, type Service } from './model.js';
import { serviceShape } from './runtime.js';

/**
 * Rolling rollouts of structural changes (docs/design.md, "Rolling rollouts"). A server change is applied by every
 * node at once through the runtime API; a change HAProxy must reload for — binds, mode, balance, a new service —
 * reaches the nodes one at a time, followers first and holders last, and each node gates on its own new worker
 * passing the service's check before the next one starts. A node that fails stops the rollout and every node runs
 * the previous version, so a config that `haproxy -c` accepts but that does not serve reaches one node only.
 *
 * In etcd: `services/<name>` holds the new version (what the operator asked for), and `rollouts/<name>` the rollout:
 * which version it brings (a hash of that value), the version every node runs until its turn, the order, each
 * node's result and the state. Nodes decide from both keys alone; this file is the pure part.
 */

/** `/coord/<cluster>/rollouts/`. */
export function rolloutsPrefix(cluster: string): string {
  return `/coord/${cluster}/rollouts/`;
}

export function rolloutKey(cluster: string, service: string): string {
  return `${rolloutsPrefix(cluster)}${service}`;
}

/** Identifies one value of `services/<name>`: a rollout applies while the key still holds the value it brings. */
export function valueHash(value: string | Uint8Array): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 16);
}

const nodeName = z.string().min(1).max(253);

const stepSchema = z.strictObject({
  state: z.enum(['ok', 'failed']),
  /** Wall-clock ms when the node wrote it. */
  at: z.number(),
  /** From the node's turn to its verdict: apply, reload, confirm and the gate. */
  ms: z.number().nonnegative(),
  error: z.string().max(2000).optional(),
});

const rolloutSchema = z.strictObject({
  id: z.string().min(1).max(64),
  service: z.string().min(1).max(63),
  /** valueHash of the `services/<name>` value this rollout brings. */
  next: z.string().regex(/^[0-9a-f]{16}$/),
  /** What every node runs until its turn, and after a stop; null: the service is new (nodes run nothing). */
  previous: ServiceSchema.nullable(),
  /** Nodes in the order they apply; holders last. */
  order: z.array(nodeName).max(256),
  steps: z.record(nodeName, stepSchema),
  state: z.enum(['running', 'stopped', 'done']),
  /** Why it stopped: the node and its error. */
  reason: z.string().max(2000).optional(),
  startedAt: z.number(),
  endedAt: z.number().optional(),
});

export type RolloutRecord = z.output<typeof rolloutSchema>;
export type RolloutStep = z.output<typeof stepSchema>;

/** Decode a value of `rollouts/<name>`; undefined when it is not a rollout (refused: the service applies as it is). */
export function decodeRollout(value: string | Uint8Array): RolloutRecord | undefined {
  try {
    const text = typeof value === 'string' ? value : Buffer.from(value).toString('utf8');
    if (text.length > 256 * 1024) return undefined;
    const r = rolloutSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export function encodeRollout(r: RolloutRecord): string {
  return JSON.stringify(r);
}

/**
 * Whether going from `before` to `after` needs HAProxy to reload (not only its servers changed) and the service
 * asks for a rolling rollout. Removing a service is never rolled: nothing it served keeps working anyway.
 */
export function needsRollout(before: Service | undefined, after: Service): boolean {
  if ((after.rollout ?? 'rolling') !== 'rolling') return false;
  return before === undefined || serviceShape(before) !== serviceShape(after);
}

/** The order of a rollout: nodes that hold no VIP first, then holders; by name within each. */
export function rolloutOrder(nodes: Iterable<string>, holders: ReadonlySet<string>): string[] {
  const all = [...new Set(nodes)].sort();
  return [...all.filter((n) => !holders.has(n)), ...all.filter((n) => holders.has(n))];
}

/**
 * The rollout applies to the current value of `services/<name>` (a later direct write, or a removal, makes it
 * history).
 */
export function rolloutApplies(r: RolloutRecord, currentValue: string | Uint8Array | undefined): boolean {
  return currentValue !== undefined && valueHash(currentValue) === r.next;
}

/**
 * Whether it is `me`'s turn in a running rollout: every node before it in the order passed, or is gone (no status
 * key: its lease ended, so it runs nothing the rollout could wait for).
 */
export function isTurn(r: RolloutRecord, me: string, present: ReadonlySet<string>): boolean {
  if (r.state !== 'running') return false;
  const i = r.order.indexOf(me);
  if (i < 0 || r.steps[me] !== undefined) return false;
  return r.order.slice(0, i).every((n) => r.steps[n]?.state === 'ok' || !present.has(n));
}

/** Which version `me` runs: the new one once it passed or during its turn, and for everyone once done. */
export function runsNext(r: RolloutRecord, me: string, present: ReadonlySet<string>): boolean {
  if (r.state === 'done') return true;
  if (r.state === 'stopped') return false;
  return r.steps[me]?.state === 'ok' || isTurn(r, me, present);
}

/**
 * The record after `me`'s verdict: a failure stops the rollout; a pass that leaves no node to wait for (each
 * passed or is gone) ends it.
 */
export function withVerdict(
  r: RolloutRecord,
  me: string,
  step: RolloutStep,
  present: ReadonlySet<string>,
): RolloutRecord {
  const steps = { ...r.steps, [me]: step };
  if (step.state === 'failed') {
    return { ...r, steps, state: 'stopped', reason: `${me}: ${step.error ?? 'failed'}`, endedAt: step.at };
  }
  const finished = r.order.every((n) => steps[n]?.state === 'ok' || (n !== me && !present.has(n)));
  return finished ? { ...r, steps, state: 'done', endedAt: step.at } : { ...r, steps };
}

/**
 * The services this node runs: the committed set, with each service under a rollout replaced by the version
 * `me` runs at this point (the previous one, or none for a new service, until its turn).
 */
export function effectiveServices(
  committed: ReadonlyMap<string, Service>,
  rollouts: readonly { record: RolloutRecord; applies: boolean }[],
  me: string,
  present: ReadonlySet<string>,
): Map<string, Service> {
  const out = new Map(committed);
  for (const { record, applies } of rollouts) {
    if (!applies || !out.has(record.service) || runsNext(record, me, present)) continue;
    if (record.previous === null) out.delete(record.service);
    else out.set(record.service, record.previous);
  }
  return out;
}

/** One line for `coord status`: where a rollout is. */
export function describeRollout(r: RolloutRecord, present: ReadonlySet<string>): string {
  const passed = r.order.filter((n) => r.steps[n]?.state === 'ok');
  const parts = r.order.map((n) => {
    const s = r.steps[n];
    if (s !== undefined) return `${n} ${s.state} ${Math.round(s.ms)} ms`;
    if (!present.has(n)) return `${n} gone`;
    return isTurn(r, n, present) ? `${n} applying` : `${n} waiting`;
  });
  const took = r.endedAt === undefined ? '' : ` in ${((r.endedAt - r.startedAt) / 1000).toFixed(1)} s`;
  const head =
    r.state === 'running'
      ? `running, ${passed.length}/${r.order.length} passed`
      : r.state === 'done'
        ? `done${took}`
        : `STOPPED${took} (${r.reason ?? 'no reason'}): every node runs the previous version`;
  return `rollout ${r.service}: ${head} — ${parts.join(', ')}`;
}
