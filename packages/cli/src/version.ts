import { readFileSync } from 'node:fs';

declare const __COORD_VERSION__: string | undefined;
declare const __COORD_BUILD__: string | undefined;

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

/** How this coord was built: the package build stamps its commit and date; a checkout runs its own build. */
export const BUILD: string =
  typeof __COORD_BUILD__ === 'string' ? __COORD_BUILD__ : 'from a source checkout (pnpm build)';

/** `coord version` / `coord -v`: what a bug report needs. `--version` prints the version alone (for scripts). */
export function versionText(): string {
  return [`coord ${VERSION}`, `node ${process.version} (${process.execPath})`, `build ${BUILD}`].join('\n');
}
