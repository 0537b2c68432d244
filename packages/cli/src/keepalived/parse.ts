/**
 * keepalived's configuration language, read as keepalived 2.2 reads it (keepalived.conf(5): "DESCRIPTION",
 * "Conditional configuration and configuration id", "Parameter substitution"; summarized in docs/migration.md):
 *
 * - comments start with `#` or `!` anywhere outside double quotes;
 * - `@ID line` keeps the line only when ID is the config id, `@^ID line` only when it is not;
 * - `$NAME=value` defines a parameter (a value ending in `\` continues on the next line); `${NAME}`, and `$NAME`
 *   before whitespace or the end of the line, are replaced at use, recursively; an undefined one stays as written;
 * - `include PATTERN` (and `includer|includem|includew|includeb`) reads every file the glob matches, in name order,
 *   relative to the directory of the file that includes it;
 * - blocks are `keyword args {` … `}`; `{` may also open on the next line, and a block may sit on one line.
 *
 * The result is a tree of statements, each with the file and line it came from. Reading never runs anything.
 */
import { readFile, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { glob } from 'tinyglobby';

export interface SourcePos {
  readonly file: string;
  readonly line: number;
}

/** One statement: its words (the keyword first) and, for a block, what is inside. */
export interface KaNode {
  readonly words: readonly string[];
  readonly children?: readonly KaNode[];
  readonly at: SourcePos;
}

/** A finding about the input that is not a statement: an include that matched nothing, `~SEQ`, … */
export interface ParseNote {
  readonly at: SourcePos;
  readonly what: string;
  readonly why: string;
}

export interface ParsedConfig {
  readonly nodes: readonly KaNode[];
  /** Every file read, in the order read. */
  readonly files: readonly string[];
  readonly notes: readonly ParseNote[];
  /** Lines that started with `@` (kept or dropped for the config id). */
  readonly conditionals: number;
}

/** The input is not a keepalived configuration keepalived would read (unbalanced braces, an include loop, …). */
export class KeepalivedSyntaxError extends Error {
  constructor(
    readonly at: SourcePos | undefined,
    message: string,
  ) {
    super(at === undefined ? message : `${at.file}:${at.line}: ${message}`);
    this.name = 'KeepalivedSyntaxError';
  }
}

export interface ParseOptions {
  /** keepalived's config id (`-i`): the host name's first label unless given. */
  readonly configId: string;
  /** Read a file (tests give a map); default: the file system. */
  readonly read?: (path: string) => Promise<string>;
  /** Expand an include pattern to paths, sorted; default: the file system (tinyglobby, braces and all). */
  readonly expand?: (pattern: string, cwd: string) => Promise<string[]>;
}

interface Line {
  readonly text: string;
  readonly at: SourcePos;
}

const MAX_INCLUDE_DEPTH = 32;
const MAX_SUBSTITUTIONS = 64;
const DEFINITION = /^\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s;
const INCLUDE = /^include[rmwb]?$/;

/** The text of a line with its comment removed (`#` or `!` outside double quotes). */
export function stripComment(text: string): string {
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charAt(i);
    if (c === '\\' && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === '#' || c === '!')) return text.slice(0, i);
  }
  return text;
}

/**
 * Replace defined parameters in `text`: `${NAME}` anywhere, `$NAME` followed by whitespace or the end. Repeats
 * until nothing changes, as keepalived does; a definition that refers to itself is an error, not a hang.
 */
export function substitute(text: string, params: ReadonlyMap<string, string>, at: SourcePos): string {
  let out = text;
  for (let n = 0; n < MAX_SUBSTITUTIONS; n++) {
    const next = out.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)/g,
      (whole, braced: string | undefined, bare: string | undefined) =>
        params.get(braced ?? bare ?? '') ?? whole,
    );
    if (next === out) return out;
    out = next;
  }
  throw new KeepalivedSyntaxError(
    at,
    `parameters still expand after ${MAX_SUBSTITUTIONS} rounds (a definition refers to itself?)`,
  );
}

/** Split a logical line into words: double quotes group (and are removed), `{` and `}` stand alone. */
export function tokenize(text: string, at: SourcePos): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  const end = () => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text.charAt(i);
    if (c === '"') {
      inWord = true;
      let closed = false;
      for (i++; i < text.length; i++) {
        const q = text.charAt(i);
        if (q === '\\' && i + 1 < text.length) word += text.charAt(++i);
        else if (q === '"') {
          closed = true;
          break;
        } else word += q;
      }
      if (!closed) throw new KeepalivedSyntaxError(at, 'a double quote is not closed on this line');
    } else if (c === ' ' || c === '\t' || c === '\r') end();
    else if (c === '{' && word.endsWith('$')) {
      // `${UNDEFINED}` stays one word: keepalived leaves a parameter it does not know in place.
      const close = text.indexOf('}', i);
      const stop = close === -1 ? text.length : close + 1;
      word += text.slice(i, stop);
      i = stop - 1;
    } else if (c === '{' || c === '}') {
      end();
      words.push(c);
    } else {
      word += c;
      inWord = true;
    }
  }
  end();
  return words;
}

