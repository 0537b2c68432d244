import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CoordError } from './errors.js';
import { formatCidr, parseCidr, type Vip } from './net.js';
import { NAME_PATTERN } from './types.js';

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

const groupSchema = z
  .object({
    name: name('group name'),
    interface: interfaceName,
    vips: z.array(vipText).min(1, 'a group needs at least one VIP'),
    priority: z
      .number()
      .int('priority must be a whole number')
      .min(1, 'priority must be 1-254 (1-255 in VRRP mode)')
      .max(255, 'priority must be 1-254 (1-255 in VRRP mode)')
      .default(100),
    /** VRRP mode: the virtual router id shared with the keepalived peers. */
    vrid: z
      .number()
      .int('vrid must be a whole number')
      .min(1, 'vrid must be 1-255')
      .max(255, 'vrid must be 1-255')
      .optional(),
    /** VRRP mode: advertisement interval in seconds (v2: whole seconds). */
    advertInt: seconds('advertInt', 0.01, 255).default(1),
    vrrpVersion: z.union([z.literal(2), z.literal(3)], { error: 'vrrpVersion must be 2 or 3' }).default(3),
    unicastPeers: z.array(z.string()).default([]),
    /** VRRPv2 simple password (at most 8 bytes); never logged. */
    authPass: z.string().optional(),
    preempt: z.boolean().default(true),
    preemptDelay: seconds('preemptDelay', 0, 3600).default(0),
    announce: z
      .object({
        count: z.number().int().min(1).max(20).default(3),
        interval: seconds('announce.interval', 0.01, 10).default(0.1),
        refresh: seconds('announce.refresh', 0, 3600).default(10),
      })
      .strict()
      .default({ count: 3, interval: 0.1, refresh: 10 }),
  })
  .strict();

const trackScriptSchema = z
  .object({
    name: name('track script name').optional(),
    /** Program and arguments, split without a shell (quotes allowed; pipes and variables are refused). */
    command: z.string().min(1, 'command must not be empty').max(1024, 'command is too long'),
    interval: seconds('interval', 0.1, 3600).default(2),
    timeout: seconds('timeout', 0.1, 600).default(2),
    rise: z.number().int().min(1).max(100).default(2),
    fall: z.number().int().min(1).max(100).default(2),
    /** Added to the priority while failing (negative) or while passing (positive); none = FAULT when failing. */
    weight: z.number().int().min(-254).max(254).optional(),
  })
  .strict();

const notifySchema = z
  .object({
    any: z.string().min(1).optional(),
    leader: z.string().min(1).optional(),
    follower: z.string().min(1).optional(),
    fault: z.string().min(1).optional(),
    stop: z.string().min(1).optional(),
    timeout: seconds('notify.timeout', 0.1, 600).default(10),
  })
  .strict();

/** The node config: the YAML file and the flags both end up here. */
export const nodeConfigSchema = z
  .object({
    mode: z.enum(['etcd', 'vrrp']).default('etcd'),
    etcd: z.array(z.string()).default([]),
    cluster: name('cluster').optional(),
    node: name('node'),
    ttl: z
      .number()
      .int('ttl must be whole seconds (etcd leases are)')
      .min(1, 'ttl must be at least 1')
      .max(60, 'ttl must be at most 60')
      .default(1),
    logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
    groups: z.array(groupSchema).min(1, 'configure at least one group (--interface and --vip)'),
    track: z
      .object({
        scripts: z.array(trackScriptSchema).default([]),
        interfaces: z
          .array(
            z
              .object({ name: interfaceName, weight: z.number().int().min(-254).max(254).optional() })
              .strict(),
          )
          .default([]),
      })
      .strict()
      .default({ scripts: [], interfaces: [] }),
    notify: notifySchema.default({ timeout: 10 }),
    /** HAProxy driven from etcd (etcd mode): where to write the rendered config, and the node-local base. */
    haproxy: z
      .object({
        config: z.string().min(1),
        base: z.string().min(1).optional(),
        bin: z.string().min(1).default('/usr/sbin/haproxy'),
        runDir: z.string().min(1).default('/run/coord/haproxy'),
        nonlocalBind: z.enum(['set', 'require', 'ignore']).default('set'),
      })
      .strict()
      .optional(),
  })
  .strict();

