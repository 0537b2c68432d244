/**
 * The one place etcd3 is used: an {@link EtcdBackend} over an etcd3 client, with fault handling chosen for a
 * coordinator and every failure translated into a CoordError once.
 */
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type IWatchResponse,
  type Watcher,
} from 'etcd3';
import {
  circuitBreaker,
  ConsecutiveBreaker,
  ConstantBackoff,
  ExponentialBackoff,
  handleWhen,
  isBrokenCircuitError,
  retry,
} from 'cockatiel';
import { CoordError, errorMessage } from '@coord/core';
import type { EtcdBackend, Entry, KeepaliveHandlers, KeepaliveStream, TxnOp, WatchEvent } from './backend.js';

export interface EtcdOptions {
  /** `http://host:2379` URLs. */
  readonly endpoints: readonly string[];
  /** Deadline for each unary call: a cut-off etcd must fail fast, not hang. */
  readonly callTimeoutMs?: number;
  readonly dialTimeoutMs?: number;
}

/** Validate endpoint URLs up front so a typo is a config error, not a hang. */
export function parseEndpoints(text: string | readonly string[]): string[] {
  const list = (typeof text === 'string' ? text.split(',') : text.flatMap((t) => t.split(',')))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (list.length === 0) {
    throw new CoordError('ERR_COORD_CONFIG', 'etcd: no endpoint given', {
      hint: 'pass --etcd http://HOST:2379[,http://HOST2:2379]',
    });
  }
  for (const e of list) {
    let url: URL;
    try {
      url = new URL(e);
    } catch {
      throw new CoordError('ERR_COORD_CONFIG', `etcd: "${e}" is not a URL`, {
        hint: 'write endpoints as http://HOST:2379',
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new CoordError('ERR_COORD_CONFIG', `etcd: "${e}" must start with http:// or https://`, {
        hint: 'write endpoints as http://HOST:2379',
      });
    }
  }
  return list;
}

/**
 * How long a host stays refused after three consecutive failures. etcd3's default is 5 s, which kept a node's
 * calls failing for 5-8 s after a cut to etcd had healed (docs/design.md, "etcd client"); a coordinator wants a
 * healed link usable within half a second.
 */
export const HOST_HALF_OPEN_MS = 400;

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

/** Build the etcd3 client the way a coordinator needs it (see {@link HOST_HALF_OPEN_MS}). */
function createClient(opts: EtcdOptions): Etcd3 {
  const callTimeoutMs = opts.callTimeoutMs ?? 2000;
  return new Etcd3({
    hosts: [...opts.endpoints],
    dialTimeout: opts.dialTimeoutMs ?? 2000,
    // grpc-js turns the absolute deadline into a relative timeout when the call starts, so a wall-clock jump
    // between these two lines is the only exposure to the wall clock.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: HOST_HALF_OPEN_MS,
          breaker: new ConsecutiveBreaker(3),
        }),
      // Our own loops retry (lease grant, view resync, campaign backoff): one call is one attempt per host.
      global: retry(handleWhen(isRecoverableError), {
        maxAttempts: Math.max(0, opts.endpoints.length - 1),
        backoff: new ConstantBackoff(0),
      }),
      // etcd3 calls next() on this and reads `duration` (cockatiel 3's factory shape, typed as an older one).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as WatchBackoff,
    },
    grpcOptions: {
      // Detect a silently dead connection (etcd allows pings every 5 s by default).
      'grpc.keepalive_time_ms': 5000,
      'grpc.keepalive_timeout_ms': 2000,
      'grpc.keepalive_permit_without_calls': 1,
      // grpc-js waits up to 120 s between reconnects by default; a healed link must be used at once.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    },
  });
}

/** What kind of failure an etcd error is, with the hint an operator needs for it. */
function classify(e: unknown): { kind: string; hint: string } {
  if (e instanceof EtcdAuthenticationFailedError || e instanceof GRPCUnauthenticatedError)
    return { kind: 'auth-failed', hint: 'check the etcd user name and password this node uses' };
  if (e instanceof EtcdPermissionDeniedError)
    return {
      kind: 'permission-denied',
      hint: "the etcd user lacks a permission on coord's keys; check its role",
    };
  if (e instanceof EtcdLeaseInvalidError)
    return { kind: 'lease-not-found', hint: 'the lease expired in etcd; coord grants a new one by itself' };
  if (e instanceof GRPCDeadlineExceededError)
    return {
      kind: 'deadline',
      hint: 'etcd did not answer in time: check the network path to etcd and its load',
    };
  if (e instanceof GRPCUnavailableError || isBrokenCircuitError(e))
    return {
      kind: 'unavailable',
      hint: 'check that the --etcd endpoints are reachable from this node and the etcd cluster has quorum',
    };
  return {
    kind: 'other',
    hint: 'check that the --etcd endpoints are reachable from this node and the etcd cluster has quorum',
  };
}

/** Translate any etcd3/gRPC failure into a CoordError once, at this boundary. */
export function etcdError(action: string, e: unknown): CoordError {
  if (e instanceof CoordError) return e;
  const { kind, hint } = classify(e);
  const name = e instanceof Error ? e.constructor.name : 'Error';
  return new CoordError('ERR_COORD_ETCD', `etcd: ${action} failed: ${errorMessage(e)}`, {
    cause: e,
    hint,
    details: { errorName: name, kind },
  });
}

