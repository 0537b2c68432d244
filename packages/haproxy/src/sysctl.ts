import { readFile, writeFile } from 'node:fs/promises';
import { CoordError } from '@coord/core';

/**
 * HAProxy binds service addresses that are VIPs: on a backup node the VIP is not (yet) local, so the bind fails
 * unless net.ipv4.ip_nonlocal_bind is 1 in the namespace HAProxy runs in. Without it a backup's HAProxy cannot
 * start, and a master's reload fails the moment it loses the VIP.
 */
export type NonlocalBindMode = 'set' | 'require' | 'ignore';

export const NONLOCAL_BIND_PATH = '/proc/sys/net/ipv4/ip_nonlocal_bind';

export interface NonlocalBindResult {
  /** The value after the call. */
  enabled: boolean;
  changed: boolean;
}

/** Read, require or set net.ipv4.ip_nonlocal_bind (the file is per network namespace). */
export async function checkNonlocalBind(options: {
  mode: NonlocalBindMode;
  path?: string;
}): Promise<NonlocalBindResult> {
  const path = options.path ?? NONLOCAL_BIND_PATH;
  let value: string;
  try {
    value = (await readFile(path, 'utf8')).trim();
  } catch (e) {
    throw new CoordError('ERR_COORD_PERMISSION', `cannot read ${path}`, {
      cause: e,
      hint: 'run coord where /proc/sys is readable',
    });
  }
  const enabled = value === '1';
  switch (options.mode) {
    case 'ignore':
      return { enabled, changed: false };
    case 'require':
      if (!enabled) {
        throw new CoordError(
          'ERR_COORD_CONFIG',
          'net.ipv4.ip_nonlocal_bind is 0: HAProxy cannot bind VIPs this node does not hold',
          {
            hint:
              'set net.ipv4.ip_nonlocal_bind=1 in sysctl.d (the coord package installs /usr/lib/sysctl.d/99-coord.conf: sysctl -p it), ' +
              'or use haproxy.nonlocalBind: set where coord runs outside its systemd unit (the unit keeps /proc/sys read-only)',
            details: { path },
          },
        );
      }
      return { enabled, changed: false };
    case 'set':
      if (enabled) return { enabled, changed: false };
      try {
        await writeFile(path, '1\n');
      } catch (e) {
        throw new CoordError('ERR_COORD_PERMISSION', `cannot enable net.ipv4.ip_nonlocal_bind`, {
          cause: e,
          hint:
            'set net.ipv4.ip_nonlocal_bind=1 in sysctl.d (the coord package installs /usr/lib/sysctl.d/99-coord.conf: sysctl -p it); coord ' +
            'can only write it as root with a writable /proc/sys, which its systemd unit does not give (ProtectKernelTunables)',
          details: { path },
        });
      }
      return { enabled: true, changed: true };
  }
}
