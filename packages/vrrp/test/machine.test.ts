import { describe, expect, it } from 'vitest';
import {
  initialState,
  loadVrrpConfig,
  masterDownIntervalMs,
  skewTimeMs,
  step,
  type VrrpConfig,
  type VrrpEvent,
  type VrrpPacket,
  type VrrpState,
} from '../src/index.js';

const v3 = loadVrrpConfig({ vrid: 51, priority: 100, addresses: ['10.0.0.50'], primaryAddress: '10.0.0.2' });
const v2 = loadVrrpConfig({
  ...v3,
  version: 2,
  priority: 100,
  addresses: ['10.0.0.50'],
  primaryAddress: '10.0.0.2',
});

function advert(priority: number, intervalCs = 100, vrid = 51): VrrpPacket {
  return { version: 3, vrid, priority, maxAdvertIntervalCs: intervalCs, addresses: ['10.0.0.50'] };
}
function v2advert(priority: number, sec = 1): VrrpPacket {
  return {
    version: 2,
    vrid: 51,
    priority,
    advertIntervalSec: sec,
    auth: { type: 'none' },
    addresses: ['10.0.0.50'],
  };
}
const backupAt = (timerAt: number, masterAdverIntervalCs = 100): VrrpState => ({
  name: 'backup',
  masterAdverIntervalCs,
  timerAt,
});
const masterAt = (timerAt: number): VrrpState => ({ name: 'master', masterAdverIntervalCs: 100, timerAt });

describe('RFC formulas', () => {
  it('v3 Skew_Time and Master_Down_Interval scale with the interval (RFC 5798 §6.1)', () => {
    expect(skewTimeMs(3, 100, 100)).toBeCloseTo(609.375);
    expect(masterDownIntervalMs(3, 100, 100)).toBeCloseTo(3609.375);
    expect(masterDownIntervalMs(3, 200, 10)).toBeCloseTo(321.875);
  });
  it('v2 Skew_Time is in seconds whatever the interval (RFC 3768 §6.1)', () => {
    expect(skewTimeMs(2, 100, 300)).toBeCloseTo(609.375);
    expect(masterDownIntervalMs(2, 100, 300)).toBeCloseTo(9609.375);
  });
});

type Row = [
  what: string,
  config: VrrpConfig,
  state: VrrpState,
  event: VrrpEvent,
  expectState: Partial<VrrpState>,
  expectEffects: unknown[],
  dropped?: string,
];
const notify = (from: string, to: string, reason: string) => ({ type: 'notify', from, to, reason });

