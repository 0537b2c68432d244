import { createHash } from 'node:crypto';
import { errorMessage, type Clock, type Logger } from '@coord/core';
import { clusterKeys, updateKey, type EtcdBackend, type Entry } from '@coord/etcd';
import {
  checkServiceSet,
  decodeRollout,
  decodeServiceEntries,
  effectiveServices,
  encodeRollout,
  isTurn,
  probeGate,
  rolloutApplies,
  rolloutKey,
  rolloutsPrefix,
  serializeService,
  serviceKey,
  servicesPrefix,
  withVerdict,
  type ApplyResult,
  type HaproxyDriver,
  type RolloutRecord,
  type Service,
} from '@coord/haproxy';
import type { Metrics } from './metrics.js';

/** What a node reports about its HAProxy, in its status key and in `coord status`. */
export interface HaproxyStatus {
  /** etcd revision the applied model was read at. */
  readonly revision: number;
  /** Fingerprint of the service model (same model → same fingerprint on every node). */
  readonly model: string;
  /** Hash of the rendered config HAProxy runs (node-local base files make these differ between nodes). */
  readonly configHash: string | undefined;
  readonly result: ApplyResult['result'] | 'pending';
  readonly error: string | undefined;
  /** Values in etcd that were refused (the last good version of each was kept). */
  readonly refused: readonly { key: string; errors: string[] }[];
  readonly at: number;
  /** Disabled servers (`service/server`) and their current sessions here: what `coord server drain` waits on. */
  readonly draining?: Readonly<Record<string, number>>;
}

/** The fingerprint of a service set: sorted by name, canonical JSON. `coord status` computes the same. */
export function modelFingerprint(services: readonly Service[]): string {
  const text = [...services]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map(serializeService)
    .join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * Keeps this node's HAProxy serving exactly what etcd describes: on every change under `services/`, decode (bad
 * values keep their last good version), check the set, and hand it to the driver (which debounces, validates,
 * swaps, reloads, confirms and rolls back).
 */
export class HaproxyLoop {
  /** What etcd says (last good value of each service): a bad value falls back to these. */
  private committed = new Map<string, Service>();
  /** What this node runs: `committed`, with services under a rolling rollout at the version this node is at. */
  private current = new Map<string, Service>();
  /** Running rollouts whose turn is this node's: id → when the turn started (clock.now()). */
  private readonly turns = new Map<string, { record: RolloutRecord; since: number }>();
  /** Turns being judged (gate, verdict write), by rollout id. */
  private readonly judging = new Set<string>();
  private present = new Set<string>();
  /** A rollout is running for one of the services: nodes coming and going matter. */
  private rolling = false;
  /** A turn began with this view: apply it without the quiet window (the next node waits on it). */
  private turnBegan = false;
  /** Rollouts whose new version this node already had `haproxy -c` check while it waits for its turn. */
  private readonly prechecked = new Set<string>();
  private etcd: EtcdBackend | undefined;
  private lastView: { revision: number; view: ReadonlyMap<string, Entry> } | undefined;
  private lastFingerprint: string | undefined;
  /** Apply requests handed to the driver so far (and clash verdicts): only the newest one sets the state. */
  private requests = 0;
  /** The driver run reported last (every request coalesced into one run gets the same result object). */
  private lastRun: ApplyResult | undefined;
  private state: HaproxyStatus | undefined;
  private readonly log: Logger;
  private readonly prefix: string;

  constructor(
    private readonly opts: {
      cluster: string;
      driver: HaproxyDriver;
      clock: Clock;
      logger: Logger;
      metrics?: Metrics;
      onApplied?: (s: HaproxyStatus) => void;
      /** This node's name: rolling rollouts need it (without it, every change applies at once). */
      node?: string;
      /** How long a node's new worker has to pass a rollout's gate (default 5 s). */
      gateWithinMs?: number;
    },
  ) {
    this.log = opts.logger.child({ component: 'haproxy-loop' });
    this.prefix = servicesPrefix(opts.cluster);
  }

  /** The etcd client the node runs on: rollout verdicts are written with it. */
  attachEtcd(etcd: EtcdBackend): void {
    this.etcd = etcd;
  }

