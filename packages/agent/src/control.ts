import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { CoordError, errorMessage, type Logger } from '@coord/core';

export { DEFAULT_CONTROL_SOCKET } from '@coord/core';

export type ControlRequest = { cmd: 'status' } | { cmd: 'reload-config' };
export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string; hint?: string };

export interface ControlHandlers {
  status(): unknown;
  reloadConfig(): Promise<unknown>;
}

const MAX_REQUEST = 4096;

function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * The local control socket: newline-delimited JSON, one request per connection, root-only permissions. It lets
 * an operator ask a node about itself without etcd (and in VRRP-only mode).
 */
export async function startControlServer(
  path: string,
  handlers: ControlHandlers,
  logger: Logger,
): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (await isAlive(path)) {
    throw new CoordError('ERR_COORD_USAGE', `another coord is already listening on ${path}`, {
      hint: 'stop it first, or give this one its own --control-socket PATH',
    });
  }
  try {
    unlinkSync(path);
  } catch {
    // no stale socket
  }
  const server = createServer((sock: Socket) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) {
        sock.end(`${JSON.stringify({ ok: false, error: 'request too large' } satisfies ControlResponse)}\n`);
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      void answer(line, handlers).then((res) => sock.end(`${JSON.stringify(res)}\n`));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new CoordError('ERR_COORD_USAGE', `cannot listen on ${path}: ${errorMessage(e)}`, {
          cause: e,
          hint: 'check --control-socket and that the directory is writable',
        }),
      ),
    );
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  logger.info('control socket listening', { path });
  return server;
}

async function answer(line: string, handlers: ControlHandlers): Promise<ControlResponse> {
  let req: unknown;
  try {
    req = JSON.parse(line);
  } catch {
    return { ok: false, error: 'request is not JSON' };
  }
  const cmd = typeof req === 'object' && req !== null ? (req as { cmd?: unknown }).cmd : undefined;
  try {
    if (cmd === 'status') return { ok: true, result: handlers.status() };
    if (cmd === 'reload-config') return { ok: true, result: await handlers.reloadConfig() };
    return { ok: false, error: `unknown command ${JSON.stringify(cmd)}` };
  } catch (e) {
    return e instanceof CoordError
      ? { ok: false, error: e.message, ...(e.hint === undefined ? {} : { hint: e.hint }) }
      : { ok: false, error: errorMessage(e) };
  }
}

/** Client side: send one request, get one response. */
export function controlRequest(
  path: string,
  req: ControlRequest,
  timeoutMs = 5000,
): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new CoordError('ERR_COORD_USAGE', `no answer from ${path} within ${timeoutMs} ms`, {
          hint: 'is coord join running?',
        }),
      );
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (c: string) => (buf += c));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new CoordError('ERR_COORD_USAGE', `cannot reach coord at ${path}: ${e.code ?? e.message}`, {
          cause: e,
          hint:
            'is coord join running on this host? pass --control-socket if it uses another path (a controlSocket ' +
            'changed in the file applies at the next restart: until then coord listens on the old one)',
        }),
      );
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlResponse);
      } catch {
        reject(new CoordError('ERR_COORD_INTERNAL', `malformed answer from ${path}`));
      }
    });
  });
}
