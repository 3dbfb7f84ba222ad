/**
 * Replay's fast path (EventLog.replay: the folded payloads of the `events_replay` index, a page
 * as one JSON text, no Schema decode) against the reference: folding the same streams read back
 * fully decoded (EventLog.read → Schema classes → state.replay). Every event type, every stage a
 * message can be in flight at, quarantine attempts, duplicates, removals, connection changes,
 * ConfigurationApplied in `$config`, strings JSON must escape, several pages and several append
 * times.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import {
  CONFIG_STREAM,
  ConfigurationApplied,
  EVENT_TYPES,
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
import { emptyState, evolve, replay as fold } from "../../src/domain/state.js"
import { EventLog, FOLDED_PAYLOAD } from "../../src/eventlog/EventLog.js"
import { freshEventLog } from "../support/freshEventLog.js"

const freshLog = freshEventLog("replay")

/** Strings that JSON.stringify escapes or SQLite's JSON functions could alter: kept exactly? */
const awkward = ["a\u0000b", "lone \ud800 surrogate", "\udc00", "quote \" back\\slash / tab\t", "\u001f\u2028", "ünïcode 例え 🙂", "a\r\nb"]

const sha = (ref: string) => `sha-${ref}`
const mid = (ref: string) => `<${ref}@example.com>`

const retrieved = (ref: string, size = 1234) => new MessageRetrieved({ ref, sha256: sha(ref), size, messageId: mid(ref) })
const accepted = (ref: string, shaOf = ref) =>
  new MessageAccepted({
    ref,
    sha256: sha(shaOf),
    messageId: mid(shaOf),
    from: "\"Zoë\" <zoe@example.com>",
    to: ["support@example.com"],
    cc: ["cc@example.com"],
    subject: `About ${ref}`,
    date: "2024-02-29T23:59:59.000Z",
    attachments: [{ filename: "a.pdf", contentType: "application/pdf", size: 10 }],
    body: `Body of ${ref}\r\n`.repeat(20),
    crlfSha256: `crlf-${ref}`
  })
const requested = (ref: string, detail = "Auto-Submitted: auto-replied") =>
  new MessageQuarantineRequested({ ref, sha256: sha(ref), reason: "auto-response", detail })
const failed = (ref: string, attempt: number, error = "451 try again") =>
  new QuarantineFailed({ ref, sha256: sha(ref), reason: "auto-response", attempt, error })
const quarantined = (ref: string) =>
  new MessageQuarantined({ ref, sha256: sha(ref), reason: "auto-response", destination: "q@example.com", response: "250 ok" })
const duplicate = (ref: string, of: string) =>
  new MessageDuplicateSkipped({ ref, sha256: sha(of), messageId: mid(of), duplicateOf: of })
const removed = (ref: string, how = "delete") => new MessageRemoved({ ref, how })

