/** `mailintake show SHA256`: a stored raw message (or large text body), byte for byte, on stdout. */
import { Args, Command } from "@effect/cli"
import { Effect, Option } from "effect"
import { EventLog } from "../eventlog/EventLog.js"
import { configOption, ExitCode, withEventLog } from "./shared.js"

const sha256 = Args.text({ name: "SHA256" }).pipe(
  Args.withDescription("the sha256 of a stored message (from `events`: sha256, or crlfSha256 for the CR LF form), or a large text body's bodySha256")
)

export const show = Command.make("show", { config: configOption, sha256 }, ({ config, sha256 }) =>
  withEventLog(config, () =>
    Effect.gen(function*() {
      const log = yield* EventLog
      const blob = yield* log.blob(sha256.trim().toLowerCase())
      if (Option.isNone(blob)) return yield* new ExitCode({ code: 1, message: `no stored message with sha256 ${sha256}` })
      yield* Effect.async<void>((resume) => {
        process.stdout.write(blob.value, () => resume(Effect.void))
      })
    }))).pipe(Command.withDescription("write a stored message to stdout, byte for byte"))
