/**
 * `coord import keepalived FILE`: keepalived.conf → coord YAML (docs/migration.md). Exit 0 when everything was
 * converted, 3 when something was not (listed with file:line and why), 2 when the input is not a configuration
 * keepalived would read. The output is checked with the same rules as `coord check-config` before it is written.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, relative, resolve } from 'node:path';
import { Document, isMap, isSeq, type Node as YamlNode } from 'yaml';
import { parseCommand } from '@coord/agent';
import { CoordError, errorMessage, isCoordError } from '@coord/core';
import { checkConfigObject } from './check.js';
import { convertKeepalived, type Finding } from './keepalived/convert.js';
import { KeepalivedSyntaxError, parseKeepalived, type SourcePos } from './keepalived/parse.js';
import { VERSION } from './version.js';

export const EXIT_PARTIAL = 3;

export interface ImportArgs {
  readonly file: string;
  readonly out?: string | undefined;
  readonly mode: 'vrrp' | 'etcd';
  readonly configId?: string | undefined;
  readonly etcd?: readonly string[] | undefined;
  readonly cluster?: string | undefined;
  readonly force?: boolean | undefined;
}

export interface ImportResult {
  readonly yaml: string;
  readonly notConverted: readonly string[];
  readonly review: readonly string[];
  readonly summary: string;
  readonly exitCode: 0 | 3;
}

/** Put `text` as a comment before the node at `path` (a list item, or a key of a map). */
function commentAt(doc: Document, path: readonly (string | number)[], text: string): void {
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  const last = path.at(-1);
  if (isSeq(parent) && typeof last === 'number') {
    const item = parent.items[last] as YamlNode | undefined;
    if (item !== undefined) item.commentBefore = text;
  } else if (isMap(parent)) {
    const pair = parent.items.find((p) => (p.key as { value?: unknown } | null)?.value === last);
    const key = pair?.key as YamlNode | undefined;
    if (key !== undefined) key.commentBefore = text;
  }
}

/** Convert a keepalived configuration; nothing is written here. */
export async function convertFile(args: ImportArgs): Promise<ImportResult> {
  const configId = args.configId ?? hostname().split('.')[0] ?? '';
  const base = dirname(resolve(args.file));
  const where = (at: SourcePos) => {
    const rel = relative(base, resolve(at.file));
    return `${rel.startsWith('..') ? at.file : rel}:${at.line}`;
  };
  let parsed;
  try {
    parsed = await parseKeepalived(args.file, { configId });
  } catch (e) {
    if (e instanceof KeepalivedSyntaxError)
      throw new CoordError(
        'ERR_COORD_CONFIG',
        `${args.file} is not a keepalived configuration: ${e.message}`,
        {
          hint: 'check it with keepalived --config-test -f FILE; nothing was written',
        },
      );
    throw e;
  }
  const c = convertKeepalived(parsed.nodes, {
    mode: args.mode,
    where,
    ...(args.etcd === undefined || args.etcd.length === 0 ? {} : { etcd: args.etcd }),
    ...(args.cluster === undefined ? {} : { cluster: args.cluster }),
    // Commands run without a shell in coord: one only a shell could run is left out, not written broken.
    refuseCommand: (cmd) => {
      try {
        parseCommand(cmd);
        return undefined;
      } catch (e) {
        return isCoordError(e) && e.hint !== undefined ? `${e.message} (${e.hint})` : errorMessage(e);
      }
    },
  });
  const notConverted: Finding[] = [
    ...parsed.notes.map((n) => ({ at: n.at, what: n.what, why: n.why })),
    ...c.notConverted,
  ];
  const config = c.config;

  const check = checkConfigObject(structuredClone(config));
  for (const i of check.issues)
    notConverted.push({
      at: { file: args.file, line: 0 },
      what: i.path,
      why: `the converted config fails coord check-config: ${i.message}`,
    });

  const line = (f: Finding) => `${f.at.line === 0 ? f.at.file : where(f.at)}: ${f.what}: ${f.why}`;
  const nc = notConverted.map(line);
  const rv = c.review.map(line);
  const doc = new Document(config);
  for (const [path, text] of c.comments) commentAt(doc, path, text);
  const header = [
    ` coord ${args.mode}-mode config converted from ${args.file} by coord import keepalived (coord ${VERSION})`,
    ...(parsed.conditionals === 0
      ? []
      : [
          ` config id ${configId}: keepalived lines marked @${configId} (or @^ another id) were kept, other @ lines dropped`,
        ]),
    ...(nc.length === 0 ? [' Everything was converted.'] : [' Not converted:', ...nc.map((x) => `   ${x}`)]),
    ...(rv.length === 0
      ? []
      : [' Review (converted, but coord behaves differently):', ...rv.map((x) => `   ${x}`)]),
  ];
  doc.commentBefore = header.join('\n');
  const yaml = doc.toString({ lineWidth: 0 });
  const summary =
    `converted ${c.converted.instances} vrrp_instance${c.converted.instances === 1 ? '' : 's'} and ` +
    `${c.converted.scripts} vrrp_script${c.converted.scripts === 1 ? '' : 's'} from ${parsed.files.length} file${parsed.files.length === 1 ? '' : 's'}` +
    (nc.length === 0 ? '' : `; ${nc.length} not converted`) +
    (rv.length === 0 ? '' : `; ${rv.length} to review`);
  return { yaml, notConverted: nc, review: rv, summary, exitCode: nc.length === 0 ? 0 : EXIT_PARTIAL };
}

/** Write `text` to `path` atomically (mode 0600: the config may hold a VRRP password); never over a file unless forced. */
async function writeNew(path: string, text: string, force: boolean): Promise<void> {
  const exists = await stat(path).then(
    () => true,
    () => false,
  );
  if (exists && !force)
    throw new CoordError('ERR_COORD_USAGE', `${path} exists; not overwritten`, {
      hint: 'give another --out, or --force to replace it',
    });
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new CoordError('ERR_COORD_USAGE', `cannot write ${path}: ${errorMessage(e)}`, {
      hint: 'check the directory exists and is writable',
    });
  }
}

/** The command: convert, write (or print), report on stderr; the exit code. */
export async function importKeepalived(
  args: ImportArgs,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  const r = await convertFile(args);
  if (args.out === undefined) out(r.yaml);
  else await writeNew(args.out, r.yaml, args.force ?? false);
  err(`coord import: ${r.summary}${args.out === undefined ? '' : ` → ${args.out}`}\n`);
  if (r.notConverted.length > 0) err(`not converted:\n${r.notConverted.map((x) => `  ${x}`).join('\n')}\n`);
  if (r.review.length > 0) err(`review:\n${r.review.map((x) => `  ${x}`).join('\n')}\n`);
  return r.exitCode;
}
