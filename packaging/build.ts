/**
 * `pnpm package`: build `build/coord_<version>_<arch>.deb` from this checkout (after `pnpm build`).
 *
 * Why a private runtime: Debian 12 ships Node 18.19, and coord needs Node ≥ 20.19 (yargs 18, execa 9, the
 * toolchain it is tested with). The package carries the Node binary it was built and tested with under
 * /usr/lib/coord/node (dynamically linked to libc, libstdc++ and libgcc only — Debian's own packages), so
 * installing needs no compiler, no npm, no network and no third-party apt repository. The application is one
 * esbuild bundle (split per command, so `coord --version` loads almost nothing); the native parts (our two N-API
 * addons, netlink's prebuilt addon, raw-socket) are installed beside it, compiled on the build machine.
 *
 * Layout: /usr/bin/coord (a five-line wrapper), /usr/lib/coord/{node, coord.mjs, lib/, build/Release/,
 * node_modules/}, the systemd unit, /etc/coord/{coord.yaml, haproxy-base.cfg} as conffiles, the sysctl drop-in,
 * bash and zsh completion, coord(8) and coord.yaml(5), /usr/share/doc/coord. Maintainer scripts apply the sysctl setting
 * and stop coord on removal; they never start, stop or disable any other service (README, "Install").
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Plugin } from 'esbuild';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const OUT = join(ROOT, 'build');
const NAME = 'coord';
const MAINTAINER = 'coord maintainers <maintainers@coord.example>';
const HOMEPAGE = 'https://coord.example/';
/**
 * V8 flags of the packaged agent (`coord join`). An idle agent spends its time waiting, not computing: without the
 * optimizing compiler (lite mode) and with a 1 MiB young generation its RSS falls from about 92 to 66 MiB
 * (measured, README "Footprint"), while a handover's few milliseconds of JavaScript do not notice the difference.
 * Lite mode cannot run WebAssembly (nothing here uses it): saying so keeps V8 from warning about it.
 *
 * Only the agent gets them: any V8 flag that changes V8's flag hash makes it reject the code cache Node ships for
 * its own built-in modules, so each one a command loads (http, net, streams, fs/promises…) is compiled from source
 * again — measured, five of them: 10–12 ms plainly, 32–35 ms with any one of these flags (docs/design.md,
 * "Footprint"). A short command loads dozens.
 */
const AGENT_NODE_FLAGS = ['--lite-mode', '--no-expose-wasm', '--max-semi-space-size=1'];

/**
 * /usr/bin/coord: the agent's flags when `join` is among the arguments (a service named "join" costs a command
 * those milliseconds, nothing else), none otherwise. (bench:footprint runs a staged copy with its paths replaced.)
 */
function wrapperScript(): string {
  const lib = '/usr/lib/coord';
  return [
    '#!/bin/sh',
    'for a in "$@"; do',
    `  [ "$a" = join ] && exec ${lib}/node ${AGENT_NODE_FLAGS.join(' ')} ${lib}/coord.mjs "$@"`,
    'done',
    `exec ${lib}/node ${lib}/coord.mjs "$@"`,
    '',
  ].join('\n');
}

const run = (cmd: string, args: readonly string[], opts: { cwd?: string; input?: string } = {}): string =>
  execFileSync(cmd, args, {
    cwd: opts.cwd ?? ROOT,
    encoding: 'utf8',
    input: opts.input,
    stdio: ['pipe', 'pipe', 'inherit'],
  });

function version(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** The real path of a dependency as pnpm installed it for `fromPackage`. */
function dependencyDir(fromPackage: string, name: string): string {
  return realpathSync(join(ROOT, 'packages', fromPackage, 'node_modules', name));
}

function writeFile(path: string, text: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, mode);
}

function copy(from: string, to: string, mode = 0o644): void {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
  chmodSync(to, mode);
}

/** gzip -9n: no name, no timestamp (reproducible; lintian: package-contains-timestamped-gzip). */
function gzip(text: string | Buffer): Buffer {
  const out = gzipSync(text, { level: 9 });
  out.writeUInt32LE(0, 4); // MTIME
  out[9] = 3; // OS: Unix
  return out;
}

