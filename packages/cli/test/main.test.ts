import yargs, { type Argv } from 'yargs';
import { describe, expect, it } from 'vitest';
import { skipHelpCache } from '../src/main.js';

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
