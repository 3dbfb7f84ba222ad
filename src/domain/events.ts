/**
 * The events of the log (DESIGN.md, "The processing protocol"). Each is stored as its type
 * (the tag) and its Schema-encoded payload. Versioning: add fields with defaults, never change
 * what a field means.
 */
import { Schema } from "effect"
import { QuarantineReason } from "./QuarantineReason.js"

const Ref = Schema.String
const Sha256 = Schema.String

export class MessageRetrieved extends Schema.TaggedClass<MessageRetrieved>()("MessageRetrieved", {
  ref: Ref,
  sha256: Sha256,
  size: Schema.Number,
  messageId: Schema.String
}) {}

export const AttachmentSummary = Schema.Struct({
  filename: Schema.String,
  contentType: Schema.String,
  size: Schema.Number
})

export class MessageAccepted extends Schema.TaggedClass<MessageAccepted>()("MessageAccepted", {
  ref: Ref,
  sha256: Sha256,
  messageId: Schema.String,
  from: Schema.String,
  to: Schema.Array(Schema.String),
  cc: Schema.Array(Schema.String),
  subject: Schema.String,
  date: Schema.NullOr(Schema.String),
  attachments: Schema.Array(AttachmentSummary),
  /** The text body with CR LF line endings, as handed on to agents; "" when `bodySha256` is set. */
  body: Schema.String,
  /** sha256 of the whole message with CR LF line endings (equal to `sha256` when it had them). */
  crlfSha256: Sha256,
  /**
   * Set when the body is over 4 MiB: it is then stored apart, as the blob with this sha256
   * (UTF-8, CR LF line endings; `mailintake show <bodySha256>`), and `body` is "". A body that
   * large would otherwise be held whole in memory on every read of the event.
   */
  bodySha256: Schema.optional(Sha256)
}) {}

export class MessageQuarantineRequested extends Schema.TaggedClass<MessageQuarantineRequested>()(
  "MessageQuarantineRequested",
  {
    ref: Ref,
    sha256: Sha256,
    reason: QuarantineReason,
    detail: Schema.String
  }
) {}

export class MessageQuarantined extends Schema.TaggedClass<MessageQuarantined>()("MessageQuarantined", {
  ref: Ref,
  sha256: Sha256,
  reason: QuarantineReason,
  destination: Schema.String,
  /** What the destination answered (e.g. the SMTP 250 line). */
  response: Schema.String
}) {}

export class QuarantineFailed extends Schema.TaggedClass<QuarantineFailed>()("QuarantineFailed", {
  ref: Ref,
  sha256: Sha256,
  reason: QuarantineReason,
  attempt: Schema.Number,
  error: Schema.String
}) {}

export class MessageRemoved extends Schema.TaggedClass<MessageRemoved>()("MessageRemoved", {
  ref: Ref,
  /** "delete", "move:<folder>", or "gone" when the server no longer had it. */
  how: Schema.String
}) {}

export class MessageDuplicateSkipped extends Schema.TaggedClass<MessageDuplicateSkipped>()(
  "MessageDuplicateSkipped",
  {
    ref: Ref,
    sha256: Sha256,
    messageId: Schema.String,
    /** The ref under which the same message was accepted before. */
    duplicateOf: Schema.String
  }
) {}

export class MailboxConnected extends Schema.TaggedClass<MailboxConnected>()("MailboxConnected", {
  server: Schema.String
}) {}

export class MailboxConnectionFailed extends Schema.TaggedClass<MailboxConnectionFailed>()(
  "MailboxConnectionFailed",
  {
    error: Schema.String,
    attempt: Schema.Number,
    retryInSeconds: Schema.Number
  }
) {}

export class MailboxStopped extends Schema.TaggedClass<MailboxStopped>()("MailboxStopped", {
  reason: Schema.String,
  detail: Schema.String
}) {}

/**
 * A configuration was loaded or reloaded and applied (stream `$config`). The hash covers every
 * setting, secrets included only as hashes; the summary names no secret.
 */
export class ConfigurationApplied extends Schema.TaggedClass<ConfigurationApplied>()("ConfigurationApplied", {
  hash: Schema.String,
  summary: Schema.String,
  started: Schema.Array(Schema.String),
  restarted: Schema.Array(Schema.String),
  stopped: Schema.Array(Schema.String),
  refused: Schema.Array(Schema.String)
}) {}

export const MailboxEvent = Schema.Union(
  MessageRetrieved,
  MessageAccepted,
  MessageQuarantineRequested,
  MessageQuarantined,
  QuarantineFailed,
  MessageRemoved,
  MessageDuplicateSkipped,
  MailboxConnected,
  MailboxConnectionFailed,
  MailboxStopped,
  ConfigurationApplied
)
export type MailboxEvent = typeof MailboxEvent.Type

export type EventType = MailboxEvent["_tag"]

/** Every event type, from the union itself (each class's identifier is its tag). */
export const EVENT_TYPES: ReadonlyArray<EventType> = MailboxEvent.members.map((member) => member.identifier as EventType)

/** The stream of configuration events (not a mailbox; `$` cannot start a mailbox id). */
export const CONFIG_STREAM = "$config"

/** An event as read back from the log, with where and when it was written. */
export interface StoredEvent {
  readonly position: number
  readonly stream: string
  readonly version: number
  readonly at: Date
  readonly event: MailboxEvent
}
