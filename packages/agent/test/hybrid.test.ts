import { describe, expect, it } from 'vitest';
import type { VrrpPacket } from '@coord/vrrp';
import { FOREIGN_SILENCE_INTERVALS, ForeignMasterWatch, OUTRANKED_MS } from '../src/hybrid.js';

const advert = (priority: number, intervalCs = 100): VrrpPacket => ({
  version: 3,
  vrid: 51,
  priority,
  maxAdvertIntervalCs: intervalCs,
  addresses: ['10.0.0.50'],
});

describe('hybrid mode: is a keepalived node VRRP Master?', () => {
  it('a node that just started counts as hearing one until it has listened one and a half intervals', () => {
    const w = new ForeignMasterWatch(1000, 1000);
    expect(w.present(1000)).toBe(true);
    expect(w.endsAt(1000)).toBe(1000 + 1000 * FOREIGN_SILENCE_INTERVALS);
    expect(w.present(2499)).toBe(true);
    expect(w.present(2500)).toBe(false);
    expect(w.endsAt(2500)).toBeUndefined();
  });

  it('a Master advertising keeps it present for one and a half of its own intervals after each advert', () => {
    const w = new ForeignMasterWatch(0, 1000);
    w.observe(advert(100, 10), '10.0.0.9', 5000); // keepalived at advert_int 0.1 s
    expect(w.present(5149)).toBe(true);
    expect(w.present(5150)).toBe(false);
    expect(w.source).toBe('10.0.0.9');
    w.observe(advert(100, 100), '10.0.0.9', 6000);
    expect(w.endsAt(6000)).toBe(7500);
  });

  it('a Master that resigns (priority 0) is gone at once; one that merely stepped down times out', () => {
    const w = new ForeignMasterWatch(0, 1000);
    w.observe(advert(100), '10.0.0.9', 5000);
    w.observe(advert(0), '10.0.0.9', 5100);
    expect(w.present(5100)).toBe(false);
  });

  it('a Master our advert outranks steps down: gone shortly after we sent it, back if it advertises again', () => {
    const w = new ForeignMasterWatch(0, 1000);
    w.observe(advert(100), '10.0.0.9', 5000);
    // Lower or equal-with-smaller-address: no effect.
    w.sent(100, '10.0.0.2', 5100);
    w.sent(90, '10.0.0.99', 5100);
    expect(w.endsAt(5100)).toBe(6500);
    w.sent(200, '10.0.0.2', 5200);
    expect(w.endsAt(5200)).toBe(5200 + OUTRANKED_MS);
    expect(w.present(5200 + OUTRANKED_MS)).toBe(false);
    // It did not hear us and advertises again: present again for a full window.
    w.observe(advert(100), '10.0.0.9', 6000);
    expect(w.present(6100)).toBe(true);
    // Equal priority, our address greater: outranks too (RFC 5798 §6.4.3).
    w.sent(100, '10.0.0.10', 6200);
    expect(w.endsAt(6200)).toBe(6200 + OUTRANKED_MS);
  });
});
