/**
 * How to reach etcd, resolved from the validated settings: endpoints, TLS material read from its files, and the
 * user with its password (from a file or COORD_ETCD_PASSWORD — never a flag value, never logged). Every failure
 * names the file or setting and says what to do.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CoordError, errorMessage, type EtcdSettings } from '@coord/core';

/** The environment variable a password may come from (systemd: an EnvironmentFile readable by root only). */
export const PASSWORD_ENV = 'COORD_ETCD_PASSWORD';

export interface EtcdAuth {
  readonly user: string;
  /** Kept out of every log line and error message. */
  readonly password: string;
}

export interface EtcdTls {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  /** When the client certificate stops being valid (undefined without one). */
  readonly certExpiresAt: Date | undefined;
  /** Fingerprint of the material, to tell a rotation from an unchanged file. */
  readonly digest: string;
}

/** Everything the etcd client needs, with the files it was read from (for rotation). */
export interface EtcdConnection {
  readonly endpoints: readonly string[];
  readonly files: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  readonly tls: EtcdTls | undefined;
  readonly auth: EtcdAuth | undefined;
  /** Deadline of each unary call (the CLI's --timeout; the agent keeps 2 s). */
  readonly callTimeoutMs?: number;
  readonly dialTimeoutMs?: number;
}

function readFile(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new CoordError('ERR_COORD_CONFIG', `cannot read ${what} ${path}: ${code ?? errorMessage(e)}`, {
      hint:
        code === 'ENOENT'
          ? `check the path given for ${what}`
          : code === 'EACCES'
            ? `coord cannot read ${path}: check its owner and mode`
            : `check ${path}`,
      details: { file: path, setting: what },
    });
  }
}

/** Read and check the TLS files (PEM, a certificate that parses, a key that matches it). */
export function readTls(files: EtcdConnection['files']): EtcdTls | undefined {
  if (files.ca === undefined && files.cert === undefined && files.key === undefined) return undefined;
  const ca = files.ca === undefined ? undefined : readFile('--etcd-cacert', files.ca);
  const cert = files.cert === undefined ? undefined : readFile('--etcd-cert', files.cert);
  const key = files.key === undefined ? undefined : readFile('--etcd-key', files.key);
  let certExpiresAt: Date | undefined;
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (e) {
      throw new CoordError(
        'ERR_COORD_CONFIG',
        `--etcd-cacert ${files.ca}: not a PEM certificate (${errorMessage(e)})`,
        {
          hint: 'give the CA certificate that signed the etcd servers’ certificates, in PEM',
        },
      );
    }
  }
  if (cert !== undefined) {
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(cert);
    } catch (e) {
      throw new CoordError(
        'ERR_COORD_CONFIG',
        `--etcd-cert ${files.cert}: not a PEM certificate (${errorMessage(e)})`,
        {
          hint: 'give this node’s client certificate, in PEM',
        },
      );
    }
    certExpiresAt = new Date(x509.validTo);
    if (key !== undefined) {
      let matches = false;
      try {
        matches = x509.checkPrivateKey(createPrivateKey(key));
      } catch {
        matches = false;
      }
      if (!matches)
        throw new CoordError(
          'ERR_COORD_CONFIG',
          `--etcd-key ${files.key} is not the private key of --etcd-cert ${files.cert}`,
          {
            hint: 'give the key the client certificate was issued for (PEM, unencrypted)',
          },
        );
    }
  }
  const digest = createHash('sha256')
    .update(ca ?? '')
    .update('\0')
    .update(cert ?? '')
    .update('\0')
    .update(key ?? '')
    .digest('hex');
  return { ca, cert, key, certExpiresAt, digest };
}

