import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configKeys, nodeConfigShape } from '@coord/core';
import { configPage, coordPage, roff } from '../src/manpages.js';
import { COMMANDS, type CommandDoc } from '../src/options.js';
import { main } from '../src/main.js';
import { VERSION } from '../src/version.js';

const dir = mkdtempSync(join(tmpdir(), 'coord-man-'));

/** Render with man(1) and groff's warnings on: the page must render without a single warning. */
function render(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  const out = execFileSync('man', ['--warnings=w', '-l', file], {
    env: { ...process.env, MANWIDTH: '100', MAN_KEEP_FORMATTING: '0' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return out;
}

function renderWarnings(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  try {
    execFileSync('groff', ['-man', '-Tutf8', '-ww', '-z', file], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return '';
  } catch (e) {
    return String((e as { stderr?: string }).stderr);
  }
}

const plain = (s: string) =>
  s
    .replace(/.\x08/g, '')
    .replace(/‐\n\s*/g, '')
    .replace(/\s+/g, ' ');

describe('coord(8), generated from the command tables', () => {
  const page = coordPage('9.9.9');
  const text = plain(render('coord.8', page));

  it('renders without a groff warning', () => {
    expect(renderWarnings('coord.8', page)).toBe('');
  });

  it('names every command, subcommand and option', () => {
    const all = (docs: readonly CommandDoc[], prefix: string): [string, CommandDoc][] =>
      docs.flatMap((d) => [
        [`${prefix}${d.command}`, d] as [string, CommandDoc],
        ...all(d.subcommands ?? [], `${prefix}${d.command} `),
      ]);
    for (const [name, doc] of all(Object.values(COMMANDS), 'coord ')) {
      expect(text, name).toContain(name);
      for (const option of Object.keys(doc.options))
        expect(text, `${name} --${option}`).toContain(`--${option}`);
    }
    expect(text).toContain('COORD_ETCD_PASSWORD');
    expect(text).toContain('9.9.9');
  });

  it('documents every exit status the CLI uses', () => {
    for (const status of [0, 2, 3, 4, 5, 6, 7, 8, 70])
      expect(text).toMatch(new RegExp(`EXIT STATUS.* ${status} `));
  });

  it('escapes what roff would otherwise read as requests or hyphens', () => {
    expect(roff('.start')).toBe('\\&.start');
    expect(roff("'quote")).toBe("\\&'quote");
    expect(roff('a-b\\c')).toBe('a\\-b\\ec');
  });
});

describe('coord.yaml(5), generated from the config schema', () => {
  it('every key of the schema has a description (a new key without one fails here)', () => {
    const keys = configKeys(nodeConfigShape());
    expect(keys.length).toBeGreaterThan(40);
    const missing = keys
      .filter((k) => k.description === undefined || k.description.trim() === '')
      .map((k) => k.path);
    expect(missing).toEqual([]);
    for (const path of [
      'etcd.cacert',
      'groups[].vips',
      'groups[].announce.refresh',
      'track.scripts[].weight',
      'haproxy.nonlocalBind',
    ])
      expect(keys.map((k) => k.path)).toContain(path);
  });

  it('renders without a groff warning and names every key', async () => {
    const page = await configPage('9.9.9');
    expect(renderWarnings('coord.yaml.5', page)).toBe('');
    const text = plain(render('coord.yaml.5', page));
    for (const k of configKeys(nodeConfigShape())) expect(text).toContain(k.path);
  });
});

/** Run main() with stdout (and yargs' console.log) captured. */
async function captured(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  const log = console.log;
  process.stdout.write = (chunk: string) => {
    out += chunk;
    return true;
  };
  console.log = (...args: unknown[]) => {
    out += `${args.map(String).join(' ')}\n`;
  };
  try {
    return { code: await main(argv, {}), out };
  } finally {
    process.stdout.write = write;
    console.log = log;
  }
}

describe('shell completion', () => {
  it('prints a zsh script with `completion zsh` and a bash one with `completion bash`, whatever $SHELL is', async () => {
    const zsh = await captured(['completion', 'zsh']);
    expect(zsh.code).toBe(0);
    expect(zsh.out).toMatch(/^#compdef coord$/m);
    expect(zsh.out).toContain('compdef _coord_yargs_completions coord');
    const bash = await captured(['completion', 'bash']);
    expect(bash.out).toContain('complete -o bashdefault -o default -F _coord_yargs_completions coord');
    expect(process.env.ZSH_NAME).toBeUndefined(); // the environment is put back
  });

  it('prints a completion script and completes commands and flags', async () => {
    const script = await captured(['completion']);
    expect(script.code).toBe(0);
    expect(script.out).toContain('complete -o bashdefault -o default -F _coord_yargs_completions coord');
    const commands = await captured(['--get-yargs-completions', 'coord', '']);
    expect(commands.out.split('\n')).toEqual(
      expect.arrayContaining(['join', 'status', 'service', 'etcd-roles']),
    );
    const flags = await captured(['--get-yargs-completions', 'coord', 'status', '--']);
    expect(flags.out.split('\n')).toEqual(
      expect.arrayContaining(['--etcd-cacert', '--cluster', '--timeout']),
    );
  });
});

describe('coord version', () => {
  it('`coord version` and `coord -v` print the version, the Node runtime and the build', async () => {
    for (const argv of [['version'], ['-v']]) {
      const r = await captured(argv);
      expect(r.code).toBe(0);
      expect(r.out.split('\n')).toEqual([
        `coord ${VERSION}`,
        `node ${process.version} (${process.execPath})`,
        'build from a source checkout (pnpm build)',
        '',
      ]);
    }
  });

  it('`coord --version` stays the bare version, for scripts', async () => {
    const r = await captured(['--version']);
    expect(r.out.trim()).toBe(VERSION);
  });
});
