/**
 * The shipped deployment files are part of the product: the example config must load with the real schema,
 * the unit must pass systemd's own verifier, and the sysctl drop-in must say what HAProxy needs.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConfigFile, validateNodeConfig } from '@coord/core';
import { describe, expect, it } from 'vitest';

const deploy = (f: string): string => fileURLToPath(new URL(`../deploy/${f}`, import.meta.url));

describe('deploy/', () => {
  it('coord.example.yaml is a valid node config with one group and its VIPs', async () => {
    const raw = await readConfigFile(deploy('coord.example.yaml'));
    // The node name is left to the host name (as coord join and check-config do).
    raw.node ??= 'lb1';
    const r = validateNodeConfig(raw);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect(r.config.etcd.endpoints).toHaveLength(3);
    expect(r.config.groups[0]?.interface).toBe('eth0');
    expect(r.config.groups[0]?.vips).toHaveLength(2);
    expect(r.config.ttlSec).toBe(1);
  });

  it('99-coord.conf enables non-local bind (IPv4 and IPv6) and nothing else', () => {
    const lines = readFileSync(deploy('99-coord.conf'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'));
    expect(lines).toEqual(['net.ipv4.ip_nonlocal_bind = 1', 'net.ipv6.ip_nonlocal_bind = 1']);
  });

  it('coord.service passes systemd-analyze verify and keeps the capabilities coord needs', () => {
    const unit = readFileSync(deploy('coord.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=\S+ join --config \/etc\/coord\/coord\.yaml$/m);
    // A reload that could not apply everything must fail visibly (reload-config exits 3), not vanish in a signal.
    expect(unit).toMatch(/^ExecReload=\/usr\/bin\/coord reload-config --config \/etc\/coord\/coord\.yaml$/m);
    // Whatever ended coord, systemd then takes its VIPs off with the same config; a failure never blocks a restart.
    expect(unit).toMatch(/^ExecStopPost=-\/usr\/bin\/coord fence --config \/etc\/coord\/coord\.yaml$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    // Failures are retried without systemd's start limit ending them (an address late at boot is exit 2 too).
    expect(unit).not.toMatch(/^RestartPreventExitStatus=/m);
    expect(unit).toMatch(/^StartLimitIntervalSec=0$/m);
    // Chrooted HAProxy workers log through /dev/log, as Debian's haproxy.service arranges.
    expect(unit).toMatch(/^BindReadOnlyPaths=-\/dev\/log:\/var\/lib\/haproxy\/dev\/log$/m);
    expect(unit).toMatch(/^After=network-online\.target haproxy\.service$/m);
    const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)?.[1]?.split(' ') ?? [];
    // Its own: addresses and ARP; the HAProxy it starts: low ports, dropping privileges, chroot.
    expect(caps).toEqual(
      expect.arrayContaining([
        'CAP_NET_ADMIN',
        'CAP_NET_RAW',
        'CAP_NET_BIND_SERVICE',
        'CAP_SETUID',
        'CAP_SETGID',
        'CAP_SYS_CHROOT',
      ]),
    );
    expect(unit).toMatch(/^Documentation=man:coord\(8\) man:coord\.yaml\(5\)$/m);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m); // breaks V8
    // The binary is not installed here: verify a copy whose ExecStart points at one that exists.
    const dir = mkdtempSync(join(tmpdir(), 'coord-unit-'));
    try {
      const copy = join(dir, 'coord.service');
      writeFileSync(
        copy,
        unit
          .replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`)
          .replace(/^ExecStopPost=-\S+/m, `ExecStopPost=-${process.execPath}`)
          .replace(/^ExecReload=\S+/m, `ExecReload=${process.execPath}`),
      );
      // The man pages it names are installed by the package (checked by the package's own CI step), not here.
      const out = execFileSync('systemd-analyze', ['verify', '--man=no', copy], {
        encoding: 'utf8',
        stdio: 'pipe',
      });
      expect(out.trim()).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
