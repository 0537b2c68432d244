import { readFile } from 'node:fs/promises';
import * as z from 'zod';
import { CoordError } from './errors.js';
import { configKeys } from './config-keys.js';
import { formatCidr, parseCidr, type Vip } from './net.js';
import {
  etcdEndpointRule,
  ipFamily,
  listenRule,
  vrrpAdvertIntervalRule,
  vrrpAuthPassRule,
  vrrpFamilyRule,
} from './rules.js';
import { commonJs, NAME_PATTERN } from './types.js';

/** One problem in a config, with where it is and what to do. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
  readonly hint?: string;
}

const name = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .regex(NAME_PATTERN, `${what} may hold letters, digits, '.', '_' and '-' (1-63 characters)`);

const interfaceName = z
  .string({ error: 'interface must be a string' })
  .regex(
    /^[A-Za-z0-9_.:@-]{1,15}$/,
    'interface must be a Linux interface name (1-15 characters, no spaces or /)',
  );

const vipText = z.string({ error: 'a VIP must be a string like 10.0.0.50/24' }).superRefine((v, ctx) => {
  const r = parseCidr(v);
  if (!r.ok) ctx.addIssue({ code: 'custom', message: r.reason });
});

const seconds = (what: string, min: number, max: number) =>
  z
    .number({ error: `${what} must be a number of seconds` })
    .min(min, `${what} must be at least ${min}`)
    .max(max, `${what} must be at most ${max}`);

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Seconds (a number) or text with a unit (`300ms`, `30s`, `5m`, `1h`; bare text means seconds), in ms. */
export function parseDurationMs(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v * 1000 : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
  return m === null ? undefined : Number(m[1]) * (DURATION_UNITS[m[2] ?? 's'] ?? 1000);
}

/** A duration config value, in milliseconds, within [minMs, maxMs]. */
const duration = (what: string, minMs: number, maxMs: number) =>
  z
    .union([z.number(), z.string()], { error: `${what} must be seconds or a duration like 30s, 5m` })
    .transform((v, ctx) => {
      const ms = parseDurationMs(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `${what} must be seconds or a duration like 30s, 5m` });
        return z.NEVER;
      }
      if (ms < minMs || ms > maxMs) {
        ctx.addIssue({
          code: 'custom',
          message: `${what} must be between ${minMs / 1000} s and ${maxMs / 60_000} min`,
        });
        return z.NEVER;
      }
      return Math.round(ms);
    });

const filePath = (what: string) =>
  z
    .string({ error: `${what} must be a file path` })
    .min(1, `${what} must not be empty`)
    .max(4096, `${what} is too long`)
    .refine((v) => !v.includes('\0'), `${what} must not contain NUL`);

/**
 * How to reach etcd: `etcd: [URL, …]` (plaintext, the short form) or `etcd: { endpoints, cacert, cert, key, user,
 * passwordFile }`. A password is never a config value or a flag: it comes from `passwordFile` or COORD_ETCD_PASSWORD.
 */
const etcdSchema = z.preprocess(
  (v) => (Array.isArray(v) ? { endpoints: v } : v),
  z
    .object({
      endpoints: z
        .array(z.string({ error: 'an etcd endpoint must be a string' }))
        .default([])
        .describe('etcd client URLs, http://HOST:2379 or https://HOST:2379; no credentials in them.'),
      cacert: filePath('etcd.cacert')
        .optional()
        .describe('PEM CA certificate that verifies the etcd servers.'),
      cert: filePath('etcd.cert').optional().describe('PEM client certificate for etcd (with key).'),
      key: filePath('etcd.key')
        .optional()
        .describe('PEM private key of the client certificate (unencrypted).'),
      user: z
        .string({ error: 'etcd.user must be a string' })
        .min(1, 'etcd.user must not be empty')
        .max(128, 'etcd.user is too long')
        .optional()
        .describe(
          'etcd user (authentication enabled); its password comes from passwordFile or COORD_ETCD_PASSWORD.',
        ),
      passwordFile: filePath('etcd.passwordFile')
        .optional()
        .describe('File holding the etcd password (one line, mode 0600).'),
      /** Refused with a hint (never echoed): see the superRefine below. */
      password: z
        .unknown()
        .optional()
        .describe('Not accepted: a password goes in passwordFile or COORD_ETCD_PASSWORD.'),
    })
    .strict()
    .superRefine((e, ctx) => {
      e.endpoints.forEach((text, i) => {
        const r = etcdEndpointRule(text);
        if (!r.ok) ctx.addIssue({ code: 'custom', path: ['endpoints', i], message: r.reason });
      });
      if (e.password !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['password'],
          message:
            'a password is not accepted in the config file: put it in a file named by etcd.passwordFile (mode 0600) or in COORD_ETCD_PASSWORD',
        });
      if ((e.cert === undefined) !== (e.key === undefined))
        ctx.addIssue({
          code: 'custom',
          path: [e.cert === undefined ? 'cert' : 'key'],
          message: 'etcd.cert and etcd.key go together (the client certificate and its private key)',
        });
      const tls = e.cacert !== undefined || e.cert !== undefined;
      if (tls && e.endpoints.some((x) => x.trim().startsWith('http://')))
        ctx.addIssue({
          code: 'custom',
          path: ['endpoints'],
          message: 'TLS files are set but an endpoint is http://: use https:// endpoints with TLS',
        });
    })
    .transform((e) => ({
      endpoints: e.endpoints.map((x) => {
        const r = etcdEndpointRule(x);
        return r.ok ? r.value : x;
      }),
      caFile: e.cacert,
      certFile: e.cert,
      keyFile: e.key,
      user: e.user,
      passwordFile: e.passwordFile,
    })),
);

