/**
 * What every command shares: the --config option, opening the event log of a configuration,
 * and the process exit codes (0 ok, 1 failure, 2 bad configuration or usage).
 */
import { Options } from "@effect/cli"
import { Console, Data, Effect, Layer } from "effect"
import { ConfigInvalid, formatProblems, type LoadedConfig, type LoadOptions, loadConfig } from "../config/loadConfig.js"
import type * as Database from "../eventlog/Database.js"
import { EventLog } from "../eventlog/EventLog.js"

export class ExitCode extends Data.TaggedError("ExitCode")<{ readonly code: number; readonly message: string }> {}

export const configOption = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withDescription("the configuration file (JSON); default: $MAILINTAKE_CONFIG or ./mailintake.json"),
  Options.withDefault(process.env.MAILINTAKE_CONFIG ?? "mailintake.json")
)

export const jsonOption = Options.boolean("json").pipe(Options.withDescription("print JSON instead of a table"))

/** Loads the configuration; an invalid one ends the command with exit code 2 and every error. */
export const loadOrExit = (path: string, options: LoadOptions = {}) =>
  loadConfig(path, options).pipe(
    Effect.catchTag("ConfigInvalid", (invalid: ConfigInvalid) =>
      Console.error(`invalid configuration ${invalid.file}:\n${formatProblems(invalid.problems)}`).pipe(
        Effect.zipRight(Effect.fail(new ExitCode({ code: 2, message: "invalid configuration" })))
      ))
  )

/** An error's message and, for a SqlError, SQLite's own words ("database is locked"). */
const describe = (error: unknown): string => {
  const message = String((error as Error)?.message ?? error).trim()
  const inner = (error as { cause?: { message?: unknown } })?.cause?.message
  return typeof inner === "string" && inner !== "" ? `${message}: ${inner}` : message
}

/** The event log of the database a configuration names (by default on this thread: Database.Options). */
export const eventLogLayer = (database: string, options?: Database.Options) =>
  EventLog.at(database, options).pipe(
    Layer.mapError((cause) =>
      new ExitCode({ code: 1, message: `cannot open the event log ${database}: ${describe(cause)}` })
    )
  )

/** Runs `body` with the configuration loaded and its event log open. */
export const withEventLog = <A, E, R>(
  configPath: string,
  body: (loaded: LoadedConfig) => Effect.Effect<A, E, R>
) =>
  Effect.flatMap(loadOrExit(configPath, { secrets: "lenient" }), (loaded) =>
    Effect.provide(body(loaded), eventLogLayer(loaded.plan.database)))