/** The password of `user`: from the password file, else COORD_ETCD_PASSWORD. */
function readPassword(settings: EtcdSettings, env: NodeJS.ProcessEnv): string {
  if (settings.passwordFile !== undefined) {
    const text = readFile('--etcd-password-file', settings.passwordFile).toString('utf8');
    const password = text.replace(/\r?\n$/, '');
    if (password === '')
      throw new CoordError('ERR_COORD_CONFIG', `--etcd-password-file ${settings.passwordFile} is empty`, {
        hint: 'write the etcd password of the user into the file (one line)',
      });
    return password;
  }
  const fromEnv = env[PASSWORD_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  throw new CoordError('ERR_COORD_CONFIG', `etcd user ${settings.user ?? ''} has no password`, {
    hint: `give it with --etcd-password-file FILE (etcd.passwordFile in the config) or ${PASSWORD_ENV}`,
  });
}

/** Resolve the settings into a connection: read the TLS files and the password now, and check them. */
export function loadConnection(
  settings: EtcdSettings,
  opts: { env?: NodeJS.ProcessEnv; callTimeoutMs?: number } = {},
): EtcdConnection {
  const env = opts.env ?? process.env;
  if (settings.endpoints.length === 0)
    throw new CoordError('ERR_COORD_USAGE', 'no etcd endpoint given', {
      hint: 'pass --etcd https://HOST:2379 (or set etcd.endpoints in /etc/coord/coord.yaml)',
    });
  const files = {
    ...(settings.caFile === undefined ? {} : { ca: settings.caFile }),
    ...(settings.certFile === undefined ? {} : { cert: settings.certFile }),
    ...(settings.keyFile === undefined ? {} : { key: settings.keyFile }),
  };
  const tls = readTls(files);
  if (tls !== undefined && settings.endpoints.some((e) => e.startsWith('http://')))
    throw new CoordError('ERR_COORD_CONFIG', 'TLS files are set but an etcd endpoint is http://', {
      hint: 'use https:// endpoints with --etcd-cacert/--etcd-cert/--etcd-key',
    });
  const auth =
    settings.user === undefined ? undefined : { user: settings.user, password: readPassword(settings, env) };
  return {
    endpoints: settings.endpoints,
    files,
    tls,
    auth,
    ...(opts.callTimeoutMs === undefined ? {} : { callTimeoutMs: opts.callTimeoutMs }),
  };
}

/** Map a TLS handshake failure seen by node:tls to what is wrong and what to do. */
function tlsProblem(
  e: NodeJS.ErrnoException,
  server: string,
): { kind: string; message: string; hint: string } | undefined {
  const code = e.code ?? '';
  const text = `${code} ${e.message}`;
  if (/CERT_HAS_EXPIRED/.test(code))
    return {
      kind: 'tls-server-expired',
      message: `the etcd server's certificate (${server}) has expired`,
      hint: 'renew the etcd servers’ certificates',
    };
  if (/UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER|DEPTH_ZERO/.test(code))
    return {
      kind: 'tls-unknown-ca',
      message: `the etcd server's certificate (${server}) is not signed by --etcd-cacert`,
      hint: 'give the CA that signed the etcd servers’ certificates with --etcd-cacert',
    };
  if (/ERR_TLS_CERT_ALTNAME_INVALID/.test(code))
    return {
      kind: 'tls-name',
      message: `the etcd server's certificate does not name ${server}`,
      hint: 'use the endpoint address the server certificate was issued for (its subjectAltName)',
    };
  if (/ALERT_CERTIFICATE_EXPIRED|certificate expired/i.test(text))
    return {
      kind: 'tls-client-expired',
      message: `etcd (${server}) refused our client certificate: it has expired`,
      hint: 'renew --etcd-cert (coord picks up the new files by itself)',
    };
  if (
    /ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_REQUIRED|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)|certificate required/i.test(
      text,
    )
  )
    return {
      kind: 'tls-client-refused',
      message: `etcd (${server}) refused our client certificate`,
      hint: 'give --etcd-cert/--etcd-key issued by the CA etcd trusts (--trusted-ca-file on the servers)',
    };
  if (/WRONG_VERSION_NUMBER|wrong version number/i.test(text))
    return {
      kind: 'tls-not-tls',
      message: `${server} does not speak TLS`,
      hint: 'use http:// for a plaintext etcd, or enable TLS on it',
    };
  return undefined;
}

/**
 * Find out why a TLS connection to etcd fails: grpc-js only says "UNAVAILABLE: No connection established", so
 * one handshake with node:tls (same CA, certificate and key) names the cause. Resolves undefined when the
 * handshake succeeds, the connection fails for another reason, or there is no TLS.
 */
export async function diagnoseTls(
  conn: EtcdConnection,
  timeoutMs = 2000,
): Promise<{ kind: string; message: string; hint: string } | undefined> {
  const tls = conn.tls;
  const endpoint = conn.endpoints.find((e) => e.startsWith('https://'));
  if (tls === undefined && endpoint === undefined) return undefined;
  if (endpoint === undefined) return undefined;
  const url = new URL(endpoint);
  const server = url.host;
  const { connect } = await import('node:tls');
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: { kind: string; message: string; hint: string } | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const socket = connect({
      host: url.hostname,
      port: Number(url.port === '' ? 2379 : url.port),
      ...(tls?.ca === undefined ? {} : { ca: tls.ca }),
      ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
      ...(tls?.key === undefined ? {} : { key: tls.key }),
      ALPNProtocols: ['h2'],
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const problem = tlsProblem(e, server);
      // A refused client certificate that has expired: say that, whatever alert the server chose.
      const expired = tls?.certExpiresAt !== undefined && tls.certExpiresAt.getTime() < Date.now();
      if (problem?.kind === 'tls-client-refused' && expired)
        done({
          kind: 'tls-client-expired',
          message: `etcd (${server}) refused our client certificate: it expired at ${tls.certExpiresAt?.toISOString() ?? ''}`,
          hint: 'renew --etcd-cert (coord picks up the new files by itself)',
        });
      else done(problem);
    });
    // TLS 1.3: the server checks our certificate after the client finished; its alert comes a moment later.
    socket.on('secureConnect', () => setTimeout(() => done(undefined), 300));
    const timer = setTimeout(() => done(undefined), timeoutMs);
  });
}
