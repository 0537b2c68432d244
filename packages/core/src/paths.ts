/** Where coord's files are by default on a node; every one of them can be set (several nodes may share a host). */

/** The node's config file: read by every command when it exists (`--config` picks another). */
export const DEFAULT_CONFIG_PATH = '/etc/coord/coord.yaml';

/** Where `coord join` listens and `coord status --local` / `coord reload-config` connect by default. */
export const DEFAULT_CONTROL_SOCKET = '/run/coord/coord.sock';
