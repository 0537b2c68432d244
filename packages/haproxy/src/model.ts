import { isIP } from 'node:net';
import { bytesToIp, ipToBytes } from '@coord/core';
import * as z from 'zod';

/**
 * The HAProxy service model. Every value here ends up in a config file HAProxy parses, and the values arrive from
 * etcd, written by any operator or script. So validation is an allow-list: names and addresses have strict
 * patterns, anything that could smuggle a newline, quote, comment or second directive into the rendered text is
 * refused here and never reaches the renderer.
 */

/** HAProxy proxy/server identifiers and etcd key segments. */
export const SERVICE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** A DNS hostname: dot-separated LDH labels, no trailing dot, at most 253 characters. */
const HOSTNAME_PATTERN =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Limits that keep one etcd value from turning into a giant config or a slow parse. */
export const LIMITS = {
  /** Largest JSON text accepted for one service (bytes, UTF-8). */
  maxJsonBytes: 64 * 1024,
  maxBinds: 16,
  maxServers: 512,
  maxConn: 1_000_000,
  maxWeight: 256,
} as const;

/** An IP literal, returned in canonical form (RFC 5952 for IPv6) so equal models render equal bytes. */
const ipLiteral = z
  .string()
  .max(45)
  .refine((s) => isIP(s) !== 0 && !s.includes('%'), { message: 'must be an IPv4 or IPv6 address literal' })
  .transform((s) => bytesToIp(ipToBytes(s)));

const serverAddress = z
  .string()
  .max(253)
  .refine(
    (s) =>
      (isIP(s) !== 0 && !s.includes('%')) ||
      (isIP(s) === 0 && HOSTNAME_PATTERN.test(s) && !/^[0-9.]+$/.test(s)),
    {
      message: 'must be an IPv4/IPv6 address literal or a DNS hostname',
    },
  )
  .transform((s) => (isIP(s) !== 0 ? bytesToIp(ipToBytes(s)) : s.toLowerCase()));

/** `tcp`, or an HTTP path (printable ASCII without spaces, so it cannot break the request line). */
export const ROLLOUT_CHECK_PATTERN = /^(tcp|\/[\x21-\x7e]*)$/;

const name = z.string().max(63).regex(SERVICE_NAME_PATTERN, 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$');
const port = z.number().int().min(1).max(65535);

/**
 * Bind addresses: IP literals a listener can actually use. IPv4-mapped IPv6 (would hide a clash with the IPv4
 * form), link-local (no scope: the bind fails at reload, after `haproxy -c` passed) and multicast are refused.
 */
const bindAddress = ipLiteral.refine(
  (a) =>
    !/^::ffff:/i.test(a) &&
    !/^fe[89ab][0-9a-f]:/i.test(a) &&
    !/^ff[0-9a-f]{2}:/i.test(a) &&
    !/^169\.254\./.test(a) &&
    !(Number(a.split('.')[0]) >= 224 && a.includes('.') && !a.includes(':')),
  { message: 'must be a unicast address a listener can bind (no IPv4-mapped, link-local or multicast)' },
);

export const BindSchema = z.strictObject({ address: bindAddress, port });

export const ServerSchema = z.strictObject({
  name,
  address: serverAddress,
  port,
  weight: z.number().int().min(0).max(LIMITS.maxWeight).default(1),
  backup: z.boolean().default(false),
  disabled: z.boolean().default(false),
});

export const ServiceSchema = z
  .strictObject({
    name,
    binds: z.array(BindSchema).min(1).max(LIMITS.maxBinds),
    mode: z.enum(['http', 'tcp']).default('http'),
    balance: z.enum(['roundrobin', 'leastconn', 'source']).default('roundrobin'),
    check: z.boolean().default(true),
    maxconn: z.number().int().min(1).max(LIMITS.maxConn).optional(),
    servers: z.array(ServerSchema).max(LIMITS.maxServers),
    /**
     * How a structural change (binds, mode, balance, a new service) reaches the nodes: `rolling` (absent = rolling)
     * one node at a time, each gated on its own new worker passing `rolloutCheck`; `parallel` every node at once.
     * Server changes always go to every node at once, through the runtime API (rollout.ts).
     */
    rollout: z.enum(['rolling', 'parallel']).optional(),
    /** The gate of a rolling change: `tcp` (absent = tcp) connects; `/path` asks for it and wants 2xx or 3xx. */
    rolloutCheck: z
      .string()
      .max(200)
      .regex(ROLLOUT_CHECK_PATTERN, 'must be "tcp" or an HTTP path such as /healthz (no spaces)')
      .optional(),
  })
  .superRefine((svc, ctx) => {
    if (svc.rolloutCheck !== undefined && svc.rolloutCheck !== 'tcp' && svc.mode !== 'http')
      ctx.addIssue({
        code: 'custom',
        path: ['rolloutCheck'],
        message: 'an HTTP path needs mode http; a tcp service is checked with "tcp"',
      });
    const seen = new Set<string>();
    svc.servers.forEach((s, i) => {
      if (seen.has(s.name))
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'name'],
          message: `duplicate server name "${s.name}"`,
        });
      seen.add(s.name);
    });
    const binds = new Set<string>();
    svc.binds.forEach((b, i) => {
      const key = `${b.address}|${b.port}`;
      if (binds.has(key))
        ctx.addIssue({
          code: 'custom',
          path: ['binds', i],
          message: `duplicate bind ${b.address}:${b.port}`,
        });
      binds.add(key);
    });
  });

