/**
 * The soak's pure half, part 3: coord's own account of a round, read from its JSON log lines with the transition
 * reasons as codes. It explains a violation; nothing here feeds a verdict.
 */
import { describe, expect, it } from 'vitest';
import { jsonLines } from '../lab/analysis.js';
import { formatStory, REASON_TEXT, storyOf, tell } from './explain.js';

const at = (ms: number) => new Date(Date.UTC(2026, 10, 28, 6, 20, 38) + ms).toISOString();
const T0 = Date.parse(at(0));

const h2 = [
  { level: 'info', message: 'node started', timestamp: at(-5000) },
  { level: 'debug', message: 'keepalive acked', timestamp: at(900) },
  {
    level: 'info',
    message: 'transition',
    from: 'campaigning',
    to: 'leader',
    reason: 'elected-guarded',
    detail: 'guard 125 ms, then a quiet wire (at most 2125 ms)',
    epoch: 83,
    timestamp: at(926),
  },
  {
    level: 'info',
    message: 'vip still answered on the wire; waiting',
    mac: '02:c0:0a:c8:00:0b',
    timestamp: at(930),
  },
  { level: 'info', message: 'vip claimed', epoch: 83, timestamp: at(1766) },
];
const h1 = [{ level: 'info', message: 'vip released', reason: 'fenced', timestamp: at(300) }];

describe('a round as coord told it', () => {
  it('tells transitions by their reason code, with what the code means', () => {
    expect(tell(h2[2] as Record<string, unknown>)).toBe(
      'campaigning → leader: elected-guarded (won after an unclean vacancy: the takeover guard, then a quiet wire)' +
        '; guard 125 ms, then a quiet wire (at most 2125 ms), epoch 83',
    );
    expect(
      tell({ message: 'transition', from: 'leader', to: 'follower', reason: 'fenced', epoch: null }),
    ).toBe('leader → follower: fenced (its own deadline passed, or netlink answered too late)');
    // A code this table does not know is still told, without a gloss.
    expect(tell({ message: 'transition', from: 'a', to: 'b', reason: 'new-code' })).toBe('a → b: new-code');
  });

  it('tells the VIP, the wire and every warning; skips chatter', () => {
    expect(tell(h1[0] as Record<string, unknown>)).toBe('vip released (reason fenced)');
    expect(tell(h2[3] as Record<string, unknown>)).toBe(
      'vip still answered on the wire; waiting (mac 02:c0:0a:c8:00:0b)',
    );
    expect(tell({ level: 'warn', message: 'vip missing on holder; restoring', epoch: 75 })).toBe(
      'warn: vip missing on holder; restoring (epoch 75)',
    );
    expect(tell(h2[1] as Record<string, unknown>)).toBeUndefined();
  });

  it('merges the nodes in time order within the window, relative to the round’s origin', () => {
    const w = { from: T0 - 1000, to: T0 + 2000 };
    const lines = formatStory([storyOf('h2', h2, w), storyOf('h1', h1, w)], T0);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\s+\+300 ms {2}h1 {2}vip released \(reason fenced\)$/);
    expect(lines[1]).toMatch(/\+926 ms {2}h2 {2}campaigning → leader: elected-guarded/);
    expect(lines[3]).toMatch(/\+1766 ms {2}h2 {2}vip claimed \(epoch 83\)$/);
  });

  it('explains every code of the closed union', () => {
    expect(Object.keys(REASON_TEXT).sort()).toEqual(
      [
        'fenced',
        'session-lost',
        'elected',
        'elected-guarded',
        'adopted',
        'handed-over',
        'maintenance',
        'lost-race',
        'preempted',
        'fault',
        'sync-group',
        'vrrp-master',
        'slow-acks',
        'stopping',
        'leader-vanished',
        'leader-taken',
        'session-replaced',
        'vacant-best',
        'vacant-too-long',
      ].sort(),
    );
  });

  it('reads JSON lines and skips the rest', () => {
    expect(jsonLines('starting\n{"message":"a"}\n{"message":"b"\n')).toEqual([{ message: 'a' }]);
  });
});
