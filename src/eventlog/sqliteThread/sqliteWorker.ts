/**
 * The worker thread that owns the event log's SQLite connection. better-sqlite3 is synchronous:
 * on the main thread every statement, and the fsync of every COMMIT, stopped the event loop that
 * also parses IMAP. Here it stops only this thread. Requests are run one at a time, in the order
 * they arrive, exactly as @effect/sql-sqlite-node runs them on its connection.
 */
import Sqlite from "better-sqlite3"
import { parentPort } from "node:worker_threads"
import type { ExecuteMode, Failure, Reply, Request } from "./protocol.js"

/** As @effect/sql-sqlite-node's default prepareCacheSize. */
const PREPARED_STATEMENTS = 200

let db: Sqlite.Database | undefined
/** Least recently used first (a Map keeps insertion order; a hit moves to the end). */
const prepared = new Map<string, Sqlite.Statement>()

const prepare = (connection: Sqlite.Database, sql: string): Sqlite.Statement => {
  const cached = prepared.get(sql)
  if (cached !== undefined) {
    prepared.delete(sql)
    prepared.set(sql, cached)
    return cached
  }
  const statement = connection.prepare(sql)
  prepared.set(sql, statement)
  if (prepared.size > PREPARED_STATEMENTS) prepared.delete(prepared.keys().next().value!)
  return statement
}

type Outcome = { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly failure: Failure }

const failure = (stage: Failure["stage"], error: unknown): Failure => ({
  stage,
  name: error instanceof Error ? error.name : "Error",
  message: error instanceof Error ? error.message : String(error),
  code: typeof (error as { code?: unknown })?.code === "string" ? (error as { code: string }).code : undefined
})

/** The statement's result, as @effect/sql-sqlite-node's Connection returns it for `mode`. */
const run = (statement: Sqlite.Statement, mode: ExecuteMode, params: ReadonlyArray<unknown>): unknown => {
  if (!statement.reader) {
    const result = statement.run(...params)
    return mode === "raw" ? result : []
  }
  if (mode !== "values") return statement.all(...params)
  statement.raw(true)
  try {
    return statement.all(...params)
  } finally {
    statement.raw(false)
  }
}

const execute = (request: Extract<Request, { op: "execute" }>): Outcome => {
  if (db === undefined) return { ok: false, failure: failure("execute", new TypeError("The database connection is not open")) }
  let statement: Sqlite.Statement
  try {
    statement = request.mode === "unprepared" ? db.prepare(request.sql) : prepare(db, request.sql)
  } catch (error) {
    return { ok: false, failure: failure("prepare", error) }
  }
  try {
    // Set on every run: the statement is cached and shared by callers with either setting.
    statement.safeIntegers(request.safeIntegers)
    const result = run(statement, request.mode, request.params)
    return { ok: true, result }
  } catch (error) {
    return { ok: false, failure: failure("execute", error) }
  }
}

const handle = (request: Request): Outcome => {
  switch (request.op) {
    case "open":
      try {
        db = new Sqlite(request.filename)
        return { ok: true, result: null }
      } catch (error) {
        return { ok: false, failure: failure("open", error) }
      }
    case "execute":
      return execute(request)
    case "close":
      try {
        prepared.clear()
        // Closing the last connection checkpoints the WAL into the database file.
        db?.close()
        db = undefined
        return { ok: true, result: null }
      } catch (error) {
        return { ok: false, failure: failure("close", error) }
      }
  }
}

/**
 * The BLOBs in a result, and the ArrayBuffers to hand over instead of copying: better-sqlite3
 * gives each BLOB a Buffer of its own, which nothing here uses again (a copy would be made on
 * the main thread, as the message is read).
 */
const blobsIn = (result: unknown): { readonly found: boolean; readonly transfer: Array<ArrayBuffer> } => {
  let found = false
  const transfer = new Set<ArrayBuffer>()
  if (!Array.isArray(result)) return { found, transfer: [] }
  for (const row of result) {
    if (row === null || typeof row !== "object") continue
    for (const value of Array.isArray(row) ? row : Object.values(row)) {
      if (!(value instanceof Uint8Array)) continue
      found = true
      // Only a buffer the view covers whole: detaching one shared with other views would empty them.
      if (value.buffer instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === value.buffer.byteLength) {
        transfer.add(value.buffer)
      }
    }
  }
  return { found, transfer: [...transfer] }
}

parentPort!.on("message", (request: Request) => {
  const outcome = handle(request)
  if (!outcome.ok) return parentPort!.postMessage({ id: request.id, ok: false, failure: outcome.failure } satisfies Reply)
  const { found, transfer } = blobsIn(outcome.result)
  const message = { id: request.id, ok: true, result: outcome.result, blobs: found } satisfies Reply
  try {
    parentPort!.postMessage(message, transfer)
  } catch {
    // A buffer V8 will not detach is copied instead.
    parentPort!.postMessage(message)
  }
})
