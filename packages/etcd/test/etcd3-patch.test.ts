import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

// etcd3's generated service wrappers, as patched by patches/etcd3@1.1.2.patch (docs/design.md, "A cancelled watch
// dropped every stream, every 5 s").
const rpc = createRequire(import.meta.url)('etcd3/lib/rpc.js') as {
  WatchClient: new (pool: unknown) => { watch(): Promise<EventEmitter> };
  LeaseClient: new (pool: unknown) => { leaseKeepAlive(): Promise<EventEmitter> };
};

/** A connection pool with one host whose service client hands out `stream`; records markFailed calls. */
function pool(stream: EventEmitter & { writable: boolean }) {
  const failed: unknown[] = [];
  const client = { watch: () => stream, leaseKeepAlive: () => stream };
  return {
    failed,
    pool: {
      callOptionsFactory: undefined,
      withConnection: (_service: string, fn: (a: unknown) => unknown) =>
        Promise.resolve(fn({ resource: 'host-1', client, metadata: {} })),
      markFailed: (resource: unknown) => failed.push(resource),
    },
  };
}

const streamOf = () => Object.assign(new EventEmitter(), { writable: true });

describe.each([
  ['watch', (p: unknown) => new rpc.WatchClient(p).watch()],
  ['lease keepalive', (p: unknown) => new rpc.LeaseClient(p).leaseKeepAlive()],
])('etcd3 %s stream errors', (_name, open) => {
  it('its own cancellation (CANCELLED) does not mark the host failed — that closed every channel to it', async () => {
    const s = streamOf();
    const p = pool(s);
    await open(p.pool);
    s.emit('error', Object.assign(new Error('1 CANCELLED: Cancelled on client'), { code: 1 }));
    expect(p.failed).toEqual([]);
  });

  it('a broken connection (UNAVAILABLE) still does', async () => {
    const s = streamOf();
    const p = pool(s);
    await open(p.pool);
    s.emit('error', Object.assign(new Error('14 UNAVAILABLE: Connection dropped'), { code: 14 }));
    expect(p.failed).toEqual(['host-1']);
  });
});
