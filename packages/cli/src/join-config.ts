/**
 * `coord join`'s flags and config file merged into a NodeConfig — apart from join itself, so the commands that only
 * need the node's config (fence, doctor, drill) do not load the agent.
 */
import { hostname } from 'node:os';
import { CoordError, requireNodeConfig, type NodeConfig } from '@coord/core';
import { applyConnectionFlags, readNodeFile, type ConnectionArgs } from './target.js';

/** The flags of `coord join`, as yargs hands them over (undefined = not given). */
export interface JoinArgs extends ConnectionArgs {
  node?: string | undefined;
  interface?: string | undefined;
  vip?: string[] | undefined;
  priority?: number | undefined;
  ttl?: number | undefined;
  preempt?: boolean | undefined;
  preemptDelay?: number | undefined;
  logLevel?: string | undefined;
  logFormat?: string | undefined;
  group?: string | undefined;
  mode?: string | undefined;
  trackScript?: string[] | undefined;
  trackWeight?: number[] | undefined;
  trackInterval?: number | undefined;
  trackTimeout?: number | undefined;
  trackRise?: number | undefined;
  trackFall?: number | undefined;
  trackInterface?: string[] | undefined;
  notify?: string | undefined;
  notifyLeader?: string | undefined;
  notifyFollower?: string | undefined;
  notifyFault?: string | undefined;
  notifyStop?: string | undefined;
  haproxyConfig?: string | undefined;
  haproxyBase?: string | undefined;
  haproxyBin?: string | undefined;
  haproxyRunDir?: string | undefined;
  metrics?: string | undefined;
  controlSocket?: string | undefined;
  fastFailover?: boolean | undefined;
  etcdOutage?: string | undefined;
  etcdOutageMax?: string | undefined;
  heartbeatMs?: number | undefined;
  peerPort?: number | undefined;
  peerAddress?: string | undefined;
  vrid?: number | undefined;
  advertInt?: number | undefined;
  vrrpVersion?: number | undefined;
  unicastPeer?: string[] | undefined;
  authPass?: string | undefined;
}

/**
 * Merge the YAML file (if any) and the flags into raw config input: flags win. Group-level flags (--interface,
 * --vip) define one group; --priority, --preempt and --preempt-delay apply to every group.
 */
export async function buildJoinConfig(args: JoinArgs): Promise<NodeConfig> {
  const file = await readNodeFile(args);
  const raw: Record<string, unknown> = applyConnectionFlags(file.raw, args);
  if (args.node !== undefined) raw.node = args.node;
  // The node name defaults to the host name (its first label), as keepalived's router_id does.
  raw.node ??= hostname().split('.')[0];
  if (args.ttl !== undefined) raw.ttl = args.ttl;
  if (args.logLevel !== undefined) raw.logLevel = args.logLevel;
  if (args.logFormat !== undefined) raw.logFormat = args.logFormat;
  if (args.mode !== undefined) raw.mode = args.mode;
  if (args.trackScript !== undefined || args.trackInterface !== undefined) {
    const fileTrack = (typeof raw.track === 'object' && raw.track !== null ? raw.track : {}) as Record<
      string,
      unknown
    >;
    raw.track = {
      ...fileTrack,
      ...(args.trackScript === undefined
        ? {}
        : {
            // --track-weight N applies to the --track-script in the same position.
            scripts: args.trackScript.map((command, i) => ({
              command,
              ...(args.trackWeight?.[i] === undefined ? {} : { weight: args.trackWeight[i] }),
              ...(args.trackInterval === undefined ? {} : { interval: args.trackInterval }),
              ...(args.trackTimeout === undefined ? {} : { timeout: args.trackTimeout }),
              ...(args.trackRise === undefined ? {} : { rise: args.trackRise }),
              ...(args.trackFall === undefined ? {} : { fall: args.trackFall }),
            })),
          }),
      ...(args.trackInterface === undefined
        ? {}
        : { interfaces: args.trackInterface.map((name) => ({ name })) }),
    };
  }
  if (args.haproxyConfig !== undefined) {
    const fileHaproxy = (
      typeof raw.haproxy === 'object' && raw.haproxy !== null ? raw.haproxy : {}
    ) as Record<string, unknown>;
    raw.haproxy = {
      ...fileHaproxy,
      config: args.haproxyConfig,
      ...(args.haproxyBase === undefined ? {} : { base: args.haproxyBase }),
      ...(args.haproxyBin === undefined ? {} : { bin: args.haproxyBin }),
      ...(args.haproxyRunDir === undefined ? {} : { runDir: args.haproxyRunDir }),
    };
  } else if (
    args.haproxyBase !== undefined ||
    args.haproxyBin !== undefined ||
    args.haproxyRunDir !== undefined
  ) {
    throw new CoordError(
      'ERR_COORD_CONFIG',
      '--haproxy-base/--haproxy-bin/--haproxy-run-dir need --haproxy-config',
      {
        hint: 'pass --haproxy-config PATH (where coord writes the rendered HAProxy config)',
      },
    );
  }
  const notifyFlags: Record<string, string | undefined> = {
    any: args.notify,
    leader: args.notifyLeader,
    follower: args.notifyFollower,
    fault: args.notifyFault,
    stop: args.notifyStop,
  };
  for (const [k, v] of Object.entries(notifyFlags)) {
    if (v === undefined) continue;
    raw.notify = {
      ...(typeof raw.notify === 'object' && raw.notify !== null ? raw.notify : {}),
      [k]: v,
    };
  }
  if (args.interface !== undefined || args.vip !== undefined) {
    const group: Record<string, unknown> = { name: args.group ?? 'default' };
    if (args.interface !== undefined) group.interface = args.interface;
    if (args.vip !== undefined) group.vips = args.vip;
    raw.groups = [group];
  }
  if (Array.isArray(raw.groups)) {
    raw.groups = raw.groups.map((g: unknown) => {
      if (typeof g !== 'object' || g === null) return g;
      const out: Record<string, unknown> = { ...(g as Record<string, unknown>) };
      if (args.priority !== undefined) out.priority = args.priority;
      if (args.preempt !== undefined) out.preempt = args.preempt;
      if (args.preemptDelay !== undefined) out.preemptDelay = args.preemptDelay;
      if (args.vrid !== undefined) out.vrid = args.vrid;
      if (args.advertInt !== undefined) out.advertInt = args.advertInt;
      if (args.vrrpVersion !== undefined) out.vrrpVersion = args.vrrpVersion;
      if (args.unicastPeer !== undefined) out.unicastPeers = args.unicastPeer;
      if (args.authPass !== undefined) out.authPass = args.authPass;
      return out;
    });
  } else if (raw.groups === undefined) {
    throw new CoordError('ERR_COORD_CONFIG', 'no VIP group configured', {
      hint: 'pass --interface IF --vip CIDR, or --config FILE with a "groups:" list',
    });
  }
  if (args.metrics !== undefined) raw.metrics = args.metrics;
  if (args.controlSocket !== undefined) raw.controlSocket = args.controlSocket;
  if (args.fastFailover !== undefined) raw.fastFailover = args.fastFailover;
  if (args.etcdOutage !== undefined) raw.etcdOutage = args.etcdOutage;
  if (args.etcdOutageMax !== undefined) raw.etcdOutageMax = args.etcdOutageMax;
  if (args.heartbeatMs !== undefined || args.peerPort !== undefined || args.peerAddress !== undefined) {
    const filePeer = (typeof raw.peer === 'object' && raw.peer !== null ? raw.peer : {}) as Record<
      string,
      unknown
    >;
    raw.peer = {
      ...filePeer,
      ...(args.heartbeatMs === undefined ? {} : { heartbeatMs: args.heartbeatMs }),
      ...(args.peerPort === undefined ? {} : { port: args.peerPort }),
      ...(args.peerAddress === undefined ? {} : { address: args.peerAddress }),
    };
  }
  return requireNodeConfig(raw, file.path ?? 'flags');
}

