import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real peers (anvil, brokers, pseudo-terminals); two cores do not take many at once.
    maxWorkers: 2,
  },
});
