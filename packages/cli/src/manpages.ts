/**
 * coord(8) and coord.yaml(5), generated from the definitions the program runs with: the command and option
 * tables (options.ts), the error codes (core/errors.ts) and the config schema with its descriptions
 * (core/config.ts). Pure functions returning roff (man macros); the package build writes them out.
 */
import { configKeys, ERROR_CODES, type CoordErrorCode } from '@coord/core';
import type { Options } from 'yargs';
import { COMMANDS, CONNECTION_OPTIONS, envName, type CommandDoc, type OptionTable } from './options.js';

/** Where the docs/ files cited in help and descriptions are on an installed system. */
const DOCS_NOTE = roff(
  'The docs/ files named in this page (design.md, etcd-auth.md, migration.md) and the README are installed in ' +
    '/usr/share/doc/coord/.',
);
/** Escape text for roff: backslashes, hyphens (so they stay minus signs), and a leading dot or quote. */
export function roff(text: string): string {
  const t = text.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  return /^[.']/.test(t) ? `\\&${t}` : t;
}

const bold = (t: string): string => `\\fB${roff(t)}\\fR`;
const italic = (t: string): string => `\\fI${roff(t)}\\fR`;

function optionValue(o: Options): string {
  if (o.type === 'boolean') return '';
  if (o.choices !== undefined) return ` ${(o.choices as readonly (string | number)[]).join('|')}`;
  return o.type === 'number' ? ' N' : ' VALUE';
}

function optionLines(name: string, o: Options): string[] {
  const repeat = o.array === true && !/repeat/.test(String(o.describe ?? '')) ? ' (repeatable)' : '';
  const negate =
    o.type === 'boolean' && name !== 'json' && name !== 'local' && name !== 'apply'
      ? `, ${bold(`--no-${name}`)}`
      : '';
  return [
    '.TP',
    `${bold(`--${name}`)}${roff(optionValue(o))}${negate}`,
    `${roff(String(o.describe ?? ''))}${roff(repeat)}`,
  ];
}

function optionsSection(table: OptionTable, skip: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [name, o] of Object.entries(table)) if (!skip.has(name)) out.push(...optionLines(name, o));
  return out;
}

const CONNECTION = new Set(Object.keys(CONNECTION_OPTIONS));

function commandSection(prefix: string, doc: CommandDoc): string[] {
  const out = [
    `.SS "${roff(`${prefix}${doc.command}`)}"`,
    `${roff(doc.summary.charAt(0).toUpperCase() + doc.summary.slice(1))}.`,
  ];
  if (doc.description !== undefined) out.push('.PP', roff(doc.description));
  const own = optionsSection(doc.options, CONNECTION);
  const connects = Object.keys(doc.options).some((k) => CONNECTION.has(k) && k !== 'config');
  if (own.length > 0) out.push('.PP', 'Options:', '.RS', ...own, '.RE');
  if (connects) out.push('.PP', `It also takes the ${roff('CONNECTION OPTIONS')} below.`);
  for (const s of doc.subcommands ?? []) out.push(...commandSection(`${prefix}${doc.command} `, s));
  return out;
}

function codeMeaning(code: CoordErrorCode): string {
  const m: Record<CoordErrorCode, string> = {
    ERR_COORD_CONFIG: 'a configuration error (field and reason printed), nothing was changed',
    ERR_COORD_USAGE: 'a usage error (a missing or wrong flag)',
    ERR_COORD_PERMISSION:
      'etcd refused the operation for lack of a permission (the role that grants it is named)',
    ERR_COORD_ETCD:
      'etcd could not be reached, or refused the connection or credentials (the cause is named)',
    ERR_COORD_NETLINK: 'the kernel refused an address or link operation',
    ERR_COORD_HAPROXY: 'HAProxy could not be validated, started or reloaded',
    ERR_COORD_VRRP: 'the VRRP transport could not be opened',
    ERR_COORD_INTERNAL: 'an unexpected internal error',
  };
  return m[code];
}

