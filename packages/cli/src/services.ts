import { isIPv6 } from 'node:net';
import { CoordError, isCoordError } from '@coord/core';
import { clusterKeys, readPrefix, updateKey, type EtcdBackend } from '@coord/etcd';
import {
  parseService,
  parseServiceJson,
  serializeService,
  serviceKey,
  servicesPrefix,
  type Service,
  type ServiceInput,
  type ValidationError,
} from '@coord/haproxy';
import { resolveTarget, withEtcd, type ConnectionArgs } from './target.js';

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
async function withClient<T>(
  a: EtcdTarget,
  write: boolean,
  fn: (client: EtcdBackend, cluster: string) => Promise<T>,
): Promise<T> {
  const t = await resolveTarget(a);
  try {
    return await withEtcd(t, fn);
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

export interface ServiceSetArgs extends EtcdTarget {
  name: string;
  bind: string[];
  mode?: string | undefined;
  balance?: string | undefined;
  check?: boolean | undefined;
  maxconn?: number | undefined;
}

/** Create or update a service; its servers are kept. Validated here and again by every agent. */
export async function serviceSet(a: ServiceSetArgs): Promise<number> {
  return withClient(a, true, async (client, cluster) => {
    const key = serviceKey(cluster, a.name);
    const r = await updateKey(client, key, (value) => {
      const before = current(value, key);
      const input: ServiceInput = {
        name: a.name,
        binds: a.bind.map((b) => parseAddrPort(b, '--bind')),
        mode: (a.mode ?? before?.mode ?? 'http') as ServiceInput['mode'],
        balance: (a.balance ?? before?.balance ?? 'roundrobin') as ServiceInput['balance'],
        check: a.check ?? before?.check ?? false,
        servers: before?.servers ?? [],
        ...(a.maxconn !== undefined
          ? { maxconn: a.maxconn }
          : before?.maxconn !== undefined
            ? { maxconn: before.maxconn }
            : {}),
      };
      const parsed = parseService(input);
      if (!parsed.ok) refuse(`service ${a.name}`, parsed.errors);
      const text = serializeService(parsed.service);
      return value !== undefined && value.toString() === text ? { unchanged: true } : { put: text };
    });
    return r.revision;
  });
}

export async function serviceRm(a: EtcdTarget & { name: string }): Promise<boolean> {
  return withClient(a, true, async (client, cluster) => {
    const r = await updateKey(client, serviceKey(cluster, a.name), (value) =>
      value === undefined ? { unchanged: true } : { delete: true },
    );
    return r.changed;
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

/** Add or update one server of a service. */
export async function serverSet(a: ServerSetArgs): Promise<number> {
  return withClient(a, true, async (client, cluster) => {
    const key = serviceKey(cluster, a.service);
    const { address, port } = parseAddrPort(a.address, 'server address');
    const r = await updateKey(client, key, (value) => {
      const svc = current(value, key);
      if (svc === undefined) {
        throw new CoordError('ERR_COORD_USAGE', `no service "${a.service}" in cluster ${cluster}`, {
          hint: `create it first: coord service set ${a.service} --bind ADDR:PORT`,
        });
      }
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
      const text = serializeService(parsed.service);
      return value?.toString() === text ? { unchanged: true } : { put: text };
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
    const key = serviceKey(cluster, a.service);
    const r = await updateKey(client, key, (value) => {
      const svc = current(value, key);
      const server = svc?.servers.find((s) => s.name === a.name);
      if (svc === undefined || server === undefined)
        throw new CoordError('ERR_COORD_USAGE', `no server ${a.service}/${a.name} in cluster ${cluster}`, {
          hint: `see coord service list; add it with coord server set ${a.service} ${a.name} ADDR:PORT`,
        });
      if (server.disabled === !enabled) return { unchanged: true };
      return {
        put: serializeService({
          ...svc,
          servers: svc.servers.map((s) => (s.name === a.name ? { ...s, disabled: !enabled } : s)),
        }),
      };
    });
    return r.revision;
  });
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
    const key = serviceKey(cluster, a.service);
    const r = await updateKey(client, key, (value) => {
      const svc = current(value, key);
      if (svc === undefined || !svc.servers.some((s) => s.name === a.name)) return { unchanged: true };
      return { put: serializeService({ ...svc, servers: svc.servers.filter((s) => s.name !== a.name) }) };
    });
    return r.changed;
  });
}

/** Every service, plus the keys whose values agents refuse (shown, never hidden). */
export async function serviceList(
  a: EtcdTarget,
): Promise<{ revision: number; services: Service[]; invalid: { key: string; error: string }[] }> {
  return withClient(a, false, async (client, cluster) => {
    const { revision, entries } = await readPrefix(client, servicesPrefix(cluster));
    const services: Service[] = [];
    const invalid: { key: string; error: string }[] = [];
    for (const [key, { value }] of entries) {
      const r = parseServiceJson(value);
      if (r.ok) services.push(r.service);
      else invalid.push({ key, error: r.errors.map((e) => `${e.path}: ${e.message}`).join('; ') });
    }
    services.sort((x, y) => x.name.localeCompare(y.name));
    return { revision, services, invalid };
  });
}

export function formatServiceList(l: Awaited<ReturnType<typeof serviceList>>): string {
  const lines: string[] = [];
  if (l.services.length === 0) lines.push('(no services)');
  for (const s of l.services) {
    const binds = s.binds
      .map((b) => (b.address.includes(':') ? `[${b.address}]:${b.port}` : `${b.address}:${b.port}`))
      .join(', ');
    lines.push(
      `${s.name}  ${s.mode}  ${s.balance}${s.check ? '  check' : ''}${s.maxconn === undefined ? '' : `  maxconn ${s.maxconn}`}  bind ${binds}`,
    );
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
