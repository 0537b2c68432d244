import yargs from 'yargs';
import { CoordError, DEFAULT_CONTROL_SOCKET, errorMessage, isCoordError } from '@coord/core';
import {
  CONTROL_OPTIONS,
  envArgs,
  JOIN_OPTIONS,
  ROLES_OPTIONS,
  SERVICE_OPTIONS,
  STATUS_OPTIONS,
} from './options.js';
import { VERSION } from './version.js';

const EXAMPLE_JOIN =
  'coord join --etcd http://10.0.0.2:2379 --cluster prod --node lb1 --interface eth0 --vip 10.0.0.50/24 --priority 150';

/**
 * Each command loads its implementation when it runs: `coord --version` and `--help` load only yargs and the
 * option tables, `coord status` never loads the agent (docs: the footprint targets in the README).
 */
const load = {
  join: () => import('./join.js'),
  services: () => import('./services.js'),
  status: () => import('./status.js'),
  check: () => import('./check.js'),
  target: () => import('./target.js'),
  control: () => import('@coord/agent/control'),
  etcd: () => import('@coord/etcd'),
};

async function controlRequest(...args: Parameters<typeof import('@coord/agent/control').controlRequest>) {
  return (await load.control()).controlRequest(...args);
}

/** The control socket of the local coord: --control-socket, else the config's controlSocket, else the default. */
async function controlSocketOf(a: {
  config?: string | undefined;
  controlSocket?: string | undefined;
}): Promise<string> {
  if (a.controlSocket !== undefined) return a.controlSocket;
  const { raw } = await (await load.target()).readNodeFile(a);
  return typeof raw.controlSocket === 'string' && raw.controlSocket !== ''
    ? raw.controlSocket
    : DEFAULT_CONTROL_SOCKET;
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
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let code = 0;
  // COORD_* variables apply only to the options of the command being run (options.ts).
  const cli = yargs([...argv, ...envArgs(argv, env)])
    .scriptName('coord')
    .version(VERSION)
    .strict()
    .recommendCommands()
    .demandCommand(
      1,
      'name a command: join | status | service | server | reload-config | check-config | etcd-roles (see coord --help)',
    )
    .usage(
      'coord: cluster coordinator for HAProxy front ends (etcd-lease election, fenced VIPs, gratuitous ARP)',
    )
    .epilogue(
      'Every flag of a command can also be set as a COORD_* environment variable (e.g. COORD_ETCD, COORD_NODE); ' +
        'the etcd password only ever comes from --etcd-password-file or COORD_ETCD_PASSWORD. Commands read ' +
        '/etc/coord/coord.yaml when it exists (or --config FILE) for their etcd settings and cluster.',
    )
    .command(
      'join',
      'join the cluster: elect a holder per VIP group through etcd leases and hold the VIP while elected',
      (y) =>
        y
          .options(JOIN_OPTIONS)
          .example(EXAMPLE_JOIN, 'join cluster "prod" as lb1 holding 10.0.0.50 when elected')
          .example(
            'coord join --mode vrrp --interface eth0 --vrid 51 --vip 10.0.0.50/24 --priority 100',
            'take part in a keepalived cluster (VRRPv3, advert 1 s)',
          ),
      async (a) => {
        code = await (await load.join()).runJoin(a);
      },
    )
    .command(
      'status',
      'show members, holders, epochs and where each VIP actually is',
      (y) =>
        y
          .options(STATUS_OPTIONS)
          .example('coord status', 'on a node: who holds what, read with the node’s own config')
          .example(
            'coord status --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --cluster prod',
            'from elsewhere',
          ),
      async (a) => {
        if (a.local) {
          const res = await controlRequest(await controlSocketOf(a), { cmd: 'status' });
          if (!res.ok)
            throw new CoordError(
              'ERR_COORD_USAGE',
              res.error,
              res.hint === undefined ? {} : { hint: res.hint },
            );
          process.stdout.write(`${JSON.stringify(res.result, null, 2)}\n`);
          return;
        }
        const { formatClusterStatus, readClusterStatus } = await load.status();
        const s = await readClusterStatus(await (await load.target()).resolveTarget(a));
        process.stdout.write(a.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatClusterStatus(s)}\n`);
      },
    )
    .command('service', 'manage the HAProxy services every node serves (stored in etcd)', (y) =>
      y
        .options(SERVICE_OPTIONS)
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
            const rev = await (await load.services()).serviceSet(a);
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
              (await (await load.services()).serviceRm(a))
                ? `service ${a.name} removed\n`
                : `no service ${a.name}\n`,
            );
          },
        )
        .command(
          'list',
          'list services and their servers (and any value the agents refuse)',
          (z) => z.option('json', { type: 'boolean', default: false }),
          async (a) => {
            const { formatServiceList, serviceList } = await load.services();
            const l = await serviceList(a);
            process.stdout.write(a.json ? `${JSON.stringify(l, null, 2)}\n` : `${formatServiceList(l)}\n`);
          },
        )
        .demandCommand(1, 'name a subcommand: set | rm | list'),
    )
    .command('server', 'manage the servers of a service', (y) =>
      y
        .options(SERVICE_OPTIONS)
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
            const rev = await (await load.services()).serverSet(a);
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
              (await (await load.services()).serverRm(a))
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
      (y) => y.options(CONTROL_OPTIONS),
      async (a) => {
        const res = await controlRequest(await controlSocketOf(a), { cmd: 'reload-config' });
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
      'check-config [file]',
      'validate a YAML config as coord join would: print every error with its path and a hint; exit 0 when valid',
      (y) =>
        y
          .positional('file', {
            type: 'string',
            describe: 'the YAML config file [default: --config, else /etc/coord/coord.yaml]',
          })
          .options({ config: CONTROL_OPTIONS.config }),
      async (a) => {
        const file = a.file ?? (await (await load.target()).readNodeFile(a)).path;
        const { checkConfigFile, formatIssues, summarize } = await load.check();
        if (file === undefined)
          throw new CoordError('ERR_COORD_USAGE', 'no config file to check', {
            hint: 'give the file: coord check-config /etc/coord/coord.yaml',
          });
        const { config, issues } = await checkConfigFile(file);
        if (config === undefined) {
          process.stderr.write(`${formatIssues(file, issues)}\n`);
          code = 2;
          return;
        }
        process.stdout.write(`${summarize(file, config)}\n`);
      },
    )
    .command(
      'etcd-roles',
      'print (or with --apply create) the etcd roles for least privilege: coord-node-CLUSTER and coord-admin-CLUSTER',
      (y) =>
        y
          .options(ROLES_OPTIONS)
          .example('coord etcd-roles --cluster prod', 'print the etcdctl commands')
          .example(
            'coord etcd-roles --cluster prod --apply --etcd https://10.0.0.2:2379 --etcd-user root --etcd-password-file /root/etcd-root',
            'create them',
          ),
      async (a) => {
        if (!a.apply) {
          // Only the cluster is needed to print; it is validated like everywhere (it names keys and roles).
          const { mergeConnection, readNodeFile } = await load.target();
          const { coordRoles, etcdctlRoleCommands } = await load.etcd();
          const { path, raw } = await readNodeFile(a);
          const { cluster } = mergeConnection(raw, { cluster: a.cluster }, path ?? 'flags');
          if (cluster === undefined)
            throw new CoordError('ERR_COORD_USAGE', 'no cluster: give --cluster', {
              hint: 'e.g. coord etcd-roles --cluster prod',
            });
          process.stdout.write(`${etcdctlRoleCommands(coordRoles(cluster)).join('\n')}\n`);
          process.stdout.write(
            `# then bind users: etcdctl user grant-role USER coord-node-${cluster} (each node) or coord-admin-${cluster} (operators)\n`,
          );
          return;
        }
        const { applyRoles, coordRoles } = await load.etcd();
        const t = await (await load.target()).resolveTarget(a);
        const r = await applyRoles(t.connection, coordRoles(t.cluster));
        for (const n of r.created) process.stdout.write(`created role ${n}\n`);
        for (const n of r.updated) process.stdout.write(`role ${n} existed; permissions granted\n`);
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
