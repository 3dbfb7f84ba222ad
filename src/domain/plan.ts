/**
 * From a decoded configuration file to the mailboxes the daemon runs: merges the quarantine
 * blocks (defaults ← configuration ← mailbox, field by field) and checks the rules that span
 * several fields. Every problem is collected, each with the path of the field to fix.
 */
import { Redacted } from "effect"
import type {
  AfterProcessing,
  ConfigFile,
  Configuration,
  GraphConfiguration,
  GraphCredentialsSpec,
  GraphMailbox,
  InteractionConfiguration,
  IntegrationType,
  QuarantineSpec,
  ServerConfiguration,
  ServerMailbox,
  SmtpSettingsSpec,
  UsageType
} from "./config.js"
import { usageVerdict, type UsageVerdict } from "./usageType.js"

export interface ConfigProblem {
  readonly path: string
  readonly message: string
}

export interface SmtpQuarantineTarget {
  readonly type: "SMTP"
  readonly mailbox: string
  readonly smtp: {
    readonly host: string
    readonly port: number
    readonly ssl: boolean
    readonly user: string
    readonly password: Redacted.Redacted<string>
    readonly sender: string
    readonly tlsRejectUnauthorized: boolean
    readonly caFile: string | undefined
  }
}

export interface GraphQuarantineTarget {
  readonly type: "Graph"
  readonly mailbox: string
  /** Sending credentials; undefined means "those of the Graph mailbox being quarantined from". */
  readonly graph: GraphCredentialsSpec | undefined
}

export type QuarantineTarget = SmtpQuarantineTarget | GraphQuarantineTarget

/** How a mailbox is reached. */
export type MailboxConnection =
  | { readonly _tag: "Server"; readonly protocol: "IMAP" | "POP3"; readonly settings: ServerMailbox }
  | { readonly _tag: "Graph"; readonly settings: GraphMailbox }

/** Everything one mailbox fiber needs, with every default applied. */
export interface MailboxPlan {
  readonly id: string
  readonly configuration: string
  readonly integrationType: IntegrationType
  readonly usageType: UsageType
  readonly usage: UsageVerdict
  readonly pollingIntervalSeconds: number
  readonly reconnectIntervalSeconds: number
  readonly maxMessageBytes: number
  readonly quarantineListMail: boolean
  readonly afterProcessing: AfterProcessing
  readonly quarantine: QuarantineTarget
  readonly connection: MailboxConnection
}

/** One configuration as it would run: the usage-type verdict applies to all its mailboxes. */
export interface ConfigurationPlan {
  readonly name: string
  readonly integrationType: IntegrationType
  readonly usageType: UsageType
  readonly usage: UsageVerdict
  readonly pollingIntervalSeconds: number
  readonly reconnectIntervalSeconds: number
  /** The ids of its mailboxes, in file order. */
  readonly mailboxes: ReadonlyArray<string>
}

export interface Plan {
  readonly serverUsageType: UsageType
  /** Where the server usage type came from: the file, or the MAILINTAKE_USAGE_TYPE override. */
  readonly serverUsageTypeSource: "file" | "environment"
  readonly database: string
  readonly configurations: ReadonlyArray<ConfigurationPlan>
  readonly mailboxes: ReadonlyArray<MailboxPlan>
}

export const SUPPORTED_INTEGRATIONS: ReadonlyArray<IntegrationType> = ["IMAP", "POP3", "Graph"]

export const DEFAULT_SMTP_PORT = 25

const INTERACTION_TYPES: ReadonlyArray<IntegrationType> = ["AgentInteraction", "ICELib3", "ICELib4"]

/**
 * Settings screen: the SMTP settings are "required whenever a POP3, IMAP or EWS mailbox
 * quarantines by SMTP"; a Graph mailbox needs them as much to send at all.
 */
const SENDS_QUARANTINE_BY_SMTP: ReadonlyArray<IntegrationType> = ["POP3", "IMAP", "EWS", "Graph"]

/** Collects problems once each: a bad value inherited by several mailboxes is one problem. */
const problemList = () => {
  const problems: Array<ConfigProblem> = []
  const seen = new Set<string>()
  const report = (path: string, message: string) => {
    const key = `${path}\u0000${message}`
    if (seen.has(key)) return
    seen.add(key)
    problems.push({ path, message })
  }
  return { problems, report }
}

type Report = (path: string, message: string) => void

export interface PlanOptions {
  /** The effective server usage type (the file's, or the MAILINTAKE_USAGE_TYPE override). */
  readonly serverUsageType: UsageType
  readonly serverUsageTypeSource?: "file" | "environment"
  readonly supported?: ReadonlyArray<IntegrationType>
}

