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