/** How a node reaches etcd (validated: URLs without credentials; TLS files and user as given, not yet read). */
export type EtcdSettings = z.output<typeof etcdSchema>;

/**
 * The node config: the YAML file and the flags both end up here. Built on first use, not when the module is
 * loaded: zod builds every schema object eagerly (a few hundred here), and a command that only reads the
 * connection settings (status, service, server) need not pay for them (the footprint targets in the README).
 */
function buildNodeConfigObject() {
  const groupSchema = z
    .object({
      name: name('group name').describe(
        'Name of the VIP group: one election per group, in etcd and in the logs.',
      ),
      interface: interfaceName.describe('Interface the VIPs are added to and announced on (e.g. eth0).'),
      vips: z
        .array(vipText)
        .min(1, 'a group needs at least one VIP')
        .describe('The virtual IPs of the group, as ADDRESS/PREFIX (IPv4 or IPv6); they move together.'),
      priority: z
        .number()
        .int('priority must be a whole number')
        .min(1, 'priority must be 1-254 (1-255 in VRRP mode)')
        .max(255, 'priority must be 1-254 (1-255 in VRRP mode)')
        .default(100)
        .describe(
          'Election priority, 1-254 (VRRP mode: 1-255, 255 owns the address); the highest live one holds. Default 100.',
        ),
      /** VRRP mode: the virtual router id shared with the keepalived peers. */
      vrid: z
        .number()
        .int('vrid must be a whole number')
        .min(1, 'vrid must be 1-255')
        .max(255, 'vrid must be 1-255')
        .optional()
        .describe('VRRP mode: the virtual router id, 1-255, the same as on the keepalived peers.'),
      /** VRRP mode: advertisement interval in seconds (v2: whole seconds). */
      advertInt: seconds('advertInt', 0.01, 255)
        .default(1)
        .describe(
          'VRRP mode: advertisement interval in seconds; VRRPv2 takes whole seconds 1-255, VRRPv3 0.01-40.95. Default 1.',
        ),
      vrrpVersion: z
        .union([z.literal(2), z.literal(3)], { error: 'vrrpVersion must be 2 or 3' })
        .default(3)
        .describe('VRRP mode: protocol version, 2 (RFC 3768, IPv4 only) or 3 (RFC 5798). Default 3.'),
      unicastPeers: z
        .array(z.string())
        .default([])
        .describe('VRRP mode: send adverts to these peer addresses instead of the VRRP multicast group.'),
      unicastSrc: z
        .string()
        .optional()
        .describe(
          'VRRP mode: the address adverts come from (keepalived’s unicast_src_ip); it must be the interface’s own ' +
            'first IPv4 address (IPv6: its link-local address), which coord uses anyway — checked at start.',
        ),
      /** VRRPv2 simple password (at most 8 bytes); never logged. */
      authPass: z
        .string()
        .optional()
        .describe('VRRP mode, v2 only: simple password, at most 8 bytes (RFC 3768 §5.3.6.1); never logged.'),
      preempt: z
        .boolean()
        .default(true)
        .describe(
          'Take the group from a lower-priority holder (false: the current holder keeps it). Default true.',
        ),
      preemptDelay: seconds('preemptDelay', 0, 3600)
        .default(0)
        .describe('Seconds this node must have been up before it preempts. Default 0.'),
      vrrp: z
        .object({
          vrid: z
            .number()
            .int('vrrp.vrid must be a whole number')
            .min(1, 'vrrp.vrid must be 1-255')
            .max(255, 'vrrp.vrid must be 1-255')
            .describe('The virtual router id the keepalived nodes use for these VIPs.'),
          priority: z
            .number()
            .int('vrrp.priority must be a whole number')
            .min(1, 'vrrp.priority must be 1-254')
            .max(254, 'vrrp.priority must be 1-254')
            .default(254)
            .describe(
              'Priority of the adverts; above every keepalived node’s, so they stay BACKUP. Default 254.',
            ),
          advertInt: seconds('vrrp.advertInt', 0.01, 255)
            .default(1)
            .describe('Advertisement interval in seconds, as the keepalived nodes’ advert_int. Default 1.'),
          version: z
            .union([z.literal(2), z.literal(3)], { error: 'vrrp.version must be 2 or 3' })
            .default(3)
            .describe('VRRP version of the keepalived nodes, 2 or 3. Default 3.'),
          unicastPeers: z
            .array(z.string())
            .default([])
            .describe('Send the adverts to these addresses instead of the VRRP multicast group.'),
          authPass: z
            .string()
            .optional()
            .describe('VRRPv2 simple password of the keepalived nodes (at most 8 bytes); never logged.'),
        })
        .strict()
        .optional()
        .describe(
          'Etcd mode, migrating from keepalived: every coord node that may hold the group sends VRRP adverts for ' +
            'it, so keepalived nodes still in the cluster stay BACKUP; while a keepalived node is Master, coord ' +
            'waits for it to step down (docs/design.md, "Hybrid mode").',
        ),
      syncGroup: name('syncGroup')
        .optional()
        .describe(
          'Bind groups together (keepalived’s vrrp_sync_group): groups with the same syncGroup always have the same ' +
            'holder and move together. The group whose name sorts first leads; give every node the same groups.',
        ),
      announce: z
        .object({
          count: z
            .number()
            .int()
            .min(1)
            .max(20)
            .default(3)
            .describe('Gratuitous ARP / unsolicited NA bursts sent when the VIPs are claimed. Default 3.'),
          interval: seconds('announce.interval', 0.01, 10)
            .default(0.1)
            .describe('Seconds between the announcements of a burst. Default 0.1.'),
          refresh: seconds('announce.refresh', 0, 3600)
            .default(10)
            .describe('Seconds between announcements while holding (0: none after the burst). Default 10.'),
        })
        .strict()
        .default({ count: 3, interval: 0.1, refresh: 10 })
        .describe(
          'How the holder announces its VIPs (both GARP forms for IPv4, an unsolicited NA for IPv6).',
        ),
    })
    .strict();

  const trackScriptSchema = z
    .object({
      name: name('track script name')
        .optional()
        .describe('Name of the check in logs, status and metrics. Default script1, script2, …'),
      /** Program and arguments, split without a shell (quotes allowed; pipes and variables are refused). */
      command: z
        .string()
        .min(1, 'command must not be empty')
        .max(1024, 'command is too long')
        .describe(
          'Program and arguments, run without a shell (quotes allowed; pipes and variables refused); exit 0 = healthy.',
        ),
      interval: seconds('interval', 0.1, 3600)
        .default(2)
        .describe('Seconds between runs, start to start. Default 2.'),
      timeout: seconds('timeout', 0.1, 600)
        .default(2)
        .describe('Seconds before a run counts as failed and is killed with what it started. Default 2.'),
      rise: z
        .number()
        .int()
        .min(1)
        .max(100)
        .default(2)
        .describe('Successes in a row to turn healthy. Default 2.'),
      fall: z
        .number()
        .int()
        .min(1)
        .max(100)
        .default(2)
        .describe('Failures in a row to turn failed. Default 2.'),
      /** Added to the priority while failing (negative) or while passing (positive); none = FAULT when failing. */
      weight: z
        .number()
        .int()
        .min(-254)
        .max(254)
        .optional()
        .describe(
          'Added to the priority while failing (negative) or passing (positive); none: failing puts the node in FAULT.',
        ),
    })
    .strict();

  const notifySchema = z
    .object({
      any: z
        .string()
        .min(1)
        .optional()
        .describe('Command run on every transition, after the state’s own command.'),
      leader: z.string().min(1).optional().describe('Command run when this node holds the VIPs.'),
      follower: z.string().min(1).optional().describe('Command run when this node becomes a follower.'),
      fault: z.string().min(1).optional().describe('Command run when a check puts the node in FAULT.'),
      stop: z.string().min(1).optional().describe('Command run when coord stops.'),
      timeout: seconds('notify.timeout', 0.1, 600)
        .default(10)
        .describe('Seconds a hook may run before it is killed. Default 10.'),
    })
    .strict();

  const listenAddress = z.string({ error: 'must be ADDR:PORT' }).superRefine((v, ctx) => {
    const r = listenRule(v);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: r.reason });
  });

  return z
    .object({
      mode: z
        .enum(['etcd', 'vrrp'])
        .default('etcd')
        .describe(
          'etcd: elect through etcd leases (fenced); vrrp: speak VRRP with keepalived peers. Default etcd.',
        ),
      etcd: etcdSchema
        .prefault({ endpoints: [] })
        .describe(
          'How to reach etcd: a list of endpoint URLs, or an object with endpoints and TLS/user settings.',
        ),
      cluster: name('cluster')
        .optional()
        .describe('Cluster name: the key prefix /coord/NAME/ in etcd, and part of the etcd role names.'),
      node: name('node').describe(
        'This node’s name, unique in the cluster. Default: the host name (its first label).',
      ),
      ttl: z
        .number()
        .int('ttl must be whole seconds (etcd leases are)')
        .min(1, 'ttl must be at least 1')
        .max(60, 'ttl must be at most 60')
        .default(1)
        .describe(
          'Lease TTL in whole seconds: a crashed holder is replaced within about TTL + 0.5 s. Default 1.',
        ),
      logLevel: z
        .enum(['error', 'warn', 'info', 'debug'])
        .default('info')
        .describe('Log level: error, warn, info or debug. Default info.'),
      logFormat: z
        .enum(['json', 'text'])
        .optional()
        .describe(
          'Log lines as JSON objects (journald, log shippers) or dated text for people. Default: text on a terminal, else json.',
        ),
      metrics: listenAddress.optional().describe('Serve Prometheus metrics on ADDR:PORT at /metrics.'),
      controlSocket: z
        .string({ error: 'controlSocket must be a path' })
        .max(107, 'controlSocket is too long for a unix socket path')
        .optional()
        .describe(
          "Local control socket (coord status --local, reload-config); '' disables it. Default /run/coord/coord.sock.",
        ),
      groups: z
        .array(groupSchema)
        .min(1, 'configure at least one group (--interface and --vip)')
        .describe('The VIP groups this node stands for.'),
      track: z
        .object({
          scripts: z.array(trackScriptSchema).default([]).describe('Health-check commands.'),
          interfaces: z
            .array(
              z
                .object({
                  name: interfaceName.describe(
                    'Interface whose link or carrier loss counts as a failed check.',
                  ),
                  weight: z
                    .number()
                    .int()
                    .min(-254)
                    .max(254)
                    .optional()
                    .describe('Priority change while it is down; none: down puts the node in FAULT.'),
                })
                .strict(),
            )
            .default([])
            .describe('Tracked interfaces.'),
        })
        .strict()
        .default({ scripts: [], interfaces: [] })
        .describe('Health checks: weights move the priority, a failing check without weight is FAULT.'),
      notify: notifySchema
        .default({ timeout: 10 })
        .describe(
          'Hooks run on every transition, in order, one at a time, with COORD_STATE, COORD_GROUP, … set.',
        ),
      fastFailover: z
        .boolean({ error: 'fastFailover must be true or false' })
        .default(false)
        .describe(
          'Etcd mode: heartbeat the other nodes directly and, when the holder falls silent and nobody answers for ' +
            'its VIP on the wire, revoke its lease and take over at once (docs/design.md, "Peer channel and fast failover"). ' +
            'Implies tracking each VIP interface: losing carrier removes the VIP at once. Default false.',
        ),
      etcdOutage: z
        .enum(['fence', 'hold'], { error: 'etcdOutage must be fence or hold' })
        .default('fence')
        .describe(
          'When etcd cannot be reached: fence (the holder drops its VIP at its lease deadline) or hold (it keeps ' +
            'the VIP while every other member promises over the peer channel that it cannot reach etcd either; ' +
            'no new holder can be elected meanwhile). docs/design.md, "Riding out etcd outages". Default fence.',
        ),
      etcdOutageMax: duration('etcdOutageMax', 1000, 3_600_000)
        .prefault('5m')
        .describe(
          'etcdOutage hold: the longest a holder keeps its VIP past its lease on promises. Default 5m.',
        ),
      peer: z
        .object({
          port: z
            .number()
            .int('peer.port must be a whole number')
            .min(1)
            .max(65535)
            .default(7969)
            .describe('UDP port of the peer channel, the same on every node. Default 7969.'),
          address: z
            .union([z.ipv4(), z.ipv6()], { error: 'peer.address must be an IP address' })
            .optional()
            .describe(
              "Address the other nodes send heartbeats to. Default: the first group interface's first IPv4 address.",
            ),
          heartbeatMs: z
            .number()
            .int('peer.heartbeatMs must be whole milliseconds')
            .min(10, 'peer.heartbeatMs must be at least 10')
            .max(1000, 'peer.heartbeatMs must be at most 1000')
            .default(50)
            .describe(
              'Heartbeat interval in ms; a holder silent for 3 intervals is checked on the wire. Default 50.',
            ),
        })
        .strict()
        .prefault({})
        .describe('The peer channel between nodes (used with fastFailover and etcdOutage: hold).'),
      haproxy: z
        .object({
          config: z.string().min(1).describe('Where coord writes the HAProxy config it renders from etcd.'),
          base: z
            .string()
            .min(1)
            .optional()
            .describe('Node-local HAProxy config put into every render (never from etcd).'),
          bin: z
            .string()
            .min(1)
            .default('/usr/sbin/haproxy')
            .describe('HAProxy binary. Default /usr/sbin/haproxy.'),
          runDir: z
            .string()
            .min(1)
            .default('/run/coord/haproxy')
            .describe('HAProxy master socket and pidfile. Default /run/coord/haproxy.'),
          nonlocalBind: z
            .enum(['set', 'require', 'ignore'])
            .default('set')
            .describe('net.ipv4.ip_nonlocal_bind: set it to 1, require it, or ignore it. Default set.'),
        })
        .strict()
        .optional()
        .describe('Run the HAProxy loop (etcd mode): keep HAProxy serving the services in etcd.'),
    })
    .strict();
}