/** Every file under `dir` (relative paths). */
function files(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p, base));
    else out.push(relative(base, p));
  }
  return out.sort();
}

/** What `coord version` says about this build: the package, its commit (if built in a git checkout), the date. */
function buildStamp(): string {
  let commit = 'unknown commit';
  try {
    commit = `commit ${execFileSync('git', ['rev-parse', '--short=10', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()}`;
  } catch {
    // not a git checkout (a source tarball): the version says enough
  }
  return `Debian package, ${commit}, ${new Date().toISOString().slice(0, 10)}`;
}

/**
 * etcd3 parses etcd's .proto files (about 40 KB of text) every time a process first imports it. The package ships
 * the parsed definitions instead (proto/rpc.json, written by {@link writeProtoJson}) and this plugin points etcd3's
 * one `loadSync` of rpc.proto at @grpc/proto-loader's `fromJSON` of that file: 55-64 ms instead of 72-90 ms with
 * the packaged runtime (lite mode), on every etcd command's start and the agent's. The build fails if etcd3 no
 * longer reads its definitions that way (update this plugin then), never silently ships the slow path.
 */
const LOAD_PROTO = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {';
const FROM_JSON = '(0, proto_loader_1.fromJSON)(require(`${__dirname}/../proto/rpc.json`), {';
const precompiledProto: Plugin = {
  name: 'etcd3-precompiled-proto',
  setup(b) {
    b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (text.split(LOAD_PROTO).length !== 2)
        throw new Error(`${args.path}: etcd3 no longer loads rpc.proto as packaging/build.ts expects`);
      return { contents: text.replace(LOAD_PROTO, FROM_JSON), loader: 'js' };
    });
  },
};

/** The options etcd3 loads its definitions with (lib/connection-pool.js). */
const PROTO_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/**
 * Write etcd3's rpc.proto, parsed, as `out` (protobufjs JSON), after checking that @grpc/proto-loader builds the
 * same services, methods and message types from it as from the .proto files.
 */
function writeProtoJson(etcd3: string, out: string): void {
  const req = createRequire(join(etcd3, 'package.json'));
  const loader = req('@grpc/proto-loader') as {
    loadSync(file: string, o: object): Record<string, unknown>;
    fromJSON(json: object, o: object): Record<string, unknown>;
  };
  const protobuf = createRequire(req.resolve('@grpc/proto-loader'))('protobufjs') as {
    Root: new () => { loadSync(file: string, o: object): { toJSON(o: object): object } };
  };
  const file = join(etcd3, 'proto/rpc.proto');
  const json = new protobuf.Root().loadSync(file, { keepCase: true }).toJSON({ keepComments: false });
  const shape = (d: Record<string, unknown>) =>
    JSON.stringify(
      Object.entries(d)
        .map(([name, v]) => {
          const def = v as Record<
            string,
            { requestType?: { type?: { name?: string } }; responseType?: { type?: { name?: string } } }
          >;
          const methods = Object.entries(def)
            .filter(([, m]) => typeof m === 'object' && m !== null && 'requestType' in m)
            .map(([m, x]) => `${m}:${x.requestType?.type?.name}->${x.responseType?.type?.name}`);
          return `${name}[${methods.sort().join(',')}]`;
        })
        .sort(),
    );
  const fromText = shape(loader.loadSync(file, PROTO_OPTIONS));
  const fromJson = shape(loader.fromJSON(json, PROTO_OPTIONS));
  if (fromText !== fromJson) throw new Error('the precompiled etcd definitions differ from rpc.proto');
  writeFile(out, JSON.stringify(json));
}

