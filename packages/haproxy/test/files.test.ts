import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCoordError } from '@coord/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  checkNonlocalBind,
  installConfig,
  lastGoodPath,
  markGood,
  render,
  restoreLastGood,
  validateConfig,
} from '../src/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coord-haproxy-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('validateConfig', () => {
  it('accepts a rendered config and leaves no staged file behind', async () => {
    const text = render({ services: [], globals: { statsSocket: join(dir, 's.sock') } });
    expect(await validateConfig(text, { haproxyBin: 'haproxy', stageDir: dir })).toEqual({ ok: true });
    expect((await import('node:fs')).readdirSync(dir)).toEqual([]);
  });

  it('returns HAProxy’s own reason for a bad config', async () => {
    const r = await validateConfig('global\n  bogus-keyword 1\n', { haproxyBin: 'haproxy', stageDir: dir });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/bogus-keyword/);
  });

  it('reports a missing binary as a result', async () => {
    const r = await validateConfig('global\n', { haproxyBin: join(dir, 'no-such-haproxy'), stageDir: dir });
    expect(r.ok).toBe(false);
  });
});

describe('installConfig', () => {
  it('rolls back to the config marked good, not to whatever file was on disk before', async () => {
    const path = join(dir, 'sub', 'haproxy.cfg');
    await installConfig(path, 'one\n');
    await markGood(path, 'one\n'); // HAProxy confirmed it
    await installConfig(path, 'two\n'); // never confirmed (a failed reload, or coord died before confirming)
    await installConfig(path, 'three\n');
    expect(await readFile(path, 'utf8')).toBe('three\n');
    expect(await readFile(lastGoodPath(path), 'utf8')).toBe('one\n');
    expect(await restoreLastGood(path)).toBe('one\n');
    expect(await readFile(path, 'utf8')).toBe('one\n');
  });

  it('restoreLastGood without a last-good file changes nothing', async () => {
    const path = join(dir, 'haproxy.cfg');
    await writeFile(path, 'only\n');
    expect(await restoreLastGood(path)).toBeUndefined();
    expect(await readFile(path, 'utf8')).toBe('only\n');
  });
});

describe('checkNonlocalBind', () => {
  it('ignore and require read the value; require refuses 0 with a hint', async () => {
    const path = join(dir, 'ip_nonlocal_bind');
    await writeFile(path, '0\n');
    expect(await checkNonlocalBind({ mode: 'ignore', path })).toEqual({ enabled: false, changed: false });
    const err: unknown = await checkNonlocalBind({ mode: 'require', path }).catch((e: unknown) => e);
    expect(isCoordError(err) && err.code === 'ERR_COORD_CONFIG' && err.hint).toMatch(/ip_nonlocal_bind=1/);
  });

  it('set writes 1 once', async () => {
    const path = join(dir, 'ip_nonlocal_bind');
    await writeFile(path, '0\n');
    expect(await checkNonlocalBind({ mode: 'set', path })).toEqual({ enabled: true, changed: true });
    expect(await readFile(path, 'utf8')).toBe('1\n');
    expect(await checkNonlocalBind({ mode: 'set', path })).toEqual({ enabled: true, changed: false });
  });

  it('set on an unwritable file is a permission error with a hint', async () => {
    // A directory cannot be written as a file, even by root.
    const path = join(dir, 'ro');
    await (await import('node:fs/promises')).mkdir(path);
    await chmod(path, 0o500);
    const err: unknown = await checkNonlocalBind({ mode: 'set', path }).catch((e: unknown) => e);
    expect(isCoordError(err) && err.code).toBe('ERR_COORD_PERMISSION');
  });
});
