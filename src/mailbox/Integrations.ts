/**
 * Which Layer serves a mailbox: its integration type picks the `MailSource`, its effective
 * quarantine type picks the `QuarantineSink`. Tests swap this service to run the real actor
 * over other sources and sinks.
 */
// Node's own fetch (undici built into Node 20), not @effect/platform-node's NodeHttpClient: that
// module loads a bundled copy of undici (1 MB of code) into every daemon, Graph or not.
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { Context, Layer } from "effect"
import type { MailboxPlan } from "../domain/plan.js"
import * as GraphQuarantine from "../quarantine/graph/GraphQuarantine.js"
import type { QuarantineSink } from "../quarantine/QuarantineSink.js"
import * as SmtpQuarantine from "../quarantine/smtp/SmtpQuarantine.js"
import * as GraphSource from "../sources/graph/GraphSource.js"
import * as ImapSource from "../sources/imap/ImapSource.js"
import * as Pop3Source from "../sources/pop3/Pop3Source.js"
import type { MailSource } from "../sources/MailSource.js"

export class Integrations extends Context.Tag("mailintake/Integrations")<Integrations, {
  readonly source: (plan: MailboxPlan) => Layer.Layer<MailSource>
  readonly sink: (plan: MailboxPlan) => Layer.Layer<QuarantineSink>
}>() {}

export const live = Layer.succeed(Integrations, {
  source: (plan) => {
    const connection = plan.connection
    switch (connection._tag) {
      case "Server":
        return connection.protocol === "IMAP" ? ImapSource.layer(connection.settings) : Pop3Source.layer(connection.settings)
      case "Graph":
        return GraphSource.layer(connection.settings).pipe(Layer.provide(FetchHttpClient.layer))
    }
  },
  sink: (plan) => {
    const target = plan.quarantine
    switch (target.type) {
      case "SMTP":
        return SmtpQuarantine.layer(target)
      case "Graph":
        return GraphQuarantine.layer(target, plan.connection._tag === "Graph" ? plan.connection.settings : undefined).pipe(
          Layer.provide(FetchHttpClient.layer)
        )
    }
  }
})
