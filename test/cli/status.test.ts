import { describe, expect, it } from "vitest"
import { describeStatus } from "../../src/cli/status.js"
import { MailboxConnected, MailboxStopped } from "../../src/domain/events.js"
import { emptyState, evolve } from "../../src/domain/state.js"

const connectedAt = new Date("2026-11-27T10:00:00Z")
const connected = () => {
  const state = emptyState()
  evolve(state, new MailboxConnected({ server: "imap://127.0.0.1:143" }), connectedAt)
  return state
}
const at = (seconds: number) => new Date(connectedAt.getTime() + seconds * 1000)

describe("status", () => {
  it("is not stale while polls keep coming", () => {
    const row = describeStatus("a", "c", connected(), at(590), 30, at(600))
    expect(row.connection).toBe("connected")
    expect(row.stale).toBe(false)
  })

  it("is stale when a connected mailbox has not polled for three intervals (the daemon was killed)", () => {
    expect(describeStatus("a", "c", connected(), at(60), 30, at(60 + 3 * 30 + 11)).stale).toBe(true)
    expect(describeStatus("a", "c", connected(), at(60), 30, at(60 + 3 * 30 + 9)).stale).toBe(false)
    // Never polled since it connected: counted from the connection.
    expect(describeStatus("a", "c", connected(), undefined, 30, at(101)).stale).toBe(true)
  })

  it("is never stale for a stopped mailbox or one no longer configured", () => {
    const stopped = connected()
    evolve(stopped, new MailboxStopped({ reason: "shutdown", detail: "" }), at(1))
    expect(describeStatus("a", "c", stopped, at(1), 30, at(10_000)).stale).toBe(false)
    expect(describeStatus("a", undefined, connected(), at(1), undefined, at(10_000)).stale).toBe(false)
  })
})
