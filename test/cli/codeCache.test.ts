/**
 * The build's V8 code cache (scripts/bundle.ts `writeCodeCache`) is one V8 takes: a rejected
 * cache breaks nothing, it only makes every start-up compile the bundle again (0.25 → 0.65 s),
 * so nothing else would notice.
 */
import { describe, expect, it } from "@effect/vitest"
import { existsSync } from "node:fs"
import { codeCachePath, compileBundle } from "../../bin/compileBundle.js"

describe("the CLI bundle's code cache", () => {
  it("is written by the build and accepted by this Node", () => {
    expect(existsSync(codeCachePath)).toBe(true)
    expect(compileBundle().cachedDataRejected).toBe(false)
  })
})
