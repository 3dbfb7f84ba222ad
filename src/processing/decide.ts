/**
 * What happens to one retrieved message: accepted with its summary, or quarantined with a
 * reason. Never fails: a parse failure, a timeout or a defect becomes `processing-error`, so
 * one bad message can neither crash its mailbox nor be retried forever.
 */
import { Cause, Duration, Effect } from "effect"
import { classify } from "../domain/classify.js"
import type { QuarantineReason } from "../domain/QuarantineReason.js"
import { toCrlf } from "./crlf.js"
import { summarize, type Summary } from "./summarize.js"

export type Decision =
  | {
    readonly _tag: "Accept"
    readonly summary: Summary
    /** The whole message with CR LF line endings (the same bytes when it had them). */
    readonly crlf: Uint8Array
  }
  | { readonly _tag: "Quarantine"; readonly reason: QuarantineReason; readonly detail: string }

export interface DecideOptions {
  readonly maxMessageBytes: number
  readonly quarantineListMail: boolean
  /** How long parsing may take before the message counts as a processing error. */
  readonly parseTimeoutMillis: number
}

/**
 * A plain timer race: `Effect.timeout` costs about 0.6 ms per message (a fiber and a race),
 * as much as the parse itself. mailparser works on a stream, so the timer can fire between
 * its chunks.
 */
const withTimeout = <A>(promise: Promise<A>, millis: number): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`parsing took longer than ${Duration.format(millis)}`)), millis)
    })
  ]).finally(() => clearTimeout(timer))
}

const oneLine = (text: string) => text.replace(/[\r\n\t]+/g, " ").slice(0, 1000)

export const decide = (raw: Uint8Array, options: DecideOptions): Effect.Effect<Decision> =>
  Effect.gen(function*() {
    if (raw.byteLength > options.maxMessageBytes) {
      return {
        _tag: "Quarantine",
        reason: "too-large",
        detail: `${raw.byteLength} bytes is over the limit of ${options.maxMessageBytes} bytes`
      } as const
    }
    const verdict = classify(raw, { quarantineListMail: options.quarantineListMail })
    if (verdict._tag === "Quarantine") {
      return { _tag: "Quarantine", reason: verdict.reason, detail: verdict.detail } as const
    }
    const summary = yield* Effect.tryPromise(() => withTimeout(summarize(raw), options.parseTimeoutMillis))
    return { _tag: "Accept", summary, crlf: toCrlf(raw) } as const
  }).pipe(
    Effect.catchAllCause((cause) =>
      Effect.logWarning("processing failed: the message goes to quarantine", cause).pipe(
        Effect.as({
          _tag: "Quarantine",
          reason: "processing-error",
          detail: oneLine(Cause.isFailType(cause) ? String(cause.error) : Cause.pretty(cause))
        } as const)
      )
    )
  )
