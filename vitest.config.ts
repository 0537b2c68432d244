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
          // Lab tests build network namespaces and run real daemons with real timing: one file at a time. Two at
          // once on a 2-core machine starved the nodes' event loops (netlink replies read after the ack window,
          // so holders fenced as designed) and the tests' exact event sequences failed one run in two.
          testTimeout: 120_000,
          hookTimeout: 120_000,
          maxWorkers: 1,
          fileParallelism: false,
          // Projects with different worker counts must run in separate groups: unit first, then the lab.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
