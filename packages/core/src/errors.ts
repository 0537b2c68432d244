/**
 * Every failure coord reports on purpose is a CoordError: a stable code the CLI maps to an exit status,
 * a message for the operator, and a hint saying what to do about it.
 */
export const ERROR_CODES = {
  ERR_COORD_CONFIG: 2,
  ERR_COORD_USAGE: 2,
  ERR_COORD_PERMISSION: 4,
  ERR_COORD_ETCD: 5,
  ERR_COORD_NETLINK: 6,
  ERR_COORD_HAPROXY: 7,
  ERR_COORD_VRRP: 8,
  ERR_COORD_INTERNAL: 70,
} as const;

export type CoordErrorCode = keyof typeof ERROR_CODES;

export interface CoordErrorOptions {
  cause?: unknown;
  /** What the operator can do about it, in one sentence. */
  hint?: string;
  /** Machine-readable details (e.g. a config path). */
  details?: Record<string, unknown>;
}

export class CoordError extends Error {
  readonly code: CoordErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: CoordErrorCode, message: string, options: CoordErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CoordError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  /** The process exit status the CLI uses for this error. */
  get exitCode(): number {
    return ERROR_CODES[this.code];
  }
}

export function isCoordError(e: unknown): e is CoordError {
  return e instanceof CoordError;
}

/** Best-effort message of anything thrown. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
