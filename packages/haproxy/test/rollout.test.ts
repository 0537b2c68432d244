import { describe, expect, it } from 'vitest';
import {
  decodeRollout,
  describeRollout,
  effectiveServices,
  encodeRollout,
  isTurn,
  needsRollout,
  parseService,
  rolloutApplies,
  rolloutOrder,
  runsNext,
  serializeService,
  valueHash,
  withVerdict,
  type RolloutRecord,
  type Service,
} from '../src/index.js';

function svc(over: Partial<Service> = {}): Service {
  const r = parseService({
    name: 'web',
    binds: [{ address: '10.0.0.50', port: 80 }],
    servers: [{ name: 'a', address: '10.0.1.1', port: 8080 }],
    ...over,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.service;
}

const next = svc({
  binds: [
    { address: '10.0.0.50', port: 80 },
    { address: '10.0.0.50', port: 81 },
  ],
});
const nextText = serializeService(next);

function record(over: Partial<RolloutRecord> = {}): RolloutRecord {
  return {
    id: 'r1',
    service: 'web',
    next: valueHash(nextText),
    previous: svc(),
    order: ['h2', 'h3', 'h1'],
    steps: {},
    state: 'running',
    startedAt: 1000,
    ...over,
  };
}
const all = new Set(['h1', 'h2', 'h3']);
const ok = (ms = 300) => ({ state: 'ok' as const, at: 2000, ms });

describe('rolling rollouts (pure)', () => {
  it('rolls only changes that need a reload, unless the service says parallel', () => {
    expect(needsRollout(svc(), next)).toBe(true);
    expect(needsRollout(undefined, svc())).toBe(true);
    // Servers only: the runtime API, every node at once.
    expect(needsRollout(svc(), svc({ servers: [] }))).toBe(false);
    // How it rolls out is not something HAProxy sees.
    expect(needsRollout(svc(), svc({ rolloutCheck: '/healthz' }))).toBe(false);
    expect(needsRollout(svc(), { ...next, rollout: 'parallel' })).toBe(false);
  });

  it('orders nodes without a VIP first and holders last', () => {
    expect(rolloutOrder(['h1', 'h3', 'h2', 'h1'], new Set(['h1']))).toEqual(['h2', 'h3', 'h1']);
    expect(rolloutOrder(['b', 'a'], new Set())).toEqual(['a', 'b']);
  });

  it('gives each node its turn only after every node before it passed or is gone', () => {
    const r = record();
    expect(['h1', 'h2', 'h3'].filter((n) => isTurn(r, n, all))).toEqual(['h2']);
    const r2 = record({ steps: { h2: ok() } });
    expect(['h1', 'h2', 'h3'].filter((n) => isTurn(r2, n, all))).toEqual(['h3']);
    // h3 died (its status key is gone): the holder does not wait for it.
    expect(isTurn(r2, 'h1', new Set(['h1', 'h2']))).toBe(true);
    // A node that joined after the start is not in the order: it runs the previous version until the end.
    expect(isTurn(r2, 'h4', all)).toBe(false);
    expect(runsNext(r2, 'h4', all)).toBe(false);
    expect(runsNext({ ...r2, state: 'done' }, 'h4', all)).toBe(true);
  });

  it('stops on the first failure and then every node runs the previous version', () => {
    const r = withVerdict(
      record({ steps: { h2: ok() } }),
      'h3',
      { state: 'failed', at: 3000, ms: 5000, error: 'gate /healthz: GET /healthz answered 503' },
      all,
    );
    expect(r.state).toBe('stopped');
    expect(r.reason).toBe('h3: gate /healthz: GET /healthz answered 503');
    expect(['h1', 'h2', 'h3'].map((n) => runsNext(r, n, all))).toEqual([false, false, false]);
    expect(describeRollout(r, all)).toContain('STOPPED');
  });

  it('ends when the last node passes, or when the nodes left are gone', () => {
    const last = withVerdict(record({ steps: { h2: ok(), h3: ok() } }), 'h1', ok(), all);
    expect(last.state).toBe('done');
    const early = withVerdict(record({ steps: { h2: ok() } }), 'h3', ok(), new Set(['h2', 'h3']));
    expect(early.state).toBe('done');
    const mid = withVerdict(record(), 'h2', ok(), all);
    expect(mid.state).toBe('running');
  });

  it('runs the previous version (or nothing, for a new service) until the node’s turn', () => {
    const committed = new Map([['web', next]]);
    const r = record({ steps: { h2: ok() } });
    const at = (n: string, rec = r) => effectiveServices(committed, [{ record: rec, applies: true }], n, all);
    expect(at('h2').get('web')).toEqual(next);
    expect(at('h3').get('web')).toEqual(next); // its turn
    expect(at('h1').get('web')).toEqual(svc());
    expect(at('h1', record({ previous: null })).has('web')).toBe(false);
    // A record for another value of the key (a later direct write) changes nothing.
    expect(effectiveServices(committed, [{ record: r, applies: false }], 'h1', all).get('web')).toEqual(next);
    expect(rolloutApplies(r, nextText)).toBe(true);
    expect(rolloutApplies(r, serializeService(svc()))).toBe(false);
    expect(rolloutApplies(r, undefined)).toBe(false);
  });

  it('decodes its own records and refuses anything else', () => {
    const r = record({ steps: { h2: ok() } });
    expect(decodeRollout(encodeRollout(r))).toEqual(r);
    expect(decodeRollout('not json')).toBeUndefined();
    expect(decodeRollout(JSON.stringify({ ...r, state: 'maybe' }))).toBeUndefined();
    expect(decodeRollout(JSON.stringify({ ...r, previous: { name: 'web' } }))).toBeUndefined();
    expect(decodeRollout(JSON.stringify({ ...r, extra: 1 }))).toBeUndefined();
  });
});
