/**
 * What the main thread and the SQLite worker thread say to each other. Requests are answered in
 * the order they arrive, one at a time: the worker owns one better-sqlite3 connection.
 */

/** How a statement is run, as @effect/sql's Connection names its methods. */
export type ExecuteMode =
  /** `execute`: the rows of a reader, `[]` for any other statement (prepared, cached). */
  | "rows"
  /** `executeRaw`: the rows of a reader, better-sqlite3's RunResult for any other. */
  | "raw"
  /** `executeValues`: the rows of a reader as arrays of values. */
  | "values"
  /** `executeUnprepared`: as `rows`, but prepared for this one run (BEGIN, COMMIT, ...). */
  | "unprepared"

export type Request =
  | { readonly id: number; readonly op: "open"; readonly filename: string }
  | {
    readonly id: number
    readonly op: "execute"
    readonly mode: ExecuteMode
    readonly sql: string
    readonly params: ReadonlyArray<unknown>
    readonly safeIntegers: boolean
  }
  | { readonly id: number; readonly op: "close" }

/** An error thrown on the worker, as data (structured cloning keeps neither class nor `code`). */
export interface Failure {
  readonly stage: "open" | "prepare" | "execute" | "close"
  readonly name: string
  readonly message: string
  /** SQLite's extended result code ("SQLITE_BUSY", ...), for a SqliteError. */
  readonly code: string | undefined
}

export type Reply =
  | {
    readonly id: number
    readonly ok: true
    readonly result: unknown
    /** Whether a row holds a BLOB (a Uint8Array on arrival), so the main thread looks only then. */
    readonly blobs: boolean
  }
  | { readonly id: number; readonly ok: false; readonly failure: Failure }
