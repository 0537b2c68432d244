import { describe, expect, it } from 'vitest';
import { formatLocalStatus } from '../src/status.js';

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
