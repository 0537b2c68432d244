/**
 * The one place etcd3 is used: an {@link EtcdBackend} over an etcd3 client, with fault handling chosen for a
 * coordinator and every failure translated into a CoordError once.
 */
import type { Etcd3, IKeyValue, IOptions, IRequestOp, IWatchResponse, Watcher } from 'etcd3';
import { commonJs, CoordError, errorMessage, etcdEndpointRule, splitList } from '@coord/core';
import type {
  BroadcastLane,
  Compare,
  EtcdBackend,
  Entry,
  KeepaliveHandlers,
  KeepaliveStream,
  TxnOp,
  TxnResult,
  WatchEvent,
} from './backend.js';
import { readTls, type EtcdConnection } from './connection.js';
import type { KeepaliveAnswer } from './keepalive-codec.js';
import { MemberChoice, type MemberSwitch } from './members.js';
import type { RoleSpec } from './roles.js';
import { StandbyStreams, type IdleStream } from './standby.js';

/** Split and check endpoint arguments (`--etcd a,b --etcd c`); credentials in a URL are refused unechoed. */
export function parseEndpoints(text: string | readonly string[]): string[] {
  const list = splitList(text);
  if (list.length === 0) {
    throw new CoordError('ERR_COORD_CONFIG', 'etcd: no endpoint given', {
      hint: 'pass --etcd http://HOST:2379[,http://HOST2:2379]',
    });
  }
  return list.map((e) => {
    const r = etcdEndpointRule(e);
    if (!r.ok)
      throw new CoordError('ERR_COORD_CONFIG', `etcd: ${r.reason}`, {
        hint: 'write endpoints as http://HOST:2379 or https://HOST:2379',
      });
    return r.value;
  });
}

/**
 * How long a host stays refused after three consecutive failures. etcd3's default is 5 s, which kept a node's
 * calls failing for 5-8 s after a cut to etcd had healed (docs/design.md, "etcd client"); a coordinator wants a
 * healed link usable within half a second.
 */
export const HOST_HALF_OPEN_MS = 400;

type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

interface Libs {
  readonly etcd3: typeof import('etcd3');
  readonly cockatiel: typeof import('cockatiel');
  readonly codec: typeof import('./keepalive-codec.js');
}
let libs: Libs | undefined;

/**
 * etcd3 (and cockatiel) load on first use, not when this module does: with grpc-js and its protobuf definitions
 * they are most of a one-shot command's start-up, and the read commands mostly go through etcd's JSON gateway
 * instead (gateway.ts). Imported statically, they would load with every command that imports this package at all
 * (docs/design.md, "Footprint: what a command loads").
 */
async function loadLibs(): Promise<Libs> {
  libs ??= {
    etcd3: commonJs(await import('etcd3')),
    cockatiel: commonJs(await import('cockatiel')),
    codec: await import('./keepalive-codec.js'),
  };
  return libs;
}

/**
 * A broadcast goes out only when the ordinary write has not been answered this long: otherwise its copies raced
 * the write on a healthy path, and the write found its comparison false (a handover logged as "did not apply").
 * Above the 125 ms ack window, the round trip a loaded machine is expected to manage.
 */
const BROADCAST_AFTER_MS = 200;

/** How long a unary call waits for its answer when the connection does not say (`EtcdConnection.callTimeoutMs`). */
const DEFAULT_CALL_TIMEOUT_MS = 2000;

/**
 * How long a lease grant waits for its member: one TTL (or the call timeout, when shorter). A member that takes
 * longer is stalled or not serving yet (a restarted member still catching up accepts the call and holds it), and
 * the lease it would grant is worth less the longer it takes (the session times it from when it asked). Past that,
 * the next member is asked: after etcd's quorum came back, a grant sent to the member still restarting kept a node
 * without a lease for the whole call timeout (docs/design.md, "etcd client: one member at a time").
 */
function grantWaitMs(ttlSec: number): number {
  return ttlSec * 1000;
}

/**
 * Build the etcd3 client the way a coordinator needs it (see {@link HOST_HALF_OPEN_MS}), for `hosts` (default:
 * every endpoint; a node's backend builds one client per member, members.ts). `standby`: a standby client
 * (standby.ts), whose connection must have nothing in flight when it is needed: no HTTP/2 keepalive pings, and a
 * connection of its own (grpc-js otherwise shares one among channels with the same options: the two lanes'
 * clients, see {@link BroadcastLane}).
 */
