import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { CoordError, isCoordError } from '@coord/core';
import {
  clusterKeys,
  decodeLeader,
  decodeStatus,
  readPrefix,
  type EtcdBackend,
  type EtcdReader,
  type TxnOp,
} from '@coord/etcd';
import {
  decodeRollout,
  encodeRollout,
  needsRollout,
  parseService,
  parseServiceJson,
  rolloutApplies,
  rolloutKey,
  rolloutOrder,
  rolloutsPrefix,
  serializeService,
  serviceKey,
  servicesPrefix,
  valueHash,
  type RolloutRecord,
  type Service,
  type ServiceInput,
  type ValidationError,
} from '@coord/haproxy';
import { resolveTarget, withEtcd, withEtcdReader, type ConnectionArgs, type Target } from './target.js';

export type EtcdTarget = ConnectionArgs;

/** `10.0.0.5:80` or `[2001:db8::5]:80` → address and port (validated again by the model). */
export function parseAddrPort(text: string, what: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (m === null || (m[1]?.includes(':') === true && !isIPv6(m[1]))) {
    throw new CoordError('ERR_COORD_USAGE', `${what}: "${text}" is not ADDR:PORT`, {
      hint: 'write ADDR:PORT, e.g. 10.0.0.50:80 or [2001:db8::50]:443',
    });
  }
  return { address: m[1] ?? '', port: Number(m[2]) };
}

function refuse(what: string, errors: readonly ValidationError[]): never {
  const first = errors[0];
  throw new CoordError(
    'ERR_COORD_CONFIG',
    `${what}: ${first?.path === '' ? '' : `${first?.path}: `}${first?.message ?? 'invalid'}`,
    {
      hint: 'fix the value named above; nothing was written',
      details: { issues: errors.map((e) => ({ path: e.path, message: e.message })) },
    },
  );
}

/**
 * Run a service change or read against etcd. A refusal by etcd's authorization says which permission is
 * missing and which role grants it (coord etcd-roles).
 */
function withClient<T>(
  a: EtcdTarget,
  write: boolean,
  fn: (client: EtcdBackend, cluster: string) => Promise<T>,
  waitsMs = 0,
): Promise<T> {
  return naming(a, write, (t) => withEtcd(t, fn, waitsMs));
}

/** A read that needs nothing but ranges: over etcd's JSON gateway when it can (target.ts, withEtcdReader). */
function withReader<T>(a: EtcdTarget, fn: (client: EtcdReader, cluster: string) => Promise<T>): Promise<T> {
  return naming(a, false, (t) => withEtcdReader(t, fn));
}

async function naming<T>(a: EtcdTarget, write: boolean, run: (t: Target) => Promise<T>): Promise<T> {
  const t = await resolveTarget(a);
  try {
    return await run(t);
  } catch (e) {
    if (isCoordError(e) && e.details?.kind === 'permission-denied') {
      const prefix = clusterKeys(t.cluster).services;
      throw new CoordError(
        'ERR_COORD_PERMISSION',
        `etcd refused: this etcd user may not ${write ? 'write' : 'read'} ${prefix}`,
        {
          hint: `that needs the role coord-admin-${t.cluster} (see coord etcd-roles --cluster ${t.cluster}); nodes run with coord-node-${t.cluster}, which may only read services`,
          cause: e,
        },
      );
    }
    throw e;
  }
}

function current(value: Buffer | undefined, key: string): Service | undefined {
  if (value === undefined) return undefined;
  const r = parseServiceJson(value);
  if (!r.ok) {
    throw new CoordError(
      'ERR_COORD_CONFIG',
      `the value at ${key} is not a valid service (${r.errors[0]?.message ?? ''})`,
      {
        hint: 'remove it with coord service rm and set it again',
      },
    );
  }
  return r.service;
}

/** What a change wrote: the etcd revision (0: nothing changed) and the rollout it started, if any. */
export interface ServiceWrite {
  readonly revision: number;
  readonly rollout?: RolloutRecord;
}

/**
 * Change one service in etcd, with its rollout (rollout.ts) in the same transaction:
 * - `structural` changes (`service set`) that need a reload start a rolling rollout over the nodes that run an
 *   HAProxy loop, holders last (unless the service says `parallel`, or no node runs HAProxy);
 * - server changes reach every node at once; while a rollout is running or stopped they are made to the version
 *   the nodes still run too, so no node loses them at its turn or on a stop;
 * - any other change ends a rollout of the service.
 * `change` returns the new service, or undefined for "nothing to do"; it may throw to refuse.
 */