/** The statement tree of a list of logical lines. */
export function buildTree(lines: readonly Line[]): KaNode[] {
  interface Open {
    readonly words: string[];
    readonly children: KaNode[];
    readonly at: SourcePos;
  }
  const root: KaNode[] = [];
  const stack: { node: Open; into: KaNode[] }[] = [];
  const current = (): KaNode[] => stack.at(-1)?.node.children ?? root;
  for (const line of lines) {
    let words: string[] = [];
    const flush = () => {
      if (words.length > 0) current().push({ words, at: line.at });
      words = [];
    };
    for (const w of tokenize(line.text, line.at)) {
      if (w === '{') {
        let owner: Open;
        if (words.length > 0) owner = { words, children: [], at: line.at };
        else {
          // `{` on a line of its own opens the statement above it.
          const list = current();
          const prev = list.at(-1);
          if (prev === undefined || prev.children !== undefined)
            throw new KeepalivedSyntaxError(line.at, "'{' with no keyword before it");
          list.pop();
          owner = { words: [...prev.words], children: [], at: prev.at };
        }
        words = [];
        stack.push({ node: owner, into: current() });
      } else if (w === '}') {
        flush();
        const top = stack.pop();
        if (top === undefined) throw new KeepalivedSyntaxError(line.at, "'}' closes no block");
        top.into.push({ words: top.node.words, children: top.node.children, at: top.node.at });
      } else words.push(w);
    }
    flush();
  }
  const open = stack.at(-1);
  if (open !== undefined)
    throw new KeepalivedSyntaxError(open.node.at, `block "${open.node.words.join(' ')}" is never closed`);
  return root;
}

/** Read `file` (and everything it includes) into the statement tree keepalived would see for `configId`. */
export async function parseKeepalived(file: string, options: ParseOptions): Promise<ParsedConfig> {
  const read = options.read ?? ((p: string) => readFile(p, 'utf8'));
  const expand =
    options.expand ??
    (async (pattern: string, cwd: string) =>
      (await glob(pattern, { cwd, absolute: true, onlyFiles: true, expandDirectories: false })).sort());
  const params = new Map<string, string>();
  const lines: Line[] = [];
  const notes: ParseNote[] = [];
  const files: string[] = [];
  let conditionals = 0;

  /** Apply conditionals, definitions, substitution and includes to one line; emit what remains. */
  const handle = async (raw: string, at: SourcePos, stack: readonly string[]): Promise<void> => {
    let text = raw.trim();
    if (text === '') return;
    if (text.startsWith('@')) {
      conditionals++;
      const m = /^@(\^?)(\S*)\s*(.*)$/s.exec(text);
      if (m === null) return;
      const matches = m[2] === options.configId;
      if ((m[1] === '^') === matches) return;
      text = (m[3] ?? '').trim();
      if (text === '') return;
    }
    const def = DEFINITION.exec(text);
    if (def !== null) {
      params.set(def[1] ?? '', def[2] ?? '');
      return;
    }
    const expanded = substitute(text, params, at);
    if (expanded !== text) {
      // A multi-line parameter becomes several lines, each read again (conditionals and all).
      for (const part of expanded.split('\n')) await handle(part, at, stack);
      return;
    }
    if (text.startsWith('~')) {
      notes.push({
        at,
        what: text.split(/\s+/)[0] ?? text,
        why: 'keepalived sequence/list expansion is not supported by the importer: expand it by hand',
      });
      return;
    }
    const words = text.split(/\s+/);
    if (INCLUDE.test(words[0] ?? '')) {
      const pattern = words
        .slice(1)
        .join(' ')
        .replace(/^"(.*)"$/, '$1');
      if (pattern === '') throw new KeepalivedSyntaxError(at, 'include without a file name');
      const cwd = dirname(at.file);
      const matches = isAbsolute(pattern) ? await expand(pattern, '/') : await expand(pattern, cwd);
      if (matches.length === 0)
        notes.push({
          at,
          what: `include ${pattern}`,
          why: 'matches no file: whatever it held is not converted',
        });
      for (const m of matches) await readOne(isAbsolute(m) ? m : resolve(cwd, m), stack, at);
      return;
    }
    lines.push({ text, at });
  };

  const readOne = async (
    path: string,
    stack: readonly string[],
    from: SourcePos | undefined,
  ): Promise<void> => {
    if (stack.length >= MAX_INCLUDE_DEPTH)
      throw new KeepalivedSyntaxError(from, `includes nest deeper than ${MAX_INCLUDE_DEPTH} files`);
    let real = path;
    let text: string;
    try {
      text = await read(path);
      real = await realpath(path).catch(() => path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new KeepalivedSyntaxError(from, `cannot read ${path}${code === undefined ? '' : ` (${code})`}`);
    }
    if (stack.includes(real))
      throw new KeepalivedSyntaxError(from, `${path} includes itself (through ${stack.join(' → ')})`);
    files.push(path);
    const inner = [...stack, real];
    const physical = text.split('\n');
    for (let i = 0; i < physical.length; i++) {
      const at = { file: path, line: i + 1 };
      let body = stripComment(physical[i] ?? '');
      const def = DEFINITION.exec(body.trim());
      if (def !== null && body.trimEnd().endsWith('\\')) {
        // A multi-line definition: every following line ending in `\` continues it (comments and all kept).
        const parts = [(def[2] ?? '').replace(/\\\s*$/, '').trim()];
        while (i + 1 < physical.length) {
          const next = physical[++i] ?? '';
          const continued = next.trimEnd().endsWith('\\');
          parts.push(stripComment(continued ? next.trimEnd().slice(0, -1) : next));
          if (!continued) break;
        }
        params.set(def[1] ?? '', parts.filter((p) => p.trim() !== '').join('\n'));
        continue;
      }
      body = body.trimEnd();
      await handle(body, at, inner);
    }
  };

  await readOne(file, [], undefined);
  return { nodes: buildTree(lines), files, notes, conditionals };
}