function buildClient(
  { etcd3, cockatiel }: Libs,
  opts: EtcdConnection,
  hosts: readonly string[] = opts.endpoints,
  { standby = false }: { standby?: boolean } = {},
): Etcd3 {
  const { Etcd3, isRecoverableError } = etcd3;
  const { circuitBreaker, ConsecutiveBreaker, ConstantBackoff, ExponentialBackoff, handleWhen, retry } =
    cockatiel;
  const callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const tls = opts.tls;
  return new Etcd3({
    hosts: [...hosts],
    dialTimeout: opts.dialTimeoutMs ?? Math.min(callTimeoutMs, 2000),
    ...(tls === undefined
      ? {}
      : {
          credentials: {
            // A Buffer of the system's roots is not needed: without a CA file grpc-js uses its default roots.
            ...(tls.ca === undefined ? {} : { rootCertificate: tls.ca }),
            ...(tls.cert === undefined ? {} : { certChain: tls.cert }),
            ...(tls.key === undefined ? {} : { privateKey: tls.key }),
          } as { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer },
        }),
    ...(opts.auth === undefined
      ? {}
      : {
          auth: {
            username: opts.auth.user,
            password: opts.auth.password,
            callOptions: { deadline: Date.now() + callTimeoutMs },
          },
        }),
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
        maxAttempts: Math.max(0, hosts.length - 1),
        backoff: new ConstantBackoff(0),
      }),
      // etcd3 calls next() on this and reads `duration` (cockatiel 3's factory shape, typed as an older one).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as WatchBackoff,
    },
    grpcOptions: {
      // Detect a silently dead connection (etcd allows pings every 5 s by default).
      'grpc.keepalive_time_ms': standby ? -1 : 5000,
      'grpc.keepalive_timeout_ms': 2000,
      'grpc.keepalive_permit_without_calls': 1,
      // grpc-js waits up to 120 s between reconnects by default; a healed link must be used at once.
      'grpc.initial_reconnect_backoff_ms': 100,
      // At most half a second between reconnects: after an etcd outage every node is back within that (a lease
      // kept through it lives TTL + an election timeout after etcd's return).
      'grpc.max_reconnect_backoff_ms': 500,
      ...(standby ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
    },
  });
}

/**
 * One client per member: calls go to the member in use and move when it fails (members.ts). `standby`: the
 * standby clients (standby.ts).
 */
function createClients(opts: EtcdConnection, o: { standby?: boolean } = {}): Promise<Etcd3>[] {
  const made = opts.endpoints.map(async (e) => buildClient(libs ?? (await loadLibs()), opts, [e], o));
  // A client that could not be built fails each call with the reason, as etcd3 would have at construction.
  for (const c of made) c.catch(() => undefined);
  return made;
}

/** One lane of standby connections (backend.ts, {@link BroadcastLane}): a client per member, an idle stream on each. */
interface StandbyLane {
  /** Replaced by a TLS rotation; the streams reopen on the new ones. */
  clients: Promise<Etcd3>[];
  readonly streams: StandbyStreams;
}

function standbyLane(conn: EtcdConnection): StandbyLane {
  const lane: StandbyLane = {
    clients: createClients(conn, { standby: true }),
    streams: new StandbyStreams(conn.endpoints.length, async (m, onEnd) =>
      openIdle(await (lane.clients[m] as Promise<Etcd3>), onEnd),
    ),
  };
  return lane;
}

const REACH = 'check that the etcd endpoints are reachable from this node and the etcd cluster has quorum';

/**
 * What kind of failure an etcd error is, with the hint an operator needs for it. TLS failures arrive from grpc-js
 * as UNAVAILABLE with the OpenSSL reason in the text; they are told apart by that text.
 */
