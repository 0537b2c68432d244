import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordError, MemoryLogger } from '@coord/core';
import { createHookRunner, hookEnv, type Transition } from '../src/hooks.js';
import {
  parseCommand,
  runCommand,
  type CommandRunner,
  type RunOptions,
  type RunResult,
} from '../src/runner.js';

const node = process.execPath;

/** A tiny node program: append `tag` and the COORD_* environment as one JSON line to `file`. */
const RECORD = `
const [file, tag, delay] = process.argv.slice(1);
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('COORD_')));
setTimeout(() => require('node:fs').appendFileSync(file, JSON.stringify({ tag, env }) + '\\n'), Number(delay ?? 0));
`;
const record = (file: string, tag: string, delayMs = 0): string[] => [
  node,
  '-e',
  RECORD,
  file,
  tag,
  String(delayMs),
];

async function lines(file: string): Promise<{ tag: string; env: Record<string, string> }[]> {
  const text = await readFile(file, 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { tag: string; env: Record<string, string> });
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coord-hooks-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const t = (over: Partial<Transition> = {}): Transition => ({
  state: 'leader',
  previous: 'follower',
  group: 'web',
  vips: ['10.0.0.50/24', '2001:db8::50/64'],
  node: 'n1',
  epoch: 7,
  reason: 'elected',
  ...over,
});

describe('parseCommand', () => {
  it.each([
    ['/usr/bin/check --port 80', ['/usr/bin/check', '--port', '80']],
    ['  /bin/x\t a   b ', ['/bin/x', 'a', 'b']],
    [`/bin/x 'a b' "c d"`, ['/bin/x', 'a b', 'c d']],
    [`/bin/x 'it''s' pre"fix"post`, ['/bin/x', 'its', 'prefixpost']],
    [`/bin/x '$HOME | ; & > \` ~' ''`, ['/bin/x', '$HOME | ; & > ` ~', '']],
    [`/bin/x "say \\"hi\\" \\$5 \\\\ \\n"`, ['/bin/x', 'say "hi" $5 \\ \\n']],
    ['/bin/x a\\ b \\;', ['/bin/x', 'a b', ';']],
    ['/bin/x http://[::1]:80/* a=b', ['/bin/x', 'http://[::1]:80/*', 'a=b']],
    ['/bin/x a#b', ['/bin/x', 'a#b']],
  ])('%s', (text, argv) => {
    expect(parseCommand(text)).toEqual(argv);
  });

  it.each([
    '/bin/a | /bin/b',
    '/bin/a; /bin/b',
    '/bin/a && /bin/b',
    '/bin/a &',
    '/bin/a $HOME',
    '/bin/a `id`',
    '/bin/a "$(id)"',
    '/bin/a > /tmp/x',
    '/bin/a < /tmp/x',
    '/bin/a 2>&1',
    '(/bin/a)',
    '/bin/a\n/bin/b',
    '/bin/a # comment',
    '~/bin/check',
    'FOO=1 /bin/a',
    '/bin/a "open',
    "/bin/a 'open",
    '/bin/a \\',
    '',
    '   ',
    "'' a",
  ])('refuses %j', (text) => {
    let err: unknown;
    try {
      parseCommand(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CoordError);
    expect((err as CoordError).code).toBe('ERR_COORD_CONFIG');
    expect((err as CoordError).hint).toBeTruthy();
  });
});

describe('runCommand', () => {
  it('reports success and exit codes', async () => {
    expect(await runCommand(['/bin/true'], { timeoutMs: 5000 })).toMatchObject({
      ok: true,
      exitCode: 0,
      timedOut: false,
    });
    expect(await runCommand(['/bin/false'], { timeoutMs: 5000 })).toMatchObject({
      ok: false,
      exitCode: 1,
      timedOut: false,
    });
  });

  it('passes env on top of ours, and cwd', async () => {
    const out = join(dir, 'env.json');
    const script = `require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({ x: process.env.COORD_X, path: process.env.PATH, cwd: process.cwd() }))`;
    const r = await runCommand([node, '-e', script], {
      timeoutMs: 5000,
      env: { COORD_X: 'a b;$c' },
      cwd: dir,
    });
    expect(r.ok).toBe(true);
    const got = JSON.parse(await readFile(out, 'utf8')) as { x: string; path: string; cwd: string };
    expect(got.x).toBe('a b;$c');
    expect(got.path).toBe(process.env.PATH);
    expect(got.cwd).toBe(dir);
  });

  it('keeps only the tail of stderr', async () => {
    const r = await runCommand(
      [node, '-e', `process.stderr.write('x'.repeat(5000) + 'END\\n'); process.exit(3)`],
      {
        timeoutMs: 5000,
      },
    );
    expect(r).toMatchObject({ ok: false, exitCode: 3 });
    expect(r.stderrTail.length).toBeLessThanOrEqual(1024);
    expect(r.stderrTail.endsWith('xEND')).toBe(true);
  });

  it('kills a hung command after the timeout and counts it failed', async () => {
    const r = await runCommand(['/bin/sleep', '10'], { timeoutMs: 200 });
    expect(r).toMatchObject({ ok: false, timedOut: true, signal: 'SIGKILL' });
    expect(r.exitCode).toBeUndefined();
    expect(r.durationMs).toBeGreaterThanOrEqual(190);
    expect(r.durationMs).toBeLessThan(900);
  });

  it('kills what the command started too (its process group)', async () => {
    // The child keeps stderr open through a grandchild sleep: killing only the child would leave the pipe
    // open until the 1 s grace period gives up.
    const script = `require('node:child_process').spawn('/bin/sleep', ['10'], { stdio: 'inherit' }); setInterval(() => {}, 1000)`;
    const r = await runCommand([node, '-e', script], { timeoutMs: 300 });
    expect(r.timedOut).toBe(true);
    expect(r.durationMs).toBeLessThan(900);
  });

  it('reports a program that cannot start as a result', async () => {
    const r = await runCommand(['/nonexistent/check'], { timeoutMs: 1000 });
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBeUndefined();
    expect(r.stderrTail).toMatch(/cannot run \/nonexistent\/check/);
    expect(await runCommand([], { timeoutMs: 1000 })).toMatchObject({ ok: false });
  });
});

describe('hookEnv', () => {
  it('sets every COORD_ variable; a null epoch is empty', () => {
    expect(hookEnv(t({ epoch: null, previous: 'init' }), 3)).toEqual({
      COORD_STATE: 'leader',
      COORD_PREVIOUS_STATE: 'init',
      COORD_GROUP: 'web',
      COORD_VIPS: '10.0.0.50/24 2001:db8::50/64',
      COORD_NODE: 'n1',
      COORD_EPOCH: '',
      COORD_SEQ: '3',
      COORD_REASON: 'elected',
    });
  });
});

describe('createHookRunner with real processes', () => {
  // keepalived #1884: notify scripts were forked independently and could run (and finish) out of order, so a
  // slow "master" script could act after the "backup" one that followed it. Here a slow first hook must
  // still finish before the next transition's hooks start, and the environment says which is which.
  it('runs the state hook then `any`, transition after transition, strictly in order', async () => {
    const file = join(dir, 'order.jsonl');
    const hooks = createHookRunner({
      hooks: {
        leader: record(file, 'leader', 300),
        follower: record(file, 'follower'),
        any: record(file, 'any'),
      },
      timeoutMs: 5000,
      logger: new MemoryLogger(),
    });
    hooks.notify(t());
    hooks.notify(t({ state: 'follower', previous: 'leader', epoch: null, reason: 'lease lost' }));
    await hooks.drain();
    const got = await lines(file);
    expect(got.map((l) => `${l.tag}:${l.env.COORD_SEQ}`)).toEqual([
      'leader:1',
      'any:1',
      'follower:2',
      'any:2',
    ]);
    expect(got[0]?.env).toEqual({
      COORD_STATE: 'leader',
      COORD_PREVIOUS_STATE: 'follower',
      COORD_GROUP: 'web',
      COORD_VIPS: '10.0.0.50/24 2001:db8::50/64',
      COORD_NODE: 'n1',
      COORD_EPOCH: '7',
      COORD_SEQ: '1',
      COORD_REASON: 'elected',
    });
    expect(got[3]?.env).toMatchObject({
      COORD_STATE: 'follower',
      COORD_PREVIOUS_STATE: 'leader',
      COORD_EPOCH: '',
      COORD_REASON: 'lease lost',
    });
    expect(hooks.stats()).toMatchObject({ notified: 2, ran: 4, failed: 0, pending: 0, running: false });
  });

  it('kills a hung hook at the timeout, logs it, and still runs the next one', async () => {
    // The follow-up hook is a small C binary: a node one may itself take over 200 ms to start on a busy box.
    const file = join(dir, 'timeout.marker');
    const logger = new MemoryLogger();
    const hooks = createHookRunner({
      hooks: { fault: ['/bin/sleep', '10'], any: ['/usr/bin/touch', file] },
      timeoutMs: 200,
      logger,
    });
    const began = performance.now();
    hooks.notify(t({ state: 'fault', reason: 'check failed' }));
    await hooks.drain();
    expect(performance.now() - began).toBeLessThan(3000);
    expect(await readFile(file, 'utf8')).toBe('');
    expect(hooks.stats()).toMatchObject({ ran: 2, failed: 1, timedOut: 1 });
    const warn = logger.records.find((r) => r.message === 'hook timed out');
    expect(warn?.fields).toMatchObject({
      hook: 'fault',
      seq: 1,
      timedOut: true,
      signal: 'SIGKILL',
      command: '/bin/sleep',
    });
  });

  it('logs a failing hook with its exit code and stderr tail', async () => {
    const logger = new MemoryLogger();
    const hooks = createHookRunner({
      hooks: { stop: [node, '-e', `console.error('no route to VIP'); process.exit(4)`] },
      timeoutMs: 5000,
      logger,
    });
    hooks.notify(t({ state: 'stop', reason: 'shutdown' }));
    await hooks.drain();
    expect(logger.records.find((r) => r.message === 'hook failed')?.fields).toMatchObject({
      hook: 'stop',
      exitCode: 4,
      stderr: 'no route to VIP',
    });
    expect(hooks.stats()).toMatchObject({ failed: 1, timedOut: 0 });
  });
});

/** A runner the test completes by hand; it also records whether two runs ever overlapped. */
function manualRunner() {
  const calls: { argv: readonly string[]; env: Record<string, string>; done: (r: RunResult) => void }[] = [];
  let active = 0;
  let overlapped = false;
  const run: CommandRunner = (argv, options: RunOptions) => {
    active++;
    if (active > 1) overlapped = true;
    return new Promise<RunResult>((resolve) => {
      calls.push({
        argv,
        env: { ...options.env },
        done: (r) => {
          active--;
          resolve(r);
        },
      });
    });
  };
  const finish = async (ok = true): Promise<void> => {
    const c = calls.shift();
    if (c === undefined) throw new Error('nothing running');
    c.done({ ok, exitCode: ok ? 0 : 1, timedOut: false, durationMs: 1, stderrTail: '' });
    await new Promise((r) => setImmediate(r));
  };
  return {
    run,
    calls,
    finish,
    get overlapped() {
      return overlapped;
    },
  };
}

describe('createHookRunner queueing', () => {
  it('notify returns at once and hooks run one at a time in notify order', async () => {
    const m = manualRunner();
    const hooks = createHookRunner({
      hooks: { leader: ['/x/leader'], follower: ['/x/follower'], any: ['/x/any'] },
      timeoutMs: 1000,
      logger: new MemoryLogger(),
      run: m.run,
    });
    hooks.notify(t());
    hooks.notify(t({ state: 'follower' }));
    hooks.notify(t({ state: 'fault' })); // no fault hook: only `any`
    expect(m.calls).toHaveLength(0); // nothing spawned inside notify()
    expect(hooks.stats()).toMatchObject({ notified: 3, pending: 3, running: true });
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
      expect(m.calls).toHaveLength(1);
      const c = m.calls[0];
      seen.push(`${c?.argv[0] ?? ''}#${c?.env.COORD_SEQ ?? ''}`);
      await m.finish(i !== 1);
    }
    await hooks.drain();
    expect(seen).toEqual(['/x/leader#1', '/x/any#1', '/x/follower#2', '/x/any#2', '/x/any#3']);
    expect(m.overlapped).toBe(false);
    expect(hooks.stats()).toMatchObject({ ran: 5, failed: 1, pending: 0, running: false });
  });

  it('counts sequence numbers even for transitions with no hook', async () => {
    const m = manualRunner();
    const hooks = createHookRunner({
      hooks: { leader: ['/x/leader'] },
      timeoutMs: 1000,
      logger: new MemoryLogger(),
      run: m.run,
    });
    hooks.notify(t({ state: 'follower' }));
    hooks.notify(t());
    await new Promise((r) => setImmediate(r));
    expect(m.calls[0]?.env.COORD_SEQ).toBe('2');
    await m.finish();
    await hooks.drain();
    expect(hooks.stats()).toMatchObject({ notified: 2, ran: 1 });
  });

  it('bounds the queue: drops the oldest pending, counts every drop, logs once', async () => {
    const m = manualRunner();
    const logger = new MemoryLogger();
    const hooks = createHookRunner({
      hooks: { any: ['/x/any'] },
      timeoutMs: 1000,
      logger,
      run: m.run,
      maxPending: 3,
    });
    hooks.notify(t());
    await new Promise((r) => setImmediate(r)); // #1 is running, not pending
    for (let i = 0; i < 6; i++) hooks.notify(t()); // #2..#7: #2, #3, #4 dropped
    expect(hooks.stats()).toMatchObject({ dropped: 3, pending: 3 });
    expect(logger.records.filter((r) => r.message === 'hook queue full, dropping oldest')).toHaveLength(1);
    const seqs: string[] = [];
    while (m.calls.length > 0 || hooks.stats().pending > 0) {
      await new Promise((r) => setImmediate(r));
      seqs.push(m.calls[0]?.env.COORD_SEQ ?? '?');
      await m.finish();
    }
    await hooks.drain();
    expect(seqs).toEqual(['1', '5', '6', '7']);
  });

  it('survives a runner that throws', async () => {
    const logger = new MemoryLogger();
    let n = 0;
    const hooks = createHookRunner({
      hooks: { leader: ['/x/leader'], any: ['/x/any'] },
      timeoutMs: 1000,
      logger,
      run: () => {
        n++;
        return n === 1
          ? Promise.reject(new Error('spawn exploded'))
          : Promise.resolve({ ok: true, exitCode: 0, timedOut: false, durationMs: 1, stderrTail: '' });
      },
    });
    hooks.notify(t());
    await hooks.drain();
    expect(n).toBe(2);
    expect(hooks.stats()).toMatchObject({ ran: 2, failed: 1 });
    expect(logger.records.find((r) => r.message === 'hook failed')?.fields.stderr).toBe('spawn exploded');
  });
});
