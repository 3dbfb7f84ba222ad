/**
 * Issue 8, quick network fault: the IMAP connection is cut in the middle of the literal of a
 * big message (a proxy counts the FETCH response's bytes); the daemon reconnects and loses
 * nothing. The other faults (mid-command, mid-DATA, latency, black-hole, POP3) run in
 * `npm run torture`.
 */
import { describe, it } from "vitest"
import { networkFaults } from "../../bench/torture/networkFaults.js"
import { expectPassed, testContext } from "./support.js"

describe("torture: network faults", () => {
  it("a cut in the middle of a FETCH literal: reconnect, nothing lost or duplicated", async () => {
    const [result] = await networkFaults(testContext(201), { cases: ["cut-mid-literal"], messages: 80, faults: 2, timeLimitMs: 90_000 })
    expectPassed(result!)
  }, 150_000)
})
