/**
 * The SQLite database behind the event log: opened in WAL mode (64 KiB pages) with synchronous=FULL (a
 * committed event survives a power cut, not only a process crash), migrated at start. Its
 * connection runs on the calling thread, or on a worker thread of its own (sqliteThread/).
 */
import { Migrator } from "@effect/sql"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, Schedule } from "effect"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import * as ThreadSqliteClient from "./sqliteThread/ThreadSqliteClient.js"

/** `migrations/` at the package root, from `src/eventlog/` (tests) or `dist/eventlog/` (bin). */
const migrationsDirectory = fileURLToPath(new URL("../../migrations/", import.meta.url))

/**
 * Numbered `NNNN_name.sql` files. A file may hold several statements, one per `;` at the end
 * of a line; better-sqlite3 prepares one statement at a time.
 */
export const sqlFileLoader = (directory: string): Migrator.Loader =>
  Effect.try({
    try: () =>
      readdirSync(directory)
        .filter((name) => /^\d+_.+\.sql$/.test(name))
        .map((name): Migrator.ResolvedMigration => {
          const [, id, label] = /^(\d+)_(.+)\.sql$/.exec(name)!
          const text = readFileSync(`${directory}/${name}`, "utf8")
          const statements = text
            .split(/;\s*$/m)
            .map((statement) => statement.replace(/^\s*--.*$/gm, "").trim())
            .filter((statement) => statement.length > 0)
          return [
            Number(id),
            label!,
            Effect.succeed(
              Effect.flatMap(SqlClient.SqlClient, (sql) =>
                Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
            )
          ]
        })
        .sort(([a], [b]) => a - b),
    catch: (cause) =>
      new Migrator.MigrationError({ reason: "import-error", message: `cannot read migrations in ${directory}: ${cause}` })
  })

/**
 * Another process (the daemon, or a CLI command opening the same new file) may be migrating at
 * the same moment. Two things can then happen: its tables appear under us and our CREATE fails,
 * or our attempt to record the migrations finds the database locked — which @effect/sql's
 * Migrator takes for "someone else is migrating" and reports as success, with no tables yet.
 * Either way we are done only once every migration we know is recorded as committed; until
 * then we wait and try again (the other process commits within milliseconds).
 */
const runMigrations = Effect.gen(function*() {
  const loader = sqlFileLoader(migrationsDirectory)
  const latestKnown = Math.max(0, ...(yield* loader).map(([id]) => id))
  const sql = yield* SqlClient.SqlClient
  const attempt = Effect.gen(function*() {
    yield* Migrator.make({})({ loader })
    const [recorded] = yield* sql<{ latest: number | null }>`SELECT max(migration_id) AS latest FROM effect_sql_migrations`
    if ((recorded?.latest ?? 0) < latestKnown) {
      return yield* new Migrator.MigrationError({
        reason: "locked",
        message: `another process is migrating the event log (recorded ${recorded?.latest ?? 0} of ${latestKnown})`
      })
    }
  })
  yield* Effect.retry(attempt, { times: 50, schedule: Schedule.spaced("200 millis") })
})

/**
 * Pragmas for durability, speed and readers (the CLI) running beside the daemon.
 *
 * Pages of 64 KiB: a raw message (20 KB on average, megabytes at times) is a chain of
 * overflow pages, each written to the WAL with its own frame header and checksum; with the
 * default 4 KiB pages SQLite spent about twice as long writing the same bytes. The page size
 * can only be set before the file is in WAL mode, hence WAL is switched on here, after it (a
 * no-op for an existing database, which keeps its page size).
 */
const configure = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe("PRAGMA busy_timeout = 10000")
  yield* sql.unsafe("PRAGMA page_size = 65536")
  // Switching to WAL takes an exclusive lock, and SQLite answers BUSY at once (no busy
  // handler) when another connection opening the same new file holds it: try again.
  yield* Effect.retry(sql.unsafe("PRAGMA journal_mode = WAL"), { times: 50, schedule: Schedule.spaced("100 millis") })
  yield* sql.unsafe("PRAGMA cache_size = -16384")
  yield* sql.unsafe("PRAGMA synchronous = FULL")
  yield* sql.unsafe("PRAGMA foreign_keys = ON")
})

/** Configures and migrates the database behind `client`, whichever thread its connection is on. */
export const configured = <Out, E>(client: Layer.Layer<Out | SqlClient.SqlClient, E>) =>
  Layer.effectDiscard(Effect.zipRight(configure, runMigrations)).pipe(Layer.provideMerge(client))

export interface Options {
  /**
   * Where the connection runs. "main" (the default): on this thread, the cheapest to start (the
   * short CLI commands). "worker": on a thread of its own, so that statements and the fsync at
   * each COMMIT leave this thread's event loop free (the daemon, where there is a core for it:
   * src/cli/run.ts); when the compiled worker script is not there (running from TypeScript
   * sources), on this thread after all.
   */
  readonly thread?: "main" | "worker" | undefined
  /** The worker script; default the compiled one (ThreadSqliteClient.compiledWorker). */
  readonly workerScript?: URL | undefined
}

const client = (filename: string, options: Options): Layer.Layer<SqlClient.SqlClient, unknown> => {
  const workerScript = options.workerScript ?? ThreadSqliteClient.compiledWorker
  return options.thread === "worker" && existsSync(fileURLToPath(workerScript))
    ? ThreadSqliteClient.layer({ filename, workerScript })
    : SqliteClient.layer({ filename, disableWAL: true })
}

export const layer = (filename: string, options: Options = {}): Layer.Layer<SqlClient.SqlClient, unknown> =>
  configured(client(filename, options))
