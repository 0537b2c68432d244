/**
 * One way to connect for every command: the node's config file (--config, else /etc/coord/coord.yaml when it
 * exists), overridden by flags and COORD_* variables, validated by the same schema `coord join` uses, then
 * resolved (TLS files read, password from its file or COORD_ETCD_PASSWORD). `coord status` on a node needs no
 * flags.
 */
import { existsSync } from 'node:fs';
import {
  CoordError,
  DEFAULT_CONFIG_PATH,
  isCoordError,
  readConfigFile,
  splitList,
  validateConnectionSettings,
  type ConnectionSettings,
} from '@coord/core';
import {
  createEtcdBackend,
  createGatewayReader,
  diagnoseTls,
  GatewayUnavailable,
  loadConnection,
  type EtcdBackend,
  type EtcdConnection,
  type EtcdReader,
} from '@coord/etcd';

/** The connection flags, as yargs hands them over. */
export interface ConnectionArgs {
  config?: string | undefined;
  etcd?: string[] | undefined;
  etcdCacert?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
  etcdUser?: string | undefined;
  etcdPasswordFile?: string | undefined;
  cluster?: string | undefined;
  timeout?: number | undefined;
}

export const DEFAULT_TIMEOUT_SEC = 5;

/** The config file a command reads: --config, else the default path when it exists; `--config ''` reads none. */
export function configPath(a: { config?: string | undefined }): string | undefined {
  if (a.config === '') return undefined;
  if (a.config !== undefined) return a.config;
  return existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined;
}

/** The raw config file (or nothing), read as every command reads it. */
export async function readNodeFile(a: { config?: string | undefined }): Promise<{
  path: string | undefined;
  raw: Record<string, unknown>;
}> {
  const path = configPath(a);
  return { path, raw: path === undefined ? {} : await readConfigFile(path) };
}

/** The file's raw config with the connection flags applied over its `etcd` and `cluster` (not yet validated). */
export function applyConnectionFlags(
  raw: Record<string, unknown>,
  a: ConnectionArgs,
): Record<string, unknown> {
  const fileEtcd = raw.etcd;
  const etcd: Record<string, unknown> = Array.isArray(fileEtcd)
    ? { endpoints: fileEtcd }
    : typeof fileEtcd === 'object' && fileEtcd !== null
      ? { ...fileEtcd }
      : {};
  if (a.etcd !== undefined) etcd.endpoints = splitList(a.etcd);
  if (a.etcdCacert !== undefined) etcd.cacert = a.etcdCacert;
  if (a.etcdCert !== undefined) etcd.cert = a.etcdCert;
  if (a.etcdKey !== undefined) etcd.key = a.etcdKey;
  if (a.etcdUser !== undefined) etcd.user = a.etcdUser;
  if (a.etcdPasswordFile !== undefined) etcd.passwordFile = a.etcdPasswordFile;
  return { ...raw, etcd, ...(a.cluster === undefined ? {} : { cluster: a.cluster }) };
}

/** Merge the connection flags over the file's `etcd` and `cluster`, and validate the result. */
export function mergeConnection(
  raw: Record<string, unknown>,
  a: ConnectionArgs,
  source: string,
): ConnectionSettings {
  const r = validateConnectionSettings(applyConnectionFlags(raw, a));
  if (!r.ok) {
    const first = r.issues[0];
    throw new CoordError('ERR_COORD_CONFIG', `${source}: ${first?.path}: ${first?.message}`, {
      hint: first?.hint ?? 'fix the setting named above',
      details: { issues: r.issues },
    });
  }
  return r.settings;
}

export interface Target {
  readonly connection: EtcdConnection;
  readonly cluster: string;
  readonly timeoutMs: number;
}