/** One mailbox's history: every kind of message, finished or left at each stage. */
const mailboxHistory = (prefix: string): ReadonlyArray<ReadonlyArray<MailboxEvent>> => {
  const r = (name: string) => `${prefix}:${name}`
  return [
    [new MailboxConnectionFailed({ error: "ECONNREFUSED", attempt: 1, retryInSeconds: 60 })],
    [new MailboxConnected({ server: "imaps://mail.example.com:993/INBOX" })],
    // Finished: accepted, quarantined after two failed attempts, a duplicate of the first.
    [retrieved(r("done")), accepted(r("done")), removed(r("done"))],
    [retrieved(r("q")), requested(r("q"))],
    [failed(r("q"), 1)],
    [failed(r("q"), 2, "421 busy")],
    [quarantined(r("q")), removed(r("q"), "move:Junk")],
    [retrieved(r("dup")), duplicate(r("dup"), r("done")), removed(r("dup"), "gone")],
    // Awkward strings in every field the fold keeps.
    awkward.flatMap((text, i) => [
      new MessageRetrieved({ ref: r(`odd${i} ${text}`), sha256: `${prefix}${text}-sha`, size: i, messageId: `<${text}>` }),
      new MessageAccepted({ ...accepted(r(`odd${i} ${text}`)), sha256: `${prefix}${text}-sha`, messageId: `<${text}>` }),
      requested(r(`odd-q${i}`), text),
      failed(r(`odd-q${i}`), 1, text)
    ]),
    [new MailboxConnectionFailed({ error: awkward.join(" | "), attempt: 2, retryInSeconds: 202.5 })],
    [new MailboxConnected({ server: `imap://${awkward[5]}` })],
    // In flight at every stage.
    [retrieved(r("at-retrieved")), retrieved(r("at-accepted")), accepted(r("at-accepted"))],
    [retrieved(r("at-requested")), requested(r("at-requested"))],
    [retrieved(r("at-failed")), requested(r("at-failed")), failed(r("at-failed"), 1)],
    [failed(r("at-failed"), 2)],
    [retrieved(r("at-quarantined")), requested(r("at-quarantined")), quarantined(r("at-quarantined"))],
    [retrieved(r("at-duplicate")), duplicate(r("at-duplicate"), r("done"))],
    // Steps for refs the mailbox no longer holds in flight (after a crash between steps).
    [accepted(r("unknown")), removed(r("unknown")), failed(r("unknown"), 3)],
    [new MailboxStopped({ reason: "usage-type", detail: `Test configuration on a Production server ${awkward[0]}` })],
    [new MailboxStopped({ reason: "shutdown", detail: "SIGTERM" })]
  ]
}

/** Bulk traffic, so that a stream spans several replay pages (20,000 events each). */
const bulk = (prefix: string, messages: number, perAppend: number): ReadonlyArray<ReadonlyArray<MailboxEvent>> => {
  const appends: Array<Array<MailboxEvent>> = []
  for (let first = 0; first < messages; first += perAppend) {
    const refs = Array.from({ length: Math.min(perAppend, messages - first) }, (_, k) => `${prefix}:bulk-${first + k}`)
    appends.push([
      ...refs.map((ref, k) => retrieved(ref, 1000 + k)),
      ...refs.map((ref) => accepted(ref)),
      ...refs.map((ref) => removed(ref))
    ])
  }
  return appends
}

const configApplied = (n: number) =>
  new ConfigurationApplied({
    hash: `hash-${n}`,
    summary: `reload ${n}: ${awkward.join(" ")}`,
    started: [`mailbox-${n}`],
    restarted: [],
    stopped: n > 1 ? [`mailbox-${n - 1}`] : [],
    refused: ["bad \"one\""]
  })

/** Appends each group as one append, one second apart (TestClock), and returns the stream's version. */
const appendAll = (stream: string, groups: ReadonlyArray<ReadonlyArray<MailboxEvent>>) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    let version = 0
    for (const events of groups) {
      yield* TestClock.adjust("1 second")
      version = (yield* log.append({ stream, expectedVersion: version, events })).version
    }
    return version
  })

/** The reference: the stream read back through the Schema decode, folded by state.replay. */
const decodedFold = (stream: string) => Effect.map(Effect.flatMap(EventLog, (log) => log.read({ stream })), fold)

