import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Every file starts its own nats-server; two cores run two files at once comfortably.
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