async function changeService(
  client: EtcdBackend,
  cluster: string,
  name: string,
  kind: 'structural' | 'servers',
  change: (before: Service | undefined) => Service | undefined,
): Promise<ServiceWrite> {
  const keys = clusterKeys(cluster);
  const sKey = serviceKey(cluster, name);
  const rKey = rolloutKey(cluster, name);
  for (let attempt = 0; attempt < 5; attempt++) {
    const { entries } = await readPrefix(client, keys.prefix);
    const sEntry = entries.get(sKey);
    const rEntry = entries.get(rKey);
    const before = current(sEntry?.value, sKey);
    const after = change(before);
    if (after === undefined) return { revision: 0 };
    const text = serializeService(after);
    const record = rEntry === undefined ? undefined : decodeRollout(rEntry.value);
    const live =
      record !== undefined && record.state !== 'done' && rolloutApplies(record, sEntry?.value)
        ? record
        : undefined;
    // The same value again: nothing to do — unless its rollout stopped, when setting it again retries the rollout
    // (after fixing what failed outside the service, a backend say).
    const retry = kind === 'structural' && live?.state === 'stopped';
    if (sEntry !== undefined && sEntry.value.toString() === text && !retry) return { revision: 0 };
    const ops: TxnOp[] = [{ type: 'put', key: sKey, value: text }];
    let started: RolloutRecord | undefined;
    if (kind === 'servers' && live !== undefined) {
      let previous = live.previous;
      if (previous !== null) {
        try {
          previous = change(previous) ?? previous;
        } catch {
          // The server does not exist in the version the nodes run: nothing to change there.
        }
      }
      ops.push({
        type: 'put',
        key: rKey,
        value: encodeRollout({ ...live, previous, next: valueHash(text) }),
      });
    } else {
      // What the nodes run now: the version before a live rollout, else the current value.
      const running = live !== undefined ? (live.previous ?? undefined) : before;
      const order = rolloutOrder(...haproxyNodes(entries, keys));
      if (kind === 'structural' && needsRollout(running, after) && order.length > 0) {
        started = {
          id: randomBytes(6).toString('hex'),
          service: name,
          next: valueHash(text),
          previous: running ?? null,
          order,
          steps: {},
          state: 'running',
          startedAt: Date.now(),
        };
        ops.push({ type: 'put', key: rKey, value: encodeRollout(started) });
      } else if (rEntry !== undefined) {
        ops.push({ type: 'delete', key: rKey });
      }
    }
    const res = await client.txn(
      [
        { key: sKey, target: 'mod', value: sEntry?.modRevision ?? 0 },
        { key: rKey, target: 'mod', value: rEntry?.modRevision ?? 0 },
      ],
      ops,
    );
    if (res.succeeded)
      return started === undefined
        ? { revision: res.revision }
        : { revision: res.revision, rollout: started };
  }
  throw new CoordError('ERR_COORD_ETCD', `etcd: service ${name} kept changing under us (5 attempts)`, {
    hint: 'another writer is updating the same service; try again',
  });
}

/** Nodes that run an HAProxy loop (their status says so) and the nodes holding a group now. */
function haproxyNodes(
  entries: ReadonlyMap<string, { value: Buffer }>,
  keys: ReturnType<typeof clusterKeys>,
): [string[], Set<string>] {
  const nodes: string[] = [];
  const holders = new Set<string>();
  for (const [key, { value }] of entries) {
    if (key.startsWith(keys.statuses)) {
      const s = decodeStatus(value);
      if (s?.haproxy !== undefined) nodes.push(s.node);
    } else if (key.startsWith(keys.groups) && key.endsWith('/leader')) {
      const l = decodeLeader(value);
      if (l !== undefined) holders.add(l.node);
    }
  }
  return [nodes, holders];
}

export interface ServiceSetArgs extends EtcdTarget {
  name: string;
  bind: string[];
  mode?: string | undefined;
  balance?: string | undefined;
  check?: boolean | undefined;
  maxconn?: number | undefined;
  rollout?: string | undefined;
  rolloutCheck?: string | undefined;
}

