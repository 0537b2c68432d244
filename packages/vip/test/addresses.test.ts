/**
 * The address watcher's echo filter with the addon's two calls faked: which descriptor it picks, and what it
 * does when it cannot filter. test/vip.test.ts checks the real filter against a kernel.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '@coord/core';
import { ignoreEchoes, watchAddresses, type EchoFilter } from '../src/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A directory standing in for /proc/self/fd, with these entries. */
function fdDir(names: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'coord-fds-'));
  dirs.push(dir);
  for (const n of names) writeFileSync(join(dir, n), '');
  return dir;
}

/** Descriptor → netlink port, as the fake addon answers; the calls to attach a filter are recorded. */
function fakeFilter(ports: Record<number, number>, errno = 0) {
  const attached: [number, number][] = [];
  const filter: EchoFilter = {
    nlPort: (fd) => ports[fd] ?? -1,
    nlIgnoreEchoes: (fd, port) => {
      attached.push([fd, port]);
      return errno;
    },
  };
  return { filter, attached };
}

describe('ignoreEchoes', () => {
  it("attaches the filter to the descriptor bound to the watcher's port, for the writer's port", () => {
    const { filter, attached } = fakeFilter({ 3: 12345, 7: 777, 9: 4242 });
    expect(ignoreEchoes(filter, 777, 4242, fdDir(['0', '3', '7', '9', 'not-a-number']))).toBeNull();
    expect(attached).toEqual([[7, 4242]]);
  });

  it('says why when no descriptor is bound to the port, or the kernel refuses the filter', () => {
    const none = fakeFilter({ 3: 12345 });
    expect(ignoreEchoes(none.filter, 777, 4242, fdDir(['3']))).toBe(
      'no descriptor bound to netlink port 777',
    );
    expect(none.attached).toEqual([]);
    const refused = fakeFilter({ 7: 777 }, 22);
    expect(ignoreEchoes(refused.filter, 777, 4242, fdDir(['7']))).toBe(
      'setsockopt(SO_ATTACH_FILTER) failed: errno 22',
    );
    expect(ignoreEchoes(refused.filter, 777, 4242, '/nonexistent/fd')).toMatch(
      /^cannot list \/nonexistent\/fd: /,
    );
  });
});

describe('watchAddresses', () => {
  it('watches unfiltered, and says so at info, when it cannot filter', () => {
    const lines: { msg: string; fields: Record<string, unknown> }[] = [];
    const at = (msg: string, fields: Record<string, unknown> = {}) => void lines.push({ msg, fields });
    const logger: Logger = { debug: at, info: at, warn: at, error: at, child: () => logger };
    const w = watchAddresses(() => {}, { ignoreEchoesOf: 4242, echoFilter: null, logger });
    w.close();
    expect(lines).toContainEqual({
      msg: 'own address notifications are read and ignored',
      fields: { reason: 'the packet addon did not load' },
    });
  });
});
