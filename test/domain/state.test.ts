/**
 * The per-mailbox fold (DESIGN.md, "The processing protocol"), as given events → state: the
 * stage of a ref after each step, the counters `status` shows, the connection state and the
 * duplicate map that replay hands back to a restarted mailbox.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  MailboxConnected,
  MailboxConnectionFailed,
  type MailboxEvent,
  MailboxStopped,
  MessageAccepted,
  MessageDuplicateSkipped,
  MessageQuarantined,
  MessageQuarantineRequested,
  MessageRemoved,
  MessageRetrieved,
  QuarantineFailed
} from "../../src/domain/events.js"
import type { QuarantineReason } from "../../src/domain/QuarantineReason.js"
import { dedupKey, emptyState, evolve, type MailboxState, replay } from "../../src/domain/state.js"

const t = (second: number) => new Date(Date.UTC(2024, 0, 1, 12, 0, second))

const retrieved = (ref: string, sha256 = `sha-${ref}`, messageId = `<${ref}@example.com>`) =>
  new MessageRetrieved({ ref, sha256, size: 1234, messageId })

const accepted = (ref: string, sha256 = `sha-${ref}`, messageId = `<${ref}@example.com>`) =>
  new MessageAccepted({
    ref,
    sha256,
    messageId,
    from: "alice@example.com",
    to: ["support@example.com"],
    cc: [],
    subject: "Hello",
    date: null,
    attachments: [],
    body: "Hi\r\n",
    crlfSha256: sha256
  })

const quarantineRequested = (ref: string, reason: QuarantineReason = "auto-response") =>
  new MessageQuarantineRequested({ ref, sha256: `sha-${ref}`, reason, detail: "Auto-Submitted: auto-replied" })

const quarantineFailed = (ref: string, attempt: number, reason: QuarantineReason = "auto-response") =>
  new QuarantineFailed({ ref, sha256: `sha-${ref}`, reason, attempt, error: "451 try again later" })

const quarantined = (ref: string, reason: QuarantineReason = "auto-response") =>
  new MessageQuarantined({
    ref,
    sha256: `sha-${ref}`,
    reason,
    destination: "quarantine@example.com",
    response: "250 2.0.0 Ok: queued"
  })

const duplicateSkipped = (ref: string, duplicateOf: string) =>
  new MessageDuplicateSkipped({
    ref,
    sha256: `sha-${duplicateOf}`,
    messageId: `<${duplicateOf}@example.com>`,
    duplicateOf
  })

const removed = (ref: string) => new MessageRemoved({ ref, how: "delete" })

/** Folds events one second apart, starting at t(1). */
const given = (events: ReadonlyArray<MailboxEvent>): MailboxState =>
  replay(events.map((event, i) => ({ event, at: t(i + 1) })))

describe("evolve: the stages of one ref", () => {
  // Each row: the events so far → where "r1" stands (undefined once removed).
  const accept = [retrieved("r1"), accepted("r1"), removed("r1")]
  const quarantine = [
    retrieved("r1"),
    quarantineRequested("r1"),
    quarantineFailed("r1", 1),
    quarantineFailed("r1", 2),
    quarantined("r1"),
    removed("r1")
  ]
  const duplicate = [retrieved("r0"), accepted("r0"), removed("r0"), retrieved("r1", "sha-r0", "<r0@example.com>"),
    duplicateSkipped("r1", "r0"), removed("r1")]

  const table: ReadonlyArray<
    readonly [string, ReadonlyArray<MailboxEvent>, Partial<{
      stage: string
      attempts: number
      lastAttemptAt: Date | undefined
      reason: string | undefined
    }> | undefined, boolean]
  > = [
    ["retrieved", accept.slice(0, 1), { stage: "retrieved", attempts: 0, lastAttemptAt: undefined }, false],
    ["accepted", accept.slice(0, 2), { stage: "accepted", attempts: 0 }, false],
    ["accepted → removed", accept, undefined, true],
    ["quarantine requested", quarantine.slice(0, 2), {
      stage: "quarantine-requested",
      reason: "auto-response",
      attempts: 0,
      lastAttemptAt: undefined
    }, false],
    ["quarantine failed once", quarantine.slice(0, 3), {
      stage: "quarantine-requested",
      attempts: 1,
      lastAttemptAt: t(3)
    }, false],
    ["quarantine failed twice", quarantine.slice(0, 4), {
      stage: "quarantine-requested",
      attempts: 2,
      lastAttemptAt: t(4)
    }, false],
    ["quarantined", quarantine.slice(0, 5), {
      stage: "quarantined",
      reason: "auto-response",
      attempts: 2,
      lastAttemptAt: t(4)
    }, false],
    ["quarantined → removed", quarantine, undefined, true],
    ["duplicate retrieved", duplicate.slice(0, 4), { stage: "retrieved" }, false],
    ["duplicate skipped", duplicate.slice(0, 5), { stage: "duplicate" }, false],
    ["duplicate skipped → removed", duplicate, undefined, true]
  ]

  it.each(table)("%s", (_name, events, inFlight, isRemoved) => {
    const state = given(events)
    if (inFlight === undefined) {
      expect(state.inFlight.has("r1")).toBe(false)
    } else {
      const entry = state.inFlight.get("r1")
      expect(entry).toBeDefined()
      // Only the fields the row names; `undefined` means "not set yet".
      const picked = Object.fromEntries(Object.keys(inFlight).map((key) => [key, entry![key as keyof typeof entry]]))
      expect(picked).toEqual(inFlight)
    }
    expect(state.removed.has("r1")).toBe(isRemoved)
    expect(state.version).toBe(events.length)
    expect(state.lastEventAt).toEqual(t(events.length))
  })

  it("keeps what the retrieval said about the message", () => {
    const state = given([new MessageRetrieved({ ref: "r1", sha256: "abc", size: 42, messageId: "<m@x>" })])
    expect(state.inFlight.get("r1")).toEqual({
      ref: "r1",
      sha256: "abc",
      messageId: "<m@x>",
      size: 42,
      retrievedAt: t(1),
      stage: "retrieved",
      attempts: 0
    })
  })

  it("leaves only the refs not yet removed in flight, whatever their stage", () => {
    const state = given([
      retrieved("a"),
      retrieved("b"),
      retrieved("c"),
      retrieved("d"),
      accepted("a"),
      removed("a"),
      quarantineRequested("b", "bounce"),
      accepted("c")
    ])
    expect([...state.inFlight.values()].map(({ ref, stage }) => [ref, stage])).toEqual([
      ["b", "quarantine-requested"],
      ["c", "accepted"],
      ["d", "retrieved"]
    ])
    expect([...state.removed]).toEqual(["a"])
  })
})

