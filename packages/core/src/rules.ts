/**
 * Validation rules that more than one place applies: each written once, here. The config schema (config.ts)
 * checks them before anything touches the host; @coord/vrrp applies the VRRP ones again to the values it runs
 * with; the CLI uses the endpoint and listen-address rules for flags.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Family } from './net.js';

export type Rule<T> = { ok: true; value: T } | { ok: false; reason: string };

/** Hide anything that looks like credentials before a value is echoed in an error. */
export function redactUrl(text: string): string {
  return text.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i,
    (_m, scheme: string | undefined) => `${scheme ?? ''}***@`,
  );
}

/**
 * An etcd client URL: `http(s)://HOST:PORT`. Credentials in the URL are refused without echoing them (they would
 * end up in logs and `ps`); they belong in `--etcd-user` and `--etcd-password-file` / COORD_ETCD_PASSWORD.
 */
export function etcdEndpointRule(text: string): Rule<string> {
  const trimmed = text.trim();
  if (trimmed.includes('@')) {
    return {
      ok: false,
      reason:
        'an etcd endpoint carries a user name or password in its URL; give them with --etcd-user and ' +
        '--etcd-password-file (or COORD_ETCD_PASSWORD) instead',
    };
  }
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return {
      ok: false,
      reason: `"${trimmed}" is not a URL: write endpoints as http://HOST:2379 or https://HOST:2379`,
    };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return { ok: false, reason: `"${trimmed}" must start with http:// or https://` };
  if (url.hostname === '') return { ok: false, reason: `"${trimmed}" has no host` };
  if (url.pathname !== '/' && url.pathname !== '')
    return { ok: false, reason: `"${trimmed}" has a path; etcd endpoints are http(s)://HOST:PORT` };
  return { ok: true, value: `${url.protocol}//${url.host}` };
}

/** Split comma-separated or repeated endpoint arguments into a list. */
export function splitList(values: string | readonly string[]): string[] {
  return (typeof values === 'string' ? values.split(',') : values.flatMap((t) => t.split(',')))
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `ADDR:PORT` (IPv6 as `[::1]:9100`; an empty address means every address). */
export function listenRule(text: string): Rule<{ host: string; port: number }> {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= 1 && port <= 65535))
    return { ok: false, reason: `"${text}" is not ADDR:PORT (e.g. 127.0.0.1:9100)` };
  const host = m[1] ?? (m[2] === '' ? '0.0.0.0' : (m[2] ?? '0.0.0.0'));
  if (m[1] !== undefined && !isIPv6(host)) return { ok: false, reason: `"${m[1]}" is not an IPv6 address` };
  return { ok: true, value: { host, port } };
}

/**
 * VRRP Advertisement_Interval in centiseconds from seconds: VRRPv2 carries whole seconds 1-255 (RFC 3768
 * §5.3.7); VRRPv3 carries 12 bits of centiseconds, 0.01-40.95 s (RFC 5798 §5.2.7).
 */
export function vrrpAdvertIntervalRule(version: 2 | 3, seconds: number): Rule<number> {
  if (!Number.isFinite(seconds))
    return { ok: false, reason: `must be a number of seconds, got ${String(seconds)}` };
  if (version === 2) {
    if (Number.isInteger(seconds) && seconds >= 1 && seconds <= 255)
      return { ok: true, value: seconds * 100 };
    return { ok: false, reason: `VRRPv2 needs whole seconds 1-255, got ${seconds}` };
  }
  const cs = Math.round(seconds * 100);
  if (Math.abs(cs - seconds * 100) < 1e-6 && cs >= 1 && cs <= 4095) return { ok: true, value: cs };
  return { ok: false, reason: `VRRPv3 needs 0.01-40.95 s in steps of 0.01, got ${seconds}` };
}

/** VRRPv2 simple authentication: v2 only (RFC 5798 §9 removed it), at most 8 bytes (RFC 3768 §5.3.6.1). */
export function vrrpAuthPassRule(version: 2 | 3, pass: string): Rule<string> {
  if (version !== 2)
    return { ok: false, reason: 'authentication exists only in VRRPv2 (RFC 5798 §9 removed it)' };
  if (pass.length === 0) return { ok: false, reason: 'must not be empty' };
  if (Buffer.byteLength(pass, 'utf8') > 8)
    return { ok: false, reason: 'at most 8 bytes (RFC 3768 §5.3.6.1)' };
  return { ok: true, value: pass };
}

/** VRRPv2 carries IPv4 only (RFC 3768); v3 either family, one per instance (RFC 5798 §5.2.9). */
export function vrrpFamilyRule(version: 2 | 3, family: Family): Rule<Family> {
  if (version === 2 && family === 6)
    return { ok: false, reason: 'VRRPv2 carries IPv4 only; use vrrpVersion 3' };
  return { ok: true, value: family };
}

/** The address family of an IP literal, or undefined (scoped IPv6 literals are refused). */
export function ipFamily(text: string): Family | undefined {
  if (isIPv4(text)) return 4;
  if (isIPv6(text) && !text.includes('%')) return 6;
  return undefined;
}