/** The bundle: one ESM entry and a chunk per command, externals resolved from /usr/lib/coord/node_modules. */
async function bundle(stage: string, ver: string): Promise<string[]> {
  const lib = join(stage, 'usr/lib/coord/lib');
  const r = await build({
    entryPoints: { main: join(ROOT, 'packages/cli/src/main.ts') },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    splitting: true,
    minify: true,
    legalComments: 'none',
    outdir: lib,
    conditions: ['source'],
    metafile: true,
    plugins: [precompiledProto],
    // Native addons with their own loaders: installed as packages beside the bundle.
    external: ['netlink', 'raw-socket'],
    define: { __COORD_VERSION__: JSON.stringify(ver), __COORD_BUILD__: JSON.stringify(buildStamp()) },
    // CommonJS dependencies inside an ESM bundle still call require() and read __dirname (etcd3 loads
    // `${__dirname}/../proto/rpc.json` when it is first imported: lib/../proto, written there below).
    banner: {
      js:
        "import{createRequire as __cr}from'node:module';import{fileURLToPath as __fu}from'node:url';" +
        "import{dirname as __dn}from'node:path';const require=__cr(import.meta.url);" +
        'const __filename=__fu(import.meta.url);const __dirname=__dn(__filename);',
    },
    logLevel: 'warning',
  });
  for (const f of readdirSync(lib)) chmodSync(join(lib, f), 0o644);
  // The packages whose code went into the bundle, for the copyright file.
  const pkgs = new Set<string>();
  for (const input of Object.keys(r.metafile.inputs)) {
    const m = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m?.[1] !== undefined) pkgs.add(m[1]);
  }
  return [...pkgs].sort();
}

/** The entry point: the version without loading anything, one Node warning dropped, then the CLI. */
function entry(ver: string): string {
  return `// coord ${ver} — generated by packaging/build.ts
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(${JSON.stringify(`${ver}\n`)});
  process.exit(0);
}
// grpc-js sets the TLS server name to the endpoint's address; for an IP literal Node warns (DEP0123) on every
// connection. Verifying against an IP SAN is what etcd certificates do: drop that one warning, keep the others.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const code = typeof rest[0] === 'object' && rest[0] !== null ? rest[0].code : rest[1];
  if (code !== 'DEP0123') emitWarning(warning, ...rest);
};
const { main } = await import('./lib/main.js');
process.exit(await main(args));
`;
}

/** Copy a dependency package (only what it needs at run time). */
function copyPackage(src: string, dst: string, keep: (rel: string) => boolean): string {
  for (const f of files(src)) {
    if (!keep(f)) continue;
    const mode = statSync(join(src, f)).mode & 0o111 ? 0o755 : 0o644;
    copy(join(src, f), join(dst, f), f.endsWith('.node') ? 0o644 : mode);
  }
  return dst;
}

function strip(path: string): void {
  run('strip', ['--strip-unneeded', '--remove-section=.comment', '--remove-section=.note', path]);
}

function licenseText(dir: string): string | undefined {
  const f = readdirSync(dir).find((n) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(n));
  return f === undefined ? undefined : readFileSync(join(dir, f), 'utf8').trim();
}

/** SPDX ids whose full text Debian ships in /usr/share/common-licenses. */
const COMMON_LICENSES: Readonly<Record<string, string>> = {
  'Apache-2.0': 'Apache-2.0',
  'MPL-2.0': 'MPL-2.0',
  'GPL-2.0': 'GPL-2',
  'GPL-3.0': 'GPL-3',
  'LGPL-2.1': 'LGPL-2.1',
  'LGPL-3.0': 'LGPL-3',
  'CC0-1.0': 'CC0-1.0',
};

function licenseId(dir: string): string {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { license?: unknown };
  return typeof pkg.license === 'string' ? pkg.license : 'see-text';
}

