/**
 * Event logs for Effect tests: a scoped temporary directory, and a new event log in one (a new
 * database file per test, deleted with its directory afterwards).
 */
import { Effect, Layer } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { EventLog } from "../../src/eventlog/EventLog.js"

export const scopedTempDir = (label: string) =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), `mailintake-${label}-`))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )

export const freshEventLog = (label: string) =>
  Layer.unwrapScoped(Effect.map(scopedTempDir(label), (dir) => EventLog.at(join(dir, "events.db"))))