type RawConfig = z.output<ReturnType<typeof buildNodeConfigObject>>;

/** Groups one peer heartbeat carries (MAX_GROUPS in @coord/peer, which depends on this package). */
const PEER_MAX_GROUPS = 24;

/** Every rule that spans fields: written once, checked before anything on the host is touched. */
function crossCheck(c: RawConfig, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: 'custom', path, message });
  if (c.mode === 'vrrp' && c.fastFailover)
    issue(
      ['fastFailover'],
      'fast failover is an etcd-mode feature (VRRP mode fails over by its own adverts)',
    );
  // One heartbeat datagram carries every group of a node (MAX_GROUPS in @coord/peer).
  if ((c.fastFailover || c.etcdOutage === 'hold') && c.groups.length > PEER_MAX_GROUPS)
    issue(['groups'], `the peer channel carries at most ${PEER_MAX_GROUPS} groups per node`);
  if (c.mode === 'vrrp' && c.etcdOutage === 'hold')
    issue(['etcdOutage'], 'etcdOutage: hold is an etcd-mode feature (VRRP mode does not use etcd)');
  if (c.mode === 'etcd') {
    if (c.etcd.endpoints.length === 0) issue(['etcd'], 'etcd mode needs at least one endpoint');
    if (c.cluster === undefined) issue(['cluster'], 'etcd mode needs a cluster name');
  }
  const seenVip = new Map<string, string>();
  const seenGroup = new Set<string>();
  const seenVrid = new Map<string, string>();
  c.groups.forEach((g, gi) => {
    if (seenGroup.has(g.name)) issue(['groups', gi, 'name'], `group "${g.name}" is configured twice`);
    seenGroup.add(g.name);
    const vips = g.vips.flatMap((text) => {
      const r = parseCidr(text);
      return r.ok ? [r.vip] : [];
    });
    vips.forEach((vip, vi) => {
      const where = `groups[${gi}].vips[${vi}]`;
      const prior = seenVip.get(vip.address);
      if (prior !== undefined)
        issue(['groups', gi, 'vips', vi], `VIP ${formatCidr(vip)} is configured twice (also at ${prior})`);
      else seenVip.set(vip.address, where);
    });
    if (c.mode === 'etcd') {
      if (g.priority > 254)
        issue(['groups', gi, 'priority'], 'priority 255 means "address owner" and exists only in VRRP mode');
      if (g.vrrp !== undefined) {
        const v = g.vrrp;
        const family = vips[0]?.family ?? 4;
        const where = (k: string) => ['groups', gi, 'vrrp', k];
        const interval = vrrpAdvertIntervalRule(v.version, v.advertInt);
        if (!interval.ok) issue(where('advertInt'), interval.reason);
        if (v.authPass !== undefined) {
          const auth = vrrpAuthPassRule(v.version, v.authPass);
          if (!auth.ok) issue(where('authPass'), auth.reason);
        }
        if (vips.some((x) => x.family !== family))
          issue(
            ['groups', gi, 'vips'],
            'a group that speaks VRRP carries one address family: split IPv4 and IPv6',
          );
        const fam = vrrpFamilyRule(v.version, family);
        if (!fam.ok) issue(where('version'), fam.reason);
        const key = `${g.interface}/${v.vrid}`;
        const prior = seenVrid.get(key);
        if (prior !== undefined)
          issue(where('vrid'), `vrid ${v.vrid} on ${g.interface} is also used by group "${prior}"`);
        seenVrid.set(key, g.name);
        v.unicastPeers.forEach((peer, pi) => {
          if (ipFamily(peer) !== family)
            issue(
              ['groups', gi, 'vrrp', 'unicastPeers', pi],
              `${peer} is not an IPv${family} address like the VIPs`,
            );
        });
      }
      return;
    }
    if (g.vrrp !== undefined)
      issue(
        ['groups', gi, 'vrrp'],
        'in VRRP mode the group itself is the VRRP router: use vrid, advertInt, vrrpVersion (the vrrp block is for etcd mode)',
      );
    // VRRP mode: the rules of RFC 3768 / 5798 that do not depend on the interface (rules.ts).
    if (g.vrid === undefined)
      issue(
        ['groups', gi, 'vrid'],
        'VRRP mode needs a virtual router id (1-255, as on the keepalived peers)',
      );
    else {
      const key = `${g.interface}/${g.vrid}`;
      const prior = seenVrid.get(key);
      if (prior !== undefined)
        issue(['groups', gi, 'vrid'], `vrid ${g.vrid} on ${g.interface} is also used by group "${prior}"`);
      seenVrid.set(key, g.name);
    }
    const interval = vrrpAdvertIntervalRule(g.vrrpVersion, g.advertInt);
    if (!interval.ok) issue(['groups', gi, 'advertInt'], interval.reason);
    if (g.authPass !== undefined) {
      const auth = vrrpAuthPassRule(g.vrrpVersion, g.authPass);
      if (!auth.ok) issue(['groups', gi, 'authPass'], auth.reason);
    }
    const family = vips[0]?.family ?? 4;
    if (vips.some((v) => v.family !== family))
      issue(
        ['groups', gi, 'vips'],
        'a VRRP group carries one address family (RFC 5798 §5.2.9): split IPv4 and IPv6 into two groups',
      );
    const fam = vrrpFamilyRule(g.vrrpVersion, family);
    if (!fam.ok) issue(['groups', gi, 'vrrpVersion'], fam.reason);
    if (vips.length > 255) issue(['groups', gi, 'vips'], 'at most 255 addresses fit in one advertisement');
    if (g.unicastSrc !== undefined && ipFamily(g.unicastSrc) !== family)
      issue(['groups', gi, 'unicastSrc'], `${g.unicastSrc} is not an IPv${family} address like the VIPs`);
    g.unicastPeers.forEach((peer, pi) => {
      const f = ipFamily(peer);
      if (f === undefined) issue(['groups', gi, 'unicastPeers', pi], `not an IP address: ${peer}`);
      else if (f !== family)
        issue(['groups', gi, 'unicastPeers', pi], `${peer} is not IPv${family} like the VIPs`);
    });
  });
  const scriptNames = new Set<string>();
  c.track.scripts.forEach((t, i) => {
    const nm = t.name ?? `script${i + 1}`;
    if (scriptNames.has(nm)) issue(['track', 'scripts', i, 'name'], `track script "${nm}" is defined twice`);
    scriptNames.add(nm);
  });
  if (
    c.haproxy !== undefined &&
    c.mode === 'vrrp' &&
    (c.etcd.endpoints.length === 0 || c.cluster === undefined)
  )
    issue(
      ['haproxy'],
      'the HAProxy loop reads its services from etcd: add etcd endpoints and a cluster, or drop the haproxy section',
    );
}

