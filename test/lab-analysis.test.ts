/** The pure half of the lab: address plan, line parsers and timeline analysis, table-driven. */
import { describe, expect, it } from 'vitest';
import {
  doubleHolderMs,
  doubleHolderSamples,
  doubleReplyProbes,
  failoverGap,
  firstHeldAfter,
  holderAt,
  holderIntervals,
  icmpLongestGap,
  macsSeen,
  type ArpTimeline,
  type ObserverHealth,
  type Timeline,
} from './lab/analysis.js';
import {
  coordReleases,
  fencedRemovalProblems,
  handoverProblems,
  overlaps,
  unfencedRemovals,
  blips,
  type Evidence,
} from './lab/evidence.js';
import {
  addressIn,
  macFor,
  makePrefix,
  parseAddressEvent,
  parsePingLine,
  prefixOfNamespace,
  randomSubnet,
  splitMonitorTimestamp,
} from './lab/plan.js';

const tl: Timeline = {
  vip: '10.1.1.200',
  intervalMs: 20,
  start: 1000,
  end: 2000,
  initial: ['h1'],
  samples: [
    { t: 1000, holders: ['h1'] },
    { t: 1400, holders: ['h1', 'h2'] },
    { t: 1600, holders: ['h2'] },
  ],
  events: [
    { t: 1300, host: 'h2', op: 'add' },
    { t: 1500, host: 'h1', op: 'del' },
  ],
  observers: [],
};

const healthy = (name: string): ObserverHealth => ({ name, aliveAtStop: true, responsive: true });

const arp = (replies: [number, string, number][]): ArpTimeline => ({
  vip: '10.1.1.200',
  intervalMs: 10,
  start: 0,
  end: 10_000,
  sent: 100,
  probes: Array.from({ length: 100 }, (_, i) => i * 100),
  replies: replies.map(([t, mac, seq]) => ({ t, mac, seq, kind: 'reply' })),
  garps: [],
  observer: healthy('arp prober'),
});

describe('plan', () => {
  it('draws subnets from 10.200-10.250 and derives addresses and MACs', () => {
    expect(randomSubnet(() => 0)).toEqual({ base: '10.200.0.0', prefix: 24 });
    expect(randomSubnet(() => 0.9999).base).toBe('10.250.255.0');
    const s = { base: '10.201.7.0', prefix: 24 } as const;
    expect(addressIn(s, 11)).toBe('10.201.7.11');
    expect(() => addressIn(s, 255)).toThrow(RangeError);
    expect(macFor(s, 11)).toBe('02:c0:c9:07:00:0b');
  });

  it('makes prefixes that sweep can recognise, and nothing else', () => {
    const p = makePrefix('Fail Over!', () => 0.5);
    expect(p).toBe('coordlab-failover-7fffff');
    expect(prefixOfNamespace(`${p}-h1`)).toBe(p);
    expect(prefixOfNamespace(`${makePrefix(undefined, () => 0)}-sw`)).toBe('coordlab-000000');
    for (const foreign of ['hapx-exp20878', 'coordlab', 'coordlabx-abcdef-h1', 'vrrp-abc-h1']) {
      expect(prefixOfNamespace(foreign)).toBeUndefined();
    }
  });

  it.each([
    ['3: eth0    inet 10.1.1.200/32 scope global eth0\\       valid_lft forever', 'add', 'eth0', 32],
    ['Deleted 3: eth0    inet 10.1.1.200/24 scope global secondary eth0', 'del', 'eth0', 24],
    ['4: lo    inet 10.1.1.200/32 scope global lo', 'add', 'lo', 32],
  ])('parses ip monitor line %#', (line, op, iface, plen) => {
    expect(parseAddressEvent(line)).toEqual({ op, iface, address: '10.1.1.200', prefixLength: plen });
  });

  it('ignores monitor lines that are not address events', () => {
    expect(parseAddressEvent('3: eth0: <BROADCAST,MULTICAST,UP> mtu 1500')).toBeUndefined();
    expect(parseAddressEvent('')).toBeUndefined();
  });

  it('parses ping -D -O lines with the ping process timestamp', () => {
    expect(
      parsePingLine('[1795619800.738205] 64 bytes from 10.1.1.2: icmp_seq=7 ttl=64 time=0.137 ms'),
    ).toEqual({
      kind: 'reply',
      t: 1795619800738.205,
      seq: 7,
      rttMs: 0.137,
    });
    expect(parsePingLine('[1795619801.000000] no answer yet for icmp_seq=9')).toEqual({
      kind: 'missing',
      t: 1795619801000,
      seq: 9,
    });
    expect(parsePingLine('PING 10.1.1.2 (10.1.1.2) 56(84) bytes of data.')).toBeUndefined();
  });
});

