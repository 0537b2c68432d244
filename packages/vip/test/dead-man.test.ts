import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCidr, type Vip } from '@coord/core';
import { DEAD_MAN_SCRIPT, withDeadManSwitch, type DeadManSpawn, type VipPort } from '../src/index.js';

const cidr = (s: string): Vip => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.reason);
  return r.vip;
};

/** A port whose calls succeed (or fail, for remove, when told to) and touch nothing. */
function fakePort(opts: { removeFails?: boolean } = {}): VipPort {
  return {
    list: () => Promise.resolve([]),
    add: () => Promise.resolve('added'),
    refresh: () => Promise.resolve('refreshed'),
    remove: () => (opts.removeFails ? Promise.reject(new Error('EPERM')) : Promise.resolve('removed')),
    close: () => {},
  };
}

/** Capture what the wrapper tells the helper, line by line. */
function capture(): { spawn: DeadManSpawn; lines: string[] } {
  const lines: string[] = [];
  const stdin = new PassThrough();
  let text = '';
  stdin.on('data', (b: Buffer) => {
    text += b.toString();
    const parts = text.split('\n');
    text = parts.pop() ?? '';
    lines.push(...parts); // an empty line is a message too: "nothing held"
  });
  return { spawn: () => ({ stdin, pid: 1 }), lines };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('dead-man switch: what coord tells the helper', () => {
  it("passes the port's echo port through (the address watcher filters by it)", () => {
    const c = capture();
    expect(withDeadManSwitch({ ...fakePort(), echoPort: () => 4242 }, { spawn: c.spawn }).echoPort?.()).toBe(
      4242,
    );
    expect(withDeadManSwitch(fakePort(), { spawn: c.spawn }).echoPort?.()).toBeNull();
  });

  it('lists an address before the add reaches the port, and drops it only after a removal', async () => {
    const c = capture();
    const order: string[] = [];
    const inner = fakePort();
    const port = withDeadManSwitch(
      {
        ...inner,
        add: (i, v, l) => {
          order.push(`add saw ${c.lines.length} line(s)`);
          return inner.add(i, v, l);
        },
      },
      { spawn: c.spawn },
    );
    await port.add('eth0', cidr('10.0.0.5/24'));
    await flush();
    expect(order).toEqual(['add saw 1 line(s)']); // the helper had the address before the port was asked
    expect(c.lines).toEqual(['eth0 10.0.0.5/24']);
    await port.add('eth0', cidr('2001:db8::5/128'));
    await port.refresh('eth0', cidr('10.0.0.5/24'), { validSec: 1, preferredSec: 1 }); // known: no new line
    await flush();
    expect(c.lines).toEqual(['eth0 10.0.0.5/24', 'eth0 10.0.0.5/24 eth0 2001:db8::5/128']);
    await port.remove('eth0', cidr('10.0.0.5/24'));
    await flush();
    expect(c.lines.at(-1)).toBe('eth0 2001:db8::5/128');
  });

  it('keeps an address whose removal failed, so the helper still removes it if coord dies', async () => {
    const c = capture();
    const port = withDeadManSwitch(fakePort({ removeFails: true }), { spawn: c.spawn });
    await port.add('eth0', cidr('10.0.0.5/32'));
    await expect(port.remove('eth0', cidr('10.0.0.5/32'))).rejects.toThrow('EPERM');
    await flush();
    expect(c.lines).toEqual(['eth0 10.0.0.5/32']);
  });

  it('a refresh of an address that went (the kernel re-creates it) lists it again', async () => {
    const c = capture();
    const port = withDeadManSwitch(fakePort(), { spawn: c.spawn });
    await port.add('eth0', cidr('10.0.0.5/32'));
    await port.remove('eth0', cidr('10.0.0.5/32'));
    await port.refresh('eth0', cidr('10.0.0.5/32'), { validSec: 1, preferredSec: 1 });
    await flush();
    expect(c.lines).toEqual(['eth0 10.0.0.5/32', '', 'eth0 10.0.0.5/32']);
  });

  it('works as a plain port when the helper cannot start', async () => {
    const port = withDeadManSwitch(fakePort(), {
      spawn: () => {
        throw new Error('ENOENT /bin/sh');
      },
    });
    await expect(port.add('eth0', cidr('10.0.0.5/32'))).resolves.toBe('added');
    await expect(port.remove('eth0', cidr('10.0.0.5/32'))).resolves.toBe('removed');
  });
});

describe('dead-man switch: the helper script', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /** Run the real script with a fake `ip` on PATH that records its arguments; feed `input`, then close stdin. */
  async function runScript(input: string, signalFirst?: NodeJS.Signals): Promise<string[]> {
    dir = await mkdtemp(join(tmpdir(), 'coord-dead-man-'));
    const record = join(dir, 'calls');
    await writeFile(join(dir, 'ip'), `#!/bin/sh\necho "$*" >> '${record}'\n`);
    await chmod(join(dir, 'ip'), 0o755);
    await writeFile(record, '');
    const child = spawn('/bin/sh', ['-c', DEAD_MAN_SCRIPT, 'coord-dead-man'], {
      stdio: ['pipe', 'ignore', 'inherit'],
      env: { PATH: `${dir}:/usr/bin:/bin` },
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    child.stdin.write(input);
    if (signalFirst !== undefined) {
      await new Promise((r) => setTimeout(r, 100));
      child.kill(signalFirst);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.stdin.end();
    expect(await exited).toBe(0);
    return (await readFile(record, 'utf8')).split('\n').filter((l) => l !== '');
  }

  it('at EOF removes every address of the last line, and only those', async () => {
    const calls = await runScript('eth0 10.0.0.5/24\neth0 10.0.0.5/24 eth1 2001:db8::5/128\n');
    expect(calls).toEqual(['addr del 10.0.0.5/24 dev eth0', 'addr del 2001:db8::5/128 dev eth1']);
  });

  it('removes nothing when the last line is empty (everything was released)', async () => {
    expect(await runScript('eth0 10.0.0.5/24\n\n')).toEqual([]);
  });

  it('outlives SIGTERM and SIGINT (coord decides what a stop means) and still acts at EOF', async () => {
    expect(await runScript('eth0 10.0.0.5/32\n', 'SIGTERM')).toEqual(['addr del 10.0.0.5/32 dev eth0']);
    expect(await runScript('eth0 10.0.0.6/32\n', 'SIGINT')).toEqual(['addr del 10.0.0.6/32 dev eth0']);
  });

  it('expands nothing: a glob in a line stays a literal argument', async () => {
    expect(await runScript('eth* 10.0.0.5/32\n')).toEqual(['addr del 10.0.0.5/32 dev eth*']);
  });
});
