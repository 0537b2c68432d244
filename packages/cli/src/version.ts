import { readFileSync } from 'node:fs';

declare const __COORD_VERSION__: string | undefined;

/**
 * The coord version: set at bundle time by the package build (esbuild `define`), else read from this package's
 * package.json (works from src/ and dist/).
 */
export const VERSION: string =
  typeof __COORD_VERSION__ === 'string'
    ? __COORD_VERSION__
    : (() => {
        const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
          version?: string;
        };
        return pkg.version ?? '0.0.0';
      })();
