import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '@coord/core';
import { probeGate, probeGateOnce } from '../src/index.js';

const dirs: string[] = [];
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A Unix socket that answers every request with `status` (or closes at once). */
async function listen(status: number | 'close'): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'gate-'));
  dirs.push(dir);
  const path = join(dir, 'web.sock');
  const server = createServer((c) => {
    if (status === 'close') {
      c.end();
      return;
    }
    c.once('data', (d) => {
      if (!d.toString().startsWith('GET /healthz HTTP/1.1\r\n')) c.end('HTTP/1.1 400 Bad\r\n\r\n');
      else c.end(`HTTP/1.1 ${status} X\r\nContent-Length: 0\r\n\r\n`);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return path;
}

describe('rollout gate', () => {
  it('passes on a connection (tcp) or a 2xx/3xx answer to the path', async () => {
    expect(await probeGateOnce(await listen(200), 'tcp', 1000)).toEqual({ ok: true });
    expect(await probeGateOnce(await listen(200), '/healthz', 1000)).toEqual({ ok: true });
    expect(await probeGateOnce(await listen(302), '/healthz', 1000)).toEqual({ ok: true });
  });

  it('fails on an error status, a closed connection or no socket, and says which', async () => {
    expect(await probeGateOnce(await listen(503), '/healthz', 1000)).toEqual({
      ok: false,
      error: 'GET /healthz answered 503',
    });
    const closed = await probeGateOnce(await listen('close'), '/healthz', 1000);
    expect(closed).toEqual({ ok: false, error: 'connection closed without an answer' });
    const none = await probeGateOnce('/nonexistent/web.sock', 'tcp', 1000);
    expect(none.ok).toBe(false);
    if (!none.ok) expect(none.error).toMatch(/ENOENT/);
  });

  it('asks again until the deadline and reports the last failure', async () => {
    const path = await listen(503);
    const started = Date.now();
    const r = await probeGate(systemClock(), path, '/healthz', 400, 100);
    expect(r).toEqual({ ok: false, error: 'GET /healthz answered 503' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});
