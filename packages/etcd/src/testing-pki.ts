/**
 * A throw-away PKI for tests (openssl CLI): a CA, server certificates for etcd members, client certificates
 * (also an expired one, and one from a second CA that etcd does not trust). EC P-256 keys, unencrypted PEM.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  readonly dir: string;
  readonly ca: string;
  /** Issue a server certificate for these IP addresses (and 127.0.0.1). */
  server(name: string, ips: readonly string[]): CertFiles;
  /** Issue a client certificate with this common name (etcd maps the CN to a user with client-cert auth). */
  client(cn: string, opts?: { days?: number; file?: string }): CertFiles;
  /** A second CA nobody trusts, and a client certificate it issued. */
  foreignClient(cn: string): CertFiles & { ca: string };
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function newCa(dir: string, name: string): { pem: string; key: string } {
  const pem = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      pem,
      '-days',
      '3650',
      '-subj',
      `/CN=${name}`,
    ],
    dir,
  );
  return { pem, key };
}

let serial = 1000;

function issue(
  dir: string,
  ca: { pem: string; key: string },
  file: string,
  cn: string,
  ext: string,
  days: number,
): CertFiles {
  const key = join(dir, `${file}.key`);
  const csr = join(dir, `${file}.csr`);
  const cert = join(dir, `${file}.pem`);
  const extFile = join(dir, `${file}.ext`);
  writeFileSync(extFile, `${ext}\n`);
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      csr,
      '-subj',
      `/CN=${cn}`,
    ],
    dir,
  );
  // `-days -1` makes a certificate that expired a day ago (notAfter before now): the expired-certificate case.
  openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.pem,
      '-CAkey',
      ca.key,
      '-set_serial',
      String(++serial),
      '-out',
      cert,
      '-days',
      String(days),
      '-extfile',
      extFile,
    ],
    dir,
  );
  return { cert, key };
}

export function createTestPki(dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  const ca = newCa(dir, 'ca');
  let foreign: { pem: string; key: string } | undefined;
  return {
    dir,
    ca: ca.pem,
    server(name, ips) {
      const san = [...new Set([...ips, '127.0.0.1'])].map((ip) => `IP:${ip}`).join(',');
      return issue(
        dir,
        ca,
        name,
        name,
        `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth`,
        3650,
      );
    },
    client(cn, opts = {}) {
      return issue(
        dir,
        ca,
        opts.file ?? `client-${cn}`,
        cn,
        'extendedKeyUsage=clientAuth',
        opts.days ?? 3650,
      );
    },
    foreignClient(cn) {
      foreign ??= newCa(dir, 'foreign-ca');
      return {
        ...issue(dir, foreign, `foreign-${cn}`, cn, 'extendedKeyUsage=clientAuth', 3650),
        ca: foreign.pem,
      };
    },
  };
}
