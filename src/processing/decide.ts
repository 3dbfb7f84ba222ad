/**
 * What happens to one retrieved message: accepted with its summary, or quarantined with a
 * reason. Never fails: a parse failure, a timeout or a defect becomes `processing-error`, so
 * one bad message can neither crash its mailbox nor be retried forever.
 *
 * The core (`decideMessage`) is a plain Promise with no Effect in it: it is what the parser
 * worker threads load, and each of them then stays small (no second copy of Effect).
 */
import { classify } from "../domain/classify.js"
import { defaultSpoolDirectory } from "./bodySpool.js"
import { toCrlf } from "./crlf.js"
import { type DecideOptions, type Decision, tooLarge } from "./Decision.js"
import { summarize } from "./summarize.js"

export type { DecideOptions, Decision } from "./Decision.js"
export { tooLarge } from "./Decision.js"

const oneLine = (text: string) => text.replace(/[\r\n\t]+/g, " ").slice(0, 1000)

/** A timer that rejects (a plain timer: mailparser works on a stream, so it can fire between pieces). */
const deadline = (millis: number) => {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`parsing took longer than ${millis} ms`)), millis)
  })
  promise.catch(() => {})
  return { promise, clear: () => clearTimeout(timer) }
}

/** Where the parse runs: a parser worker collects garbage during a large message (see `summarize`). */
export interface DecideContext {
  readonly collectGarbage?: boolean
  /** Where a large message's text body is spooled (bodySpool.ts); default `defaultSpoolDirectory()`. */
  readonly spoolDirectory?: string
}

export const decideMessage = async (raw: Uint8Array, options: DecideOptions, context: DecideContext = {}): Promise<Decision> => {
  const timer = deadline(options.parseTimeoutMillis)
  try {
    const large = tooLarge(raw, options)
    if (large !== undefined) return large
    const verdict = classify(raw, { quarantineListMail: options.quarantineListMail })
    if (verdict._tag === "Quarantine") return { _tag: "Quarantine", reason: verdict.reason, detail: verdict.detail }
    // The deadline also stops the parser, so a message over its time leaves nothing running.
    const summary = await Promise.race([
      summarize(raw, {
        stop: timer.promise,
        collectGarbage: context.collectGarbage,
        spoolDirectory: context.spoolDirectory ?? defaultSpoolDirectory()
      }),
      timer.promise
    ])
    return { _tag: "Accept", summary, crlf: toCrlf(raw) }
  } catch (error) {
    return { _tag: "Quarantine", reason: "processing-error", detail: oneLine(error instanceof Error ? `${error.name}: ${error.message}` : String(error)) }
  } finally {
    timer.clear()
  }
}
