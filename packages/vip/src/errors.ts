/**
 * The one place where errors of the `netlink` package (plain `Error('Request rejected: EEXIST')`, docs/design.md)
 * become either an expected result or a CoordError with a hint an operator can act on.
 */
import { CoordError, errorMessage } from '@coord/core';

/** The errno name inside a netlink rejection, or undefined for anything else. */
export function netlinkErrno(e: unknown): string | undefined {
  const m = /Request rejected: (E[A-Z0-9]+)/.exec(errorMessage(e));
  if (m?.[1] !== undefined) return m[1];
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** What was being done, for the message and the details of the CoordError. */
export interface NetlinkOperation {
  op: string;
  iface: string;
  address?: string;
}

/** A hint for the errno names an operator meets in practice. */
export function hintFor(errno: string | undefined, iface: string): string {
  switch (errno) {
    case 'EPERM':
    case 'EACCES':
      return 'run coord as root or grant it CAP_NET_ADMIN and CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)';
    case 'ENODEV':
      return `interface "${iface}" does not exist in this network namespace; check vip.interface in the config and \`ip link show\``;
    case 'ENETDOWN':
      return `interface "${iface}" is down; bring it up (\`ip link set ${iface} up\`)`;
    case 'EINVAL':
      return 'the kernel refused the request as malformed; check the VIP prefix length and address family';
    case 'EADDRNOTAVAIL':
      return `the address is not configured on "${iface}"`;
    case undefined:
    default:
      return 'see the cause; `ip monitor address` shows what the kernel does with addresses';
  }
}

/** Wrap a netlink failure as ERR_COORD_NETLINK, keeping the original error as the cause. */
export function toCoordError(e: unknown, what: NetlinkOperation): CoordError {
  if (e instanceof CoordError) return e;
  const errno = netlinkErrno(e);
  const target = what.address === undefined ? what.iface : `${what.address} on ${what.iface}`;
  return new CoordError(
    'ERR_COORD_NETLINK',
    `netlink ${what.op} failed for ${target}: ${errno ?? errorMessage(e)}`,
    {
      cause: e,
      hint: hintFor(errno, what.iface),
      details: { ...what, errno },
    },
  );
}
