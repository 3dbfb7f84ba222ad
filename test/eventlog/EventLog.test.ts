/**
 * The event log against a real SQLite file (DESIGN.md, "The processing protocol"): optimistic
 * concurrency, the raw bytes stored in the append's transaction, the all-or-nothing group
 * commit, the database-level duplicate guard, queries, paged replay across a restart, and the
 * durability pragmas — with the SQLite connection on the main thread and on its worker thread.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Duration, Effect, Option, Schema, Stream, TestClock } from "effect"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import {
  ConfigurationApplied,
  EVENT_TYPES,
  MailboxConnected,
  MailboxConnectionFailed,
  MailboxEvent,
  MailboxStopped,
  MessageAccepted,
  MessageDuplicateSkipped,
  MessageQuarantined,
  MessageQuarantineRequested,
  MessageRemoved,
  MessageRetrieved,
  QuarantineFailed
} from "../../src/domain/events.js"
import { replay as fold } from "../../src/domain/state.js"
import type * as Database from "../../src/eventlog/Database.js"
import { type AppendRequest, EventLog, StreamVersionConflict, toPayload } from "../../src/eventlog/EventLog.js"
import { ThreadSqliteClient } from "../../src/eventlog/sqliteThread/ThreadSqliteClient.js"
import { freshEventLog, onWorkerThread, scopedTempDir } from "../support/freshEventLog.js"

const tempDir = scopedTempDir("eventlog")

/** Every behaviour below holds whichever thread the SQLite connection runs on. */
const threads: ReadonlyArray<readonly [string, Database.Options]> = [
  ["main thread", {}],
  ["worker thread", onWorkerThread()]
]

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

const retrieved = (ref: string, sha = `sha-${ref}`, messageId = `<${ref}@example.com>`, size = 100) =>
  new MessageRetrieved({ ref, sha256: sha, size, messageId })

const accepted = (ref: string, sha = `sha-${ref}`, messageId = `<${ref}@example.com>`) =>
  new MessageAccepted({
    ref,
    sha256: sha,
    messageId,
    from: "alice@example.com",
    to: ["support@example.com"],
    cc: [],
    subject: `About ${ref}`,
    date: null,
    attachments: [],
    body: "Hello\r\n",
    crlfSha256: sha
  })

const removed = (ref: string) => new MessageRemoved({ ref, how: "delete" })

const count = (query: string, ...params: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql.unsafe<{ n: number }>(query, params), (rows) => Number(rows[0]!.n)))
/** A realistic stream: every message retrieved, then accepted or quarantined, then removed. */
const mailboxEvents = (stream: string, total: number): Array<MailboxEvent> => {
  const events: Array<MailboxEvent> = []
  for (let i = 0; events.length < total; i++) {
    const ref = `${stream}-${i}`
    events.push(retrieved(ref))
    if (i % 7 === 3) {
      events.push(new MessageQuarantineRequested({ ref, sha256: `sha-${ref}`, reason: "auto-response", detail: "" }))
      if (i % 2 === 0) {
        events.push(new QuarantineFailed({ ref, sha256: `sha-${ref}`, reason: "auto-response", attempt: 1, error: "451" }))
      }
      events.push(new MessageQuarantined({
        ref,
        sha256: `sha-${ref}`,
        reason: "auto-response",
        destination: "q@x",
        response: "250"
      }))
    } else {
      events.push(accepted(ref))
    }
    events.push(removed(ref))
  }
  // Cut mid-message, so that replay also has refs in flight.
  return events.slice(0, total)
}

/** Appends `events` in `batches` group commits, interleaved with another stream. */
const appendInBatches = (stream: string, events: ReadonlyArray<MailboxEvent>, batches: number) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const size = Math.ceil(events.length / batches)
    for (let start = 0, batch = 0; start < events.length; start += size, batch++) {
      const requests: Array<AppendRequest> = [
        { stream, expectedVersion: start, events: events.slice(start, start + size) },
        { stream: `${stream}-neighbour`, expectedVersion: batch, events: [new MailboxConnected({ server: "x" })] }
      ]
      yield* log.appendAll(requests)
    }
  })

