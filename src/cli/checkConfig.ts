/**
 * `mailintake check-config`: exit 0 with a summary of what would run, or exit 2 with every
 * problem in the file. Secrets are shown as <redacted>.
 */
import { Command } from "@effect/cli"
import { Console, Effect } from "effect"
import type { MailboxPlan, QuarantineTarget } from "../domain/plan.js"
import { configOption, jsonOption, loadOrExit } from "./shared.js"

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
        password: "<redacted>",
        sender: target.smtp.sender
      }
    }
    : { type: target.type, mailbox: target.mailbox, graph: target.graph === undefined ? "(the mailbox's own credentials)" : { ...target.graph, clientSecret: "<redacted>" } }

export const summarizePlan = (plan: MailboxPlan) => ({
  id: plan.id,
  configuration: plan.configuration,
  integrationType: plan.integrationType,
  usage: plan.usage._tag === "Runs" ? "runs" : `refused: ${plan.usage.message}`,
  server: plan.connection._tag === "Server"
    ? `${plan.connection.settings.user}@${plan.connection.settings.host}:${plan.connection.settings.port ?? "(default)"} tls=${plan.connection.settings.tls} folder=${plan.connection.settings.folder}`
    : `${plan.connection.settings.user} via ${plan.connection.settings.graphUrl} folder=${plan.connection.settings.folder}`,
  pollingIntervalSeconds: plan.pollingIntervalSeconds,
  reconnectIntervalSeconds: plan.reconnectIntervalSeconds,
  maxMessageBytes: plan.maxMessageBytes,
  afterProcessing: plan.afterProcessing === "delete" ? "delete" : `move to ${plan.afterProcessing.moveTo}`,
  quarantine: quarantineSummary(plan.quarantine)
})

export const checkConfig = Command.make("check-config", { config: configOption, json: jsonOption }, ({ config, json }) =>
  Effect.gen(function*() {
    const loaded = yield* loadOrExit(config)
    const mailboxes = loaded.plan.mailboxes.map(summarizePlan)
    if (json) {
      return yield* Console.log(JSON.stringify({ serverUsageType: loaded.plan.serverUsageType, database: loaded.plan.database, mailboxes }, null, 2))
    }
    const lines = [
      `${config}: valid`,
      `server usage type: ${loaded.plan.serverUsageType || "(blank)"}`,
      `event log: ${loaded.plan.database}`
    ]
    for (const mailbox of mailboxes) {
      lines.push(
        "",
        `mailbox ${mailbox.id} (configuration ${mailbox.configuration}, ${mailbox.integrationType}): ${mailbox.usage}`,
        `  server: ${mailbox.server}`,
        `  poll every ${mailbox.pollingIntervalSeconds} s, reconnect from ${mailbox.reconnectIntervalSeconds} s, max ${mailbox.maxMessageBytes} bytes, then ${mailbox.afterProcessing}`,
        `  quarantine: ${JSON.stringify(mailbox.quarantine)}`
      )
    }
    yield* Console.log(lines.join("\n"))
  })).pipe(Command.withDescription("check a configuration file and say what would run"))
