import type { Vip } from '@coord/core';

/** Kernel address lifetimes in seconds (IFA_CACHEINFO). {@link FOREVER} means the address never expires. */
export interface AddressLifetime {
  validSec: number;
  preferredSec: number;
  /**
   * Monotonic deadline (the port's Clock, ms) by which the kernel must have (re)started the lifetime: a finite
   * lifetime must not start later than its owner's safety bound allows. Checked before every send (past it:
   * 'late', nothing sent) and when the reply arrives, whose arrival bounds when the kernel set the lifetime
   * (past it: 'late-reply' — the address is there with a lifetime that may run too long; the caller removes it).
   */
  notAfter?: number;
}

/** The kernel's "infinite" lifetime (INFINITY_LIFE_TIME). */
export const FOREVER = 0xffffffff;

/** A permanent lifetime: what `ip addr add` does without `valid_lft`. */
export const FOREVER_LIFETIME: AddressLifetime = { validSec: FOREVER, preferredSec: FOREVER };

/** An address configured on an interface, as the kernel reports it. Lifetimes are what remains, in seconds. */
export interface HostAddress {
  address: string;
  prefix: number;
  family: 4 | 6;
  validSec?: number;
  preferredSec?: number;
  /** No lifetime (IFA_F_PERMANENT): configured by hand or by a tool that does not expire it. */
  permanent?: boolean;
  /** Not the primary address of its subnet on the interface (IFA_F_SECONDARY). */
  secondary?: boolean;
}

/**
 * What the agent needs from the host to own a VIP — deliberately four verbs (vip-manager's `ipConfigurer`,
 * not kube-vip's 27-method `Network`). Expected outcomes are results; everything else is a CoordError
 * with code ERR_COORD_NETLINK and a hint.
 */
export interface VipPort {
  /** Addresses on `iface`, for reconciling observed against desired state. */
  list(iface: string): Promise<HostAddress[]>;
  /**
   * Add `vip` to `iface`. A finite lifetime makes the kernel itself remove the VIP if coord stops refreshing it
   * (a crashed or paused holder cannot keep it forever). When the VIP is already there the lifetime is
   * refreshed and the result is 'present'.
   */
  add(
    iface: string,
    vip: Vip,
    lifetime?: AddressLifetime,
  ): Promise<'added' | 'present' | 'late' | 'late-reply'>;
  /** Restart the kernel's lifetime clock of `vip`. Like the kernel, this re-adds the VIP if it has gone. */
  refresh(iface: string, vip: Vip, lifetime: AddressLifetime): Promise<'refreshed' | 'late' | 'late-reply'>;
  /**
   * Remove `vip`'s address from `iface` whatever prefix length it was added with (a leftover /32 of a /24 VIP is
   * still the VIP); 'absent' when it was not there (removal is idempotent).
   */
  remove(iface: string, vip: Vip): Promise<'removed' | 'absent'>;
  /**
   * The netlink port id this port's address writes are sent from (the kernel names it as `nlmsg_pid` in the
   * notifications they cause), opening its socket if need be; null when it cannot say.
   */
  echoPort?(): number | null;
  /** Close the netlink socket. */
  close(): void;
}
