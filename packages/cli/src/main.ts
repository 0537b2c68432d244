import yargs, { type Argv } from 'yargs';
import { CoordError, errorMessage, isCoordError } from '@coord/core';
import { controlRequest, DEFAULT_CONTROL_SOCKET } from '@coord/agent';
import { checkConfigFile, formatIssues, summarize } from './check.js';
import { runJoin } from './join.js';
import { formatServiceList, serverRm, serverSet, serviceList, serviceRm, serviceSet } from './services.js';
import { formatClusterStatus, readClusterStatus } from './status.js';
import { VERSION } from './version.js';

const EXAMPLE_JOIN =
  'coord join --etcd http://10.0.0.2:2379 --cluster prod --node lb1 --interface eth0 --vip 10.0.0.50/24 --priority 150';

function withEtcd<T>(y: Argv<T>) {
  return y
    .option('etcd', {
      type: 'string',
      array: true,
      describe: 'etcd endpoints, comma-separated or repeated (http://HOST:2379)',
    })
    .option('cluster', { type: 'string', describe: 'cluster name: the key prefix /coord/NAME/ in etcd' });
}

/** Print an error the operator can act on; return its exit status. */
function report(e: unknown): number {
  if (isCoordError(e)) {
    process.stderr.write(`coord: ${e.message}\n`);
    const issues = (e.details?.issues ?? []) as { path: string; message: string; hint?: string }[];
    for (const i of issues.slice(1)) process.stderr.write(`coord: ${i.path}: ${i.message}\n`);
    if (e.hint !== undefined) process.stderr.write(`hint: ${e.hint}\n`);
    return e.exitCode;
  }
  process.stderr.write(`coord: unexpected error: ${errorMessage(e)}\n`);
  if (e instanceof Error && e.stack !== undefined) process.stderr.write(`${e.stack}\n`);
  return 70;
}