/** The leader of `g`'s sync group when that is another group (the member whose name sorts first). */
function syncLeader(
  groups: readonly { name: string; syncGroup?: string | undefined }[],
  g: { name: string; syncGroup?: string | undefined },
): string | undefined {
  if (g.syncGroup === undefined) return undefined;
  const first = groups
    .filter((x) => x.syncGroup === g.syncGroup)
    .map((x) => x.name)
    .sort()[0];
  return first === g.name ? undefined : first;
}

/** Raw config (YAML and flags merged) → the settings every part of coord uses. */
function settings(c: RawConfig) {
  const groups = c.groups.map((g) => {
    const vips: readonly Vip[] = g.vips.map((text) => {
      const r = parseCidr(text);
      if (!r.ok) throw new Error('unreachable: validated by the schema');
      return r.vip;
    });
    const vrrp =
      c.mode === 'vrrp' && g.vrid !== undefined
        ? {
            vrid: g.vrid,
            advertIntSec: g.advertInt,
            version: g.vrrpVersion,
            unicastPeers: g.unicastPeers as readonly string[],
            unicastSrc: g.unicastSrc,
            authPass: g.authPass,
          }
        : undefined;
    return {
      name: g.name,
      interface: g.interface,
      vips,
      priority: g.priority,
      preempt: g.preempt,
      preemptDelayMs: Math.round(g.preemptDelay * 1000),
      syncGroup: g.syncGroup,
      /** Etcd mode: the VRRP adverts every node that may hold the group sends (docs/design.md, "Hybrid mode"). */
      advertise:
        c.mode === 'etcd' && g.vrrp !== undefined
          ? {
              vrid: g.vrrp.vrid,
              priority: g.vrrp.priority,
              advertIntSec: g.vrrp.advertInt,
              version: g.vrrp.version,
              unicastPeers: g.vrrp.unicastPeers,
              authPass: g.vrrp.authPass,
            }
          : undefined,
      /** The group of this group's sync group that leads it (the first name); undefined: it leads itself. */
      follows: syncLeader(c.groups, g),
      announce: {
        count: g.announce.count,
        intervalMs: Math.round(g.announce.interval * 1000),
        refreshMs: Math.round(g.announce.refresh * 1000),
      },
      vrrp,
    };
  });
  return {
    mode: c.mode,
    etcd: c.etcd,
    cluster: c.cluster,
    node: c.node,
    ttlSec: c.ttl,
    logLevel: c.logLevel,
    logFormat: c.logFormat,
    metrics: c.metrics,
    controlSocket: c.controlSocket,
    groups: groups as readonly (typeof groups)[number][],
    track: {
      scripts: c.track.scripts.map((t, i) => ({
        name: t.name ?? `script${i + 1}`,
        command: t.command,
        intervalMs: Math.round(t.interval * 1000),
        timeoutMs: Math.round(t.timeout * 1000),
        rise: t.rise,
        fall: t.fall,
        weight: t.weight,
      })),
      // Fast failover trusts a quiet wire, so a holder must never keep its VIP on a link without carrier: each
      // VIP interface is tracked (no weight: FAULT) unless the operator tracks it already.
      interfaces: [
        ...c.track.interfaces.map((x) => ({ name: x.name, weight: x.weight })),
        ...(c.fastFailover
          ? [...new Set(c.groups.map((g) => g.interface))]
              .filter((name) => !c.track.interfaces.some((x) => x.name === name))
              .map((name) => ({ name, weight: undefined }))
          : []),
      ],
    },
    fastFailover: c.fastFailover,
    etcdOutage: c.etcdOutage,
    etcdOutageMaxMs: c.etcdOutageMax,
    /** The peer channel runs for fast failover and for riding out etcd outages (undefined: off). */
    peer:
      c.fastFailover || c.etcdOutage === 'hold'
        ? { heartbeatMs: c.peer.heartbeatMs, port: c.peer.port, address: c.peer.address }
        : undefined,
    notify: {
      any: c.notify.any,
      leader: c.notify.leader,
      follower: c.notify.follower,
      fault: c.notify.fault,
      stop: c.notify.stop,
      timeoutMs: Math.round(c.notify.timeout * 1000),
    },
    haproxy:
      c.haproxy === undefined
        ? undefined
        : {
            config: c.haproxy.config,
            base: c.haproxy.base,
            bin: c.haproxy.bin,
            runDir: c.haproxy.runDir,
            nonlocalBind: c.haproxy.nonlocalBind,
          },
  };
}

