/**
 * The SqlClient whose SQLite connection runs on a worker thread (src/eventlog/sqliteThread/), on
 * real database files, with the worker built from the sources: transactions, statements of other
 * fibers kept out of a transaction, BLOBs byte for byte, SQLite's errors as the main-thread
 * client reports them, and what happens when the thread dies or the database is closed.
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { MailboxConnected, MessageRetrieved } from "../../src/domain/events.js"
import * as Database from "../../src/eventlog/Database.js"
import { EventLog, StreamVersionConflict } from "../../src/eventlog/EventLog.js"
import * as ThreadSqliteClient from "../../src/eventlog/sqliteThread/ThreadSqliteClient.js"
import { onWorkerThread, scopedTempDir, sqliteWorkerScript } from "../support/freshEventLog.js"

const tempDir = scopedTempDir("sqlite-thread")

/** A bare client (no pragmas, no migrations) on a new file. */
const threadClient = (filename: string) => ThreadSqliteClient.layer({ filename, workerScript: sqliteWorkerScript() })
const mainClient = (filename: string) => SqliteClient.layer({ filename, disableWAL: true })

const clients = [
  ["worker thread", threadClient],
  ["main thread", mainClient]
] as const

/** Runs `body` with a client of each kind on a new file in a new directory. */
const onFreshFile = <A, E>(
  client: (filename: string) => Layer.Layer<SqlClient.SqlClient, unknown>,
  body: (sql: SqlClient.SqlClient, filename: string) => Effect.Effect<A, E, Scope.Scope>
) =>
  Effect.gen(function*() {
    const filename = join(yield* tempDir, "test.db")
    const sql = Context.get(yield* Layer.build(client(filename)), SqlClient.SqlClient)
    return yield* body(sql, filename)
  }).pipe(Effect.scoped)

/** The worker client's context, in a scope the test closes itself. */
const openThread = (filename: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(threadClient(filename), scope)
    return { scope, sql: Context.get(context, SqlClient.SqlClient), thread: Context.get(context, ThreadSqliteClient.ThreadSqliteClient) }
  })

/** The SqlError's SQLite error, as callers read it (`error.cause.message`, `.code`). */
const sqliteCause = (error: unknown) => {
  const cause = (error as { cause?: { name?: string; message?: string; code?: string } }).cause
  return { tag: (error as { _tag?: string })._tag, message: (error as Error).message, causeName: cause?.name, causeMessage: cause?.message, code: cause?.code }
}

