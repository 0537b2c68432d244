import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import type { Service, ValidationError } from './model.js';

/**
 * `haproxy -c` does not bind, so a service bound to an address this node does not have passes the check and then
 * fails the reload — after HAProxy has retried for ~3 s with the running worker's listeners paused (measured on
 * 2.6.12). Catching it before the reload keeps traffic flowing and gives a clearer error.
 */
export interface BindEnvironment {
  /** net.ipv4.ip_nonlocal_bind / net.ipv6.ip_nonlocal_bind in HAProxy's namespace. */
  nonlocalBind4: boolean;
  nonlocalBind6: boolean;
  /** Addresses assigned to interfaces in HAProxy's namespace (canonical form). */
  localAddresses: ReadonlySet<string>;
}

/** Pure: binds that cannot succeed in `env`. Wildcards always can. */
export function unbindableAddresses(services: readonly Service[], env: BindEnvironment): ValidationError[] {
  const errors: ValidationError[] = [];
  for (const svc of services) {
    svc.binds.forEach((b, i) => {
      if (b.address === '0.0.0.0' || b.address === '::') return;
      const v6 = b.address.includes(':');
      if ((v6 ? env.nonlocalBind6 : env.nonlocalBind4) || env.localAddresses.has(b.address)) return;
      errors.push({
        path: `${svc.name}.binds.${i}`,
        message: `${b.address} is not on this node and net.${v6 ? 'ipv6' : 'ipv4'}.ip_nonlocal_bind is 0`,
      });
    });
  }
  return errors;
}

async function sysctlOn(path: string): Promise<boolean> {
  try {
    return (await readFile(path, 'utf8')).trim() === '1';
  } catch {
    return false;
  }
}

/**
 * The bind environment of the calling process's namespace. Use it as the driver's `preflight` only when HAProxy
 * runs in the same network namespace as coord (the production layout).
 */
export async function readBindEnvironment(): Promise<BindEnvironment> {
  const local = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) local.add(a.address.split('%')[0] ?? a.address);
  }
  return {
    nonlocalBind4: await sysctlOn('/proc/sys/net/ipv4/ip_nonlocal_bind'),
    nonlocalBind6: await sysctlOn('/proc/sys/net/ipv6/ip_nonlocal_bind'),
    localAddresses: local,
  };
}

/** A ready-made driver preflight: {@link unbindableAddresses} against {@link readBindEnvironment}. */
export async function bindPreflight(services: readonly Service[]): Promise<ValidationError[]> {
  return unbindableAddresses(services, await readBindEnvironment());
}
