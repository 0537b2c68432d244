import { SERVICE_NAME_PATTERN } from './model.js';

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
