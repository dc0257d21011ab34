import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          // Unit tests first, then integration tests (which run two files at a time).
          sequence: { groupOrder: 0 },
          // test/*.test.ts: checks of the repository itself (docs against the code).
          include: ['apps/*/src/**/*.test.ts', 'packages/*/src/**/*.test.ts', 'test/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/node_modules/**'],
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 1 },
          include: [
            'apps/*/src/**/*.int.test.ts',
            'packages/*/src/**/*.int.test.ts',
            'test/**/*.int.test.ts',
          ],
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Two cores: each file starts worker processes and pg_dump; two files at a time
          // keeps them from starving each other.
          maxWorkers: 2,
        },
      },
    ],
  },
});
