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

export interface Plan {
  readonly serverUsageType: UsageType
  readonly database: string
  readonly mailboxes: ReadonlyArray<MailboxPlan>
}

export const SUPPORTED_INTEGRATIONS: ReadonlyArray<IntegrationType> = ["IMAP", "POP3", "Graph"]

export const DEFAULT_SMTP_PORT = 25

/**
 * Builds the plan or returns every problem found. `serverUsageType` is the effective server
 * usage type (the file's, or the MAILINTAKE_USAGE_TYPE override).
 */
export const plan = (
  file: ConfigFile,
  options: { readonly serverUsageType: UsageType; readonly supported?: ReadonlyArray<IntegrationType> }
): { readonly problems: ReadonlyArray<ConfigProblem>; readonly plan: Plan } => {
  const supported = options.supported ?? SUPPORTED_INTEGRATIONS
  const problems: Array<ConfigProblem> = []
  const mailboxes: Array<MailboxPlan> = []
  const names = new Map<string, string>()
  const ids = new Map<string, string>()

  file.configurations.forEach((configuration, c) => {
    const at = `configurations[${c}]`
    const firstName = names.get(configuration.name)
    if (firstName !== undefined) {
      problems.push({ path: `${at}.name`, message: `duplicate configuration name "${configuration.name}" (also ${firstName})` })
    } else names.set(configuration.name, `${at}.name`)

    if (!supported.includes(configuration.integrationType)) {
      problems.push({
        path: `${at}.integrationType`,
        message: `integration type "${configuration.integrationType}" is not supported by this build yet (supported: ${supported.join(", ")})`
      })
      return
    }
    if (!isRunnable(configuration)) return

    const usage = usageVerdict(options.serverUsageType, configuration.usageType)
    const runnable: ServerConfiguration | GraphConfiguration = configuration
    runnable.mailboxes.forEach((mailbox: ServerMailbox | GraphMailbox, m: number) => {
      const mat = `${at}.mailboxes[${m}]`
      const firstId = ids.get(mailbox.id)
      if (firstId !== undefined) {
        problems.push({ path: `${mat}.id`, message: `duplicate mailbox id "${mailbox.id}" (also ${firstId})` })
      } else ids.set(mailbox.id, `${mat}.id`)

      const quarantine = resolveQuarantine(
        [file.defaults.quarantine, configuration.quarantine, mailbox.quarantine],
        configuration,
        mat,
        problems
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
    plan: { serverUsageType: options.serverUsageType, database: file.database, mailboxes }
  }
}

const isRunnable = (configuration: Configuration): configuration is ServerConfiguration | GraphConfiguration =>
  configuration.integrationType === "IMAP" || configuration.integrationType === "POP3" ||
  configuration.integrationType === "Graph"

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

const resolveQuarantine = (
  blocks: ReadonlyArray<QuarantineSpec | undefined>,
  configuration: Configuration,
  mailboxPath: string,
  problems: Array<ConfigProblem>
): QuarantineTarget | undefined => {
  const merged = mergeQuarantine(blocks)
  const at = `${mailboxPath}.quarantine`
  const before = problems.length
  if (merged.type === undefined && (merged.mailbox === undefined || merged.mailbox === "")) {
    problems.push({
      path: at,
      message: "no quarantine destination: set quarantine.type and quarantine.mailbox here, on the configuration, or in defaults"
    })
    return undefined
  }
  if (merged.type === undefined) {
    problems.push({ path: `${at}.type`, message: `quarantine mailbox "${merged.mailbox}" is set but no quarantine type` })
    return undefined
  }
  if (merged.mailbox === undefined || merged.mailbox.trim() === "") {
    problems.push({ path: `${at}.mailbox`, message: `quarantine type ${merged.type} needs a mailbox or queue name` })
  }
  switch (merged.type) {
    case "AgentInteraction":
      if (configuration.integrationType !== "AgentInteraction") {
        problems.push({ path: `${at}.type`, message: "quarantine type AgentInteraction is only allowed with integration type AgentInteraction" })
      }
      break
    case "ICELib":
      if (configuration.integrationType !== "ICELib3" && configuration.integrationType !== "ICELib4") {
        problems.push({ path: `${at}.type`, message: "quarantine type ICELib is only allowed with integration types ICELib3 and ICELib4" })
      }
      break
    case "SMTP": {
      const smtp = merged.smtp ?? {}
      if (smtp.host === undefined || smtp.host.trim() === "") {
        problems.push({ path: `${at}.smtp.host`, message: "an SMTP server is required when quarantining by SMTP" })
      }
      if (smtp.sender === undefined || smtp.sender.trim() === "") {
        problems.push({ path: `${at}.smtp.sender`, message: "an SMTP sender address is required when quarantining by SMTP" })
      }
      break
    }
    case "Graph":
      if (merged.graph === undefined && configuration.integrationType !== "Graph") {
        problems.push({
          path: `${at}.graph`,
          message: "a Graph quarantine of a non-Graph mailbox needs its own graph credentials (tenant, clientId, clientSecret, user)"
        })
      }
      break
  }
  if (problems.length > before) return undefined
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
  problems.push({ path: `${at}.type`, message: `quarantine type ${merged.type} is not supported by this build yet` })
  return undefined
}
