import { readFileSync } from 'node:fs';

/** The coord version, from this package's package.json (works from src/ and dist/). */
export const VERSION: string = (() => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? '0.0.0';
})();
