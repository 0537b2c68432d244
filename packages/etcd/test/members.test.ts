import { describe, expect, it } from 'vitest';
import { MEMBER_FAILED_MS, MemberChoice, type MemberSwitch } from '../src/members.js';

const EPS = ['http://e1:2379', 'http://e2:2379', 'http://e3:2379'];

function choice(first = 0) {
  let now = 1000;
  const switches: MemberSwitch[] = [];
  const c = new MemberChoice(EPS, { now: () => now, first, onSwitch: (s) => switches.push(s) });
  return { c, switches, advance: (ms: number) => (now += ms) };
}

describe('MemberChoice', () => {
  it('stays on one member until it fails, then moves to the next and says why', () => {
    const { c, switches } = choice(1);
    expect(c.current).toBe(1);
    expect(c.leave(1, 'lease grant: 14 UNAVAILABLE')).toBe(true);
    expect(c.current).toBe(2);
    expect(switches).toEqual([{ from: EPS[1], to: EPS[2], reason: 'lease grant: 14 UNAVAILABLE' }]);
  });

  it('a failure of a member no longer in use moves nothing (a late error from the one just left)', () => {
    const { c, switches } = choice(0);
    c.leave(0, 'keepalive broke');
    expect(c.leave(0, 'watch disconnected')).toBe(false);
    expect(c.current).toBe(1);
    expect(switches).toHaveLength(1);
  });

  it('passes over a member that failed recently, and takes it again once that is long enough ago', () => {
    const { c, advance } = choice(0);
    c.leave(0, 'a');
    expect(c.current).toBe(1);
    c.leave(1, 'b');
    // 0 failed a moment ago: 2 is next.
    expect(c.current).toBe(2);
    c.leave(2, 'c');
    // Every member failed just now: simply the next one.
    expect(c.current).toBe(0);
    advance(MEMBER_FAILED_MS);
    c.leave(0, 'd');
    expect(c.current).toBe(1);
  });

  it('one member: nowhere to go', () => {
    const c = new MemberChoice([EPS[0] as string], { now: () => 0 });
    expect(c.leave(0, 'x')).toBe(false);
    expect(c.current).toBe(0);
  });

  it('moves what is bound to the member it leaves, once; released bindings stay put', () => {
    const { c } = choice(0);
    const moved: string[] = [];
    c.bind({ member: 0, move: () => moved.push('w1') });
    const released = c.bind({ member: 0, move: () => moved.push('w2') });
    c.bind({ member: 1, move: () => moved.push('w3') });
    released.release();
    c.leave(0, 'fenced');
    expect(moved).toEqual(['w1']);
    // w1 is gone from the bindings: leaving again moves only what is bound to the member left.
    c.leave(1, 'again');
    expect(moved).toEqual(['w1', 'w3']);
  });

  it('a binding to a member already left moves when its stream breaks later', () => {
    const { c } = choice(0);
    const moved: number[] = [];
    c.leave(0, 'grant failed');
    const late = c.bind({ member: 0, move: () => moved.push(0) });
    const here = c.bind({ member: 1, move: () => moved.push(1) });
    here.moveIfStale();
    late.moveIfStale();
    late.moveIfStale();
    expect(moved).toEqual([0]);
  });
});
