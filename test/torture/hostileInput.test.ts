/**
 * Issue 8, quick hostile input: 300 malformed and adversarial messages (the light versions of
 * the generator's extremes) through the daemon: no crash, no hang, each accepted or
 * quarantined, and no quarantine notice carries an injected header or recipient.
 */
import { describe, it } from "vitest"
import { hostileInput } from "../../bench/torture/hostileInput.js"
import { expectPassed, testContext } from "./support.js"

describe("torture: hostile input", () => {
  it("300 hostile messages over IMAP: every one accepted or quarantined, no injected header in any notice", async () => {
    expectPassed(await hostileInput(testContext(301), {
      protocol: "imap",
      messages: 300,
      heavy: false,
      timeLimitMs: 90_000,
      perMessageLimitMs: 30_000,
      maxRssMiB: 1_024
    }))
  }, 150_000)
})