describe('timeline analysis', () => {
  it('finds double holders in samples and, exactly, in events', () => {
    expect(doubleHolderSamples(tl)).toEqual([{ t: 1400, holders: ['h1', 'h2'] }]);
    expect(doubleHolderMs(tl)).toBe(200);
    expect(doubleHolderMs({ ...tl, initial: ['h1', 'h3'], events: [] })).toBe(1000);
  });

  it('replays holders at any time and lists holding intervals', () => {
    expect(holderAt(tl, 1299)).toEqual(['h1']);
    expect(holderAt(tl, 1300)).toEqual(['h1', 'h2']);
    expect(holderAt(tl, 1999)).toEqual(['h2']);
    expect(holderIntervals(tl)).toEqual([
      { host: 'h1', from: 1000, to: 1500 },
      { host: 'h2', from: 1300, to: 2000 },
    ]);
    expect(firstHeldAfter(tl, 1100, 'h2')).toBe(1300);
    expect(firstHeldAfter(tl, 1600, 'h2')).toBe(1600);
    expect(firstHeldAfter(tl, 1100, 'h3')).toBeUndefined();
  });

  it('measures the ARP failover gap and counts old replies after the new holder answered', () => {
    const a = arp([
      [100, 'aa', 1],
      [110, 'aa', 2],
      [900, 'bb', 80],
      [905, 'aa', 80],
      [910, 'bb', 81],
    ]);
    expect(failoverGap(a, { after: 105, fromMac: 'AA', toMac: 'bb' })).toEqual({
      lastOld: 110,
      firstNew: 900,
      gapMs: 790,
      oldAfterNew: 1,
    });
    expect(doubleReplyProbes(a)).toEqual([{ seq: 80, t: 900, macs: ['aa', 'bb'] }]);
    expect(macsSeen(a, { to: 500 })).toEqual(['aa']);
    expect(
      failoverGap(arp([[100, 'aa', 1]]), { after: 0, fromMac: 'aa', toMac: 'bb' }).gapMs,
    ).toBeUndefined();
  });

  it('finds the longest ICMP silence', () => {
    const replies = [0, 10, 20, 520, 530].map((t, i) => ({ t, seq: i + 1, rttMs: 0.1 }));
    const icmp = {
      vip: 'x',
      intervalMs: 10,
      start: 0,
      end: 600,
      replies,
      missing: [],
      observer: healthy('ping'),
    };
    expect(icmpLongestGap(icmp)).toEqual({ lastBefore: 20, firstAfter: 520, gapMs: 500 });
    expect(icmpLongestGap(icmp, { after: 500 })).toEqual({ lastBefore: 520, firstAfter: 530, gapMs: 10 });
  });
});

