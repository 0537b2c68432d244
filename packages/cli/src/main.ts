import yargs, { type Argv } from 'yargs';
import {
  CoordError,
  DEFAULT_CONTROL_SOCKET,
  errorMessage,
  isCoordError,
  parseDurationMs,
  type NodeConfig,
} from '@coord/core';
import {
  COMMANDS,
  CONTROL_OPTIONS,
  DOCTOR_OPTIONS,
  FENCE_OPTIONS,
  DRAIN_OPTIONS,
  MAINTENANCE_OPTIONS,
  MOVE_OPTIONS,
  DRILL_OPTIONS,
  EVENTS_OPTIONS,
  IMPORT_OPTIONS,
  envArgs,
  JOIN_OPTIONS,
  LIST_OPTIONS,
  ROLES_OPTIONS,
  SERVER_SET_OPTIONS,
  SERVICE_OPTIONS,
  SERVICE_SET_OPTIONS,
  STATUS_OPTIONS,
  subcommand,
  unknownArguments,
  type CommandDoc,
} from './options.js';
import type { FenceOutcome, LeaseRelease } from './fence.js';
import { VERSION, versionText } from './version.js';

/**
 * Each command loads its implementation when it runs: `coord --version` and `--help` load only yargs and the
 * option tables, `coord status` never loads the agent (docs: the footprint targets in the README).
 */
const load = {
  join: () => import('./join.js'),
  joinConfig: () => import('./join-config.js'),
  fence: () => import('./fence.js'),
  services: () => import('./services.js'),
  status: () => import('./status.js'),
  check: () => import('./check.js'),
  doctor: () => import('./doctor.js'),
  maintenance: () => import('./maintenance.js'),
  move: () => import('./move.js'),
  drill: () => import('./drill.js'),
  events: () => import('./events.js'),
  import: () => import('./import.js'),
  target: () => import('./target.js'),
  control: () => import('@coord/agent/control'),
  etcd: () => import('@coord/etcd'),
};

async function controlRequest(...args: Parameters<typeof import('@coord/agent/control').controlRequest>) {
  return (await load.control()).controlRequest(...args);
}

/**
 * `coord fence`'s second step in etcd mode: give up the ended process's lease (fence.ts, releaseLease). Bounded by
 * one TTL — the lease is gone by itself after that — so a stop is never held up by an etcd that does not answer.
 */
async function releaseNodeLease(
  config: NodeConfig,
  outcomes: readonly FenceOutcome[],
): Promise<LeaseRelease> {
  if (config.cluster === undefined) return { result: 'kept', reason: 'no cluster in the config' };
  const [{ withEtcd }, { clusterKeys, loadConnection }, { releaseLease }] = await Promise.all([
    load.target(),
    load.etcd(),
    load.fence(),
  ]);
  const timeoutMs = Math.max(1000, config.ttlSec * 1000);
  try {
    const target = {
      connection: loadConnection(config.etcd, { callTimeoutMs: timeoutMs }),
      cluster: config.cluster,
      timeoutMs,
    };
    return await withEtcd(target, (etcd, cluster) =>
      releaseLease(clusterKeys(cluster).member(config.node), etcd, outcomes),
    );
  } catch (e) {
    return { result: 'failed', error: errorMessage(e) };
  }
}

/** Add a command's documented examples (options.ts) to its yargs builder. */
function documented<T>(y: Argv<T>, doc: CommandDoc): Argv<T> {
  let out = y;
  for (const [cmd, what] of doc.examples) out = out.example(cmd, what);
  return withManPointer(out);
}

/** Every command's help ends by saying where the rest is (exit codes and variables are not in --help). */
function withManPointer<T>(y: Argv<T>): Argv<T> {
  return y.epilogue(
    'Exit status, COORD_* variables and every command: man coord. The config file: man coord.yaml.',
  );
}

const sub = (parent: 'service' | 'server', name: string): CommandDoc => subcommand(COMMANDS[parent], name);

