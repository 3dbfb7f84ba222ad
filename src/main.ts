/**
 * The `mailintake` command line: wires the commands and runs them on Node.
 * Exit codes: 0 ok, 1 failure (e.g. a mailbox not reached with --once), 2 bad configuration.
 */
import { Command } from "@effect/cli"
// Modules, not the package index: the index loads every platform module (HTTP, sockets,
// cluster…), some 25 MB of a daemon's memory.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Logger, LogLevel, Option } from "effect"
import { checkConfig } from "./cli/checkConfig.js"
import { events } from "./cli/events.js"
import { run } from "./cli/run.js"
import { ExitCode } from "./cli/shared.js"
import { show } from "./cli/show.js"
import { status } from "./cli/status.js"

const mailintake = Command.make("mailintake").pipe(
  Command.withDescription("inbound e-mail service: every message recorded once, quarantined when it must be, never lost"),
  Command.withSubcommands([run, events, status, show, checkConfig])
)

const cli = Command.run(mailintake, { name: "mailintake", version: "0.1.0" })

const logLevel = LogLevel.fromLiteral(
  (["All", "Trace", "Debug", "Info", "Warning", "Error", "None"] as const).find(
    (level) => level.toLowerCase() === (process.env.MAILINTAKE_LOG_LEVEL ?? "info").toLowerCase()
  ) ?? "Info"
)

/** Logs are structured (logfmt) on stderr: stdout is for what a command prints. */
const logger = Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))

const exitCodeOf = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return 0
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && failure.value instanceof ExitCode) return failure.value.code
  // @effect/cli's own validation errors (unknown option, missing argument) are usage errors.
  if (Option.isSome(failure) && typeof failure.value === "object" && failure.value !== null && "_tag" in failure.value) {
    const tag = String((failure.value as { _tag: unknown })._tag)
    if (["CommandMismatch", "CorrectedFlag", "InvalidArgument", "InvalidValue", "MissingValue", "MissingFlag", "MultipleValuesDetected", "MissingSubcommand", "NoBuiltInMatch", "UnclusteredFlag"].includes(tag)) return 2
  }
  return 1
}

cli(process.argv).pipe(
  Effect.catchTag("ExitCode", (error) =>
    error.code === 2 || error.message === "" ? Effect.fail(error) : Effect.logError(error.message).pipe(Effect.zipRight(Effect.fail(error)))),
  Effect.provide(NodeContext.layer),
  Effect.provide(logger),
  // No tracer is exported: skip building a span for every SQL statement and IMAP step.
  Effect.withTracerEnabled(false),
  Logger.withMinimumLogLevel(logLevel),
  (effect) =>
    NodeRuntime.runMain(effect, {
      disableErrorReporting: true,
      disablePrettyLogger: true,
      teardown: (exit, onExit) => {
        const code = exitCodeOf(exit)
        if (code === 1 && Exit.isFailure(exit) && !(Option.getOrUndefined(Cause.failureOption(exit.cause)) instanceof ExitCode)) {
          process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
        }
        // Exit only once stdout has been written out: a pipe reader (`events | jq`) would
        // otherwise lose the tail of the output. Lingering handles must not keep us alive.
        process.stdout.write("", () =>
          process.stderr.write("", () => {
            onExit(code)
            process.exit(code)
          }))
      }
    })
)
