/**
 * The append-only event log over SqlClient: append with an expected stream version, reads by
 * stream, position, type and time, the content-addressed raw messages (and large text bodies),
 * and replay.
 */
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Chunk, Clock, Context, Effect, Layer, Option, Schedule, Schema, Stream } from "effect"
import { closeSync, openSync, readSync, rmSync } from "node:fs"
import { type EventType, MailboxEvent, type StoredEvent } from "../domain/events.js"
import { type MailboxState, evolve, emptyState } from "../domain/state.js"
import * as Database from "./Database.js"

export class StreamVersionConflict extends Schema.TaggedError<StreamVersionConflict>()("StreamVersionConflict", {
  stream: Schema.String,
  expected: Schema.Number,
  actual: Schema.Number
}) {}

/** Bytes to store with the events that name them: a raw message, or a large text body. */
export type Blob = BlobInMemory | SpooledBlob

export interface BlobInMemory {
  readonly sha256: string
  readonly bytes: Uint8Array
}

/**
 * Bytes in a file (a large text body in the parser's spool, src/processing/bodySpool.ts): read
 * into the log a piece at a time inside the append's transaction, and the file deleted once the
 * append has committed (kept when it failed, for the retry).
 */
export interface SpooledBlob {
  readonly sha256: string
  readonly path: string
  readonly size: number
}

const isSpooled = (blob: Blob): blob is SpooledBlob => "path" in blob

/** One stream's share of an append: the group commit writes several in one transaction. */
export interface AppendRequest {
  readonly stream: string
  readonly expectedVersion: number
  readonly events: ReadonlyArray<MailboxEvent>
  readonly blobs?: ReadonlyArray<Blob>
}

export interface Appended {
  readonly version: number
  readonly events: ReadonlyArray<StoredEvent>
}

export interface EventQuery {
  readonly stream?: string | undefined
  readonly types?: ReadonlyArray<EventType> | undefined
  /** Only events after this global position. */
  readonly after?: number | undefined
  readonly since?: Date | undefined
  readonly until?: Date | undefined
  readonly limit?: number | undefined
}

export type EventLogError = SqlError | StreamVersionConflict

interface EventRow {
  readonly position: number
  readonly stream: string
  readonly version: number
  readonly type: string
  readonly payload: string
  readonly at: string
}

const decodeEvent = Schema.decodeUnknownSync(MailboxEvent)

/**
 * The stored payload: the event's fields without its tag (the tag has its own column). Every
 * event field is identity-encoded (strings, numbers, null, arrays and structs of them) and a
 * TaggedClass is validated when it is constructed, so the fields as they are ARE the encoded
 * form; running the Schema encoder again cost a validation per event on the hot path. The test
 * "the payload is the Schema encoding" holds this for every event type.
 */
export const toPayload = (event: MailboxEvent): string => {
  const { _tag, ...fields } = event
  return JSON.stringify(fields)
}

const fromRow = (row: EventRow): StoredEvent => ({
  position: Number(row.position),
  stream: row.stream,
  version: Number(row.version),
  at: new Date(row.at),
  event: decodeEvent({ ...JSON.parse(row.payload), _tag: row.type })
})

/**
 * What replay selects of each payload: all of it, except for a MessageAccepted only the fields
 * the fold reads (its summary and text body are most of the log). The same expression, character
 * for character, is the last column of the index `events_replay` (migrations/0003_replay_index.sql),
 * so that replay reads that index alone; a change here needs a migration that replaces the index.
 */
export const FOLDED_PAYLOAD =
  "CASE type WHEN 'MessageAccepted' THEN json_object('ref', payload -> 'ref', 'sha256', payload -> 'sha256', 'messageId', payload -> 'messageId') ELSE payload END"

/** A raw message larger than this is stored in pieces of CHUNK_BYTES (migration 0002). */
const CHUNKED_ABOVE = 1024 * 1024
const CHUNK_BYTES = 1024 * 1024
/** Pieces read back per SELECT. */
const CHUNK_PAGE = 16

