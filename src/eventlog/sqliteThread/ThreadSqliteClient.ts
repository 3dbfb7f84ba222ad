/**
 * An @effect/sql SqlClient whose SQLite connection lives on a worker thread (sqliteWorker.ts),
 * so that statements, and the fsync at each COMMIT, no longer stop the main thread's event loop.
 * It behaves as @effect/sql-sqlite-node's client does: one connection, statements run in order,
 * a transaction holds the connection from BEGIN to COMMIT, errors are SqlErrors with SQLite's
 * error (a better-sqlite3 SqliteError, code included) as cause, BLOBs come back as Buffers.
 *
 * A COMMIT is reported done only once SQLite's COMMIT returned on the worker: durability is the
 * connection's (WAL, synchronous=FULL, set by Database.ts), not this client's.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as Client from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import Sqlite from "better-sqlite3"
import { Context, Effect, Layer, Scope, Stream } from "effect"
import { Worker } from "node:worker_threads"
import type { ExecuteMode, Failure, Reply, Request } from "./protocol.js"

/** The compiled worker script, next to this module once built (absent when running from sources). */
export const compiledWorker = new URL("./sqliteWorker.js", import.meta.url)

export interface ThreadSqliteClientConfig {
  readonly filename: string
  /** The worker script; default `compiledWorker`. */
  readonly workerScript?: URL | undefined
}

export interface ThreadSqliteClient extends Client.SqlClient {
  readonly config: ThreadSqliteClientConfig
  /** The thread the connection lives on (a test ends it to see what a crash does). */
  readonly worker: Worker
}

export const ThreadSqliteClient = Context.GenericTag<ThreadSqliteClient>("mailintake/ThreadSqliteClient")

type RequestBody = Request extends infer R ? R extends { readonly id: number } ? Omit<R, "id"> : never : never

/** As @effect/sql-sqlite-node words them (the trailing space included), for whoever matches them. */
const PREPARE_FAILED = "Failed to prepare statement "
const EXECUTE_FAILED = "Failed to execute statement"

/** The error as the main thread would have seen it: a SqliteError with its code, or a TypeError, .... */
const rebuild = (failure: Failure): Error => {
  if (failure.code !== undefined) return new Sqlite.SqliteError(failure.message, failure.code)
  const Constructor = ({ TypeError, RangeError } as Record<string, ErrorConstructor>)[failure.name] ?? Error
  return new Constructor(failure.message)
}

const sqlError = (failure: Failure): SqlError =>
  new SqlError({
    cause: rebuild(failure),
    message: failure.stage === "prepare"
      ? PREPARE_FAILED
      : failure.stage === "open"
      ? "Failed to open database"
      : failure.stage === "close"
      ? "Failed to close database"
      : EXECUTE_FAILED
  })

