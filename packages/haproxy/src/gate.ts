import { createConnection } from 'node:net';
import { sleep, type Clock } from '@coord/core';

/**
 * The gate of a rolling change: does this node's own new worker serve the service? Asked through the service's
 * gate socket (render.ts), which reaches this node's HAProxy whatever the service binds. `tcp` passes when the
 * frontend accepts a connection; a path passes when an HTTP request for it, forwarded to the backend like any
 * other, answers 2xx or 3xx — a config `haproxy -c` accepts but whose servers do not answer fails here.
 */

export type GateResult = { readonly ok: true } | { readonly ok: false; readonly error: string };

/** One attempt, bounded by `timeoutMs`. */
export function probeGateOnce(socket: string, check: string, timeoutMs: number): Promise<GateResult> {
  return new Promise((resolve) => {
    let answer = '';
    let settled = false;
    const conn = createConnection({ path: socket });
    const finish = (r: GateResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () => finish({ ok: false, error: `no answer within ${timeoutMs} ms` }),
      timeoutMs,
    );
    conn.on('error', (e) => finish({ ok: false, error: e.message }));
    conn.on('connect', () => {
      if (check === 'tcp') {
        finish({ ok: true });
        return;
      }
      conn.write(
        `GET ${check} HTTP/1.1\r\nHost: coord-gate\r\nUser-Agent: coord-gate\r\nConnection: close\r\n\r\n`,
      );
    });
    conn.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      const eol = answer.indexOf('\r\n');
      if (eol < 0 && answer.length < 1024) return;
      const line = answer.slice(0, eol < 0 ? 80 : eol);
      const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(line);
      if (m === null)
        finish({ ok: false, error: `not an HTTP answer: ${JSON.stringify(line.slice(0, 80))}` });
      else {
        const code = Number(m[1]);
        finish(
          code >= 200 && code < 400 ? { ok: true } : { ok: false, error: `GET ${check} answered ${code}` },
        );
      }
    });
    conn.on('end', () => finish({ ok: false, error: 'connection closed without an answer' }));
  });
}

/**
 * Ask until it passes or `withinMs` is over (a new worker's first answer can take a moment, e.g. while its health
 * checks start); the last failure is the reason.
 */
export async function probeGate(
  clock: Clock,
  socket: string,
  check: string,
  withinMs: number,
  everyMs = 100,
): Promise<GateResult> {
  const deadline = clock.now() + withinMs;
  for (;;) {
    const left = deadline - clock.now();
    const r = await probeGateOnce(socket, check, Math.max(50, Math.min(2000, left)));
    if (r.ok || clock.now() + everyMs >= deadline) return r;
    await sleep(clock, everyMs);
  }
}