/**
 * Create or update a service; its servers are kept. Validated here and again by every agent. A change that
 * needs a reload starts a rolling rollout unless the service says `parallel`.
 */
export async function serviceSet(a: ServiceSetArgs): Promise<ServiceWrite> {
  // The flags alone first (what is not given takes a default any service accepts): a bad value is named before
  // etcd is asked anything, reachable or not.
  const flagsOnly = parseService({
    name: a.name,
    binds: a.bind.map((b) => parseAddrPort(b, '--bind')),
    mode: (a.mode ?? 'http') as ServiceInput['mode'],
    balance: (a.balance ?? 'roundrobin') as ServiceInput['balance'],
    check: a.check ?? false,
    servers: [],
    ...(a.maxconn === undefined ? {} : { maxconn: a.maxconn }),
    ...(a.rollout === undefined ? {} : { rollout: a.rollout as Service['rollout'] }),
    ...(a.rolloutCheck === undefined ? {} : { rolloutCheck: a.rolloutCheck }),
  });
  if (!flagsOnly.ok) refuse(`service ${a.name}`, flagsOnly.errors);
  return withClient(a, true, async (client, cluster) =>
    changeService(client, cluster, a.name, 'structural', (before) => {
      const keep = <K extends keyof Service>(k: K, v: Service[K] | undefined) =>
        v !== undefined ? { [k]: v } : before?.[k] !== undefined ? { [k]: before[k] } : {};
      const input: ServiceInput = {
        name: a.name,
        binds: a.bind.map((b) => parseAddrPort(b, '--bind')),
        mode: (a.mode ?? before?.mode ?? 'http') as ServiceInput['mode'],
        balance: (a.balance ?? before?.balance ?? 'roundrobin') as ServiceInput['balance'],
        check: a.check ?? before?.check ?? false,
        servers: before?.servers ?? [],
        ...keep('maxconn', a.maxconn),
        ...keep('rollout', a.rollout as Service['rollout']),
        ...keep('rolloutCheck', a.rolloutCheck),
      };
      const parsed = parseService(input);
      if (!parsed.ok) refuse(`service ${a.name}`, parsed.errors);
      return parsed.service;
    }),
  );
}

export async function serviceRm(a: EtcdTarget & { name: string }): Promise<boolean> {
  return withClient(a, true, async (client, cluster) => {
    const sKey = serviceKey(cluster, a.name);
    const rKey = rolloutKey(cluster, a.name);
    for (let attempt = 0; attempt < 5; attempt++) {
      const [{ entry: s }, { entry: r }] = [await client.get(sKey), await client.get(rKey)];
      if (s === undefined) return false;
      const res = await client.txn(
        [
          { key: sKey, target: 'mod', value: s.modRevision },
          { key: rKey, target: 'mod', value: r?.modRevision ?? 0 },
        ],
        [{ type: 'delete', key: sKey }, ...(r === undefined ? [] : [{ type: 'delete' as const, key: rKey }])],
      );
      if (res.succeeded) return true;
    }
    throw new CoordError('ERR_COORD_ETCD', `etcd: service ${a.name} kept changing under us (5 attempts)`, {
      hint: 'another writer is updating the same service; try again',
    });
  });
}

export interface ServerSetArgs extends EtcdTarget {
  service: string;
  name: string;
  address: string;
  weight?: number | undefined;
  backup?: boolean | undefined;
  disabled?: boolean | undefined;
}

function noService(service: string, cluster: string): never {
  throw new CoordError('ERR_COORD_USAGE', `no service "${service}" in cluster ${cluster}`, {
    hint: `create it first: coord service set ${service} --bind ADDR:PORT`,
  });
}

