/**
 * Issue 8, quick storage fault: another process holds BEGIN EXCLUSIVE on the event log for
 * longer than the daemon's busy timeout while mail keeps arriving. Nothing leaves the server
 * unlogged, the daemon says so at ERROR level, and it drains the mailbox by itself once the
 * lock is gone. Read-only and disk-full run in `npm run torture` (they need root).
 */
import { describe, it } from "vitest"
import { storageFaults } from "../../bench/torture/storageFaults.js"
import { expectPassed, testContext } from "./support.js"

describe("torture: storage faults", () => {
  it("the event log locked by another process: nothing removed unlogged, loud, recovers by itself", async () => {
    const [result] = await storageFaults(testContext(401), { cases: ["locked"], messages: 60, holdMs: 12_000, timeLimitMs: 60_000 })
    expectPassed(result!)
  }, 150_000)
})
