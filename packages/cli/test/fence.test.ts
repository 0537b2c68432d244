import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatCidr, isCoordError, validateNodeConfig, type NodeConfig, type Vip } from '@coord/core';
import type { HostAddress } from '@coord/vip';
import {
  fenceExitCode,
  fenceVips,
  formatFence,
  formatRelease,
  listening,
  refuseWhileRunning,
  releaseLease,
  type FenceOutcome,
} from '../src/fence.js';

function config(groups: unknown[]): NodeConfig {
  const r = validateNodeConfig({ node: 'lb1', etcd: ['http://10.0.0.2:2379'], cluster: 'prod', groups });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

/** A host's interfaces as address lists; remove() behaves like the netlink port (any prefix, idempotent). */
function fakeHost(ifaces: Record<string, HostAddress[]>, failRemove = new Set<string>()) {
  const removed: string[] = [];
  return {
    removed,
    ifaces,
    port: {
      list: (iface: string): Promise<HostAddress[]> => {
        const a = ifaces[iface];
        if (a === undefined) return Promise.reject(new Error(`netlink get link failed for ${iface}: ENODEV`));
        return Promise.resolve(a.map((x) => ({ ...x })));
      },
      remove: (iface: string, vip: Vip): Promise<'removed' | 'absent'> => {
        if (failRemove.has(vip.address)) return Promise.reject(new Error('EPERM'));
        const list = ifaces[iface] ?? [];
        const before = list.length;
        ifaces[iface] = list.filter((a) => a.address !== vip.address);
        if (ifaces[iface].length === before) return Promise.resolve('absent');
        removed.push(`${iface} ${formatCidr(vip)}`);
        return Promise.resolve('removed');
      },
    },
  };
}

const v4 = (address: string, prefix: number, extra: Partial<HostAddress> = {}): HostAddress => ({
  address,
  prefix,
  family: 4,
  ...extra,
});

describe('coord fence: taking this node’s VIPs off its interfaces', () => {
  it('removes every VIP of every group that is there, whatever its prefix, and reports the rest as absent', async () => {
    const host = fakeHost({
      eth0: [v4('10.0.0.2', 24, { permanent: true }), v4('10.0.0.50', 24, { validSec: 1 })],
      eth1: [v4('192.168.5.2', 24, { permanent: true }), v4('192.168.5.60', 32, { permanent: true })],
    });
    const out = await fenceVips(
      config([
        { name: 'web', interface: 'eth0', vips: ['10.0.0.50/24', '10.0.0.51/24'] },
        { name: 'db', interface: 'eth1', vips: ['192.168.5.60/24'] },
      ]),
      host.port,
    );
    expect(out.map((o) => [o.group, o.vip, o.result])).toEqual([
      ['web', '10.0.0.50/24', 'removed'],
      ['web', '10.0.0.51/24', 'absent'],
      ['db', '192.168.5.60/24', 'removed'],
    ]);
    // The host's own addresses are still there; only VIPs went.
    expect(host.ifaces['eth0']?.map((a) => a.address)).toEqual(['10.0.0.2']);
    expect(host.ifaces['eth1']?.map((a) => a.address)).toEqual(['192.168.5.2']);
    expect(fenceExitCode(out)).toBe(0);
  });

  it('never removes the host’s own address, even when the config names it as a VIP', async () => {
    const host = fakeHost({ eth0: [v4('10.0.0.2', 24, { permanent: true })] });
    const out = await fenceVips(
      config([{ name: 'web', interface: 'eth0', vips: ['10.0.0.2/24'] }]),
      host.port,
    );
    expect(out[0]?.result).toBe('own-address');
    expect(host.removed).toEqual([]);
    expect(host.ifaces['eth0']).toHaveLength(1);
    expect(formatFence(out)).toMatch(/left alone: 10\.0\.0\.2\/24 on eth0 .*own address/);
    expect(fenceExitCode(out)).toBe(0);
  });

  it('goes on past a failure, says which VIP failed and why, and exits 6', async () => {
    const host = fakeHost({ eth0: [v4('10.0.0.50', 24), v4('10.0.0.51', 24)] }, new Set(['10.0.0.50']));
    const out = await fenceVips(
      config([
        { name: 'web', interface: 'eth0', vips: ['10.0.0.50/24', '10.0.0.51/24'] },
        { name: 'gone', interface: 'eth9', vips: ['10.9.0.1/24'] },
      ]),
      host.port,
    );
    expect(out.map((o) => o.result)).toEqual(['failed', 'removed', 'failed']);
    expect(host.removed).toEqual(['eth0 10.0.0.51/24']);
    const text = formatFence(out);
    expect(text).toMatch(/FAILED to remove 10\.0\.0\.50\/24 on eth0 \(group web\): EPERM/);
    expect(text).toMatch(/FAILED to remove 10\.9\.0\.1\/24 on eth9 \(group gone\): .*ENODEV/);
    expect(fenceExitCode(out)).toBe(6);
  });
});

describe('coord fence refuses while this node’s coord runs', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const socketPath = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'coord-fence-'));
    dirs.push(d);
    return join(d, 'control.sock');
  };

  it('refuses while something listens on the control socket, and names the socket and the way out', async () => {
    const path = socketPath();
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(path, r));
    try {
      expect(await listening(path)).toBe(true);
      const err = await refuseWhileRunning(path).catch((e: unknown) => e);
      expect(isCoordError(err) && err.code).toBe('ERR_COORD_USAGE');
      expect((err as Error).message).toContain(path);
      expect(isCoordError(err) && err.hint).toMatch(/systemctl stop coord.*--force/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('goes ahead when the socket file is stale (what a killed coord leaves) or missing', async () => {
    const stale = socketPath();
    writeFileSync(stale, ''); // a file where a socket was: connect() is refused
    expect(await listening(stale)).toBe(false);
    await expect(refuseWhileRunning(stale)).resolves.toBeUndefined();
    await expect(refuseWhileRunning(join(stale, '..', 'missing.sock'))).resolves.toBeUndefined();
  });
});

describe('coord fence: giving up the ended process’s lease', () => {
  const KEY = '/coord/prod/members/lb1';
  /** An etcd with this node's member record under `lease` (none: no record); records what was revoked. */
  function fakeEtcd(lease: string | undefined, failWith?: Error) {
    const revoked: string[] = [];
    const asked: string[] = [];
    return {
      revoked,
      asked,
      etcd: {
        get: (key: string) => {
          asked.push(key);
          if (failWith !== undefined) return Promise.reject(failWith);
          return Promise.resolve({ entry: lease === undefined ? undefined : { lease } });
        },
        revoke: (id: string) => {
          revoked.push(id);
          return Promise.resolve();
        },
      },
    };
  }
  const off = (result: FenceOutcome['result']): FenceOutcome => ({
    group: 'web',
    iface: 'eth0',
    vip: '10.0.0.50/24',
    result,
  });

  it('revokes the lease of this node’s member record once every VIP is off (removed, absent or the host’s own)', async () => {
    const e = fakeEtcd('7587869');
    const r = await releaseLease(KEY, e.etcd, [off('removed'), off('absent'), off('own-address')]);
    expect(r).toEqual({ result: 'revoked', lease: '7587869' });
    expect(e.asked).toEqual([KEY]);
    expect(e.revoked).toEqual(['7587869']);
    expect(formatRelease(r)).toMatch(/gave up lease 7587869 in etcd/);
  });

  it('leaves the lease alone when a VIP could not be removed: the successor’s guard must start at its expiry', async () => {
    const e = fakeEtcd('7587869');
    const r = await releaseLease(KEY, e.etcd, [off('removed'), off('failed')]);
    expect(r.result).toBe('kept');
    expect(e.asked).toEqual([]);
    expect(e.revoked).toEqual([]);
    expect(formatRelease(r)).toMatch(/lease left in etcd: a VIP could not be removed/);
  });

  it('does nothing when etcd has no member record of this node (a graceful stop revoked it, or it expired)', async () => {
    for (const lease of [undefined, '0']) {
      const e = fakeEtcd(lease);
      expect(await releaseLease(KEY, e.etcd, [off('absent')])).toEqual({ result: 'none' });
      expect(e.revoked).toEqual([]);
    }
  });

  it('reports an etcd failure without throwing (the lease runs out by itself)', async () => {
    const e = fakeEtcd('1', new Error('etcd range failed: UNAVAILABLE'));
    const r = await releaseLease(KEY, e.etcd, [off('removed')]);
    expect(r).toEqual({ result: 'failed', error: 'etcd range failed: UNAVAILABLE' });
    expect(formatRelease(r)).toMatch(/could not give up the lease.*runs out by itself.*UNAVAILABLE/);
  });
});
