/**
 * A message that brings its mailbox down while it is being decided (in real life: the daemon
 * runs out of memory or crashes on it) must not stop the mailbox at every start forever: after
 * three runs that stopped on it, it is quarantined as processing-error without being parsed, and
 * the messages retrieved with it are taken in the meantime. Over a real Dovecot and SMTP server;
 * the crash is a Decider that dies on the poison message, each run a new MailboxActor.run.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
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
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

const POISON = "this message takes the daemon down"
const isPoison = (raw: Uint8Array) => Buffer.from(raw).includes(POISON)

/** Decides as the service does, but dies — as a crashed process stops — on the poison. */
const crashingDecider = Layer.succeed(Decider.Decider, {
  decideAll: (raws, options) =>
    raws.some(isPoison)
      ? Effect.dieMessage("simulated crash while deciding the poison message")
      : Effect.forEach(raws, (raw) => Decider.decide(raw, options)),
  warmUp: Effect.void
})

describe("a message that stops its mailbox while it is decided", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  beforeAll(async () => {
    dovecot = await startDovecot({ name: "poison" })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  it.live("is quarantined as processing-error after three such runs, and the others are accepted meanwhile", () =>
    Effect.gen(function*() {
      const seeded = [plainMessage(1), plainMessage(2, { subject: POISON, body: POISON }), plainMessage(3)]
      yield* Effect.promise(() => dovecot.seed("test@example.test", seeded))
      const dir = tempDir("poison")
      const loaded = yield* parseConfig(join(dir, "mailintake.json"), JSON.stringify({
        database: join(dir, "events.db"),
        defaults: { quarantine: smtpQuarantine(smtp) },
        configurations: [{ name: "poison", integrationType: "IMAP", mailboxes: [imapMailbox(dovecot, "poison", "test@example.test", "secret")] }]
      }))
      const plan = loaded.plan.mailboxes[0]!
      const integrations = yield* Effect.provide(Integrations.Integrations, Integrations.live)
      const runOnce = MailboxActor.run(plan, { once: true }).pipe(
        Effect.provide(Layer.mergeAll(integrations.source(plan), integrations.sink(plan), crashingDecider)),
        Effect.provide(EventLog.at(loaded.plan.database)),
        Effect.exit
      )
      const events = Effect.flatMap(EventLog, (log) => log.read({ stream: plan.id })).pipe(Effect.provide(EventLog.at(loaded.plan.database)))

      // The first run retrieves all three and stops on the batch; the next two take the other
      // messages one at a time and stop on the poison each time.
      for (let run = 1; run <= 3; run++) {
        const exit = yield* runOnce
        expect(Exit.isFailure(exit), `run ${run}`).toBe(true)
      }
      expect(smtp.received).toHaveLength(0)
      // The fourth quarantines it without deciding it, and finishes.
      const last = yield* runOnce
      expect(Exit.isSuccess(last)).toBe(true)
      const outcome = Exit.isSuccess(last) ? last.value : undefined
      expect(outcome?.state.counts).toMatchObject({ retrieved: 3, accepted: 2, quarantineRequested: 1, quarantined: 1, removed: 3 })
      expect(yield* Effect.promise(() => dovecot.count("test@example.test"))).toBe(0)
      expect(smtp.received).toHaveLength(1)

      const logged = (yield* events).map((stored) => stored.event)
      const quarantined = logged.filter((event) => event._tag === "MessageQuarantineRequested")
      expect(quarantined).toHaveLength(1)
      expect(quarantined[0]).toMatchObject({ reason: "processing-error" })
      expect((quarantined[0] as { detail: string }).detail).toMatch(/stopped 3 times while this message was being processed/)
      const accepted = logged.filter((event) => event._tag === "MessageAccepted")
      expect(accepted.map((event) => (event as { subject: string }).subject).sort()).not.toContain(POISON)
      expect(accepted).toHaveLength(2)
    }))
})
