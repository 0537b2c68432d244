/**
 * The fault matrix rows about etcd itself, with a 3-member etcd cluster: killing its raft leader, losing quorum,
 * and a lossy path from the holder to etcd. The invariant is the same everywhere — never two holders, judged on the
 * exact kernel events by live observers — and whenever the VIP moves, the holder that lost it must have fenced
 * itself (its own log says so): fencing on an unacknowledged lease is by design, any other loss is a bug.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Lab,
  assertFencedRemoval,
  assertHandover,
  holderIntervals,
  unfencedRemovals,
  blips,
  waitFor,
  watchVip,
  type Evidence,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import { assertBuilt, coordLog, holdersOf, startCoord, waitForSingleHolder } from './coord.js';

const SILENT_MEMBER = fileURLToPath(new URL('./fixtures/etcd/silent-member.ts', import.meta.url));
const STALLED_WRITE = fileURLToPath(new URL('./fixtures/etcd/stalled-member-write.ts', import.meta.url));

let lab: Lab;
let running = new Map<string, LabProcess>();
let n = 0;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 3, etcdMembers: 3, name: 'etcdf' });
});

afterEach(async () => {
  await Promise.all([...running.values()].map((p) => p.stop(3000)));
  running = new Map();
});

afterAll(async () => {
  await lab?.destroy();
});

function cluster(opts: { ttlSec?: number } = {}): { vip: string } {
  n++;
  const vip = lab.freeAddress(n);
  running = new Map(
    lab.hosts.map((h) => [
      h.name,
      startCoord(lab, h, {
        cluster: `f${n}`,
        vips: [`${vip}/${lab.subnet.prefix}`],
        ...(opts.ttlSec === undefined ? {} : { ttlSec: opts.ttlSec }),
      }),
    ]),
  );
  return { vip };
}

async function logs(): Promise<Map<string, Record<string, unknown>[]>> {
  return new Map(await Promise.all([...running].map(async ([h, p]) => [h, await coordLog(p)] as const)));
}

/**
 * The VIP may have moved (or blinked) during the fault, but only because its holder fenced itself; never two
 * holders; one holder at the end.
 */
async function expectOnlyFencedMoves(ev: Evidence, initial: string, blipWithinMs?: number): Promise<void> {
  const final = (await holdersOf(lab, ev.timeline.vip))[0] ?? null;
  assertHandover(ev, { initial, final });
  expect(unfencedRemovals(ev, await logs(), blipWithinMs)).toEqual([]);
}

async function etcdLeader(): Promise<number> {
  return waitFor('an etcd leader', () => lab.faults.etcdLeaderIndex(), {
    timeoutMs: 10_000,
    intervalMs: 100,
  });
}