/** The node config schema: validation, cross-field rules and the mapping to settings, in one place. */
function buildNodeConfigSchema() {
  const shape = buildNodeConfigObject();
  return { shape, schema: shape.superRefine(crossCheck).transform(settings) };
}

let built: ReturnType<typeof buildNodeConfigSchema> | undefined;
const nodeConfig = () => (built ??= buildNodeConfigSchema());

/** The shape of the config file, with a description of every key (coord.yaml(5) is generated from it). */
export function nodeConfigShape(): ReturnType<typeof buildNodeConfigObject> {
  return nodeConfig().shape;
}

type NodeConfigSchema = ReturnType<typeof buildNodeConfigSchema>['schema'];
export type NodeConfigInput = z.input<NodeConfigSchema>;
/** A validated node config, as every part of coord uses it. */
export type NodeConfig = z.output<NodeConfigSchema>;
export type GroupSettings = NodeConfig['groups'][number];
/** VRRP-mode settings of a group (the interface-dependent rules are checked by @coord/vrrp at start). */
export type GroupVrrpSettings = NonNullable<GroupSettings['vrrp']>;
export type TrackScriptSettings = NodeConfig['track']['scripts'][number];
export type NotifySettings = NodeConfig['notify'];
export type HaproxySettings = NonNullable<NodeConfig['haproxy']>;

