import { Etcd3, EtcdError } from 'etcd3';
import { CoordError, errorMessage } from '@coord/core';

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

/** The etcd3 client, re-exported by name so no other package imports etcd3. */
export type EtcdClient = Etcd3;

/** The one place an etcd3 client is built. */
export function createEtcdClient(opts: EtcdOptions): Etcd3 {
  const callTimeoutMs = opts.callTimeoutMs ?? 2000;
  return new Etcd3({
    hosts: [...opts.endpoints],
    dialTimeout: opts.dialTimeoutMs ?? 2000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    grpcOptions: {
      // Detect a silently dead connection (etcd allows pings every 5 s by default).
      'grpc.keepalive_time_ms': 5000,
      'grpc.keepalive_timeout_ms': 2000,
      'grpc.keepalive_permit_without_calls': 1,
    },
  });
}

/** Translate any etcd3/gRPC failure into a CoordError once, at this boundary. */
export function etcdError(action: string, e: unknown): CoordError {
  if (e instanceof CoordError) return e;
  const name = e instanceof EtcdError ? e.constructor.name : e instanceof Error ? e.name : 'Error';
  return new CoordError('ERR_COORD_ETCD', `etcd: ${action} failed: ${errorMessage(e)}`, {
    cause: e,
    hint: 'check that the --etcd endpoints are reachable from this node and the etcd cluster has quorum',
    details: { errorName: name },
  });
}