const bufferOf = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
/** A plain Uint8Array over the same bytes (no copy). */
const viewOf = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** Rows per INSERT: well under SQLite's limit on bound parameters. */
const INSERT_CHUNK = 200

/** Rows in INSERT-sized slices. */
const inChunks = <A>(rows: ReadonlyArray<A>): Array<ReadonlyArray<A>> =>
  Array.from({ length: Math.ceil(rows.length / INSERT_CHUNK) }, (_, i) => rows.slice(i * INSERT_CHUNK, (i + 1) * INSERT_CHUNK))
const REPLAY_PAGE = 20_000
/** How often the last-poll times are written: one transaction for every mailbox's polls. */
const HEARTBEAT_FLUSH = "5 seconds"

/** A file operation on a spooled blob; its failure (the file is gone, the disk failed) fails the append. */
const spooledFile = <A>(blob: SpooledBlob, operation: () => A) =>
  Effect.try({
    try: operation,
    catch: (cause) => new SqlError({ cause, message: `cannot read the spooled file ${blob.path}: ${cause instanceof Error ? cause.message : String(cause)}` })
  })

/**
 * @effect/sql turns a failed COMMIT into a defect. For the log that is an expected failure
 * (disk full, read-only file, locked database): it becomes a SqlError, so that callers pause
 * and retry instead of crashing.
 */
const committed = <A, E, R>(transaction: Effect.Effect<A, E, R>) =>
  Effect.catchAllDefect(transaction, (defect) =>
    Effect.fail(new SqlError({ cause: defect, message: `the event log could not commit: ${defect instanceof Error ? defect.message : String(defect)}` })))

