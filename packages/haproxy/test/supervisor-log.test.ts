/**
 * HAProxy's output goes to a file under runDir (/run: RAM) for as long as the master lives, reload after reload:
 * it must not grow without end. Past its cap it is emptied before the next start or reload, whose output is then
 * read from the start of the file.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { logStart } from '../src/supervisor.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function logFile(bytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'coord-haproxy-log-'));
  dirs.push(dir);
  const path = join(dir, 'haproxy.log');
  writeFileSync(path, 'x'.repeat(bytes));
  return path;
}

describe('logStart', () => {
  it('a log under the cap is kept; output is read from its end', async () => {
    const path = logFile(1000);
    expect(await logStart(path, 4096)).toBe(1000);
    expect(statSync(path).size).toBe(1000);
  });

  it('a log over the cap is emptied; output is read from 0', async () => {
    const path = logFile(5000);
    expect(await logStart(path, 4096)).toBe(0);
    expect(statSync(path).size).toBe(0);
  });

  it('no log yet: 0, and nothing is created', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coord-haproxy-log-'));
    dirs.push(dir);
    expect(await logStart(join(dir, 'haproxy.log'))).toBe(0);
  });
});