/** The two positionals every `coord server` subcommand starts with. */
function serverPositionals<T>(y: Argv<T>) {
  return y
    .positional('service', {
      type: 'string',
      demandOption: true,
      describe: 'the service the server belongs to',
    })
    .positional('name', {
      type: 'string',
      demandOption: true,
      describe: 'the server, unique in its service',
    });
}

/** The control socket of the local coord: --control-socket, else the config's controlSocket, else the default. */
async function controlSocketOf(a: {
  config?: string | undefined;
  controlSocket?: string | undefined;
}): Promise<string> {
  const path = a.controlSocket ?? (await (await load.target()).readNodeFile(a)).raw.controlSocket;
  // '' turns the socket off (controlSocket: '' in the config): say so instead of trying the default path.
  if (path === '')
    throw new CoordError('ERR_COORD_USAGE', "this node's control socket is off (controlSocket: '')", {
      hint:
        'give it a path to use status --local and reload-config; meanwhile SIGHUP re-reads the config ' +
        '(systemctl kill -s HUP coord; the outcome is only in its log)',
    });
  return typeof path === 'string' ? path : DEFAULT_CONTROL_SOCKET;
}

/**
 * `coord status` cannot reach etcd: say what that means for the cluster, not only for this command — nobody can be
 * elected while etcd is away, and each node still knows what it holds (docs/design.md, "Riding out etcd outages").
 */