function toEntry(kv: IKeyValue): Entry {
  return {
    key: kv.key.toString(),
    value: kv.value,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    lease: String(kv.lease),
  };
}

function requestOp(op: TxnOp): IRequestOp {
  const key = Buffer.from(op.key);
  switch (op.type) {
    case 'put':
      return {
        request_put: {
          key,
          value: Buffer.from(op.value),
          ...(op.lease === undefined ? {} : { lease: op.lease }),
          ...(op.prevKv === true ? { prev_kv: true } : {}),
        },
      };
    case 'delete':
      return { request_delete_range: { key } };
    case 'get':
      return { request_range: { key } };
  }
}

/** Wrap a call so every failure is a CoordError naming what was attempted. */
async function call<T>(action: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw etcdError(action, e);
  }
}

interface RawKeepaliveStream {
  write(req: { ID: string }): unknown;
  on(event: string, fn: (...args: never[]) => void): unknown;
  end(): unknown;
  removeAllListeners(): unknown;
}

/** The production backend: etcd3 with a coordinator's fault handling. */
export function createEtcdBackend(opts: EtcdOptions): EtcdBackend {
  const client = createClient(opts);
  return {
    grant: (ttlSec) =>
      call('lease grant', async () => {
        const res = await client.leaseClient.leaseGrant({ TTL: ttlSec });
        return { leaseId: String(res.ID), ttlSec: Number(res.TTL), revision: Number(res.header.revision) };
      }),
    revoke: (leaseId) =>
      call('lease revoke', async () => {
        await client.leaseClient.leaseRevoke({ ID: leaseId });
      }),
    keepalive: (handlers: KeepaliveHandlers) =>
      call('lease keepalive', async () => {
        const raw = (await client.leaseClient.leaseKeepAlive()) as unknown as RawKeepaliveStream;
        let open = true;
        const fail = (err: Error): void => {
          if (!open) return;
          open = false;
          handlers.onError(err);
        };
        raw.on('data', (res: { ID: string; TTL: string }) => {
          if (open) handlers.onAck(String(res.ID), Number(res.TTL));
        });
        raw.on('error', (err: Error) => fail(etcdError('lease keepalive', err)));
        raw.on('end', () => fail(new Error('keepalive stream ended')));
        const stream: KeepaliveStream = {
          send(leaseId) {
            if (!open) throw new Error('keepalive stream closed');
            raw.write({ ID: leaseId });
          },
          close() {
            open = false;
            raw.removeAllListeners();
            raw.on('error', () => {});
            try {
              raw.end();
            } catch {
              // already closed
            }
          },
        };
        return stream;
      }),
    range: (prefix) =>
      call(`reading ${prefix}`, async () => {
        const res = await client.getAll().prefix(prefix).exec();
        return { revision: Number(res.header.revision), entries: res.kvs.map(toEntry) };
      }),
    get: (key) =>
      call(`reading ${key}`, async () => {
        const res = await client.get(key).exec();
        const kv = res.kvs[0];
        return { revision: Number(res.header.revision), entry: kv === undefined ? undefined : toEntry(kv) };
      }),
    put: (key, value, lease) =>
      call(`writing ${key}`, async () => {
        const b = client.put(key).value(value);
        const res = await (lease === undefined ? b : b.lease(lease)).exec();
        return { revision: Number(res.header.revision) };
      }),
    txn: (compares, success, failure = []) =>
      call('transaction', async () => {
        const first = compares[0];
        if (first === undefined) throw new Error('a transaction needs a comparison');
        const target = (c: { target: 'create' | 'mod' }) => (c.target === 'create' ? 'Create' : 'Mod');
        let builder = client.if(first.key, target(first), '==', first.value);
        for (const c of compares.slice(1)) builder = builder.and(c.key, target(c), '==', c.value);
        const res = await builder
          .then(...success.map(requestOp))
          .else(...failure.map(requestOp))
          .commit();
        const ops = res.succeeded ? success : failure;
        const results = ops.map((op, i): Entry | undefined => {
          const r = res.responses[i];
          if (op.type === 'put' && r?.response_put?.prev_kv != null) return toEntry(r.response_put.prev_kv);
          if (op.type === 'get') {
            const kv = r?.response_range?.kvs?.[0];
            return kv === undefined ? undefined : toEntry(kv);
          }
          return undefined;
        });
        return { succeeded: res.succeeded, revision: Number(res.header.revision), results };
      }),
    watch: (prefix, fromRevision, handlers) =>
      call(`watching ${prefix}`, async () => {
        const watcher: Watcher = await client
          .watch()
          .prefix(prefix)
          .startRevision(String(fromRevision))
          .create();
        watcher.on('data', (r: IWatchResponse) => {
          const events = r.events.map((ev): WatchEvent => ({
            type: ev.type === 'Delete' ? 'delete' : 'put',
            entry: toEntry(ev.kv),
          }));
          handlers.onEvents(Number(r.header.revision), events);
        });
        watcher.on('disconnected', () => handlers.onDisconnected());
        watcher.on('connected', () => handlers.onConnected());
        watcher.on('error', (err: Error) => handlers.onError(etcdError(`watching ${prefix}`, err)));
        watcher.on('end', () => handlers.onError(new Error('watch ended')));
        return {
          async cancel() {
            watcher.removeAllListeners();
            watcher.on('error', () => {});
            await watcher.cancel().catch(() => undefined);
          },
        };
      }),
    close: () => client.close(),
  };
}
