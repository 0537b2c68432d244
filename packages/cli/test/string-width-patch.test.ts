/**
 * The two copies of string-width under yargs are patched (patches/, docs/design.md "Footprint: what a command
 * loads") so that importing them builds neither an Intl.Segmenter nor the \p{RGI_Emoji} pattern: together 50-60 ms
 * at the start of every coord process on the lab VM. Widths must stay what they were.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

type StringWidth = (text: string) => number;

const fromYargs = createRequire(import.meta.resolve('yargs'));
const copies = {
  // yargs' own (8.x), and cliui's (7.x), which yargs renders help with.
  yargs: fromYargs.resolve('string-width'),
  cliui: createRequire(fromYargs.resolve('cliui')).resolve('string-width'),
};

const RealSegmenter = Intl.Segmenter;
const RealRegExp = RegExp;
/** Intl's members are typed read-only; at run time they are ordinary writable properties. */
const intl = Intl as { Segmenter: typeof Intl.Segmenter };
afterEach(() => {
  intl.Segmenter = RealSegmenter;
  globalThis.RegExp = RealRegExp;
});

/** Import a fresh instance of `file`, counting the segmenters and RGI emoji patterns built meanwhile. */
async function importCounting(file: string): Promise<{ width: StringWidth; built: () => string[] }> {
  const built: string[] = [];
  intl.Segmenter = class extends RealSegmenter {
    constructor(...args: ConstructorParameters<typeof Intl.Segmenter>) {
      super(...args);
      built.push('Intl.Segmenter');
    }
  };
  globalThis.RegExp = new Proxy(RealRegExp, {
    construct(target, args: [string | RegExp, string?]) {
      if (String(args[0]).includes('RGI_Emoji')) built.push('RGI_Emoji');
      return new target(...args);
    },
  });
  const url = `${pathToFileURL(file).href}?fresh=${Math.random()}`;
  const mod = (await import(url)) as { default: StringWidth };
  return { width: mod.default, built: () => [...built] };
}

describe('string-width as patched for coord', () => {
  for (const [owner, file] of Object.entries(copies))
    it(`${owner}'s copy builds nothing heavy at import and measures as before`, async () => {
      const { width, built } = await importCounting(file);
      expect(built()).toEqual([]);
      // Printable ASCII takes a fast path: still nothing built.
      expect(width('coord status')).toBe(12);
      expect(width('世界')).toBe(4);
      expect(width('👍')).toBe(2);
      expect(width('👨‍👩‍👧')).toBe(2);
      expect(width('a\u0301')).toBe(1);
      expect(width('\u001b[31mred\u001b[39m')).toBe(3);
      expect(built()).toContain('Intl.Segmenter');
    });
});
