import { describe, expect, it } from 'vitest';
import { formatClusterStatus, formatLocalStatus, type ClusterStatus } from '../src/status.js';

describe('coord status --local, for a person', () => {
  it('shows session, candidacy, etcd, each group (role, priority, holder, VIPs here, FAULT), HAProxy, checks, peers', () => {
    const text = formatLocalStatus({
      mode: 'etcd',
      node: 'lb1',
      status: {
        session: { leaseId: '7587', ttlMs: 1000 },
        candidacy: { candidate: false, blockedBy: ['slow-acks'] },
        groups: [
          {
            name: 'web',
            role: 'follower',
            epoch: null,
            leader: { node: 'lb2', epoch: 41 },
            vips: ['10.0.0.50/24'],
            vipsPresent: [],
            outage: { holdingMsLeft: null, promisedTo: 'lb2' },
          },
        ],
        etcd: {
          connected: true,
          revision: 812,
          staleMs: 300,
          clientCert: { expiresAt: '2027-01-01T00:00:00Z', daysLeft: 5, warning: 'replace it' },
        },
        haproxy: { result: 'rolled-back', revision: 800, error: 'bind failed', refused: [{}] },
        peers: { address: '10.0.0.11', port: 7969, heartbeatAgeMs: { lb2: 40 } },
      },
      health: {
        checks: [{ kind: 'script', name: 'script1', healthy: false, lastError: 'exit 1' }],
        groups: [{ group: 'web', priority: 0, fault: true, reasons: ['script1 failing'] }],
      },
    });
    expect(text.split('\n')).toEqual([
      'node lb1 (mode etcd)',
      '  session  lease 7587, TTL 1 s',
      '  candidate  NO (slow-acks)',
      '  etcd  connected, revision 812, heard 0.3 s ago, client certificate expires in 5 days — replace it',
      '',
      'GROUPS',
      '  web              follower  priority 0  holder lb2 (epoch 41)  VIPs here: none  FAULT (script1 failing)',
      '    etcd unreachable: promised lb2 not to campaign',
      '',
      'HAPROXY  last apply rolled-back at revision 800  error: bind failed  1 refused value(s) in etcd',
      '',
      'CHECKS',
      '  script script1                           FAILING  exit 1',
      '',
      'PEERS  (this node hears on 10.0.0.11:7969/udp)',
      '  lb2              last heartbeat 40 ms ago',
    ]);
  });

  it('shows a VRRP-mode node (state, vrid, priority) and a holder riding out an etcd outage', () => {
    const vrrp = formatLocalStatus({
      mode: 'vrrp',
      node: 'lb3',
      status: [{ name: 'web', vrid: 51, state: 'master', priority: 150, vips: ['10.0.0.50/24'] }],
    });
    // VRRP mode's status is the list of groups itself.
    expect(vrrp).toMatch(/^node lb3 \(mode vrrp\)$/m);
    expect(vrrp).toMatch(/^ {2}web +master {2}vrid 51 {2}priority 150$/m);
    const holding = formatLocalStatus({
      mode: 'etcd',
      node: 'lb1',
      status: {
        groups: [
          {
            name: 'web',
            role: 'leader',
            epoch: 9,
            leader: { node: 'lb1', epoch: 9 },
            vipsPresent: ['10.0.0.50/24'],
            outage: { holdingMsLeft: 1200, promisedTo: null },
          },
        ],
      },
    });
    expect(holding).toMatch(/VIPs here: 10\.0\.0\.50\/24$/m);
    expect(holding).toMatch(/holding the VIP on the others' promises, 1200 ms left/);
  });
});

describe('coord status (the cluster), for a person', () => {
  const member = (node: string, over: Partial<ClusterStatus['members'][number]> = {}) => ({
    node,
    alive: true as const,
    candidate: true,
    blockedBy: [],
    failingChecks: [],
    groups: { web: { priority: 100, preempt: true } },
    lastSeenMsAgo: 1200,
    maintenance: null,
    version: '0.1.0',
    peer: null,
    haproxy: null,
    ...over,
  });

  it('says why a node is in FAULT and why it is not a candidate, as the node reported it', () => {
    const text = formatClusterStatus({
      cluster: 'prod',
      revision: 90,
      members: [
        member('lb1'),
        member('lb2', {
          groups: { web: { priority: 0, preempt: true } },
          failingChecks: ['script chk_haproxy: exit code 1', 'interface eth1: down'],
        }),
        member('lb3', { candidate: false, blockedBy: ['slow-acks', 'view-behind-session'] }),
        member('lb4', {
          groups: { web: { priority: 80, preempt: true } },
          failingChecks: ['script chk_load: timed out after 2000 ms'],
        }),
        member('lb5', { candidate: false }),
      ],
      model: { fingerprint: 'abc', services: 0, invalid: 0 },
      rollouts: [],
      groups: [],
    });
    const line = (n: string) => text.split('\n').find((l) => l.startsWith(`  ${n} `)) ?? '';
    expect(line('lb1')).not.toMatch(/FAULT|CANDIDATE|failing/);
    expect(line('lb2')).toMatch(/ FAULT web \(script chk_haproxy: exit code 1; interface eth1: down\)/);
    expect(line('lb3')).toMatch(
      /NOT A CANDIDATE \(etcd acks too slow to hold a VIP safely; its view of etcd lags its session\)/,
    );
    // A weighted check that fails lowers the priority: not a FAULT, but said.
    expect(line('lb4')).toMatch(/checks failing: script chk_load: timed out after 2000 ms/);
    expect(line('lb4')).not.toMatch(/FAULT/);
    // A node too old to say why.
    expect(line('lb5')).toMatch(/NOT A CANDIDATE \(see coord status --local on that node\)/);
  });
});