/** A decoded configuration with its index in the file, and its mailboxes. */
export interface ConfigurationPart {
  readonly index: number
  readonly configuration: Configuration
  readonly mailboxes: ReadonlyArray<MailboxPart>
}

/**
 * A mailbox with its index in the file: decoded, or (when it did not decode, or its integration
 * type is not built yet) only its id, still checked for duplicates.
 */
export interface MailboxPart {
  readonly index: number
  readonly id: string | undefined
  readonly mailbox: ServerMailbox | GraphMailbox | undefined
}

/** The id written on a mailbox that is not decoded, if it is a string. */
export const rawMailboxId = (mailbox: unknown): string | undefined => {
  const id = typeof mailbox === "object" && mailbox !== null ? (mailbox as { readonly id?: unknown }).id : undefined
  return typeof id === "string" ? id : undefined
}

/** Builds the plan of a decoded file, or returns every problem found. */
export const plan = (
  file: ConfigFile,
  options: PlanOptions
): { readonly problems: ReadonlyArray<ConfigProblem>; readonly plan: Plan } =>
  planParts(
    {
      database: file.database,
      defaults: file.defaults,
      configurations: configurationParts(file.configurations)
    },
    options
  )

/** The parts of decoded configurations, indexed from 0. */
export const configurationParts = (configurations: ReadonlyArray<Configuration>): Array<ConfigurationPart> =>
  configurations.map((configuration, index) => ({
    index,
    configuration,
    mailboxes: isRunnable(configuration)
      ? configuration.mailboxes.map((mailbox: ServerMailbox | GraphMailbox, m: number) => ({ index: m, id: mailbox.id, mailbox }))
      : configuration.mailboxes.map((mailbox: unknown, m: number) => ({ index: m, id: rawMailboxId(mailbox), mailbox: undefined }))
  }))

/**
 * Builds the plan from the parts of a file that decoded. The loader calls it on a file with
 * errors too, with the well-formed parts only, so that the rules spanning several fields are
 * reported together with the field errors.
 */
export const planParts = (
  file: {
    readonly database: string
    readonly defaults: ConfigFile["defaults"]
    readonly configurations: ReadonlyArray<ConfigurationPart>
  },
  options: PlanOptions
): { readonly problems: ReadonlyArray<ConfigProblem>; readonly plan: Plan } => {
  const supported = options.supported ?? SUPPORTED_INTEGRATIONS
  const { problems, report } = problemList()
  const configurations: Array<ConfigurationPlan> = []
  const mailboxes: Array<MailboxPlan> = []
  const names = new Map<string, string>()
  const ids = new Map<string, string>()
  const defaults: QuarantineLevel = { path: "defaults.quarantine", block: file.defaults.quarantine }

  const checkId = (id: string, path: string) => {
    const first = ids.get(id)
    if (first !== undefined) report(path, `duplicate mailbox id "${id}" (also ${first}): ids must be unique across configurations`)
    else ids.set(id, path)
  }

  file.configurations.forEach((part) => {
    const configuration = part.configuration
    const at = `configurations[${part.index}]`
    const firstName = names.get(configuration.name)
    if (firstName !== undefined) {
      report(`${at}.name`, `duplicate configuration name "${configuration.name}" (also ${firstName})`)
    } else names.set(configuration.name, `${at}.name`)
    const configurationLevel: QuarantineLevel = { path: `${at}.quarantine`, block: configuration.quarantine }

    if (!isRunnable(configuration) || !supported.includes(configuration.integrationType)) {
      // Checked as far as this build understands it, so every mistake is reported with the refusal.
      for (const { id, index } of part.mailboxes) if (id !== undefined) checkId(id, `${at}.mailboxes[${index}].id`)
      if (INTERACTION_TYPES.includes(configuration.integrationType)) {
        checkInteractionServer(configuration as InteractionConfiguration, at, report)
      }
      resolveQuarantine([defaults, configurationLevel], configuration.integrationType, report)
      report(
        `${at}.integrationType`,
        `integration type ${configuration.integrationType} is not supported by this build yet (supported: ${supported.join(", ")})`
      )
      return
    }

    const usage = usageVerdict(options.serverUsageType, configuration.usageType)
    const runnable: ServerConfiguration | GraphConfiguration = configuration
    configurations.push({
      name: configuration.name,
      integrationType: configuration.integrationType,
      usageType: configuration.usageType,
      usage,
      pollingIntervalSeconds: configuration.pollingIntervalSeconds,
      reconnectIntervalSeconds: configuration.reconnectIntervalSeconds,
      mailboxes: part.mailboxes.flatMap(({ mailbox }) => (mailbox === undefined ? [] : [mailbox.id]))
    })
    part.mailboxes.forEach(({ id, index: m, mailbox }) => {
      const mat = `${at}.mailboxes[${m}]`
      if (id !== undefined) checkId(id, `${mat}.id`)
      if (mailbox === undefined) return
      const quarantine = resolveQuarantine(
        [defaults, configurationLevel, { path: `${mat}.quarantine`, block: mailbox.quarantine }],
        configuration.integrationType,
        report
      )
      if (quarantine === undefined) return
      mailboxes.push({
        id: mailbox.id,
        configuration: configuration.name,
        integrationType: configuration.integrationType,
        usageType: configuration.usageType,
        usage,
        pollingIntervalSeconds: configuration.pollingIntervalSeconds,
        reconnectIntervalSeconds: configuration.reconnectIntervalSeconds,
        maxMessageBytes: mailbox.maxMessageBytes ?? configuration.maxMessageBytes,
        quarantineListMail: configuration.quarantineListMail,
        afterProcessing: mailbox.afterProcessing,
        quarantine,
        connection: runnable.integrationType === "Graph"
          ? { _tag: "Graph", settings: mailbox as GraphMailbox }
          : { _tag: "Server", protocol: runnable.integrationType, settings: mailbox as ServerMailbox }
      })
    })
  })

  return {
    problems,
    plan: {
      serverUsageType: options.serverUsageType,
      serverUsageTypeSource: options.serverUsageTypeSource ?? "file",
      database: file.database,
      configurations,
      mailboxes
    }
  }
}

