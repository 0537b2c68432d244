/**
 * The options of every `coord` command, as data: yargs is built from these tables, COORD_* environment variables
 * are applied from them (only to the command that declares the option), and the man pages and shell completion
 * can be generated from them.
 */
import type { Options } from 'yargs';
import { DEFAULT_CONFIG_PATH, DEFAULT_CONTROL_SOCKET } from '@coord/core';

export type OptionTable = Record<string, Options>;

/** How to reach etcd: the same for every command (and the same names as etcdctl's). */
export const CONNECTION_OPTIONS = {
  config: {
    type: 'string',
    describe: `node config file; its etcd settings and cluster are used unless a flag overrides them [default: ${DEFAULT_CONFIG_PATH} when present]`,
  },
  etcd: {
    type: 'string',
    array: true,
    describe: 'etcd endpoints, comma-separated or repeated (http(s)://HOST:2379)',
  },
  'etcd-cacert': { type: 'string', describe: 'verify the etcd servers with this CA certificate (PEM)' },
  'etcd-cert': { type: 'string', describe: 'client certificate for etcd (PEM; with --etcd-key)' },
  'etcd-key': { type: 'string', describe: 'private key of --etcd-cert (PEM)' },
  'etcd-user': {
    type: 'string',
    describe: 'etcd user; its password comes from --etcd-password-file or COORD_ETCD_PASSWORD',
  },
  'etcd-password-file': { type: 'string', describe: 'file holding the etcd password (one line)' },
  cluster: { type: 'string', describe: 'cluster name: the key prefix /coord/NAME/ in etcd' },
} as const satisfies OptionTable;

/** Commands that talk to etcd once: fail within this long. */
export const TIMEOUT_OPTION = {
  timeout: { type: 'number', describe: 'seconds to wait for etcd before giving up [default: 5]' },
} as const satisfies OptionTable;

export const CONTROL_OPTIONS = {
  config: CONNECTION_OPTIONS.config,
  'control-socket': {
    type: 'string',
    describe: `the local coord's control socket [default: controlSocket in the config, else ${DEFAULT_CONTROL_SOCKET}]`,
  },
} as const satisfies OptionTable;

