/**
 * The configuration file (DESIGN.md, "The configuration file"): decoded with Schema so that
 * every error names the path of the bad field. Secrets are resolved while decoding, through
 * the `SecretStore` service, so this module stays free of I/O.
 */
import { Context, Effect, ParseResult, Redacted, Schema } from "effect"

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

const NonEmpty = Schema.String.pipe(Schema.minLength(1, { message: () => "must not be empty" }))

/**
 * Where a secret comes from, as written in the file: a string, `{ "env": "NAME" }` or
 * `{ "file": "path" }`. The two reference forms are one struct with exactly one field set, so a
 * typo inside it is reported as that typo rather than as a mismatch against every form.
 */
export const SecretSpec = Schema.Union(
  Schema.String,
  Schema.Struct({ env: Schema.optional(NonEmpty), file: Schema.optional(NonEmpty) }).pipe(
    Schema.filter((spec) => (spec.env === undefined) !== (spec.file === undefined), {
      message: () => 'must be { "env": "NAME" } or { "file": "path" }: exactly one of the two'
    })
  ).annotations({ title: '{ "env": "NAME" } or { "file": "path" }' })
)
export type SecretSpec = typeof SecretSpec.Type

/** Resolves `{ "env" }` and `{ "file" }` secrets; the only I/O the config decoder needs. */
export class SecretStore extends Context.Tag("mailintake/SecretStore")<SecretStore, {
  readonly resolve: (spec: SecretSpec) => Effect.Effect<string, string>
}>() {}

/** A secret in the file, held as `Redacted` once decoded: it is never logged or printed. */
export const Secret = Schema.transformOrFail(SecretSpec, Schema.RedactedFromSelf(Schema.String), {
  strict: true,
  decode: (spec, _, ast) =>
    Effect.flatMap(SecretStore, (store) => store.resolve(spec)).pipe(
      Effect.map(Redacted.make),
      Effect.mapError((message) => new ParseResult.Type(ast, describeSecretSpec(spec), message))
    ),
  // Encoding is only used to re-print a configuration summary: never reveal the value.
  encode: () => ParseResult.succeed("<redacted>")
})

const describeSecretSpec = (spec: SecretSpec): string =>
  typeof spec === "string" ? "<redacted>" : spec.env !== undefined ? `{ env: ${spec.env} }` : `{ file: ${spec.file} }`

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

export const UsageType = Schema.Literal("Production", "Test", "Development", "Training", "")
export type UsageType = typeof UsageType.Type

export const IntegrationType = Schema.Literal(
  "POP3",
  "IMAP",
  "Graph",
  "EWS",
  "ICELib4",
  "ICELib3",
  "AgentInteraction"
)
export type IntegrationType = typeof IntegrationType.Type

export const QuarantineType = Schema.Literal("SMTP", "Graph", "AgentInteraction", "ICELib")
export type QuarantineType = typeof QuarantineType.Type

export const TlsMode = Schema.Literal("implicit", "starttls", "none")
export type TlsMode = typeof TlsMode.Type

export const AfterProcessing = Schema.Union(
  Schema.Literal("delete"),
  Schema.Struct({ moveTo: NonEmpty }).annotations({ title: '{ "moveTo": "folder" }' })
)
export type AfterProcessing = typeof AfterProcessing.Type

/** A whole number in a range, with one message whether it is fractional or out of range. */
const WholeNumber = (min: number, max: number, message: string) =>
  Schema.Number.pipe(Schema.filter((n) => Number.isInteger(n) && n >= min && n <= max, { message: () => message }))
const Port = WholeNumber(1, 65_535, "must be a port number from 1 to 65535")
const Seconds = (max: number) => WholeNumber(1, max, `must be a whole number of seconds from 1 to ${max}`)
const Bytes = WholeNumber(1, 2 ** 40, "must be a whole number of bytes from 1 to 2^40")

export const DEFAULT_MAX_MESSAGE_BYTES = 50 * 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Quarantine
// ---------------------------------------------------------------------------------------------