/** One event of every kind, with text that JSON and SQLite must carry exactly. */
const sampleEvents = () => {
  const message = new MessageAccepted({
    ref: "1:4711",
    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    messageId: "<ünïcode.42@例え.jp>",
    from: "\"Zoë Ångström\" <zoe@example.com>",
    to: ["support@example.com", "Jürgen <j@example.de>"],
    cc: [],
    subject: "Grüße — 日本語のテスト 🎉 \"quoted\" \\ back\\slash\ttab",
    date: "2024-02-29T23:59:59.000Z",
    attachments: [
      { filename: "résumé.pdf", contentType: "application/pdf", size: 123_456 },
      { filename: "", contentType: "application/octet-stream", size: 0 }
    ],
    body: "Line one\r\nLine two\r\n\r\n— signature 🙂\r\n\u0000NUL kept\r\n",
    crlfSha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
  })
  const events: ReadonlyArray<MailboxEvent> = [
    new MailboxConnected({ server: "imaps://mail.example.com:993" }),
    new MailboxConnectionFailed({ error: "ETIMEDOUT", attempt: 3, retryInSeconds: 202.5 }),
    retrieved("1:4711", message.sha256, message.messageId, 52_428_801),
    message,
    new MessageQuarantineRequested({ ref: "2", sha256: "s2", reason: "processing-error", detail: "parse: ✗" }),
    new QuarantineFailed({ ref: "2", sha256: "s2", reason: "processing-error", attempt: 2, error: "421" }),
    new MessageQuarantined({ ref: "2", sha256: "s2", reason: "processing-error", destination: "q@x", response: "250 OK" }),
    new MessageDuplicateSkipped({ ref: "3", sha256: message.sha256, messageId: message.messageId, duplicateOf: "1:4711" }),
    new MessageRemoved({ ref: "3", how: "move:Processed/Ärchiv" }),
    new MailboxStopped({ reason: "shutdown", detail: "" })
  ]
  return { message, events }
}

describe("the Schema encoding", () => {
  it("the stored payload is the Schema encoding of every event type", () => {
    const { message } = sampleEvents()
    const events = [
      ...sampleEvents().events,
      // A large body is stored apart and named.
      new MessageAccepted({ ...message, body: "", bodySha256: "a".repeat(64) }),
      new ConfigurationApplied({ hash: "h", summary: "1 mailbox", started: ["a"], restarted: [], stopped: ["b"], refused: [] })
    ]
    expect(new Set(events.map((event) => event._tag))).toEqual(new Set(EVENT_TYPES))
    for (const event of events) {
      const { _tag, ...encoded } = Schema.encodeSync(MailboxEvent)(event) as { _tag: string }
      expect(JSON.parse(toPayload(event))).toStrictEqual(JSON.parse(JSON.stringify(encoded)))
    }
  })
})