/** Resolve where to connect for a one-shot command; `cluster` is required. */
export async function resolveTarget(a: ConnectionArgs): Promise<Target> {
  const { path, raw } = await readNodeFile(a);
  const settings = mergeConnection(raw, a, path ?? 'flags');
  if (settings.etcd.endpoints.length === 0)
    throw new CoordError(
      'ERR_COORD_USAGE',
      'no etcd endpoint: give --etcd or a config file with etcd.endpoints',
      {
        hint: `e.g. --etcd https://10.0.0.2:2379, or run it on a node (${DEFAULT_CONFIG_PATH}) or with --config FILE`,
      },
    );
  if (settings.cluster === undefined)
    throw new CoordError('ERR_COORD_USAGE', 'no cluster: give --cluster or a config file with cluster:', {
      hint: `e.g. --cluster prod, or run it on a node (${DEFAULT_CONFIG_PATH}) or with --config FILE`,
    });
  const timeoutSec = a.timeout ?? DEFAULT_TIMEOUT_SEC;
  if (!(timeoutSec > 0 && timeoutSec <= 600))
    throw new CoordError(
      'ERR_COORD_USAGE',
      // yargs turns a value that is not a number into NaN before we see it: say so rather than "got NaN".
      `--timeout must be 0-600 seconds, got ${Number.isNaN(a.timeout) ? 'a value that is not a number' : String(a.timeout)}`,
      { hint: 'e.g. --timeout 5 (or COORD_TIMEOUT=5, which sets the same option)' },
    );
  const timeoutMs = Math.round(timeoutSec * 1000);
  return {
    connection: loadConnection(settings.etcd, { callTimeoutMs: timeoutMs }),
    cluster: settings.cluster,
    timeoutMs,
  };
}

/**
 * Run `fn` against etcd and fail within the timeout: a cut-off or unreachable etcd is reported as such after
 * `--timeout` seconds, whatever the client's own retries would do.
 */
export async function withEtcd<T>(
  t: Target,
  fn: (etcd: EtcdBackend, cluster: string) => Promise<T>,
  /** Time `fn` spends waiting on purpose (a rollout it follows), on top of etcd's answer time. */
  waitsMs = 0,
  /** Time of the timeout already spent before this call (a read that tried etcd's gateway first). */
  spentMs = 0,
): Promise<T> {
  const etcd = createEtcdBackend(t.connection);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        reject(
          new CoordError(
            'ERR_COORD_ETCD',
            `etcd at ${t.connection.endpoints.join(',')} did not answer within ${t.timeoutMs / 1000} s${waitsMs > 0 ? ` (after waiting ${waitsMs / 1000} s)` : ''}`,
            {
              hint: 'check that the endpoints are reachable from here and the etcd cluster has quorum (or raise --timeout)',
              details: { kind: 'deadline' },
            },
          ),
        );
      },
      t.timeoutMs + waitsMs - spentMs,
    );
  });
  try {
    return await Promise.race([fn(etcd, t.cluster), deadline]);
  } catch (e) {
    // grpc-js hides why a TLS connection failed: one handshake of our own names the cause.
    const kind = isCoordError(e) ? e.details?.kind : undefined;
    if (
      t.connection.tls !== undefined &&
      (kind === 'unavailable' || kind === 'deadline' || kind === 'other')
    ) {
      const problem = await diagnoseTls(t.connection);
      if (problem !== undefined)
        throw new CoordError('ERR_COORD_ETCD', `etcd: ${problem.message}`, {
          hint: problem.hint,
          cause: e,
          details: { kind: problem.kind },
        });
    }
    throw e;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    etcd.close();
  }
}

/** How long a read waits for etcd's JSON gateway before it asks over gRPC instead. */
const GATEWAY_TIMEOUT_MS = 1000;

/**
 * Run a read-only `fn` against etcd: over etcd's JSON gateway unless a client certificate names us (gateway.ts in
 * @coord/etcd), which spares the command loading the gRPC client; if the gateway does not answer or refuses,
 * `fn` runs again over gRPC (withEtcd) in what is left of --timeout, and reports failures as every command does.
 */
export async function withEtcdReader<T>(
  t: Target,
  fn: (etcd: EtcdReader, cluster: string) => Promise<T>,
): Promise<T> {
  const started = performance.now();
  const gateway = createGatewayReader(t.connection, {
    timeoutMs: Math.min(GATEWAY_TIMEOUT_MS, t.timeoutMs / 2),
  });
  if (gateway !== undefined) {
    try {
      return await fn(gateway, t.cluster);
    } catch (e) {
      if (!(e instanceof GatewayUnavailable)) throw e;
    } finally {
      gateway.close();
    }
  }
  // One --timeout for the whole read: what the gateway took is not given again.
  return withEtcd(t, fn, 0, performance.now() - started);
}
