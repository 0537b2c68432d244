import yargs, { type Argv } from 'yargs';
import { describe, expect, it, vi } from 'vitest';
import { main, skipHelpCache } from '../src/main.js';

/** A one-command CLI whose help renders are counted. */
function counted(args: string[]): { y: Argv; renders: () => number; ran: () => boolean } {
  let ran = false;
  let renders = 0;
  const y = yargs(args)
    .exitProcess(false)
    .command(
      'hello',
      'say hello',
      (b) => b.option('name', { type: 'string' }),
      () => {
        ran = true;
      },
    )
    .help();
  const usage = (y as unknown as { getInternalMethods(): { getUsageInstance(): { help(): string } } })
    .getInternalMethods()
    .getUsageInstance();
  const help = usage.help.bind(usage);
  usage.help = () => {
    renders++;
    return help();
  };
  return { y, renders: () => renders, ran: () => ran };
}

describe('skipHelpCache', () => {
  it('a command runs without yargs rendering its help text', async () => {
    const c = counted(['hello', '--name', 'x']);
    expect(skipHelpCache(c.y)).toBe(true);
    await c.y.parseAsync();
    expect(c.ran()).toBe(true);
    expect(c.renders()).toBe(0);
  });

  it('negative control: without it, yargs renders the help once per command', async () => {
    const c = counted(['hello']);
    await c.y.parseAsync();
    expect(c.ran()).toBe(true);
    expect(c.renders()).toBe(1);
  });
});

describe('coord completion', () => {
  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    try {
      return { code: await main(args, {}), out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  }

  it('--help is help, not a script', async () => {
    const r = await run(['completion', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/bash or zsh/);
    expect(r.out).toMatch(/coord completion bash >> ~\/\.bashrc/);
    expect(r.out).not.toMatch(/compdef|complete -o/);
  });

  it('a shell it has no script for is an error naming the ones it has', async () => {
    const r = await run(['completion', 'fish']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/no script for fish/);
    expect(r.err).toMatch(/coord completion bash/);
  });
});