export type NodeConfigInput = z.input<typeof nodeConfigSchema>;

/** VRRP-mode settings of a group (validated in depth by @coord/vrrp once the interface address is known). */
export interface GroupVrrpSettings {
  readonly vrid: number;
  readonly advertIntSec: number;
  readonly version: 2 | 3;
  readonly unicastPeers: readonly string[];
  readonly authPass: string | undefined;
}

export interface GroupSettings {
  readonly name: string;
  readonly interface: string;
  readonly vips: readonly Vip[];
  readonly priority: number;
  readonly preempt: boolean;
  readonly preemptDelayMs: number;
  readonly announce: { readonly count: number; readonly intervalMs: number; readonly refreshMs: number };
  /** Present in VRRP mode only. */
  readonly vrrp: GroupVrrpSettings | undefined;
}

export interface TrackScriptSettings {
  readonly name: string;
  readonly command: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly rise: number;
  readonly fall: number;
  readonly weight: number | undefined;
}

export interface NotifySettings {
  readonly any: string | undefined;
  readonly leader: string | undefined;
  readonly follower: string | undefined;
  readonly fault: string | undefined;
  readonly stop: string | undefined;
  readonly timeoutMs: number;
}

export interface HaproxySettings {
  readonly config: string;
  readonly base: string | undefined;
  readonly bin: string;
  readonly runDir: string;
  readonly nonlocalBind: 'set' | 'require' | 'ignore';
}

export interface NodeConfig {
  readonly mode: 'etcd' | 'vrrp';
  readonly etcd: readonly string[];
  readonly cluster: string | undefined;
  readonly node: string;
  readonly ttlSec: number;
  readonly logLevel: 'error' | 'warn' | 'info' | 'debug';
  readonly groups: readonly GroupSettings[];
  readonly track: {
    readonly scripts: readonly TrackScriptSettings[];
    readonly interfaces: readonly { readonly name: string; readonly weight: number | undefined }[];
  };
  readonly notify: NotifySettings;
  readonly haproxy: HaproxySettings | undefined;
}

