/** Branded names so a node name is never passed where a cluster name is expected. */
export type NodeName = string & { readonly __brand: 'NodeName' };
export type ClusterName = string & { readonly __brand: 'ClusterName' };
/** Milliseconds on the monotonic clock. */
export type Millis = number;

/** VRRP and coord share the priority range: 1-254 elect, 255 owns the address (VRRP), 0 resigns. */
export type Priority = number;

/** Names that become etcd key segments, file names and HAProxy identifiers: strict on purpose. */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$/i;

export function isValidName(text: string): boolean {
  return NAME_PATTERN.test(text);
}

/**
 * The exports of a CommonJS package loaded with `import()`: Node offers them as `default` (and by name when it can
 * tell them), an esbuild bundle only as `default`. Used where a heavy dependency loads on first use.
 */
export function commonJs<T extends object>(ns: T): T {
  return (ns as { default?: T }).default ?? ns;
}
