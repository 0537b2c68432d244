import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EtcdSettings } from '@coord/core';
import { grpcText, loadConnection, readTls } from '../src/index.js';
import { createTestPki } from '../src/testing.js';

const pki = createTestPki(mkdtempSync(join(tmpdir(), 'coord-pki-')));
const node = pki.client('lb1');

function settings(over: Partial<EtcdSettings> = {}): EtcdSettings {
  return {
    endpoints: ['https://10.0.0.1:2379'],
    caFile: undefined,
    certFile: undefined,
    keyFile: undefined,
    user: undefined,
    passwordFile: undefined,
    ...over,
  };
}

describe('loadConnection', () => {
  it('reads and checks the TLS files, and knows when the client certificate expires', () => {
    const c = loadConnection(settings({ caFile: pki.ca, certFile: node.cert, keyFile: node.key }));
    expect(c.tls?.ca?.toString()).toContain('BEGIN CERTIFICATE');
    expect(c.tls?.certExpiresAt?.getTime()).toBeGreaterThan(Date.now() + 3000 * 86_400_000);
    const expired = pki.client('old', { days: -1 });
    const e = loadConnection(settings({ caFile: pki.ca, certFile: expired.cert, keyFile: expired.key }));
    expect(e.tls?.certExpiresAt?.getTime()).toBeLessThan(Date.now());
  });

  it('names the file and the setting when a file is missing, or the key is not the certificate’s', () => {
    expect(() =>
      loadConnection(settings({ caFile: pki.ca, certFile: node.cert, keyFile: '/nonexistent/lb1.key' })),
    ).toThrow(/cannot read --etcd-key \/nonexistent\/lb1.key: ENOENT/);
    const other = pki.client('other');
    expect(() => loadConnection(settings({ certFile: node.cert, keyFile: other.key }))).toThrow(
      /is not the private key of --etcd-cert/,
    );
    const junk = join(pki.dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate');
    expect(() => loadConnection(settings({ caFile: junk }))).toThrow(/--etcd-cacert .*not a PEM certificate/);
  });

  it('takes the password from its file or COORD_ETCD_PASSWORD, and never says it', () => {
    const file = join(pki.dir, 'pw');
    writeFileSync(file, 's3cret\n', { mode: 0o600 });
    expect(loadConnection(settings({ user: 'lb1', passwordFile: file })).auth).toEqual({
      user: 'lb1',
      password: 's3cret',
    });
    expect(
      loadConnection(settings({ user: 'lb1' }), { env: { COORD_ETCD_PASSWORD: 'env-pw' } }).auth?.password,
    ).toBe('env-pw');
    let error: unknown;
    try {
      loadConnection(settings({ user: 'lb1' }), { env: {} });
    } catch (e) {
      error = e;
    }
    expect(String(error)).toMatch(/etcd user lb1 has no password/);
    const empty = join(pki.dir, 'empty');
    writeFileSync(empty, '');
    expect(() => loadConnection(settings({ user: 'lb1', passwordFile: empty }))).toThrow(/is empty/);
  });

  it('a rotation is told apart from an unchanged file by content', () => {
    const files = { ca: pki.ca, cert: node.cert, key: node.key };
    const a = readTls(files);
    const b = readTls(files);
    expect(a?.digest).toBe(b?.digest);
    const next = pki.client('lb1', { file: 'client-lb1-next' });
    writeFileSync(node.cert, readFileSync(next.cert));
    writeFileSync(node.key, readFileSync(next.key));
    expect(readTls(files)?.digest).not.toBe(a?.digest);
  });
});

describe('grpcText', () => {
  it('drops the gRPC status prefix and the empty resolution note, keeps the reason', () => {
    expect(
      grpcText(
        '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ',
      ),
    ).toBe('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1.');
    expect(grpcText('4 DEADLINE_EXCEEDED: Deadline exceeded')).toBe('Deadline exceeded');
    // Anything else is left as it is.
    expect(grpcText('etcdserver: requested lease not found')).toBe('etcdserver: requested lease not found');
  });
});