const HINTS: Record<string, string> = {
  vips: 'write VIPs as ADDRESS/PREFIX, e.g. 10.0.0.50/24',
  priority: 'use a whole number from 1 (lowest) to 254 (highest)',
  ttl: 'etcd leases are whole seconds; 1 fails over fastest',
  etcd: 'list etcd endpoints as http://HOST:2379 (https:// with TLS)',
  cluster: 'pass --cluster NAME',
  vrid: 'pass --vrid 1-255 (the same as the keepalived peers)',
  advertInt: 'see coord join --help for --advert-int',
  authPass: 'see coord join --help for --auth-pass',
  unicastPeers: 'list the peers by IP address, e.g. --unicast-peer 10.0.0.12',
  metrics: 'e.g. metrics: 127.0.0.1:9100',
};

function pathText(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc === '' ? String(p) : `${acc}.${String(p)}`),
    '',
  );
}

/** Validate raw config input; every problem is reported, not just the first. */
export function validateNodeConfig(
  input: unknown,
): { ok: true; config: NodeConfig } | { ok: false; issues: ConfigIssue[] } {
  const parsed = nodeConfig().schema.safeParse(input);
  if (parsed.success) return { ok: true, config: parsed.data };
  return { ok: false, issues: issuesOf(parsed.error) };
}