/** A machine-readable copyright file (DEP-5): coord, Node.js, and every package bundled or installed. */
function copyright(thirdParty: { name: string; dir: string }[]): string {
  const lines = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    `Upstream-Name: ${NAME}`,
    `Source: ${HOMEPAGE}`,
    '',
    'Files: *',
    'Copyright: the coord authors',
    'License: coord',
    ' No license has been chosen for coord yet: all rights are reserved by its authors.',
    '',
    'Files: usr/lib/coord/node',
    'Copyright: Node.js contributors and others',
    'License: Node.js',
  ];
  lines.push(
    ' Node.js is MIT licensed; it includes third-party code under their own licenses (some Apache-2.0, whose',
    ' text Debian ships in /usr/share/common-licenses/Apache-2.0). The complete notice, as Node.js publishes it,',
    ' is installed as /usr/share/doc/coord/LICENSE.nodejs.',
  );
  lines.push(
    '',
    'Files: usr/lib/coord/proto/*',
    "Comment: etcd's gRPC protocol definitions, as the etcd3 npm package ships them",
    'Copyright: The etcd Authors',
    'License: Apache-2.0',
    ' On Debian systems, the full text is in /usr/share/common-licenses/Apache-2.0.',
  );
  for (const p of thirdParty) {
    const text = licenseText(p.dir);
    lines.push(
      '',
      `Files: usr/lib/coord/lib/* usr/lib/coord/node_modules/${p.name}/*`,
      `Comment: bundled npm package ${p.name}`,
      `Copyright: the ${p.name} authors`,
    );
    const id = licenseId(p.dir);
    const common = COMMON_LICENSES[id];
    lines.push(`License: ${id}`);
    // Licenses Debian ships in /usr/share/common-licenses are referred to, not copied (Debian policy 12.5).
    if (common !== undefined)
      lines.push(` On Debian systems, the full text is in /usr/share/common-licenses/${common}.`);
    else if (text !== undefined)
      lines.push(...text.split('\n').map((l) => (l.trim() === '' ? ' .' : ` ${l}`)));
    else
      lines.push(` The ${p.name} package ships no license text; its package.json says ${licenseId(p.dir)}.`);
  }
  return `${lines.join('\n')}\n`;
}

function debianChangelog(ver: string): string {
  const date = run('date', ['-R', '-u']).trim();
  return [
    `${NAME} (${ver}) unstable; urgency=medium`,
    '',
    '  * See /usr/share/doc/coord/CHANGELOG.md for what changed.',
    '',
    ` -- ${MAINTAINER}  ${date}`,
    '',
  ].join('\n');
}

function control(ver: string, arch: string, installedKb: number): string {
  return `${[
    `Package: ${NAME}`,
    `Version: ${ver}`,
    `Architecture: ${arch}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedKb}`,
    // iproute2: the dead-man helper removes a crashed coord's VIPs with ip(8) (packages/vip/src/dead-man.ts).
    // procps: sysctl(8) in the postinst, pgrep(1) in the example health check (neither is Essential).
    'Depends: libc6 (>= 2.28), libgcc-s1 (>= 3.0), libstdc++6 (>= 10), iproute2, procps',
    'Recommends: haproxy (>= 2.6)',
    'Suggests: etcd-client',
    'Section: admin',
    'Priority: optional',
    `Homepage: ${HOMEPAGE}`,
    'Description: cluster coordinator for HAProxy front ends (fenced VIPs)',
    ' coord replaces keepalived for HAProxy front ends: nodes elect the holder of',
    ' each virtual IP through etcd leases, and the holder fences itself on its own',
    ' monotonic deadline, so a frozen or partitioned node never keeps answering for',
    ' an address another node holds. A VRRP mode speaks VRRPv2/v3 with keepalived',
    ' peers for a node-by-node migration.',
    ' .',
    ' Every node renders its HAProxy configuration from services kept in etcd,',
    ' checks it with haproxy -c, swaps it atomically and reloads HAProxy without',
    ' dropping connections.',
    ' .',
    ' The package carries its own Node.js runtime under /usr/lib/coord.',
  ].join('\n')}\n`;
}

const POSTINST = `#!/bin/sh
# coord postinst: apply the non-local bind setting now (systemd-sysctl applies it at every boot). Never starts,
# stops or disables any service: coord itself is enabled by the operator once /etc/coord/coord.yaml is this node's.
set -e
if [ "$1" = configure ]; then
    if command -v sysctl >/dev/null 2>&1; then
        sysctl -q -p /usr/lib/sysctl.d/99-coord.conf || echo "coord: could not apply /usr/lib/sysctl.d/99-coord.conf now; it applies at the next boot" >&2
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    # Record the unit's [Install] links (made later by the operator's systemctl enable) so purge removes them, as
    # dh_installsystemd --no-enable does.
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper update-state coord.service >/dev/null 2>&1 || true
    fi
fi
exit 0
`;

const PRERM = `#!/bin/sh
# coord prerm: stop coord when the package is removed (not on upgrade: the running agent keeps its VIPs until the
# operator restarts it, README "Install"). KillMode=process: the HAProxy master coord started keeps serving; it is
# not coord's to stop.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null 2>&1; then
    deb-systemd-invoke stop coord.service >/dev/null 2>&1 || true
fi
exit 0
`;

