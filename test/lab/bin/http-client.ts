/**
 * HTTP clients run inside the lab's client namespace (`node --import tsx http-client.ts`), for `pnpm bench:reload`
 * and the HAProxy lab tests.
 *
 *   load URL CONCURRENCY keepalive|close
 *     CONCURRENCY workers request URL back to back until SIGTERM. Prints {"firstOk": t} after the first good
 *     answer, then at the end one JSON line: ok, failed, errors by kind, bodies, the first failures with their
 *     time, and the longest time without a good answer (`longestGapMs`, counted from the start and to the end).
 *     `keepalive` reuses connections (one agent, one socket per worker); `close` opens a new connection per
 *     request (no agent, `Connection: close`).
 *
 *   poll INTERVAL_MS NAME=URL...
 *     One keep-alive client per target, a request every INTERVAL_MS; prints a JSON line {t, name, body} whenever a
 *     target's answer changes (and {t, name, error} on a failure), until SIGTERM.
 *
 * Every request that does not end in a 200 counts as failed: a reset, a timeout, a 5xx.
 */
import { Agent, request, type RequestOptions } from 'node:http';

const [cmd = '', ...rest] = process.argv.slice(2);
const TIMEOUT_MS = 5000;
let stop = false;
process.on('SIGTERM', () => {
  stop = true;
});

interface Outcome {
  ok: boolean;
  status?: number | undefined;
  body?: string | undefined;
  error?: string | undefined;
}

function get(url: string, opts: RequestOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome): void => {
      if (done) return;
      done = true;
      resolve(o);
    };
    const req = request(url, { ...opts, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () =>
        finish(
          res.statusCode === 200
            ? { ok: true, status: 200, body }
            : { ok: false, status: res.statusCode, body, error: `status ${String(res.statusCode)}` },
        ),
      );
      res.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, error: e.code ?? e.message }));
      res.on('aborted', () => finish({ ok: false, error: 'response aborted' }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, error: e.code ?? e.message }));
    req.end();
  });
}

async function load(url: string, concurrency: number, mode: string): Promise<void> {
  const agent = mode === 'keepalive' ? new Agent({ keepAlive: true, maxSockets: concurrency }) : undefined;
  const opts: RequestOptions =
    agent === undefined ? { agent: false, headers: { connection: 'close' } } : { agent };
  let ok = 0;
  let failed = 0;
  const errors: Record<string, number> = {};
  const bodies: Record<string, number> = {};
  const failures: { t: number; error: string }[] = [];
  const t0 = Date.now();
  let lastOk = t0;
  let longestGapMs = 0;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const o = await get(url, opts);
      if (o.body !== undefined) bodies[o.body] = (bodies[o.body] ?? 0) + 1;
      if (o.ok) {
        const t = Date.now();
        if (ok === 0) process.stdout.write(`${JSON.stringify({ firstOk: t })}\n`);
        ok++;
        longestGapMs = Math.max(longestGapMs, t - lastOk);
        lastOk = t;
      } else {
        failed++;
        const why = o.error ?? 'unknown';
        errors[why] = (errors[why] ?? 0) + 1;
        if (failures.length < 200) failures.push({ t: Date.now(), error: why });
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  agent?.destroy();
  const t1 = Date.now();
  longestGapMs = Math.max(longestGapMs, t1 - lastOk);
  const result = {
    mode,
    concurrency,
    ok,
    failed,
    errors,
    bodies,
    failures,
    longestGapMs,
    start: t0,
    end: t1,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function poll(intervalMs: number, targets: { name: string; url: string }[]): Promise<void> {
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const one = async ({ name, url }: { name: string; url: string }): Promise<void> => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    let last: string | undefined;
    while (!stop) {
      const started = Date.now();
      const o = await get(url, { agent });
      const t = Date.now();
      const seen = o.ok ? (o.body ?? '') : `ERR ${o.error ?? ''}`;
      if (seen !== last) {
        process.stdout.write(
          `${JSON.stringify(o.ok ? { t, sent: started, name, body: seen } : { t, sent: started, name, error: o.error })}\n`,
        );
        last = seen;
      }
      const wait = intervalMs - (Date.now() - started);
      if (wait > 0) await sleep(wait);
    }
    agent.destroy();
  };
  await Promise.all(targets.map(one));
}

if (cmd === 'load') {
  const [url = '', conc = '8', mode = 'keepalive'] = rest;
  await load(url, Number(conc), mode);
} else if (cmd === 'poll') {
  const [interval = '10', ...specs] = rest;
  const targets = specs.map((s) => {
    const i = s.indexOf('=');
    return { name: s.slice(0, i), url: s.slice(i + 1) };
  });
  await poll(Number(interval), targets);
} else {
  process.stderr.write('usage: http-client.ts load URL CONCURRENCY keepalive|close | poll MS NAME=URL...\n');
  process.exit(2);
}
