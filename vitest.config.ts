import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Integration suites each start their own Dovecot and SMTP server on free ports.
    pool: "forks",
    maxWorkers: 2,
    minWorkers: 1
  }
})
