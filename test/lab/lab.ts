import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import {
  startArpProber,
  startIcmpProber,
  startSampler,
  type ArpProber,
  type IcmpProber,
  type Sampler,
} from './observe.js';
import { createTestPki, type CertFiles, type TestPki } from '@coord/etcd/testing';
import { addressIn, macFor, makePrefix, namespaceNames, PLAN, randomSubnet, type LabSubnet } from './plan.js';
import { safeKill, spawnInNamespace, waitFor, type LabProcess } from './proc.js';
import {
  claimSubnet,
  destroyNamespaceSync,
  forgetOwner,
  recordOwner,
  releaseSubnet,
  sweepStale,
} from './registry.js';

/** A machine of the lab: a network namespace with one interface, `eth0`, on the lab's bridge. */
export interface LabHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly mac: string;
  readonly iface: 'eth0';
}

export interface LabOptions {
  /** Host namespaces (h1…hN) besides the client; default 3. */
  hosts?: number;
  etcdMembers?: 1 | 3;
  heartbeatMs?: number;
  electionMs?: number;
  /** Goes into the prefix, for humans reading `ip netns list`. */
  name?: string;
  /**
   * etcd with TLS (a throw-away CA, https client URLs, --client-cert-auth), and with `auth` also etcd
   * authentication enabled (a root user with a password). See {@link Lab.tls}.
   */
  tls?: { auth?: boolean };
  /** More etcd flags for every member (e.g. `--enable-grpc-gateway=false`). */
  etcdArgs?: readonly string[];
}

/** The lab's etcd PKI and credentials, when it runs with TLS. */
export interface LabTls {
  readonly ca: string;
  /** A client certificate for `cn` (issued once per file name; `days: -1` gives an expired one). */
  client(cn: string, opts?: { days?: number; file?: string }): CertFiles;
  /** A client certificate from a CA etcd does not trust (and that CA). */
  foreignClient(cn: string): CertFiles & { ca: string };
  /** `coord` flags for etcd's root (with auth) or a root-CN client certificate. */
  rootArgs(): string[];
  /** etcdctl flags (TLS, and root credentials once auth is on). */
  etcdctlArgs(): string[];
  /** Create an etcd user with a fresh password (written to `passwordFile`, 0600) and grant it `role`. */
  addUser(user: string, role: string, passwordFile: string): Promise<void>;
}

export interface EtcdMember {
  readonly index: number;
  readonly name: string;
  readonly ip: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  process: LabProcess | undefined;
}

export interface LabEtcd {
  /** Client URLs, reachable from every host namespace. */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** The namespace the members run in (one address per member). */
  readonly host: LabHost;
}

export interface ExecOptions {
  timeoutMs?: number;
  reject?: boolean;
  input?: string;
  env?: Record<string, string>;
}

export interface NetemOptions {
  delayMs?: number;
  lossPct?: number;
}

/** A started HAProxy: its process plus the files the lab chose for it. */
export interface LabHaproxy extends LabProcess {
  readonly pidFile: string;
  readonly masterSocket: string;
}

export interface LabKeepalived extends LabProcess {
  readonly configFile: string;
  readonly pidFile: string;
  readonly vrrpPidFile: string;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DELAY_PROXY = fileURLToPath(new URL('./bin/delay-proxy.py', import.meta.url));
/** Where logs and per-lab files live (gitignored). */
export const LAB_RUN_ROOT = process.env['COORD_LAB_DIR'] ?? join(REPO_ROOT, '.lab');

/** Labs of this process not yet destroyed: the exit hooks tear these down. */
const liveLabs = new Set<Lab>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const lab of liveLabs) lab.destroySync();
      process.kill(process.pid, sig);
    });
  }
}

async function ip(ns: string | undefined, lines: readonly string[]): Promise<void> {
  await execa('ip', [...(ns === undefined ? [] : ['-n', ns]), '-batch', '-'], {
    input: `${lines.join('\n')}\n`,
    timeout: 15_000,
  });
}

/** What a short command in a namespace did. */
export interface ExecResult {
  /** undefined when it was killed (e.g. by the timeout). */
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  failed: boolean;
}

