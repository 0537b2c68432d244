/**
 * A simulated cluster for unit tests: real CoordNodes (session, view, election, group runners) over an in-memory
 * etcd, each with its own "kernel" (addresses with lifetimes that expire late by an adversarial slack), a LAN on
 * which probes are answered by any kernel holding the VIP (even a frozen node's), and a clock per node that can
 * freeze (SIGSTOP) or stop for good (kill -9). One FakeClock drives everything, so every run is deterministic.
 *
 * The checker is exact: a second holder can only appear at an address add, so every add is checked against every
 * other kernel (docs/design.md, "Testing the safety code").
 */
import {
  FakeClock,
  MemoryLogger,
  requireNodeConfig,
  type Clock,
  type NodeConfig,
  type TimerHandle,
  type Vip,
} from '@coord/core';
import { MemoryEtcd, type MemoryClient } from '@coord/etcd/testing';
import type { AddressLifetime, Announcer, HostAddress, VipPort } from '@coord/vip';
import { CoordNode } from '../src/node.js';
import type { ProbePort } from '../src/group.js';

/** A node's clock: timers stop firing while it is frozen (and forever once killed); time itself goes on. */
export class NodeClock implements Clock {
  private frozen = false;
  private dead = false;
  private readonly queued = new Map<number, () => void>();

  constructor(private readonly base: FakeClock) {}

  now(): number {
    return this.base.now();
  }

  wallNow(): number {
    return this.base.wallNow();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = this.base.setTimeout(() => {
      if (this.dead) return;
      if (this.frozen) this.queued.set(handle.id, fn);
      else fn();
    }, ms);
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.base.clearTimeout(handle);
    this.queued.delete(handle.id);
  }

  freeze(): void {
    this.frozen = true;
  }

  /** Resume: everything that came due while frozen runs now, in order. */
  thaw(): void {
    this.frozen = false;
    const due = [...this.queued.values()];
    this.queued.clear();
    for (const fn of due) if (!this.dead) fn();
  }

  kill(): void {
    this.dead = true;
    this.queued.clear();
  }

  get isDead(): boolean {
    return this.dead;
  }
}

export interface Violation {
  readonly at: number;
  readonly what: string;
}

interface KernelAddress {
  readonly vip: Vip;
  prefix: number;
  expiresAt: number | null;
  timer: TimerHandle | null;
}

/** One host's addresses. Lifetimes expire on the shared clock, `slackMs` late (the kernel's lifetime worker). */
export class Kernel {
  readonly addresses = new Map<string, KernelAddress>();
  /** How late the kernel removes an expired address (a function, so tests can make it adversarial). */
  slackMs: () => number = () => 30;
  /** Fail every removal with this errno (EPERM…) while set. */
  removeFails: string | null = null;
  events: { t: number; op: 'add' | 'del'; address: string }[] = [];
  /** The host's cable: without carrier its addresses answer nobody, and it hears nothing. */
  linkUp = true;

  constructor(
    readonly name: string,
    private readonly lan: Lan,
    private readonly clock: FakeClock,
  ) {}

  holds(address: string): boolean {
    return this.addresses.has(address);
  }

  add(vip: Vip, lifetime: AddressLifetime | undefined, permanent = false): 'added' | 'present' {
    const existing = this.addresses.get(vip.address);
    if (existing === undefined) {
      this.lan.checkAdd(this, vip.address);
      const a: KernelAddress = { vip, prefix: vip.prefix, expiresAt: null, timer: null };
      this.addresses.set(vip.address, a);
      this.events.push({ t: this.clock.now(), op: 'add', address: vip.address });
    }
    const a = this.addresses.get(vip.address);
    if (a !== undefined && !permanent && lifetime !== undefined && lifetime.validSec < 0xffffffff) {
      if (a.timer !== null) this.clock.clearTimeout(a.timer);
      a.expiresAt = this.clock.now() + lifetime.validSec * 1000;
      a.timer = this.clock.setTimeout(
        () => this.remove(vip.address),
        lifetime.validSec * 1000 + this.slackMs(),
      );
    }
    return existing === undefined ? 'added' : 'present';
  }