/**
 * zod's own wording ("Too big: expected number to be <=65535") rephrased the way an operator reads a limit
 * ("must be ≤ 65535"); a message the schema wrote itself is kept as it is.
 */
export function plainMessage(i: z.core.$ZodIssue): string {
  const bound = (v: unknown): string => (typeof v === 'bigint' || typeof v === 'number' ? String(v) : '?');
  if (i.code === 'too_big' && i.message.startsWith('Too big'))
    return i.origin === 'string' || i.origin === 'array'
      ? `must have at most ${bound(i.maximum)} ${i.origin === 'string' ? 'characters' : 'entries'}`
      : `must be ${i.inclusive === false ? '<' : '≤'} ${bound(i.maximum)}`;
  if (i.code === 'too_small' && i.message.startsWith('Too small'))
    return i.origin === 'string' || i.origin === 'array'
      ? `must have at least ${bound(i.minimum)} ${i.origin === 'string' ? 'characters' : 'entries'}`
      : `must be ${i.inclusive === false ? '>' : '≥'} ${bound(i.minimum)}`;
  if (i.code === 'invalid_type' && i.message.startsWith('Invalid input'))
    return `must be ${i.expected === 'array' ? 'a list' : `a ${i.expected}`}`;
  if (i.code === 'invalid_value' && i.message.startsWith('Invalid option'))
    return `must be one of ${i.values.map((v) => String(v)).join(', ')}`;
  return i.message;
}

/** Edit distance (insert, delete, substitute, swap two neighbours): how far a typo is from a real key. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  return d[a.length]![b.length]!;
}

/**
 * For a key the schema does not know at `parent` (a path such as `groups[0]`): the known key there it was most
 * likely meant to be (`preemt` → `preempt`, `etcd_outage` → `etcdOutage`), if one is close.
 */
export function nearestKey(parent: string, unknown: string): string | undefined {
  const at = parent.replace(/\[\d+\]/g, '[]');
  const siblings = configKeys(nodeConfigShape())
    .map((k) => k.path)
    .filter((p) =>
      at === '' ? !p.includes('.') : p.startsWith(`${at}.`) && !p.slice(at.length + 1).includes('.'),
    )
    .map((p) => (at === '' ? p : p.slice(at.length + 1)));
  const norm = (k: string) => k.toLowerCase().replace(/[_-]/g, '');
  const typed = norm(unknown);
  let best: { key: string; d: number } | undefined;
  for (const k of siblings) {
    const d = editDistance(typed, norm(k));
    if (best === undefined || d < best.d) best = { key: k, d };
  }
  // Short keys allow one slip (`tls` is not `ttl`), longer ones a slip per four letters.
  const allowed = typed.length <= 4 ? 1 : Math.max(2, Math.floor(typed.length / 4));
  if (best !== undefined && best.d <= allowed) return best.key;
  // A key cut short (`prio`, `log`): the keys it begins, when there are few.
  const begun = typed.length >= 3 ? siblings.filter((k) => norm(k).startsWith(typed)) : [];
  return begun.length > 0 && begun.length <= 3 ? begun.join(' or ') : undefined;
}