/** Add or update one server of a service. */
export async function serverSet(a: ServerSetArgs): Promise<number> {
  const { address, port } = parseAddrPort(a.address, 'server address');
  // The flags alone first, in a placeholder service: a bad weight or name is named before etcd is asked.
  const flagsOnly = parseService({
    name: a.service,
    binds: [{ address: '127.0.0.1', port: 80 }],
    servers: [{ name: a.name, address, port, weight: a.weight ?? 1, backup: a.backup ?? false }],
  });
  if (!flagsOnly.ok) refuse(`server ${a.name}`, flagsOnly.errors);
  return withClient(a, true, async (client, cluster) => {
    const r = await changeService(client, cluster, a.service, 'servers', (svc) => {
      if (svc === undefined) noService(a.service, cluster);
      const before = svc.servers.find((s) => s.name === a.name);
      const server = {
        name: a.name,
        address,
        port,
        weight: a.weight ?? before?.weight ?? 1,
        backup: a.backup ?? before?.backup ?? false,
        disabled: a.disabled ?? before?.disabled ?? false,
      };
      const servers =
        before === undefined
          ? [...svc.servers, server]
          : svc.servers.map((s) => (s.name === a.name ? server : s));
      const parsed = parseService({ ...svc, servers });
      if (!parsed.ok) refuse(`server ${a.name}`, parsed.errors);
      return parsed.service;
    });
    return r.revision;
  });
}

/**
 * Enable or disable one existing server (`disabled` in the model: HAProxy's maintenance state). Every node applies
 * it through the runtime API. Returns the etcd revision, or 0 when it already was so.
 */
export async function serverEnable(
  a: EtcdTarget & { service: string; name: string },
  enabled: boolean,
): Promise<number> {
  return withClient(a, true, async (client, cluster) => {
    const r = await changeService(client, cluster, a.service, 'servers', (svc) => {
      const server = svc?.servers.find((s) => s.name === a.name);
      if (svc === undefined || server === undefined)
        throw new CoordError('ERR_COORD_USAGE', `no server ${a.service}/${a.name} in cluster ${cluster}`, {
          hint: `see coord service list; add it with coord server set ${a.service} ${a.name} ADDR:PORT`,
        });
      if (server.disabled === !enabled) return undefined;
      return {
        ...svc,
        servers: svc.servers.map((s) => (s.name === a.name ? { ...s, disabled: !enabled } : s)),
      };
    });
    return r.revision;
  });
}

/** How a rollout ended for a waiting CLI. */
export type RolloutEnd =
  | { readonly end: 'done' | 'stopped'; readonly record: RolloutRecord }
  /** Another change replaced it (its record is gone or belongs to a newer rollout). */
  | { readonly end: 'superseded' }
  | { readonly end: 'timeout'; readonly record: RolloutRecord };

/**
 * Follow a rollout until it is done, stopped, replaced or `timeoutMs` is over; `onStep` hears each node's
 * verdict once, as it arrives.
 */
