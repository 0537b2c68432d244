/**
 * Reads over etcd's JSON gateway (grpc-gateway: `POST /v3/kv/range`, `POST /v3/auth/authenticate`), so the
 * one-shot read commands (`coord status`, `coord service list`) answer without starting the gRPC client: loading
 * grpc-js and etcd3's protobuf definitions is most of such a command's time (docs/design.md, "Footprint").
 *
 * Only reads, and only without a client certificate: etcd serves the gateway by calling itself over gRPC with its
 * *server* certificate, so it refuses a request whose client certificate would name the user (etcd 3.4 answers
 * HTTP 400 "CommonName of client sending a request against gateway will be ignored": etcd-io/etcd#10366,
 * CVE-2018-16886). Plaintext, server-verified TLS, and a password user (the token names the user) go through it.
 * Any failure (no gateway: `--enable-grpc-gateway=false`, a refusal, a slow answer) is a GatewayUnavailable: the
 * caller reads over gRPC instead, which reports the error as every other command does.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import type { EtcdReader, Entry } from './backend.js';
import type { EtcdConnection } from './connection.js';

/** The gateway cannot answer this read; read over gRPC instead. */
export class GatewayUnavailable extends Error {
  override readonly name = 'GatewayUnavailable';
}

/** The end of the range of keys under `prefix` (etcd's prefix end: the prefix with its last byte raised). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const b = end[i] ?? 0;
    if (b < 0xff) {
      end[i] = b + 1;
      return end.subarray(0, i + 1);
    }
  }
  // Every byte 0xff (or empty): to the end of the keyspace.
  return Buffer.from([0]);
}

/** Whether reads may go through the gateway with this connection (see the header). */
export function gatewayUsable(conn: EtcdConnection): boolean {
  return conn.tls?.cert === undefined;
}

interface RawKv {
  key?: unknown;
  value?: unknown;
  create_revision?: unknown;
  mod_revision?: unknown;
  lease?: unknown;
}

/** etcd's JSON marshals int64 as a decimal string and leaves out zero values. */
function int64(v: unknown, what: string): string {
  if (v === undefined) return '0';
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  throw new GatewayUnavailable(`unexpected ${what} in the gateway's answer`);
}

function bytes(v: unknown, what: string): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  if (typeof v !== 'string') throw new GatewayUnavailable(`unexpected ${what} in the gateway's answer`);
  return Buffer.from(v, 'base64');
}

function toEntry(kv: RawKv): Entry {
  return {
    key: bytes(kv.key, 'key').toString(),
    value: bytes(kv.value, 'value'),
    createRevision: Number(int64(kv.create_revision, 'create_revision')),
    modRevision: Number(int64(kv.mod_revision, 'mod_revision')),
    lease: int64(kv.lease, 'lease'),
  };
}

export function parseRangeAnswer(body: unknown): { revision: number; entries: Entry[] } {
  const r = body as { header?: { revision?: unknown }; kvs?: unknown };
  if (typeof r !== 'object' || r === null || typeof r.header !== 'object' || r.header === null)
    throw new GatewayUnavailable('the gateway answered without a header');
  const kvs = r.kvs ?? [];
  if (!Array.isArray(kvs)) throw new GatewayUnavailable("unexpected kvs in the gateway's answer");
  return {
    revision: Number(int64(r.header.revision, 'revision')),
    entries: kvs.map((kv) => toEntry(kv as RawKv)),
  };
}

/**
 * A reader over the gateway, or undefined when the connection cannot go through it. It gives up `timeoutMs` after
 * it was created, over all its requests together (the caller keeps the rest of its deadline for gRPC). The first
 * endpoint that answers is kept for the following reads.
 */
export function createGatewayReader(
  conn: EtcdConnection,
  opts: { timeoutMs: number },
): EtcdReader | undefined {
  if (!gatewayUsable(conn)) return undefined;
  const givesUpAt = performance.now() + opts.timeoutMs;
  const ca = conn.tls?.ca;
  const http = { request: httpRequest, agent: new HttpAgent({ keepAlive: true }) };
  // node:https (and with it node:tls) only for https endpoints: a plaintext read need not load them. No client
  // certificate here (gatewayUsable); the server's is checked against --etcd-cacert, else the system's CAs.
  let https: Promise<typeof http> | undefined;
  const transport = (protocol: string): Promise<typeof http> => {
    if (protocol !== 'https:') return Promise.resolve(http);
    https ??= import('node:https').then((m) => ({
      request: m.request,
      agent: new m.Agent({ keepAlive: true, ...(ca === undefined ? {} : { ca }) }),
    }));
    return https;
  };
  let endpoints = [...conn.endpoints];
  const tokens = new Map<string, string>();

  async function post(endpoint: string, path: string, body: unknown, token?: string): Promise<unknown> {
    const url = new URL(path, endpoint.endsWith('/') ? endpoint : `${endpoint}/`);
    const { request, agent } = await transport(url.protocol);
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(url, {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          ...(token === undefined ? {} : { authorization: token }),
        },
      });
      const timer = setTimeout(
        () => req.destroy(new GatewayUnavailable(`no answer within ${opts.timeoutMs} ms`)),
        Math.max(0, givesUpAt - performance.now()),
      );
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e instanceof GatewayUnavailable ? e : new GatewayUnavailable(`${url.host}: ${e.message}`));
      });
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(new GatewayUnavailable(`${url.host}: ${e.message}`));
        });
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString();
          if (res.statusCode !== 200) {
            reject(
              new GatewayUnavailable(
                `${url.host}${url.pathname}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`,
              ),
            );
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new GatewayUnavailable(`${url.host}${url.pathname}: not JSON`));
          }
        });
      });
      req.end(payload);
    });
  }

  async function tokenFor(endpoint: string): Promise<string | undefined> {
    if (conn.auth === undefined) return undefined;
    const known = tokens.get(endpoint);
    if (known !== undefined) return known;
    const res = (await post(endpoint, 'v3/auth/authenticate', {
      name: conn.auth.user,
      password: conn.auth.password,
    })) as { token?: unknown };
    if (typeof res.token !== 'string' || res.token === '')
      throw new GatewayUnavailable('the gateway answered authenticate without a token');
    tokens.set(endpoint, res.token);
    return res.token;
  }

  /** Ask each endpoint in turn; the first that answers is asked first from then on. */
  async function range(body: Record<string, string>): Promise<{ revision: number; entries: Entry[] }> {
    let last: unknown;
    for (const endpoint of endpoints) {
      try {
        const res = parseRangeAnswer(await post(endpoint, 'v3/kv/range', body, await tokenFor(endpoint)));
        endpoints = [endpoint, ...endpoints.filter((e) => e !== endpoint)];
        return res;
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof GatewayUnavailable ? last : new GatewayUnavailable(String(last));
  }

  return {
    range: (prefix) =>
      range({ key: Buffer.from(prefix).toString('base64'), range_end: prefixEnd(prefix).toString('base64') }),
    get: async (key) => {
      const r = await range({ key: Buffer.from(key).toString('base64') });
      return { revision: r.revision, entry: r.entries[0] };
    },
    close: () => {
      http.agent.destroy();
      void https?.then((t) => t.agent.destroy());
    },
  };
}