/** What a reload applies to a running node (etcd mode): each group's priority, preemption and preemption delay. */
const LIVE_GROUP_KEYS: ReadonlySet<string> = new Set(['priority', 'preempt', 'preemptDelayMs']);
/** Derived from other keys, which are compared themselves: `follows` comes from `syncGroup`. */
const DERIVED_GROUP_KEYS: ReadonlySet<string> = new Set(['follows']);
/** Settings named as in the YAML file where the running config calls them otherwise. */
const YAML_NAMES: Readonly<Record<string, string>> = {
  ttlSec: 'ttl',
  etcdOutageMaxMs: 'etcdOutageMax',
  advertise: 'vrrp',
  // VRRP mode: the group's own vrid, advertInt, vrrpVersion, unicastPeers, unicastSrc and authPass.
  vrrp: 'vrid/advertInt/vrrpVersion/unicastPeers/unicastSrc/authPass',
};

/** The tracked interfaces the operator listed: fast failover adds each VIP interface itself (config.ts). */
function listedTrack(c: NodeConfig): unknown {
  if (!c.fastFailover) return c.track;
  const added = new Set(c.groups.map((g) => g.interface));
  return {
    ...c.track,
    interfaces: c.track.interfaces.filter((x) => !(x.weight === undefined && added.has(x.name))),
  };
}

/**
 * What differs between the running config and a re-read one that a reload cannot apply, by YAML name (`track`,
 * `notify`, `groups.web.announce`…); empty when it can apply all of it. Anything not applied live is listed, so a
 * reload never reports "no change" while the file says otherwise.
 */
export function changesNeedingRestart(cur: NodeConfig, next: NodeConfig): string[] {
  const out = new Set<string>();
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const named = (k: string) => YAML_NAMES[k] ?? k;
  const keys = new Set([...Object.keys(cur), ...Object.keys(next)]) as Set<keyof NodeConfig>;
  for (const k of keys) {
    if (k === 'groups') continue;
    if (k === 'track' ? !same(listedTrack(cur), listedTrack(next)) : !same(cur[k], next[k]))
      out.add(named(k));
  }
  const byName = (c: NodeConfig) => new Map(c.groups.map((g) => [g.name, g]));
  const before = byName(cur);
  const after = byName(next);
  for (const name of new Set([...before.keys(), ...after.keys()])) {
    const a = before.get(name);
    const b = after.get(name);
    if (a === undefined || b === undefined) {
      out.add(`groups.${name} (${a === undefined ? 'added' : 'removed'})`);
      continue;
    }
    const fields = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof typeof a>;
    for (const f of fields)
      if (!LIVE_GROUP_KEYS.has(f) && !DERIVED_GROUP_KEYS.has(f) && !same(a[f], b[f]))
        out.add(`groups.${name}.${named(f)}`);
  }
  // The same groups in another order: the first one's interface gives the peer channel its address.
  const order = (c: NodeConfig) => c.groups.map((g) => g.name).join(',');
  if (out.size === 0 && order(cur) !== order(next)) out.add('groups (their order)');
  return [...out];
}
