/**
 * Which Layer serves a mailbox: its integration type picks the `MailSource`, its effective
 * quarantine type picks the `QuarantineSink`. Tests swap this service to run the real actor
 * over other sources and sinks.
 */
import { Context, Layer } from "effect"
import type { MailboxPlan } from "../domain/plan.js"
import { QuarantineSink, QuarantineSinkError } from "../quarantine/QuarantineSink.js"
import * as SmtpQuarantine from "../quarantine/smtp/SmtpQuarantine.js"
import * as ImapSource from "../sources/imap/ImapSource.js"
import { MailSource, MailSourceError } from "../sources/MailSource.js"
import { Effect } from "effect"

export class Integrations extends Context.Tag("mailintake/Integrations")<Integrations, {
  readonly source: (plan: MailboxPlan) => Layer.Layer<MailSource>
  readonly sink: (plan: MailboxPlan) => Layer.Layer<QuarantineSink>
}>() {}

/** A source that always fails: for an integration type this build cannot run. */
const unavailableSource = (message: string) =>
  Layer.succeed(MailSource, { open: Effect.fail(new MailSourceError({ kind: "protocol", message })) })

const unavailableSink = (message: string) =>
  Layer.succeed(QuarantineSink, { forward: () => Effect.fail(new QuarantineSinkError({ message, permanent: false })) })

export const live = Layer.succeed(Integrations, {
  source: (plan) => {
    const connection = plan.connection
    if (connection._tag === "Server" && connection.protocol === "IMAP") return ImapSource.layer(connection.settings)
    return unavailableSource(`integration type ${plan.integrationType} is not available in this build`)
  },
  sink: (plan) => {
    if (plan.quarantine.type === "SMTP") return SmtpQuarantine.layer(plan.quarantine)
    return unavailableSink(`quarantine type ${plan.quarantine.type} is not available in this build`)
  }
})