export const JOIN_OPTIONS = {
  ...CONNECTION_OPTIONS,
  node: { type: 'string', describe: 'this node’s name, unique in the cluster [default: the host name]' },
  interface: { type: 'string', describe: 'interface that carries the VIPs' },
  vip: { type: 'string', array: true, describe: 'virtual IP as ADDRESS/PREFIX (repeatable)' },
  group: { type: 'string', describe: 'name of the VIP group the flags define [default: "default"]' },
  priority: { type: 'number', describe: 'election priority 1-254, highest holds [default: 100]' },
  ttl: { type: 'number', describe: 'lease TTL in whole seconds; bounds crash failover [default: 1]' },
  preempt: {
    type: 'boolean',
    describe:
      'take the VIP from a lower-priority holder (--no-preempt keeps the current holder) [default: true]',
  },
  'preempt-delay': { type: 'number', describe: 'seconds to be up before preempting [default: 0]' },
  mode: {
    type: 'string',
    choices: ['etcd', 'vrrp'],
    describe: 'etcd: lease election (default); vrrp: speak VRRP with keepalived peers',
  },
  vrid: { type: 'number', describe: 'VRRP mode: virtual router id 1-255 (as on the keepalived peers)' },
  'advert-int': { type: 'number', describe: 'VRRP mode: advert interval in seconds [default: 1]' },
  'vrrp-version': { type: 'number', choices: [2, 3], describe: 'VRRP mode: protocol version [default: 3]' },
  'unicast-peer': {
    type: 'string',
    array: true,
    describe: 'VRRP mode: send adverts to these peers instead of multicast',
  },
  'auth-pass': { type: 'string', describe: 'VRRP mode, v2 only: simple password (at most 8 bytes)' },
  'track-script': {
    type: 'string',
    array: true,
    describe: 'health check command (repeatable; run without a shell, exit 0 = healthy)',
  },
  'track-weight': {
    type: 'number',
    array: true,
    describe: 'priority change of the track script in the same position (none: failing = FAULT)',
  },
  'track-interval': { type: 'number', describe: 'seconds between runs of each track script [default: 2]' },
  'track-timeout': {
    type: 'number',
    describe: 'seconds before a track script counts as failed and is killed [default: 2]',
  },
  'track-rise': { type: 'number', describe: 'successes needed to turn healthy [default: 2]' },
  'track-fall': { type: 'number', describe: 'failures needed to turn failed [default: 2]' },
  'track-interface': {
    type: 'string',
    array: true,
    describe: 'interface whose link/carrier loss puts the node in FAULT (repeatable)',
  },
  notify: { type: 'string', describe: 'command run on every transition (env COORD_STATE, COORD_GROUP, …)' },
  'notify-leader': { type: 'string', describe: 'command run when this node holds the VIP' },
  'notify-follower': { type: 'string', describe: 'command run when this node becomes a follower' },
  'notify-fault': { type: 'string', describe: 'command run when a check puts the node in FAULT' },
  'notify-stop': { type: 'string', describe: 'command run when coord stops' },
  'haproxy-config': {
    type: 'string',
    describe: 'run the HAProxy loop: render the services in etcd to this file and keep HAProxy serving them',
  },
  'haproxy-base': {
    type: 'string',
    describe: 'node-local HAProxy config included in every render (never from etcd)',
  },
  'haproxy-bin': { type: 'string', describe: 'HAProxy binary [default: /usr/sbin/haproxy]' },
  'haproxy-run-dir': {
    type: 'string',
    describe: 'master socket, pidfile and HAProxy log [default: /run/coord/haproxy]',
  },
  'fast-failover': {
    type: 'boolean',
    describe:
      'etcd mode: heartbeat the other nodes; when the holder falls silent and nobody answers for its VIP, revoke its lease and take over at once [config: fastFailover]',
  },
  'etcd-outage': {
    type: 'string',
    choices: ['fence', 'hold'],
    describe:
      'when etcd cannot be reached: fence (drop the VIP at the lease deadline) or hold (keep it while every other member promises over the peer channel not to campaign; no new holder meanwhile) [default: fence] [config: etcdOutage]',
  },
  'etcd-outage-max': {
    type: 'string',
    describe:
      'with --etcd-outage hold: the longest a holder keeps its VIP past its lease, e.g. 90s, 5m [default: 5m] [config: etcdOutageMax]',
  },
  'heartbeat-ms': {
    type: 'number',
    describe: 'peer channel: heartbeat interval in ms [default: 50] [config: peer.heartbeatMs]',
  },
  'peer-port': {
    type: 'number',
    describe: 'peer channel: UDP port, the same on every node [default: 7969]',
  },
  'peer-address': {
    type: 'string',
    describe: "peer channel: address peers send heartbeats to [default: the interface's first IPv4 address]",
  },
  metrics: { type: 'string', describe: 'serve Prometheus metrics on ADDR:PORT (/metrics) [config: metrics]' },
  'control-socket': {
    type: 'string',
    describe: `local control socket for status --local and reload-config ('' disables) [default: ${DEFAULT_CONTROL_SOCKET}]`,
  },
  'log-level': {
    type: 'string',
    choices: ['error', 'warn', 'info', 'debug'],
    describe: 'log level [default: info]',
  },
  'log-format': {
    type: 'string',
    choices: ['json', 'text'],
    describe:
      'json: one JSON object per line (journald, log shippers); text: a dated line for people [default: text on a terminal, else json] [config: logFormat]',
  },
} as const satisfies OptionTable;

export const STATUS_OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...TIMEOUT_OPTION,
  json: { type: 'boolean', default: false, describe: 'print JSON for machines' },
  local: {
    type: 'boolean',
    default: false,
    describe: 'ask the coord running on this host (control socket), without etcd; works in VRRP mode',
  },
  'control-socket': CONTROL_OPTIONS['control-socket'],
} as const satisfies OptionTable;

export const SERVICE_OPTIONS = { ...CONNECTION_OPTIONS, ...TIMEOUT_OPTION } as const satisfies OptionTable;

