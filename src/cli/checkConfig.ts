/**
 * `mailintake check-config`: exit 0 with a summary of what would run — per configuration the
 * usage-type verdict, integration type, mailboxes and each mailbox's effective quarantine — or
 * exit 2 with every problem in the file. Secrets are shown as <redacted>, never resolved values.
 */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import { ConfigInvalid, type LoadedConfig, loadConfig } from "../config/loadConfig.js"
import type { ConfigurationPlan, MailboxPlan, QuarantineTarget } from "../domain/plan.js"
import { shownUsageType } from "../domain/usageType.js"
import * as ImapSource from "../sources/imap/ImapSource.js"
import * as Pop3Source from "../sources/pop3/Pop3Source.js"
import { configOption, ExitCode, jsonOption, loadOrExit } from "./shared.js"

const REDACTED = "<redacted>"

const quarantineSummary = (target: QuarantineTarget) =>
  target.type === "SMTP"
    ? {
      type: target.type,
      mailbox: target.mailbox,
      smtp: {
        host: target.smtp.host,
        port: target.smtp.port,
        ssl: target.smtp.ssl,
        user: target.smtp.user,
        password: REDACTED,
        sender: target.smtp.sender
      }
    }
    : {
      type: target.type,
      mailbox: target.mailbox,
      graph: target.graph === undefined
        ? "the credentials of the mailbox"
        : {
          ...target.graph,
          ...(target.graph.clientSecret === undefined ? {} : { clientSecret: REDACTED })
        }
    }

const connectionSummary = (plan: MailboxPlan) => {
  if (plan.connection._tag === "Graph") {
    const { authorityUrl, clientId, folder, graphUrl, tenant, user } = plan.connection.settings
    return { tenant, clientId, clientSecret: REDACTED, user, folder, authorityUrl, graphUrl }
  }
  const { caFile, folder, host, port, tls, tlsRejectUnauthorized, user } = plan.connection.settings
  const defaultPort = plan.connection.protocol === "IMAP" ? ImapSource.defaultPort(tls) : Pop3Source.defaultPort(tls)
  return { host, port: port ?? defaultPort, tls, tlsRejectUnauthorized, caFile, user, password: REDACTED, folder }
}

export const summarizeMailbox = (plan: MailboxPlan) => ({
  id: plan.id,
  connection: connectionSummary(plan),
  maxMessageBytes: plan.maxMessageBytes,
  quarantineListMail: plan.quarantineListMail,
  afterProcessing: plan.afterProcessing,
  quarantine: quarantineSummary(plan.quarantine)
})

export const summarizeConfiguration = (configuration: ConfigurationPlan, mailboxes: ReadonlyArray<MailboxPlan>) => ({
  name: configuration.name,
  integrationType: configuration.integrationType,
  usageType: configuration.usageType,
  usage: configuration.usage._tag === "Runs"
    ? { verdict: "runs" as const }
    : { verdict: "mismatch" as const, message: configuration.usage.message },
  pollingIntervalSeconds: configuration.pollingIntervalSeconds,
  reconnectIntervalSeconds: configuration.reconnectIntervalSeconds,
  mailboxes: configuration.mailboxes.flatMap((id) => mailboxes.filter((mailbox) => mailbox.id === id)).map(summarizeMailbox)
})

export const summarize = (loaded: LoadedConfig) => ({
  file: loaded.path,
  valid: true,
  serverUsageType: loaded.plan.serverUsageType,
  serverUsageTypeSource: loaded.plan.serverUsageTypeSource,
  database: loaded.plan.database,
  configurations: loaded.plan.configurations.map((configuration) =>
    summarizeConfiguration(configuration, loaded.plan.mailboxes)
  )
})

const describeQuarantine = (quarantine: ReturnType<typeof quarantineSummary>): string => {
  if (quarantine.smtp !== undefined) {
    const { host, password, port, sender, ssl, user } = quarantine.smtp
    return `SMTP to ${quarantine.mailbox} via ${host}:${port}${ssl ? " (SSL)" : ""}, ` +
      `user ${user === "" ? "(anonymous)" : user}, password ${password}, sender ${sender}`
  }
  const graph = quarantine.graph ?? "the credentials of the mailbox"
  return `Graph to ${quarantine.mailbox}, sending with ${
    typeof graph === "string"
      ? graph
      : Object.entries(graph).map(([field, value]) => `${field} ${String(value)}`).join(", ")
  }`
}

const describeConnection = (connection: ReturnType<typeof connectionSummary>): string =>
  "host" in connection
    ? `${connection.user}@${connection.host}:${connection.port} tls ${connection.tls}, password ${connection.password}, folder ${connection.folder}`
    : `${connection.user} in tenant ${connection.tenant} via ${connection.graphUrl}, clientId ${connection.clientId}, clientSecret ${connection.clientSecret}, folder ${connection.folder}`

const describeAfter = (after: MailboxPlan["afterProcessing"]): string =>
  after === "delete" ? "delete" : `move to ${after.moveTo}`

const text = (summary: ReturnType<typeof summarize>): string => {
  const lines = [
    `${summary.file}: valid`,
    `server usage type: ${shownUsageType(summary.serverUsageType)}${summary.serverUsageTypeSource === "environment" ? " (from MAILINTAKE_USAGE_TYPE)" : ""}`,
    `event log: ${summary.database}`
  ]
  for (const configuration of summary.configurations) {
    lines.push(
      "",
      `configuration ${configuration.name}: ${configuration.integrationType}, usage type ${shownUsageType(configuration.usageType)}: ${
        configuration.usage.verdict === "runs" ? "runs" : `does not run: ${configuration.usage.message}`
      }`,
      `  poll every ${configuration.pollingIntervalSeconds} s, reconnect from ${configuration.reconnectIntervalSeconds} s`
    )
    if (configuration.mailboxes.length === 0) lines.push("  no mailboxes")
    for (const mailbox of configuration.mailboxes) {
      lines.push(
        `  mailbox ${mailbox.id}: ${describeConnection(mailbox.connection)}`,
        `    then ${describeAfter(mailbox.afterProcessing)}; messages over ${mailbox.maxMessageBytes} bytes are quarantined`,
        `    quarantine: ${describeQuarantine(mailbox.quarantine)}`
      )
    }
  }
  return lines.join("\n")
}

export const checkConfig = Command.make("check-config", { config: configOption, json: jsonOption }, ({ config, json }) =>
  Effect.gen(function*() {
    if (!json) {
      const loaded = yield* loadOrExit(config)
      return yield* Console.log(text(summarize(loaded)))
    }
    // With --json the problems are JSON on stdout too, so a script reads one document either way.
    const loaded = yield* loadConfig(config).pipe(
      Effect.catchTag("ConfigInvalid", (invalid: ConfigInvalid) =>
        Console.log(JSON.stringify({ file: invalid.file, valid: false, problems: invalid.problems }, null, 2)).pipe(
          Effect.zipRight(Effect.fail(new ExitCode({ code: 2, message: "" })))
        ))
    )
    yield* Console.log(JSON.stringify(summarize(loaded), null, 2))
  })).pipe(Command.withDescription("check a configuration file and say what would run"))
