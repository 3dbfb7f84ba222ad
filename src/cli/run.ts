/**
 * `mailintake run [--once] [--watch]`: the daemon. SIGINT/SIGTERM finish the step in hand,
 * log out and exit 0; SIGHUP (or a change of the file with --watch) reloads the configuration.
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Layer, Stream } from "effect"
import { watch } from "node:fs"
import { availableParallelism } from "node:os"
import { formatProblems, loadConfig } from "../config/loadConfig.js"
import * as Integrations from "../mailbox/Integrations.js"
import { spoolDirectoryFor } from "../processing/bodySpool.js"
import * as Decider from "../processing/Decider.js"
import * as Supervisor from "../mailbox/Supervisor.js"
import { configOption, eventLogLayer, ExitCode, loadOrExit } from "./shared.js"

const once = Options.boolean("once").pipe(
  Options.withDescription("poll every mailbox once and exit: 0 when every mailbox was reached, 1 otherwise")
)
const watchOption = Options.boolean("watch").pipe(
  Options.withDescription("reload the configuration when the file changes (SIGHUP always reloads)")
)

/** Reload requests: SIGHUP, and file changes with --watch. */
const reloadRequests = (path: string, watchFile: boolean) =>
  Stream.async<string>((emit) => {
    const onHangup = () => void emit.single("SIGHUP")
    process.on("SIGHUP", onHangup)
    const watcher = watchFile ? watch(path, () => void emit.single("file changed")) : undefined
    return Effect.sync(() => {
      process.off("SIGHUP", onHangup)
      watcher?.close()
    })
  }).pipe(Stream.debounce("200 millis"))

const daemon = (path: string, watchFile: boolean) =>
  Effect.gen(function*() {
    const loaded = yield* loadOrExit(path)
    const supervisor = yield* Supervisor.make
    const first = yield* supervisor.reconcile(loaded.plan.mailboxes)
    yield* Supervisor.recordApplied(loaded.plan.mailboxes, loaded.plan.serverUsageType, "start", first)
    yield* Effect.logInfo(`running ${first.started.length} mailbox(es) from ${path}; event log ${loaded.plan.database}`)
    const database = loaded.plan.database
    yield* reloadRequests(path, watchFile).pipe(
      Stream.runForEach((why) =>
        loadConfig(path).pipe(
          Effect.flatMap((next) =>
            Effect.gen(function*() {
              if (next.plan.database !== database) {
                yield* Effect.logWarning(`the event log moved to ${next.plan.database}: that takes a restart; still using ${database}`)
              }
              const changes = yield* supervisor.reconcile(next.plan.mailboxes)
              const changed = [changes.started, changes.restarted, changes.stopped, changes.refused].some((ids) => ids.length > 0)
              if (!changed) return yield* Effect.logInfo(`configuration re-read (${why}): nothing changed`)
              yield* Supervisor.recordApplied(next.plan.mailboxes, next.plan.serverUsageType, `reload (${why})`, changes)
              yield* Effect.logInfo(`configuration reloaded (${why})`).pipe(Effect.annotateLogs({
                started: changes.started.join(",") || "-",
                restarted: changes.restarted.join(",") || "-",
                stopped: changes.stopped.join(",") || "-",
                refused: changes.refused.join(",") || "-"
              }))
            })
          ),
          Effect.catchTag("ConfigInvalid", (invalid) =>
            Effect.logError(`configuration not reloaded (${why}): the running mailboxes go on\n${formatProblems(invalid.problems)}`))
        )
      )
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)

export const run = Command.make("run", { config: configOption, once, watch: watchOption }, ({ config, once, watch }) =>
  Effect.gen(function*() {
    const loaded = yield* loadOrExit(config)
    // Parsing runs on worker threads, beside fetching. SQLite gets a thread of its own only
    // where there is a core for it: on two cores (bench:throughput, 5,000 messages) it drained
    // no faster (646/631 against 645/594 msg/s over IMAP/POP3), used 6 % more CPU and 11–17 MB
    // more memory (the 50 MiB message of bench:large went over its limit). The short commands
    // always keep SQLite on the main thread: a thread costs more to start than they run.
    const layer = eventLogLayer(loaded.plan.database, { thread: availableParallelism() >= 4 ? "worker" : "main" })
    const services = Layer.mergeAll(Integrations.live, Decider.workerPool({ spoolDirectory: spoolDirectoryFor(loaded.plan.database) }), layer)
    if (!once) return yield* daemon(config, watch).pipe(Effect.provide(services))
    const results = yield* Supervisor.runOnce(loaded.plan.mailboxes).pipe(Effect.provide(services))
    const unreached = results.filter((result) => !result.reached)
    for (const result of results) {
      yield* Console.error(`${result.id}: ${result.reached ? "polled" : result.refused ? "refused (usage type)" : "NOT reached"}`)
    }
    if (unreached.length > 0) {
      return yield* new ExitCode({ code: 1, message: `${unreached.length} mailbox(es) not reached: ${unreached.map((r) => r.id).join(", ")}` })
    }
  })).pipe(Command.withDescription("run the daemon: poll every configured mailbox, record every message, then remove it"))
