/**
 * Keep-alive HTTP load for the HAProxy lab (run inside the lab namespace with `ip netns exec`). It counts every
 * request that did not end in a 200 with the expected body: a reset, a timeout, a 5xx. It runs until its stdin
 * closes (or `--count` requests finished), then prints one JSON line.
 *
 *   node --import tsx http-load.ts URL CONCURRENCY [--count N]
 */
import { Agent, request } from 'node:http';

const [url = '', concurrencyText = '1', flag, countText] = process.argv.slice(2);
const concurrency = Number(concurrencyText);
const limit = flag === '--count' ? Number(countText) : Infinity;
const agent = new Agent({ keepAlive: true, maxSockets: concurrency });

let ok = 0;
let failed = 0;
let started = 0;
let stop = false;
const errors: Record<string, number> = {};
const bodies: Record<string, number> = {};

function once(): Promise<void> {
  return new Promise((resolve) => {
    const fail = (why: string): void => {
      failed++;
      errors[why] = (errors[why] ?? 0) + 1;
      resolve();
    };
    const req = request(url, { agent, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        bodies[body] = (bodies[body] ?? 0) + 1;
        if (res.statusCode === 200) ok++;
        else fail(`status ${String(res.statusCode)}`);
        resolve();
      });
      res.on('error', (e) => fail(e.message));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => fail((e as NodeJS.ErrnoException).code ?? e.message));
    req.end();
  });
}

async function worker(): Promise<void> {
  while (!stop && started < limit) {
    started++;
    await once();
  }
}

if (limit === Infinity) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => {
    stop = true;
  });
}

await Promise.all(Array.from({ length: concurrency }, () => worker()));
agent.destroy();
process.stdout.write(`${JSON.stringify({ ok, failed, errors, bodies })}\n`);