export type Bind = z.output<typeof BindSchema>;
export type Server = z.output<typeof ServerSchema>;
export type Service = z.output<typeof ServiceSchema>;
/** What a writer may send: defaults (weight 1, mode http, check true …) may be left out. */
export type ServiceInput = z.input<typeof ServiceSchema>;

/** One validation problem, with the JSON path it concerns (`servers.0.address`). */
export interface ValidationError {
  readonly path: string;
  readonly message: string;
}

export type ParseResult = { ok: true; service: Service } | { ok: false; errors: ValidationError[] };

function toErrors(error: z.ZodError): ValidationError[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}

/** Validate an already-decoded value (e.g. from the CLI's flags). Never throws. */
export function parseService(value: unknown): ParseResult {
  const r = ServiceSchema.safeParse(value);
  return r.success ? { ok: true, service: r.data } : { ok: false, errors: toErrors(r.error) };
}

/**
 * Decode one service from its etcd value (or `coord service set` input). Used on both sides so what the CLI
 * accepts is exactly what every agent accepts. Oversized or non-JSON text is refused without throwing.
 */
export function parseServiceJson(text: string | Uint8Array): ParseResult {
  const bytes = typeof text === 'string' ? Buffer.byteLength(text, 'utf8') : text.byteLength;
  if (bytes > LIMITS.maxJsonBytes) {
    return {
      ok: false,
      errors: [{ path: '', message: `value is ${bytes} bytes; the limit is ${LIMITS.maxJsonBytes}` }],
    };
  }
  const str = typeof text === 'string' ? text : Buffer.from(text).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(str);
  } catch (e) {
    return {
      ok: false,
      errors: [{ path: '', message: `not JSON: ${e instanceof Error ? e.message : String(e)}` }],
    };
  }
  return parseService(value);
}

/** Canonical JSON for a validated service: what the CLI writes to etcd, so equal services are equal bytes. */
export function serializeService(service: Service): string {
  return JSON.stringify(service);
}

/**
 * Checks across services that a single-service schema cannot see: two services with one name, or two services
 * binding the same address and port (HAProxy's `-c` accepts that; the kernel would then split traffic between
 * them with SO_REUSEPORT).
 */
export function checkServiceSet(services: readonly Service[]): ValidationError[] {
  const errors: ValidationError[] = [];
  const names = new Set<string>();
  const binds = new Map<string, string>();
  for (const svc of services) {
    if (names.has(svc.name)) errors.push({ path: svc.name, message: `duplicate service name "${svc.name}"` });
    names.add(svc.name);
    for (const b of svc.binds) {
      const key = `${b.address}|${b.port}`;
      const other = binds.get(key);
      if (other !== undefined && other !== svc.name) {
        errors.push({
          path: `${svc.name}.binds`,
          message: `${b.address}:${b.port} is already bound by service "${other}"`,
        });
      }
      binds.set(key, svc.name);
    }
  }
  return errors;
}