const rows: Row[] = [
  [
    'startup → Backup, Master_Down_Timer armed',
    v3,
    initialState(v3),
    { type: 'startup', now: 1000 },
    { name: 'backup', timerAt: 1000 + 3609.375 },
    [{ type: 'arm-timer', at: 4609.375 }, notify('initialize', 'backup', 'startup')],
  ],
  [
    'owner (priority 255) startup → Master at once',
    { ...v3, priority: 255 },
    initialState(v3),
    { type: 'startup', now: 0 },
    { name: 'master', timerAt: 1000 },
    [
      { type: 'send-advert', priority: 255 },
      { type: 'claim-vips' },
      { type: 'arm-timer', at: 1000 },
      notify('initialize', 'master', 'owner-startup'),
    ],
  ],
  [
    'Backup: Master_Down_Timer fires → Master',
    v3,
    backupAt(5000),
    { type: 'timer', now: 5000 },
    { name: 'master', timerAt: 6000 },
    [
      { type: 'send-advert', priority: 100 },
      { type: 'claim-vips' },
      { type: 'arm-timer', at: 6000 },
      notify('backup', 'master', 'master-down-timer'),
    ],
  ],
  [
    'Backup: a stale timer (not due) does nothing',
    v3,
    backupAt(5000),
    { type: 'timer', now: 4999 },
    { name: 'backup' },
    [],
  ],
  [
    'Backup: higher priority advert resets the timer and learns the interval (v3)',
    v3,
    backupAt(5000),
    { type: 'advert-received', packet: advert(150, 50), from: '10.0.0.9', now: 2000 },
    { name: 'backup', masterAdverIntervalCs: 50, timerAt: 2000 + masterDownIntervalMs(3, 100, 50) },
    [{ type: 'arm-timer', at: 2000 + masterDownIntervalMs(3, 100, 50) }],
  ],
  [
    'Backup with preempt: lower priority advert is ignored (timer keeps running)',
    v3,
    backupAt(5000),
    { type: 'advert-received', packet: advert(50), from: '10.0.0.9', now: 2000 },
    { name: 'backup', timerAt: 5000 },
    [],
  ],
  [
    'Backup without preempt: lower priority advert still resets the timer',
    { ...v3, preempt: false },
    backupAt(5000),
    { type: 'advert-received', packet: advert(50), from: '10.0.0.9', now: 2000 },
    { name: 'backup', timerAt: 5609.375 },
    [{ type: 'arm-timer', at: 5609.375 }],
  ],
  [
    'Backup: priority 0 → Master_Down_Timer = Skew_Time',
    v3,
    backupAt(5000),
    { type: 'advert-received', packet: advert(0), from: '10.0.0.9', now: 2000 },
    { name: 'backup', timerAt: 2609.375 },
    [{ type: 'arm-timer', at: 2609.375 }],
  ],
  [
    'Backup: another VRID is ignored',
    v3,
    backupAt(5000),
    { type: 'advert-received', packet: advert(200, 100, 52), from: '10.0.0.9', now: 2000 },
    { timerAt: 5000 },
    [],
    'other-vrid',
  ],
  [
    'Backup v2: an advert with another interval is discarded (RFC 3768 §7.1)',
    v2,
    backupAt(5000),
    { type: 'advert-received', packet: v2advert(200, 2), from: '10.0.0.9', now: 2000 },
    { timerAt: 5000 },
    [],
    'advert-interval-mismatch',
  ],
  [
    'Backup v2: never learns the interval',
    v2,
    backupAt(5000),
    { type: 'advert-received', packet: v2advert(200), from: '10.0.0.9', now: 2000 },
    { masterAdverIntervalCs: 100, timerAt: 5609.375 },
    [{ type: 'arm-timer', at: 5609.375 }],
  ],
  [
    'Backup: its own advert (multicast loop) is ignored',
    v3,
    backupAt(5000),
    { type: 'advert-received', packet: advert(200), from: '10.0.0.2', now: 2000 },
    { timerAt: 5000 },
    [],
    'own-advert',
  ],
  [
    'Master: Adver_Timer fires → advert, re-armed',
    v3,
    masterAt(3000),
    { type: 'timer', now: 3000 },
    { name: 'master', timerAt: 4000 },
    [
      { type: 'send-advert', priority: 100 },
      { type: 'arm-timer', at: 4000 },
    ],
  ],
  [
    'Master: higher priority → Backup, VIPs released, interval learned',
    v3,
    masterAt(3000),
    { type: 'advert-received', packet: advert(101, 20), from: '10.0.0.1', now: 2500 },
    { name: 'backup', masterAdverIntervalCs: 20, timerAt: 2500 + masterDownIntervalMs(3, 100, 20) },
    [
      { type: 'release-vips' },
      { type: 'arm-timer', at: 2500 + masterDownIntervalMs(3, 100, 20) },
      notify('master', 'backup', 'higher-priority-advert'),
    ],
  ],
  [
    'Master: equal priority from a greater address → Backup',
    v3,
    masterAt(3000),
    { type: 'advert-received', packet: advert(100), from: '10.0.0.10', now: 2500 },
    { name: 'backup' },
    [
      { type: 'release-vips' },
      { type: 'arm-timer', at: 6109.375 },
      notify('master', 'backup', 'higher-priority-advert'),
    ],
  ],
  [
    'Master: equal priority from a smaller address is discarded',
    v3,
    masterAt(3000),
    { type: 'advert-received', packet: advert(100), from: '10.0.0.1', now: 2500 },
    { name: 'master', timerAt: 3000 },
    [],
  ],
  [
    'Master: lower priority is discarded',
    v3,
    masterAt(3000),
    { type: 'advert-received', packet: advert(99), from: '10.0.0.200', now: 2500 },
    { name: 'master', timerAt: 3000 },
    [],
  ],
  [
    'Master: priority 0 from another router → advert at once',
    v3,
    masterAt(3000),
    { type: 'advert-received', packet: advert(0), from: '10.0.0.9', now: 2500 },
    { name: 'master', timerAt: 3500 },
    [
      { type: 'send-advert', priority: 100 },
      { type: 'arm-timer', at: 3500 },
    ],
  ],
  [
    'Master: shutdown → priority 0, then VIPs released',
    v3,
    masterAt(3000),
    { type: 'shutdown', now: 2500 },
    { name: 'initialize', timerAt: undefined },
    [
      { type: 'cancel-timer' },
      { type: 'send-advert', priority: 0 },
      { type: 'release-vips' },
      notify('master', 'initialize', 'shutdown'),
    ],
  ],
  [
    'Backup: shutdown → Initialize, no advert',
    v3,
    backupAt(5000),
    { type: 'shutdown', now: 2500 },
    { name: 'initialize', timerAt: undefined },
    [{ type: 'cancel-timer' }, notify('backup', 'initialize', 'shutdown')],
  ],
  [
    'sync group: a Backup follows a member that became Master at once (keepalived vrrp_sync_group)',
    v3,
    backupAt(9000),
    { type: 'sync', to: 'master', now: 2000 },
    { name: 'master', timerAt: 3000 },
    [
      { type: 'send-advert', priority: 100 },
      { type: 'claim-vips' },
      { type: 'arm-timer', at: 3000 },
      notify('backup', 'master', 'sync-group'),
    ],
  ],
  [
    'sync group: a Master follows a member out: priority 0 first, VIPs released, Backup on Master_Down_Interval',
    v3,
    masterAt(3000),
    { type: 'sync', to: 'backup', now: 2000 },
    { name: 'backup', timerAt: 2000 + masterDownIntervalMs(3, 100, 100) },
    [
      { type: 'send-advert', priority: 0 },
      { type: 'release-vips' },
      { type: 'arm-timer', at: 2000 + masterDownIntervalMs(3, 100, 100) },
      notify('master', 'backup', 'sync-group'),
    ],
  ],
  [
    'sync group: nothing to follow when already there, or not running (Initialize)',
    v3,
    initialState(v3),
    { type: 'sync', to: 'master', now: 0 },
    { name: 'initialize' },
    [],
  ],
  [
    'Initialize: adverts and timers are ignored',
    v3,
    initialState(v3),
    { type: 'advert-received', packet: advert(200), from: '10.0.0.9', now: 0 },
    { name: 'initialize' },
    [],
  ],
];