  get status(): HaproxyStatus | undefined {
    if (this.state === undefined || this.draining === undefined) return this.state;
    return { ...this.state, draining: this.draining };
  }

  private draining: Record<string, number> | undefined;

  /**
   * While the model has disabled servers, read their current sessions from HAProxy (the node calls this every
   * second): `coord server drain --wait` waits until every node reports 0.
   */
  async pollDraining(): Promise<void> {
    const disabled = [...this.current.values()].flatMap((svc) =>
      svc.servers.filter((s) => s.disabled).map((s) => `${svc.name}/${s.name}`),
    );
    if (disabled.length === 0) {
      this.draining = undefined;
      return;
    }
    const sessions = await this.opts.driver.serverSessions();
    if (sessions === undefined) return;
    this.draining = Object.fromEntries(
      disabled.filter((id) => sessions.has(id)).map((id) => [id, sessions.get(id) ?? 0]),
    );
  }

  /**
   * Re-apply the current model (cheap when unchanged): restarts an HAProxy master that died behind our back.
   * Called on a timer by the node.
   */
  recheck(): void {
    // Never mix with a real change waiting in the debounce: it would take that change's place in the logs and
    // push its apply back.
    if (
      this.lastFingerprint === undefined ||
      this.state?.result === 'pending' ||
      this.opts.driver.status().pending
    ) {
      return;
    }
    const list = [...this.current.values()];
    this.opts.driver.apply(list, { reason: 'recheck' }).then(
      (r) => {
        if (r.result !== 'unchanged')
          this.log.warn('haproxy recheck changed something', { result: r.result, error: r.error });
      },
      (e: unknown) => this.log.error('haproxy recheck failed', { error: errorMessage(e) }),
    );
  }

  /** Feed the cluster view; cheap when nothing under `services/` changed. */
  onView(
    revision: number,
    changed: readonly Entry[],
    view: ReadonlyMap<string, Entry>,
    resync: boolean,
  ): void {
    this.lastView = { revision, view };
    const rollouts = rolloutsPrefix(this.opts.cluster);
    const statuses = clusterKeys(this.opts.cluster).statuses;
    const relevant = (k: string) =>
      k.startsWith(this.prefix) ||
      k.startsWith(rollouts) ||
      // A node that comes or goes can make it this node's turn.
      (this.rolling && k.startsWith(statuses));
    if (!resync && !changed.some((e) => relevant(e.key))) return;
    const entries = [...view.values()]
      .filter((e) => e.key.startsWith(this.prefix))
      .map((e) => ({ key: e.key, value: e.value }));
    const decoded = decodeServiceEntries(this.opts.cluster, entries, this.committed);
    const errors = [...decoded.errors];
    for (const e of errors) {
      this.log.error('refused a service value from etcd', {
        key: e.key,
        keptPrevious: e.keptPrevious,
        errors: e.errors.map((x) => `${x.path}: ${x.message}`),
      });
    }
    const services = this.atThisNode(decoded.services, view, statuses, rollouts, errors);
    const list = [...services.values()];
    const clashes = checkServiceSet(list);
    const refused = errors.map((e) => ({
      key: e.key,
      errors: e.errors.map((x) => `${x.path}: ${x.message}`),
    }));
    if (clashes.length > 0) {
      // A set that cannot work together is refused whole: the running config stays.
      const error = clashes.map((c) => `${c.path}: ${c.message}`).join('; ');
      this.log.error('refused the service set from etcd', { revision, error });
      // Forget the last model: an apply still in flight must not overwrite this verdict, and removing the clash
      // (back to that same model) must be applied and reported again.
      this.lastFingerprint = undefined;
      this.requests++;
      this.state = {
        revision,
        model: modelFingerprint(list),
        configHash: this.state?.configHash,
        result: 'invalid',
        error,
        refused,
        at: this.opts.clock.wallNow(),
      };
      this.opts.onApplied?.(this.state);
      return;
    }
    this.committed = decoded.services;
    this.current = services;
    const fingerprint = modelFingerprint(list);
    if (fingerprint === this.lastFingerprint && !resync && refused.length === 0) {
      this.judgeTurns();
      return;
    }
    this.lastFingerprint = fingerprint;
    const startedAt = this.opts.clock.now();
    const request = ++this.requests;
    this.state = {
      revision,
      model: fingerprint,
      configHash: this.state?.configHash,
      result: 'pending',
      error: undefined,
      refused,
      at: this.opts.clock.wallNow(),
    };
    const now = this.turnBegan;
    this.turnBegan = false;
    this.opts.driver
      .apply(list, { revision, reason: resync ? 'resync' : 'watch', ...(now ? { now } : {}) })
      .then(
        (r) => {
          // Each driver run is logged and counted once, under the revision it applied: the requests it coalesced
          // all get its result object, the oldest first. A run can end after a newer request was handed over (one
          // that arrived while it ran waits for the next run): it is still logged, the state is the newest's.
          if (r !== this.lastRun) {
            this.lastRun = r;
            this.report(r, revision, startedAt);
          }
          if (this.requests !== request) return;
          const ok = r.result === 'applied' || r.result === 'unchanged';
          this.state = {
            revision,
            model: fingerprint,
            configHash: ok ? r.hash : this.state?.configHash,
            result: r.result,
            error: r.error,
            refused,
            at: this.opts.clock.wallNow(),
          };
          this.opts.onApplied?.(this.state);
          this.judgeTurns();
        },
        (e: unknown) => this.log.error('haproxy apply failed', { revision, error: errorMessage(e) }),
      );
  }