describe('handover evidence', () => {
  // h1 holds from the start; the fault at 1000; h1's address goes at 1400, h2 adds it at 1450.
  const handover = (over: Partial<Timeline> = {}): Timeline => ({
    vip: '10.1.1.200',
    intervalMs: 20,
    start: 500,
    end: 2500,
    initial: ['h1'],
    samples: [],
    events: [
      { t: 1400, host: 'h1', op: 'del' },
      { t: 1450, host: 'h2', op: 'add' },
    ],
    observers: [healthy('ip monitor h1'), healthy('ip monitor h2')],
    ...over,
  });
  const evidence = (over: Partial<Evidence> = {}): Evidence => ({
    timeline: handover(),
    arp: arp([
      [900, 'aa', 40],
      [1500, 'bb', 100],
    ]),
    macs: { h1: 'aa', h2: 'bb' },
    ...over,
  });
  const expectation = { initial: 'h1', final: 'h2', events: ['h1:del', 'h2:add'], faultAt: 1000 };

  it('accepts a clean handover seen by live observers', () => {
    expect(handoverProblems(evidence(), expectation)).toEqual([]);
    expect(handoverProblems(evidence(), { ...expectation, onlyEvents: true })).toEqual([]);
  });

  it.each<[string, Partial<Evidence>, RegExp]>([
    [
      'an overlap shorter than one 20 ms sample',
      {
        timeline: handover({
          events: [
            { t: 1400, host: 'h2', op: 'add' },
            { t: 1405, host: 'h1', op: 'del' },
          ],
        }),
      },
      /two holders for 5 ms/,
    ],
    [
      'a dead ip monitor',
      {
        timeline: handover({
          observers: [{ name: 'ip monitor h1', aliveAtStop: false, responsive: false, detail: 'exited' }],
        }),
      },
      /ip monitor h1 was not working.*exited/,
    ],
    [
      'a monitor that stopped reporting',
      {
        timeline: handover({ observers: [{ name: 'ip monitor h2', aliveAtStop: true, responsive: false }] }),
      },
      /ip monitor h2 was not working/,
    ],
    ['no monitor at all', { timeline: handover({ observers: [] }) }, /watched no host/],
    [
      'a dead ARP prober',
      { arp: { ...arp([]), observer: { name: 'arp prober', aliveAtStop: false, responsive: false } } },
      /arp prober was not working/,
    ],
    ['the wrong initial holder', { timeline: handover({ initial: ['h3'] }) }, /held by h3 at the start/],
    ['a missing removal', { timeline: handover({ events: [] }) }, /address events \[\]/],
    ['no answer before the fault', { arp: arp([[1500, 'bb', 100]]) }, /no ARP answer from h1/],
    ['no answer from the new holder', { arp: arp([[900, 'aa', 40]]) }, /no ARP answer from h2/],
    [
      'an answer from the new holder only before it added the VIP',
      {
        arp: arp([
          [900, 'aa', 40],
          [1420, 'bb', 90],
        ]),
      },
      /no ARP answer from h2/,
    ],
  ])('refuses %s', (_label, over, problem) => {
    const problems = handoverProblems(evidence(over), expectation);
    expect(problems.join('\n')).toMatch(problem);
  });

  it('refuses extra events when only the expected ones may happen', () => {
    const flap = handover({
      events: [
        { t: 1400, host: 'h1', op: 'del' },
        { t: 1450, host: 'h2', op: 'add' },
        { t: 1600, host: 'h2', op: 'del' },
        { t: 1700, host: 'h2', op: 'add' },
      ],
    });
    const answers = arp([
      [900, 'aa', 40],
      [1800, 'bb', 130],
    ]);
    expect(handoverProblems(evidence({ timeline: flap, arp: answers }), expectation)).toEqual([]);
    const strict = { ...expectation, onlyEvents: true };
    expect(handoverProblems(evidence({ timeline: flap, arp: answers }), strict).join()).toMatch(
      /expected exactly/,
    );
  });

  it('tolerates an overlap only when asked to (VRRP preemption), and only up to the amount asked', () => {
    const overlapping = handover({
      events: [
        { t: 1400, host: 'h2', op: 'add' },
        { t: 1450, host: 'h1', op: 'del' },
      ],
    });
    const vrrp = { ...expectation, events: ['h2:add', 'h1:del'] };
    expect(handoverProblems(evidence({ timeline: overlapping }), vrrp).join()).toMatch(/50 ms.*allowed 0/);
    expect(handoverProblems(evidence({ timeline: overlapping }), { ...vrrp, allowOverlapMs: 50 })).toEqual(
      [],
    );
    expect(
      handoverProblems(evidence({ timeline: overlapping }), { ...vrrp, allowOverlapMs: 49 }),
    ).toHaveLength(1);
  });

  it('a host without carrier: its late delete is judged on the wire, not from its kernel', () => {
    // h1's cable was pulled at the fault; its expired copy went 15 ms after h2 added the VIP.
    const late = handover({
      events: [
        { t: 1450, host: 'h2', op: 'add' },
        { t: 1465, host: 'h1', op: 'del' },
      ],
    });
    const dark = { ...expectation, onlyEvents: true, withoutCarrier: { host: 'h1', from: 1000 } };
    expect(handoverProblems(evidence({ timeline: late }), dark)).toEqual([]);
    // Counted as two holders without the exemption, and refused when the wire saw both MACs on one probe.
    expect(
      handoverProblems(evidence({ timeline: late }), { ...expectation, onlyEvents: true }).join(),
    ).toMatch(/two holders for 15 ms/);
    const both = arp([
      [900, 'aa', 40],
      [1455, 'aa', 60],
      [1455, 'bb', 60],
      [1500, 'bb', 100],
    ]);
    expect(handoverProblems(evidence({ timeline: late, arp: both }), dark).join()).toMatch(
      /1 ARP probes answered by two MACs/,
    );
    // Only that host, and only after its cable went: an overlap before the fault still counts.
    const early = handover({
      events: [
        { t: 800, host: 'h2', op: 'add' },
        { t: 820, host: 'h2', op: 'del' },
        { t: 1400, host: 'h1', op: 'del' },
        { t: 1450, host: 'h2', op: 'add' },
      ],
    });
    expect(handoverProblems(evidence({ timeline: early }), { ...dark, onlyEvents: false }).join()).toMatch(
      /two holders for 20 ms/,
    );
    const { arp: _arp, ...withoutArp } = evidence();
    expect(handoverProblems(withoutArp, dark).join()).toMatch(/needs the ARP prober/);
  });

  it('lists overlapping intervals by host', () => {
    expect(overlaps(tl)).toEqual([{ from: 1300, to: 1500, hosts: ['h1', 'h2'] }]);
  });

  it("tells coord's own fenced removal from a kernel expiry", () => {
    const log = [
      { message: 'transition', timestamp: '1970-01-01T00:00:01.390Z', from: 'leader', to: 'follower' },
      {
        message: 'vip released',
        timestamp: '1970-01-01T00:00:01.401Z',
        vips: ['10.1.1.200/24'],
        reason: 'fenced',
      },
    ];
    expect(coordReleases(log)).toEqual([{ t: 1401, reason: 'fenced', vips: ['10.1.1.200/24'] }]);
    const x = { host: 'h1', faultAt: 1000, releasedBy: 2000 };
    expect(fencedRemovalProblems(evidence(), log, x)).toEqual([]);
    // No 'vip released' line: coord found nothing to remove, the kernel's lifetime had taken the address.
    expect(fencedRemovalProblems(evidence(), log.slice(0, 1), x).join()).toMatch(/no 'vip released'/);
    expect(fencedRemovalProblems(evidence(), log, { ...x, releasedBy: 1300 }).join()).toMatch(
      /after its deadline/,
    );
    const reasons = [{ ...log[1], reason: 'reconcile: not the holder' }];
    expect(fencedRemovalProblems(evidence(), reasons, x).join()).toMatch(/fenced/);
  });

  it('explains every removal by a fence of the host that lost the VIP, or says which was not', () => {
    const release = (t: string, reason: string) => ({
      message: 'vip released',
      timestamp: t,
      vips: ['10.1.1.200/24'],
      reason,
    });
    const fenced = new Map([['h1', [release('1970-01-01T00:00:01.402Z', 'fenced')]]]);
    expect(unfencedRemovals(evidence(), fenced)).toEqual([]);
    const lost = new Map([['h1', [release('1970-01-01T00:00:01.402Z', 'session-lost')]]]);
    expect(unfencedRemovals(evidence(), lost)).toEqual([]);
    expect(unfencedRemovals(evidence(), new Map()).join()).toMatch(
      /h1 lost the VIP at 1400 without a release/,
    );
    const other = new Map([['h1', [release('1970-01-01T00:00:01.402Z', 'resigned')]]]);
    expect(unfencedRemovals(evidence(), other).join()).toMatch(/"resigned", not a fence/);
    // A release long before the removal is another removal.
    const early = new Map([['h1', [release('1970-01-01T00:00:00.100Z', 'fenced')]]]);
    expect(unfencedRemovals(evidence(), early)).toHaveLength(1);
    // The holder's own copy ran out and it put the VIP back itself: not a move, so not a missing fence...
    const blip = handover({
      events: [
        { t: 1400, host: 'h1', op: 'del' },
        { t: 1406, host: 'h1', op: 'add' },
      ],
    });
    expect(unfencedRemovals(evidence({ timeline: blip }), new Map())).toEqual([]);
    expect(blips(evidence({ timeline: blip }))).toEqual([{ t: 1400, host: 'h1', op: 'del' }]);
    // ...but when another host added the VIP next, it was a move.
    expect(blips(evidence())).toEqual([]);
    // The kernel ended the holder's copy (its lifetime ran out, no prompt ack) and the holder logged it.
    const expired = new Map([
      ['h1', [{ message: 'vip expired on holder', timestamp: '1970-01-01T00:00:01.407Z', epoch: 3 }]],
    ]);
    expect(unfencedRemovals(evidence(), expired)).toEqual([]);
    const otherHost = new Map([
      ['h2', [{ message: 'vip expired on holder', timestamp: '1970-01-01T00:00:01.407Z', epoch: 3 }]],
    ]);
    expect(unfencedRemovals(evidence(), otherHost)).toHaveLength(1);
  });
});

describe('ip -ts monitor lines', () => {
  it('splits the timestamp ip put on the line (local time, microseconds) from the event', () => {
    const line = '[2026-11-28T05:46:56.587728] Deleted 1: lo    inet 10.99.0.1/32 scope global lo';
    const { t, rest } = splitMonitorTimestamp(line);
    expect(t).toBe(new Date(2026, 10, 28, 5, 46, 56).getTime() + 587.728);
    expect(rest).toBe('Deleted 1: lo    inet 10.99.0.1/32 scope global lo');
    expect(parseAddressEvent(rest)).toEqual({
      op: 'del',
      iface: 'lo',
      address: '10.99.0.1',
      prefixLength: 32,
    });
    expect(splitMonitorTimestamp('2: eth0    inet 10.1.1.5/24')).toEqual({
      t: undefined,
      rest: '2: eth0    inet 10.1.1.5/24',
    });
  });
});
