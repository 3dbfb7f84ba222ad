/**
 * For the quick torture tests: one assertion that a scenario row passed, whose message lists
 * every failed check, crash and note, so a red test says what went wrong.
 */
import { rmSync } from "node:fs"
import { expect, onTestFinished } from "vitest"
import { makeContext, type TortureContext } from "./lib/context.js"
import { passed, type ScenarioResult } from "./lib/report.js"

/** A context for one test; its scratch directory goes when the test ends (TORTURE_KEEP=1 keeps it). */
export const testContext = (seed: number): TortureContext => {
  // TORTURE_LOG=1 prints what the harness does (each SIGKILL and its moment) to stderr.
  const ctx = makeContext({ seed, ...(process.env.TORTURE_LOG === undefined ? {} : { log: (line: string) => console.error(line) }) })
  onTestFinished(() => {
    if (process.env.TORTURE_KEEP === undefined) rmSync(ctx.root, { recursive: true, force: true, maxRetries: 3 })
  })
  return ctx
}

export const explain = (result: ScenarioResult): string =>
  [
    `${result.scenario} (seed ${result.seed}): in ${result.messagesIn}, accepted ${result.accepted}, quarantined ${result.quarantined}, lost ${result.lost}, duplicated ${result.duplicated}, crashes ${result.crashes}, hangs ${result.hangs}`,
    ...result.checks.filter((check) => !check.ok).map((check) => `FAILED ${check.name}: ${check.detail}`),
    ...result.crashDetails.map((crash) => `crash: ${crash}`),
    ...result.notes.map((note) => `note: ${note}`)
  ].join("\n")

export const expectPassed = (result: ScenarioResult): void => {
  expect(passed(result), explain(result)).toBe(true)
  expect(result.lost).toBe(0)
  expect(result.duplicated).toBe(0)
  expect(result.crashes).toBe(0)
  expect(result.hangs).toBe(0)
}