const isRunnable = (configuration: Configuration): configuration is ServerConfiguration | GraphConfiguration =>
  configuration.integrationType === "IMAP" || configuration.integrationType === "POP3" ||
  configuration.integrationType === "Graph"

const isBlank = (value: string | undefined): boolean => value === undefined || value.trim() === ""

/** Settings screen: "Interaction server settings: server name, user name, password". */
const checkInteractionServer = (configuration: InteractionConfiguration, at: string, report: Report) => {
  const required = `is required for integration type ${configuration.integrationType}`
  if (isBlank(configuration.serverName)) report(`${at}.serverName`, `the interaction server name ${required}`)
  if (isBlank(configuration.userName)) report(`${at}.userName`, `the interaction server user name ${required}`)
  if (configuration.password === undefined || Redacted.value(configuration.password) === "") {
    report(`${at}.password`, `the interaction server password ${required}`)
  }
}

const mergeSmtp = (blocks: ReadonlyArray<SmtpSettingsSpec | undefined>): SmtpSettingsSpec =>
  blocks.reduce<SmtpSettingsSpec>((acc, block) => (block === undefined ? acc : { ...acc, ...definedFields(block) }), {})

const mergeGraph = (blocks: ReadonlyArray<GraphCredentialsSpec | undefined>): GraphCredentialsSpec | undefined =>
  blocks.reduce<GraphCredentialsSpec | undefined>(
    (acc, block) => (block === undefined ? acc : { ...acc, ...definedFields(block) }),
    undefined
  )

const definedFields = <A extends object>(block: A): Partial<A> =>
  Object.fromEntries(Object.entries(block).filter(([, value]) => value !== undefined)) as Partial<A>

/**
 * Merges the quarantine blocks from least to most specific. The SMTP and Graph sub-blocks merge
 * field by field too, so a mailbox can change only the destination address.
 */
export const mergeQuarantine = (blocks: ReadonlyArray<QuarantineSpec | undefined>): QuarantineSpec => {
  const present = blocks.filter((block): block is QuarantineSpec => block !== undefined)
  const type = present.reduce<QuarantineSpec["type"]>((acc, block) => block.type ?? acc, undefined)
  const mailbox = present.reduce<string | undefined>((acc, block) => block.mailbox ?? acc, undefined)
  const smtp = mergeSmtp(present.map((block) => block.smtp))
  const graph = mergeGraph(present.map((block) => block.graph))
  return { type, mailbox, smtp, graph }
}

/** One of the three places a quarantine block can be written, with its path in the file. */
interface QuarantineLevel {
  readonly path: string
  readonly block: QuarantineSpec | undefined
}

/** The path of the most specific block that sets a field: where a bad value must be fixed. */
const origin = (levels: ReadonlyArray<QuarantineLevel>, get: (block: QuarantineSpec) => unknown): string | undefined =>
  [...levels].reverse().find((level) => level.block !== undefined && get(level.block) !== undefined)?.path

const looksLikeAddress = (value: string): boolean => /^[^@\s]+@[^@\s]+$/.test(value.trim())

const GRAPH_SENDER_FIELDS = ["tenant", "clientId", "clientSecret", "user"] as const

/**
 * The effective quarantine of one mailbox (or, for a configuration this build cannot run, of the
 * configuration), or undefined after reporting why there is none. Each problem names the field
 * where the offending value was written, or, for a missing value, the block that chose the type.
 */
