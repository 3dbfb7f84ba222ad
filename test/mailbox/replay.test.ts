/**
 * Issue 2: the state a mailbox actor builds event by event equals the state replayed from the
 * log alone after a restart — over a real Dovecot and SMTP server, with accepted, duplicate and
 * quarantined messages in it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"
import { parseConfig } from "../../src/config/loadConfig.js"
import { EventLog } from "../../src/eventlog/EventLog.js"
import * as Integrations from "../../src/mailbox/Integrations.js"
import * as MailboxActor from "../../src/mailbox/MailboxActor.js"
import * as Decider from "../../src/processing/Decider.js"
import { imapMailbox, smtpQuarantine, tempDir } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import * as samples from "../support/quarantineSamples.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

describe("replay", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  beforeAll(async () => {
    dovecot = await startDovecot({ name: "replay" })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  it.live("rebuilds from the log alone the state the actor held", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() =>
        dovecot.seed("test@example.test", [
          plainMessage(1),
          plainMessage(2),
          plainMessage(1),
          samples.vacationReply(),
          samples.deliveryStatusBounce()
        ]))
      const dir = tempDir("replay")
      const loaded = yield* parseConfig(join(dir, "mailintake.json"), JSON.stringify({
        database: join(dir, "events.db"),
        defaults: { quarantine: smtpQuarantine(smtp) },
        configurations: [{ name: "replay", integrationType: "IMAP", mailboxes: [imapMailbox(dovecot, "replay", "test@example.test", "secret")] }]
      }))
      const plan = loaded.plan.mailboxes[0]!
      const eventLog = () => EventLog.at(loaded.plan.database)
      const integrations = yield* Effect.provide(Integrations.Integrations, Integrations.live)

      const outcome = yield* MailboxActor.run(plan, { once: true }).pipe(
        Effect.provide(Layer.mergeAll(integrations.source(plan), integrations.sink(plan), Decider.inline)),
        Effect.provide(eventLog())
      )
      expect(outcome.reached).toBe(true)
      expect(outcome.state.counts).toMatchObject({ retrieved: 5, accepted: 2, duplicates: 1, quarantined: 2, removed: 5 })

      // A "restart": a new connection to the database, and the state from the log alone.
      const replayed = yield* Effect.flatMap(EventLog, (log) => log.replay(plan.id)).pipe(Effect.provide(eventLog()))
      expect(replayed).toEqual(outcome.state)
    }))
})