/** coord(8). */
export function coordPage(version: string): string {
  const lines = [
    `.TH COORD 8 "" "coord ${roff(version)}" "System Administration"`,
    '.SH NAME',
    'coord \\- cluster coordinator for HAProxy front ends (fenced VIPs, hitless reloads from etcd)',
    '.SH SYNOPSIS',
    `${bold('coord')} ${italic('command')} [${italic('options')}]`,
    '.br',
    `${bold('coord --version')} | ${bold('--help')}`,
    '.SH DESCRIPTION',
    roff(
      'coord replaces keepalived for HAProxy front ends. Nodes elect the holder of each group of virtual IPs through ' +
        'etcd leases; the holder adds the VIPs with netlink and announces them with gratuitous ARP (IPv6: unsolicited ' +
        'neighbour advertisements), and fences itself on its own monotonic deadline, so a frozen or partitioned node ' +
        'never keeps answering for an address another node holds. A VRRP mode speaks VRRPv2/v3 with keepalived peers. ' +
        'Every node renders its HAProxy configuration from services kept in etcd, checks it with haproxy -c, swaps it ' +
        'atomically and reloads HAProxy without dropping connections.',
    ),
    '.PP',
    roff(
      'Every command reads /etc/coord/coord.yaml when it exists (or the file given by --config) for its etcd settings, ' +
        'cluster and control socket; flags override it. See coord.yaml(5).',
    ),
    '.SH COMMANDS',
  ];
  for (const doc of Object.values(COMMANDS) as CommandDoc[]) lines.push(...commandSection('coord ', doc));
  lines.push(
    '.SH CONNECTION OPTIONS',
    roff("How every command that talks to etcd reaches it (the same names as etcdctl's)."),
  );
  lines.push(...optionsSection(CONNECTION_OPTIONS, new Set()));
  lines.push(
    '.SH ENVIRONMENT',
    roff(
      'Every option of a command can be set as an environment variable named COORD_ and the option in capitals with ' +
        'underscores (--etcd-cacert: COORD_ETCD_CACERT); a variable applies only to the commands that have that ' +
        'option, and the command line wins. For example:',
    ),
  );
  for (const name of ['config', 'etcd', 'cluster', 'etcd-user', 'node', 'priority']) {
    lines.push('.TP', bold(envName(name)), roff(`sets --${name}`));
  }
  lines.push(
    '.TP',
    bold('COORD_ETCD_PASSWORD'),
    roff(
      'the etcd password of --etcd-user when no --etcd-password-file is given; never a flag, never logged.',
    ),
    '.SH FILES',
    '.TP',
    bold('/etc/coord/coord.yaml'),
    roff("the node's configuration, coord.yaml(5)."),
    '.TP',
    bold('/etc/coord/haproxy-base.cfg'),
    roff('node-local HAProxy settings put into every configuration coord renders.'),
    '.TP',
    bold('/run/coord/coord.sock'),
    roff('the control socket (coord status --local, coord reload-config).'),
    '.TP',
    bold('/run/coord/haproxy'),
    roff('the HAProxy master socket and pidfile of the HAProxy coord supervises.'),
    '.TP',
    bold('/etc/default/coord'),
    roff('environment of the systemd unit (COORD_ETCD_PASSWORD=…), mode 0600.'),
    '.SH EXIT STATUS',
    '.TP',
    bold('0'),
    'success.',
    '.TP',
    bold('1'),
    roff(
      'the command ran but the answer is no: drill found a gap over --max-gap, move --wait saw no new holder in ' +
        'time, doctor has a warning.',
    ),
  );
  const byCode = new Map<number, CoordErrorCode[]>();
  for (const [code, status] of Object.entries(ERROR_CODES) as [CoordErrorCode, number][])
    byCode.set(status, [...(byCode.get(status) ?? []), code]);
  for (const [status, codes] of [...byCode].sort((a, b) => a[0] - b[0])) {
    lines.push('.TP', bold(String(status)), roff(`${codes.map(codeMeaning).join('; ')}.`));
    if (status === 2)
      lines.push(
        '.TP',
        bold('3'),
        roff(
          'reload-config: a change needs a restart (it is named, and nothing of that reload applied); import: ' +
            'some of keepalived.conf did not convert (listed with file:line and why).',
        ),
      );
  }
  lines.push('.SH EXAMPLES');
  for (const doc of Object.values(COMMANDS) as CommandDoc[])
    for (const [cmd, what] of [...doc.examples, ...(doc.subcommands ?? []).flatMap((s) => s.examples)]) {
      lines.push(
        '.PP',
        what === '' ? roff(`${doc.command}:`) : roff(`${what}:`),
        '.RS',
        '.nf',
        roff(cmd),
        '.fi',
        '.RE',
      );
    }
  lines.push('.SH SEE ALSO', 'coord.yaml(5), haproxy(1), keepalived(8), etcdctl(1)', '.PP', DOCS_NOTE);
  return `${lines.join('\n')}\n`;
}

/** coord.yaml(5). */
export async function configPage(version: string): Promise<string> {
  const { nodeConfigShape } = await import('@coord/core');
  const keys = configKeys(nodeConfigShape());
  const lines = [
    `.TH COORD.YAML 5 "" "coord ${roff(version)}" "File Formats"`,
    '.SH NAME',
    'coord.yaml \\- configuration of a coord node',
    '.SH DESCRIPTION',
    roff(
      'A YAML mapping, one file per node (usually /etc/coord/coord.yaml); only node and priority usually differ ' +
        'between nodes. coord join reads it, every other command reads its etcd settings and cluster, and ' +
        'coord check-config checks it exactly as coord join would: every error with its path and a hint. Unknown ' +
        'keys are errors. Flags of coord join override the file.',
    ),
    '.SH KEYS',
    roff('A path with [] is a key of each entry of a list.'),
  ];
  for (const k of keys) {
    lines.push('.TP', `${bold(k.path)} (${roff(k.type)})`, roff(k.description ?? ''));
  }
  lines.push(
    '.SH EXAMPLE',
    '.nf',
    ...[
      'etcd:',
      '  endpoints: [https://10.0.0.11:2379, https://10.0.0.12:2379, https://10.0.0.13:2379]',
      '  cacert: /etc/coord/etcd-ca.pem',
      '  cert: /etc/coord/etcd-lb1.pem',
      '  key: /etc/coord/etcd-lb1.key',
      '  user: coord-lb1',
      '  passwordFile: /etc/coord/etcd-password',
      'cluster: prod',
      'groups:',
      '  - name: web',
      '    interface: eth0',
      '    vips: [10.0.0.50/24]',
      '    priority: 150',
    ].map(roff),
    '.fi',
    '.SH SEE ALSO',
    'coord(8)',
    '.PP',
    DOCS_NOTE,
  );
  return `${lines.join('\n')}\n`;
}