describe("transactions", () => {
  it.live("commit together, and roll back on failure, savepoints included", () =>
    onFreshFile(threadClient, (sql) =>
      Effect.gen(function*() {
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (1)`, sql`INSERT INTO t VALUES (2)`))
        const failed = yield* sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (3)`, Effect.fail("no"))).pipe(Effect.flip)
        expect(failed).toBe("no")
        // A nested transaction is a savepoint: its failure undoes only its own work.
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO t VALUES (4)`
          yield* Effect.ignore(sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (5)`, Effect.fail("inner"))))
          yield* sql`INSERT INTO t VALUES (6)`
        }))
        // A failing statement inside fails the transaction as a whole.
        const error = yield* sql.withTransaction(Effect.zipRight(sql`INSERT INTO t VALUES (7)`, sql`INSERT INTO nowhere VALUES (1)`)).pipe(
          Effect.flip
        )
        expect(error._tag).toBe("SqlError")
        const rows = yield* sql<{ x: number }>`SELECT x FROM t ORDER BY x`
        expect(rows.map((row) => row.x)).toEqual([1, 2, 4, 6])
      })))

  it.live("keep other fibers' statements out: they wait for the COMMIT or ROLLBACK", () =>
    onFreshFile(threadClient, (sql) =>
      Effect.gen(function*() {
        yield* sql`CREATE TABLE t (x TEXT)`
        const inside = yield* Deferred.make<void>()
        const order: Array<string> = []
        const transaction = yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`INSERT INTO t VALUES ('in the transaction')`
          yield* Deferred.succeed(inside, undefined)
          // Long enough for the other fiber's statement to be sent, were it not held back.
          yield* Effect.sleep("100 millis")
          order.push("transaction ends")
          return yield* Effect.fail("roll back")
        })).pipe(Effect.flip, Effect.fork)
        yield* Deferred.await(inside)
        const outside = yield* sql`INSERT INTO t VALUES ('outside')`.pipe(
          Effect.tap(() => Effect.sync(() => order.push("outside written"))),
          Effect.fork
        )
        yield* Fiber.join(transaction)
        yield* Fiber.join(outside)
        // Had the INSERT run inside the transaction, the ROLLBACK would have taken it too.
        expect((yield* sql<{ x: string }>`SELECT x FROM t`).map((row) => row.x)).toEqual(["outside"])
        expect(order).toEqual(["transaction ends", "outside written"])
      })))

  it.live("concurrent appends of many fibers keep every stream's versions whole and in order", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir, "events.db")
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const event = (i: number) => new MailboxConnected({ server: `imap://${i}` })
        // Eight writers of their own streams, and four racing on one stream (retrying on conflict).
        const own = Effect.forEach(Array.from({ length: 8 }, (_, w) => `own-${w}`), (stream) =>
          Effect.forEach(Array.from({ length: 25 }, (_, i) => i), (i) =>
            log.append({ stream, expectedVersion: i * 2, events: [event(i), event(i)] }), { discard: true }), {
          concurrency: "unbounded",
          discard: true
        })
        const racer = Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) =>
          Effect.flatMap(log.replay("shared"), (state) =>
            log.append({ stream: "shared", expectedVersion: state.version, events: [event(i)] })).pipe(
            Effect.retry({ while: (error) => error instanceof StreamVersionConflict })
          ), { discard: true })
        yield* Effect.all([own, racer, racer, racer, racer], { concurrency: "unbounded", discard: true })

        const all = yield* log.read({})
        expect(all.length).toBe(8 * 50 + 40)
        expect(all.map((stored) => stored.position)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1))
        for (const stream of [...Array.from({ length: 8 }, (_, w) => `own-${w}`), "shared"]) {
          const versions = all.filter((stored) => stored.stream === stream).map((stored) => stored.version)
          expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1))
        }
      }).pipe(Effect.provide(EventLog.at(filename, onWorkerThread())))
    }).pipe(Effect.scoped))
})

describe("BLOBs", () => {
  it.live("go in and come back byte for byte, as Buffers, leaving the caller's bytes untouched", () =>
    onFreshFile(threadClient, (sql) =>
      Effect.gen(function*() {
        yield* sql`CREATE TABLE b (id INTEGER PRIMARY KEY, content BLOB)`
        const large = randomBytes(3 * 1024 * 1024 + 7)
        const backing = randomBytes(4096)
        const shared = new Uint8Array(new SharedArrayBuffer(100_000), 1000, 50_000)
        shared.set(randomBytes(50_000))
        const values: ReadonlyArray<Uint8Array> = [
          Buffer.from("small, in Node's Buffer pool"),
          backing.subarray(100, 300),
          Uint8Array.from({ length: 256 }, (_, i) => i),
          shared,
          new Uint8Array(0),
          large,
          // A piece of a larger message, as the chunked path stores them.
          large.subarray(1024 * 1024, 2 * 1024 * 1024)
        ]
        const copies = values.map((value) => Buffer.from(value))
        yield* sql`INSERT INTO b ${sql.insert(values.map((content, id) => ({ id, content })))}`
        const rows = yield* sql<{ id: number; content: Uint8Array }>`SELECT id, content FROM b ORDER BY id`
        expect(rows.length).toBe(values.length)
        for (const row of rows) {
          expect(Buffer.isBuffer(row.content)).toBe(true)
          expect(Buffer.compare(row.content, copies[row.id]!)).toBe(0)
        }
        // Nothing was handed over from under the caller: every value still holds its bytes.
        values.forEach((value, i) => expect(Buffer.compare(Buffer.from(value), copies[i]!)).toBe(0))
        const [raw] = yield* sql`SELECT content FROM b WHERE id = 1`.values
        expect(Buffer.compare(raw![0] as Buffer, copies[1]!)).toBe(0)
      })))
})

