/**
 * `coord fence`: take this node's VIPs off its interfaces now, whatever state coord left them in.
 *
 * The package's unit runs it as ExecStopPost: systemd runs that once coord's process has ended, however it ended —
 * including `systemctl kill -s KILL coord`, which kills the dead-man helper with it (docs/design.md, "When coord's
 * process dies"). Without it such a VIP stays until the kernel's lifetime worker removes it, up to about a second
 * after its lifetime; a successor that cannot hear that host on the wire (its cable out) claims beside it.
 *
 * It never removes the host's own address (hostOwnAddress), and refuses while something listens on this node's
 * control socket: fencing a running holder takes its VIPs away under it.
 *
 * In etcd mode it then gives up the lease the ended process left in etcd (releaseLease), once every VIP is off:
 * its keys go with it, so the next holder is elected now instead of when the lease runs out (a TTL and up to
 * 500 ms of etcd's expiry scan after the last keepalive; an etcd leader election meanwhile extends it by the TTL
 * plus the election timeout — docs/design.md, "etcd 3.4").
 */
import { connect } from 'node:net';
import { CoordError, ERROR_CODES, errorMessage, formatCidr, type NodeConfig } from '@coord/core';
import { hostOwnAddress, type HostAddress, type VipPort } from '@coord/vip';

export interface FenceOutcome {
  group: string;
  iface: string;
  vip: string;
  /** own-address: the host's own address, left alone; failed: see `error`. */
  result: 'removed' | 'absent' | 'own-address' | 'failed';
  error?: string;
}

/** Remove every VIP of every group from its interface. Never throws: each VIP gets an outcome. */
export async function fenceVips(
  config: Pick<NodeConfig, 'groups'>,
  port: Pick<VipPort, 'list' | 'remove'>,
): Promise<FenceOutcome[]> {
  const listed = new Map<string, Promise<HostAddress[]>>();
  const out: FenceOutcome[] = [];
  for (const g of config.groups) {
    let addresses = listed.get(g.interface);
    if (addresses === undefined) {
      addresses = port.list(g.interface);
      listed.set(g.interface, addresses);
    }
    for (const vip of g.vips) {
      const base = { group: g.name, iface: g.interface, vip: formatCidr(vip) };
      try {
        if (hostOwnAddress(await addresses, vip) !== undefined) {
          out.push({ ...base, result: 'own-address' });
          continue;
        }
        out.push({ ...base, result: await port.remove(g.interface, vip) });
      } catch (e) {
        out.push({ ...base, result: 'failed', error: errorMessage(e) });
      }
    }
  }
  return out;
}

/** What became of the lease the ended process left in etcd. */
export interface LeaseRelease {
  /**
   * revoked: given up (`lease`); none: etcd has no member record of this node (a graceful stop revoked it, or it
   * expired); kept: not tried (`reason`); failed: etcd did not do it (`error`) — it runs out by itself.
   */
  result: 'revoked' | 'none' | 'kept' | 'failed';
  lease?: string;
  reason?: string;
  error?: string;
}

/** What releaseLease needs of etcd. */
export interface LeaseEtcd {
  get(key: string): Promise<{ entry: { lease: string } | undefined }>;
  revoke(leaseId: string): Promise<void>;
}

/**
 * Give up the lease of this node's member record — the lease of the process that ended, which its leader keys
 * are under too — after `outcomes` show every VIP off its interface. Never when a removal failed: a copy may still
 * be on the interface, and the successor's takeover guard must then start at the lease's expiry, as it does for a
 * holder whose own removal failed (docs/design.md, "Fencing"). The vacancy it leaves is unclean (no release
 * record), so the successor still waits its guard and probes the wire. Never throws.
 */
export async function releaseLease(
  memberKey: string,
  etcd: LeaseEtcd,
  outcomes: readonly FenceOutcome[],
): Promise<LeaseRelease> {
  if (outcomes.some((o) => o.result === 'failed'))
    return { result: 'kept', reason: 'a VIP could not be removed: the lease runs out by itself' };
  try {
    const { entry } = await etcd.get(memberKey);
    if (entry === undefined || entry.lease === '0') return { result: 'none' };
    await etcd.revoke(entry.lease);
    return { result: 'revoked', lease: entry.lease };
  } catch (e) {
    return { result: 'failed', error: errorMessage(e) };
  }
}

/** One line for the journal. */
export function formatRelease(r: LeaseRelease): string {
  switch (r.result) {
    case 'revoked':
      return `gave up lease ${r.lease ?? '?'} in etcd: the next holder is elected now`;
    case 'none':
      return 'no lease of this node in etcd (already given up or expired)';
    case 'kept':
      return `lease left in etcd: ${r.reason ?? ''}`;
    case 'failed':
      return `could not give up the lease in etcd (it runs out by itself within the TTL): ${r.error ?? 'unknown error'}`;
  }
}

/** One line per VIP, for the journal. */
export function formatFence(outcomes: readonly FenceOutcome[]): string {
  return outcomes
    .map((o) => {
      const where = `${o.vip} on ${o.iface} (group ${o.group})`;
      switch (o.result) {
        case 'removed':
          return `removed ${where}`;
        case 'absent':
          return `not present: ${where}`;
        case 'own-address':
          return `left alone: ${where} is this host's own address on that network, not a VIP`;
        case 'failed':
          return `FAILED to remove ${where}: ${o.error ?? 'unknown error'}`;
      }
    })
    .join('\n');
}

/** Exit status: 0 when nothing failed, else netlink's (6). */
export function fenceExitCode(outcomes: readonly FenceOutcome[]): number {
  return outcomes.some((o) => o.result === 'failed') ? ERROR_CODES.ERR_COORD_NETLINK : 0;
}

/**
 * Whether a process listens on the unix socket `path`: a connection is accepted (a frozen coord's kernel still
 * accepts it). A socket file nobody listens on — what a killed coord leaves — refuses it; no file, no listener.
 */
export function listening(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    const done = (v: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    // Not even accepted in time: somebody holds the socket open; count it as running.
    const timer = setTimeout(() => done(true), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Refuse while this node's coord listens on its control socket `socket`: it may hold its VIPs now. */
export async function refuseWhileRunning(
  socket: string,
  running: (path: string) => Promise<boolean> = listening,
): Promise<void> {
  if (!(await running(socket))) return;
  throw new CoordError(
    'ERR_COORD_USAGE',
    `coord is running on this node (it listens on ${socket}): fencing would take its VIPs away under it`,
    {
      hint: 'stop it first (systemctl stop coord; a stop removes its VIPs itself), or pass --force if it is hung',
    },
  );
}