describe("evolve: counters", () => {
  const table: ReadonlyArray<readonly [string, ReadonlyArray<MailboxEvent>, MailboxState["counts"], MailboxState["quarantinedByReason"]]> = [
    ["nothing", [], {
      retrieved: 0,
      accepted: 0,
      quarantineRequested: 0,
      quarantined: 0,
      quarantineFailures: 0,
      duplicates: 0,
      removed: 0
    }, {}],
    ["one accepted message", [retrieved("a"), accepted("a"), removed("a")], {
      retrieved: 1,
      accepted: 1,
      quarantineRequested: 0,
      quarantined: 0,
      quarantineFailures: 0,
      duplicates: 0,
      removed: 1
    }, {}],
    ["a mix", [
      retrieved("a"),
      accepted("a"),
      removed("a"),
      retrieved("b"),
      quarantineRequested("b", "bounce"),
      quarantineFailed("b", 1, "bounce"),
      quarantineFailed("b", 2, "bounce"),
      quarantined("b", "bounce"),
      removed("b"),
      retrieved("c"),
      quarantineRequested("c", "too-large"),
      quarantined("c", "too-large"),
      retrieved("d"),
      quarantineRequested("d", "bounce"),
      quarantined("d", "bounce"),
      removed("d"),
      retrieved("e", "sha-a", "<a@example.com>"),
      duplicateSkipped("e", "a"),
      removed("e"),
      retrieved("f")
    ], {
      retrieved: 6,
      accepted: 1,
      quarantineRequested: 3,
      quarantined: 3,
      quarantineFailures: 2,
      duplicates: 1,
      removed: 4
    }, { bounce: 2, "too-large": 1 }]
  ]

  it.each(table)("%s", (_name, events, counts, byReason) => {
    const state = given(events)
    expect(state.counts).toEqual(counts)
    expect(state.quarantinedByReason).toEqual(byReason)
  })
})

