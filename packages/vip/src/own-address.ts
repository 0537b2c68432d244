import type { Vip } from '@coord/core';
import type { HostAddress } from './types.js';

/**
 * The host's own address that `vip` names, if `addresses` (one interface's) has it: a permanent, primary address
 * of a subnet (not a /32 or /128). That is how a host configures itself on a network, not a leftover: removing it
 * would take the host off that network. Leftovers of coord have a lifetime; keepalived's are /32s or secondary
 * addresses, and may be removed.
 */
export function hostOwnAddress(addresses: readonly HostAddress[], vip: Vip): HostAddress | undefined {
  return addresses.find(
    (a) =>
      a.address === vip.address &&
      a.family === vip.family &&
      a.permanent === true &&
      a.secondary !== true &&
      a.prefix < (a.family === 4 ? 32 : 128),
  );
}
