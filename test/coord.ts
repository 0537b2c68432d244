/**
 * Runs the real `coord` binary (built dist) inside lab hosts. Tests, the demo and the benchmarks share this so
 * they exercise exactly what an operator runs.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '@coord/agent';
import type { ExecResult, Lab, LabHost, LabProcess } from './lab/index.js';
import { jsonLines, waitFor } from './lab/index.js';

export const COORD_BIN = fileURLToPath(new URL('../packages/cli/bin/coord.js', import.meta.url));
const COORD_DIST = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));

/**
 * The command lab nodes run `coord join` with: COORD_COMMAND when set (the installed package: `/usr/bin/coord`;
 * a staged one: `…/usr/lib/coord/node …/usr/lib/coord/coord.mjs`), else this checkout's build under the current
 * Node. The CLI commands the tests run themselves always use the checkout's build.
 */
export const COORD_COMMAND: readonly string[] =
  process.env['COORD_COMMAND'] !== undefined && process.env['COORD_COMMAND'].trim() !== ''
    ? process.env['COORD_COMMAND'].trim().split(/\s+/)
    : [process.execPath, COORD_BIN];

export interface JoinOptions {
  cluster: string;
  vips: string[];
  priority?: number;
  preempt?: boolean;
  preemptDelaySec?: number;
  ttlSec?: number;
  extraArgs?: string[];
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Leave out `--etcd` (the test gives its own connection flags, e.g. TLS and a user, in `extraArgs`). */
  withoutEtcdFlags?: boolean;
}

/** Fail loudly (never skip) when the CLI has not been built. */
export function assertBuilt(): void {
  if (!existsSync(COORD_DIST)) {
    throw new Error(`coord is not built (${COORD_DIST} missing): run \`pnpm build\` first`);
  }
}

/** Where a lab node's control socket lives (namespaces share the filesystem). */
export function controlSocketFor(lab: Lab, host: LabHost, cluster: string): string {
  return join(lab.runDir, `${host.name}-${cluster}.sock`);
}

/** The arguments of `coord join` for a lab node (without the command itself: see {@link COORD_COMMAND}). */
export function joinArgs(lab: Lab, host: LabHost, o: JoinOptions): string[] {
  const args = [
    'join',
    // Hosts share one filesystem: a node config of the machine itself is never read by lab nodes.
    '--config',
    '',
    ...(o.withoutEtcdFlags === true ? [] : ['--etcd', lab.etcd.endpoints.join(',')]),
    '--cluster',
    o.cluster,
    '--node',
    host.name,
    '--interface',
    host.iface,
    '--priority',
    String(o.priority ?? 100),
    '--ttl',
    String(o.ttlSec ?? 1),
    '--log-level',
    o.logLevel ?? 'info',
    // Hosts share one filesystem: each node gets its own control socket.
    '--control-socket',
    controlSocketFor(lab, host, o.cluster),
  ];
  for (const v of o.vips) args.push('--vip', v);
  if (o.preempt === false) args.push('--no-preempt');
  if (o.preemptDelaySec !== undefined) args.push('--preempt-delay', String(o.preemptDelaySec));
  return [...args, ...(o.extraArgs ?? [])];
}

/** {@link COORD_COMMAND} as program and leading arguments; the checkout's build must exist when it is the default. */
function coordCommand(): [string, ...string[]] {
  if (process.env['COORD_COMMAND'] === undefined) assertBuilt();
  return COORD_COMMAND as [string, ...string[]];
}

/** Start `coord join` in `host` (with {@link COORD_COMMAND}). */
export function startCoord(lab: Lab, host: LabHost, o: JoinOptions): LabProcess {
  const [cmd, ...pre] = coordCommand();
  return lab.spawn(host, cmd, [...pre, ...joinArgs(lab, host, o)], { name: `coord-${o.cluster}` });
}