describe('etcd faults (3-member etcd)', () => {
  it('without a fault, idle nodes keep their lease stream and watch (no drop every 5 s)', async () => {
    // A watch cancelled at start used to mark the host failed, closing the channels under the open streams,
    // which grpc-js then dropped at its next keepalive ping, 5 s later, again and again (docs/design.md, "A
    // cancelled watch dropped every stream, every 5 s"). Two of those pings go by here.
    const { vip } = cluster();
    await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 11_000));
    const broken = [...(await logs())].flatMap(([host, lines]) =>
      lines
        .filter((l) => l['message'] === 'keepalive stream failed' || l['message'] === 'watch disconnected')
        .map((l) => `${host}: ${String(l['message'])} ${JSON.stringify(l['error'] ?? '')}`),
    );
    expect(broken).toEqual([]);
  });

  it('killing the etcd raft leader repeatedly (TTL 2 s): never two holders, and any move is a fence', async () => {
    const { vip } = cluster({ ttlSec: 2 });
    const first = await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    const watch = await watchVip(lab, vip);
    for (let i = 0; i < 3; i++) {
      const leader = await etcdLeader();
      await lab.faults.killEtcdMember(leader);
      await new Promise((r) => setTimeout(r, 1500));
      await lab.faults.restartEtcdMember(leader);
    }
    await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    const ev = await watch.stop();
    // The holder's own copy may run out between kills: it is refreshed only on a prompt ack, and after an etcd
    // election acks come in a burst, not promptly; the holder puts it back on the next prompt one, which the next
    // kill can delay up to its fencing deadline (CI: gone 1.34 s, nobody else added it). Not a move.
    await expectOnlyFencedMoves(ev, first, 2000);
    // TTL 2 s leaves a 1.8 s fencing deadline, longer than etcd's leader election here (0.5-1 s): the VIP usually
    // stays put. On a starved machine etcd itself can be unavailable for longer and the holder fences (asserted
    // above to be the only way it moves).
    const moves = holderIntervals(ev.timeline).length - 1;
    console.log(`etcd leader kills ×3 with TTL 2 s: ${moves} holder change(s)`);
  });

  it('with TTL 1 s an etcd leader election may outlast the deadline: only fences, never two holders', async () => {
    const { vip } = cluster();
    const first = await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    const watch = await watchVip(lab, vip);
    const leader = await etcdLeader();
    await lab.faults.killEtcdMember(leader);
    await new Promise((r) => setTimeout(r, 1500));
    await lab.faults.restartEtcdMember(leader);
    await waitForSingleHolder(lab, vip, { timeoutMs: 10_000 });
    const ev = await watch.stop();
    await expectOnlyFencedMoves(ev, first);
    const intervals = holderIntervals(ev.timeline).map((x) => [x.host, x.to - x.from]);
    console.log(
      `etcd leader kill with TTL 1 s: VIP holder intervals ${JSON.stringify(intervals)} (${intervals.length - 1} change(s))`,
    );
  });

  it('etcd quorum loss: the holder removes the VIP itself by its deadline; one holder after recovery', async () => {
    const { vip } = cluster();
    const first = await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    const watch = await watchVip(lab, vip, { arp: true });
    await watch.answered(first);
    // Kill the raft leader and one follower. A raft leader left alone keeps renewing leases until CheckQuorum
    // makes it step down (up to two election timeouts later; etcd-io/etcd#4779, docs/design.md "etcd"), which
    // would push the holder's deadline back by as much: safe, but not the bound this test asserts.
    const leader = await etcdLeader();
    await lab.faults.killEtcdMember(leader);
    await lab.faults.killEtcdMember((leader + 1) % 3);
    const lostAt = Date.now(); // quorum is gone from here on
    await waitFor(
      'nobody to hold the VIP',
      async () => ((await holdersOf(lab, vip)).length === 0 ? true : undefined),
      { timeoutMs: 3000, intervalMs: 20 },
    );
    // Stay down for 2 × TTL: no node may take the VIP while etcd has no quorum (checked on the events below).
    await new Promise((r) => setTimeout(r, 2000));
    const recoveringAt = Date.now();
    await lab.faults.restartEtcdMember(leader);
    await lab.faults.restartEtcdMember((leader + 1) % 3);
    const final = await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    await watch.answered(final, recoveringAt);
    const ev = await watch.stop();
    assertHandover(ev, {
      initial: first,
      final,
      events: [`${first}:del`, `${final}:add`],
      onlyEvents: true,
      faultAt: lostAt,
    });
    expect(ev.timeline.events.find((e) => e.op === 'add')!.t).toBeGreaterThan(recoveringAt);
    // The holder's own fence (deadline = last acked keepalive send, before the loss, + TTL − margin), not the
    // kernel's lifetime expiry: coord logged the removal of an address that was still there.
    const fenced = assertFencedRemoval(ev, await coordLog(running.get(first)!), {
      host: first,
      faultAt: lostAt,
      releasedBy: lostAt + 1000,
    });
    console.log(
      `etcd quorum loss: ${first} fenced and released the VIP ${fenced.t - lostAt} ms after the loss`,
    );
  });

  it('each etcd member in turn goes silent for the holder (as a host that is down): it moves to a live member and keeps the group', async () => {
    const { vip } = cluster();
    const first = await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    const holder = lab.host(first);
    const watch = await watchVip(lab, vip);
    for (let i = 0; i < lab.etcd.members.length; i++) {
      await lab.faults.cutFromEtcdMember(holder, i);
      await new Promise((r) => setTimeout(r, 2000));
      await lab.faults.healEtcd(holder);
      await waitForSingleHolder(lab, vip, { timeoutMs: 5000 });
      // Members failing one after another within three TTLs would be a second fence in one epoch, which hands
      // the group over by design (docs/design.md, "Fencing"): this test is about one member at a time.
      await new Promise((r) => setTimeout(r, 2500));
    }
    const ev = await watch.stop();
    await expectOnlyFencedMoves(ev, first);
    // One of the three was the member the holder used: its keepalives stalled, it fenced, left that member (and
    // says so) and got the group back at once from a live one — a blip of its own VIP, no other holder. (The same
    // held, by luck of the draw, when etcd3 chose a member at random for every call; where that cost seconds is
    // an etcd leader kill through the lab's proxies: pnpm soak --kinds etcd-leader-kill, docs/design.md.)
    const holders = holderIntervals(ev.timeline);
    const gaps = holders.slice(1).map((x, k) => Math.round(x.from - (holders[k]?.to ?? x.from)));
    console.log(
      `a silent etcd member ×3 for ${first}: holders ${JSON.stringify(holders.map((x) => x.host))}, gaps ${JSON.stringify(gaps)} ms`,
    );
    expect(new Set(holders.map((x) => x.host))).toEqual(new Set([first]));
    const log = await coordLog(running.get(first)!);
    expect(log.filter((l) => l['message'] === 'etcd: now using another member').length).toBeGreaterThan(0);
  });

  it('50 % loss towards etcd on the holder: never two holders, any move is a fence, one holder at the end', async () => {
    const { vip } = cluster();
    const first = await waitForSingleHolder(lab, vip, { timeoutMs: 15_000 });
    const watch = await watchVip(lab, vip);
    const host = lab.host(first);
    await lab.faults.netem(host, { lossPct: 50 });
    try {
      await new Promise((r) => setTimeout(r, 6000));
    } finally {
      await lab.faults.clearNetem(host);
    }
    await waitForSingleHolder(lab, vip, { timeoutMs: 10_000 });
    const ev = await watch.stop();
    await expectOnlyFencedMoves(ev, first);
    console.log(
      `50 % loss for 6 s: ${holderIntervals(ev.timeline).length - 1} holder change(s), ` +
        `${blips(ev).length} blip(s) of the holder's own copy (expired without a prompt ack, put back by itself)`,
    );
  });

  // Under a cut of etcd's replies a holder's requests still reach etcd, but only over a connection with nothing
  // unanswered in flight: the member in use has its keepalives, a new connection never completes its handshake. So a
  // resign is broadcast through a standby connection to every member too (docs/design.md, "Fencing").
  async function stalledWrite({ recordFirst }: { recordFirst: boolean }) {
    const [host, other] = lab.hosts as [LabHost, LabHost];
    const prefix = `/stalled-write/${Date.now()}/`;
    const args = { endpoints: lab.etcd.endpoints, prefix, callTimeoutMs: 3000, stallMs: 700, recordFirst };
    const proc = lab.spawn(
      host,
      process.execPath,
      ['--conditions=source', '--import', 'tsx', STALLED_WRITE, JSON.stringify(args)],
      { name: 'stalled-write' },
    );
    const keys = async (): Promise<string[]> => {
      const r = await lab.etcdctl(other, ['get', prefix, '--prefix', '--keys-only']);
      expect(r.exitCode, r.stderr).toBe(0);
      return r.stdout.split('\n').filter((l) => l.startsWith(prefix));
    };
    try {
      await waitFor('the standby connections', async () => (await proc.output()).includes('"ready"'), {
        timeoutMs: 20_000,
      });
      expect((await keys()).sort()).toEqual([`${prefix}every`, `${prefix}member`, `${prefix}plain`]);
      await lab.faults.cutFromEtcdOneWay(host, 'from-etcd');
      proc.signal('SIGUSR1');
      await waitFor('the writes sent', async () => (await proc.output()).includes('"sent"'), {
        timeoutMs: 5000,
        intervalMs: 10,
      });
      const sent = performance.now();
      // Read from another host: the broadcast delete has landed, the other has not. Within a TTL of 1 s: a resign
      // that lands later than that finds the lease it ends expired, and the successor waited for the expiry.
      await waitFor('the broadcast delete', async () => !(await keys()).includes(`${prefix}every`), {
        timeoutMs: 1000,
        intervalMs: 20,
      });
      const landedMs = Math.round(performance.now() - sent);
      await new Promise((r) => setTimeout(r, 1000));
      const left = await keys();
      expect(left).toContain(`${prefix}plain`);
      expect(left).not.toContain(`${prefix}every`);
      console.log(
        `stalled-member write (record first: ${recordFirst}): landed ${landedMs} ms after it was sent`,
      );
    } finally {
      await lab.faults.healEtcd(host);
      await proc.stop(3000);
    }
  }

  it("a broadcast write lands while etcd's replies to the host are cut; through the member in use alone it does not", async () => {
    await stalledWrite({ recordFirst: false });
  });

  // Seen in the soak (seed 135, round 243): a fenced holder's member record went out through the standby
  // connections first; TCP timed its copies out, and the resign queued behind them landed after the lease expired.
  it('a resign broadcast after a member record still lands at once: it has standby connections of its own', async () => {
    await stalledWrite({ recordFirst: true });
  });

  /** One call through a node's backend, begun on member 0 while `host` is cut off from it (fixtures/etcd). */
  async function onSilentMember(op: 'grant' | 'read') {
    const host = lab.hosts[0]!;
    const [silent, live] = lab.etcd.endpoints;
    const args = { op, endpoints: [silent, live], ttlSec: 1, callTimeoutMs: 5000, tries: 30 };
    await lab.faults.cutFromEtcdMember(host, 0);
    try {
      const r = await lab.exec(
        host,
        process.execPath,
        ['--conditions=source', '--import', 'tsx', SILENT_MEMBER, JSON.stringify(args)],
        { reject: false, timeoutMs: 60_000 },
      );
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as {
        tookMs: number;
        failedMs?: number;
        error?: string;
        switches: { from: string; to: string }[];
      };
      expect(out.switches[0]).toMatchObject({ from: silent, to: live });
      return { ...out, callTimeoutMs: args.callTimeoutMs };
    } finally {
      await lab.faults.healEtcd(host);
    }
  }

  // A restarted member that is still catching up, or a path that went silent, holds a call until its deadline:
  // after etcd's quorum came back, nodes waited out that deadline on such members (test/soak/README.md). Here the
  // call timeout is 5 s and the TTL 1 s.
  it('a lease grant waits at most one TTL for a member that does not answer, then gets its lease from the next', async () => {
    const out = await onSilentMember('grant');
    console.log(
      `lease grant on a silent member: gave up after ${out.failedMs} ms, lease after ${out.tookMs} ms`,
    );
    expect(out.error).toMatch(/lease grant/);
    // It waited for the member (about one TTL), not for the call timeout; the next member granted the lease.
    expect(out.failedMs).toBeGreaterThanOrEqual(900);
    expect(out.failedMs).toBeLessThan(out.callTimeoutMs / 2);
  });

  it("an agent's read waits at most one TTL for a member that does not answer, then the next member answers it", async () => {
    const out = await onSilentMember('read');
    console.log(`read begun on a silent member: answered after ${out.tookMs} ms`);
    expect(out.error).toBeUndefined(); // moved within the call
    expect(out.tookMs).toBeGreaterThanOrEqual(900);
    expect(out.tookMs).toBeLessThan(out.callTimeoutMs / 2);
  });
});