  remove(address: string): boolean {
    const a = this.addresses.get(address);
    if (a === undefined) return false;
    if (a.timer !== null) this.clock.clearTimeout(a.timer);
    this.addresses.delete(address);
    this.events.push({ t: this.clock.now(), op: 'del', address });
    return true;
  }
}

/** The LAN: who answers for an address, and the exact two-holder checker. */
export class Lan {
  readonly kernels: Kernel[] = [];
  readonly violations: Violation[] = [];

  constructor(private readonly clock: FakeClock) {}

  /** Peer-channel sockets by `address:port` (fast failover). */
  readonly udp = new Map<string, { kernel: Kernel; deliver: (data: Buffer) => void }>();

  /**
   * Two holders means two hosts answering for the address at once: a copy on a host without carrier answers
   * nobody until the cable is back, and then it counts (see setLink).
   */
  checkAdd(adding: Kernel, address: string): void {
    if (!adding.linkUp) return;
    for (const k of this.kernels) {
      if (k !== adding && k.linkUp && k.holds(address))
        this.violations.push({
          at: this.clock.now(),
          what: `${adding.name} added ${address} while ${k.name} held it`,
        });
    }
  }

  holders(address: string): string[] {
    return this.kernels.filter((k) => k.holds(address)).map((k) => k.name);
  }

  /** Pull or plug a host's cable; plugging it back in with a copy another host holds is a violation. */
  setLink(kernel: Kernel, up: boolean): void {
    kernel.linkUp = up;
    if (!up) return;
    for (const address of kernel.addresses.keys()) {
      const other = this.kernels.find((k) => k !== kernel && k.linkUp && k.holds(address));
      if (other !== undefined)
        this.violations.push({
          at: this.clock.now(),
          what: `${kernel.name} came back on the LAN holding ${address} while ${other.name} held it`,
        });
    }
  }
}

export interface SimNode {
  readonly name: string;
  readonly clock: NodeClock;
  readonly kernel: Kernel;
  readonly client: MemoryClient;
  readonly logger: MemoryLogger;
  node: CoordNode;
  config: NodeConfig;
  announcements: number;
}

export interface SimOptions {
  nodes: { name: string; priority: number; preempt?: boolean }[];
  vip?: string;
  ttlSec?: number;
  expiryScanMs?: number;
  /** Run every node with --fast-failover over an in-memory peer channel. */
  fastFailover?: boolean;
  /** `--etcd-outage hold` (with the peer channel) and its `--etcd-outage-max` in seconds. */
  etcdOutage?: 'fence' | 'hold';
  etcdOutageMax?: number;
  /** A second group `g2` (VIP 10.0.0.51/24) bound to `g` in this sync group (`g` leads: its name sorts first). */
  syncGroup?: string;
}

