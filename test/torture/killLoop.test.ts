/**
 * Issue 8, quick kill loop: SIGKILL the daemon at seeded moments while it drains a mailbox,
 * restart it each time; every message ends with exactly one terminal event, byte-exact.
 * The full version (2,000 messages, 30+ kills) is `npm run torture`.
 */
import { describe, it } from "vitest"
import { killLoop } from "../../bench/torture/killLoop.js"
import { expectPassed, testContext } from "./support.js"

describe("torture: kill loop", () => {
  it("IMAP: 200 messages, 5 SIGKILLs: nothing lost, nothing duplicated, every blob intact", async () => {
    expectPassed(await killLoop(testContext(101), { protocol: "imap", messages: 200, minKills: 5, timeLimitMs: 100_000 }))
  }, 150_000)

  it("POP3: 100 messages, 3 SIGKILLs: nothing lost, nothing duplicated, every blob intact", async () => {
    expectPassed(await killLoop(testContext(102), { protocol: "pop3", messages: 100, minKills: 3, timeLimitMs: 100_000 }))
  }, 150_000)
})