  /** Log and count one driver run; `revision` and `startedAt` are those of the first request it served. */
  private report(r: ApplyResult, revision: number, startedAt: number): void {
    const runtime = r.result === 'applied' && r.via === 'runtime';
    this.opts.metrics?.reloads.inc({ result: runtime ? 'runtime' : r.result });
    if (r.result === 'applied' && !runtime) this.opts.metrics?.reloadSeconds.observe(r.durationMs / 1000);
    const level = r.result === 'applied' || r.result === 'unchanged' ? 'info' : 'error';
    this.log[level]('haproxy apply', {
      revision: r.revision ?? revision,
      result: r.result,
      hash: r.hash.slice(0, 12),
      ms: Math.round(r.durationMs),
      ...(r.checkMs === undefined ? {} : { checkMs: Math.round(r.checkMs) }),
      ...(r.reloadMs === undefined ? {} : { reloadMs: Math.round(r.reloadMs) }),
      ...(r.via === undefined ? {} : { via: r.via }),
      ...(r.runtimeFallback === undefined ? {} : { runtimeFallback: r.runtimeFallback }),
      ...(r.prevalidated === true ? { prevalidated: true } : {}),
      sinceChangeMs: Math.round(this.opts.clock.now() - startedAt),
      ...(r.error === undefined ? {} : { error: r.error }),
    });
  }

  /**
   * The service set this node runs now (rollout.ts): each service under a rolling rollout at the version this
   * node is at. Turns that became this node's are noted; a rollout value that does not decode is refused (the
   * service applies as etcd has it).
   */
  private atThisNode(
    services: Map<string, Service>,
    view: ReadonlyMap<string, Entry>,
    statuses: string,
    rollouts: string,
    errors: { key: string; errors: { path: string; message: string }[]; keptPrevious: boolean }[],
  ): Map<string, Service> {
    const me = this.opts.node;
    if (me === undefined) return services;
    this.present = new Set(
      [...view.keys()].filter((k) => k.startsWith(statuses)).map((k) => k.slice(statuses.length)),
    );
    const records: { record: RolloutRecord; applies: boolean }[] = [];
    for (const e of view.values()) {
      if (!e.key.startsWith(rollouts)) continue;
      const record = decodeRollout(e.value);
      if (record === undefined) {
        this.log.error('refused a rollout value from etcd; the service applies as etcd has it', {
          key: e.key,
        });
        errors.push({
          key: e.key,
          errors: [{ path: '', message: 'not a rollout record; the service applies as etcd has it' }],
          keptPrevious: false,
        });
        continue;
      }
      const value = view.get(serviceKey(this.opts.cluster, record.service))?.value;
      records.push({ record, applies: rolloutApplies(record, value) });
    }
    this.rolling = records.some((r) => r.applies && r.record.state === 'running');
    const mine = new Set<string>();
    for (const { record, applies } of records) {
      if (!applies || !isTurn(record, me, this.present)) continue;
      mine.add(record.id);
      if (!this.turns.has(record.id)) {
        this.turnBegan = true;
        this.turns.set(record.id, { record, since: this.opts.clock.now() });
        this.log.info("rollout: this node's turn", { service: record.service, id: record.id });
      } else {
        this.turns.set(record.id, {
          record,
          since: this.turns.get(record.id)?.since ?? this.opts.clock.now(),
        });
      }
    }
    for (const id of this.turns.keys()) if (!mine.has(id) && !this.judging.has(id)) this.turns.delete(id);
    const effective = effectiveServices(services, records, me, this.present);
    // Waiting for its turn: check the new version now, so the turn itself is only the reload.
    for (const { record, applies } of records) {
      const next = services.get(record.service);
      if (
        !applies ||
        next === undefined ||
        record.state !== 'running' ||
        !record.order.includes(me) ||
        record.steps[me] !== undefined ||
        mine.has(record.id) ||
        this.prechecked.has(record.id)
      )
        continue;
      this.prechecked.add(record.id);
      const then = new Map(effective).set(record.service, next);
      void this.opts.driver.prevalidate([...then.values()]);
    }
    if (this.prechecked.size > 64) this.prechecked.clear();
    return effective;
  }