describe("replay", () => {
  it.effect("gives the state folded from the fully decoded events, for every event type and stage", () =>
    Effect.gen(function*() {
      const log = yield* EventLog
      // Two pages: the odd events inside the first and at the end of the second.
      const versionA = yield* appendAll("a", [...bulk("a", 3_500, 700), ...mailboxHistory("a"), ...bulk("a2", 3_400, 1_000),
        ...mailboxHistory("a3")])
      expect(versionA).toBeGreaterThan(20_000)
      yield* appendAll("b", mailboxHistory("b"))
      yield* appendAll(CONFIG_STREAM, [[configApplied(1)], [configApplied(2), configApplied(3)]])

      const types = new Set((yield* log.read({})).map((stored) => stored.event._tag))
      expect([...types].sort()).toEqual([...EVENT_TYPES].sort())

      for (const stream of ["a", "b", CONFIG_STREAM, "nobody"]) {
        const fast = yield* log.replay(stream)
        expect(fast).toStrictEqual(yield* decodedFold(stream))
      }

      // Not an empty comparison: the state holds every stage and the awkward strings.
      const b = yield* log.replay("b")
      expect(Object.fromEntries([...b.inFlight.values()].filter((e) => e.ref.startsWith("b:at-")).map((e) => [e.ref, e.stage])))
        .toEqual({
          "b:at-retrieved": "retrieved",
          "b:at-accepted": "accepted",
          "b:at-requested": "quarantine-requested",
          "b:at-failed": "quarantine-requested",
          "b:at-quarantined": "quarantined",
          "b:at-duplicate": "duplicate"
        })
      expect(b.inFlight.get("b:at-failed")).toMatchObject({ attempts: 2 })
      expect(b.counts).toMatchObject({ duplicates: 2, quarantineFailures: 2 + awkward.length + 2 + 1, removed: 4 })
      expect(b.accepted.get(`b${awkward[1]}-sha <${awkward[1]}>`)).toBe(`b:odd1 ${awkward[1]}`)
      expect(b.connection).toMatchObject({ state: "stopped", stoppedReason: "shutdown", server: `imap://${awkward[5]}` })
      const full = yield* log.replay("a")
      expect(full.version).toBe(versionA)
      expect(full.counts.accepted).toBe(3_500 + 3_400 + 2 * (1 + awkward.length + 1 + 1))
      expect((yield* log.replay(CONFIG_STREAM)).version).toBe(3)
    }).pipe(Effect.provide(freshLog)), 60_000)

  it.effect("gives the same state without the events_replay index (it is an optimisation only)", () =>
    Effect.gen(function*() {
      const log = yield* EventLog
      const sql = yield* SqlClient.SqlClient
      yield* appendAll("a", [...bulk("a", 300, 100), ...mailboxHistory("a")])
      const withIndex = yield* log.replay("a")
      yield* sql`DROP INDEX events_replay`
      const plan = yield* sql.unsafe<{ detail: string }>(`EXPLAIN QUERY PLAN SELECT version, type, at, ${FOLDED_PAYLOAD}
        FROM events WHERE stream = 'a' AND version > 0 ORDER BY version LIMIT 20000`)
      expect(plan.map((row) => row.detail).join()).not.toContain("events_replay")
      const withoutIndex = yield* log.replay("a")
      expect(withoutIndex).toStrictEqual(withIndex)
      expect(withoutIndex).toStrictEqual(yield* decodedFold("a"))
    }).pipe(Effect.provide(freshLog)))

  it.effect("reads the events_replay index alone (the query's expression is the index's)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const plan = yield* sql.unsafe<{ detail: string }>(`EXPLAIN QUERY PLAN SELECT version, type, at, ${FOLDED_PAYLOAD}
        FROM events WHERE stream = 'a' AND version > 0 ORDER BY version LIMIT 20000`)
      expect(plan.map((row) => row.detail)).toEqual(["SEARCH events USING COVERING INDEX events_replay (stream=? AND version>?)"])
    }).pipe(Effect.provide(freshLog)))
})

describe("the fold", () => {
  /** The fields of each event `evolve` reads, found by handing it a recording Proxy. */
  const fieldsRead = (event: MailboxEvent): Set<string> => {
    const read = new Set<string>()
    const spy = new Proxy(event, {
      get: (target, key, receiver) => {
        if (typeof key === "string") read.add(key)
        return Reflect.get(target, key, receiver)
      }
    })
    const state = emptyState()
    // With the message in flight, so that every branch that looks at the entry runs.
    evolve(state, retrieved("r"), new Date(0))
    evolve(state, spy, new Date(1))
    return read
  }

  it("reads of a MessageAccepted only the fields the events_replay index keeps", () => {
    const kept = [...FOLDED_PAYLOAD.matchAll(/'(\w+)', payload -> '\1'/g)].map((match) => match[1])
    expect(kept).toEqual(["ref", "sha256", "messageId"])
    // If this fails, evolve needs a field replay does not read: extend FOLDED_PAYLOAD and replace
    // the index with a new migration (see migrations/0003_replay_index.sql).
    for (const field of fieldsRead(accepted("r"))) expect(["_tag", ...kept]).toContain(field)
  })
})
