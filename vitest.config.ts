import { defineConfig } from 'vitest/config';

// Workspace packages export `source` (TypeScript) for tests, `default` (dist) for production.
const resolve = { conditions: ['source', 'node', 'import', 'default'] };

export default defineConfig({
  resolve,
  ssr: { resolve: { conditions: resolve.conditions, externalConditions: ['source'] } },
  test: {
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['packages/*/test/**/*.test.ts'], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: {
          name: 'lab',
          include: ['test/**/*.test.ts'],
          // Lab tests build network namespaces and run real daemons: give them room, and run
          // at most two files at once on a 2-core machine (each lab has its own prefix and subnet).
          testTimeout: 120_000,
          hookTimeout: 120_000,
          maxWorkers: 2,
          fileParallelism: true,
          // Projects with different worker counts must run in separate groups: unit first, then the lab.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
