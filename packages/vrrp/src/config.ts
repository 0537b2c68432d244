/**
 * VRRP instance configuration: the shape the agent builds from a group's settings and the interface's primary
 * address, and its validation. The rules that do not depend on the interface are written once in @coord/core
 * (rules.ts) and already checked by the config schema; this applies them again to the values an instance runs
 * with, and adds the interface-dependent ones (primary address, a peer that is ourselves).
 */
import { isIPv4, isIPv6 } from 'node:net';
import {
  CoordError,
  bytesToIp,
  ipToBytes,
  vrrpAdvertIntervalRule,
  vrrpAuthPassRule,
  vrrpFamilyRule,
  type Family,
} from '@coord/core';
import type { VrrpAuth } from './codec.js';

/** What the operator typed (or the config file said), before validation. */
export interface VrrpConfigInput {
  readonly vrid: unknown;
  readonly priority: unknown;
  /** Seconds; v2 needs a whole number 1-255, v3 0.01-40.95 (RFC 5798 §5.2.7: 12 bits of centiseconds). */
  readonly advertInt?: unknown;
  readonly version?: unknown;
  /** Virtual addresses (no prefix) the advertisement lists; all of one family. */
  readonly addresses: unknown;
  /** This router's primary address on the interface: the advert source and the tie-breaker. */
  readonly primaryAddress: unknown;
  readonly unicastPeers?: unknown;
  readonly authPass?: unknown;
  readonly preempt?: unknown;
}

/** A validated VRRP instance configuration. */
export interface VrrpConfig {
  readonly vrid: number;
  readonly priority: number;
  readonly version: 2 | 3;
  readonly family: Family;
  /** Advertisement_Interval in centiseconds (v2: a multiple of 100). */
  readonly advertIntervalCs: number;
  readonly addresses: readonly string[];
  readonly primaryAddress: string;
  /** Empty: multicast to the VRRP group. */
  readonly unicastPeers: readonly string[];
  readonly auth: VrrpAuth;
  /** RFC 5798 Preempt_Mode: a higher-priority Backup takes over from a lower-priority Master. */
  readonly preempt: boolean;
}

export interface ConfigFieldError {
  readonly field: string;
  readonly message: string;
}

export type ConfigResult = { ok: true; config: VrrpConfig } | { ok: false; errors: ConfigFieldError[] };

function intIn(value: unknown, lo: number, hi: number): number | undefined {
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n >= lo && n <= hi ? n : undefined;
}

function addressOf(value: unknown): { text: string; family: Family } | undefined {
  if (typeof value !== 'string') return undefined;
  if (isIPv4(value)) return { text: bytesToIp(ipToBytes(value)), family: 4 };
  if (isIPv6(value) && !value.includes('%')) return { text: bytesToIp(ipToBytes(value)), family: 6 };
  return undefined;
}

function list(value: unknown): unknown[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** Validate operator input; every problem is reported, each with the field it belongs to. */
export function validateVrrpConfig(input: VrrpConfigInput): ConfigResult {
  const errors: ConfigFieldError[] = [];
  const fail = (field: string, message: string): undefined => {
    errors.push({ field, message });
    return undefined;
  };
  const vrid =
    intIn(input.vrid, 1, 255) ?? fail('vrid', `must be an integer 1-255, got ${String(input.vrid)}`);
  const priority =
    intIn(input.priority, 1, 255) ??
    fail('priority', `must be an integer 1-255, got ${String(input.priority)}`);
  const version = input.version === undefined ? 3 : intIn(input.version, 2, 3);
  if (version !== 2 && version !== 3) fail('vrrp-version', `must be 2 or 3, got ${String(input.version)}`);

  const seconds = input.advertInt === undefined ? 1 : Number(input.advertInt);
  let advertIntervalCs: number | undefined;
  if (typeof input.advertInt === 'boolean') {
    fail('advert-int', `must be a number of seconds, got ${String(input.advertInt)}`);
  } else if (version === 2 || version === 3) {
    const r = vrrpAdvertIntervalRule(version, seconds);
    if (r.ok) advertIntervalCs = r.value;
    else fail('advert-int', r.reason);
  }

  const primary = addressOf(input.primaryAddress);
  if (primary === undefined) fail('primary-address', `not an IP address: ${String(input.primaryAddress)}`);
  const family = primary?.family ?? 4;
  if (version === 2 || version === 3) {
    const fam = vrrpFamilyRule(version, family);
    if (!fam.ok) fail('vrrp-version', fam.reason);
  }

  const addresses: string[] = [];
  const rawAddresses = list(input.addresses);
  if (rawAddresses.length === 0 || rawAddresses.length > 255) fail('vip', 'give 1-255 virtual addresses');
  for (const raw of rawAddresses) {
    const a = addressOf(raw);
    if (a === undefined) fail('vip', `not an IP address: ${String(raw)}`);
    else if (a.family !== family) fail('vip', `${a.text} is not IPv${family} like the primary address`);
    else if (addresses.includes(a.text)) fail('vip', `${a.text} is listed twice`);
    else addresses.push(a.text);
  }

  const unicastPeers: string[] = [];
  for (const raw of list(input.unicastPeers)) {
    const a = addressOf(raw);
    if (a === undefined) fail('unicast-peer', `not an IP address: ${String(raw)}`);
    else if (a.family !== family)
      fail('unicast-peer', `${a.text} is not IPv${family} like the primary address`);
    else if (a.text === primary?.text) fail('unicast-peer', `${a.text} is this router's own address`);
    else if (!unicastPeers.includes(a.text)) unicastPeers.push(a.text);
  }

  let auth: VrrpAuth = { type: 'none' };
  if (input.authPass !== undefined) {
    if (typeof input.authPass !== 'string') fail('auth-pass', 'must be a string');
    else if (version === 2 || version === 3) {
      const r = vrrpAuthPassRule(version, input.authPass);
      if (r.ok) auth = { type: 'simple', password: r.value };
      else fail('auth-pass', r.reason);
    }
  }
  const preempt = input.preempt === undefined ? true : input.preempt;
  if (typeof preempt !== 'boolean') fail('preempt', `must be true or false, got ${String(input.preempt)}`);

  if (
    errors.length > 0 ||
    vrid === undefined ||
    priority === undefined ||
    (version !== 2 && version !== 3) ||
    advertIntervalCs === undefined ||
    primary === undefined ||
    typeof preempt !== 'boolean'
  ) {
    return { ok: false, errors };
  }
  return {
    ok: true,
    config: {
      vrid,
      priority,
      version,
      family,
      advertIntervalCs,
      addresses,
      primaryAddress: primary.text,
      unicastPeers,
      auth,
      preempt,
    },
  };
}

/** {@link validateVrrpConfig} for callers that stop on bad config: throws `ERR_COORD_CONFIG` naming the fields. */
export function loadVrrpConfig(input: VrrpConfigInput): VrrpConfig {
  const result = validateVrrpConfig(input);
  if (result.ok) return result.config;
  const text = result.errors.map((e) => `--${e.field}: ${e.message}`).join('; ');
  throw new CoordError('ERR_COORD_CONFIG', `invalid VRRP configuration: ${text}`, {
    hint: 'fix the named options',
    details: { errors: result.errors },
  });
}