describe('step (RFC 5798 §6.4)', () => {
  for (const [what, config, state, event, expectState, expectEffects, dropped] of rows) {
    it(what, () => {
      const r = step(config, state, event);
      expect(r.state).toMatchObject(expectState);
      expect(r.effects).toEqual(expectEffects);
      expect(r.dropped).toBe(dropped);
    });
  }
});

describe('simulation: N routers on a lossy, delaying bus', () => {
  interface Node {
    config: VrrpConfig;
    state: VrrpState;
    alive: boolean;
    timerSeq: number;
  }
  /** Deterministic PRNG (mulberry32). */
  function rng(seed: number): () => number {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  interface Options {
    seed: number;
    priorities: number[];
    preempt?: boolean;
    loss: number;
    maxDelayMs: number;
    endMs: number;
    crashAt?: number;
    resignAt?: number;
  }
  /**
   * Discrete-event simulation. Loss is random but at most 2 consecutive adverts are lost per link: with 3 the
   * RFC itself elects a second Master, which is the protocol, not a bug.
   */
  function simulate(o: Options) {
    const r = rng(o.seed);
    const nodes: Node[] = o.priorities.map((priority, i) => ({
      config: loadVrrpConfig({
        vrid: 9,
        priority,
        addresses: ['10.0.0.100'],
        primaryAddress: `10.0.0.${i + 1}`,
        preempt: o.preempt ?? true,
      }),
      state: initialState(v3),
      alive: true,
      timerSeq: 0,
    }));
    type Ev = { at: number; seq: number; node: number; run: () => VrrpEvent | undefined };
    const queue: Ev[] = [];
    let seq = 0;
    const push = (at: number, node: number, run: Ev['run']) => queue.push({ at, seq: seq++, node, run });
    const lossRun = new Map<string, number>();
    const apply = (i: number, ev: VrrpEvent) => {
      const n = nodes[i];
      if (n === undefined || !n.alive) return;
      const res = step(n.config, n.state, ev);
      n.state = res.state;
      for (const e of res.effects) {
        if (e.type === 'arm-timer') {
          const mine = ++n.timerSeq;
          push(e.at, i, () => (n.timerSeq === mine ? { type: 'timer', now: e.at } : undefined));
        } else if (e.type === 'cancel-timer') {
          n.timerSeq++;
        } else if (e.type === 'send-advert') {
          const packet: VrrpPacket = {
            version: 3,
            vrid: 9,
            priority: e.priority,
            maxAdvertIntervalCs: n.config.advertIntervalCs,
            addresses: ['10.0.0.100'],
          };
          nodes.forEach((_, j) => {
            if (j === i) return;
            const link = `${i}>${j}`;
            const lost = lossRun.get(link) ?? 0;
            if (lost < 2 && r() < o.loss) {
              lossRun.set(link, lost + 1);
              return;
            }
            lossRun.set(link, 0);
            const at = ev.now + r() * o.maxDelayMs;
            push(at, j, () => ({ type: 'advert-received', packet, from: n.config.primaryAddress, now: at }));
          });
        }
      }
    };
    nodes.forEach((_, i) => push(r() * 2000, i, () => ({ type: 'startup', now: 0 })));
    if (o.crashAt !== undefined) push(o.crashAt, -1, () => undefined);
    const masters = () => nodes.filter((n) => n.alive && n.state.name === 'master').length;
    const samples: { at: number; masters: number }[] = [];
    let crashed = -1;
    while (queue.length > 0) {
      queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const ev = queue.shift();
      if (ev === undefined || ev.at > o.endMs) break;
      if (ev.node === -1) {
        // Crash: the current Master stops dead (no priority 0 advert).
        crashed = nodes.findIndex((n) => n.alive && n.state.name === 'master');
        const victim = nodes[crashed];
        if (victim !== undefined) victim.alive = false;
      } else if (o.resignAt !== undefined && ev.at >= o.resignAt && crashed < 0) {
        crashed = nodes.findIndex((n) => n.state.name === 'master');
        apply(crashed, { type: 'shutdown', now: ev.at });
        const victim = nodes[crashed];
        if (victim !== undefined) victim.alive = false;
        push(ev.at, ev.node, ev.run);
        continue;
      } else {
        const e = ev.run();
        if (e !== undefined) apply(ev.node, { ...e, now: ev.at });
      }
      samples.push({ at: ev.at, masters: masters() });
    }
    return { nodes, samples, crashed };
  }

  /** Total time during which two or more Masters existed after `from`. */
  function dualMasterMs(samples: { at: number; masters: number }[], from: number, to: number): number {
    let total = 0;
    for (let k = 0; k + 1 < samples.length; k++) {
      const s = samples[k];
      const next = samples[k + 1];
      if (s === undefined || next === undefined || s.at < from || s.at > to) continue;
      if (s.masters > 1) total += next.at - s.at;
    }
    return total;
  }

  it('steady state over 20 seeds: one Master, the highest priority, never two once adverts flow', () => {
    for (let seed = 1; seed <= 20; seed++) {
      // Distinct priorities ≤ 240: Skew_Time (≥ 62 ms) exceeds the delay jitter (10 ms).
      const { nodes, samples } = simulate({
        seed,
        priorities: [100, 240, 150, 30, 200],
        loss: 0.3,
        maxDelayMs: 10,
        endMs: 120_000,
      });
      expect(dualMasterMs(samples, 10_000, 120_000), `seed ${seed}`).toBe(0);
      expect(nodes.map((n) => n.state.name)).toEqual(['backup', 'master', 'backup', 'backup', 'backup']);
    }
  });

  it('equal priorities converge to exactly one Master', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { nodes, samples } = simulate({
        seed,
        priorities: [100, 100, 100, 100],
        loss: 0.2,
        maxDelayMs: 10,
        endMs: 60_000,
      });
      expect(nodes.filter((n) => n.state.name === 'master')).toHaveLength(1);
      expect(dualMasterMs(samples, 10_000, 60_000), `seed ${seed}`).toBe(0);
    }
  });

  it('no-preempt: a late high-priority router does not take over', () => {
    const { nodes } = simulate({
      seed: 3,
      priorities: [50, 60],
      preempt: false,
      loss: 0,
      maxDelayMs: 1,
      endMs: 30_000,
    });
    expect(nodes.filter((n) => n.state.name === 'master')).toHaveLength(1);
  });

  it('Master crash: a new Master within Master_Down_Interval; overlap bounded by the lost adverts', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const loss = seed <= 20 ? 0 : 0.3;
      const { nodes, samples, crashed } = simulate({
        seed,
        priorities: [100, 240, 150, 30, 200],
        loss,
        maxDelayMs: 10,
        endMs: 60_000,
        crashAt: 30_000,
      });
      expect(crashed).toBe(1);
      const alive = nodes.filter((n) => n.alive);
      expect(alive.filter((n) => n.state.name === 'master')).toHaveLength(1);
      expect(nodes[4]?.state.name).toBe('master');
      const back = samples.find((s) => s.at > 30_000 && s.masters === 1);
      // Worst case: the last 2 adverts before the crash were lost, so the timer was reset 2 s earlier.
      expect((back?.at ?? Infinity) - 30_000).toBeLessThan(masterDownIntervalMs(3, 30, 100) + 10);
      // Without loss the highest Backup's timer fires first: never two Masters. With loss a lower Backup that
      // missed the last adverts may win first, and yields when an advert of the higher one gets through: the bus
      // loses at most 2 in a row, so the third, 2 intervals later, arrives (+ the delay).
      expect(dualMasterMs(samples, 30_000, 60_000), `seed ${seed}`).toBeLessThanOrEqual(
        loss === 0 ? 0 : 2010,
      );
    }
  });

  it('Master resigns (priority 0): the next Master takes over after Skew_Time, not Master_Down_Interval', () => {
    const { nodes, samples } = simulate({
      seed: 5,
      priorities: [100, 240, 200],
      loss: 0,
      maxDelayMs: 5,
      endMs: 40_000,
      resignAt: 30_000,
    });
    expect(nodes[2]?.state.name).toBe('master');
    const back = samples.find((s) => s.at > 30_000 && s.masters === 1);
    expect((back?.at ?? Infinity) - 30_000).toBeLessThan(skewTimeMs(3, 200, 100) + 10 + 1000);
  });
});