async function inNs(
  ns: string,
  cmd: string,
  args: readonly string[],
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const r = await execa('ip', ['netns', 'exec', ns, cmd, ...args], {
    timeout: opts.timeoutMs ?? 10_000,
    reject: opts.reject ?? true,
    ...(opts.input === undefined ? {} : { input: opts.input }),
    env: opts.env ?? {},
    extendEnv: true,
    stripFinalNewline: true,
  });
  return {
    exitCode: r.exitCode,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
    timedOut: r.timedOut,
    failed: r.failed,
  };
}

/**
 * A throw-away network of namespaces with a real etcd cluster: everything coord proves is proven here.
 * Create with `Lab.create()`, always `destroy()` (exit hooks and the next lab's sweep catch the rest).
 */
export class Lab {
  readonly prefix: string;
  readonly subnet: LabSubnet;
  readonly runDir: string;
  readonly hosts: LabHost[];
  readonly client: LabHost;
  readonly etcd: LabEtcd;
  readonly heartbeatMs: number;
  readonly electionMs: number;
  readonly faults: LabFaults;
  private readonly switchNs: string;
  private readonly processes = new Set<LabProcess>();
  private readonly observerPids = new Set<number>();
  private readonly delayProxies = new Map<string, LabProcess>();
  private destroyed: Promise<void> | undefined;
  private seq = 0;
  private readonly tlsOpts: { auth?: boolean } | undefined;
  private readonly extraEtcdArgs: readonly string[];
  private pki: TestPki | undefined;
  private server: CertFiles | undefined;
  private readonly clients = new Map<string, CertFiles>();
  private rootPassword: string | undefined;

  private constructor(
    prefix: string,
    subnet: LabSubnet,
    opts: Required<Omit<LabOptions, 'name' | 'tls'>> & Pick<LabOptions, 'tls'>,
  ) {
    this.extraEtcdArgs = opts.etcdArgs;
    this.prefix = prefix;
    this.subnet = subnet;
    this.runDir = join(LAB_RUN_ROOT, prefix);
    this.heartbeatMs = opts.heartbeatMs;
    this.tlsOpts = opts.tls;
    const scheme = opts.tls === undefined ? 'http' : 'https';
    this.electionMs = opts.electionMs;
    const names = namespaceNames(prefix, opts.hosts);
    this.switchNs = names.sw;
    const host = (name: string, ns: string, octet: number): LabHost => ({
      name,
      ns,
      ip: addressIn(subnet, octet),
      mac: macFor(subnet, octet),
      iface: 'eth0',
    });
    this.hosts = names.hosts.map((ns, i) => host(`h${i + 1}`, ns, PLAN.firstHost + i));
    this.client = host('client', names.client, PLAN.client);
    const etcdHost = host('etcd', names.etcd, PLAN.firstEtcd);
    const members: EtcdMember[] = Array.from({ length: opts.etcdMembers }, (_, i) => {
      const ipAddr = addressIn(subnet, PLAN.firstEtcd + i);
      return {
        index: i,
        name: `m${i + 1}`,
        ip: ipAddr,
        clientUrl: `${scheme}://${ipAddr}:${PLAN.etcdClientPort}`,
        peerUrl: `http://${ipAddr}:${PLAN.etcdPeerPort}`,
        dataDir: join(this.runDir, `etcd-m${i + 1}`),
        process: undefined,
      };
    });
    this.etcd = { endpoints: members.map((m) => m.clientUrl), members, host: etcdHost };
    this.faults = new LabFaults(this);
  }

