import { Schema } from "effect"

/** Why a message is forwarded to the quarantine destination instead of being accepted. */
export const QuarantineReason = Schema.Literal(
  "auto-response",
  "bounce",
  "list-mail",
  "quarantine-test",
  "too-large",
  "processing-error"
)
export type QuarantineReason = typeof QuarantineReason.Type