/** SMTP settings as written; every field optional because blocks merge field by field. */
export const SmtpSettingsSpec = Schema.Struct({
  host: Schema.optional(Schema.String),
  port: Schema.optional(Port),
  ssl: Schema.optional(Schema.Boolean),
  user: Schema.optional(Schema.String),
  password: Schema.optional(Secret),
  sender: Schema.optional(Schema.String),
  tlsRejectUnauthorized: Schema.optional(Schema.Boolean),
  caFile: Schema.optional(Schema.String)
})
export type SmtpSettingsSpec = typeof SmtpSettingsSpec.Type

/** Graph client-credential settings (DESIGN.md, "A Graph mailbox"). */
export const GraphCredentialsSpec = Schema.Struct({
  tenant: Schema.optional(NonEmpty),
  clientId: Schema.optional(NonEmpty),
  clientSecret: Schema.optional(Secret),
  user: Schema.optional(NonEmpty),
  authorityUrl: Schema.optional(NonEmpty),
  graphUrl: Schema.optional(NonEmpty)
})
export type GraphCredentialsSpec = typeof GraphCredentialsSpec.Type

/** A quarantine block as written at any of the three levels (defaults, configuration, mailbox). */
export const QuarantineSpec = Schema.Struct({
  type: Schema.optional(QuarantineType),
  mailbox: Schema.optional(Schema.String),
  smtp: Schema.optional(SmtpSettingsSpec),
  graph: Schema.optional(GraphCredentialsSpec)
})
export type QuarantineSpec = typeof QuarantineSpec.Type

// ---------------------------------------------------------------------------------------------
// Mailboxes
// ---------------------------------------------------------------------------------------------

/** Fields every mailbox has, whatever its integration type. */
const MailboxCommon = {
  // `$` starts the log's own streams (`$config`), never a mailbox's.
  id: NonEmpty.pipe(Schema.filter((id) => !id.startsWith("$") || "must not start with $")),
  afterProcessing: Schema.optionalWith(AfterProcessing, { default: () => "delete" as const }),
  maxMessageBytes: Schema.optional(Bytes),
  quarantine: Schema.optional(QuarantineSpec)
}

/** An IMAP or POP3 mailbox: a mail server reached over TCP. */
export const ServerMailbox = Schema.Struct({
  ...MailboxCommon,
  host: NonEmpty,
  port: Schema.optional(Port),
  tls: Schema.optionalWith(TlsMode, { default: () => "implicit" as const }),
  tlsRejectUnauthorized: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  caFile: Schema.optional(NonEmpty),
  user: NonEmpty,
  password: Secret,
  folder: Schema.optionalWith(NonEmpty, { default: () => "INBOX" }),
  connectTimeoutSeconds: Schema.optionalWith(Seconds(600), { default: () => 30 }),
  commandTimeoutSeconds: Schema.optionalWith(Seconds(3600), { default: () => 120 })
})
export type ServerMailbox = typeof ServerMailbox.Type

export const GraphMailbox = Schema.Struct({
  ...MailboxCommon,
  tenant: NonEmpty,
  clientId: NonEmpty,
  clientSecret: Secret,
  user: NonEmpty,
  folder: Schema.optionalWith(NonEmpty, { default: () => "inbox" }),
  authorityUrl: Schema.optionalWith(NonEmpty, { default: () => "https://login.microsoftonline.com" }),
  graphUrl: Schema.optionalWith(NonEmpty, { default: () => "https://graph.microsoft.com/v1.0" })
})
export type GraphMailbox = typeof GraphMailbox.Type

// ---------------------------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------------------------

const ConfigurationCommon = {
  name: NonEmpty,
  usageType: Schema.optionalWith(UsageType, { default: () => "" as const }),
  pollingIntervalSeconds: Schema.optionalWith(Seconds(86_400), { default: () => 30 }),
  reconnectIntervalSeconds: Schema.optionalWith(Seconds(3_600), { default: () => 60 }),
  maxMessageBytes: Schema.optionalWith(Bytes, { default: () => DEFAULT_MAX_MESSAGE_BYTES }),
  quarantineListMail: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  quarantine: Schema.optional(QuarantineSpec)
}