describe("results", () => {
  it.live("raw gives the run result, values arrays, SafeIntegers bigints", () =>
    onFreshFile(threadClient, (sql) =>
      Effect.gen(function*() {
        yield* sql`CREATE TABLE t (x INTEGER)`
        expect(yield* sql`INSERT INTO t VALUES (1), (2)`.raw).toEqual({ changes: 2, lastInsertRowid: 2 })
        expect(yield* sql`SELECT x FROM t ORDER BY x`.values).toEqual([[1], [2]])
        // An unprepared statement runs as well.
        expect(yield* sql`SELECT count(*) AS n FROM t`.unprepared).toEqual([{ n: 2 }])
        const big = yield* sql<{ n: bigint }>`SELECT 9007199254740993 AS n`.pipe(Effect.provideService(SqlClient.SafeIntegers, true))
        expect(big[0]!.n).toBe(9007199254740993n)
        // And the statement, cached, is not left reading bigints for everyone else.
        expect((yield* sql<{ n: number }>`SELECT 9007199254740993 AS n`)[0]!.n).toBe(9007199254740992)
      })))
})

describe.each(clients)("SQLite's errors, on the %s", (_name, client) => {
  it.live("a constraint violation is a SqlError with SQLite's message and code as cause", () =>
    onFreshFile(client, (sql) =>
      Effect.gen(function*() {
        yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY)`
        yield* sql`INSERT INTO t VALUES (1)`
        const error = yield* Effect.flip(sql`INSERT INTO t VALUES (1)`)
        expect(sqliteCause(error)).toEqual({
          tag: "SqlError",
          message: "Failed to execute statement",
          causeName: "SqliteError",
          causeMessage: "UNIQUE constraint failed: t.id",
          code: "SQLITE_CONSTRAINT_PRIMARYKEY"
        })
        expect(error.cause).toBeInstanceOf(Sqlite.SqliteError)
      })))

  it.live("a statement that does not compile fails to prepare", () =>
    onFreshFile(client, (sql) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(sql.unsafe("SELEC 1"))
        expect(sqliteCause(error)).toMatchObject({ tag: "SqlError", message: "Failed to prepare statement ", causeMessage: "near \"SELEC\": syntax error" })
      })))

  it.live("a write while another process holds the write lock is 'database is locked' once the busy timeout ends", () =>
    onFreshFile(client, (sql, filename) =>
      Effect.gen(function*() {
        yield* sql`PRAGMA journal_mode = WAL`
        yield* sql`CREATE TABLE t (x INTEGER)`
        yield* sql`PRAGMA busy_timeout = 50`
        const other = yield* Effect.acquireRelease(Effect.sync(() => new Sqlite(filename)), (db) => Effect.sync(() => db.close()))
        other.exec("BEGIN IMMEDIATE")
        const error = yield* Effect.flip(sql.withTransaction(sql`INSERT INTO t VALUES (1)`))
        // BEGIN is deferred: the INSERT is what waits for the lock, and gives up.
        expect(sqliteCause(error)).toMatchObject({ tag: "SqlError", causeMessage: "database is locked", code: "SQLITE_BUSY" })
        other.exec("ROLLBACK")
        yield* sql`INSERT INTO t VALUES (2)`
        expect(yield* sql`SELECT x FROM t`).toEqual([{ x: 2 }])
      })))
})

describe("the thread's end", () => {
  it.live("a crash (an uncaught exception on the thread) fails what is waiting and whatever comes later, without a hang", () =>
    Effect.gen(function*() {
      const { scope, sql, thread } = yield* openThread(join(yield* tempDir, "test.db"))
      yield* sql`CREATE TABLE t (x INTEGER)`
      // Not a request: handling it throws on the thread, which is what a bug there would do.
      thread.worker.postMessage(null)
      const waiting = yield* Effect.flip(sql`INSERT INTO t VALUES (1)`)
      expect(waiting._tag).toBe("SqlError")
      expect(String((waiting.cause as Error).message)).toMatch(/SQLite thread (failed|exited)/)
      const later = yield* Effect.flip(sql`SELECT 1`)
      expect(later._tag).toBe("SqlError")
      // A transaction ends too (its failed ROLLBACK is a defect in @effect/sql, which EventLog
      // turns back into a SqlError: see the next tests).
      expect(Exit.isFailure(yield* Effect.exit(sql.withTransaction(sql`INSERT INTO t VALUES (2)`)))).toBe(true)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.timeout("10 seconds"), Effect.scoped))

  it.live("a thread ended during a long statement fails it and the statements queued behind it", () =>
    Effect.gen(function*() {
      const { scope, sql, thread } = yield* openThread(join(yield* tempDir, "test.db"))
      const slow = yield* sql`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT count(*) AS n FROM c`.pipe(
        Effect.flip,
        Effect.fork
      )
      const queued = yield* Effect.fork(Effect.flip(sql`SELECT 1 AS one`))
      yield* Effect.sleep("100 millis")
      yield* Effect.promise(() => thread.worker.terminate())
      expect((yield* Fiber.join(slow))._tag).toBe("SqlError")
      expect((yield* Fiber.join(queued))._tag).toBe("SqlError")
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.timeout("10 seconds"), Effect.scoped))

  it.live("an append after the thread died is a SqlError (the mailbox pauses and retries), not a defect", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir, "events.db")
      const layer = EventLog.layer.pipe(Layer.provideMerge(Database.configured(threadClient(filename))))
      yield* Effect.gen(function*() {
        const log = yield* EventLog
        const thread = yield* ThreadSqliteClient.ThreadSqliteClient
        const event = new MessageRetrieved({ ref: "1", sha256: "s", size: 1, messageId: "<1@x>" })
        yield* log.append({ stream: "a", expectedVersion: 0, events: [event] })
        yield* Effect.promise(() => thread.worker.terminate())
        const error = yield* Effect.flip(log.append({ stream: "a", expectedVersion: 1, events: [event] }))
        expect(error._tag).toBe("SqlError")
        expect((yield* Effect.flip(log.replay("a")))._tag).toBe("SqlError")
      }).pipe(Effect.provide(layer))
      // What was committed before is in the file.
      const db = new Sqlite(filename, { readonly: true })
      expect(db.prepare("SELECT count(*) AS n FROM events").get()).toEqual({ n: 1 })
      db.close()
    }).pipe(Effect.timeout("10 seconds"), Effect.scoped))

  it.live("closing the layer closes the database (checkpointed, no WAL left) and ends the thread; a request after that fails", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir, "events.db")
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Database.configured(threadClient(filename)), scope)
      const sql = Context.get(context, SqlClient.SqlClient)
      const thread = Context.get(context, ThreadSqliteClient.ThreadSqliteClient)
      yield* sql`INSERT INTO streams (stream, version) VALUES ('a', 1)`
      expect(existsSync(`${filename}-wal`)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      expect(existsSync(`${filename}-wal`)).toBe(false)
      expect(thread.worker.threadId).toBe(-1)
      const error = yield* Effect.flip(sql`SELECT 1`)
      expect(sqliteCause(error)).toMatchObject({ tag: "SqlError", causeMessage: "The database connection is not open" })
      const db = new Sqlite(filename, { readonly: true })
      expect(db.prepare("SELECT version FROM streams WHERE stream = 'a'").get()).toEqual({ version: 1 })
      db.close()
    }).pipe(Effect.timeout("10 seconds"), Effect.scoped))

  it.live("a file that cannot be opened fails the layer with a SqlError", () =>
    Effect.gen(function*() {
      const filename = join(yield* tempDir, "no such directory", "events.db")
      const error = yield* Effect.flip(Layer.build(threadClient(filename)))
      expect(sqliteCause(error)).toMatchObject({ tag: "SqlError", message: "Failed to open database" })
      expect(sqliteCause(error).causeMessage).toMatch(/directory does not exist/)
    }).pipe(Effect.timeout("10 seconds"), Effect.scoped))
})