function etcdAwayHint(e: unknown): unknown {
  if (!(e instanceof CoordError) || e.code !== 'ERR_COORD_ETCD') return e;
  const kind = (e.details as { kind?: string } | undefined)?.kind;
  if (kind !== 'deadline' && kind !== 'unavailable' && kind !== 'other') return e;
  return new CoordError('ERR_COORD_ETCD', e.message, {
    cause: e,
    hint:
      `${e.hint ?? ''}${e.hint === undefined ? '' : '. '}While etcd is unreachable no new holder can be elected: ` +
      'each holder keeps its VIP only with etcdOutage: hold (on every other member’s promise), else drops it at ' +
      'its lease deadline. What a node holds now: coord status --local on that node.',
    ...(e.details === undefined ? {} : { details: e.details }),
  });
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
  // `coord -v` is `coord version` (version, runtime, build); `--version` / `-V` stay the bare version for scripts.
  if (argv.length === 1 && argv[0] === '-v') argv = ['version'];
  // yargs answers `completion` with a script whatever follows: help and a shell it has no script for are ours.
  if (argv[0] === 'completion') {
    const doc = COMMANDS.completion;
    if (argv.includes('--help') || argv.includes('-h')) {
      const examples = doc.examples.map(([cmd, what]) => `  ${cmd}${what === '' ? '' : `  # ${what}`}`);
      process.stdout.write(
        `coord ${doc.command}\n\n${doc.summary}\n\nExamples:\n${examples.join('\n')}\n\nEvery command: man coord.\n`,
      );
      return 0;
    }
    const wanted = argv[1];
    if (argv.length > 2 || (wanted !== undefined && wanted !== 'bash' && wanted !== 'zsh')) {
      process.stderr.write(
        `coord: completion: no script for ${argv.slice(1).join(' ')}\nhint: coord completion bash, or coord completion zsh\n`,
      );
      return 2;
    }
  }
  // `coord completion zsh|bash`: yargs picks the script by the shell it finds in the environment when it is
  // created, so that environment is set for that moment only.
  const shell = argv[0] === 'completion' && (argv[1] === 'zsh' || argv[1] === 'bash') ? argv[1] : undefined;
  if (shell !== undefined) argv = ['completion', ...argv.slice(2)];
  const saved = { SHELL: process.env.SHELL, ZSH_NAME: process.env.ZSH_NAME };
  if (shell !== undefined) {
    process.env.SHELL = `/bin/${shell}`;
    if (shell === 'zsh') process.env.ZSH_NAME = 'zsh';
    else delete process.env.ZSH_NAME;
  }
  // COORD_* variables apply only to the options of the command being run (options.ts).
  const parser = yargs([...argv, ...envArgs(argv, env)]);
  for (const [k, v] of Object.entries(saved))
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  const cli = parser
    .scriptName('coord')
    // main() returns the exit status; bin/coord.js exits with it (completion, --help and --version too).
    .exitProcess(false)
    .version(VERSION)
    .strict()
    .recommendCommands()
    .demandCommand(
      1,
      'name a command: join | status | service | server | maintenance | move | drill | events | import | reload-config | check-config | doctor | fence | etcd-roles | completion | version (see coord --help)',
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
      COMMANDS.join.command,
      COMMANDS.join.summary,
      (y) => documented(y.options(JOIN_OPTIONS), COMMANDS.join),
      async (a) => {
        code = await (await load.join()).runJoin(a);
      },
    )
    .command(
      COMMANDS.status.command,
      COMMANDS.status.summary,
      (y) => documented(y.options(STATUS_OPTIONS), COMMANDS.status),
      async (a) => {
        if (a.local) {
          const res = await controlRequest(await controlSocketOf(a), { cmd: 'status' });
          if (!res.ok)
            throw new CoordError(
              'ERR_COORD_USAGE',
              res.error,
              res.hint === undefined ? {} : { hint: res.hint },
            );
          process.stdout.write(
            a.json
              ? `${JSON.stringify(res.result, null, 2)}\n`
              : `${(await load.status()).formatLocalStatus(res.result)}\n`,
          );
          return;
        }
        const { formatClusterStatus, readClusterStatus } = await load.status();
        const s = await readClusterStatus(await (await load.target()).resolveTarget(a)).catch(
          (e: unknown) => {
            throw etcdAwayHint(e);
          },
        );
        process.stdout.write(a.json ? `${JSON.stringify(s, null, 2)}\n` : `${formatClusterStatus(s)}\n`);
      },
    )
    .command(COMMANDS.service.command, COMMANDS.service.summary, (y) =>
      y
        .options(SERVICE_OPTIONS)
        .command(
          sub('service', 'set').command,
          sub('service', 'set').summary,
          (z) =>
            documented(
              z
                .positional('name', {
                  type: 'string',
                  demandOption: true,
                  describe: 'the service (letters, digits, -, _)',
                })
                .options(SERVICE_SET_OPTIONS),
              sub('service', 'set'),
            ),
          async (a) => {
            const timeoutMs = parseDurationMs(a.rolloutTimeout);
            if (timeoutMs === undefined)
              throw new CoordError(
                'ERR_COORD_USAGE',
                `--rollout-timeout ${a.rolloutTimeout} is not a duration`,
                {
                  hint: 'give seconds or a duration like 60s, 5m',
                },
              );
            const services = await load.services();
            const w = await services.serviceSet(a);
            if (w.revision === 0) {
              process.stdout.write(`service ${a.name} unchanged\n`);
              return;
            }
            process.stdout.write(`service ${a.name} set (etcd revision ${w.revision})\n`);
            if (w.rollout === undefined) return;
            process.stdout.write(
              `rolling out to ${w.rollout.order.join(' → ')} (one at a time, holders last)\n`,
            );
            if (!a.wait) {
              process.stdout.write('not waiting (--no-wait): coord status shows where it is\n');
              return;
            }
            const end = await services.waitRollout(a, w.rollout, timeoutMs, (node, step) =>
              process.stdout.write(
                `  ${node.padEnd(16)} ${step.state === 'ok' ? 'ok' : 'FAILED'}  ${Math.round(step.ms)} ms${step.error === undefined ? '' : `  ${step.error}`}\n`,
              ),
            );
            if (end.end === 'done') {
              const took = ((end.record.endedAt ?? Date.now()) - end.record.startedAt) / 1000;
              process.stdout.write(
                `rollout of ${a.name} done in ${took.toFixed(1)} s: every node serves it\n`,
              );
            } else if (end.end === 'superseded') {
              process.stdout.write(`rollout of ${a.name} was replaced by a newer change to it\n`);
            } else if (end.end === 'stopped') {
              throw new CoordError(
                'ERR_COORD_HAPROXY',
                `rollout of ${a.name} stopped: ${end.record.reason ?? 'no reason'}; every node runs the previous version`,
                {
                  hint: `fix the service and run coord service set ${a.name} again (the node's coord log has the details)`,
                },
              );
            } else {
              throw new CoordError(
                'ERR_COORD_HAPROXY',
                `rollout of ${a.name} still running after ${a.rolloutTimeout}`,
                { hint: 'coord status shows which node it waits on; it goes on without this command' },
              );
            }
          },
        )
        .command(
          sub('service', 'rm').command,
          sub('service', 'rm').summary,
          (z) =>
            withManPointer(z).positional('name', {
              type: 'string',
              demandOption: true,
              describe: 'the service to remove',
            }),
          async (a) => {
            if (!(await (await load.services()).serviceRm(a)))
              throw new CoordError('ERR_COORD_USAGE', `no service ${a.name}: nothing removed`, {
                hint: 'coord service list shows the services (names are case-sensitive)',
              });
            process.stdout.write(`service ${a.name} removed\n`);
          },
        )
        .command(
          sub('service', 'list').command,
          sub('service', 'list').summary,
          (z) => z.options(LIST_OPTIONS),
          async (a) => {
            const { formatServiceList, serviceList } = await load.services();
            const l = await serviceList(a);
            process.stdout.write(a.json ? `${JSON.stringify(l, null, 2)}\n` : `${formatServiceList(l)}\n`);
          },
        )
        .demandCommand(1, 'name a subcommand: set | rm | list'),
    )
    .command(COMMANDS.server.command, COMMANDS.server.summary, (y) =>
      y
        .options(SERVICE_OPTIONS)
        .command(
          sub('server', 'set').command,
          sub('server', 'set').summary,
          (z) =>
            documented(
              serverPositionals(z)
                .positional('address', { type: 'string', demandOption: true, describe: 'ADDR:PORT' })
                .options(SERVER_SET_OPTIONS),
              sub('server', 'set'),
            ),
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
          sub('server', 'rm').command,
          sub('server', 'rm').summary,
          (z) => serverPositionals(withManPointer(z)),
          async (a) => {
            if (!(await (await load.services()).serverRm(a)))
              throw new CoordError('ERR_COORD_USAGE', `no server ${a.service}/${a.name}: nothing removed`, {
                hint: `coord service list shows the services and their servers`,
              });
            process.stdout.write(`server ${a.service}/${a.name} removed\n`);
          },
        )
        .command(
          sub('server', 'enable').command,
          sub('server', 'enable').summary,
          (z) => serverPositionals(withManPointer(z)),
          async (a) => {
            const rev = await (await load.services()).serverEnable(a, true);
            process.stdout.write(
              rev === 0
                ? `server ${a.service}/${a.name} already enabled\n`
                : `server ${a.service}/${a.name} enabled (etcd revision ${rev})\n`,
            );
          },
        )
        .command(
          sub('server', 'drain').command,
          sub('server', 'drain').summary,
          (z) => documented(serverPositionals(z).options(DRAIN_OPTIONS), sub('server', 'drain')),
          async (a) => {
            const waitMs = a.wait === undefined ? undefined : parseDurationMs(a.wait);
            if (waitMs === undefined && a.wait !== undefined)
              throw new CoordError('ERR_COORD_USAGE', `--wait ${a.wait} is not a duration`, {
                hint: 'give seconds or a duration like 30s, 2m',
              });
            const id = `${a.service}/${a.name}`;
            const r = await (await load.services()).serverDrain(a, waitMs);
            const per = Object.entries(r.nodes)
              .map(([n, v]) => `${n} ${v === null ? 'unknown' : v}`)
              .join(', ');
            if (r.drained === undefined) {
              process.stdout.write(
                `server ${id} disabled: no new sessions; current ones finish (--wait 30s waits for them)\n`,
              );
            } else if (r.drained) {
              process.stdout.write(
                `server ${id} drained: 0 sessions on ${Object.keys(r.nodes).join(', ')} (waited ${(r.waitedMs / 1000).toFixed(1)} s)\n`,
              );
            } else {
              throw new CoordError(
                'ERR_COORD_HAPROXY',
                `server ${id} still has sessions after ${a.wait ?? ''}: ${per || 'no node with an HAProxy loop answered'}`,
                {
                  hint: `it gets no new sessions; wait longer (--wait), or remove it anyway with coord server rm ${a.service} ${a.name}`,
                },
              );
            }
          },
        )
        .command(
          sub('server', 'disable').command,
          sub('server', 'disable').summary,
          (z) => serverPositionals(withManPointer(z)),
          async (a) => {
            const rev = await (await load.services()).serverEnable(a, false);
            process.stdout.write(
              rev === 0
                ? `server ${a.service}/${a.name} already disabled\n`
                : `server ${a.service}/${a.name} disabled: no new sessions (etcd revision ${rev})\n`,
            );
          },
        )
        .demandCommand(1, 'name a subcommand: set | rm | enable | disable | drain'),
    )
    .command(
      COMMANDS['reload-config'].command,
      COMMANDS['reload-config'].summary,
      (y) => withManPointer(y).options(CONTROL_OPTIONS),
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
      COMMANDS['check-config'].command,
      COMMANDS['check-config'].summary,
      (y) =>
        withManPointer(y)
          .positional('file', {
            type: 'string',
            describe: 'the YAML config file [default: --config, else /etc/coord/coord.yaml]',
          })
          .options(COMMANDS['check-config'].options),
      async (a) => {
        const file = a.file ?? (await (await load.target()).readNodeFile(a)).path;
        const { checkConfigFile, formatIssues, missingFileWarnings, summarize } = await load.check();
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
        const warnings = await missingFileWarnings(config);
        if (warnings.length > 0) {
          process.stderr.write(`${formatIssues(file, warnings, 'warning')}\n`);
          if (a.strict) {
            process.stderr.write(`${file}: ${warnings.length} warning(s), and --strict makes them errors\n`);
            code = 2;
            return;
          }
        }
        process.stdout.write(`${summarize(file, config)}\n`);
      },
    )
    .command(
      COMMANDS.maintenance.command,
      COMMANDS.maintenance.summary,
      (y) =>
        documented(
          y
            .positional('state', {
              type: 'string',
              choices: ['on', 'off'] as const,
              demandOption: true,
              describe: 'on: out of the election; off: back in',
            })
            .options(MAINTENANCE_OPTIONS),
          COMMANDS.maintenance,
        ),
      async (a) => {
        const { describeMaintenance, setMaintenance } = await load.maintenance();
        const state = a.state === 'on' ? 'on' : 'off';
        const r = await setMaintenance({ ...a, state });
        process.stdout.write(`${describeMaintenance(state, r)}\n`);
      },
    )
    .command(
      COMMANDS.move.command,
      COMMANDS.move.summary,
      (y) =>
        documented(
          y
            .positional('group', { type: 'string', demandOption: true, describe: 'the VIP group to move' })
            .options(MOVE_OPTIONS),
          COMMANDS.move,
        ),
      async (a) => {
        const { formatMove, move } = await load.move();
        const r = await move(a);
        process.stdout.write(`${formatMove(a, r)}\n`);
        if (r.kind === 'moved' && r.tookMs === null) code = 1;
      },
    )
    .command(
      COMMANDS.drill.command,
      COMMANDS.drill.summary,
      (y) =>
        documented(
          y
            .positional('group', { type: 'string', demandOption: true, describe: 'the VIP group to drill' })
            .options(DRILL_OPTIONS),
          COMMANDS.drill,
        ),
      async (a) => {
        const maxGapMs = parseDurationMs(a.maxGap);
        if (maxGapMs === undefined || maxGapMs <= 0)
          throw new CoordError('ERR_COORD_USAGE', `--max-gap must be a duration, got ${a.maxGap}`, {
            hint: 'e.g. --max-gap 250ms or --max-gap 0.5s',
          });
        const [{ runDrill, formatVerdict, interfaceMac, drillVip }, { buildJoinConfig }, target] =
          await Promise.all([load.drill(), load.joinConfig(), load.target()]);
        if (target.configPath(a) === undefined)
          throw new CoordError(
            'ERR_COORD_USAGE',
            'coord drill runs on a node of the group: it needs its config',
            {
              hint: 'give --config FILE (the file coord join runs with), or run it where /etc/coord/coord.yaml is',
            },
          );
        const { createNetlinkVipPort, createWireProber } = await import('@coord/vip');
        const config = await buildJoinConfig({ config: a.config });
        const group = config.groups.find((g) => g.name === a.group);
        const opened =
          group === undefined ? undefined : createWireProber().open(group.interface, [drillVip(group.vips)]);
        if (opened !== undefined && !opened.ok)
          throw new CoordError('ERR_COORD_USAGE', `cannot probe ${group?.interface}: ${opened.reason}`, {
            hint: 'coord drill sends ARP probes: run it as root (CAP_NET_RAW) on a node of the group',
          });
        const port = createNetlinkVipPort();
        // With --json the report says it all; without, each step is printed as it is judged.
        const log = (l: string) => {
          if (!a.json) process.stdout.write(`${l}\n`);
        };
        try {
          const t = await target.resolveTarget(a);
          const report = await target.withEtcd(
            t,
            async (etcd, cluster) =>
              runDrill(
                config,
                { group: a.group, to: a.to, maxGapMs },
                {
                  etcd,
                  cluster,
                  // runDrill refuses a group missing from the config before it probes.
                  probe:
                    opened?.ok === true ? opened.session : { probe: () => 0, drain: () => [], close() {} },
                  addresses: port,
                  localMac: group === undefined ? '' : await interfaceMac(group.interface),
                  log,
                },
              ),
            // Two moves, each up to 10 s, on top of etcd's answers.
            20_000,
          );
          process.stdout.write(
            a.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatVerdict(report)}\n`,
          );
          if (!report.ok) code = 1;
        } finally {
          if (opened?.ok === true) opened.session.close();
          port.close();
        }
      },
    )
    .command(
      COMMANDS.events.command,
      COMMANDS.events.summary,
      (y) => documented(y.options(EVENTS_OPTIONS), COMMANDS.events),
      async (a) => {
        const { showEvents } = await load.events();
        await showEvents(a, (line) => process.stdout.write(`${line}\n`));
      },
    )
    .command(
      COMMANDS.import.command,
      COMMANDS.import.summary,
      (y) =>
        documented(
          y
            .positional('kind', {
              type: 'string',
              choices: ['keepalived'] as const,
              demandOption: true,
              describe: 'the configuration language to read',
            })
            .positional('file', {
              type: 'string',
              demandOption: true,
              describe: 'the keepalived.conf to convert',
            })
            .options(IMPORT_OPTIONS),
          COMMANDS.import,
        ),
      async (a) => {
        const { importKeepalived } = await load.import();
        code = await importKeepalived(
          {
            file: a.file,
            out: a.out,
            mode: a.mode === 'etcd' ? 'etcd' : 'vrrp',
            configId: a['config-id'],
            etcd: a.etcd,
            cluster: a.cluster,
            force: a.force,
          },
          (t) => process.stdout.write(t),
          (t) => process.stderr.write(t),
        );
      },
    )
    .command(
      COMMANDS.doctor.command,
      COMMANDS.doctor.summary,
      (y) => documented(y.options(DOCTOR_OPTIONS), COMMANDS.doctor),
      async (a) => {
        const { buildJoinConfig } = await load.joinConfig();
        const { etcdFacts, exitCodeOf, formatFindings, gatherFacts, judge, worst } = await load.doctor();
        const { createNetlinkVipPort } = await import('@coord/vip');
        const config = await buildJoinConfig(a);
        const port = createNetlinkVipPort();
        try {
          const facts = await gatherFacts(config, {
            listAddresses: (iface) => port.list(iface),
            ...(config.mode === 'etcd' ? { etcd: () => etcdFacts(config) } : {}),
          });
          const findings = judge(config, facts);
          const verdict = worst(findings);
          process.stdout.write(
            a.json
              ? `${JSON.stringify({ node: config.node, verdict, findings }, null, 2)}\n`
              : `${formatFindings(findings)}\n`,
          );
          code = exitCodeOf(verdict);
        } finally {
          port.close();
        }
      },
    )
    .command(
      COMMANDS.fence.command,
      COMMANDS.fence.summary,
      (y) => documented(y.options(FENCE_OPTIONS), COMMANDS.fence),
      async (a) => {
        const [{ buildJoinConfig }, fence] = await Promise.all([load.joinConfig(), load.fence()]);
        const config = await buildJoinConfig(a);
        if (!a.force) await fence.refuseWhileRunning(config.controlSocket ?? DEFAULT_CONTROL_SOCKET);
        const { createNetlinkVipPort } = await import('@coord/vip');
        const port = createNetlinkVipPort();
        let outcomes: FenceOutcome[];
        try {
          outcomes = await fence.fenceVips(config, port);
          process.stdout.write(
            a.json ? `${JSON.stringify(outcomes, null, 2)}\n` : `${fence.formatFence(outcomes)}\n`,
          );
          code = fence.fenceExitCode(outcomes);
        } finally {
          port.close();
        }
        if (config.mode === 'etcd') {
          const release = await releaseNodeLease(config, outcomes);
          // --json keeps stdout the list of VIPs it always was.
          (a.json ? process.stderr : process.stdout).write(`${fence.formatRelease(release)}\n`);
        }
      },
    )
    .command(
      COMMANDS['etcd-roles'].command,
      COMMANDS['etcd-roles'].summary,
      (y) => documented(y.options(ROLES_OPTIONS), COMMANDS['etcd-roles']),
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
    .command(
      COMMANDS.version.command,
      COMMANDS.version.summary,
      (y) => withManPointer(y),
      () => {
        process.stdout.write(`${versionText()}\n`);
      },
    )
    .completion('completion', COMMANDS.completion.summary)
    .command(
      'manpage <page>',
      false, // hidden: the package build generates coord(8) and coord.yaml(5) with it
      (y) =>
        y.positional('page', { type: 'string', choices: ['coord.8', 'coord.yaml.5'], demandOption: true }),
      async (a) => {
        const { coordPage, configPage } = await import('./manpages.js');
        process.stdout.write(a.page === 'coord.8' ? coordPage(VERSION) : await configPage(VERSION));
      },
    )
    .fail((msg, err, y) => {
      if (err !== undefined && err !== null) throw err;
      const unknown = unknownArguments(msg, argv);
      if (unknown !== undefined)
        throw new CoordError('ERR_COORD_USAGE', unknown.message, { hint: unknown.hint });
      throw new CoordError('ERR_COORD_USAGE', msg, {
        hint: `see ${y.help !== undefined ? 'coord --help' : 'the help'}`,
      });
    })
    .help()
    .alias('h', 'help')
    .alias('V', 'version')
    .wrap(Math.min(110, process.stdout.columns ?? 110));
  skipHelpCache(cli);
  try {
    await cli.parseAsync();
  } catch (e) {
    return report(e);
  }
  return code;
}

/**
 * yargs renders a command's whole help text as soon as its handler has started, to have it at hand should the
 * command fail later (`cacheHelpMessage` in yargs' command handling). coord never prints help on a failure (see
 * `.fail` above: an error and a hint), and the render cost every command about 60 ms of its start, the agent's
 * included (README, "Footprint"). Without the cache, `--help` renders when asked, as before. Returns whether the
 * installed yargs still has that hook (a test holds it to that, so an upgrade cannot quietly bring the cost back).
 */
export function skipHelpCache(y: Argv): boolean {
  type Usage = { cacheHelpMessage?: unknown };
  const internal = y as unknown as { getInternalMethods?: () => { getUsageInstance?: () => Usage } };
  const usage = internal.getInternalMethods?.().getUsageInstance?.();
  if (usage === undefined || typeof usage.cacheHelpMessage !== 'function') return false;
  usage.cacheHelpMessage = () => {};
  return true;
}