/** `coord join` on h1, h2, h3 of `lab` with priorities 150, 100, 50, one VIP, the same extra flags everywhere. */
export function startThree(lab: Lab, cluster: string, cidr: string, extraArgs: string[]): LabProcess[] {
  const [h1, h2, h3] = lab.hosts as [LabHost, LabHost, LabHost];
  return [
    startCoord(lab, h1, { cluster, vips: [cidr], priority: 150, extraArgs }),
    startCoord(lab, h2, { cluster, vips: [cidr], priority: 100, extraArgs }),
    startCoord(lab, h3, { cluster, vips: [cidr], priority: 50, extraArgs }),
  ];
}

/** The hosts whose interface holds `address` right now. */
export async function holdersOf(
  lab: Lab,
  address: string,
  hosts: readonly LabHost[] = lab.hosts,
): Promise<string[]> {
  const out: string[] = [];
  for (const h of hosts) if ((await lab.addresses(h)).includes(address)) out.push(h.name);
  return out;
}

/** Wait until exactly one host holds `address`; return its name. */
export function waitForSingleHolder(
  lab: Lab,
  address: string,
  opts: { timeoutMs?: number; not?: string } = {},
): Promise<string> {
  return waitFor(
    `a single holder of ${address}${opts.not === undefined ? '' : ` other than ${opts.not}`}`,
    async () => {
      const h = await holdersOf(lab, address);
      return h.length === 1 && h[0] !== opts.not ? h[0] : undefined;
    },
    { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 20 },
  );
}

/** Wait until `name` is the only holder of `address`. */
export function waitForHolder(lab: Lab, address: string, name: string, timeoutMs = 10_000): Promise<true> {
  return waitFor(
    `${name} to be the only holder of ${address}`,
    async () => ((await holdersOf(lab, address)).join() === name ? true : undefined),
    { timeoutMs, intervalMs: 20 },
  );
}

/** Each log line of a coord node, parsed (coord logs JSON lines when not on a terminal). */
export async function coordLog(proc: LabProcess): Promise<Record<string, unknown>[]> {
  return jsonLines(await proc.output());
}

/**
 * For a lab created with `tls: { auth: true }`: create the cluster's roles (coord etcd-roles --apply, as root)
 * and one etcd user per host bound to the node role, each with its own client certificate (CN = the user) and
 * password file. Returns the `coord` connection flags of a host's node (use with `withoutEtcdFlags`).
 */
export async function tlsNodeCredentials(lab: Lab, cluster: string): Promise<(host: LabHost) => string[]> {
  const tls = lab.tls();
  const r = await lab.exec(
    lab.hosts[0] as LabHost,
    process.execPath,
    [COORD_BIN, 'etcd-roles', '--cluster', cluster, '--apply', ...tls.rootArgs()],
    {
      reject: false,
      timeoutMs: 20_000,
    },
  );
  if (r.exitCode !== 0) throw new Error(`coord etcd-roles --apply: ${r.stderr}`);
  const password = (user: string) => join(lab.runDir, `${user}.password`);
  for (const h of lab.hosts)
    await tls.addUser(`coord-${h.name}`, `coord-node-${cluster}`, password(`coord-${h.name}`));
  return (host) => {
    const user = `coord-${host.name}`;
    const cert = tls.client(user);
    return [
      '--etcd',
      lab.etcd.endpoints.join(','),
      '--etcd-cacert',
      tls.ca,
      '--etcd-cert',
      cert.cert,
      '--etcd-key',
      cert.key,
      '--etcd-user',
      user,
      '--etcd-password-file',
      password(user),
    ];
  };
}

/** A node's settings for a YAML `--config` file (what `reload-config` re-reads). */
export interface NodeFileOptions {
  cluster: string;
  vips: string[];
  priority: number;
  ttlSec?: number;
  preempt?: boolean;
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** `fastFailover: true` (the peer channel on its default port). */
  fastFailover?: boolean;
  /** `etcdOutage: hold` (the peer channel on its default port). */
  etcdOutage?: 'fence' | 'hold';
}