describe("evolve: connection", () => {
  const connected = new MailboxConnected({ server: "imap.example.com:993" })
  const failed = new MailboxConnectionFailed({ error: "ECONNREFUSED", attempt: 1, retryInSeconds: 60 })
  const stoppedUsage = new MailboxStopped({ reason: "usage-type", detail: "Test configuration on a Production server" })
  const shutdown = new MailboxStopped({ reason: "shutdown", detail: "SIGTERM" })

  type Connection = MailboxState["connection"]
  const table: ReadonlyArray<readonly [string, ReadonlyArray<MailboxEvent>, Connection]> = [
    ["never connected", [], {
      state: "never",
      since: undefined,
      server: undefined,
      lastError: undefined,
      lastErrorAt: undefined,
      stoppedReason: undefined
    }],
    ["connected", [connected], {
      state: "connected",
      since: t(1),
      server: "imap.example.com:993",
      lastError: undefined,
      lastErrorAt: undefined,
      stoppedReason: undefined
    }],
    ["connected → failing", [connected, failed], {
      state: "failing",
      since: t(2),
      server: "imap.example.com:993",
      lastError: "ECONNREFUSED",
      lastErrorAt: t(2),
      stoppedReason: undefined
    }],
    ["failing → connected keeps the last error", [failed, connected], {
      state: "connected",
      since: t(2),
      server: "imap.example.com:993",
      lastError: "ECONNREFUSED",
      lastErrorAt: t(1),
      stoppedReason: undefined
    }],
    ["stopped with a reason", [connected, stoppedUsage], {
      state: "stopped",
      since: t(2),
      server: "imap.example.com:993",
      lastError: "Test configuration on a Production server",
      lastErrorAt: t(2),
      stoppedReason: "usage-type"
    }],
    ["shutdown keeps the last error", [connected, failed, shutdown], {
      state: "stopped",
      since: t(3),
      server: "imap.example.com:993",
      lastError: "ECONNREFUSED",
      lastErrorAt: t(2),
      stoppedReason: "shutdown"
    }],
    ["stopped → connected clears the stop reason", [stoppedUsage, connected], {
      state: "connected",
      since: t(2),
      server: "imap.example.com:993",
      lastError: "Test configuration on a Production server",
      lastErrorAt: t(1),
      stoppedReason: undefined
    }],
    ["a failed quarantine is the last error, not a connection change", [connected, retrieved("r1"),
      quarantineRequested("r1"), quarantineFailed("r1", 1)], {
      state: "connected",
      since: t(1),
      server: "imap.example.com:993",
      lastError: "quarantine of r1 failed: 451 try again later",
      lastErrorAt: t(4),
      stoppedReason: undefined
    }]
  ]

  it.each(table)("%s", (_name, events, connection) => {
    expect(given(events).connection).toEqual(connection)
  })
})

describe("evolve: the duplicate map", () => {
  it("maps sha256 + Message-ID of every accepted message to its ref, and keeps it after removal", () => {
    const state = given([
      retrieved("a"),
      accepted("a"),
      removed("a"),
      retrieved("b", "sha-same", "<one@x>"),
      accepted("b", "sha-same", "<one@x>"),
      retrieved("c", "sha-same", "<two@x>"),
      accepted("c", "sha-same", "<two@x>"),
      retrieved("d"),
      quarantineRequested("d"),
      quarantined("d")
    ])
    expect(state.accepted).toEqual(
      new Map([
        [dedupKey("sha-a", "<a@example.com>"), "a"],
        [dedupKey("sha-same", "<one@x>"), "b"],
        [dedupKey("sha-same", "<two@x>"), "c"]
      ])
    )
    // A quarantined or only retrieved message is not in the map: it may still be accepted.
    expect(state.accepted.has(dedupKey("sha-d", "<d@example.com>"))).toBe(false)
  })

  it("tells apart the same bytes with another Message-ID and the same Message-ID with other bytes", () => {
    expect(dedupKey("s", "<m>")).not.toBe(dedupKey("s", "<n>"))
    expect(dedupKey("s", "<m>")).not.toBe(dedupKey("t", "<m>"))
  })
})

describe("replay", () => {
  const events: ReadonlyArray<MailboxEvent> = [
    new MailboxConnected({ server: "pop.example.com:995" }),
    retrieved("a"),
    accepted("a"),
    removed("a"),
    retrieved("b"),
    quarantineRequested("b", "quarantine-test"),
    quarantineFailed("b", 1, "quarantine-test"),
    retrieved("c", "sha-a", "<a@example.com>"),
    duplicateSkipped("c", "a"),
    new MailboxConnectionFailed({ error: "timeout", attempt: 1, retryInSeconds: 10 }),
    quarantined("b", "quarantine-test"),
    removed("b")
  ]

  it("counts every event in the version", () => {
    expect(given([]).version).toBe(0)
    expect(given(events).version).toBe(events.length)
    // Events that change nothing else (a step for an unknown ref) still count.
    expect(given([accepted("unknown"), removed("unknown")]).version).toBe(2)
  })

  it("of a list equals folding the events one by one", () => {
    const stored = events.map((event, i) => ({ event, at: t(i + 1) }))
    let folded = emptyState()
    for (const { at, event } of stored) folded = evolve(folded, event, at)
    expect(replay(stored)).toEqual(folded)
  })

  it("of a prefix, continued with evolve, equals replay of the whole", () => {
    const stored = events.map((event, i) => ({ event, at: t(i + 1) }))
    const continued = replay(stored.slice(0, 5))
    for (const { at, event } of stored.slice(5)) evolve(continued, event, at)
    expect(continued).toEqual(replay(stored))
  })

  it("starts from an empty state each time", () => {
    const stored = events.map((event, i) => ({ event, at: t(i + 1) }))
    const first = replay(stored)
    const second = replay(stored)
    expect(second).toEqual(first)
    expect(second).not.toBe(first)
    expect(replay([])).toEqual(emptyState())
  })
})