/** BLOBs arrive as Uint8Arrays: Buffers over the same bytes, as better-sqlite3 gives them. */
const withBuffers = (rows: unknown): unknown => {
  if (!Array.isArray(rows)) return rows
  for (const row of rows) {
    if (row === null || typeof row !== "object") continue
    for (const key in row) {
      const value = row[key]
      if (value instanceof Uint8Array) row[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    }
  }
  return rows
}

/**
 * The parameters as they are posted. Structured cloning copies a typed array's whole underlying
 * buffer (a 1 MB piece of a 3 MB message would travel as 3 MB, a 20-byte Buffer as its 8 KB
 * pool), so the bytes of every Uint8Array are copied once into one buffer that is handed over.
 * One on a SharedArrayBuffer (large messages are assembled on one) is shared: no copy at all.
 */
const encodeParams = (params: ReadonlyArray<unknown>): readonly [ReadonlyArray<unknown>, Array<ArrayBuffer>] => {
  let bytes = -1
  for (const param of params) {
    if (param instanceof Uint8Array && !(param.buffer instanceof SharedArrayBuffer)) bytes = Math.max(bytes, 0) + param.byteLength
  }
  if (bytes < 0) return [params, []]
  const packed = new Uint8Array(bytes)
  let offset = 0
  const encoded = params.map((param) => {
    if (!(param instanceof Uint8Array) || param.buffer instanceof SharedArrayBuffer) return param
    packed.set(param, offset)
    offset += param.byteLength
    return packed.subarray(offset - param.byteLength, offset)
  })
  return [encoded, [packed.buffer]]
}

/** The worker and the requests it has not answered yet. */
class SqliteThread {
  private readonly pending = new Map<number, (result: Effect.Effect<unknown, SqlError>) => void>()
  private nextId = 0
  /** Why no request can be sent any more: the database was closed, or the thread ended. */
  private ended: Error | undefined

  constructor(readonly worker: Worker) {
    worker.on("message", (reply: Reply) => {
      const resume = this.pending.get(reply.id)
      if (resume === undefined) return
      this.forget(reply.id)
      resume(reply.ok ? Effect.succeed(reply.blobs ? withBuffers(reply.result) : reply.result) : Effect.fail(sqlError(reply.failure)))
    })
    worker.on("error", (error) => this.end(new Error(`the SQLite thread failed: ${error.message}`, { cause: error })))
    worker.on("messageerror", (error) => this.end(new Error(`the SQLite thread sent an unreadable reply: ${error.message}`)))
    worker.on("exit", (code) => this.end(new Error(`the SQLite thread exited (code ${code})`)))
    // Idle, the thread does not keep the process alive; while a request is out, it does.
    worker.unref()
  }

  private forget(id: number) {
    this.pending.delete(id)
    if (this.pending.size === 0) this.worker.unref()
  }

  /** Fails every request waiting for an answer, and every later one. */
  private end(reason: Error) {
    this.ended ??= reason
    for (const [id, resume] of this.pending) {
      this.forget(id)
      resume(Effect.fail(new SqlError({ cause: this.ended, message: EXECUTE_FAILED })))
    }
  }

  send(body: RequestBody, transfer: ReadonlyArray<ArrayBuffer> = [], afterEnd = false): Effect.Effect<unknown, SqlError> {
    return Effect.async<unknown, SqlError>((resume) => {
      if (this.ended !== undefined && !afterEnd) {
        return resume(Effect.fail(new SqlError({ cause: this.ended, message: EXECUTE_FAILED })))
      }
      const id = this.nextId++
      try {
        this.worker.postMessage({ ...body, id }, transfer as Array<ArrayBuffer>)
      } catch (cause) {
        // A parameter that cannot be cloned (a function, a symbol): better-sqlite3 would refuse it too.
        return resume(Effect.fail(new SqlError({ cause, message: EXECUTE_FAILED })))
      }
      if (this.pending.size === 0) this.worker.ref()
      this.pending.set(id, resume)
      // An interrupted caller stops waiting; the worker still runs the statement, in its turn.
      return Effect.sync(() => this.forget(id))
    })
  }

  /** Closes the database (which checkpoints the WAL) after every request sent before, then ends the thread. */
  readonly close = Effect.suspend(() => {
    const alreadyEnded = this.ended !== undefined
    this.ended ??= new TypeError("The database connection is not open")
    return alreadyEnded ? Effect.void : this.send({ op: "close" }, [], true)
  }).pipe(
    Effect.tapError((error) => Effect.logWarning(`closing the event log's database: ${error.message}`, error.cause)),
    Effect.ignore,
    Effect.zipRight(Effect.promise(() => this.worker.terminate()))
  )
}

const execute = (thread: SqliteThread, mode: ExecuteMode, sql: string, params: ReadonlyArray<unknown>) =>
  Effect.withFiberRuntime<unknown, SqlError>((fiber) => {
    const safeIntegers = Context.get(fiber.currentContext, Client.SafeIntegers)
    const [encoded, transfer] = encodeParams(params)
    return thread.send({ op: "execute", mode, sql, params: encoded, safeIntegers }, transfer)
  })

const rows = (effect: Effect.Effect<unknown, SqlError>) => effect as Effect.Effect<ReadonlyArray<any>, SqlError>

const makeConnection = (thread: SqliteThread): Connection => ({
  execute: (sql, params, transformRows) => {
    const result = rows(execute(thread, "rows", sql, params))
    return transformRows ? Effect.map(result, transformRows) : result
  },
  executeRaw: (sql, params) => execute(thread, "raw", sql, params),
  executeValues: (sql, params) => execute(thread, "values", sql, params) as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError>,
  executeUnprepared: (sql, params, transformRows) => {
    const result = rows(execute(thread, "unprepared", sql, params ?? []))
    return transformRows ? Effect.map(result, transformRows) : result
  },
  // All rows in one reply, then streamed: nothing in mailintake streams from SQLite
  // (@effect/sql-sqlite-node does not implement this at all).
  executeStream: (sql, params, transformRows) =>
    Stream.flatMap(Stream.fromEffect(rows(execute(thread, "rows", sql, params))), (all) =>
      Stream.fromIterable(transformRows ? transformRows(all) : all))
})

export const make = (config: ThreadSqliteClientConfig): Effect.Effect<ThreadSqliteClient, SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const thread = yield* Effect.acquireRelease(
      Effect.sync(() => new SqliteThread(new Worker(config.workerScript ?? compiledWorker))),
      (thread) => thread.close
    )
    yield* thread.send({ op: "open", filename: config.filename })
    const connection = makeConnection(thread)

    // One connection, so one user at a time, as in @effect/sql-sqlite-node. Unlike there (where a
    // statement runs synchronously right after its acquire), a statement here is in flight for a
    // while: the permit is held until it is answered (Statement runs the acquirer in a scope that
    // ends with the statement), so that no statement of another fiber can be sent between a
    // transaction's BEGIN and its COMMIT.
    const semaphore = yield* Effect.makeSemaphore(1)
    const acquirer = Effect.uninterruptibleMask((restore) =>
      Effect.as(
        Effect.zipRight(
          restore(semaphore.take(1)),
          Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, semaphore.release(1)))
        ),
        connection
      )
    )

    const client = yield* Client.make({
      acquirer,
      transactionAcquirer: acquirer,
      compiler: Statement.makeCompilerSqlite(),
      spanAttributes: [["db.system.name", "sqlite"]]
    })
    return Object.assign(client, { config, worker: thread.worker })
  })

/** A SqlClient (also as ThreadSqliteClient) on the SQLite file `filename`, on a thread of its own. */
export const layer = (config: ThreadSqliteClientConfig): Layer.Layer<Client.SqlClient | ThreadSqliteClient, SqlError> =>
  Layer.scopedContext(
    Effect.map(make(config), (client) => Context.make(ThreadSqliteClient, client).pipe(Context.add(Client.SqlClient, client)))
  ).pipe(Layer.provide(Reactivity.layer))