/** The `coord` command line. Returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const cli = yargs(argv)
    .scriptName('coord')
    .env('COORD')
    .version(VERSION)
    .strict()
    .recommendCommands()
    .demandCommand(
      1,
      'name a command: join | status | service | server | reload-config | check-config (see coord --help)',
    )
    .usage(
      'coord: cluster coordinator for HAProxy front ends (etcd-lease election, fenced VIPs, gratuitous ARP)',
    )
    .epilogue('Every flag can also be set as a COORD_* environment variable (e.g. COORD_ETCD, COORD_NODE).')
    .command(
      'join',
      'join the cluster: elect a holder per VIP group through etcd leases and hold the VIP while elected',
      (y) =>
        withEtcd(y)
          .option('config', { type: 'string', describe: 'YAML config file (flags override it)' })
          .option('node', {
            type: 'string',
            describe: 'this node’s name, unique in the cluster [default: the host name]',
          })
          .option('interface', { type: 'string', describe: 'interface that carries the VIPs' })
          .option('vip', {
            type: 'string',
            array: true,
            describe: 'virtual IP as ADDRESS/PREFIX (repeatable)',
          })
          .option('group', {
            type: 'string',
            describe: 'name of the VIP group the flags define [default: "default"]',
          })
          .option('priority', {
            type: 'number',
            describe: 'election priority 1-254, highest holds [default: 100]',
          })
          .option('ttl', {
            type: 'number',
            describe: 'lease TTL in whole seconds; bounds crash failover [default: 1]',
          })
          .option('preempt', {
            type: 'boolean',
            describe:
              'take the VIP from a lower-priority holder (--no-preempt keeps the current holder) [default: true]',
          })
          .option('preempt-delay', {
            type: 'number',
            describe: 'seconds to be up before preempting [default: 0]',
          })
          .option('mode', {
            type: 'string',
            choices: ['etcd', 'vrrp'],
            describe: 'etcd: lease election (default); vrrp: speak VRRP with keepalived peers',
          })
          .option('vrid', {
            type: 'number',
            describe: 'VRRP mode: virtual router id 1-255 (as on the keepalived peers)',
          })
          .option('advert-int', {
            type: 'number',
            describe: 'VRRP mode: advert interval in seconds [default: 1]',
          })
          .option('vrrp-version', {
            type: 'number',
            choices: [2, 3],
            describe: 'VRRP mode: protocol version [default: 3]',
          })
          .option('unicast-peer', {
            type: 'string',
            array: true,
            describe: 'VRRP mode: send adverts to these peers instead of multicast',
          })
          .option('auth-pass', {
            type: 'string',
            describe: 'VRRP mode, v2 only: simple password (at most 8 bytes)',
          })
          .option('track-script', {
            type: 'string',
            array: true,
            describe: 'health check command (repeatable; run without a shell, exit 0 = healthy)',
          })
          .option('track-weight', {
            type: 'number',
            array: true,
            describe: 'priority change of the track script in the same position (none: failing = FAULT)',
          })
          .option('track-interval', {
            type: 'number',
            describe: 'seconds between runs of each track script [default: 2]',
          })
          .option('track-timeout', {
            type: 'number',
            describe: 'seconds before a track script counts as failed and is killed [default: 2]',
          })
          .option('track-rise', { type: 'number', describe: 'successes needed to turn healthy [default: 2]' })
          .option('track-fall', { type: 'number', describe: 'failures needed to turn failed [default: 2]' })
          .option('track-interface', {
            type: 'string',
            array: true,
            describe: 'interface whose link/carrier loss puts the node in FAULT (repeatable)',
          })
          .option('notify', {
            type: 'string',
            describe: 'command run on every transition (env COORD_STATE, COORD_GROUP, …)',
          })
          .option('notify-leader', { type: 'string', describe: 'command run when this node holds the VIP' })
          .option('notify-follower', {
            type: 'string',
            describe: 'command run when this node becomes a follower',
          })
          .option('notify-fault', {
            type: 'string',
            describe: 'command run when a check puts the node in FAULT',
          })
          .option('notify-stop', { type: 'string', describe: 'command run when coord stops' })
          .option('haproxy-config', {
            type: 'string',
            describe:
              'run the HAProxy loop: render the services in etcd to this file and keep HAProxy serving them',
          })
          .option('haproxy-base', {
            type: 'string',
            describe: 'node-local HAProxy config included in every render (never from etcd)',
          })
          .option('haproxy-bin', { type: 'string', describe: 'HAProxy binary [default: /usr/sbin/haproxy]' })
          .option('haproxy-run-dir', {
            type: 'string',
            describe: 'master socket, pidfile and HAProxy log [default: /run/coord/haproxy]',
          })
          .option('metrics', { type: 'string', describe: 'serve Prometheus metrics on ADDR:PORT (/metrics)' })
          .option('control-socket', {
            type: 'string',
            describe: `local control socket for status --local and reload-config ('' disables) [default: ${DEFAULT_CONTROL_SOCKET}]`,
          })
          .option('log-level', {
            type: 'string',
            choices: ['error', 'warn', 'info', 'debug'],
            describe: 'log level [default: info]',
          })
          .example(EXAMPLE_JOIN, 'join cluster "prod" as lb1 holding 10.0.0.50 when elected')
          .example(
            'coord join --mode vrrp --interface eth0 --vrid 51 --vip 10.0.0.50/24 --priority 100',
            'take part in a keepalived cluster (VRRPv3, advert 1 s)',
          ),
      async (a) => {
        code = await runJoin(a);
      },
    )
    .command(
      'status',
      'show members, holders, epochs and where each VIP actually is',
      (y) =>
        withEtcd(y)
          .option('json', { type: 'boolean', default: false, describe: 'print JSON for machines' })
          .option('local', {
            type: 'boolean',
            default: false,
            describe: 'ask the coord running on this host (control socket), without etcd; works in VRRP mode',
          })
          .option('control-socket', { type: 'string', describe: `[default: ${DEFAULT_CONTROL_SOCKET}]` })
          .example('coord status --etcd http://10.0.0.2:2379 --cluster prod', 'who holds what'),
      async (a) => {
        if (a.local) {
          const res = await controlRequest(a.controlSocket ?? DEFAULT_CONTROL_SOCKET, { cmd: 'status' });
          if (!res.ok)
            throw new CoordError(
              'ERR_COORD_USAGE',
              res.error,
              res.hint === undefined ? {} : { hint: res.hint },
            );
          process.stdout.write(`${JSON.stringify(res.result, null, 2)}\n`);
          return;
        }
        if (a.etcd === undefined || a.cluster === undefined) {
          throw new CoordError('ERR_COORD_USAGE', 'status needs --etcd and --cluster', {
            hint: 'e.g. coord status --etcd http://10.0.0.2:2379 --cluster prod',
          });
        }
        const s = await readClusterStatus(a.etcd, a.cluster);
        process.stdout.write(a.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatClusterStatus(s)}\n`);
      },
    )
    .command('service', 'manage the HAProxy services every node serves (stored in etcd)', (y) =>
      withEtcd(y)
        .command(
          'set <name>',
          'create or update a service (its servers are kept)',
          (z) =>
            z
              .positional('name', { type: 'string', demandOption: true })
              .option('bind', {
                type: 'string',
                array: true,
                demandOption: true,
                describe: 'ADDR:PORT to listen on (repeatable)',
              })
              .option('mode', { type: 'string', choices: ['http', 'tcp'], describe: '[default: http]' })
              .option('balance', {
                type: 'string',
                choices: ['roundrobin', 'leastconn', 'source'],
                describe: '[default: roundrobin]',
              })
              .option('check', { type: 'boolean', describe: 'health-check the servers' })
              .option('maxconn', { type: 'number', describe: 'connection limit of the frontend' })
              .example('coord service set web --bind 10.0.0.50:80 --balance leastconn --check', ''),
          async (a) => {
            const rev = await serviceSet(a);
            process.stdout.write(
              rev === 0 ? `service ${a.name} unchanged\n` : `service ${a.name} set (etcd revision ${rev})\n`,
            );
          },
        )
        .command(
          'rm <name>',
          'remove a service',
          (z) => z.positional('name', { type: 'string', demandOption: true }),
          async (a) => {
            process.stdout.write(
              (await serviceRm(a)) ? `service ${a.name} removed\n` : `no service ${a.name}\n`,
            );
          },
        )
        .command(
          'list',
          'list services and their servers (and any value the agents refuse)',
          (z) => z.option('json', { type: 'boolean', default: false }),
          async (a) => {
            const l = await serviceList(a);
            process.stdout.write(a.json ? `${JSON.stringify(l, null, 2)}\n` : `${formatServiceList(l)}\n`);
          },
        )
        .demandCommand(1, 'name a subcommand: set | rm | list'),
    )
    .command('server', 'manage the servers of a service', (y) =>
      withEtcd(y)
        .command(
          'set <service> <name> <address>',
          'add or update a server (ADDR:PORT)',
          (z) =>
            z
              .positional('service', { type: 'string', demandOption: true })
              .positional('name', { type: 'string', demandOption: true })
              .positional('address', { type: 'string', demandOption: true, describe: 'ADDR:PORT' })
              .option('weight', { type: 'number', describe: '0-256 [default: 1]' })
              .option('backup', { type: 'boolean', describe: 'only used when no other server is up' })
              .option('disabled', { type: 'boolean', describe: 'keep it configured but send it nothing' })
              .example('coord server set web app1 10.0.1.11:8080 --weight 10', ''),
          async (a) => {
            const rev = await serverSet(a);
            process.stdout.write(
              rev === 0
                ? `server ${a.name} unchanged\n`
                : `server ${a.service}/${a.name} set (etcd revision ${rev})\n`,
            );
          },
        )
        .command(
          'rm <service> <name>',
          'remove a server',
          (z) =>
            z
              .positional('service', { type: 'string', demandOption: true })
              .positional('name', { type: 'string', demandOption: true }),
          async (a) => {
            process.stdout.write(
              (await serverRm(a))
                ? `server ${a.service}/${a.name} removed\n`
                : `no server ${a.service}/${a.name}\n`,
            );
          },
        )
        .demandCommand(1, 'name a subcommand: set | rm'),
    )
    .command(
      'reload-config',
      're-read the config file of the coord running on this host (same as SIGHUP)',
      (y) => y.option('control-socket', { type: 'string', describe: `[default: ${DEFAULT_CONTROL_SOCKET}]` }),
      async (a) => {
        const res = await controlRequest(a.controlSocket ?? DEFAULT_CONTROL_SOCKET, { cmd: 'reload-config' });
        if (!res.ok)
          throw new CoordError(
            'ERR_COORD_CONFIG',
            res.error,
            res.hint === undefined ? {} : { hint: res.hint },
          );
        const r = res.result as { applied: string[]; restartRequired: string[] };
        for (const x of r.applied) process.stdout.write(`applied: ${x}\n`);
        if (r.applied.length === 0 && r.restartRequired.length === 0) process.stdout.write('no change\n');
        if (r.restartRequired.length > 0) {
          process.stdout.write(`not applied, needs a restart: ${r.restartRequired.join(', ')}\n`);
          code = 3;
        }
      },
    )
    .command(
      'check-config <file>',
      'validate a YAML config: print every error with its path and a hint; exit 0 when valid',
      (y) => y.positional('file', { type: 'string', demandOption: true, describe: 'the YAML config file' }),
      async (a) => {
        const { config, issues } = await checkConfigFile(a.file);
        if (config === undefined) {
          process.stderr.write(`${formatIssues(a.file, issues)}\n`);
          code = 2;
          return;
        }
        process.stdout.write(`${summarize(a.file, config)}\n`);
      },
    )
    .fail((msg, err, y) => {
      if (err !== undefined && err !== null) throw err;
      throw new CoordError('ERR_COORD_USAGE', msg, {
        hint: `see ${y.help !== undefined ? 'coord --help' : 'the help'}`,
      });
    })
    .help()
    .alias('h', 'help')
    .alias('V', 'version')
    .wrap(Math.min(110, process.stdout.columns ?? 110));
  try {
    await cli.parseAsync();
  } catch (e) {
    return report(e);
  }
  return code;
}
