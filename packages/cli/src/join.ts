import { rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { CoordError, DEFAULT_CONFIG_PATH, systemClock } from '@coord/core';
import {
  attachHealth,
  attachHooks,
  CoordNode,
  DEFAULT_CONTROL_SOCKET,
  HaproxyLoop,
  Metrics,
  serveMetrics,
  startControlServer,
  VrrpNode,
} from '@coord/agent';
import { bindPreflight, checkNonlocalBind, createHaproxyDriver, type HaproxyDriver } from '@coord/haproxy';
import {
  createAnnouncer,
  createNetlinkVipPort,
  createWireProber,
  releaseStartupPagesLater,
  watchAddresses,
  withDeadManSwitch,
} from '@coord/vip';
import { createLogger } from './logging.js';
import { buildJoinConfig, changesNeedingRestart, type JoinArgs } from './join-config.js';
import { configPath } from './target.js';
import { VERSION } from './version.js';

export { buildJoinConfig, type JoinArgs };

/** `coord join`: run in the foreground until SIGTERM/SIGINT; SIGHUP re-reads the config file. */
export async function runJoin(args: JoinArgs): Promise<number> {
  const config = await buildJoinConfig(args);
  const logger = createLogger(
    config.logLevel,
    config.logFormat === undefined ? {} : { json: config.logFormat === 'json' },
  );
  if (process.getuid?.() !== 0) {
    logger.warn('not running as root: adding VIPs needs CAP_NET_ADMIN and announcing needs CAP_NET_RAW');
  }
  const clock = systemClock();
  const metrics = new Metrics();
  // If this process dies without removing its VIPs (kill -9, OOM), a helper process removes them at once.
  const vipPort = withDeadManSwitch(createNetlinkVipPort({ logger, clock }), { logger });
  const announcer = createAnnouncer({ logger });
  const hooks = attachHooks({ config, logger });
  let haproxyLoop: HaproxyLoop | undefined;
  let haproxyDriver: HaproxyDriver | undefined;
  let publish: (() => void) | undefined;
  if (config.haproxy !== undefined && config.mode === 'etcd') {
    const h = config.haproxy;
    const nonlocal = await checkNonlocalBind({ mode: h.nonlocalBind });
    if (nonlocal.changed)
      logger.info('set net.ipv4.ip_nonlocal_bind=1 so HAProxy can bind VIPs this node does not hold');
    const driver = createHaproxyDriver({
      configPath: h.config,
      ...(h.base === undefined ? {} : { basePath: h.base }),
      haproxyBin: h.bin,
      runDir: h.runDir,
      logger,
      clock,
      preflight: bindPreflight,
    });
    haproxyDriver = driver;
    haproxyLoop = new HaproxyLoop({
      cluster: config.cluster ?? 'default',
      driver,
      clock,
      logger,
      metrics,
      onApplied: () => publish?.(),
      node: config.node,
    });
  } else if (config.haproxy !== undefined) {
    logger.warn('the HAProxy loop runs in etcd mode only for now; the haproxy settings are ignored');
  }
  // The tracker is attached to the node below; the node asks it for failing checks when it writes its status.
  let failingChecks: () => readonly string[] = () => [];
  const node =
    config.mode === 'vrrp'
      ? new VrrpNode(config, {
          clock,
          logger,
          vipPort,
          announcer,
          metrics,
          onTransition: (group, t) => {
            const state = t.to === 'master' ? 'leader' : t.to === 'backup' ? 'follower' : 'stop';
            hooks?.notify(group, state, t.reason, null);
          },
        })
      : new CoordNode(config, {
          clock,
          logger,
          vipPort,
          announcer,
          prober: createWireProber({ logger }),
          // Its own address writes come from the VIP port's socket: their notifications are filtered out.
          watchAddresses: (onEvent) =>
            watchAddresses(onEvent, { logger, ignoreEchoesOf: vipPort.echoPort?.() ?? null }),
          version: VERSION,
          metrics,
          failingChecks: () => failingChecks(),
          ...(haproxyLoop === undefined ? {} : { haproxy: haproxyLoop }),
          onFact: (f) => {
            if (f.type === 'vipClaimed') hooks?.notify(f.group, 'leader', 'vip claimed', f.epoch);
            // A fault or a stop is notified as such (by the tracker / at shutdown), not as "follower".
            const own = f.type === 'transitioned' && (f.reason === 'fault' || f.reason === 'stopping');
            if (f.type === 'transitioned' && f.from === 'leader' && f.to === 'follower' && !own) {
              hooks?.notify(f.group, 'follower', f.reason, null);
            }
          },
        });
  if (node instanceof CoordNode) publish = () => node.publishNow();
  // Both modes: weights move the priority, a failing check without weight is FAULT.
  let current = config;
  const tracker = attachHealth({
    config,
    current: () => current,
    target: node,
    clock,
    logger,
    metrics,
    onFault: (group, fault, reasons) =>
      hooks?.notify(group, fault ? 'fault' : 'follower', reasons.join('; ') || 'checks pass', null),
  });
  if (tracker !== undefined) failingChecks = () => tracker.failing();
  const servers: Server[] = [];
  if (config.metrics !== undefined) servers.push(await serveMetrics(metrics, config.metrics, logger));

  /** Re-read the config file; apply what can change live, keep running on any error. */
  const reload = async () => {
    if (configPath(args) === undefined) {
      throw new CoordError(
        'ERR_COORD_USAGE',
        'this node was started without a config file: nothing to re-read',
        {
          hint: `start coord join with --config FILE (or put the config in ${DEFAULT_CONFIG_PATH}) to use reload-config`,
        },
      );
    }
    const next = await buildJoinConfig(args);
    // Only priorities and preemption change live; anything else is refused as a whole (nothing half-applied).
    // Rotated certificate files are picked up either way (applyConfig does it too; a second look is a no-op).
    const pending = changesNeedingRestart(current, next);
    if (pending.length > 0 && node instanceof CoordNode) node.recheckTls();
    const result = pending.length > 0 ? { applied: [], restartRequired: pending } : node.applyConfig(next);
    if (result.restartRequired.length === 0) {
      current = next;
      // Health verdicts are relative to the base priorities: recompute them from the new ones.
      tracker?.recompute();
    } else {
      // `coord reload-config` (and so `systemctl reload`) prints this and exits 3; a SIGHUP has only the log.
      logger.warn('config reload not applied: these changes need a restart', {
        restartRequired: result.restartRequired,
        hint: 'restart coord to apply them (its VIPs move to another node meanwhile)',
      });
    }
    return result;
  };
  const controlPath = config.controlSocket ?? DEFAULT_CONTROL_SOCKET;
  if (controlPath !== '') {
    servers.push(
      await startControlServer(
        controlPath,
        {
          status: () => ({
            mode: config.mode,
            node: config.node,
            status: node.status(),
            ...(tracker === undefined ? {} : { health: tracker.report() }),
          }),
          reloadConfig: reload,
        },
        logger,
      ),
    );
  }

  let stopping: Promise<void> | null = null;
  let release: { stop(): void } | undefined;
  const done = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      if (stopping !== null) return;
      logger.info('stopping', { signal });
      release?.stop();
      // No health verdict may act on the node while (or after) it stops.
      tracker?.stop();
      stopping = node.stop().then(
        () => resolve(0),
        (e: unknown) => {
          logger.error('stop failed', { error: e instanceof Error ? e.message : String(e) });
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      reload().catch((e: unknown) => {
        logger.error('config reload refused; keeping the running config', {
          error: e instanceof Error ? e.message : String(e),
          ...(e instanceof CoordError && e.hint !== undefined ? { hint: e.hint } : {}),
        });
      });
    });
  });
  for (const g of config.groups) hooks?.notify(g.name, 'follower', 'started', null);
  tracker?.start();
  await node.start();
  // Most of an idle agent's memory is pages of the runtime that start-up touched once: they go back to the page
  // cache once the node runs (docs/design.md, "Footprint: the runtime's file pages"). Not once it is stopping.
  if (stopping === null) release = releaseStartupPagesLater({ clock, logger });
  const code = await done;
  // HAProxy itself keeps running: a coord restart must not interrupt traffic.
  await haproxyDriver?.stop();
  for (const g of config.groups) hooks?.notify(g.name, 'stop', 'stopping', null);
  if (hooks !== undefined) {
    await Promise.race([
      hooks.runner.drain(),
      new Promise((r) => setTimeout(r, config.notify.timeoutMs + 1000)),
    ]);
  }
  for (const s of servers) s.close();
  if (controlPath !== '') rmSync(controlPath, { force: true });
  vipPort.close();
  announcer.close();
  return code;
}