export const ROLES_OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...TIMEOUT_OPTION,
  apply: {
    type: 'boolean',
    default: false,
    describe: 'create the roles in etcd (needs credentials allowed to manage roles, e.g. root)',
  },
} as const satisfies OptionTable;

export const MAINTENANCE_OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...TIMEOUT_OPTION,
  node: {
    type: 'string',
    describe:
      'the node to put in or take out of maintenance [default: this node (node in the config, else the host name)]',
  },
  reason: { type: 'string', describe: 'why, shown in coord status (e.g. "kernel upgrade")' },
} as const satisfies OptionTable;

export const MOVE_OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...TIMEOUT_OPTION,
  to: {
    type: 'string',
    describe: 'the node to move the group to (alive, a candidate, not FAULT or in maintenance)',
  },
  release: {
    type: 'boolean',
    describe:
      'end a move: priorities decide again (a higher-priority node with preemption takes the group back)',
  },
  wait: {
    type: 'boolean',
    default: false,
    describe: 'wait (up to 10 s) until the node holds the group, and print how long it took',
  },
} as const satisfies OptionTable;

export const DRILL_OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...TIMEOUT_OPTION,
  to: {
    type: 'string',
    describe: 'the node to move the group to and back from [default: the best other node by priority]',
  },
  'max-gap': {
    type: 'string',
    default: '250ms',
    describe: 'fail when the VIP goes unanswered longer than this in either move (e.g. 100ms, 0.5s)',
  },
  json: { type: 'boolean', default: false, describe: 'print the timeline as JSON' },
} as const satisfies OptionTable;

export const EVENTS_OPTIONS = {
  ...CONNECTION_OPTIONS,
  ...TIMEOUT_OPTION,
  group: { type: 'string', describe: 'only this group' },
  since: { type: 'string', describe: 'only events newer than this (e.g. 30m, 1h, 2d) [default: all kept]' },
  follow: { type: 'boolean', default: false, describe: 'keep printing new events as the nodes write them' },
  json: { type: 'boolean', default: false, describe: 'one JSON object per line' },
} as const satisfies OptionTable;

export const CHECK_OPTIONS = {
  config: CONNECTION_OPTIONS.config,
  strict: {
    type: 'boolean',
    default: false,
    describe: 'fail (exit 2) on warnings too: files the config refers to that this host does not have',
  },
} as const satisfies OptionTable;

export const IMPORT_OPTIONS = {
  out: {
    type: 'string',
    describe:
      'write the coord YAML to this file (mode 0600; an existing file only with --force) [default: stdout]',
  },
  mode: {
    type: 'string',
    choices: ['vrrp', 'etcd'],
    default: 'vrrp',
    describe:
      'vrrp: speak VRRP with the keepalived nodes still running (a first migration step); etcd: elect through etcd',
  },
  'config-id': {
    type: 'string',
    describe: "keepalived's config id (-i) for lines starting with @ [default: the host name's first label]",
  },
  etcd: { type: 'array', string: true, describe: '--mode etcd: etcd endpoint URL (repeat for several)' },
  cluster: { type: 'string', describe: '--mode etcd: the cluster name, the same on every node' },
  force: { type: 'boolean', default: false, describe: 'replace the --out file if it exists' },
} as const satisfies OptionTable;

export const DOCTOR_OPTIONS = {
  ...JOIN_OPTIONS,
  json: { type: 'boolean', default: false, describe: 'print the findings as JSON' },
} as const satisfies OptionTable;

export const FENCE_OPTIONS = {
  ...JOIN_OPTIONS,
  force: {
    type: 'boolean',
    default: false,
    describe: 'fence even though something listens on this node’s control socket (a hung coord)',
  },
  json: { type: 'boolean', default: false, describe: 'print the outcome of each VIP as JSON' },
} as const satisfies OptionTable;