function classify(e: unknown): { kind: string; hint: string } {
  const text = errorMessage(e);
  // etcd3's errors can only come from etcd3, so it is loaded whenever one of them is classified.
  const is = (
    name:
      | 'EtcdAuthenticationFailedError'
      | 'EtcdPermissionDeniedError'
      | 'GRPCUnauthenticatedError'
      | 'GRPCDeadlineExceededError'
      | 'EtcdLeaseInvalidError'
      | 'GRPCUnavailableError',
  ): boolean => libs !== undefined && e instanceof libs.etcd3[name];
  if (is('EtcdAuthenticationFailedError') || /authentication failed|invalid user ID or password/i.test(text))
    return {
      kind: 'auth-failed',
      hint: 'etcd refused the user name or password: check --etcd-user and its password',
    };
  if (/user name is empty|user name not found/i.test(text))
    return {
      kind: 'auth-required',
      hint: 'etcd has authentication enabled: give --etcd-user and --etcd-password-file (or COORD_ETCD_PASSWORD)',
    };
  if (is('EtcdPermissionDeniedError') || /permission denied/i.test(text))
    return {
      kind: 'permission-denied',
      hint: "the etcd user lacks a permission on coord's keys: see coord etcd-roles for the roles nodes and admins need",
    };
  if (is('GRPCUnauthenticatedError'))
    return {
      kind: 'auth-failed',
      hint: 'etcd did not accept our credentials: check --etcd-user and its password',
    };
  if (/certificate has expired|certificate expired/i.test(text))
    return {
      kind: 'tls-expired',
      hint: 'a certificate has expired (ours or the server’s): renew it; coord picks up rotated files by itself',
    };
  if (
    /unable to get local issuer|self.signed certificate|unknown ca|verify failed|unable to verify/i.test(text)
  )
    return {
      kind: 'tls-unknown-ca',
      hint: 'the etcd server’s certificate is not signed by --etcd-cacert: give the CA that signed it',
    };
  if (/bad certificate|certificate required|handshake failure|alert/i.test(text))
    return {
      kind: 'tls-refused',
      hint: 'etcd refused this client’s certificate: check --etcd-cert/--etcd-key (signed by the CA etcd trusts)',
    };
  if (/wrong version number|ssl|tls/i.test(text) && !is('GRPCDeadlineExceededError'))
    return {
      kind: 'tls',
      hint: 'TLS failed: check https:// vs http:// endpoints and the --etcd-* TLS files',
    };
  if (is('EtcdLeaseInvalidError'))
    return { kind: 'lease-not-found', hint: 'the lease expired in etcd; coord grants a new one by itself' };
  if (is('GRPCDeadlineExceededError'))
    return {
      kind: 'deadline',
      hint: 'etcd did not answer in time: check the network path to etcd and its load',
    };
  if (is('GRPCUnavailableError') || libs?.cockatiel.isBrokenCircuitError(e) === true)
    return { kind: 'unavailable', hint: REACH };
  return { kind: 'other', hint: REACH };
}

/**
 * grpc-js's text for people: without its status prefix ("14 UNAVAILABLE: ") and its empty "Resolution note:"
 * tail, which say nothing an operator can act on (the kind and the hint do).
 */
export function grpcText(message: string): string {
  return message
    .replace(/^\d+ [A-Z_]+: /, '')
    .replace(/\s*Resolution note:\s*$/, '')
    .trim();
}

