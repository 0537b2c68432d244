/**
 * A dead-man switch for the VIPs a node holds: a small shell process that outlives coord and removes them the
 * moment coord's process dies (kill -9, the OOM killer, a segfault), instead of leaving them to the kernel's
 * address lifetime (which may outlive its `valid_lft` by about another second — docs/design.md, "Kernel") or, in
 * VRRP mode, to nobody.
 *
 * coord writes the set of (interface, address) it may hold to the helper's stdin as one line, before every
 * add/refresh and after every removal; the helper keeps the last line and, when its stdin reaches EOF (the kernel
 * closes the pipe when coord's process ends, however it ends), runs `ip addr del` for each. A line of a few
 * hundred bytes is written atomically to a pipe (PIPE_BUF), so the helper never sees half a set.
 *
 * What it cannot cover: the helper killed together with coord (`kill -9` of the whole process group or cgroup, a
 * power cut — where the kernel copy dies too); a frozen coord (the helper's stdin stays open; the kernel
 * lifetime and the successor's wire probe cover that).
 */
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { formatCidr, nullLogger } from '@coord/core';
import type { Logger, Vip } from '@coord/core';
import type { VipPort } from './types.js';

/**
 * The helper, run by /bin/sh with the interface/address pairs on its stdin. It ignores the signals a terminal or
 * a service manager sends the group (coord itself decides what to do on SIGINT/SIGTERM) and disables globbing,
 * so nothing in a line is expanded.
 */
export const DEAD_MAN_SCRIPT = [
  "trap '' HUP INT TERM PIPE",
  'set -f',
  "held=''",
  'while IFS= read -r line; do held=$line; done',
  'set -- $held',
  'while [ $# -ge 2 ]; do ip addr del "$2" dev "$1" 2>/dev/null; shift 2; done',
].join('\n');

/** Start the helper process; returns its stdin, or undefined when it could not start. */
export type DeadManSpawn = (script: string) => { stdin: Writable; pid: number | undefined } | undefined;

/** The real helper: `/bin/sh -c SCRIPT`, not holding coord's event loop open. */
export const spawnDeadMan: DeadManSpawn = (script) => {
  const child = spawn('/bin/sh', ['-c', script, 'coord-dead-man'], { stdio: ['pipe', 'ignore', 'ignore'] });
  child.unref();
  (child.stdin as Socket).unref();
  return { stdin: child.stdin, pid: child.pid };
};

export interface DeadManOptions {
  logger?: Logger;
  spawn?: DeadManSpawn;
}

/** One line: `iface cidr iface cidr …` (interface names hold no whitespace; the kernel refuses it). */
export function deadManLine(held: Iterable<string>): string {
  return [...held].join(' ') + '\n';
}

/**
 * Wrap `port` so every address it may hold is known to a dead-man helper. The helper is started at once;
 * when it cannot start, the port works as before and a warning says what is lost.
 */
export function withDeadManSwitch(port: VipPort, opts: DeadManOptions = {}): VipPort {
  const log = (opts.logger ?? nullLogger).child({ component: 'vip' });
  let stdin: Writable | undefined;
  const lost = (reason: string): void => {
    if (stdin === undefined) return;
    stdin = undefined;
    log.warn('dead-man switch gone: a crashed coord leaves its VIPs to the kernel lifetime', { reason });
  };
  try {
    const started = (opts.spawn ?? spawnDeadMan)(DEAD_MAN_SCRIPT);
    if (started !== undefined) {
      stdin = started.stdin;
      stdin.on('error', (e: Error) => lost(e.message));
      log.debug('dead-man switch started', { pid: started.pid });
    }
  } catch (e) {
    log.warn('dead-man switch not started: a crashed coord leaves its VIPs to the kernel lifetime', {
      reason: (e as Error).message,
    });
  }
  // Keyed `iface cidr`: the prefix is part of the key because `ip addr del` matches it.
  const held = new Set<string>();
  const key = (iface: string, vip: Vip): string => `${iface} ${formatCidr(vip)}`;
  const tell = (): void => {
    stdin?.write(deadManLine(held));
  };
  const holding = (iface: string, vip: Vip): void => {
    const k = key(iface, vip);
    if (held.has(k)) return;
    held.add(k);
    tell(); // before the kernel has it: a crash in between leaves a removal of an absent address, harmless
  };
  return {
    list: (iface) => port.list(iface),
    echoPort: () => port.echoPort?.() ?? null,
    add: (iface, vip, lifetime) => {
      holding(iface, vip);
      return port.add(iface, vip, lifetime);
    },
    refresh: (iface, vip, lifetime) => {
      holding(iface, vip); // a refresh re-creates a VIP that has gone
      return port.refresh(iface, vip, lifetime);
    },
    async remove(iface, vip) {
      const r = await port.remove(iface, vip);
      if (held.delete(key(iface, vip))) tell();
      return r;
    },
    close() {
      port.close();
      // The helper stays until the process exits: anything still held (a removal that failed) goes with it.
    },
  };
}