  /** Build the network, start etcd and wait until it is healthy. Sweeps stale labs of dead owners first. */
  static async create(options: LabOptions = {}): Promise<Lab> {
    sweepStale();
    const opts = {
      hosts: options.hosts ?? 3,
      etcdMembers: options.etcdMembers ?? 1,
      heartbeatMs: options.heartbeatMs ?? 50,
      electionMs: options.electionMs ?? 500,
      etcdArgs: options.etcdArgs ?? [],
      ...(options.tls === undefined ? {} : { tls: options.tls }),
    };
    if (opts.hosts < 1 || opts.hosts > 80) throw new RangeError(`hosts must be 1..80, got ${opts.hosts}`);
    const prefix = makePrefix(options.name);
    const runDir = join(LAB_RUN_ROOT, prefix);
    mkdirSync(runDir, { recursive: true });
    recordOwner(prefix, runDir);
    let subnet: LabSubnet | undefined;
    for (let i = 0; i < 50 && subnet === undefined; i++) {
      const candidate = randomSubnet();
      if (claimSubnet(candidate, prefix)) subnet = candidate;
    }
    if (subnet === undefined) {
      forgetOwner(prefix);
      throw new Error('no free lab subnet in 10.200.0.0-10.250.255.0 after 50 tries');
    }
    const lab = new Lab(prefix, subnet, opts);
    liveLabs.add(lab);
    installExitHooks();
    try {
      await lab.build();
      lab.makePki();
      await lab.startEtcd();
      await lab.enableAuth();
      await lab.startDelayProxies();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  /** Every namespace of the lab (hosts, client, etcd, switch). */
  get namespaces(): string[] {
    return [...this.hosts.map((h) => h.ns), this.client.ns, this.etcd.host.ns, this.switchNs];
  }

  /** An address in the lab subnet that no host uses: x.y.z.(200+n), for VIPs. */
  freeAddress(n = 0): string {
    if (!Number.isInteger(n) || n < 0 || n > PLAN.maxVips)
      throw new RangeError(`freeAddress(n): n must be 0..${PLAN.maxVips}`);
    return addressIn(this.subnet, PLAN.vipBase + n);
  }

  /** Look a host up by name ('h1', 'client', 'etcd'). */
  host(name: string): LabHost {
    const h = [...this.hosts, this.client, this.etcd.host].find((x) => x.name === name);
    if (h === undefined) throw new Error(`no lab host named ${name}`);
    return h;
  }

  private async build(): Promise<void> {
    const endpoints = [...this.hosts, this.client, this.etcd.host];
    await ip(
      undefined,
      this.namespaces.map((ns) => `netns add ${ns}`),
    );
    const port = (h: LabHost): string => `p-${h.name}`;
    await ip(this.switchNs, [
      'link set lo up',
      'link add br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0',
      'link set br0 up',
      ...endpoints.flatMap((h) => [
        `link add ${port(h)} type veth peer name eth0 address ${h.mac} netns ${h.ns}`,
        `link set ${port(h)} master br0`,
        `link set ${port(h)} up`,
      ]),
    ]);
    await Promise.all(
      endpoints.map(async (h) => {
        const extra =
          h === this.etcd.host ? this.etcd.members.slice(1).map((m) => `addr add ${m.ip}/24 dev eth0`) : [];
        await ip(h.ns, ['link set lo up', `addr add ${h.ip}/24 dev eth0`, ...extra, 'link set eth0 up']);
        await inNs(h.ns, 'sysctl', [
          '-q',
          '-w',
          'net.ipv4.ip_nonlocal_bind=1',
          'net.ipv4.conf.all.arp_accept=1',
          'net.ipv4.conf.default.arp_accept=1',
          'net.ipv4.conf.eth0.arp_accept=1',
        ]);
      }),
    );
  }

  private etcdArgs(m: EtcdMember): string[] {
    const cluster = this.etcd.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    return [
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--listen-client-urls',
      `${m.clientUrl},${this.tlsOpts === undefined ? 'http' : 'https'}://${m.ip}:${PLAN.etcdDirectPort}`,
      '--advertise-client-urls',
      m.clientUrl,
      '--listen-peer-urls',
      m.peerUrl,
      '--initial-advertise-peer-urls',
      m.peerUrl,
      '--initial-cluster',
      cluster,
      '--initial-cluster-token',
      this.prefix,
      '--initial-cluster-state',
      'new',
      '--heartbeat-interval',
      String(this.heartbeatMs),
      '--election-timeout',
      String(this.electionMs),
      '--logger',
      'zap',
      ...(this.server === undefined || this.pki === undefined
        ? []
        : [
            '--cert-file',
            this.server.cert,
            '--key-file',
            this.server.key,
            '--trusted-ca-file',
            this.pki.ca,
            '--client-cert-auth',
          ]),
      ...this.extraEtcdArgs,
    ];
  }

  /** A CA, one server certificate for every member address, and a root client certificate. */
  private makePki(): void {
    if (this.tlsOpts === undefined) return;
    this.pki = createTestPki(join(this.runDir, 'pki'));
    this.server = this.pki.server(
      'etcd-server',
      this.etcd.members.map((m) => m.ip),
    );
  }

  /** etcdctl's TLS flags (and root credentials once authentication is on). */
  private etcdctlAuth(): string[] {
    if (this.pki === undefined) return [];
    const root = this.tlsClient('root');
    return [
      '--cacert',
      this.pki.ca,
      '--cert',
      root.cert,
      '--key',
      root.key,
      ...(this.rootPassword === undefined ? [] : ['--user', `root:${this.rootPassword}`]),
    ];
  }

  private tlsClient(cn: string, opts: { days?: number; file?: string } = {}): CertFiles {
    if (this.pki === undefined) throw new Error('this lab runs etcd without TLS');
    const file = opts.file ?? `client-${cn}`;
    let c = this.clients.get(file);
    if (c === undefined) {
      c = this.pki.client(cn, { ...opts, file });
      this.clients.set(file, c);
    }
    return c;
  }

  /** etcd authentication: a root user (with the root role) and `auth enable`. */
  private async enableAuth(): Promise<void> {
    if (this.tlsOpts?.auth !== true) return;
    const password = randomBytes(12).toString('hex');
    const ctl = async (args: string[]) => {
      const r = await inNs(
        this.etcd.host.ns,
        'etcdctl',
        ['--endpoints', this.etcd.endpoints.join(','), ...this.etcdctlAuth(), ...args],
        {
          reject: false,
          timeoutMs: 10_000,
        },
      );
      if (r.exitCode !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${r.stderr}`);
    };
    await ctl(['user', 'add', 'root', '--new-user-password', password]);
    await ctl(['user', 'grant-role', 'root', 'root']);
    await ctl(['auth', 'enable']);
    this.rootPassword = password;
    writeFileSync(join(this.runDir, 'root.password'), `${password}\n`, { mode: 0o600 });
  }

  /** The lab's etcd PKI and credentials (only for a lab created with `tls`). */
  tls(): LabTls {
    const pki = this.pki;
    if (pki === undefined) throw new Error('this lab runs etcd without TLS (Lab.create({ tls: {} }))');
    return {
      ca: pki.ca,
      client: (cn, opts) => this.tlsClient(cn, opts),
      foreignClient: (cn) => pki.foreignClient(cn),
      rootArgs: () => {
        const root = this.tlsClient('root');
        return [
          '--etcd',
          this.etcd.endpoints.join(','),
          '--etcd-cacert',
          pki.ca,
          '--etcd-cert',
          root.cert,
          '--etcd-key',
          root.key,
          ...(this.rootPassword === undefined
            ? []
            : ['--etcd-user', 'root', '--etcd-password-file', join(this.runDir, 'root.password')]),
        ];
      },
      etcdctlArgs: () => this.etcdctlAuth(),
      addUser: async (user, role, passwordFile) => {
        const password = randomBytes(12).toString('hex');
        writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
        for (const args of [
          ['user', 'add', user, '--new-user-password', password],
          ['user', 'grant-role', user, role],
        ]) {
          const r = await inNs(
            this.etcd.host.ns,
            'etcdctl',
            ['--endpoints', this.etcd.endpoints.join(','), ...this.etcdctlAuth(), ...args],
            {
              reject: false,
              timeoutMs: 10_000,
            },
          );
          if (r.exitCode !== 0) throw new Error(`etcdctl ${args.slice(0, 3).join(' ')}: ${r.stderr}`);
        }
      },
    };
  }

  /**
   * Put a delay proxy between each host and etcd (this kernel has no netem): nft redirects the host's own
   * connections to etcd:2379 to a local proxy that forwards to etcd's direct port. At 0 ms it only copies bytes.
   */
  private async startDelayProxies(): Promise<void> {
    await Promise.all(
      this.hosts.map(async (h) => {
        const control = this.delayControlFile(h);
        writeFileSync(control, '0\n');
        const routes = this.etcd.members.map(
          (m) => `${PLAN.proxyBasePort + m.index}=${m.ip}:${PLAN.etcdDirectPort}`,
        );
        const proxy = this.spawn(h, '/usr/bin/python3', ['-u', DELAY_PROXY, control, ...routes], {
          name: 'etcd-delay-proxy',
          logFile: join(this.runDir, `${h.name}-etcd-delay-proxy.log`),
        });
        this.delayProxies.set(h.name, proxy);
        await waitFor(`delay proxy in ${h.name}`, async () => {
          if (!proxy.running) throw new Error(`delay proxy in ${h.name} exited: ${await proxy.output()}`);
          return (await proxy.output()).includes('ready');
        });
        const redirects = this.etcd.members
          .map(
            (m) =>
              `ip daddr ${m.ip} tcp dport ${PLAN.etcdClientPort} redirect to :${PLAN.proxyBasePort + m.index};`,
          )
          .join(' ');
        await this.exec(h, 'nft', ['-f', '-'], {
          input: `table ip coordlab_proxy {\n  chain out { type nat hook output priority -100; policy accept; ${redirects} }\n}\n`,
        });
      }),
    );
  }

  private delayControlFile(h: LabHost): string {
    return join(this.runDir, `${h.name}-etcd-delay`);
  }

  /** @internal Set the one-way delay towards etcd for `host` and wait until its proxy applied it. */
  async setEtcdDelay(host: LabHost, delayMs: number): Promise<void> {
    const proxy = this.delayProxies.get(host.name);
    if (proxy === undefined) throw new Error(`no etcd delay proxy in ${host.name}`);
    writeFileSync(this.delayControlFile(host), `${Math.round(delayMs)}\n`);
    const want = `{"msg":"delay set","delayMs":${Math.round(delayMs)}}`;
    const before = (await proxy.output()).split(want).length;
    proxy.signal('SIGHUP');
    await waitFor(
      `delay ${delayMs} ms applied in ${host.name}`,
      async () => (await proxy.output()).split(want).length > before,
    );
  }

  private startMember(m: EtcdMember): void {
    m.process = this.spawn(this.etcd.host, 'etcd', this.etcdArgs(m), {
      logFile: join(this.runDir, `etcd-${m.name}.log`),
    });
  }

  private async startEtcd(): Promise<void> {
    for (const m of this.etcd.members) this.startMember(m);
    await this.waitEtcdHealthy(this.etcd.members);
  }

  private async waitEtcdHealthy(members: readonly EtcdMember[], timeoutMs = 20_000): Promise<void> {
    await waitFor(
      'etcd healthy',
      async () => {
        for (const m of members) {
          if (m.process?.running !== true)
            throw new Error(`etcd ${m.name} exited; see ${m.process?.logFile ?? ''}`);
        }
        const r = await inNs(
          this.etcd.host.ns,
          'etcdctl',
          [
            '--endpoints',
            members.map((m) => m.clientUrl).join(','),
            ...this.etcdctlAuth(),
            '--command-timeout',
            '1s',
            'endpoint',
            'health',
          ],
          { reject: false, timeoutMs: 5000 },
        );
        return r.exitCode === 0;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /** Start a long-running process inside `host`'s namespace; its output goes to a log file in the run dir. */
  spawn(
    host: LabHost,
    cmd: string,
    args: readonly string[] = [],
    opts: { logFile?: string; env?: Record<string, string>; name?: string } = {},
  ): LabProcess {
    this.assertLive();
    const base = opts.name ?? cmd.split('/').pop() ?? 'proc';
    const logFile = opts.logFile ?? join(this.runDir, `${host.name}-${base}-${++this.seq}.log`);
    const proc = spawnInNamespace(host.ns, cmd, args, {
      logFile,
      name: base,
      ...(opts.env === undefined ? {} : { env: opts.env }),
    });
    this.processes.add(proc);
    void proc.exited.then(() => this.processes.delete(proc));
    return proc;
  }

  /** Run a short command inside `host`'s namespace (10 s timeout by default). */
  exec(
    host: LabHost,
    cmd: string,
    args: readonly string[] = [],
    opts: ExecOptions = {},
  ): Promise<ExecResult> {
    this.assertLive();
    return inNs(host.ns, cmd, args, opts);
  }

  /** etcdctl from `host` against the whole cluster, with a short command timeout. */
  etcdctl(host: LabHost, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(
      host,
      'etcdctl',
      [
        '--endpoints',
        this.etcd.endpoints.join(','),
        ...this.etcdctlAuth(),
        '--dial-timeout',
        '1s',
        '--command-timeout',
        '2s',
        ...args,
      ],
      opts,
    );
  }

  /** The MAC the client currently has for `address` in its neighbour table (undefined when none). */
  async clientNeighbourMac(address: string): Promise<string | undefined> {
    const r = await this.exec(this.client, 'ip', ['-j', 'neigh', 'show', address]);
    const entries = JSON.parse(r.stdout === '' ? '[]' : r.stdout) as { lladdr?: string; state?: string[] }[];
    return entries.find((e) => e.lladdr !== undefined && !(e.state ?? []).includes('FAILED'))?.lladdr;
  }

  /** Addresses (without prefix length) on `host`'s interface. */
  async addresses(host: LabHost, iface = 'eth0'): Promise<string[]> {
    const r = await this.exec(host, 'ip', ['-j', 'addr', 'show', 'dev', iface]);
    const links = JSON.parse(r.stdout) as { addr_info?: { local?: string }[] }[];
    return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? '')).filter((a) => a !== '');
  }

  private observerContext() {
    return {
      track: (pid: number) => this.observerPids.add(pid),
      untrack: (pid: number) => this.observerPids.delete(pid),
    };
  }

  /** Which hosts hold `vip`, from kernel address events; see {@link startSampler}. */
  sampler(vip: string, opts: { intervalMs?: number } = {}): Promise<Sampler> {
    this.assertLive();
    return startSampler(this.hosts, vip, opts, this.observerContext());
  }

  /** Broadcast ARP probes for `vip` from the client; each reply's time and MAC. */
  arpProber(vip: string, opts: { intervalMs?: number } = {}): Promise<ArpProber> {
    this.assertLive();
    return startArpProber(this.client, vip, opts, this.observerContext());
  }

  /** Ping `vip` from the client every `intervalMs`. */
  icmpProber(vip: string, opts: { intervalMs?: number } = {}): Promise<IcmpProber> {
    this.assertLive();
    return startIcmpProber(this.client, vip, opts, this.observerContext());
  }

  /**
   * Run HAProxy (master-worker, foreground) in `host` with its own pid file and master socket in the run dir.
   * `args` are appended (e.g. `['-x', socket]`).
   */
  startHaproxy(host: LabHost, cfgPath: string, opts: { args?: string[]; name?: string } = {}): LabHaproxy {
    const name = opts.name ?? 'haproxy';
    const pidFile = join(this.runDir, `${host.name}-${name}.pid`);
    const masterSocket = join(this.runDir, `${host.name}-${name}-master.sock`);
    const proc = this.spawn(
      host,
      'haproxy',
      ['-W', '-db', '-f', cfgPath, '-p', pidFile, '-S', masterSocket, ...(opts.args ?? [])],
      { name, logFile: join(this.runDir, `${host.name}-${name}.log`) },
    );
    return Object.assign(Object.create(proc), { pidFile, masterSocket }) as LabHaproxy;
  }

  /**
   * Run keepalived (VRRP only, foreground, console log) in `host` from `cfgText`. Stop it with `stop()`;
   * `kill9()` kills parent and VRRP child together (killing the parent alone makes the child stop gracefully).
   */
  startKeepalived(
    host: LabHost,
    cfgText: string,
    opts: { args?: string[]; name?: string } = {},
  ): LabKeepalived {
    const name = opts.name ?? 'keepalived';
    const file = (suffix: string): string => join(this.runDir, `${host.name}-${name}${suffix}`);
    const configFile = file('.conf');
    writeFileSync(configFile, cfgText);
    const pidFile = file('.pid');
    const vrrpPidFile = file('-vrrp.pid');
    const proc = this.spawn(
      host,
      'keepalived',
      [
        '--dont-fork',
        '--log-console',
        '--log-detail',
        '--no-syslog',
        '--vrrp',
        '-f',
        configFile,
        '-p',
        pidFile,
        '-r',
        vrrpPidFile,
        '-c',
        file('-checkers.pid'),
        ...(opts.args ?? []),
      ],
      { name, logFile: file('.log') },
    );
    return Object.assign(Object.create(proc), { configFile, pidFile, vrrpPidFile }) as LabKeepalived;
  }

  /** @internal used by the faults */
  async etcdMemberStart(i: number): Promise<void> {
    await this.etcdMembersStart([i]);
  }

  /** @internal Start these members together (one alone has no quorum) and wait until each is healthy. */
  async etcdMembersStart(indices: readonly number[]): Promise<void> {
    const ms = indices.map((i) => this.member(i)).filter((m) => m.process?.running !== true);
    for (const m of ms) this.startMember(m);
    await this.waitEtcdHealthy(ms);
  }

  /** @internal etcdctl's TLS and root flags (empty without TLS). */
  etcdctlTlsArgs(): string[] {
    return this.etcdctlAuth();
  }

  /** @internal */
  member(i: number): EtcdMember {
    const m = this.etcd.members[i];
    if (m === undefined) throw new RangeError(`no etcd member ${i} (have ${this.etcd.members.length})`);
    return m;
  }

  /** @internal */
  get switchNamespace(): string {
    return this.switchNs;
  }

  private assertLive(): void {
    if (this.destroyed !== undefined) throw new Error(`lab ${this.prefix} is destroyed`);
  }

  /** Stop everything and delete every namespace. Idempotent; safe to call from `afterAll` even after a failure. */
  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      for (const pid of this.observerPids) safeKill(pid, 'SIGKILL');
      await Promise.all([...this.processes].map((p) => p.stop(1500)));
      this.destroySync();
    })();
    return this.destroyed;
  }

  /** The synchronous core of `destroy`, for exit hooks: SIGKILL by PID, delete namespaces, drop the records. */
  destroySync(): void {
    for (const pid of this.observerPids) safeKill(pid, 'SIGKILL');
    for (const p of this.processes) p.kill9();
    for (const ns of this.namespaces) destroyNamespaceSync(ns);
    releaseSubnet(this.subnet, this.prefix);
    forgetOwner(this.prefix);
    liveLabs.delete(this);
    if (process.env['COORD_LAB_KEEP'] !== '1') {
      // Keep logs of etcd data out of the way: data dirs are large and useless once the lab is gone.
      for (const m of this.etcd.members) rmSync(m.dataDir, { recursive: true, force: true });
    }
  }
}

/**
 * Faults a test can inject. Each is undone by its pair (`linkUp`, `healEtcd`, `clearNetem`,
 * `restartEtcdMember`) and by `destroy()`.
 */
export class LabFaults {
  constructor(private readonly lab: Lab) {}

  /** Pull the host's cable: the switch port goes down, the host's eth0 loses carrier (addresses stay). */
  async linkDown(host: LabHost): Promise<void> {
    await ip(this.lab.switchNamespace, [`link set p-${host.name} down`]);
  }

  async linkUp(host: LabHost): Promise<void> {
    await ip(this.lab.switchNamespace, [`link set p-${host.name} up`]);
  }

  private etcdSet(): string {
    return `{ ${this.lab.etcd.members.map((m) => m.ip).join(', ')} }`;
  }

  private async nft(host: LabHost, table: string, body: string | undefined): Promise<void> {
    // Declaring then deleting makes removal idempotent; the whole file is applied atomically.
    const script = [
      `table inet ${table}`,
      `delete table inet ${table}`,
      ...(body === undefined ? [] : [body]),
    ];
    await this.lab.exec(host, 'nft', ['-f', '-'], { input: `${script.join('\n')}\n` });
  }

  /** Silently drop all traffic between `host` and every etcd member (the LAN stays up). */
  async cutFromEtcd(host: LabHost): Promise<void> {
    await this.cutBothWays(host, this.etcdSet());
  }

  private async cutBothWays(host: LabHost, addresses: string): Promise<void> {
    await this.nft(
      host,
      'coordlab_cut',
      `table inet coordlab_cut {
  chain out { type filter hook output priority -150; policy accept; ip daddr ${addresses} drop; }
  chain in { type filter hook input priority -150; policy accept; ip saddr ${addresses} drop; }
}`,
    );
  }

  /**
   * Drop one direction only, silently: `'to-etcd'` drops what `host` sends to etcd (its requests and keepalives
   * never arrive, etcd's pushes still do), `'from-etcd'` drops what etcd sends back (requests and keepalives
   * still reach etcd — the lease stays alive — but no answer ever comes back). The LAN stays up. Same table as
   * {@link cutFromEtcd}: `healEtcd` undoes either, and one replaces the other.
   */
  async cutFromEtcdOneWay(host: LabHost, direction: 'to-etcd' | 'from-etcd'): Promise<void> {
    const set = this.etcdSet();
    const rule =
      direction === 'to-etcd'
        ? `chain out { type filter hook output priority -150; policy accept; ip daddr ${set} drop; }`
        : `chain in { type filter hook input priority -150; policy accept; ip saddr ${set} drop; }`;
    await this.nft(host, 'coordlab_cut', `table inet coordlab_cut {\n  ${rule}\n}`);
  }

  /**
   * Drop, silently and both ways, what `host` exchanges with etcd member `i` only: from that host the member looks
   * like a machine that went down (no refusal, no reset; established connections just stall). Same table as
   * {@link cutFromEtcd}: `healEtcd` undoes it.
   */
  async cutFromEtcdMember(host: LabHost, i: number): Promise<void> {
    await this.cutBothWays(host, this.lab.member(i).ip);
  }

  /**
   * Abort every TCP connection `host` has open to etcd (`ss -K`), as a peer's reset or a timed-out connection
   * would: nothing etcd queued on them is delivered later. A silent cut alone keeps them: TCP retransmits what was
   * queued once the cut heals, so a watch resumes as if nothing happened. Pair with a cut, or the client simply
   * reconnects.
   */
  async abortEtcdConnections(host: LabHost): Promise<void> {
    const filter = this.lab.etcd.members.map((m) => `dst ${m.ip}`).join(' or ');
    await this.lab.exec(host, 'ss', ['-K', '-t', `( ${filter} )`]);
  }

  async healEtcd(host: LabHost): Promise<void> {
    await this.nft(host, 'coordlab_cut', undefined);
  }

  /**
   * Degrade `host`'s traffic towards etcd only (the LAN is untouched), like `tc netem` on that path:
   * `lossPct` drops that share of outgoing packets to etcd at random (nft numgen); `delayMs` holds every byte
   * the host sends to etcd's client port that long (the per-host delay proxy), so round trips grow by it.
   * Applies to established connections too. Replaces any earlier setting.
   */
  async netem(host: LabHost, { delayMs = 0, lossPct = 0 }: NetemOptions): Promise<void> {
    if (lossPct < 0 || lossPct > 100) throw new RangeError('lossPct must be 0..100');
    if (delayMs < 0) throw new RangeError('delayMs must be >= 0');
    await this.lab.setEtcdDelay(host, delayMs);
    const set = this.etcdSet();
    const pct = Math.round(lossPct);
    const drop = pct >= 100 ? 'counter drop' : `numgen random mod 100 < ${pct} counter drop`;
    // The proxy's own upstream hop (direct port) is exempt, so a packet is never dropped twice.
    const rules =
      pct > 0 ? `ip daddr ${set} tcp dport ${PLAN.etcdDirectPort} accept; ip daddr ${set} ${drop};` : '';
    await this.nft(
      host,
      'coordlab_netem',
      `table inet coordlab_netem {
  chain out { type filter hook output priority -140; policy accept; ${rules} }
}`,
    );
  }

  async clearNetem(host: LabHost): Promise<void> {
    await this.nft(host, 'coordlab_netem', undefined);
    await this.lab.setEtcdDelay(host, 0);
  }

  /** SIGKILL one etcd member (index into `lab.etcd.members`). */
  async killEtcdMember(i: number): Promise<void> {
    const p = this.lab.member(i).process;
    if (p === undefined) return;
    p.kill9();
    await p.exited;
  }

  /** Start a killed member again on its data dir and wait until it reports healthy. */
  async restartEtcdMember(i: number): Promise<void> {
    await this.lab.etcdMemberStart(i);
  }

  /** SIGKILL every etcd member: the whole etcd cluster is down (an upgrade gone wrong, a power cut). */
  async killEtcd(): Promise<void> {
    await Promise.all(this.lab.etcd.members.map((_, i) => this.killEtcdMember(i)));
  }

  /** Start every stopped member again, together, on its data dir; resolves once all report healthy. */
  async restartEtcd(): Promise<void> {
    await this.lab.etcdMembersStart(this.lab.etcd.members.map((_, i) => i));
  }

  /** Index of the current raft leader among the running members, or undefined without a leader. */
  async etcdLeaderIndex(): Promise<number | undefined> {
    const alive = this.lab.etcd.members.filter((m) => m.process?.running === true);
    if (alive.length === 0) return undefined;
    const r = await this.lab.exec(
      this.lab.etcd.host,
      'etcdctl',
      [
        '--endpoints',
        alive.map((m) => m.clientUrl).join(','),
        ...this.lab.etcdctlTlsArgs(),
        '--command-timeout',
        '1s',
        'endpoint',
        'status',
        '-w',
        'json',
      ],
      { reject: false, timeoutMs: 5000 },
    );
    let rows: { Endpoint?: string; Status?: { header?: { member_id?: number }; leader?: number } }[];
    try {
      rows = JSON.parse(r.stdout) as typeof rows;
    } catch {
      return undefined;
    }
    const leader = rows.find(
      (x) => x.Status?.leader !== undefined && x.Status.header?.member_id === x.Status.leader,
    );
    if (leader?.Endpoint === undefined) return undefined;
    const idx = this.lab.etcd.members.findIndex((m) => m.clientUrl === leader.Endpoint);
    return idx < 0 ? undefined : idx;
  }
}