export async function waitRollout(
  a: EtcdTarget,
  started: RolloutRecord,
  timeoutMs: number,
  onStep: (node: string, step: RolloutRecord['steps'][string]) => void,
): Promise<RolloutEnd> {
  return withClient(
    a,
    false,
    async (client, cluster) => {
      const key = rolloutKey(cluster, started.service);
      const seen = new Set<string>();
      const deadline = Date.now() + timeoutMs;
      let last = started;
      for (;;) {
        const { entry } = await client.get(key);
        const r = entry === undefined ? undefined : decodeRollout(entry.value);
        if (r === undefined || r.id !== started.id) return { end: 'superseded' };
        last = r;
        for (const n of r.order) {
          const step = r.steps[n];
          if (step !== undefined && !seen.has(n)) {
            seen.add(n);
            onStep(n, step);
          }
        }
        if (r.state !== 'running') return { end: r.state, record: r };
        if (Date.now() >= deadline) return { end: 'timeout', record: last };
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    timeoutMs,
  );
}

export interface DrainResult {
  /** The etcd revision that disabled it (0: it already was). */
  readonly revision: number;
  /** Without a wait: undefined. */
  readonly drained: boolean | undefined;
  readonly waitedMs: number;
  /** Per node running an HAProxy loop: the server's current sessions there (null: not applied or not known yet). */
  readonly nodes: Readonly<Record<string, number | null>>;
}

/**
 * `coord server drain`: disable the server (no new sessions on any node, through the runtime API), then — with
 * `waitMs` — wait until every node that runs an HAProxy loop has applied that and reports 0 current sessions for
 * it (nodes read them from HAProxy every second while a server is disabled), or the time is up.
 */
export async function serverDrain(
  a: EtcdTarget & { service: string; name: string },
  waitMs: number | undefined,
): Promise<DrainResult> {
  const revision = await serverEnable(a, false);
  if (waitMs === undefined) return { revision, drained: undefined, waitedMs: 0, nodes: {} };
  const { readClusterStatus } = await import('./status.js');
  const target = await resolveTarget(a);
  const id = `${a.service}/${a.name}`;
  const started = Date.now();
  for (;;) {
    const s = await readClusterStatus(target);
    const nodes: Record<string, number | null> = {};
    for (const m of s.members) {
      if (m.haproxy === null) continue;
      nodes[m.node] = m.haproxy.revision >= revision ? (m.haproxy.draining?.[id] ?? null) : null;
    }
    const values = Object.values(nodes);
    const waitedMs = Date.now() - started;
    if (values.length > 0 && values.every((n) => n === 0))
      return { revision, drained: true, waitedMs, nodes };
    if (waitedMs >= waitMs) return { revision, drained: false, waitedMs, nodes };
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function serverRm(a: EtcdTarget & { service: string; name: string }): Promise<boolean> {
  return withClient(a, true, async (client, cluster) => {
    const r = await changeService(client, cluster, a.service, 'servers', (svc) =>
      svc === undefined || !svc.servers.some((s) => s.name === a.name)
        ? undefined
        : { ...svc, servers: svc.servers.filter((s) => s.name !== a.name) },
    );
    return r.revision !== 0;
  });
}

/** Every service, plus the keys whose values agents refuse (shown, never hidden). */
export async function serviceList(a: EtcdTarget): Promise<{
  revision: number;
  services: Service[];
  invalid: { key: string; error: string }[];
  /** Rollouts of the services as they are now (running, stopped or done). */
  rollouts: RolloutRecord[];
}> {
  return withReader(a, async (client, cluster) => {
    const { revision, entries } = await readPrefix(client, servicesPrefix(cluster));
    const services: Service[] = [];
    const invalid: { key: string; error: string }[] = [];
    for (const [key, { value }] of entries) {
      const r = parseServiceJson(value);
      if (r.ok) services.push(r.service);
      else invalid.push({ key, error: r.errors.map((e) => `${e.path}: ${e.message}`).join('; ') });
    }
    services.sort((x, y) => x.name.localeCompare(y.name));
    const rollouts: RolloutRecord[] = [];
    for (const [key, { value }] of (await readPrefix(client, rolloutsPrefix(cluster))).entries) {
      const r = decodeRollout(value);
      if (r === undefined)
        invalid.push({ key, error: 'not a rollout record (the service applies as it is)' });
      else if (rolloutApplies(r, entries.get(serviceKey(cluster, r.service))?.value)) rollouts.push(r);
    }
    return { revision, services, invalid, rollouts };
  });
}

export function formatServiceList(l: Awaited<ReturnType<typeof serviceList>>): string {
  const lines: string[] = [];
  if (l.services.length === 0) lines.push('(no services)');
  for (const s of l.services) {
    const binds = s.binds
      .map((b) => (b.address.includes(':') ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`))
      .join(', ');
    const rollout = s.rollout === 'parallel' ? '  rollout parallel' : '';
    const gate = s.rolloutCheck === undefined ? '' : `  rollout-check ${s.rolloutCheck}`;
    lines.push(
      `${s.name}  ${s.mode}  ${s.balance}${s.check ? '  check' : ''}${s.maxconn === undefined ? '' : `  maxconn ${s.maxconn}`}  bind ${binds}${rollout}${gate}`,
    );
    const r = l.rollouts.find((x) => x.service === s.name);
    if (r !== undefined && r.state === 'running')
      lines.push(
        `  rollout running: ${r.order.filter((n) => r.steps[n]?.state === 'ok').length}/${r.order.length} nodes passed (coord status shows where)`,
      );
    if (r !== undefined && r.state === 'stopped')
      lines.push(`  ROLLOUT STOPPED (${r.reason ?? ''}): every node runs the previous version, not this one`);
    for (const v of s.servers) {
      const flags = [v.backup ? 'backup' : '', v.disabled ? 'disabled' : '']
        .filter((x) => x !== '')
        .join(' ');
      lines.push(
        `  ${v.name.padEnd(16)} ${v.address.includes(':') ? `[${v.address}]` : v.address}:${v.port}  weight ${v.weight}${flags === '' ? '' : `  ${flags}`}`,
      );
    }
  }
  for (const i of l.invalid) lines.push(`REFUSED ${i.key}: ${i.error}`);
  return lines.join('\n');
}