/** Where a lab node's YAML config lives (namespaces share the filesystem). */
export function configFileFor(lab: Lab, host: LabHost, cluster: string): string {
  return join(lab.runDir, `${host.name}-${cluster}.yaml`);
}

/** The YAML of one node: everything in the file and nothing on the command line, so a reload sees all of it. */
export function nodeConfigYaml(lab: Lab, host: LabHost, o: NodeFileOptions): string {
  return [
    'mode: etcd',
    'etcd:',
    ...lab.etcd.endpoints.map((e) => `  - ${e}`),
    `cluster: ${o.cluster}`,
    `node: ${host.name}`,
    `controlSocket: ${controlSocketFor(lab, host, o.cluster)}`,
    `ttl: ${o.ttlSec ?? 1}`,
    `logLevel: ${o.logLevel ?? 'info'}`,
    ...(o.fastFailover === true ? ['fastFailover: true'] : []),
    ...(o.etcdOutage === undefined ? [] : [`etcdOutage: ${o.etcdOutage}`]),
    'groups:',
    '  - name: default',
    `    interface: ${host.iface}`,
    '    vips:',
    ...o.vips.map((v) => `      - ${v}`),
    `    priority: ${o.priority}`,
    `    preempt: ${o.preempt ?? true}`,
    '',
  ].join('\n');
}

/** Write (or rewrite) the node's YAML config; returns its path. */
export function writeNodeConfig(lab: Lab, host: LabHost, o: NodeFileOptions): string {
  const file = configFileFor(lab, host, o.cluster);
  writeFileSync(file, nodeConfigYaml(lab, host, o));
  return file;
}

/**
 * Start `coord join --config FILE` in `host` (with {@link COORD_COMMAND}); the file names the node's control socket
 * ({@link controlSocketFor}).
 */
export function startCoordFromFile(lab: Lab, host: LabHost, cluster: string): LabProcess {
  const [cmd, ...pre] = coordCommand();
  return lab.spawn(host, cmd, [...pre, 'join', '--config', configFileFor(lab, host, cluster)], {
    name: `coord-${cluster}`,
  });
}

/** Run a coord command to its end in `host` with {@link COORD_COMMAND}. Never rejects; the exit code says how it went. */
export function runCoord(lab: Lab, host: LabHost, args: readonly string[]): Promise<ExecResult> {
  const [cmd, ...pre] = coordCommand();
  return lab.exec(host, cmd, [...pre, ...args], { reject: false, timeoutMs: 30_000 });
}

/**
 * `coord fence --config FILE` in `host` with the file `startCoordFromFile` runs the node with — what the package's
 * unit runs as ExecStopPost once coord has ended.
 */
export function fenceNodeFromFile(lab: Lab, host: LabHost, cluster: string): Promise<ExecResult> {
  return runCoord(lab, host, ['fence', '--config', configFileFor(lab, host, cluster)]);
}

/**
 * What `coord reload-config` does, without the CLI's start-up (about 1 s, several on a loaded machine, which would
 * blur when the reload happened): the same control request over the node's control socket.
 */
export async function reloadNodeConfig(
  lab: Lab,
  host: LabHost,
  cluster: string,
): Promise<{ ok: boolean; applied: string[]; restartRequired: string[]; error?: string }> {
  try {
    const res = await controlRequest(controlSocketFor(lab, host, cluster), { cmd: 'reload-config' });
    if (!res.ok) return { ok: false, applied: [], restartRequired: [], error: res.error };
    const r = res.result as { applied: string[]; restartRequired: string[] };
    return { ok: true, applied: r.applied, restartRequired: r.restartRequired };
  } catch (e) {
    return { ok: false, applied: [], restartRequired: [], error: e instanceof Error ? e.message : String(e) };
  }
}