const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  /**
   * A large blob as a `blobs` row and its pieces in `blob_chunks`; `pieceAt(seq, bytes)` gives
   * piece `seq`, `bytes` long. Nothing is written when the sha256 is stored already (the same
   * bytes, retrieved before): its pieces are there too.
   */
  const insertInPieces = (sha256: string, size: number, pieceAt: (seq: number, bytes: number) => Effect.Effect<Uint8Array, SqlError>) =>
    Effect.gen(function*() {
      const chunks = Math.ceil(size / CHUNK_BYTES)
      const inserted = yield* sql`INSERT INTO blobs ${
        sql.insert({ sha256, size, content: Buffer.alloc(0), chunks })
      } ON CONFLICT (sha256) DO NOTHING RETURNING sha256`
      if (inserted.length === 0) return
      for (let seq = 0; seq < chunks; seq++) {
        const content = yield* pieceAt(seq, Math.min(CHUNK_BYTES, size - seq * CHUNK_BYTES))
        yield* sql`INSERT INTO blob_chunks ${sql.insert({ sha256, seq, content })}`
      }
    })

  /** A spooled file, read a piece at a time (never whole in memory), and only when not stored already. */
  const insertSpooled = (blob: SpooledBlob) => {
    let fd: number | undefined
    // One buffer for every piece: the statement copies what it binds, and a new megabyte a
    // piece was garbage outside the heap that V8 collected only tens of megabytes later.
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, blob.size))
    return insertInPieces(blob.sha256, blob.size, (seq, bytes) =>
      Effect.gen(function*() {
        fd ??= yield* spooledFile(blob, () => openSync(blob.path, "r"))
        const read = yield* spooledFile(blob, () => readSync(fd!, buffer, 0, bytes, seq * CHUNK_BYTES))
        if (read !== bytes) return yield* new SqlError({ message: `spooled file ${blob.path} is shorter than its ${blob.size} bytes` })
        return buffer.subarray(0, bytes)
      })).pipe(Effect.ensuring(Effect.sync(() => fd !== undefined && closeSync(fd))))
  }

  /** Blobs, content-addressed: a small one in one row, a large one (or a spooled file) in pieces. */
  const insertBlobs = (all: ReadonlyArray<Blob>) =>
    Effect.gen(function*() {
      const blobs = all.filter((blob): blob is BlobInMemory => !isSpooled(blob))
      const whole = blobs.filter((blob) => blob.bytes.byteLength <= CHUNKED_ABOVE).map((blob) => {
        const content = bufferOf(blob.bytes)
        return { sha256: blob.sha256, size: content.byteLength, content }
      })
      for (const chunk of inChunks(whole)) {
        yield* sql`INSERT INTO blobs ${sql.insert(chunk)} ON CONFLICT (sha256) DO NOTHING`
      }
      for (const blob of all) {
        if (isSpooled(blob)) {
          yield* insertSpooled(blob)
        } else if (blob.bytes.byteLength > CHUNKED_ABOVE) {
          const content = bufferOf(blob.bytes)
          yield* insertInPieces(blob.sha256, content.byteLength, (seq, bytes) =>
            Effect.succeed(content.subarray(seq * CHUNK_BYTES, seq * CHUNK_BYTES + bytes)))
        }
      }
    })

  const appendOne = (request: AppendRequest, at: string) =>
    Effect.gen(function*() {
      const current = yield* sql<{ version: number }>`SELECT version FROM streams WHERE stream = ${request.stream}`
      const actual = current.length === 0 ? 0 : Number(current[0]!.version)
      if (actual !== request.expectedVersion) {
        return yield* new StreamVersionConflict({
          stream: request.stream,
          expected: request.expectedVersion,
          actual
        })
      }
      yield* insertBlobs(request.blobs ?? [])
      const stored: Array<StoredEvent> = []
      const rows = request.events.map((event, i) => ({
        stream: request.stream,
        version: request.expectedVersion + i + 1,
        type: event._tag,
        payload: toPayload(event),
        at
      }))
      for (const chunk of inChunks(rows)) {
        // RETURNING rows come in no guaranteed order (SQLite and Postgres alike): match them by version.
        const returned = yield* sql<{ position: number; version: number }>`INSERT INTO events ${
          sql.insert(chunk)
        } RETURNING position, version`
        const positions = new Map(returned.map((row) => [Number(row.version), Number(row.position)]))
        for (const row of chunk) {
          stored.push({
            position: positions.get(row.version)!,
            stream: row.stream,
            version: row.version,
            at: new Date(at),
            event: request.events[row.version - request.expectedVersion - 1]!
          })
        }
      }
      const accepted = stored.flatMap(({ event, position }) =>
        event._tag === "MessageAccepted"
          ? [{ stream: request.stream, sha256: event.sha256, message_id: event.messageId, ref: event.ref, position }]
          : []
      )
      for (const chunk of inChunks(accepted)) {
        yield* sql`INSERT INTO accepted_messages ${sql.insert(chunk)}`
      }
      const version = request.expectedVersion + request.events.length
      yield* sql`INSERT INTO streams ${sql.insert({ stream: request.stream, version })}
        ON CONFLICT (stream) DO UPDATE SET version = ${version}`
      return { version, events: stored } satisfies Appended
    })

  /** Appends to several streams in one transaction: all or nothing (the group commit). */
  const appendAll = (requests: ReadonlyArray<AppendRequest>) =>
    Effect.gen(function*() {
      const at = new Date(yield* Clock.currentTimeMillis).toISOString()
      const appended = yield* committed(sql.withTransaction(Effect.forEach(requests, (request) => appendOne(request, at))))
      for (const request of requests) {
        for (const blob of request.blobs ?? []) {
          if (isSpooled(blob)) rmSync(blob.path, { force: true })
          else remember(blob)
        }
      }
      return appended
    })

  const append = (request: AppendRequest) => Effect.map(appendAll([request]), (results) => results[0]!)

  /**
   * Appends at the end of a stream whatever its version: for writers that are not the
   * stream's mailbox actor (the supervisor, when it refuses to start a mailbox).
   */
  const appendAtEnd = (stream: string, events: ReadonlyArray<MailboxEvent>) =>
    Effect.gen(function*() {
      const at = new Date(yield* Clock.currentTimeMillis).toISOString()
      return yield* committed(sql.withTransaction(Effect.gen(function*() {
        const current = yield* sql<{ version: number }>`SELECT version FROM streams WHERE stream = ${stream}`
        const expectedVersion = current.length === 0 ? 0 : Number(current[0]!.version)
        return yield* appendOne({ stream, expectedVersion, events }, at)
      })))
    })

  const read = (query: EventQuery) => {
    const conditions = [
      query.stream === undefined ? undefined : sql`stream = ${query.stream}`,
      query.types === undefined || query.types.length === 0 ? undefined : sql.in("type", query.types),
      query.after === undefined ? undefined : sql`position > ${query.after}`,
      query.since === undefined ? undefined : sql`at >= ${query.since.toISOString()}`,
      query.until === undefined ? undefined : sql`at <= ${query.until.toISOString()}`
    ].filter((condition) => condition !== undefined)
    const limit = query.limit === undefined ? sql`` : sql`LIMIT ${query.limit}`
    return sql<EventRow>`SELECT position, stream, version, type, payload, at FROM events
      WHERE ${sql.and(conditions)} ORDER BY position ${limit}`.pipe(Effect.map((rows) => rows.map(fromRow)))
  }

  /** A stream's events in pages, so that replaying a long stream does not hold it all. */
  const readStream = (stream: string, fromVersion = 0): Stream.Stream<StoredEvent, SqlError> =>
    Stream.paginateChunkEffect(fromVersion, (version) =>
      sql<EventRow>`SELECT position, stream, version, type, payload, at FROM events
        WHERE stream = ${stream} AND version > ${version} ORDER BY version LIMIT 5000`.pipe(
        Effect.map((rows) => {
          const events = rows.map(fromRow)
          const last = events.at(-1)
          return [Chunk.fromIterable(events), last === undefined || rows.length < 5000 ? Option.none() : Option.some(last.version)]
        })
      ))

  /**
   * One page of a stream for replay, as JSON text: `[[version, type, at, payload], ...]`, with
   * the payload as FOLDED_PAYLOAD gives it. SQLite builds the whole page as one string, so that
   * JS pays one JSON.parse per page instead of a row object, three strings and a parse per event.
   */
  const replayPage = (stream: string, after: number): Effect.Effect<{ readonly count: number; readonly json: string | null }, SqlError> =>
    sql.onDialectOrElse({
      sqlite: () =>
        sql<{ count: number; json: string | null }>`SELECT count(*) AS count,
          '[' || group_concat('[' || version || ',' || json_quote(type) || ',' || json_quote(at) || ',' || folded || ']', ',') || ']' AS json
          FROM (SELECT version, type, at, ${sql.literal(FOLDED_PAYLOAD)} AS folded FROM events
            WHERE stream = ${stream} AND version > ${after} ORDER BY version LIMIT ${REPLAY_PAGE})`,
      orElse: () =>
        sql<Pick<EventRow, "version" | "type" | "payload" | "at">>`SELECT version, type, payload, at FROM events
          WHERE stream = ${stream} AND version > ${after} ORDER BY version LIMIT ${REPLAY_PAGE}`.pipe(
          Effect.map((rows): ReadonlyArray<{ count: number; json: string | null }> => [{
            count: rows.length,
            json: JSON.stringify(rows.map((row) => [Number(row.version), row.type, row.at, JSON.parse(row.payload)]))
          }])
        )
    }).pipe(Effect.map((rows) => ({ count: Number(rows[0]!.count), json: rows[0]!.json })))

  /**
   * Folds a stream into the state of its mailbox, page by page. The fold reads only the fields
   * every version of an event has, so replay skips the Schema decode (and its class instances),
   * and of a MessageAccepted only what FOLDED_PAYLOAD keeps, read from the covering index
   * `events_replay` instead of the table. Everything else reads events fully decoded.
   */
  const replay = (stream: string): Effect.Effect<MailboxState, SqlError> =>
    // evolve mutates its state: each run (a retry, a repeat) must start from a new empty one.
    Effect.suspend(() => {
      const state = emptyState()
      // The events of one append share their time: one Date for them all.
      let lastAt = ""
      let lastDate = new Date(0)
      const page = (after: number): Effect.Effect<MailboxState, SqlError> =>
        Effect.flatMap(replayPage(stream, after), ({ count, json }) => {
          if (count === 0 || json === null) return Effect.succeed(state)
          const rows = JSON.parse(json) as Array<[number, string, string, { _tag: string }]>
          // SQLite aggregates the rows in the subquery's order, but SQL does not promise it: check.
          let last = after
          for (const row of rows) {
            if (row[0] !== last + 1) {
              rows.sort((a, b) => a[0] - b[0])
              break
            }
            last = row[0]
          }
          for (const [, type, at, event] of rows) {
            event._tag = type
            if (at !== lastAt) {
              lastAt = at
              lastDate = new Date(at)
            }
            evolve(state, event as MailboxEvent, lastDate)
          }
          return count < REPLAY_PAGE ? Effect.succeed(state) : page(rows.at(-1)![0])
        })
      return page(0)
    })

  const streams = sql<{ stream: string }>`SELECT stream FROM streams ORDER BY stream`.pipe(
    Effect.map((rows) => rows.map((row) => row.stream))
  )

  // A large message just appended is usually still in memory (its batch is being processed):
  // reading it back from the log for its quarantine notice would hold it twice. Weakly held,
  // and only once committed, so this never keeps a message alive nor shows one not in the log.
  const recent = new Map<string, WeakRef<Uint8Array>>()
  const forget = new FinalizationRegistry<string>((sha256) => {
    if (recent.get(sha256)?.deref() === undefined) recent.delete(sha256)
  })
  const remember = (blob: BlobInMemory) => {
    if (blob.bytes.byteLength <= CHUNKED_ABOVE || recent.get(blob.sha256)?.deref() !== undefined) return
    recent.set(blob.sha256, new WeakRef(blob.bytes))
    forget.register(blob.bytes, blob.sha256)
  }

  /** A stored message's pieces, a page at a time, into one buffer (shared: a parser worker reads it as is). */
  const readChunks = (sha256: string, size: number, chunks: number) =>
    Effect.gen(function*() {
      const out = new Uint8Array(new SharedArrayBuffer(size))
      let offset = 0
      for (let first = 0; first < chunks; first += CHUNK_PAGE) {
        const rows = yield* sql<{ seq: number; content: Uint8Array }>`SELECT seq, content FROM blob_chunks
          WHERE sha256 = ${sha256} AND seq >= ${first} AND seq < ${first + CHUNK_PAGE} ORDER BY seq`
        for (const [i, row] of rows.entries()) {
          if (Number(row.seq) !== first + i || offset + row.content.byteLength > size) break
          out.set(row.content, offset)
          offset += row.content.byteLength
        }
        if (rows.length !== Math.min(CHUNK_PAGE, chunks - first)) break
      }
      if (offset !== size) {
        return yield* new SqlError({ message: `raw message ${sha256} is incomplete in the event log: ${offset} of ${size} bytes` })
      }
      return out
    })

  const blob = (sha256: string): Effect.Effect<Option.Option<Uint8Array>, SqlError> =>
    Effect.suspend(() => {
      const cached = recent.get(sha256)?.deref()
      if (cached !== undefined) return Effect.succeed(Option.some(viewOf(cached)))
      return sql<{ size: number; chunks: number; content: Uint8Array }>`SELECT size, chunks, content FROM blobs
        WHERE sha256 = ${sha256}`.pipe(
        Effect.flatMap((rows) => {
          const row = rows[0]
          if (row === undefined) return Effect.succeed(Option.none())
          return Number(row.chunks) > 0
            ? Effect.map(readChunks(sha256, Number(row.size), Number(row.chunks)), Option.some)
            : Effect.succeed(Option.some(viewOf(row.content)))
        })
      )
    })

  // Last-poll times are kept here and written together every few seconds: with a thousand
  // mailboxes, a write (and an fsync) per poll was most of the daemon's idle CPU.
  const pendingPolls = new Map<string, number>()

  /** That a mailbox polled at `millis` (default: now), for the next flush; no Effect, for idle polls. */
  const notePoll = (stream: string, millis: number = Date.now()): void => {
    pendingPolls.set(stream, millis)
  }

  const recordPoll = (stream: string) => Effect.map(Clock.currentTimeMillis, (millis) => notePoll(stream, millis))

  const flushPolls = Effect.suspend(() => {
    if (pendingPolls.size === 0) return Effect.void
    const rows = [...pendingPolls].map(([stream, millis]) => ({ stream, last_poll_at: new Date(millis).toISOString() }))
    pendingPolls.clear()
    // A few statements per flush, not one per mailbox: with a thousand mailboxes this runs for
    // hundreds of polls every few seconds.
    return sql.withTransaction(Effect.forEach(inChunks(rows), (chunk) =>
      sql`INSERT INTO mailbox_heartbeats ${sql.insert(chunk)}
        ON CONFLICT (stream) DO UPDATE SET last_poll_at = excluded.last_poll_at`, { discard: true }))
  })

  yield* flushPolls.pipe(
    Effect.catchAll((error) => Effect.logWarning(`cannot record poll times: ${error.message}`)),
    Effect.repeat(Schedule.spaced(HEARTBEAT_FLUSH)),
    Effect.forkScoped
  )
  yield* Effect.addFinalizer(() => Effect.ignore(flushPolls))

  const lastPolls = Effect.zipRight(
    flushPolls,
    sql<{ stream: string; last_poll_at: string }>`SELECT stream, last_poll_at FROM mailbox_heartbeats`
  ).pipe(Effect.map((rows) => new Map(rows.map((row) => [row.stream, new Date(row.last_poll_at)]))))

  /**
   * That `run` (one run of a mailbox actor) starts the decision on a message retrieved before;
   * in how many runs that has now happened (migrations/0004_decision_attempts.sql). Durable
   * before it returns.
   */
  const noteDecisionAttempt = (stream: string, ref: string, sha256: string, run: string) =>
    sql<{ attempts: number }>`INSERT INTO decision_attempts ${sql.insert({ stream, ref, sha256, attempts: 1, run })}
      ON CONFLICT (stream, ref, sha256) DO UPDATE SET
        attempts = decision_attempts.attempts + CASE WHEN decision_attempts.run = excluded.run THEN 0 ELSE 1 END,
        run = excluded.run
      RETURNING attempts`.pipe(Effect.map((rows) => Number(rows[0]!.attempts)))

  return {
    append,
    appendAll,
    appendAtEnd,
    read,
    readStream,
    replay,
    streams,
    blob,
    recordPoll,
    notePoll,
    lastPolls,
    noteDecisionAttempt
  } as const
})

export class EventLog extends Context.Tag("mailintake/EventLog")<EventLog, Effect.Effect.Success<typeof make>>() {
  /** Over whatever SqlClient is provided. */
  static readonly layer = Layer.scoped(EventLog, make)
  /**
   * Over the SQLite database in `filename` (opened, migrated), which stays available too;
   * `{ thread: "worker" }` runs its connection on a thread of its own (Database.Options).
   */
  static readonly at = (filename: string, options?: Database.Options) =>
    EventLog.layer.pipe(Layer.provideMerge(Database.layer(filename, options)))
}
