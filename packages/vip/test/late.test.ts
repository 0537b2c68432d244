import { describe, expect, it } from 'vitest';
import { parseCidr, type Vip } from '@coord/core';
import { createNetlinkVipPort } from '../src/index.js';

const vip = ((): Vip => {
  const r = parseCidr('192.0.2.50/32');
  if (!r.ok) throw new Error(r.reason);
  return r.vip;
})();

describe('netlink VipPort: notAfter', () => {
  // A lifetime must not be (re)started past its owner's safety bound, even after waiting in the port's queue.
  // Past the deadline the port answers 'late' before it opens or touches any netlink socket.
  it('refuses an add or refresh whose deadline has passed, without sending anything', async () => {
    const port = createNetlinkVipPort();
    try {
      const past = performance.now() - 1;
      await expect(
        port.add('nonexistent0', vip, { validSec: 1, preferredSec: 1, notAfter: past }),
      ).resolves.toBe('late');
      await expect(
        port.refresh('nonexistent0', vip, { validSec: 1, preferredSec: 1, notAfter: past }),
      ).resolves.toBe('late');
    } finally {
      port.close();
    }
  });
});