const resolveQuarantine = (
  levels: ReadonlyArray<QuarantineLevel>,
  integrationType: IntegrationType,
  report: Report
): QuarantineTarget | undefined => {
  const merged = mergeQuarantine(levels.map((level) => level.block))
  // With no block anywhere, the configuration is where a quarantine is usually written.
  const fallback = (levels[1] ?? levels[0]!).path
  let valid = true
  const problem = (path: string, message: string) => {
    valid = false
    report(path, message)
  }
  if (merged.type === undefined && isBlank(merged.mailbox)) {
    problem(
      origin(levels, () => true) ?? fallback,
      "no quarantine destination: set quarantine.type and quarantine.mailbox here, on the configuration or in defaults"
    )
    return undefined
  }
  if (merged.type === undefined) {
    problem(
      `${origin(levels, (block) => block.mailbox)}.type`,
      `quarantine mailbox "${merged.mailbox}" has no type: set type to SMTP, Graph, AgentInteraction or ICELib`
    )
    return undefined
  }
  const typeAt = origin(levels, (block) => block.type)!
  const mailboxAt = `${origin(levels, (block) => block.mailbox) ?? typeAt}.mailbox`
  const byAddress = merged.type === "SMTP" || merged.type === "Graph"
  if (isBlank(merged.mailbox)) {
    problem(
      mailboxAt,
      byAddress
        ? `quarantine type ${merged.type} needs a mailbox: the address quarantined messages are forwarded to`
        : `quarantine type ${merged.type} needs a queue name in "mailbox"`
    )
  } else if (byAddress && !looksLikeAddress(merged.mailbox!)) {
    problem(mailboxAt, `"${merged.mailbox}" is not an e-mail address: ${merged.type} quarantines forward to an address`)
  }
  switch (merged.type) {
    case "AgentInteraction":
      if (integrationType !== "AgentInteraction") {
        problem(
          `${typeAt}.type`,
          `quarantine type AgentInteraction is allowed only with integration type AgentInteraction, not ${integrationType}`
        )
      }
      break
    case "ICELib":
      if (integrationType !== "ICELib3" && integrationType !== "ICELib4") {
        problem(`${typeAt}.type`, `quarantine type ICELib is allowed only with integration types ICELib3 and ICELib4, not ${integrationType}`)
      }
      break
    case "SMTP": {
      if (!SENDS_QUARANTINE_BY_SMTP.includes(integrationType)) break
      const smtp = merged.smtp ?? {}
      if (isBlank(smtp.host)) {
        problem(
          `${origin(levels, (block) => block.smtp?.host) ?? typeAt}.smtp.host`,
          "an SMTP server (host) is required to quarantine by SMTP"
        )
      }
      const senderAt = `${origin(levels, (block) => block.smtp?.sender) ?? typeAt}.smtp.sender`
      if (isBlank(smtp.sender)) {
        problem(senderAt, "an SMTP sender address is required to quarantine by SMTP")
      } else if (!looksLikeAddress(smtp.sender!)) {
        problem(senderAt, `"${smtp.sender}" is not an e-mail address`)
      }
      break
    }
    case "Graph": {
      // A Graph mailbox lends its own credentials to a Graph quarantine (DESIGN.md); others cannot.
      if (integrationType === "Graph") break
      const graphAt = origin(levels, (block) => block.graph)
      if (graphAt === undefined) {
        problem(
          `${typeAt}.graph`,
          `a Graph quarantine of ${integrationType} mail needs graph credentials: tenant, clientId, clientSecret and user (only a Graph mailbox lends its own)`
        )
        break
      }
      for (const field of GRAPH_SENDER_FIELDS) {
        if (merged.graph?.[field] === undefined) {
          problem(`${graphAt}.graph.${field}`, `is required for a Graph quarantine of ${integrationType} mail`)
        }
      }
      break
    }
  }
  if (!valid) return undefined
  if (merged.type === "SMTP") {
    const smtp = merged.smtp ?? {}
    return {
      type: "SMTP",
      mailbox: merged.mailbox!,
      smtp: {
        host: smtp.host!,
        port: smtp.port ?? DEFAULT_SMTP_PORT,
        ssl: smtp.ssl ?? false,
        user: smtp.user ?? "",
        password: smtp.password ?? Redacted.make(""),
        sender: smtp.sender!,
        tlsRejectUnauthorized: smtp.tlsRejectUnauthorized ?? true,
        caFile: smtp.caFile
      }
    }
  }
  if (merged.type === "Graph") return { type: "Graph", mailbox: merged.mailbox!, graph: merged.graph }
  // An interaction queue: only valid on an interaction integration type, which is refused above.
  return undefined
}
