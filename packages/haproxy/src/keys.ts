import { parseServiceJson, SERVICE_NAME_PATTERN, type Service, type ValidationError } from './model.js';

/**
 * etcd key layout for services: one key per service, value = the service as JSON. One key per service keeps each
 * write small and lets a watch say which service changed; the etcd side only moves bytes and calls
 * {@link parseServiceJson} on each value.
 */

/** `/coord/<cluster>/services/` — read this prefix at revision R, then watch it from R+1. */
export function servicesPrefix(cluster: string): string {
  return `/coord/${cluster}/services/`;
}

/** `/coord/<cluster>/services/<name>`. */
export function serviceKey(cluster: string, name: string): string {
  return `${servicesPrefix(cluster)}${name}`;
}

/** The service name of a key under {@link servicesPrefix}, or undefined for a key that is not one. */
export function serviceNameFromKey(cluster: string, key: string): string | undefined {
  const prefix = servicesPrefix(cluster);
  if (!key.startsWith(prefix)) return undefined;
  const name = key.slice(prefix.length);
  return SERVICE_NAME_PATTERN.test(name) ? name : undefined;
}

/** One key/value read from (or watched under) {@link servicesPrefix}. */
export interface ServiceEntry {
  readonly key: string;
  readonly value: string | Uint8Array;
}

/** A value that could not be used, and what was done instead. */
export interface EntryError {
  readonly key: string;
  readonly errors: ValidationError[];
  /** True when the previous good version of that service was kept in its place. */
  readonly keptPrevious: boolean;
}

/**
 * Pure: the full key set under the prefix (as read at a revision) → the service set to apply. A value that is
 * garbage, oversized, invalid or filed under another name does not remove the service: its last good version
 * (from `previous`) is kept and the problem reported, so one bad write cannot take a working service down.
 * A key that is gone from `entries` is a deleted service.
 */
export function decodeServiceEntries(
  cluster: string,
  entries: readonly ServiceEntry[],
  previous: ReadonlyMap<string, Service> = new Map(),
): { services: Map<string, Service>; errors: EntryError[] } {
  const services = new Map<string, Service>();
  const errors: EntryError[] = [];
  for (const { key, value } of entries) {
    const name = serviceNameFromKey(cluster, key);
    if (name === undefined) {
      errors.push({
        key,
        errors: [{ path: '', message: 'key is not a valid service key' }],
        keptPrevious: false,
      });
      continue;
    }
    const parsed = parseServiceJson(value);
    const problems = parsed.ok
      ? parsed.service.name === name
        ? []
        : [{ path: 'name', message: `service "${parsed.service.name}" is stored under key "${name}"` }]
      : parsed.errors;
    if (parsed.ok && problems.length === 0) {
      services.set(name, parsed.service);
      continue;
    }
    const kept = previous.get(name);
    if (kept !== undefined) services.set(name, kept);
    errors.push({ key, errors: problems, keptPrevious: kept !== undefined });
  }
  return { services, errors };
}