describe.each(threads)("on the %s", (_thread, options) => {
  const freshLog = freshEventLog("eventlog", options)

  describe("append", () => {
    it.effect("gives global, increasing positions across streams and a version per stream", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const a1 = yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1"), accepted("1")] })
        const b1 = yield* log.append({ stream: "b", expectedVersion: 0, events: [retrieved("2")] })
        const a2 = yield* log.append({ stream: "a", expectedVersion: 2, events: [removed("1")] })
        const b2 = yield* log.append({ stream: "b", expectedVersion: 1, events: [removed("2"), removed("3")] })

        expect([a1.version, b1.version, a2.version, b2.version]).toEqual([2, 1, 3, 3])
        const written = [...a1.events, ...b1.events, ...a2.events, ...b2.events]
        expect(written.map(({ position, stream, version }) => [position, stream, version])).toEqual([
          [1, "a", 1],
          [2, "a", 2],
          [3, "b", 1],
          [4, "a", 3],
          [5, "b", 2],
          [6, "b", 3]
        ])
        // What append returned is what the log holds.
        expect(yield* log.read({})).toEqual(written)
        expect(yield* log.streams).toEqual(["a", "b"])
      }).pipe(Effect.provide(freshLog)))

    it.effect("with a stale expected version fails with StreamVersionConflict and writes nothing", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1"), accepted("1")] })
        const raw = new TextEncoder().encode("Subject: lost?\r\n\r\nbody\r\n")
        const stale = {
          stream: "a",
          expectedVersion: 1,
          events: [retrieved("2", sha256(raw)), removed("1")],
          blobs: [{ sha256: sha256(raw), bytes: raw }]
        }
        const conflict = yield* Effect.flip(log.append(stale))
        expect(conflict).toBeInstanceOf(StreamVersionConflict)
        expect(conflict).toMatchObject({ _tag: "StreamVersionConflict", stream: "a", expected: 1, actual: 2 })

        // Ahead of the stream is as wrong as behind it; a new stream is at version 0.
        expect(yield* Effect.flip(log.append({ ...stale, expectedVersion: 3 }))).toMatchObject({ expected: 3, actual: 2 })
        expect(yield* Effect.flip(log.append({ ...stale, stream: "new", expectedVersion: 2 }))).toMatchObject({
          stream: "new",
          expected: 2,
          actual: 0
        })

        expect((yield* log.read({})).map((stored) => stored.version)).toEqual([1, 2])
        expect(yield* log.blob(sha256(raw))).toEqual(Option.none())
        expect(yield* count("SELECT count(*) AS n FROM blobs")).toBe(0)
        expect(yield* log.streams).toEqual(["a"])
        expect((yield* log.replay("a")).version).toBe(2)

        // The same request with the right version goes through.
        const ok = yield* log.append({ ...stale, expectedVersion: 2 })
        expect(ok.version).toBe(4)
        expect(yield* log.blob(sha256(raw))).toEqual(Option.some(raw))
      }).pipe(Effect.provide(freshLog)))

    it.effect("returns the positions the log holds, for appends larger than one INSERT", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const events = Array.from({ length: 450 }, (_, i) => retrieved(`r${i}`))
        const results = yield* log.appendAll([
          { stream: "a", expectedVersion: 0, events: events.slice(0, 3) },
          { stream: "b", expectedVersion: 0, events },
          { stream: "a", expectedVersion: 3, events: events.slice(3, 250).map((event) => accepted(event.ref)) }
        ])
        const returned = results.flatMap((result) => result.events)
        expect(returned.map((stored) => stored.position)).toEqual(Array.from({ length: 700 }, (_, i) => i + 1))
        expect(yield* log.read({})).toEqual(returned)
        // The projection points at the MessageAccepted event it came from.
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ ref: string; position: number }>`SELECT ref, position FROM accepted_messages`
        const byPosition = new Map(returned.map((stored) => [stored.position, stored]))
        for (const row of rows) {
          const stored = byPosition.get(Number(row.position))!
          expect(stored.event).toMatchObject({ _tag: "MessageAccepted", ref: row.ref })
        }
        expect(rows.length).toBe(247)
      }).pipe(Effect.provide(freshLog)))

    it.effect("appendAtEnd appends whatever the stream's version", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const stopped = new MailboxStopped({ reason: "usage-type", detail: "Test on Production" })
        const first = yield* log.appendAtEnd("a", [stopped])
        yield* log.append({ stream: "a", expectedVersion: 1, events: [retrieved("1")] })
        const second = yield* log.appendAtEnd("a", [stopped, stopped])
        expect([first.version, second.version]).toEqual([1, 4])
        expect(second.events.map((stored) => stored.version)).toEqual([3, 4])
      }).pipe(Effect.provide(freshLog)))
  })

  describe("raw messages", () => {
    it.effect("are stored content-addressed with the event and come back byte for byte", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        // Every byte value, NUL and 8-bit included, and a view into the middle of a larger buffer.
        const everyByte = Uint8Array.from({ length: 1024 }, (_, i) => i % 256)
        const backing = new Uint8Array(64)
        backing.set([0, 0xff, 0x0d, 0x0a, 0x00, 0x80, 0xe9], 10)
        const view = backing.subarray(10, 17)
        const large = new Uint8Array(randomBytes(5 * 1024 * 1024))
        const blobs = [everyByte, view, large].map((bytes) => ({ sha256: sha256(bytes), bytes }))

        yield* log.append({
          stream: "a",
          expectedVersion: 0,
          events: blobs.map((blob, i) => retrieved(`r${i}`, blob.sha256, `<r${i}@x>`, blob.bytes.byteLength)),
          blobs
        })
        for (const blob of blobs) {
          const stored = Option.getOrThrow(yield* log.blob(blob.sha256))
          expect(stored.byteLength).toBe(blob.bytes.byteLength)
          expect(Buffer.compare(Buffer.from(stored), Buffer.from(blob.bytes))).toBe(0)
          expect(sha256(stored)).toBe(blob.sha256)
        }
        expect(Array.from(Option.getOrThrow(yield* log.blob(sha256(view))))).toEqual([0, 0xff, 0x0d, 0x0a, 0x00, 0x80, 0xe9])
        expect(yield* log.blob("0".repeat(64))).toEqual(Option.none())
      }).pipe(Effect.provide(freshLog)))

    it.effect("a large one is stored in pieces and read back whole by another process, byte for byte", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const filename = join(dir, "events.db")
        // Not a multiple of the piece size, so the last piece is short.
        const large = new Uint8Array(randomBytes(3 * 1024 * 1024 + 12_345))
        const blob = { sha256: sha256(large), bytes: large }
        yield* Effect.gen(function*() {
          const log = yield* EventLog
          yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1", blob.sha256, "<1@x>", large.byteLength)], blobs: [blob] })
          // The same bytes again (another mailbox): stored once.
          yield* log.append({ stream: "b", expectedVersion: 0, events: [retrieved("1", blob.sha256, "<1@x>", large.byteLength)], blobs: [blob] })
          const sql = yield* SqlClient.SqlClient
          const rows = yield* sql<{ chunks: number; n: number }>`SELECT chunks, (SELECT count(*) FROM blob_chunks WHERE sha256 = ${blob.sha256}) AS n
            FROM blobs WHERE sha256 = ${blob.sha256}`
          expect(rows.map((row) => [Number(row.chunks), Number(row.n)])).toEqual([[4, 4]])
        }).pipe(Effect.provide(EventLog.at(filename, options)))
        // A new EventLog on the same file (the daemon after a restart, or `show`) reads the pieces.
        const stored = yield* Effect.flatMap(EventLog, (log) => log.blob(blob.sha256)).pipe(Effect.provide(EventLog.at(filename, options)))
        const bytes = Option.getOrThrow(stored)
        expect(bytes.byteLength).toBe(large.byteLength)
        expect(Buffer.compare(Buffer.from(bytes), Buffer.from(large))).toBe(0)
      }).pipe(Effect.scoped))

    it.effect("a large one with a piece missing is a storage error, never bytes that are not the message", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const filename = join(dir, "events.db")
        const large = new Uint8Array(randomBytes(2 * 1024 * 1024 + 1))
        const blob = { sha256: sha256(large), bytes: large }
        yield* Effect.gen(function*() {
          const log = yield* EventLog
          yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1", blob.sha256)], blobs: [blob] })
          const sql = yield* SqlClient.SqlClient
          yield* sql`DELETE FROM blob_chunks WHERE sha256 = ${blob.sha256} AND seq = 1`
        }).pipe(Effect.provide(EventLog.at(filename, options)))
        const result = yield* Effect.flatMap(EventLog, (log) => log.blob(blob.sha256)).pipe(Effect.provide(EventLog.at(filename, options)), Effect.either)
        expect(result._tag).toBe("Left")
        expect(String((result as { left: { message: string } }).left.message)).toMatch(/incomplete/)
      }).pipe(Effect.scoped))

    it.effect("a spooled file (a large text body) is read in pieces in the append, and deleted once committed — kept when the append fails", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const dir = yield* tempDir
        const body = Buffer.from("a line of a long text body\r\n".repeat(100_000))
        const path = join(dir, "body")
        writeFileSync(path, body)
        const blob = { sha256: sha256(body), path, size: body.length }
        // A conflict fails the append: nothing is stored and the file stays for the retry.
        const failed = yield* log.append({ stream: "a", expectedVersion: 5, events: [retrieved("1", "s")], blobs: [blob] }).pipe(Effect.either)
        expect(failed._tag).toBe("Left")
        expect(existsSync(path)).toBe(true)
        expect(yield* count("SELECT count(*) AS n FROM blob_chunks")).toBe(0)
        yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1", "s")], blobs: [blob] })
        expect(existsSync(path)).toBe(false)
        expect(yield* count("SELECT count(*) AS n FROM blob_chunks WHERE sha256 = ?", blob.sha256)).toBe(Math.ceil(body.length / (1024 * 1024)))
        const stored = Option.getOrThrow(yield* log.blob(blob.sha256))
        expect(Buffer.compare(Buffer.from(stored), body)).toBe(0)
        // A file that is not there any more fails the append as a storage error, and writes nothing.
        const missing = yield* log.append({ stream: "a", expectedVersion: 1, events: [retrieved("2", "t")], blobs: [{ sha256: "b".repeat(64), path, size: 10 }] }).pipe(Effect.either)
        expect(missing._tag === "Left" ? missing.left.message : "appended").toMatch(/cannot read the spooled file/)
        expect(yield* count("SELECT count(*) AS n FROM blobs WHERE sha256 = ?", "b".repeat(64))).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(freshLog)))

    it.effect("noteDecisionAttempt counts the runs that started a decision, not the retries within one", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        expect(yield* log.noteDecisionAttempt("a", "1", "s", "run-1")).toBe(1)
        expect(yield* log.noteDecisionAttempt("a", "1", "s", "run-1")).toBe(1)
        expect(yield* log.noteDecisionAttempt("a", "1", "s", "run-2")).toBe(2)
        expect(yield* log.noteDecisionAttempt("a", "1", "s", "run-3")).toBe(3)
        // Another message, or the same ref in another mailbox, counts on its own.
        expect(yield* log.noteDecisionAttempt("a", "1", "other", "run-3")).toBe(1)
        expect(yield* log.noteDecisionAttempt("b", "1", "s", "run-3")).toBe(1)
      }).pipe(Effect.provide(freshLog)))

    it.effect("are kept once when the same sha256 is stored twice", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const raw = new TextEncoder().encode("From: a@x\r\nSubject: same\r\n\r\nsame bytes\r\n")
        const blob = { sha256: sha256(raw), bytes: raw }
        yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1", blob.sha256)], blobs: [blob] })
        yield* log.append({ stream: "a", expectedVersion: 1, events: [retrieved("2", blob.sha256)], blobs: [blob] })
        // Another mailbox receiving the same message shares the row too.
        yield* log.append({ stream: "b", expectedVersion: 0, events: [retrieved("1", blob.sha256)], blobs: [blob] })
        expect(yield* count("SELECT count(*) AS n FROM blobs WHERE sha256 = ?", blob.sha256)).toBe(1)
        expect(yield* count("SELECT count(*) AS n FROM blobs")).toBe(1)
        expect(yield* log.blob(blob.sha256)).toEqual(Option.some(raw))
        expect((yield* log.read({ types: ["MessageRetrieved"] })).length).toBe(3)
      }).pipe(Effect.provide(freshLog)))
  })

  describe("appendAll (the group commit)", () => {
    it.effect("writes every stream's events in one go", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const results = yield* log.appendAll([
          { stream: "a", expectedVersion: 0, events: [retrieved("1"), accepted("1")] },
          { stream: "b", expectedVersion: 0, events: [retrieved("1")] }
        ])
        expect(results.map((result) => result.version)).toEqual([2, 1])
        expect(results.flatMap((result) => result.events.map((stored) => stored.position))).toEqual([1, 2, 3])
      }).pipe(Effect.provide(freshLog)))

    it.effect("is all or nothing: when the second request conflicts, the first stream is not written either", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        yield* log.append({ stream: "b", expectedVersion: 0, events: [retrieved("x")] })
        const raw = new TextEncoder().encode("raw of a/1")
        const conflict = yield* Effect.flip(log.appendAll([
          {
            stream: "a",
            expectedVersion: 0,
            events: [retrieved("1", sha256(raw)), accepted("1", sha256(raw))],
            blobs: [{ sha256: sha256(raw), bytes: raw }]
          },
          { stream: "b", expectedVersion: 0, events: [retrieved("y")] }
        ]))
        expect(conflict).toMatchObject({ _tag: "StreamVersionConflict", stream: "b", expected: 0, actual: 1 })

        expect(yield* log.read({ stream: "a" })).toEqual([])
        expect(yield* log.streams).toEqual(["b"])
        expect(yield* log.blob(sha256(raw))).toEqual(Option.none())
        expect(yield* count("SELECT count(*) AS n FROM accepted_messages")).toBe(0)
        expect((yield* log.replay("b")).version).toBe(1)
        // Stream a is still at version 0: its request can be retried as it was.
        expect((yield* log.append({ stream: "a", expectedVersion: 0, events: [retrieved("1")] })).version).toBe(1)
      }).pipe(Effect.provide(freshLog)))
  })

  describe("the accepted_messages projection", () => {
    it.effect("refuses a second MessageAccepted with the same stream, sha256 and Message-ID, and writes nothing of it", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        yield* log.append({
          stream: "a",
          expectedVersion: 0,
          events: [retrieved("1", "sha-m", "<m@x>"), accepted("1", "sha-m", "<m@x>"), removed("1")]
        })
        const raw = new TextEncoder().encode("second copy")
        const error = yield* Effect.flip(log.append({
          stream: "a",
          expectedVersion: 3,
          events: [retrieved("2", "sha-m", "<m@x>"), accepted("2", "sha-m", "<m@x>")],
          blobs: [{ sha256: sha256(raw), bytes: raw }]
        }))
        expect(error._tag).toBe("SqlError")

        expect((yield* log.read({ stream: "a" })).map((stored) => stored.event._tag)).toEqual([
          "MessageRetrieved",
          "MessageAccepted",
          "MessageRemoved"
        ])
        expect((yield* log.replay("a")).version).toBe(3)
        expect(yield* log.blob(sha256(raw))).toEqual(Option.none())
        expect(yield* count("SELECT count(*) AS n FROM accepted_messages")).toBe(1)
        expect(yield* count("SELECT count(*) AS n FROM accepted_messages WHERE ref = '1'")).toBe(1)

        // Within one append too.
        expect((yield* Effect.flip(log.append({
          stream: "a",
          expectedVersion: 3,
          events: [accepted("3", "sha-n", "<n@x>"), accepted("4", "sha-n", "<n@x>")]
        })))._tag).toBe("SqlError")
        expect((yield* log.replay("a")).version).toBe(3)

        // The same bytes with another Message-ID, the same Message-ID with other bytes, and the same
        // message in another mailbox are different messages.
        yield* log.append({
          stream: "a",
          expectedVersion: 3,
          events: [accepted("5", "sha-m", "<other@x>"), accepted("6", "sha-other", "<m@x>")]
        })
        yield* log.append({ stream: "b", expectedVersion: 0, events: [accepted("1", "sha-m", "<m@x>")] })
        expect(yield* count("SELECT count(*) AS n FROM accepted_messages")).toBe(4)
        expect(yield* count("SELECT count(*) AS n FROM accepted_messages WHERE ref = '1' AND stream = 'a'")).toBe(1)
      }).pipe(Effect.provide(freshLog)))
  })

  describe("read", () => {
    const at = (seconds: number) => new Date(seconds * 1000)

    /** Events at t = 10, 20, 30, 40, 50 s (TestClock), over two streams. */
    const seed = Effect.gen(function*() {
      const log = yield* EventLog
      yield* TestClock.setTime(at(10).getTime())
      yield* log.append({ stream: "a", expectedVersion: 0, events: [new MailboxConnected({ server: "imap://a" })] })
      yield* TestClock.setTime(at(20).getTime())
      yield* log.appendAll([
        { stream: "a", expectedVersion: 1, events: [retrieved("1"), accepted("1")] },
        {
          stream: "b",
          expectedVersion: 0,
          events: [new MailboxConnectionFailed({ error: "ECONNREFUSED", attempt: 1, retryInSeconds: 60 })]
        }
      ])
      yield* TestClock.setTime(at(30).getTime())
      yield* log.append({ stream: "a", expectedVersion: 3, events: [removed("1")] })
      yield* TestClock.setTime(at(40).getTime())
      yield* log.append({ stream: "b", expectedVersion: 1, events: [new MailboxConnected({ server: "pop://b" })] })
      yield* TestClock.setTime(at(50).getTime())
      yield* log.append({
        stream: "a",
        expectedVersion: 4,
        events: [retrieved("2"), new MessageQuarantineRequested({
          ref: "2",
          sha256: "sha-2",
          reason: "bounce",
          detail: "DSN"
        })]
      })
    })

    // Positions: 1 a@10 Connected, 2 a@20 Retrieved, 3 a@20 Accepted, 4 b@20 ConnectionFailed,
    // 5 a@30 Removed, 6 b@40 Connected, 7 a@50 Retrieved, 8 a@50 QuarantineRequested.
    const table: ReadonlyArray<readonly [string, Parameters<EventLog["Type"]["read"]>[0], ReadonlyArray<number>]> = [
      ["everything", {}, [1, 2, 3, 4, 5, 6, 7, 8]],
      ["one stream", { stream: "b" }, [4, 6]],
      ["an unknown stream", { stream: "zzz" }, []],
      ["one type", { types: ["MailboxConnected"] }, [1, 6]],
      ["several types", { types: ["MessageRetrieved", "MessageRemoved", "MailboxConnectionFailed"] }, [2, 4, 5, 7]],
      ["no types is every type", { types: [] }, [1, 2, 3, 4, 5, 6, 7, 8]],
      ["after a position", { after: 5 }, [6, 7, 8]],
      ["after the last position", { after: 8 }, []],
      ["since a time (inclusive)", { since: at(30) }, [5, 6, 7, 8]],
      ["since just after a time", { since: new Date(at(30).getTime() + 1) }, [6, 7, 8]],
      ["until a time (inclusive)", { until: at(20) }, [1, 2, 3, 4]],
      ["until just before a time", { until: new Date(at(20).getTime() - 1) }, [1]],
      ["between two times", { since: at(20), until: at(40) }, [2, 3, 4, 5, 6]],
      ["limit", { limit: 3 }, [1, 2, 3]],
      ["after, then limit (paging)", { after: 3, limit: 3 }, [4, 5, 6]],
      ["everything at once", { stream: "a", types: ["MessageRetrieved", "MessageAccepted"], after: 2, since: at(20), limit: 2 }, [
        3,
        7
      ]]
    ]

    it.effect.each(table)("%s", ([_name, query, positions]) =>
      Effect.gen(function*() {
        yield* seed
        const log = yield* EventLog
        const events = yield* log.read(query)
        expect(events.map((stored) => stored.position)).toEqual(positions)
        for (const stored of events) {
          if (query.stream !== undefined) expect(stored.stream).toBe(query.stream)
          if (query.types !== undefined && query.types.length > 0) expect(query.types).toContain(stored.event._tag)
        }
      }).pipe(Effect.provide(freshLog)))

    it.effect("returns each event with its stream, version and time", () =>
      Effect.gen(function*() {
        yield* seed
        const log = yield* EventLog
        const events = yield* log.read({})
        expect(events.map(({ at: when, stream, version }) => [stream, version, when.getTime() / 1000])).toEqual([
          ["a", 1, 10],
          ["a", 2, 20],
          ["a", 3, 20],
          ["b", 1, 20],
          ["a", 4, 30],
          ["b", 2, 40],
          ["a", 5, 50],
          ["a", 6, 50]
        ])
      }).pipe(Effect.provide(freshLog)))
  })

  describe("readStream and replay", () => {
    it.scoped("page through more than 5,000 events, and a restart replays to the same state", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const filename = join(dir, "events.db")
        const events = mailboxEvents("big", 12_345)
        const exactPages = mailboxEvents("even", 10_000)

        const before = yield* Effect.gen(function*() {
          const log = yield* EventLog
          yield* appendInBatches("big", events, 5)
          yield* appendInBatches("even", exactPages, 2)

          const read = Chunk.toReadonlyArray(yield* Stream.runCollect(log.readStream("big")))
          expect(read.length).toBe(12_345)
          expect(read.map((stored) => stored.version)).toEqual(Array.from({ length: 12_345 }, (_, i) => i + 1))
          expect(read.every((stored) => stored.stream === "big")).toBe(true)
          expect(read.every((stored, i) => i === 0 || stored.position > read[i - 1]!.position)).toBe(true)
          expect(read.map((stored) => stored.event)).toEqual(events)
          // From a version on, as a mailbox catching up would read.
          const tail = Chunk.toReadonlyArray(yield* Stream.runCollect(log.readStream("big", 10_000)))
          expect(tail.map((stored) => stored.version)).toEqual(Array.from({ length: 2_345 }, (_, i) => 10_001 + i))
          // A stream that is an exact number of pages long ends neither short nor twice.
          const even = yield* Stream.runCollect(log.readStream("even"))
          expect(Chunk.size(even)).toBe(10_000)
          expect(Chunk.unsafeLast(even).version).toBe(10_000)
          expect(Chunk.size(yield* Stream.runCollect(log.readStream("nobody")))).toBe(0)

          const replayBig = log.replay("big")
          const state = yield* replayBig
          // The same effect run again (a retry) starts over instead of folding on top.
          expect(yield* replayBig).toEqual(state)
          expect(state).toEqual(fold(read))
          expect(state).toEqual(fold(yield* log.read({ stream: "big" })))
          expect(state.version).toBe(12_345)
          expect(state.inFlight.size).toBeGreaterThan(0)
          expect(state.counts.retrieved).toBe(state.counts.removed + state.inFlight.size)
          return state
        }).pipe(Effect.provide(EventLog.at(filename, options)))

        // The first EventLog's database is closed now: open the file again, as the daemon would on start.
        yield* Effect.gen(function*() {
          const log = yield* EventLog
          const after = yield* log.replay("big")
          expect(after).toEqual(before)
          expect(yield* log.streams).toEqual(["big", "big-neighbour", "even", "even-neighbour"])
          // And the stream goes on from where it was.
          const next = yield* log.append({ stream: "big", expectedVersion: 12_345, events: [removed("big-x")] })
          expect(next.version).toBe(12_346)
          expect(yield* Effect.flip(log.append({ stream: "big", expectedVersion: 12_345, events: [] }))).toBeInstanceOf(
            StreamVersionConflict
          )
        }).pipe(Effect.provide(EventLog.at(filename, options)))
      }))
  })

  describe("the database", () => {
    it.effect("is in WAL mode with synchronous = FULL and 64 KiB pages", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [journal] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
        const [synchronous] = yield* sql<{ synchronous: number }>`PRAGMA synchronous`
        const [pageSize] = yield* sql<{ page_size: number }>`PRAGMA page_size`
        expect(journal!.journal_mode).toBe("wal")
        expect(Number(synchronous!.synchronous)).toBe(2)
        expect(Number(pageSize!.page_size)).toBe(65536)
      }).pipe(Effect.provide(freshLog)))

    it.effect("is open on the thread asked for (not quietly on the main thread instead of the worker)", () =>
      Effect.gen(function*() {
        const onWorker = yield* Effect.serviceOption(ThreadSqliteClient)
        expect(Option.isSome(onWorker)).toBe(options.thread === "worker")
        if (Option.isSome(onWorker)) expect(onWorker.value.worker.threadId).toBeGreaterThan(0)
      }).pipe(Effect.provide(freshLog)))
  })

  describe("the Schema encoding, stored", () => {
    it.effect("round-trips every event type exactly", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const { events, message } = sampleEvents()
        const appended = yield* log.append({ stream: "unicode ✉", expectedVersion: 0, events })
        const read = yield* log.read({ stream: "unicode ✉" })
        expect(read).toEqual(appended.events)
        expect(read.map((stored) => stored.event)).toStrictEqual(events)
        const back = read[3]!.event
        expect(back).toBeInstanceOf(MessageAccepted)
        expect((back as MessageAccepted).body).toBe(message.body)
        expect((back as MessageAccepted).subject).toBe(message.subject)
      }).pipe(Effect.provide(freshLog)))
  })

  describe("polls", () => {
    it.effect("are recorded without an event", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        yield* TestClock.setTime(1_000)
        yield* log.recordPoll("a")
        yield* TestClock.adjust(Duration.seconds(30))
        yield* log.recordPoll("a")
        yield* log.recordPoll("b")
        expect(yield* log.lastPolls).toEqual(new Map([["a", new Date(31_000)], ["b", new Date(31_000)]]))
        expect(yield* log.read({})).toEqual([])
      }).pipe(Effect.provide(freshLog)))

    it.effect("of many mailboxes are written together and updated in place", () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        const streams = Array.from({ length: 450 }, (_, i) => `mailbox-${i}`)
        yield* TestClock.setTime(1_000)
        yield* Effect.forEach(streams, (stream) => log.recordPoll(stream))
        expect((yield* log.lastPolls).size).toBe(450)
        yield* TestClock.adjust(Duration.seconds(10))
        yield* Effect.forEach(streams.slice(0, 300), (stream) => log.recordPoll(stream))
        const polls = yield* log.lastPolls
        expect(polls.size).toBe(450)
        expect(polls.get("mailbox-0")).toEqual(new Date(11_000))
        expect(polls.get("mailbox-299")).toEqual(new Date(11_000))
        expect(polls.get("mailbox-300")).toEqual(new Date(1_000))
      }).pipe(Effect.provide(freshLog)))
  })
})