/*
 * One struct per integration type, each with a single literal: Schema then decodes a
 * configuration only against the member its `integrationType` names, so the errors of a Graph
 * configuration are never mixed with what an IMAP configuration would have needed.
 */
const serverConfiguration = <T extends "IMAP" | "POP3">(integrationType: T) =>
  Schema.Struct({
    ...ConfigurationCommon,
    integrationType: Schema.Literal(integrationType),
    mailboxes: Schema.Array(ServerMailbox)
  })

export const ImapConfiguration = serverConfiguration("IMAP")
export const Pop3Configuration = serverConfiguration("POP3")
export const ServerConfiguration = Schema.Union(ImapConfiguration, Pop3Configuration)
export type ServerConfiguration = typeof ServerConfiguration.Type

export const GraphConfiguration = Schema.Struct({
  ...ConfigurationCommon,
  integrationType: Schema.Literal("Graph"),
  mailboxes: Schema.Array(GraphMailbox)
})
export type GraphConfiguration = typeof GraphConfiguration.Type

/**
 * EWS, an integration type of the settings screen that this build cannot run yet. It decodes (so
 * the rest of the file is still checked) and is then refused by `plan` with a clear message; its
 * mailboxes are not checked until the type is built.
 */
export const EwsConfiguration = Schema.Struct({
  ...ConfigurationCommon,
  integrationType: Schema.Literal("EWS"),
  mailboxes: Schema.optionalWith(Schema.Array(Schema.Unknown), { default: () => [] })
})
export type EwsConfiguration = typeof EwsConfiguration.Type

/**
 * The interaction-server types (settings screen: "Interaction server settings"). Their server
 * fields are optional here so that `plan` can report a missing one together with the refusal of
 * the type, which this build cannot run yet.
 */
const interactionConfiguration = <T extends "AgentInteraction" | "ICELib3" | "ICELib4">(integrationType: T) =>
  Schema.Struct({
    ...ConfigurationCommon,
    integrationType: Schema.Literal(integrationType),
    serverName: Schema.optional(Schema.String),
    userName: Schema.optional(Schema.String),
    password: Schema.optional(Secret),
    mailboxes: Schema.optionalWith(Schema.Array(Schema.Unknown), { default: () => [] })
  })

export const AgentInteractionConfiguration = interactionConfiguration("AgentInteraction")
export const ICELib3Configuration = interactionConfiguration("ICELib3")
export const ICELib4Configuration = interactionConfiguration("ICELib4")
export const InteractionConfiguration = Schema.Union(
  AgentInteractionConfiguration,
  ICELib3Configuration,
  ICELib4Configuration
)
export type InteractionConfiguration = typeof InteractionConfiguration.Type

export type UnsupportedConfiguration = EwsConfiguration | InteractionConfiguration

export const Configuration = Schema.Union(
  ImapConfiguration,
  Pop3Configuration,
  GraphConfiguration,
  EwsConfiguration,
  AgentInteractionConfiguration,
  ICELib3Configuration,
  ICELib4Configuration
)
export type Configuration = typeof Configuration.Type

const ConfigFileFields = {
  server: Schema.optionalWith(
    Schema.Struct({ usageType: Schema.optionalWith(UsageType, { default: () => "Production" as const }) }),
    { default: () => ({ usageType: "Production" as const }) }
  ),
  database: Schema.optionalWith(NonEmpty, { default: () => "./mailintake.db" }),
  defaults: Schema.optionalWith(Schema.Struct({ quarantine: Schema.optional(QuarantineSpec) }), {
    default: () => ({})
  })
}

export const ConfigFile = Schema.Struct({ ...ConfigFileFields, configurations: Schema.Array(Configuration) })
export type ConfigFile = typeof ConfigFile.Type

/**
 * The file with its configurations left undecoded: when the file has errors, the loader decodes
 * each configuration (and each mailbox) on its own, so that the rules spanning several fields are
 * still checked on every part that is well-formed and all problems are reported in one go.
 */
export const ConfigFileOutline = Schema.Struct({ ...ConfigFileFields, configurations: Schema.Array(Schema.Unknown) })