/** Let every pending promise continuation run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

export class Sim {
  readonly clock = new FakeClock(10_000);
  readonly etcd: MemoryEtcd;
  readonly lan = new Lan(this.clock);
  readonly nodes: SimNode[] = [];
  readonly address: string;

  constructor(private readonly opts: SimOptions) {
    this.etcd = new MemoryEtcd(this.clock, { expiryScanMs: opts.expiryScanMs ?? 500 });
    this.address = (opts.vip ?? '10.0.0.50/24').split('/')[0] ?? '';
    for (const n of opts.nodes) this.nodes.push(this.build(n.name, n.priority, n.preempt ?? true));
  }

  config(name: string, priority: number, preempt: boolean): NodeConfig {
    return requireNodeConfig(
      {
        node: name,
        cluster: 'sim',
        etcd: ['http://memory:2379'],
        ttl: this.opts.ttlSec ?? 1,
        ...(this.opts.fastFailover === true ? { fastFailover: true } : {}),
        ...(this.opts.etcdOutage === undefined ? {} : { etcdOutage: this.opts.etcdOutage }),
        ...(this.opts.etcdOutageMax === undefined ? {} : { etcdOutageMax: this.opts.etcdOutageMax }),
        ...(this.opts.fastFailover === true || this.opts.etcdOutage === 'hold'
          ? { peer: { address: `10.0.1.${this.opts.nodes.findIndex((x) => x.name === name) + 1}` } }
          : {}),
        groups: [
          {
            name: 'g',
            interface: 'eth0',
            vips: [this.opts.vip ?? '10.0.0.50/24'],
            priority,
            preempt,
            ...(this.opts.syncGroup === undefined ? {} : { syncGroup: this.opts.syncGroup }),
          },
          ...(this.opts.syncGroup === undefined
            ? []
            : [
                {
                  name: 'g2',
                  interface: 'eth0',
                  vips: ['10.0.0.51/24'],
                  priority,
                  preempt,
                  syncGroup: this.opts.syncGroup,
                },
              ]),
        ],
      },
      'sim',
    );
  }

  private build(name: string, priority: number, preempt: boolean): SimNode {
    const clock = new NodeClock(this.clock);
    const kernel = new Kernel(name, this.lan, this.clock);
    this.lan.kernels.push(kernel);
    const client = this.etcd.client(name, { clock });
    const logger = new MemoryLogger();
    const sim: SimNode = {
      name,
      clock,
      kernel,
      client,
      logger,
      config: this.config(name, priority, preempt),
      node: undefined as unknown as CoordNode,
      announcements: 0,
    };
    sim.node = this.makeNode(sim);
    return sim;
  }

  private makeNode(n: SimNode): CoordNode {
    const lan = this.lan;
    const kernel = n.kernel;
    const vipPort: VipPort = {
      list: () =>
        Promise.resolve(
          [...kernel.addresses.values()].map((a): HostAddress => ({
            address: a.vip.address,
            prefix: a.prefix,
            family: a.vip.family,
            permanent: a.expiresAt === null,
          })),
        ),
      add: (_iface, vip, lifetime) => {
        if (lifetime?.notAfter !== undefined && n.clock.now() > lifetime.notAfter)
          return Promise.resolve('late');
        return Promise.resolve(kernel.add(vip, lifetime));
      },
      refresh: (_iface, vip, lifetime) => {
        if (lifetime.notAfter !== undefined && n.clock.now() > lifetime.notAfter)
          return Promise.resolve('late');
        kernel.add(vip, lifetime);
        return Promise.resolve('refreshed');
      },
      remove: (_iface, vip) => {
        if (kernel.removeFails !== null)
          return Promise.reject(new Error(`Request rejected: ${kernel.removeFails}`));
        return Promise.resolve(kernel.remove(vip.address) ? 'removed' : 'absent');
      },
      close: () => {},
    };
    const announcer: Announcer = {
      announce: (_iface, vip) => {
        if (!kernel.holds(vip.address))
          lan.violations.push({
            at: this.clock.now(),
            what: `${n.name} announced ${vip.address} without holding it`,
          });
        n.announcements++;
        return { ok: true, via: 'packet', frames: 2 };
      },
      close: () => {},
    };
    const prober: ProbePort = {
      open: (_iface, vips) => ({
        ok: true,
        session: {
          probe: () => vips.length,
          // Any other kernel that still has the address answers — frozen or not, expired-but-not-removed or not
          // — as long as both ends have carrier.
          drain: () =>
            lan.kernels
              .filter(
                (k) => k !== kernel && kernel.linkUp && k.linkUp && vips.some((v) => k.holds(v.address)),
              )
              .map((k) => ({ address: vips[0]?.address ?? '', mac: k.name, kind: 'arp-reply' })),
          close: () => {},
        },
      }),
    };
    const clock = n.clock;
    return new CoordNode(n.config, {
      clock,
      logger: n.logger,
      vipPort,
      announcer,
      prober,
      version: 'sim',
      etcd: n.client,
      // A datagram takes 1 ms; it is lost when either end has no carrier, and waits in the socket buffer while
      // the receiver is frozen (its timers are), and is gone with a killed receiver.
      openPeerSocket: (o) => {
        const me = `${o.address}:${o.port}`;
        lan.udp.set(me, { kernel, deliver: (data) => clock.setTimeout(() => o.onMessage(data), 1) });
        return Promise.resolve({
          port: o.port,
          send: (data, port, address) => {
            const to = lan.udp.get(`${address}:${port}`);
            if (to === undefined || !kernel.linkUp || !to.kernel.linkUp || this.udpDrop()) return;
            this.clock.setTimeout(() => to.deliver(data), 0);
          },
          close: () => {
            if (lan.udp.get(me)?.kernel === kernel) lan.udp.delete(me);
          },
        });
      },
    });
  }

  /** Share of peer-channel datagrams lost (0-1), drawn from a seeded sequence so runs repeat. */
  udpLoss = 0;
  private lossSeed = 1;

  private udpDrop(): boolean {
    if (this.udpLoss <= 0) return false;
    this.lossSeed = (this.lossSeed * 48271) % 2147483647;
    return this.lossSeed / 2147483647 < this.udpLoss;
  }

  /** Pull (false) or plug back (true) a node's cable. */
  setLink(name: string, up: boolean): void {
    this.lan.setLink(this.node(name).kernel, up);
  }

  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no sim node ${name}`);
    return n;
  }

  async startAll(): Promise<void> {
    for (const n of this.nodes) void n.node.start();
    await this.run(10);
  }

  /** Advance the shared clock `ms` in `step` ms steps, letting every node's promises run. */
  async run(ms: number, step = 5): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      this.clock.advance(Math.min(step, ms - t));
      await flush();
    }
  }

  /** Run until `fn` holds; returns the time it took. Fails after `ms`. */
  async until(what: string, fn: () => boolean, ms = 10_000, step = 5): Promise<number> {
    const start = this.clock.now();
    while (!fn()) {
      if (this.clock.now() - start > ms) throw new Error(`sim: ${what} not within ${ms} ms`);
      this.clock.advance(step);
      await flush();
    }
    return this.clock.now() - start;
  }

  holders(): string[] {
    return this.lan.holders(this.address);
  }

  /** Holders reachable on the LAN (with carrier). */
  lanHolders(): string[] {
    return this.lan.kernels.filter((k) => k.linkUp && k.holds(this.address)).map((k) => k.name);
  }

  /** The single holder, or undefined. */
  holder(): string | undefined {
    const h = this.holders();
    return h.length === 1 ? h[0] : undefined;
  }

  /** kill -9: the process stops; its kernel keeps the VIP until the lifetime (plus slack) runs out. */
  kill(name: string): void {
    const n = this.node(name);
    n.clock.kill();
    n.client.close();
  }

  /** Restart a killed node: a new process on the same host (same kernel, new etcd connection). */
  restart(name: string): SimNode {
    const old = this.node(name);
    const clock = new NodeClock(this.clock);
    const client = this.etcd.client(name, { clock });
    const fresh: SimNode = {
      ...old,
      clock,
      client,
      logger: new MemoryLogger(),
      node: undefined as unknown as CoordNode,
    };
    fresh.node = this.makeNode(fresh);
    this.nodes[this.nodes.indexOf(old)] = fresh;
    void fresh.node.start();
    return fresh;
  }

  logs(name: string, message: string): Record<string, unknown>[] {
    return this.node(name)
      .logger.records.filter((r) => r.message === message)
      .map((r) => r.fields);
  }

  close(): void {
    this.etcd.close();
  }
}