/** The option table of each command (by its first word): COORD_* variables apply only to these. */
export const COMMAND_OPTIONS: Readonly<Record<string, OptionTable>> = {
  join: JOIN_OPTIONS,
  status: STATUS_OPTIONS,
  service: SERVICE_OPTIONS,
  server: SERVICE_OPTIONS,
  'etcd-roles': ROLES_OPTIONS,
  'reload-config': CONTROL_OPTIONS,
  'check-config': CHECK_OPTIONS,
  doctor: DOCTOR_OPTIONS,
  fence: FENCE_OPTIONS,
  maintenance: MAINTENANCE_OPTIONS,
  move: MOVE_OPTIONS,
  drill: DRILL_OPTIONS,
  events: EVENTS_OPTIONS,
};

/** COORD_ETCD_CACERT ↔ --etcd-cacert. */
export function envName(option: string): string {
  return `COORD_${option.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Arguments for the options of `command` that are set in the environment and not on the command line (the
 * command line wins). Variables of options the command does not have are ignored — a COORD_CLUSTER exported for
 * `coord status` must not break `coord check-config` — and so is COORD_ETCD_PASSWORD, which is never an argument.
 */
export function envArgs(argv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const command = argv.find((a) => !a.startsWith('-'));
  const table = command === undefined ? undefined : COMMAND_OPTIONS[command];
  if (table === undefined) return [];
  const given = new Set(
    argv.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=')[0]?.replace(/^no-/, '') ?? ''),
  );
  const out: string[] = [];
  for (const [name, spec] of Object.entries(table)) {
    if (given.has(name)) continue;
    const value = env[envName(name)];
    if (value === undefined) continue;
    if (spec.array === true) for (const v of value.split(',')) out.push(`--${name}=${v.trim()}`);
    else out.push(`--${name}=${value}`);
  }
  return out;
}

export const SERVICE_SET_OPTIONS = {
  bind: { type: 'string', array: true, demandOption: true, describe: 'ADDR:PORT to listen on (repeatable)' },
  mode: { type: 'string', choices: ['http', 'tcp'], describe: '[default: http]' },
  balance: {
    type: 'string',
    choices: ['roundrobin', 'leastconn', 'source'],
    describe: '[default: roundrobin]',
  },
  check: { type: 'boolean', describe: 'health-check the servers' },
  maxconn: { type: 'number', describe: 'connection limit of the frontend' },
  rollout: {
    type: 'string',
    choices: ['rolling', 'parallel'],
    describe:
      'how changes that need a reload reach the nodes: one at a time, holders last, each gated on --rollout-check (rolling), or all at once [default: rolling]',
  },
  'rollout-check': {
    type: 'string',
    describe:
      'the gate of a rolling change, asked of each node’s own new worker: tcp (it accepts a connection) or an HTTP path answering 2xx/3xx, e.g. /healthz [default: tcp]',
  },
  wait: {
    type: 'boolean',
    default: true,
    describe: 'wait for a rolling change to reach every node (exit 7 if it stops); --no-wait returns at once',
  },
  'rollout-timeout': {
    type: 'string',
    default: '60s',
    describe: 'longest wait for a rolling change (e.g. 60s, 5m); it goes on after that',
  },
} as const satisfies OptionTable;

export const LIST_OPTIONS = {
  json: { type: 'boolean', default: false, describe: 'print JSON for machines' },
} as const satisfies OptionTable;

export const SERVER_SET_OPTIONS = {
  weight: { type: 'number', describe: '0-256 [default: 1]' },
  backup: { type: 'boolean', describe: 'only used when no other server is up' },
  disabled: { type: 'boolean', describe: 'keep it configured but send it nothing' },
} as const satisfies OptionTable;

export const DRAIN_OPTIONS = {
  wait: {
    type: 'string',
    describe:
      'wait this long (e.g. 30s, 2m) for every node to report 0 sessions on it; exit 7 if some remain [default: do not wait]',
  },
} as const satisfies OptionTable;

/** What a command is, for `--help`, the man page and completion alike. */
export interface CommandDoc {
  /** The command with its positionals, in yargs syntax (`check-config [file]`). */
  readonly command: string;
  readonly summary: string;
  /** More than the summary, for the man page (a paragraph). */
  readonly description?: string;
  readonly options: OptionTable;
  readonly examples: readonly (readonly [string, string])[];
  readonly subcommands?: readonly CommandDoc[];
}

/** A subcommand's doc (`service set`…), by its first word. */
export function subcommand(parent: CommandDoc, name: string): CommandDoc {
  const d = parent.subcommands?.find((c) => c.command.split(' ')[0] === name);
  if (d === undefined) throw new Error(`no subcommand ${name} of ${parent.command}`);
  return d;
}

export const COMMANDS = {
  join: {
    command: 'join',
    summary:
      'join the cluster: elect a holder per VIP group through etcd leases and hold the VIP while elected',
    description:
      'Runs in the foreground until SIGTERM or SIGINT (a graceful stop: the VIPs go, then the leadership). SIGHUP ' +
      're-reads the config file and picks up rotated etcd certificates. Flags override the config file; --priority, ' +
      '--preempt and --preempt-delay apply to every group, --interface and --vip define one group.',
    options: JOIN_OPTIONS,
    examples: [
      [
        'coord join --etcd http://10.0.0.2:2379 --cluster prod --node lb1 --interface eth0 --vip 10.0.0.50/24 --priority 150',
        'join cluster "prod" as lb1 holding 10.0.0.50 when elected',
      ],
      [
        'coord join --mode vrrp --interface eth0 --vrid 51 --vip 10.0.0.50/24 --priority 100',
        'take part in a keepalived cluster (VRRPv3, advert 1 s)',
      ],
    ],
  },
  status: {
    command: 'status',
    summary: 'show members, holders, epochs and where each VIP actually is',
    description:
      'Reads the cluster from etcd, or with --local asks the coord running on this host through its control ' +
      'socket (no etcd needed; works in VRRP mode).',
    options: STATUS_OPTIONS,
    examples: [
      ['coord status', 'on a node: who holds what, read with the node’s own config'],
      ['coord status --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --cluster prod', 'from elsewhere'],
    ],
  },
  service: {
    command: 'service',
    summary: 'manage the HAProxy services every node serves (stored in etcd)',
    options: SERVICE_OPTIONS,
    examples: [],
    subcommands: [
      {
        command: 'set <name>',
        summary: 'create or update a service (its servers are kept)',
        options: SERVICE_SET_OPTIONS,
        description:
          'A change that needs HAProxy to reload (binds, mode, balance, a new service) rolls out one node at a time: ' +
          'nodes that hold no VIP first, holders last; each node applies it and asks its own new worker the ' +
          'service’s --rollout-check before the next one starts. A node that fails stops the rollout and every node ' +
          'runs the previous version again (exit 7, the reason printed; coord status shows it); the same command ' +
          'again retries it. Server changes ' +
          'always reach every node at once, through the runtime API.',
        examples: [
          ['coord service set web --bind 10.0.0.50:80 --balance leastconn --check', ''],
          [
            'coord service set web --bind 10.0.0.50:80 --bind 10.0.0.50:443 --rollout-check /healthz',
            'add a bind, one node at a time, each gated on GET /healthz',
          ],
        ],
      },
      { command: 'rm <name>', summary: 'remove a service', options: {}, examples: [] },
      {
        command: 'list',
        summary: 'list services and their servers (and any value the agents refuse)',
        options: LIST_OPTIONS,
        examples: [],
      },
    ],
  },
  server: {
    command: 'server',
    summary: 'manage the servers of a service',
    options: SERVICE_OPTIONS,
    examples: [],
    subcommands: [
      {
        command: 'set <service> <name> <address>',
        summary: 'add or update a server (ADDR:PORT)',
        options: SERVER_SET_OPTIONS,
        examples: [['coord server set web app1 10.0.1.11:8080 --weight 10', '']],
      },
      { command: 'rm <service> <name>', summary: 'remove a server', options: {}, examples: [] },
      {
        command: 'enable <service> <name>',
        summary: 'send a disabled server traffic again (every node, through the runtime API: no reload)',
        options: {},
        examples: [],
      },
      {
        command: 'drain <service> <name>',
        summary:
          'disable a server on every node (no new sessions) and, with --wait, wait until its current sessions are 0 everywhere',
        options: DRAIN_OPTIONS,
        examples: [['coord server drain web app1 --wait 60s', 'exit 0 once no node has a session on app1']],
      },
      {
        command: 'disable <service> <name>',
        summary:
          'stop sending a server new sessions, keep it configured (every node, through the runtime API: no reload)',
        options: {},
        examples: [['coord server disable web app1', '']],
      },
    ],
  },
  'reload-config': {
    command: 'reload-config',
    summary: 're-read the config file of the coord running on this host (same as SIGHUP)',
    description:
      'Priorities and preemption change live; a change to groups, VIPs, interfaces, etcd or the TTL needs a ' +
      'restart, and the command exits 3 naming it.',
    options: CONTROL_OPTIONS,
    examples: [],
  },
  'check-config': {
    command: 'check-config [file]',
    summary:
      'validate a YAML config as coord join would: print every error with its path and a hint; exit 0 when valid',
    description:
      'Errors (exit 2) are what coord join would refuse. Warnings name files the config refers to that this host ' +
      'does not have — the HAProxy base file and binary, track and notify programs — since a config may be written ' +
      'for another host; --strict makes them errors.',
    options: CHECK_OPTIONS,
    examples: [
      ['coord check-config /etc/coord/coord.yaml', ''],
      ['coord check-config --strict /etc/coord/coord.yaml', 'also fail on files this host does not have'],
    ],
  },
  import: {
    command: 'import <kind> <file>',
    summary:
      'convert a keepalived.conf into a coord config: every vrrp_instance a group, with what did not convert listed',
    description:
      'Reads the file as keepalived does (include with globs, @ conditional lines for --config-id, $PARAMETERS, ' +
      'comments) and writes coord YAML that coord check-config accepts, with a comment naming the source line of ' +
      'each converted block. What is not converted is listed on stderr and in the YAML header with file:line and ' +
      'why (for example virtual_server: coord drives HAProxy, not LVS); what converts but behaves differently is ' +
      'listed for review. Exit 0 when everything was converted, 3 when something was not, 2 when the input is not ' +
      'a keepalived configuration. Nothing is written on exit 2. docs/migration.md maps every directive.',
    options: IMPORT_OPTIONS,
    examples: [
      ['coord import keepalived /etc/keepalived/keepalived.conf', 'print the VRRP-mode config'],
      [
        'coord import keepalived /etc/keepalived/keepalived.conf --out /etc/coord/coord.yaml',
        'write it where coord join reads it',
      ],
      [
        'coord import keepalived keepalived.conf --mode etcd --etcd http://10.0.0.2:2379 --cluster prod',
        'the etcd-mode config',
      ],
    ],
  },
  'etcd-roles': {
    command: 'etcd-roles',
    summary:
      'print (or with --apply create) the etcd roles for least privilege: coord-node-CLUSTER and coord-admin-CLUSTER',
    options: ROLES_OPTIONS,
    examples: [
      ['coord etcd-roles --cluster prod', 'print the etcdctl commands'],
      [
        'coord etcd-roles --cluster prod --apply --etcd https://10.0.0.2:2379 --etcd-user root --etcd-password-file /root/etcd-root',
        'create them',
      ],
    ],
  },
  maintenance: {
    command: 'maintenance <state>',
    summary:
      'on: the node hands its groups to other nodes and does not campaign, across restarts, until off (kept in etcd)',
    description:
      'The mark is a key under the cluster in etcd without a lease, so it survives restarts of the node and can be ' +
      'set from any machine with etcd access. While it is on the node publishes priority 0 for every group: a ' +
      'holder removes its VIP and hands the group to the best other node in one etcd write; coord status shows ' +
      'MAINTENANCE. Exit 0 also when the mark already was as asked.',
    options: MAINTENANCE_OPTIONS,
    examples: [
      ['coord maintenance on --reason "kernel upgrade"', 'on this node, before patching it'],
      ['coord maintenance off --node lb2', 'lb2 stands for election again (from anywhere with etcd access)'],
    ],
  },
  move: {
    command: 'move <group>',
    summary:
      'hand a group to a named node now, whatever the priorities, and keep it there until that node fails or --release',
    description:
      'Writes a move record to etcd (no lease). The node then stands above every configured priority for the group ' +
      'with preemption at once: the holder removes its VIP and hands the group to it in one etcd write, and no other ' +
      'node takes it back. The move ends when the node fails — it stops, restarts, goes FAULT or into maintenance — ' +
      'or with --release. Exit 2 when the node cannot hold the group (not a member of it, FAULT, maintenance).',
    options: MOVE_OPTIONS,
    examples: [
      ['coord move web --to lb2 --wait', 'move group web to lb2 and print how long it took'],
      ['coord move web --release', 'let priorities decide again'],
    ],
  },
  drill: {
    command: 'drill <group>',
    summary:
      'prove a planned failover on the wire: move the group to the next node and back, timing the gap from ARP probes',
    description:
      'Run it on a node of the group (its config names the group’s interface and VIP). It probes the VIP every 5 ms ' +
      'with RFC 5227 ARP probes, moves the group to another node (coord move) and back, and prints for each move ' +
      'the last answer from the old MAC, the first from the new one and the gap. This host’s own holding is read ' +
      'from its interface, as a host does not hear its own replies. The move record is removed at the end, so ' +
      'priorities decide again. Exit 0 when both gaps are within --max-gap and no probe was answered by two MACs, 1 ' +
      'when not, 2 when the drill cannot start (a move in effect, nobody or two MACs answering, no other node). ' +
      'Needs CAP_NET_RAW (root). Clients of the VIP see both moves.',
    options: DRILL_OPTIONS,
    examples: [
      ['coord drill web', 'move web to the next node by priority and back; fail on a gap over 250 ms'],
      ['coord drill web --to lb3 --max-gap 100ms', 'through lb3, with a tighter bound'],
    ],
  },
  events: {
    command: 'events',
    summary: 'the history of transitions: who held which group when, and why the VIP moved (kept in etcd)',
    description:
      'Every node writes its transitions, VIP claims and releases to etcd as they happen; each event is kept 7 ' +
      'days (etcd drops it with its lease: nothing to prune). Times are the writing node’s wall clock, shown in ' +
      'local time. A node writes at most 120 events a minute; a node cut off from etcd loses what happened meanwhile.',
    options: EVENTS_OPTIONS,
    examples: [
      ['coord events --since 1h', 'what happened in the last hour'],
      ['coord events --group web --follow', 'watch group web'],
    ],
  },
  doctor: {
    command: 'doctor',
    summary:
      'check this host for what coord join needs (interface, sysctls, capabilities, HAProxy, etcd, clock): pass, warn or fail, with a fix for each',
    description:
      'Takes the same flags and config file as join. Exit status as a monitoring plugin: 0 when everything ' +
      'passed, 1 when the worst finding is a warning, 2 when something failed (or the config is invalid). In etcd ' +
      'mode it reads from etcd, asks for a lease of the configured TTL and writes and deletes one key under the ' +
      "cluster's peer/ prefix, then revokes the lease. It listens 2.5 s for VRRP adverts on each VIP interface: " +
      'keepalived (or any VRRP router) still advertising a VIP fails in etcd mode; in VRRP mode a peer with another ' +
      'version, other addresses, or the VIP under another VRID is reported.',
    options: DOCTOR_OPTIONS,
    examples: [
      ['coord doctor', 'check this node with /etc/coord/coord.yaml'],
      [
        'coord doctor --interface eth0 --vip 10.0.0.50/24 --etcd http://10.0.0.2:2379 --cluster prod',
        'before writing a config',
      ],
    ],
  },
  fence: {
    command: 'fence',
    summary:
      'take this node’s VIPs off its interfaces now (the unit runs it after coord stops, however it stopped)',
    description:
      'Takes the same flags and config file as join. The package’s unit runs it as ExecStopPost, so a coord killed ' +
      'together with its dead-man helper (systemctl kill -s KILL coord) leaves no VIP behind for the kernel to ' +
      'expire late. Never removes the host’s own address, and refuses while this node’s coord listens on its ' +
      'control socket (--force for a hung one). In etcd mode, once every VIP is gone, it then gives up the lease ' +
      'the ended coord left in etcd, so another node is elected at once rather than when the lease runs out ' +
      '(waiting at most one TTL for etcd; with --json that line goes to stderr). Exit 0 when every VIP is gone, ' +
      '6 when a removal failed, 2 on a config error or a running coord; etcd does not change it.',
    options: FENCE_OPTIONS,
    examples: [
      ['coord fence', 'after coord crashed: remove what it left (reads /etc/coord/coord.yaml)'],
      [
        'coord fence --etcd http://10.0.0.2:2379 --cluster prod --interface eth0 --vip 10.0.0.50/24',
        'the flags coord join ran with, without a config file',
      ],
    ],
  },
  version: {
    command: 'version',
    summary: 'print the coord version, the Node runtime it runs on and how it was built (also: coord -v)',
    description: '`coord --version` prints the version alone, for scripts.',
    options: {},
    examples: [['coord version', '']],
  },
  completion: {
    command: 'completion [shell]',
    summary:
      'print a completion script for bash or zsh [default: the shell in $SHELL] (the package installs both)',
    options: {},
    examples: [
      ['coord completion bash >> ~/.bashrc', ''],
      [
        'coord completion zsh > "${fpath[1]}/_coord"',
        'zsh (the package installs /usr/share/zsh/vendor-completions/_coord)',
      ],
    ],
  },
} as const satisfies Record<string, CommandDoc>;

/** Edit distance (insert, delete, substitute), for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(
        (prev[j] ?? 0) + 1,
        (cur[j - 1] ?? 0) + 1,
        (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The command `argv` runs (`service set` → that subcommand's doc and words), if it names one. */
function commandOf(argv: readonly string[]): { words: string; doc: CommandDoc } | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  const doc = (COMMANDS as Record<string, CommandDoc>)[words[0] ?? ''];
  if (doc === undefined) return undefined;
  const sub = doc.subcommands?.find((c) => c.command.split(' ')[0] === words[1]);
  return sub === undefined ? { words: words[0] ?? '', doc } : { words: `${words[0]} ${words[1]}`, doc: sub };
}

/**
 * yargs' "Unknown arguments: bogus-flag, bogusFlag" → the flag as the operator typed it (`--bogus-flag`, once),
 * and the closest flag the command has, if one is close. Undefined when `msg` is not about unknown arguments.
 */
export function unknownArguments(
  msg: string,
  argv: readonly string[],
): { message: string; hint: string } | undefined {
  const m = /^Unknown arguments?: (.+)$/.exec(msg);
  if (m?.[1] === undefined) return undefined;
  const reported = m[1].split(', ');
  const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  // yargs reports a flag under both spellings: keep the one given.
  const names = reported.filter((n) => !(/[A-Z]/.test(n) && reported.includes(kebab(n))));
  const given = names.map((n) => {
    const flag = argv.find((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}`);
    return flag === undefined ? n : (flag.split('=')[0] ?? flag);
  });
  const cmd = commandOf(argv);
  const known = cmd === undefined ? [] : [...Object.keys(cmd.doc.options), 'help'];
  const suggestions = given
    .filter((g) => g.startsWith('--'))
    .map((g) => {
      const name = g.slice(2);
      const best = known.map((k) => ({ k, d: distance(name, k) })).sort((a, b) => a.d - b.d)[0];
      return best !== undefined && best.d <= Math.max(2, Math.floor(name.length / 3))
        ? `--${best.k}`
        : undefined;
    })
    .filter((s): s is string => s !== undefined);
  const command = cmd?.words ?? '';
  const what = given.every((g) => g.startsWith('-'))
    ? `unknown flag${given.length > 1 ? 's' : ''} ${given.join(', ')}`
    : `unexpected argument${given.length > 1 ? 's' : ''} ${given.join(', ')}`;
  return {
    message: command === '' ? what : `${what} for coord ${command}`,
    hint:
      suggestions.length > 0
        ? `did you mean ${suggestions.join(', ')}? (coord ${command} --help lists the flags)`
        : `coord ${command}${command === '' ? '' : ' '}--help lists the flags`,
  };
}
