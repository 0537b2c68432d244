import { CoordError, parseDurationMs } from '@coord/core';
import { clusterKeys, decodeEvent, readPrefix, type EventRecord } from '@coord/etcd';
import { resolveTarget, withEtcd, withEtcdReader, type ConnectionArgs } from './target.js';

/**
 * `coord events`: the cluster's history of transitions, VIP claims and releases, as the nodes wrote it to etcd
 * (agent/src/events.ts: kept 7 days by default, then etcd drops it with its lease).
 */

export interface EventsArgs extends ConnectionArgs {
  group?: string | undefined;
  since?: string | undefined;
  follow?: boolean | undefined;
  json?: boolean | undefined;
}

/** How long `--follow` may run: setTimeout's limit (about 24 days); Ctrl-C ends it sooner. */
const FOLLOW_MS = 2_000_000_000;

/** Print the matching events, oldest first, then (with --follow) every new one as it is written. */
export async function showEvents(a: EventsArgs, write: (line: string) => void): Promise<number> {
  const sinceMs = a.since === undefined ? undefined : parseDurationMs(a.since);
  if (a.since !== undefined && sinceMs === undefined)
    throw new CoordError('ERR_COORD_USAGE', `--since ${a.since} is not a duration`, {
      hint: 'give a duration like 30m, 1h, 2d',
    });
  const from = sinceMs === undefined ? -Infinity : Date.now() - sinceMs;
  const keep = (e: EventRecord) => e.at >= from && (a.group === undefined || e.group === a.group);
  const line = (e: EventRecord) => (a.json === true ? JSON.stringify(e) : formatEvent(e));
  const t = await resolveTarget(a);
  const matching = (entries: ReadonlyMap<string, { value: Buffer }>) =>
    [...entries.values()]
      .map((e) => decodeEvent(e.value))
      .filter((e): e is EventRecord => e !== undefined && keep(e))
      .sort((x, y) => x.at - y.at);
  if (a.follow !== true) {
    // A read only: over etcd's JSON gateway when it can (target.ts), printed once it has all been read.
    const all = await withEtcdReader(t, async (etcd, cluster) =>
      matching((await readPrefix(etcd, clusterKeys(cluster).events)).entries),
    );
    for (const e of all) write(line(e));
    if (all.length === 0 && a.json !== true) write('(no events)');
    return all.length;
  }
  return withEtcd(
    t,
    async (etcd, cluster) => {
      const prefix = clusterKeys(cluster).events;
      const { revision, entries } = await readPrefix(etcd, prefix);
      for (const e of matching(entries)) write(line(e));
      return new Promise<number>((_, reject) => {
        void etcd
          .watch(prefix, revision + 1, {
            onEvents: (_rev, events) => {
              for (const ev of events) {
                if (ev.type !== 'put') continue;
                const e = decodeEvent(ev.entry.value);
                if (e !== undefined && keep(e)) write(line(e));
              }
            },
            onDisconnected: () => undefined,
            onConnected: () => undefined,
            onError: (err) => reject(err),
          })
          .catch(reject);
      });
    },
    FOLLOW_MS,
  );
}

function stamp(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** One event for a person: local time, node, group, what happened and why. */
export function formatEvent(e: EventRecord): string {
  const epoch = e.epoch === undefined || e.epoch === null ? '' : `  epoch ${e.epoch}`;
  const what =
    e.kind === 'transition'
      ? `${e.from ?? '?'} → ${e.to ?? '?'}  ${e.reason ?? ''}${epoch}${e.detail === undefined ? '' : `  (${e.detail})`}`
      : e.kind === 'vip-claimed'
        ? `VIP claimed${e.ms === undefined ? '' : ` ${e.ms} ms after the group fell vacant or was handed over`}${epoch}`
        : e.kind === 'vip-released'
          ? `VIP released (${e.reason ?? ''})`
          : `VIP REMOVAL FAILED: ${e.detail ?? ''}`;
  return `${stamp(e.at)}  ${e.node.padEnd(12)} ${e.group.padEnd(12)} ${what}`;
}
