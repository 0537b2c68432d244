import { describe, expect, it } from 'vitest';
import { judgeReload, parseShowProc, type ShowProc } from '../src/index.js';
import { summarizeHaproxyOutput } from '../src/index.js';

// Captured from HAProxy 2.6.12's master CLI on this machine (after one good and one failed reload).
const captured = `#<PID>          <type>          <reloads>       <uptime>        <version>
5170            master          2 [failed: 1]   0d00h10m17s     2.6.12-1+deb12u4
# workers
16341           worker          1               0d00h00m06s     2.6.12-1+deb12u4
# programs

`;

function proc(master: [number, number, number], workers: [number, number][]): ShowProc {
  return {
    master: { pid: master[0], reloads: master[1], failedReloads: master[2] },
    workers: workers.map(([pid, reloads]) => ({ pid, reloads })),
  };
}

describe('parseShowProc', () => {
  it('reads the master and workers of a captured answer', () => {
    expect(parseShowProc(captured)).toEqual({ ok: true, proc: proc([5170, 2, 1], [[16341, 1]]) });
  });

  it.each([
    '',
    'Unknown command.\n',
    '#<PID> <type>\n# workers\n',
    '\u0000\u0001',
    'abc master 1 [failed: 0]',
  ])('returns a reason instead of throwing for %j', (text) => {
    const r = parseShowProc(text);
    expect(r.ok).toBe(false);
  });
});

describe('judgeReload', () => {
  const before = proc([100, 3, 0], [[200, 0]]);
  it('is pending until the master counted the reload', () => {
    expect(judgeReload(before, before)).toBe('pending');
  });
  it('succeeds when a new current worker exists', () => {
    expect(
      judgeReload(
        before,
        proc(
          [100, 4, 0],
          [
            [201, 0],
            [200, 1],
          ],
        ),
      ),
    ).toBe('succeeded');
  });
  it('fails when the failed counter rose and only old workers remain', () => {
    expect(judgeReload(before, proc([100, 4, 1], [[200, 1]]))).toBe('failed');
  });
  it('fails when the master itself changed (it died and something else answers)', () => {
    expect(judgeReload(before, proc([101, 0, 0], [[300, 0]]))).toBe('failed');
  });
  it('does not mistake the old worker for a new one', () => {
    expect(judgeReload(before, proc([100, 4, 0], [[200, 0]]))).toBe('pending');
  });
});

describe('summarizeHaproxyOutput', () => {
  it('keeps the ALERT lines and drops NOTICE chatter', () => {
    const text = `[NOTICE]   (1) : haproxy version is 2.6.12\n[ALERT]    (1) : config : parsing [x.cfg:3] : unknown keyword 'bogus'\n[ALERT]    (1) : config : Fatal errors found in configuration.\n`;
    expect(summarizeHaproxyOutput(text)).toBe(
      "[ALERT]    (1) : config : parsing [x.cfg:3] : unknown keyword 'bogus'\n[ALERT]    (1) : config : Fatal errors found in configuration.",
    );
  });
});
