/**
 * `coord join --mode vrrp` as an operator runs it, next to a real keepalived 2.2.7: the CLI path (flags, netlink
 * claim, GARP) on top of the VRRP codec and state machine that test/vrrp-interop.test.ts proves on the wire.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Lab,
  assertHandover,
  overlaps,
  waitFor,
  watchVip,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import { assertBuilt, COORD_BIN, waitForHolder } from './coord.js';

let lab: Lab;
let vip: string;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 2, name: 'jvrrp' });
  vip = lab.freeAddress(3);
});

afterAll(async () => {
  await lab?.destroy();
});

function coordVrrp(host: LabHost, priority: number, extra: string[] = []): LabProcess {
  return lab.spawn(
    host,
    process.execPath,
    [
      COORD_BIN,
      'join',
      '--mode',
      'vrrp',
      '--node',
      host.name,
      '--interface',
      'eth0',
      '--vrid',
      '71',
      '--vip',
      `${vip}/${lab.subnet.prefix}`,
      '--priority',
      String(priority),
      '--advert-int',
      '0.1',
      '--control-socket',
      `${lab.runDir}/${host.name}-vrrp.sock`,
      ...extra,
    ],
    { name: 'coord-vrrp' },
  );
}

function keepalivedConf(priority: number, vrid = 71): string {
  return [
    'global_defs {\n  vrrp_version 3\n}',
    'vrrp_instance VI {',
    '  state BACKUP',
    '  interface eth0',
    `  virtual_router_id ${vrid}`,
    `  priority ${priority}`,
    '  advert_int 0.1',
    `  virtual_ipaddress {\n    ${vip}/${lab.subnet.prefix}\n  }`,
    '}',
    '',
  ].join('\n');
}

describe('coord join --mode vrrp with a keepalived peer', () => {
  it('is Master over a lower-priority keepalived, hands over on SIGTERM, and preempts back', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const keepalived = lab.startKeepalived(h2, keepalivedConf(100));
    let coord = coordVrrp(h1, 150);
    try {
      // Generous: node's start-up is slow on a loaded 2-core machine.
      await waitForHolder(lab, vip, 'h1', 15_000);
      const watch = await watchVip(lab, vip, { arp: true });
      await watch.answered('h1');
      const stopAt = Date.now();
      const stopping = coord.stop(5000);
      // Wait well past the bound asserted below, so that the bound (not the wait) decides.
      await waitForHolder(lab, vip, 'h2', 5000);
      expect((await stopping).code).toBe(0);
      await watch.answered('h2', stopAt);
      const restartAt = Date.now();
      coord = coordVrrp(h1, 150);
      await waitForHolder(lab, vip, 'h1', 15_000);
      await watch.answered('h1', restartAt);
      const ev = await watch.stop();
      // VRRP preemption (RFC 5798 §6.4.3) overlaps briefly by design: the new Master adverts and claims, the old
      // one releases when it hears the advert. coord's etcd mode has no overlap; here it must stay short.
      assertHandover(ev, {
        initial: 'h1',
        final: 'h1',
        events: ['h1:del', 'h2:add'],
        faultAt: stopAt,
        allowOverlapMs: 300,
      });
      // Which of the preemption's two changes the kernel reports first is not fixed (both may share a
      // millisecond): exactly these four events, the last two in either order.
      const seen = ev.timeline.events.map((e) => `${e.host}:${e.op}`);
      expect(seen.slice(0, 2)).toEqual(['h1:del', 'h2:add']);
      expect(seen.slice(2).sort()).toEqual(['h1:add', 'h2:del']);
      // The graceful half is clean: coord removed its VIP before keepalived added its own.
      expect(overlaps(ev.timeline).filter((o) => o.from < restartAt)).toEqual([]);
      // keepalived hears coord's priority-0 advert and takes over after Skew_Time (RFC 5798 §6.4.2: 61 ms at
      // priority 100 and advert 0.1 s), from the exact kernel events; well under a second even on a loaded machine.
      const taken = ev.timeline.events.find((e) => e.host === 'h2' && e.op === 'add');
      expect(taken!.t - stopAt).toBeLessThan(1000);
      const log = await keepalived.output();
      expect(log).not.toMatch(/invalid|mismatch|bad/i);
      expect(log).toMatch(/Entering MASTER STATE/);
      expect(await coord.output()).toMatch(/"vip claimed"/);
    } finally {
      await coord.stop(3000);
      await keepalived.stop(3000);
    }
  });

  it('a failing weighted track script lowers the VRRP priority below keepalived, which takes over; recovery preempts back', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const flag = `${lab.runDir}/vrrp-healthy`;
    writeFileSync(flag, '');
    const keepalived = lab.startKeepalived(h2, keepalivedConf(100), { name: 'keepalived-track' });
    const coord = coordVrrp(h1, 150, [
      '--track-script',
      `/usr/bin/test -f ${flag}`,
      '--track-weight',
      '-100',
      '--track-interval',
      '0.2',
    ]);
    try {
      await waitForHolder(lab, vip, 'h1', 15_000);
      rmSync(flag);
      await waitForHolder(lab, vip, 'h2', 5000);
      writeFileSync(flag, '');
      await waitForHolder(lab, vip, 'h1', 5000);
      expect(await coord.output()).toMatch(/"vrrp priority changed"/);
    } finally {
      await coord.stop(3000);
      await keepalived.stop(3000);
    }
  });

  it('a node converted by coord import keepalived from the site’s keepalived.conf joins as its BACKUP and takes over', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    // One file for both hosts, as sites keep it: @ conditionals and a parameter choose per host.
    const shared = [
      '! the site keepalived.conf',
      'global_defs {',
      '  @h1 router_id h1',
      '  @h2 router_id h2',
      '  vrrp_version 3',
      '}',
      '$PRIO=100',
      '@h1 $PRIO=150',
      'vrrp_instance VI_web {',
      '  state BACKUP',
      '  interface eth0',
      '  virtual_router_id 73',
      '  priority $PRIO',
      '  advert_int 0.1',
      // Unicast, each host naming its own source and the other as peer.
      `  @h1 unicast_src_ip ${h1.ip}`,
      `  @h2 unicast_src_ip ${h2.ip}`,
      '  unicast_peer {',
      `    @^h1 ${h1.ip}`,
      `    @^h2 ${h2.ip}`,
      '  }',
      '  virtual_ipaddress {',
      `    ${vip}/${lab.subnet.prefix}`,
      '  }',
      '}',
      '',
    ].join('\n');
    const file = join(lab.runDir, 'site-keepalived.conf');
    writeFileSync(file, shared);
    const out = join(lab.runDir, 'h2-imported.yaml');
    const imported = await lab.exec(
      h2,
      process.execPath,
      [COORD_BIN, 'import', 'keepalived', file, '--config-id', 'h2', '--out', out],
      { reject: false },
    );
    expect(imported.stderr).toMatch(/converted 1 vrrp_instance/);
    expect(imported.exitCode).toBe(0);
    const checked = await lab.exec(h2, process.execPath, [COORD_BIN, 'check-config', out], { reject: false });
    expect(checked.exitCode, checked.stderr).toBe(0);

    // keepalived stays on h1 (the first step of a migration); h2 runs coord from the imported file alone.
    const keepalived = lab.startKeepalived(h1, shared, {
      name: 'keepalived-site',
      args: ['--config-id', 'h1'],
    });
    let coord: LabProcess | undefined;
    try {
      await waitForHolder(lab, vip, 'h1', 10_000);
      coord = lab.spawn(
        h2,
        process.execPath,
        [COORD_BIN, 'join', '--config', out, '--control-socket', `${lab.runDir}/h2-imported.sock`],
        { name: 'coord-imported' },
      );
      await waitFor(
        'the imported node started',
        async () => /"vrrp instance started"/.test(await coord!.output()),
        {
          timeoutMs: 15_000,
        },
      );
      // BACKUP below keepalived's 150: the VIP stays on h1 alone.
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 100));
        expect(await holdersOf(vip, h1, h2)).toEqual(['h1']);
      }
      const stopAt = Date.now();
      const stopping = keepalived.stop(5000);
      await waitForHolder(lab, vip, 'h2', 5000);
      const took = Date.now() - stopAt;
      await stopping;
      console.log(`imported coord took the VIP ${took} ms after keepalived stopped`);
      expect(took).toBeLessThan(1000);
      expect(await coord.output()).toMatch(/"vip claimed"/);
      expect(await keepalived.output()).not.toMatch(/invalid|mismatch/i);
    } finally {
      await coord?.stop(3000);
      await keepalived.stop(3000);
    }
  });
});

describe('sync groups in VRRP mode (keepalived’s vrrp_sync_group)', () => {
  it('two groups bound together: when keepalived takes one, coord gives up the other; both come back together', async () => {
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const vipB = lab.freeAddress(4);
    const config = join(lab.runDir, 'h1-sync.yaml');
    writeFileSync(
      config,
      [
        'mode: vrrp',
        'node: h1',
        `controlSocket: ${lab.runDir}/h1-sync.sock`,
        'groups:',
        ...[
          ['a', 74, vip],
          ['b', 75, vipB],
        ].flatMap(([name, vrid, address]) => [
          `  - name: ${String(name)}`,
          '    interface: eth0',
          `    vips: [${String(address)}/${lab.subnet.prefix}]`,
          '    priority: 150',
          `    vrid: ${String(vrid)}`,
          '    advertInt: 0.1',
          '    syncGroup: front',
        ]),
        '',
      ].join('\n'),
    );
    // keepalived runs only group a (vrid 74), above coord's 150; nobody else runs group b.
    const kaConf = (priority: number) => keepalivedConf(priority, 74);
    let keepalived = lab.startKeepalived(h2, kaConf(200), { name: 'keepalived-sync' });
    const coord = lab.spawn(h1, process.execPath, [COORD_BIN, 'join', '--config', config], {
      name: 'coord-sync',
    });
    const holdersB = () => holdersOf(vipB, h1, h2);
    try {
      await waitForHolder(lab, vip, 'h2', 10_000);
      await waitFor(
        'coord running both groups',
        async () => (await coord.output()).includes('"vrrp wants Master'),
        {
          timeoutMs: 15_000,
        },
      );
      // Group b has no competitor, yet coord does not take it while keepalived is Master of a.
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 100));
        expect(await holdersB()).toEqual([]);
        expect(await holdersOf(vip, h1, h2)).toEqual(['h2']);
      }
      // keepalived stops (priority 0): coord takes a, and b with it.
      await keepalived.stop(5000);
      await waitFor(
        'h1 holds both',
        async () => (await holdersOf(vip, h1, h2)).join() === 'h1' && (await holdersB()).join() === 'h1',
        {
          timeoutMs: 5000,
        },
      );
      // keepalived comes back above coord: it preempts a, and coord lets b go too.
      keepalived = lab.startKeepalived(h2, kaConf(200), { name: 'keepalived-sync2' });
      await waitForHolder(lab, vip, 'h2', 10_000);
      await waitFor('b released', async () => (await holdersB()).length === 0, { timeoutMs: 5000 });
      const log = await coord.output();
      expect(log).toMatch(/"sync group: following"/);
    } finally {
      await coord.stop(3000);
      await keepalived.stop(3000);
    }
  });
});

/** The hosts that hold `address` now, by name. */
async function holdersOf(address: string, ...hosts: LabHost[]): Promise<string[]> {
  const out: string[] = [];
  for (const h of hosts) {
    const r = await lab.exec(h, 'ip', ['-o', 'addr', 'show', 'dev', 'eth0']);
    if (r.stdout.includes(` ${address}/`)) out.push(h.name);
  }
  return out;
}

const FIXTURES = new URL('../packages/cli/test/fixtures/keepalived/', import.meta.url).pathname;

describe('the import corpus is keepalived’s own language', () => {
  it('keepalived 2.2.7 --config-test reads every valid fixture without a syntax complaint, and balks at the broken ones', async () => {
    const test = (f: string) =>
      execa('keepalived', ['--config-test', '-f', join(FIXTURES, f), '--config-id', 'lb2', '-n', '-l'], {
        reject: false,
        all: true,
        timeout: 10_000,
      });
    const syntax = /unknown keyword|missing '}'|extra '}'|unmatched quote|unterminated/i;
    const valid = [...readdirSync(FIXTURES).filter((f) => f.endsWith('.conf')), 'include/keepalived.conf'];
    expect(valid.length).toBeGreaterThanOrEqual(5);
    for (const f of valid) expect((await test(f)).all, f).not.toMatch(syntax);
    for (const f of ['unclosed.conf', 'extra-close.conf', 'orphan-brace.conf'])
      expect((await test(join('malformed', f))).all, f).toMatch(syntax);
  });
});
