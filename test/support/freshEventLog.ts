/**
 * Event logs for Effect tests: a scoped temporary directory, and a new event log in one (a new
 * database file per test, deleted with its directory afterwards), on the main thread or on the
 * SQLite worker thread.
 */
import { Effect, Layer } from "effect"
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { bundle } from "../../scripts/bundle.js"
import type * as Database from "../../src/eventlog/Database.js"
import { EventLog } from "../../src/eventlog/EventLog.js"

export const scopedTempDir = (label: string) =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), `mailintake-${label}-`))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )

export const freshEventLog = (label: string, options?: Database.Options) =>
  Layer.unwrapScoped(Effect.map(scopedTempDir(label), (dir) => EventLog.at(join(dir, "events.db"), options)))

let workerScript: URL | undefined

/**
 * The SQLite worker built from the sources under test (tests run src/, where there is no compiled
 * worker and Database.layer would quietly stay on the main thread): bundled as `npm run build`
 * bundles it, once per test process, into a directory that goes when the process does.
 */
export const sqliteWorkerScript = (): URL => {
  if (workerScript !== undefined) return workerScript
  const dir = mkdtempSync(join(tmpdir(), "mailintake-sqlite-worker-"))
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }))
  // An ES module, which leaves better-sqlite3 outside: found in the repository's node_modules.
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }))
  symlinkSync(resolve(import.meta.dirname, "../../node_modules"), join(dir, "node_modules"), "dir")
  bundle(dir, undefined, ["sqliteWorker"])
  workerScript = pathToFileURL(join(dir, "sqliteWorker.js"))
  return workerScript
}

/** The SQLite connection on a worker thread built from the sources. */
export const onWorkerThread = (): Database.Options => ({ thread: "worker", workerScript: sqliteWorkerScript() })
