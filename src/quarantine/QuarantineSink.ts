/**
 * The quarantine seam (DESIGN.md, "The two seams"). One Layer per quarantine type provides a
 * `QuarantineSink` for one mailbox's effective quarantine destination.
 */
import { Context, Data, type Effect } from "effect"
import type { QuarantineReason } from "../domain/QuarantineReason.js"

/** What the notice that accompanies a quarantined message says. */
export interface QuarantineNotice {
  readonly mailbox: string
  readonly reason: QuarantineReason
  readonly detail: string
  readonly ref: string
  readonly sha256: string
  /** When the message was retrieved. */
  readonly retrievedAt: Date
}

export interface Forwarded {
  /** The destination address or queue. */
  readonly destination: string
  /** What the destination answered (e.g. "250 2.0.0 OK queued"). */
  readonly response: string
}

export class QuarantineSinkError extends Data.TaggedError("QuarantineSinkError")<{
  readonly message: string
  /** True when the destination rejected the message for good (SMTP 5xx). */
  readonly permanent: boolean
}> {}

export class QuarantineSink extends Context.Tag("mailintake/QuarantineSink")<QuarantineSink, {
  /**
   * Forwards the original message with a notice. Succeeds only once the destination has
   * accepted it (SMTP 250, Graph 202).
   */
  readonly forward: (raw: Uint8Array, notice: QuarantineNotice) => Effect.Effect<Forwarded, QuarantineSinkError>
}>() {}
