/**
 * Health tracking, notify hooks, metrics and the control socket, on real coord nodes in the lab: a failing
 * check moves the VIP away, a recovering one (with preemption) brings it back, hooks see every transition in
 * order, and an interface that loses carrier puts its node in FAULT.
 */
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Lab,
  assertHandover,
  waitFor,
  watchVip,
  type HandoverExpectation,
  type LabHost,
  type LabProcess,
} from './lab/index.js';
import { assertBuilt, COORD_BIN, controlSocketFor, startCoord, waitForHolder } from './coord.js';

let lab: Lab;

beforeAll(async () => {
  assertBuilt();
  lab = await Lab.create({ hosts: 2, name: 'health' });
});

afterAll(async () => {
  await lab?.destroy();
});

/** A hook script (the operator's, so it may use a shell) that appends what coord told it to a file. */
function hookScript(): string {
  const path = join(lab.runDir, 'hook.sh');
  writeFileSync(
    path,
    '#!/bin/sh\necho "$COORD_SEQ $COORD_STATE $COORD_PREVIOUS_STATE $COORD_GROUP $COORD_NODE epoch=$COORD_EPOCH vips=$COORD_VIPS" >> "$1"\n',
  );
  chmodSync(path, 0o755);
  return path;
}

/** Away from h1 to h2 and back, exactly once, never two holders, seen by live observers. */
const awayAndBack = (faultAt: number): HandoverExpectation => ({
  initial: 'h1',
  final: 'h1',
  events: ['h1:del', 'h2:add', 'h2:del', 'h1:add'],
  onlyEvents: true,
  faultAt,
});

async function inNs(host: LabHost, args: string[]) {
  return lab.exec(host, process.execPath, args, { reject: false, timeoutMs: 15_000 });
}