  /**
   * When the apply that brought a turn's version is done (the model this node reports is the one it runs now),
   * judge it: the apply's outcome, then the gate on this node's own worker; the verdict goes to the rollout record.
   */
  private judgeTurns(): void {
    const state = this.state;
    if (state === undefined || state.result === 'pending' || state.model !== this.lastFingerprint) return;
    for (const [id, turn] of this.turns) {
      if (this.judging.has(id)) continue;
      this.judging.add(id);
      void this.judge(turn.record, turn.since, state).finally(() => {
        this.judging.delete(id);
        this.turns.delete(id);
      });
    }
  }

  private async judge(record: RolloutRecord, since: number, state: HaproxyStatus): Promise<void> {
    const { clock } = this.opts;
    const svc = this.current.get(record.service);
    let error: string | undefined;
    if (state.result !== 'applied' && state.result !== 'unchanged') {
      error = `haproxy ${state.result}: ${state.error ?? ''}`.trim();
    } else if (svc !== undefined) {
      const socket = this.opts.driver.gateSocket(svc.name);
      if (socket === undefined) {
        this.log.warn(
          'rollout: no gate socket for this service (its path would be too long); the confirmed reload is the gate',
          {
            service: svc.name,
          },
        );
      } else {
        const check = svc.rolloutCheck ?? 'tcp';
        const gate = await probeGate(clock, socket, check, this.opts.gateWithinMs ?? 5000);
        if (!gate.ok) error = `gate ${check}: ${gate.error}`;
      }
    }
    const step = {
      state: error === undefined ? ('ok' as const) : ('failed' as const),
      at: clock.wallNow(),
      ms: Math.round(clock.now() - since),
      ...(error === undefined ? {} : { error: error.slice(0, 2000) }),
    };
    const me = this.opts.node as string;
    this.log[error === undefined ? 'info' : 'error']('rollout step', {
      service: record.service,
      id: record.id,
      result: step.state,
      ms: step.ms,
      ...(error === undefined ? {} : { error }),
    });
    if (this.etcd === undefined) return;
    try {
      await updateKey(this.etcd, rolloutKey(this.opts.cluster, record.service), (value) => {
        const now = value === undefined ? undefined : decodeRollout(value);
        if (
          now === undefined ||
          now.id !== record.id ||
          now.state !== 'running' ||
          now.steps[me] !== undefined
        )
          return { unchanged: true };
        return { put: encodeRollout(withVerdict(now, me, step, this.present)) };
      });
    } catch (e) {
      // The turn stays this node's: the next view change (or the recheck) judges it again.
      this.log.error("rollout: could not record this node's result", {
        service: record.service,
        error: errorMessage(e),
      });
      clock.setTimeout(() => this.revisit(), 1000);
    }
  }

  /** Evaluate the last view again (after a verdict could not be written). */
  private revisit(): void {
    if (this.lastView === undefined) return;
    this.lastFingerprint = undefined;
    this.onView(this.lastView.revision, [], this.lastView.view, true);
  }
}
