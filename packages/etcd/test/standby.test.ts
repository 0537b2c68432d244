import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { STANDBY_RETRY_MS, StandbyStreams, type IdleStream } from '../src/standby.js';

/** A fake member side: each open call is recorded and settled by the test. */
function members() {
  const opens: {
    member: number;
    onEnd: () => void;
    resolve: (s: IdleStream) => void;
    reject: (e: Error) => void;
    closed: boolean;
  }[] = [];
  const open = (member: number, onEnd: () => void) =>
    new Promise<IdleStream>((resolve, reject) => {
      const entry = {
        member,
        onEnd,
        closed: false,
        resolve: (s: IdleStream) => resolve(s),
        reject,
      };
      opens.push(entry);
    });
  const stream = (i: number): IdleStream => ({
    close: () => {
      (opens[i] as { closed: boolean }).closed = true;
    },
  });
  return { opens, open, stream };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('StandbyStreams', () => {
  it('opens one idle stream per member and reports which are open', async () => {
    const m = members();
    const s = new StandbyStreams(3, m.open);
    s.start();
    expect(m.opens.map((o) => o.member)).toEqual([0, 1, 2]);
    expect(s.openMembers).toEqual([]);
    m.opens[0]?.resolve(m.stream(0));
    m.opens[2]?.resolve(m.stream(2));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.openMembers).toEqual([0, 2]);
  });

  it('a stream that ends is opened again after the retry delay, and is not counted meanwhile', async () => {
    const m = members();
    const s = new StandbyStreams(2, m.open);
    s.start();
    m.opens[0]?.resolve(m.stream(0));
    m.opens[1]?.resolve(m.stream(1));
    await vi.advanceTimersByTimeAsync(0);
    m.opens[1]?.onEnd();
    m.opens[1]?.onEnd(); // a stream reports its end once, whatever it emits
    expect(s.openMembers).toEqual([0]);
    await vi.advanceTimersByTimeAsync(STANDBY_RETRY_MS - 1);
    expect(m.opens).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(m.opens.map((o) => o.member)).toEqual([0, 1, 1]);
    m.opens[2]?.resolve(m.stream(2));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.openMembers).toEqual([0, 1]);
  });

  it('a member that cannot be reached is tried again every retry delay', async () => {
    const m = members();
    const s = new StandbyStreams(1, m.open);
    s.start();
    m.opens[0]?.reject(new Error('14 UNAVAILABLE'));
    await vi.advanceTimersByTimeAsync(STANDBY_RETRY_MS);
    m.opens[1]?.reject(new Error('14 UNAVAILABLE'));
    await vi.advanceTimersByTimeAsync(STANDBY_RETRY_MS);
    expect(m.opens).toHaveLength(3);
    expect(s.openMembers).toEqual([]);
  });

  it('a stream that ends before its open settles is not counted, and is tried again', async () => {
    const m = members();
    const s = new StandbyStreams(1, m.open);
    s.start();
    m.opens[0]?.onEnd();
    m.opens[0]?.resolve(m.stream(0));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.openMembers).toEqual([]);
    await vi.advanceTimersByTimeAsync(STANDBY_RETRY_MS);
    expect(m.opens).toHaveLength(2);
  });

  it('reopen ends every open stream and opens each again at once (new clients after a TLS rotation)', async () => {
    const m = members();
    const s = new StandbyStreams(2, m.open);
    s.start();
    m.opens[0]?.resolve(m.stream(0));
    await vi.advanceTimersByTimeAsync(0);
    s.reopen();
    expect(m.opens[0]?.closed).toBe(true);
    expect(m.opens.map((o) => o.member)).toEqual([0, 1, 0]);
    m.opens[0]?.onEnd(); // the old stream's own end schedules nothing
    m.opens[2]?.resolve(m.stream(2));
    await vi.advanceTimersByTimeAsync(STANDBY_RETRY_MS);
    expect(m.opens).toHaveLength(3);
    expect(s.openMembers).toEqual([0]);
  });

  it('close ends every open stream, one still opening as it opens, and stops the retries', async () => {
    const m = members();
    const s = new StandbyStreams(3, m.open);
    s.start();
    m.opens[0]?.resolve(m.stream(0));
    m.opens[1]?.reject(new Error('refused'));
    await vi.advanceTimersByTimeAsync(0);
    s.close();
    expect(m.opens[0]?.closed).toBe(true);
    expect(s.openMembers).toEqual([]);
    m.opens[2]?.resolve(m.stream(2));
    await vi.advanceTimersByTimeAsync(0);
    expect(m.opens[2]?.closed).toBe(true);
    expect(s.openMembers).toEqual([]);
    await vi.advanceTimersByTimeAsync(10 * STANDBY_RETRY_MS);
    expect(m.opens).toHaveLength(3);
  });
});