const POSTRM = `#!/bin/sh
# coord postrm: on purge, remove what coord wrote (dpkg removes the conffiles itself): its state directory, the
# HAProxy config it rendered at the default path and that config's last good copy, and the unit's enable links.
# /run/coord is left to the reboot: an HAProxy master coord started may still serve from it (README, "Install").
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/coord
    rm -f /etc/haproxy/coord.cfg /etc/haproxy/coord.cfg.last-good
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge coord.service >/dev/null 2>&1 || true
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
`;

async function main(): Promise<void> {
  const ver = version();
  const arch = run('dpkg', ['--print-architecture']).trim();
  const stage = join(OUT, `${NAME}_${ver}_${arch}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  const lib = join(stage, 'usr/lib/coord');

  // 1. The application bundle and its entry point.
  const bundled = await bundle(stage, ver);
  writeFile(join(lib, 'coord.mjs'), entry(ver));
  writeFile(join(stage, 'usr/bin/coord'), wrapperScript(), 0o755);

  // 2. The runtime: the Node binary this was built and tested with.
  copy(process.execPath, join(lib, 'node'), 0o755);
  strip(join(lib, 'node'));

  // etcd's gRPC definitions as etcd3 ships them, and parsed (rpc.json), which the bundle reads at run time.
  const etcd3 = dependencyDir('etcd', 'etcd3');
  for (const f of readdirSync(join(etcd3, 'proto')).filter((x) => x.endsWith('.proto')))
    copy(join(etcd3, 'proto', f), join(lib, 'proto', f));
  writeProtoJson(etcd3, join(lib, 'proto/rpc.json'));

  // 3. Native parts. Our addons load '../build/Release/<name>.node' relative to their module: lib/ sits where
  //    src/ or dist/ sit in the checkout, so /usr/lib/coord/build/Release is where they look.
  for (const [pkg, file] of [
    ['vip', 'coord_packet.node'],
    ['vrrp', 'coord_vrrp6.node'],
  ] as const) {
    const dst = join(lib, 'build/Release', file);
    copy(join(ROOT, 'packages', pkg, 'build/Release', file), dst);
    strip(dst);
  }
  const netlink = dependencyDir('vip', 'netlink');
  copyPackage(
    netlink,
    join(lib, 'node_modules/netlink'),
    (f) =>
      f === 'package.json' ||
      f === 'LICENSE' ||
      (f.startsWith('dist/') && f.endsWith('.js')) ||
      f.startsWith(`prebuilds/linux-${process.arch}/`),
  );
  const gypBuild = realpathSync(join(netlink, '..', 'node-gyp-build'));
  copyPackage(gypBuild, join(lib, 'node_modules/node-gyp-build'), (f) =>
    ['package.json', 'LICENSE', 'index.js', 'node-gyp-build.js'].includes(f),
  );
  const rawSocket = dependencyDir('vrrp', 'raw-socket');
  copyPackage(
    rawSocket,
    join(lib, 'node_modules/raw-socket'),
    (f) => f === 'package.json' || f === 'index.js' || f === 'LICENSE' || f === 'build/Release/raw.node',
  );
  strip(join(lib, 'node_modules/raw-socket/build/Release/raw.node'));
  strip(join(lib, `node_modules/netlink/prebuilds/linux-${process.arch}/node.napi.node`));

  // 4. The system's side: unit, conffiles, sysctl.
  copy(join(ROOT, 'deploy/coord.service'), join(stage, 'lib/systemd/system/coord.service'));
  copy(join(ROOT, 'deploy/coord.example.yaml'), join(stage, 'etc/coord/coord.yaml'));
  copy(join(ROOT, 'deploy/haproxy-base.cfg'), join(stage, 'etc/coord/haproxy-base.cfg'));
  copy(join(ROOT, 'deploy/99-coord.conf'), join(stage, 'usr/lib/sysctl.d/99-coord.conf'));

  // 5. Generated from the program itself: completion and man pages (the definitions the CLI runs with).
  const coord = (args: string[]) => run(join(lib, 'node'), [join(lib, 'coord.mjs'), ...args]);
  writeFile(join(stage, 'usr/share/bash-completion/completions/coord'), coord(['completion', 'bash']));
  writeFile(join(stage, 'usr/share/zsh/vendor-completions/_coord'), coord(['completion', 'zsh']));
  writeFile(join(stage, 'usr/share/man/man8/coord.8.gz'), gzip(coord(['manpage', 'coord.8'])));
  writeFile(join(stage, 'usr/share/man/man5/coord.yaml.5.gz'), gzip(coord(['manpage', 'coord.yaml.5'])));

  // The runtime is Node.js as built upstream, with its own zlib (and OpenSSL) linked in: not a copy we could
  // replace by Debian's libraries without rebuilding Node.
  writeFile(
    join(stage, 'usr/share/lintian/overrides/coord'),
    '# The private Node.js runtime under /usr/lib/coord carries the libraries Node.js links statically.\ncoord: embedded-library zlib [usr/lib/coord/node]\n',
  );

  // 6. Documentation.
  const doc = join(stage, 'usr/share/doc/coord');
  const thirdParty = [
    ...bundled.map((name) => ({ name, dir: dependencyDirAnywhere(name) })),
    { name: 'netlink', dir: netlink },
    { name: 'node-gyp-build', dir: gypBuild },
    { name: 'raw-socket', dir: rawSocket },
  ];
  writeFile(join(doc, 'copyright'), copyright(thirdParty));
  const nodeLicense = [
    '/usr/share/doc/nodejs/LICENSE',
    join(dirname(process.execPath), '../share/doc/node/LICENSE'),
  ].find(existsSync);
  if (nodeLicense === undefined)
    throw new Error('the Node.js LICENSE file was not found: cannot ship its binary without it');
  copy(nodeLicense, join(doc, 'LICENSE.nodejs'));
  writeFile(join(doc, 'changelog.gz'), gzip(debianChangelog(ver)));
  copy(join(ROOT, 'README.md'), join(doc, 'README.md'));
  copy(join(ROOT, 'CHANGELOG.md'), join(doc, 'CHANGELOG.md'));
  for (const d of ['design.md', 'etcd-auth.md', 'migration.md']) copy(join(ROOT, 'docs', d), join(doc, d));

  // 7. Control files.
  const all = files(stage);
  const installedKb = Math.ceil(all.reduce((a, f) => a + statSync(join(stage, f)).size, 0) / 1024);
  writeFile(join(stage, 'DEBIAN/control'), control(ver, arch, installedKb));
  writeFile(join(stage, 'DEBIAN/conffiles'), '/etc/coord/coord.yaml\n/etc/coord/haproxy-base.cfg\n');
  writeFile(join(stage, 'DEBIAN/postinst'), POSTINST, 0o755);
  writeFile(join(stage, 'DEBIAN/prerm'), PRERM, 0o755);
  writeFile(join(stage, 'DEBIAN/postrm'), POSTRM, 0o755);
  const md5 = all
    .filter((f) => !f.startsWith('etc/'))
    .map(
      (f) =>
        `${createHash('md5')
          .update(readFileSync(join(stage, f)))
          .digest('hex')}  ${f}`,
    );
  writeFile(join(stage, 'DEBIAN/md5sums'), `${md5.join('\n')}\n`);
  for (const d of dirsOf(stage)) chmodSync(d, 0o755);

  const deb = join(OUT, `${NAME}_${ver}_${arch}.deb`);
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z6', '--build', stage, deb]);
  console.log(deb);
}

function dirsOf(dir: string): string[] {
  const out = [dir];
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) out.push(...dirsOf(join(dir, e.name)));
  return out;
}

/** A bundled package's directory: found through whichever workspace package depends on it. */
function dependencyDirAnywhere(name: string): string {
  const pnpmDir = join(ROOT, 'node_modules/.pnpm');
  const prefix = `${name.replace('/', '+')}@`;
  const candidates = readdirSync(pnpmDir)
    .filter((d) => d.startsWith(prefix))
    .sort();
  const found = candidates.map((d) => join(pnpmDir, d, 'node_modules', name)).find(existsSync);
  if (found === undefined) throw new Error(`bundled package ${name} not found under node_modules/.pnpm`);
  return found;
}

await main();