const HINTS: Record<string, string> = {
  vips: 'write VIPs as ADDRESS/PREFIX, e.g. 10.0.0.50/24',
  priority: 'use a whole number from 1 (lowest) to 254 (highest)',
  ttl: 'etcd leases are whole seconds; 1 fails over fastest',
  etcd: 'list etcd endpoints as http://HOST:2379',
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
  const parsed = nodeConfigSchema.safeParse(input);
  if (!parsed.success) {
    return {
      ok: false,
      issues: parsed.error.issues.map((i) => {
        const path = pathText(i.path);
        const key = i.path.find((p) => typeof p === 'string' && p in HINTS);
        const hint = typeof key === 'string' ? HINTS[key] : undefined;
        return hint === undefined
          ? { path: path || '(top)', message: i.message }
          : { path: path || '(top)', message: i.message, hint };
      }),
    };
  }
  const c = parsed.data;
  const issues: ConfigIssue[] = [];
  if (c.mode === 'etcd') {
    if (c.etcd.length === 0)
      issues.push({
        path: 'etcd',
        message: 'etcd mode needs at least one endpoint',
        hint: 'pass --etcd http://HOST:2379',
      });
    if (c.cluster === undefined)
      issues.push({
        path: 'cluster',
        message: 'etcd mode needs a cluster name',
        hint: 'pass --cluster NAME',
      });
  }
  const seenVip = new Map<string, string>();
  const seenGroup = new Set<string>();
  const seenVrid = new Map<string, string>();
  const groups: GroupSettings[] = c.groups.map((g, gi) => {
    if (seenGroup.has(g.name))
      issues.push({ path: `groups[${gi}].name`, message: `group "${g.name}" is configured twice` });
    seenGroup.add(g.name);
    if (c.mode === 'etcd' && g.priority > 254) {
      issues.push({
        path: `groups[${gi}].priority`,
        message: 'priority 255 means "address owner" and exists only in VRRP mode',
        hint: 'use 1-254',
      });
    }
    if (c.mode === 'vrrp' && g.vrid === undefined) {
      issues.push({
        path: `groups[${gi}].vrid`,
        message: 'VRRP mode needs a virtual router id',
        hint: 'pass --vrid 1-255 (the same as the keepalived peers)',
      });
    }
    if (c.mode === 'vrrp' && g.vrid !== undefined) {
      const key = `${g.interface}/${g.vrid}`;
      const prior = seenVrid.get(key);
      if (prior !== undefined)
        issues.push({
          path: `groups[${gi}].vrid`,
          message: `vrid ${g.vrid} on ${g.interface} is also used by group "${prior}"`,
          hint: 'each VRRP group on an interface needs its own vrid',
        });
      seenVrid.set(key, g.name);
    }
    const vips = g.vips.map((text, vi) => {
      const r = parseCidr(text);
      if (!r.ok) throw new Error('unreachable: validated above');
      const key = r.vip.address;
      const where = `groups[${gi}].vips[${vi}]`;
      const prior = seenVip.get(key);
      if (prior !== undefined) {
        issues.push({
          path: where,
          message: `VIP ${formatCidr(r.vip)} is configured twice (also at ${prior})`,
          hint: 'give each VIP to exactly one group',
        });
      } else {
        seenVip.set(key, where);
      }
      return r.vip;
    });
    return {
      name: g.name,
      interface: g.interface,
      vips,
      priority: g.priority,
      preempt: g.preempt,
      preemptDelayMs: Math.round(g.preemptDelay * 1000),
      announce: {
        count: g.announce.count,
        intervalMs: Math.round(g.announce.interval * 1000),
        refreshMs: Math.round(g.announce.refresh * 1000),
      },
      vrrp:
        c.mode === 'vrrp' && g.vrid !== undefined
          ? {
              vrid: g.vrid,
              advertIntSec: g.advertInt,
              version: g.vrrpVersion,
              unicastPeers: g.unicastPeers,
              authPass: g.authPass,
            }
          : undefined,
    };
  });
  const scriptNames = new Set<string>();
  const scripts: TrackScriptSettings[] = c.track.scripts.map((t, i) => {
    const nm = t.name ?? `script${i + 1}`;
    if (scriptNames.has(nm))
      issues.push({ path: `track.scripts[${i}].name`, message: `track script "${nm}" is defined twice` });
    scriptNames.add(nm);
    return {
      name: nm,
      command: t.command,
      intervalMs: Math.round(t.interval * 1000),
      timeoutMs: Math.round(t.timeout * 1000),
      rise: t.rise,
      fall: t.fall,
      weight: t.weight,
    };
  });
  if (c.haproxy !== undefined && c.mode === 'vrrp' && (c.etcd.length === 0 || c.cluster === undefined)) {
    issues.push({
      path: 'haproxy',
      message: 'the HAProxy loop reads its services from etcd',
      hint: 'add etcd endpoints and a cluster, or drop the haproxy section',
    });
  }
  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    config: {
      mode: c.mode,
      etcd: c.etcd,
      cluster: c.cluster,
      node: c.node,
      ttlSec: c.ttl,
      logLevel: c.logLevel,
      groups,
      track: { scripts, interfaces: c.track.interfaces.map((x) => ({ name: x.name, weight: x.weight })) },
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
    },
  };
}

/** Throwing form for commands: one CoordError carrying every issue. */
export function requireNodeConfig(input: unknown, source: string): NodeConfig {
  const r = validateNodeConfig(input);
  if (r.ok) return r.config;
  const first = r.issues[0];
  const more = r.issues.length > 1 ? ` (and ${r.issues.length - 1} more)` : '';
  throw new CoordError('ERR_COORD_CONFIG', `${source}: ${first?.path}: ${first?.message}${more}`, {
    hint: first?.hint ?? 'fix the field named above and run again',
    details: { issues: r.issues },
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
