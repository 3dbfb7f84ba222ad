/**
 * What a decision is, and the one decided without parsing: a message over its size limit. Kept
 * apart from `decide.ts` so that the main thread can check sizes without loading mailparser.
 */
import type { QuarantineReason } from "../domain/QuarantineReason.js"
import type { Summary } from "./summaryFields.js"

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

/** Over the size limit: quarantined without being parsed (nor sent to a parser thread). */
export const tooLarge = (raw: Uint8Array, options: DecideOptions): Decision | undefined =>
  raw.byteLength > options.maxMessageBytes
    ? {
      _tag: "Quarantine",
      reason: "too-large",
      detail: `${raw.byteLength} bytes is over the limit of ${options.maxMessageBytes} bytes`
    }
    : undefined