/** Translate any etcd3/gRPC failure into a CoordError once, at this boundary. */
export function etcdError(action: string, e: unknown): CoordError {
  if (e instanceof CoordError) return e;
  const { kind, hint } = classify(e);
  const name = e instanceof Error ? e.constructor.name : 'Error';
  return new CoordError('ERR_COORD_ETCD', `etcd: ${action} failed: ${grpcText(errorMessage(e))}`, {
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

/** The part of etcd3's connection pool the keepalive stream uses (ICallable in etcd3's rpc.ts; `pool` is protected). */
interface Pool {
  withConnection<R>(
    service: 'Lease' | 'KV',
    fn: (args: { client: GrpcClient; metadata: unknown }) => R,
  ): Promise<R>;
}

/** grpc-js's Client, as far as the keepalive stream uses it. */
interface GrpcClient {
  makeBidiStreamRequest<T>(
    method: string,
    serialize: (value: Buffer) => Buffer,
    deserialize: (value: Buffer) => T,
    metadata: unknown,
    options: object,
  ): RawStream;
  /** The KV service's generated method (KV clients only), with etcd3's request object. */
  txn?(request: unknown, metadata: unknown, options: object, done: (err: unknown) => void): unknown;
}

interface RawStream {
  write(req: Buffer): unknown;
  on(event: string, fn: (...args: never[]) => void): unknown;
  end(): unknown;
  removeAllListeners(): unknown;
}

/**
 * Open a lease keepalive stream on `c`'s connection: the stream etcd3's `leaseClient.leaseKeepAlive()` opens, but
 * with the messages coded by keepalive-codec.ts instead of etcd3's generated code (why: that file). Call options
 * are none, as our `defaultCallOptions` gives every stream. Unlike etcd3's, a failure of this stream does not mark
 * the host failed: that closes every channel to the host, and grpc-js then drops the streams still open on them
 * (the watch) at its next keepalive ping (grpc/grpc-node#3068), whose failure marked the host failed again — a
 * node lost its streams every 5 s (docs/design.md, "A cancelled watch dropped every stream, every 5 s"). The
 * session reopens this stream itself, and members.ts moves a node off a failing member.
 */
async function openKeepalive(c: Etcd3, { decodeKeepaliveAnswer }: Libs['codec']): Promise<RawStream> {
  const pool = (c as unknown as { pool: Pool }).pool;
  return pool.withConnection('Lease', ({ client, metadata }) =>
    client.makeBidiStreamRequest(
      '/etcdserverpb.Lease/LeaseKeepAlive',
      (b) => b,
      decodeKeepaliveAnswer,
      metadata,
      {},
    ),
  );
}

/**
 * A standby client's calls, all on its KV channel, so that the idle stream and the copies sent later share one
 * connection (a grpc-js client calls any method path), and all made so that they never fail inside etcd3's pool:
 * the pool closes every channel of a host when a call on it fails for a reason it deems recoverable — a passed
 * deadline, as every copy's under a cut of replies — and a new channel needs a new connection, which a cut does
 * not let complete. Seen in the soak: after one failed copy the next round's copies all waited for a connection.
 */
function standbyPool(c: Etcd3): Pool {
  return (c as unknown as { pool: Pool }).pool;
}

/**
 * Open a stream on a standby client's connection that carries nothing: the Lease service's keepalive stream,
 * never written to (etcd waits for its first request). It keeps the connection open (standby.ts). Its failure
 * marks nothing failed and moves nothing: it is opened again.
 */
async function openIdle(c: Etcd3, onEnd: () => void): Promise<IdleStream> {
  const raw = await standbyPool(c).withConnection('KV', ({ client, metadata }) =>
    client.makeBidiStreamRequest(
      '/etcdserverpb.Lease/LeaseKeepAlive',
      (b) => b,
      // Nothing is asked, so nothing is answered; a stray message is dropped unread.
      () => undefined,
      metadata,
      {},
    ),
  );
  raw.on('error', onEnd);
  raw.on('end', onEnd);
  return { close: () => closeStream(raw) };
}

/** End a stream we no longer read, whatever state it is in. */
function closeStream(raw: RawStream): void {
  raw.removeAllListeners();
  raw.on('error', () => {});
  try {
    raw.end();
  } catch {
    // already closed
  }
}

/** The production backend, plus TLS rotation. */
export interface EtcdClientBackend extends EtcdBackend {
  /**
   * Re-read the TLS files; when they changed, connect with the new material: new calls use it at once, open
   * streams (the lease keepalive, the watch) fail on the old connection and re-open on the new one — the lease
   * and everything bound to it stay. A bad new file throws (CoordError) and the old connection stays in use.
   */
  reloadTls(): { changed: boolean };
  /** When the client certificate in use expires (undefined without one). */
  readonly certExpiresAt: Date | undefined;
  /** The members (indices into the endpoints) with a standby connection open now in both lanes (`standby`; else none). */
  standbyMembers(): number[];
}

export interface BackendOptions {
  /** Told when calls and streams move to another member (members.ts): the agent logs it. */
  readonly onSwitch?: (s: MemberSwitch) => void;
  /**
   * How long a read (range, get) waits for one member before the next is asked; default: the call timeout. An
   * agent sets its TTL: after a quorum loss a restarted member took calls 4.8 s before it served them, and a
   * follower's linearizable reads queued as long, so each view re-read waited out the 2 s deadline on each member
   * in turn and no node stood for election meanwhile (test/soak/README.md, seventeenth session).
   */
  readonly readWaitMs?: number;
  /**
   * Keep a standby connection to every member, for `broadcast` (standby.ts): an agent's resign reaches etcd when
   * the path to the member in use has stalled. Default false.
   */
  readonly standby?: boolean;
  /** The member used first (an index into the endpoints); default: one drawn at random, to spread the nodes. */
  readonly firstMember?: number;
}

/** etcd3's builder for a transaction on `c`. */
function txnBuilder(
  c: Etcd3,
  compares: readonly Compare[],
  success: readonly TxnOp[],
  failure: readonly TxnOp[],
): ReturnType<Etcd3['if']> {
  const first = compares[0];
  if (first === undefined) throw new Error('a transaction needs a comparison');
  const target = (x: { target: 'create' | 'mod' }) => (x.target === 'create' ? 'Create' : 'Mod');
  let builder = c.if(first.key, target(first), '==', first.value);
  for (const x of compares.slice(1)) builder = builder.and(x.key, target(x), '==', x.value);
  return builder.then(...success.map(requestOp)).else(...failure.map(requestOp));
}

/**
 * Send a transaction through a standby client (see {@link standbyPool}) and forget it: nothing waits for its
 * answer, and no failure of it closes the connection inside etcd3. etcd3's builder makes the request, our `kv`
 * sends it.
 */
function sendCopy(c: Etcd3, compares: readonly Compare[], success: readonly TxnOp[], deadline: number): void {
  const pool = standbyPool(c);
  const builder = txnBuilder(c, compares, success, []);
  (builder as unknown as { kv: { txn(request: unknown): Promise<unknown> } }).kv = {
    txn: (request) =>
      pool.withConnection(
        'KV',
        ({ client, metadata }) =>
          new Promise<void>((resolve) => {
            client.txn?.(request, metadata, { deadline }, () => resolve());
          }),
      ),
  };
  void builder.commit().catch(() => undefined);
}

/** One transaction on `c`: the entries the `put` (previous value) and `get` operations of the branch taken return. */
async function commitTxn(
  c: Etcd3,
  compares: readonly Compare[],
  success: readonly TxnOp[],
  failure: readonly TxnOp[],
): Promise<TxnResult> {
  const res = await txnBuilder(c, compares, success, failure).commit();
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
}

/** A call or stream failure that says the member (or the path to it) is the trouble, not the request. */
function memberTrouble(e: unknown): boolean {
  if (libs === undefined || e === null || typeof e !== 'object') return false;
  return libs.etcd3.isRecoverableError(e as Error) || libs.cockatiel.isBrokenCircuitError(e);
}

/**
 * The production backend: etcd3 with a coordinator's fault handling, one member at a time (members.ts). A unary
 * call that fails for the member's sake moves to the next member and is tried there, once per member; a stream
 * that breaks moves the next one; `avoid` (a fence: no ack in time) moves everything, open watches included.
 */
export function createEtcdBackend(opts: EtcdConnection, o: BackendOptions = {}): EtcdClientBackend {
  let conn = opts;
  let clients = createClients(conn);
  const lanes: Record<BroadcastLane, StandbyLane> | undefined =
    o.standby === true ? { member: standbyLane(conn), leadership: standbyLane(conn) } : undefined;
  const eachLane = lanes === undefined ? [] : Object.values(lanes);
  for (const lane of eachLane) lane.streams.start();
  const members = new MemberChoice(conn.endpoints, {
    now: () => performance.now(),
    first: o.firstMember ?? Math.floor(Math.random() * conn.endpoints.length),
    ...(o.onSwitch === undefined ? {} : { onSwitch: o.onSwitch }),
  });
  const client = (m: number): Promise<Etcd3> => clients[m] as Promise<Etcd3>;
  /** Call options that give one member at most `waitMs`, and never more than the connection's call timeout. */
  const waitAtMost = (waitMs: number) => ({
    deadline: Date.now() + Math.min(waitMs, conn.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS),
  });
  const readOptions = () => (o.readWaitMs === undefined ? undefined : waitAtMost(o.readWaitMs));
  async function unary<T>(
    action: string,
    fn: (c: Etcd3) => Promise<T>,
    { retry = true }: { retry?: boolean } = {},
  ): Promise<T> {
    let last: unknown;
    for (let attempt = 0; attempt < (retry ? conn.endpoints.length : 1); attempt++) {
      const m = members.current;
      try {
        return await fn(await client(m));
      } catch (e) {
        if (!memberTrouble(e)) throw etcdError(action, e);
        last = e;
        // Tried again while another member is in use (this failure, or a concurrent one, moved the node).
        members.leave(m, `${action}: ${errorMessage(e)}`);
        if (members.current === m) break;
      }
    }
    throw etcdError(action, last);
  }
  return {
    get certExpiresAt() {
      return conn.tls?.certExpiresAt;
    },
    standbyMembers: () =>
      lanes === undefined
        ? []
        : lanes.member.streams.openMembers.filter((m) => lanes.leadership.streams.openMembers.includes(m)),
    reloadTls() {
      const tls = readTls(conn.files);
      if (tls === undefined || tls.digest === conn.tls?.digest) return { changed: false };
      const next = { ...conn, tls };
      // Built here when etcd3 is loaded (it is once a client connected), so a client the new files cannot make
      // throws now and the old ones stay in use.
      const build = (o: { standby?: boolean } = {}) =>
        libs === undefined
          ? createClients(next, o)
          : next.endpoints.map((e) => Promise.resolve(buildClient(libs as Libs, next, [e], o)));
      const made = build();
      const madeStandby = eachLane.map(() => build({ standby: true }));
      const old = [...clients, ...eachLane.flatMap((lane) => lane.clients)];
      conn = next;
      clients = made;
      eachLane.forEach((lane, i) => {
        lane.clients = madeStandby[i] ?? [];
        lane.streams.reopen();
      });
      for (const c of old) void c.then((x) => x.close()).catch(() => undefined);
      return { changed: true };
    },
    avoid(reason) {
      members.leave(members.current, reason);
    },
    // Not tried again here: the session times the lease from when it asked (a grant that first waited out a dead
    // member's deadline would look that much older, and be given up at once); its own loop asks again at once.
    grant: (ttlSec) =>
      unary(
        'lease grant',
        async (c) => {
          const res = await c.leaseClient.leaseGrant({ TTL: ttlSec }, waitAtMost(grantWaitMs(ttlSec)));
          return { leaseId: String(res.ID), ttlSec: Number(res.TTL), revision: Number(res.header.revision) };
        },
        { retry: false },
      ),
    revoke: (leaseId) =>
      unary('lease revoke', async (c) => {
        await c.leaseClient.leaseRevoke({ ID: leaseId });
      }),
    timeToLive: (leaseId) =>
      unary('lease time-to-live', async (c) => {
        const res = await c.leaseClient.leaseTimeToLive({ ID: leaseId });
        return Number(res.TTL);
      }),
    keepalive: (handlers: KeepaliveHandlers) =>
      call('lease keepalive', async () => {
        const m = members.current;
        const c = await client(m);
        // Loaded with etcd3, before any client exists (createClients).
        const codec = (libs as Libs).codec;
        const raw = await openKeepalive(c, codec);
        let open = true;
        const fail = (err: Error): void => {
          if (!open) return;
          open = false;
          members.leave(m, `lease keepalive: ${errorMessage(err)}`);
          handlers.onError(err);
        };
        // The request for a lease is always the same bytes: encoded once per lease, not per keepalive.
        let request: { leaseId: string; bytes: Buffer } | undefined;
        raw.on('data', (res: KeepaliveAnswer) => {
          if (open) handlers.onAck(res.leaseId, res.ttlSec);
        });
        raw.on('error', (err: Error) => fail(etcdError('lease keepalive', err)));
        raw.on('end', () => fail(new Error('keepalive stream ended')));
        const stream: KeepaliveStream = {
          send(leaseId) {
            if (!open) throw new Error('keepalive stream closed');
            if (request?.leaseId !== leaseId) request = { leaseId, bytes: codec.encodeKeepalive(leaseId) };
            raw.write(request.bytes);
          },
          close() {
            open = false;
            closeStream(raw);
          },
        };
        return stream;
      }),
    range: (prefix) =>
      unary(`reading ${prefix}`, async (c) => {
        const res = await c.getAll().prefix(prefix).options(readOptions()).exec();
        return { revision: Number(res.header.revision), entries: res.kvs.map(toEntry) };
      }),
    get: (key) =>
      unary(`reading ${key}`, async (c) => {
        const res = await c.get(key).options(readOptions()).exec();
        const kv = res.kvs[0];
        return { revision: Number(res.header.revision), entry: kv === undefined ? undefined : toEntry(kv) };
      }),
    put: (key, value, lease) =>
      unary(`writing ${key}`, async (c) => {
        const b = c.put(key).value(value);
        const res = await (lease === undefined ? b : b.lease(lease)).exec();
        return { revision: Number(res.header.revision) };
      }),
    broadcast(compares, success, answered, lane) {
      if (lanes === undefined) return;
      const via = lanes[lane];
      const send = (): void => {
        const deadline = Date.now() + (conn.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
        for (const m of via.streams.openMembers)
          void (via.clients[m] as Promise<Etcd3>)
            .then((c) => sendCopy(c, compares, success, deadline))
            .catch(() => undefined);
      };
      const t = setTimeout(send, BROADCAST_AFTER_MS);
      const settled = (): void => clearTimeout(t);
      answered.then(settled, settled);
    },
    txn: (compares, success, failure = []) =>
      unary('transaction', (c) => commitTxn(c, compares, success, failure)),
    watch: (prefix, fromRevision, handlers) =>
      call(`watching ${prefix}`, async () => {
        const m = members.current;
        const watcher: Watcher = await (
          await client(m)
        )
          .watch()
          .prefix(prefix)
          .startRevision(String(fromRevision))
          .create();
        // etcd3 would re-open a broken watch on the same member; when the node leaves that member the watch
        // ends here instead, and the view re-reads and watches on the member in use (view.ts).
        const bound = members.bind({
          member: m,
          move: () => handlers.onError(new Error(`left etcd member ${conn.endpoints[m] ?? m}`)),
        });
        watcher.on('data', (r: IWatchResponse) => {
          const events = r.events.map((ev): WatchEvent => ({
            type: ev.type === 'Delete' ? 'delete' : 'put',
            entry: toEntry(ev.kv),
          }));
          handlers.onEvents(Number(r.header.revision), events);
        });
        watcher.on('disconnected', () => {
          handlers.onDisconnected();
          members.leave(m, 'watch disconnected');
          bound.moveIfStale();
        });
        watcher.on('connected', () => handlers.onConnected());
        watcher.on('error', (err: Error) => handlers.onError(etcdError(`watching ${prefix}`, err)));
        watcher.on('end', () => handlers.onError(new Error('watch ended')));
        return {
          async cancel() {
            bound.release();
            watcher.removeAllListeners();
            watcher.on('error', () => {});
            await watcher.cancel().catch(() => undefined);
          },
        };
      }),
    close: () => {
      for (const lane of eachLane) lane.streams.close();
      for (const c of [...clients, ...eachLane.flatMap((lane) => lane.clients)])
        void c.then((x) => x.close()).catch(() => undefined);
    },
  };
}

/**
 * Create the roles and grant their permissions (idempotent: an existing role gets the missing permissions).
 * Needs credentials allowed to manage roles (etcd's root).
 */
export async function applyRoles(
  conn: EtcdConnection,
  roles: readonly RoleSpec[],
): Promise<{ created: string[]; updated: string[] }> {
  const loaded = await loadLibs();
  const { EtcdRoleExistsError, Range } = loaded.etcd3;
  const client = buildClient(loaded, conn);
  const created: string[] = [];
  const updated: string[] = [];
  const perm = { read: 'Read', write: 'Write', readwrite: 'Readwrite' } as const;
  try {
    for (const r of roles) {
      const role = client.role(r.name);
      try {
        await role.create();
        created.push(r.name);
      } catch (e) {
        if (!(e instanceof EtcdRoleExistsError)) throw etcdError(`creating role ${r.name}`, e);
        updated.push(r.name);
      }
      try {
        await role.grant(
          r.permissions.map((p) => ({ permission: perm[p.permission], range: Range.prefix(p.prefix) })),
        );
      } catch (e) {
        throw etcdError(`granting the permissions of ${r.name}`, e);
      }
    }
    return { created, updated };
  } finally {
    client.close();
  }
}
