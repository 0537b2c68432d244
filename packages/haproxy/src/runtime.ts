/**
 * Server changes without a reload: when two service sets differ only in their servers, the difference is applied
 * through HAProxy's runtime API (the workers' stats socket, `level admin`) — `add server` / `del server` for
 * dynamic servers, `set server … weight|addr`, `enable|disable server` — and the rendered file is written in the
 * same step, so the next reload starts from what the process runs. A reload starts a new worker, resets health
 * checks and `leastconn` counts and keeps old workers for long connections; the most frequent change (a backend
 * server added, removed, weighted, taken out) needs none of that. Anything the runtime API cannot do or refuses
 * falls back to a validated reload (driver.ts).
 *
 * Answers as HAProxy 2.6 gives them (docs/design.md, "HAProxy 2.6"): `add server` → "New server registered.",
 * `del server` → "Server deleted." (only for a server in maintenance without connections), `set server … addr`
 * → "… changed from …" / "no need to change …", every other command here → nothing on success.
 */
import { isIP } from 'node:net';
import type { Server, Service } from './model.js';
import { CHECK_PARAMS, formatEndpoint } from './render.js';

export interface RuntimeCommand {
  readonly command: string;
  /** Whether HAProxy's answer means the command took effect. */
  readonly accepts: (answer: string) => boolean;
}

export type RuntimePlan =
  | { readonly ok: true; readonly commands: readonly RuntimeCommand[]; readonly summary: string }
  /** Not a server-only change (or one the runtime API cannot make): reload, for this reason. */
  | { readonly ok: false; readonly reason: string };

const empty = (a: string) => a.trim() === '';
const cmd = (command: string, accepts: (a: string) => boolean = empty): RuntimeCommand => ({
  command,
  accepts,
});

/**
 * A service without its servers (nor how its changes roll out, which HAProxy never sees), as text: equal means
 * only servers differ.
 */
export function serviceShape(s: Service): string {
  const { servers: _servers, rollout: _rollout, rolloutCheck: _check, ...rest } = s;
  return JSON.stringify(rest);
}

function addServer(svc: Service, s: Server): RuntimeCommand[] {
  const id = `${svc.name}/${s.name}`;
  const parts = ['add server', id, formatEndpoint(s.address, s.port), 'weight', String(s.weight)];
  if (svc.check) parts.push('check', ...CHECK_PARAMS);
  if (s.backup) parts.push('backup');
  // A dynamic server starts in maintenance with its health check off.
  return [
    cmd(parts.join(' '), (a) => /New server registered/.test(a)),
    ...(svc.check ? [cmd(`enable health ${id}`)] : []),
    ...(s.disabled ? [] : [cmd(`enable server ${id}`)]),
  ];
}

/**
 * The runtime commands that turn `before` (what HAProxy runs) into `after`, or why a reload is needed instead.
 * Pure. Removals go first (a name may be reused with other settings), then changes, then additions.
 */
export function runtimePlan(before: readonly Service[], after: readonly Service[]): RuntimePlan {
  const was = new Map(before.map((s) => [s.name, s]));
  if (before.length !== after.length || after.some((s) => !was.has(s.name)))
    return { ok: false, reason: 'services added or removed' };
  const removals: RuntimeCommand[] = [];
  const changes: RuntimeCommand[] = [];
  const additions: RuntimeCommand[] = [];
  const counts = { added: 0, removed: 0, changed: 0 };
  for (const svc of after) {
    const old = was.get(svc.name) as Service;
    if (serviceShape(old) !== serviceShape(svc))
      return { ok: false, reason: `service ${svc.name} changed beyond its servers` };
    const oldServers = new Map(old.servers.map((s) => [s.name, s]));
    const newServers = new Map(svc.servers.map((s) => [s.name, s]));
    for (const s of old.servers) {
      if (newServers.has(s.name)) continue;
      const id = `${svc.name}/${s.name}`;
      removals.push(
        cmd(`disable server ${id}`),
        cmd(`del server ${id}`, (a) => /Server deleted/.test(a)),
      );
      counts.removed++;
    }
    for (const s of svc.servers) {
      const o = oldServers.get(s.name);
      if (isIP(s.address) === 0 && (o === undefined || o.address !== s.address))
        return { ok: false, reason: `server ${svc.name}/${s.name} has a host name (resolved at load)` };
      if (o === undefined) {
        additions.push(...addServer(svc, s));
        counts.added++;
        continue;
      }
      if (o.backup !== s.backup)
        return { ok: false, reason: `server ${svc.name}/${s.name} changed backup (not a runtime setting)` };
      const id = `${svc.name}/${s.name}`;
      const before = changes.length;
      if (o.address !== s.address || o.port !== s.port)
        changes.push(
          cmd(`set server ${id} addr ${s.address} port ${s.port}`, (a) =>
            /changed from|no need to change/.test(a),
          ),
        );
      if (o.weight !== s.weight) changes.push(cmd(`set server ${id} weight ${s.weight}`));
      if (o.disabled !== s.disabled) changes.push(cmd(`${s.disabled ? 'disable' : 'enable'} server ${id}`));
      if (changes.length > before) counts.changed++;
    }
  }
  const commands = [...removals, ...changes, ...additions];
  if (commands.length === 0) return { ok: false, reason: 'no server change' };
  return {
    ok: true,
    commands,
    summary: `${counts.added} added, ${counts.removed} removed, ${counts.changed} changed`,
  };
}