describe('health tracking and hooks', () => {
  it('a failing check moves the VIP away, recovery brings it back; hooks run in order; metrics and local status', async () => {
    const vip = lab.freeAddress(1);
    const cidr = `${vip}/${lab.subnet.prefix}`;
    const hook = hookScript();
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    const healthy = (h: LabHost) => join(lab.runDir, `${h.name}-healthy`);
    const hooksLog = (h: LabHost) => join(lab.runDir, `${h.name}-hooks.log`);
    const procs: LabProcess[] = [];
    for (const [h, priority] of [
      [h1, 200],
      [h2, 100],
    ] as const) {
      writeFileSync(healthy(h), '');
      procs.push(
        startCoord(lab, h, {
          cluster: 'health',
          vips: [cidr],
          priority,
          extraArgs: [
            '--track-script',
            `/usr/bin/test -f ${healthy(h)}`,
            '--track-interval',
            '0.2',
            '--track-rise',
            '2',
            '--track-fall',
            '2',
            '--notify',
            `${hook} ${hooksLog(h)}`,
            '--metrics',
            '127.0.0.1:9100',
          ],
        }),
      );
    }
    try {
      await waitForHolder(lab, vip, 'h1', 15_000);
      const watch = await watchVip(lab, vip, { arp: true });
      await watch.answered('h1');
      const faultAt = Date.now();
      rmSync(healthy(h1));
      await waitForHolder(lab, vip, 'h2', 5000);
      writeFileSync(healthy(h1), '');
      await waitForHolder(lab, vip, 'h1', 5000);
      const backAt = Date.now();
      await watch.answered('h1', backAt);
      assertHandover(await watch.stop(), awayAndBack(faultAt));

      // Metrics, scraped from inside h1's namespace.
      const scrape = await inNs(h1, [
        '-e',
        "fetch('http://127.0.0.1:9100/metrics').then(r => r.text()).then(t => process.stdout.write(t))",
      ]);
      expect(scrape.stdout).toMatch(/coord_group_state\{group="default",role="leader"\} 1/);
      expect(scrape.stdout).toMatch(/coord_track_healthy\{check="script1"\} 1/);
      expect(scrape.stdout).toMatch(/coord_last_failover_seconds\{group="default"\} [0-9.]+/);
      const announced = /coord_announcements_total\{group="default"\} (\d+)/.exec(scrape.stdout);
      expect(Number(announced?.[1])).toBeGreaterThan(0);

      // Local status through the control socket, no etcd involved.
      const local = await inNs(h1, [
        COORD_BIN,
        'status',
        '--local',
        '--json',
        '--control-socket',
        controlSocketFor(lab, h1, 'health'),
      ]);
      expect(local.exitCode).toBe(0);
      expect(JSON.parse(local.stdout)).toMatchObject({
        node: 'h1',
        status: { groups: [{ name: 'default', role: 'leader' }] },
      });
      // The same for a person: the role, the VIP on this interface, the check's state.
      const human = await inNs(h1, [
        COORD_BIN,
        'status',
        '--local',
        '--control-socket',
        controlSocketFor(lab, h1, 'health'),
      ]);
      expect(human.exitCode).toBe(0);
      expect(human.stdout).toMatch(/^node h1 \(mode etcd\)$/m);
      expect(human.stdout).toMatch(
        new RegExp(
          `^  default +leader +priority 200 +holder h1 \\(epoch \\d+\\) +VIPs here: ${cidr.replace(/\./g, '\\.')}$`,
          'm',
        ),
      );
      expect(human.stdout).toMatch(/^  script script1 +healthy$/m);
      // Started from flags: a reload has nothing to re-read, and says so without touching the node.
      const reload = await inNs(h1, [
        COORD_BIN,
        'reload-config',
        '--control-socket',
        controlSocketFor(lab, h1, 'health'),
      ]);
      expect(reload.exitCode).not.toBe(0);
      expect(reload.stderr).toMatch(/started without a config file/);
    } finally {
      await Promise.all(procs.map((p) => p.stop(5000)));
    }
    // h1's hooks: in order, one sequence, with the facts in the environment (keepalived #1884: out of order).
    await waitFor(
      'the stop hook of h1',
      () => existsSync(hooksLog(h1)) && readFileSync(hooksLog(h1), 'utf8').includes(' stop '),
    );
    const lines = readFileSync(hooksLog(h1), 'utf8').trim().split('\n');
    const seqs = lines.map((l) => Number(l.split(' ')[0]));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const states = lines.map((l) => l.split(' ')[1]);
    expect(states).toEqual(['follower', 'leader', 'fault', 'follower', 'leader', 'stop']);
    expect(lines[1]).toMatch(/^\d+ leader follower default h1 epoch=\d+ vips=/);
    expect(lines[2]).toMatch(/ fault leader /);
  });

  it('a tracked interface that loses carrier puts the holder in FAULT and the VIP moves', async () => {
    const vip = lab.freeAddress(2);
    const cidr = `${vip}/${lab.subnet.prefix}`;
    const [h1, h2] = lab.hosts as [LabHost, LabHost];
    // A veth pair inside h1: taking one end down drops the other's carrier.
    await lab.exec(h1, 'ip', ['link', 'add', 'trk0', 'type', 'veth', 'peer', 'name', 'trk1']);
    await lab.exec(h1, 'ip', ['link', 'set', 'trk0', 'up']);
    await lab.exec(h1, 'ip', ['link', 'set', 'trk1', 'up']);
    const procs = [
      startCoord(lab, h1, {
        cluster: 'trackif',
        vips: [cidr],
        priority: 200,
        extraArgs: ['--track-interface', 'trk0'],
      }),
      startCoord(lab, h2, { cluster: 'trackif', vips: [cidr], priority: 100 }),
    ];
    try {
      await waitForHolder(lab, vip, 'h1', 15_000);
      const watch = await watchVip(lab, vip, { arp: true });
      await watch.answered('h1');
      const faultAt = Date.now();
      await lab.exec(h1, 'ip', ['link', 'set', 'trk1', 'down']);
      await waitForHolder(lab, vip, 'h2', 5000);
      await lab.exec(h1, 'ip', ['link', 'set', 'trk1', 'up']);
      await waitForHolder(lab, vip, 'h1', 5000);
      const backAt = Date.now();
      await watch.answered('h1', backAt);
      assertHandover(await watch.stop(), awayAndBack(faultAt));
      expect(await procs[0]!.output()).toMatch(/"group faulted"/);
    } finally {
      await Promise.all(procs.map((p) => p.stop(5000)));
      await lab.exec(h1, 'ip', ['link', 'del', 'trk0'], { reject: false });
    }
  });
});
