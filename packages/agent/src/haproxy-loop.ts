import { createHash } from 'node:crypto';
import { errorMessage, type Clock, type Logger } from '@coord/core';
import type { Entry } from '@coord/etcd';
import {
  checkServiceSet,
  decodeServiceEntries,
  serializeService,
  servicesPrefix,
  type ApplyResult,
  type HaproxyDriver,
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
  private current = new Map<string, Service>();
  private lastFingerprint: string | undefined;
  /** Apply requests handed to the driver so far (and clash verdicts): only the newest one reports its result. */
  private requests = 0;
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
    },
  ) {
    this.log = opts.logger.child({ component: 'haproxy-loop' });
    this.prefix = servicesPrefix(opts.cluster);
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
    if (!resync && !changed.some((e) => e.key.startsWith(this.prefix))) return;
    const entries = [...view.values()]
      .filter((e) => e.key.startsWith(this.prefix))
      .map((e) => ({ key: e.key, value: e.value }));
    const { services, errors } = decodeServiceEntries(this.opts.cluster, entries, this.current);
    for (const e of errors) {
      this.log.error('refused a service value from etcd', {
        key: e.key,
        keptPrevious: e.keptPrevious,
        errors: e.errors.map((x) => `${x.path}: ${x.message}`),
      });
    }
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
    this.current = services;
    const fingerprint = modelFingerprint(list);
    if (fingerprint === this.lastFingerprint && !resync && refused.length === 0) return;
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
    this.opts.driver.apply(list, { revision, reason: resync ? 'resync' : 'watch' }).then(
      (r) => {
        // A newer request may have been handed over meanwhile (the driver coalesces them into one apply, whose
        // result every request then gets): report only the newest, so one apply is logged and counted once.
        if (this.requests !== request) return;
        const runtime = r.result === 'applied' && r.via === 'runtime';
        this.opts.metrics?.reloads.inc({ result: runtime ? 'runtime' : r.result });
        if (r.result === 'applied' && !runtime) this.opts.metrics?.reloadSeconds.observe(r.durationMs / 1000);
        const level = r.result === 'applied' || r.result === 'unchanged' ? 'info' : 'error';
        this.log[level]('haproxy apply', {
          revision,
          result: r.result,
          hash: r.hash.slice(0, 12),
          ms: Math.round(r.durationMs),
          ...(r.checkMs === undefined ? {} : { checkMs: Math.round(r.checkMs) }),
          ...(r.via === undefined ? {} : { via: r.via }),
          ...(r.runtimeFallback === undefined ? {} : { runtimeFallback: r.runtimeFallback }),
          sinceChangeMs: Math.round(this.opts.clock.now() - startedAt),
          ...(r.error === undefined ? {} : { error: r.error }),
        });
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
      },
      (e: unknown) => this.log.error('haproxy apply failed', { revision, error: errorMessage(e) }),
    );
  }
}