function issuesOf(error: z.ZodError): ConfigIssue[] {
  return error.issues.map((i) => {
    const path = pathText(i.path);
    const keys = i.path.filter((p): p is string => typeof p === 'string');
    const key = [...keys].reverse().find((p) => p in HINTS);
    let hint = key === undefined ? undefined : HINTS[key];
    if (i.code === 'unrecognized_keys') {
      const meant = i.keys.map((k) => [k, nearestKey(path, k)] as const).filter(([, m]) => m !== undefined);
      hint =
        meant.length > 0
          ? `${meant.map(([k, m]) => `did you mean ${m} (not ${k})?`).join(' ')} Every key: man coord.yaml`
          : 'remove it, or see man coord.yaml for every key';
    }
    const message = plainMessage(i);
    return hint === undefined ? { path: path || '(top)', message } : { path: path || '(top)', message, hint };
  });
}

/**
 * The `coord join` flag that sets a config field, for errors about a config made from flags alone (the operator
 * typed `--peer-port`, not `peer.port`). Fields without a flag keep their YAML path.
 */
const FLAG_OF: Readonly<Record<string, string>> = {
  node: '--node',
  cluster: '--cluster',
  ttl: '--ttl',
  mode: '--mode',
  logLevel: '--log-level',
  logFormat: '--log-format',
  metrics: '--metrics',
  controlSocket: '--control-socket',
  fastFailover: '--fast-failover',
  etcdOutage: '--etcd-outage',
  etcdOutageMax: '--etcd-outage-max',
  'peer.port': '--peer-port',
  'peer.address': '--peer-address',
  'peer.heartbeatMs': '--heartbeat-ms',
  'etcd.endpoints': '--etcd',
  'groups[0].interface': '--interface',
  'groups[0].vips': '--vip',
  'groups[0].priority': '--priority',
  'groups[0].preemptDelay': '--preempt-delay',
  'groups[0].vrid': '--vrid',
  'groups[0].advertInt': '--advert-int',
  'groups[0].vrrpVersion': '--vrrp-version',
  'groups[0].unicastPeers': '--unicast-peer',
  'groups[0].authPass': '--auth-pass',
  'haproxy.config': '--haproxy-config',
  'haproxy.base': '--haproxy-base',
  'haproxy.bin': '--haproxy-bin',
  'haproxy.runDir': '--haproxy-run-dir',
};

/** `peer.port` → `--peer-port` (a path under a flag's field, such as `groups[0].vips[1]`, names that flag). */
export function flagOf(path: string): string | undefined {
  for (const [field, flag] of Object.entries(FLAG_OF))
    if (path === field || path.startsWith(`${field}[`) || path.startsWith(`${field}.`)) return flag;
  return undefined;
}

/** What a one-shot command (status, service, server, etcd-roles) needs from the config file and flags. */
const connectionSchema = z.object({
  etcd: etcdSchema.prefault({ endpoints: [] }),
  cluster: name('cluster').optional(),
  controlSocket: z.string({ error: 'controlSocket must be a path' }).max(107).optional(),
});

export type ConnectionSettings = z.output<typeof connectionSchema>;

/**
 * Validate the connection part of a config (other keys are ignored): the same rules as `coord join` applies, so
 * a cluster name or endpoint join would refuse is refused by every command.
 */
export function validateConnectionSettings(
  input: Record<string, unknown>,
): { ok: true; settings: ConnectionSettings } | { ok: false; issues: ConfigIssue[] } {
  const parsed = connectionSchema.safeParse({
    etcd: input.etcd,
    cluster: input.cluster,
    controlSocket: input.controlSocket,
  });
  if (parsed.success) return { ok: true, settings: parsed.data };
  return { ok: false, issues: issuesOf(parsed.error) };
}

/** Throwing form for commands: one CoordError carrying every issue. */
export function requireNodeConfig(input: unknown, source: string): NodeConfig {
  const r = validateNodeConfig(input);
  if (r.ok) return r.config;
  // A config made from flags alone: name the flag the operator typed, in every issue.
  const issues =
    source === 'flags' ? r.issues.map((i) => ({ ...i, path: flagOf(i.path) ?? i.path })) : r.issues;
  const first = issues[0];
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  const where = source === 'flags' && first?.path.startsWith('--') ? first.path : `${source}: ${first?.path}`;
  throw new CoordError('ERR_COORD_CONFIG', `${where}: ${first?.message}${more}`, {
    hint: first?.hint ?? 'fix the field named above and run again',
    details: { issues },
  });
}

/** Read a YAML config file into raw input (validated by the caller after flags are merged). */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CoordError('ERR_COORD_CONFIG', `cannot read config file ${path}`, {
      cause: e,
      hint: 'check the path given to --config and that it is readable',
    });
  }
  // Loaded here: a command given only flags need not load a YAML parser.
  const { parse: parseYaml } = commonJs(await import('yaml'));
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new CoordError(
      'ERR_COORD_CONFIG',
      `${path} is not valid YAML: ${e instanceof Error ? e.message : String(e)}`,
      {
        cause: e,
        hint: 'fix the YAML syntax at the line named above',
      },
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new CoordError('ERR_COORD_CONFIG', `${path} must hold a YAML mapping at the top`, {
      hint: 'start the file with keys such as "cluster:", "node:" and "groups:"',
    });
  }
  return doc as Record<string, unknown>;
}
