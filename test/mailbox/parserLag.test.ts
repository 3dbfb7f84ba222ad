/**
 * The parser may fall a batch behind the fetch (MailboxActor `takeDecided`): the decisions of
 * two batches then go into one append. Over a real Dovecot, with a parser that takes its time on
 * the first batch only: every message is still decided once and in order, and a message in the
 * second batch that repeats one of the first is a duplicate, although both were parsed before
 * either was recorded.
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
import { type Dovecot, startDovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

/** The inline decider, but its first request (the first batch) answers only after `delayMillis`. */
const slowFirstBatch = (delayMillis: number): Layer.Layer<Decider.Decider> =>
  Layer.effect(
    Decider.Decider,
    Effect.gen(function*() {
      const inline = yield* Decider.Decider
      let requests = 0
      return {
        warmUp: inline.warmUp,
        decideAll: (raws, options) =>
          Effect.suspend(() => {
            const first = requests++ === 0
            return first ? Effect.delay(inline.decideAll(raws, options), delayMillis) : inline.decideAll(raws, options)
          })
      }
    })
  ).pipe(Layer.provide(Decider.inline))

describe("a parser that lags behind the fetch", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  beforeAll(async () => {
    dovecot = await startDovecot({ name: "parser-lag" })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  it.live("records two batches' decisions together, duplicates across them included", () =>
    Effect.gen(function*() {
      // 350 messages: batches of 100 (MailboxActor BATCH_MESSAGES). Positions 100–149 (the
      // second batch) repeat messages 50–99 (the first).
      const messages = Array.from({ length: 350 }, (_, i) => plainMessage(i >= 100 && i < 150 ? i - 50 : i))
      yield* Effect.promise(() => dovecot.seed("test@example.test", messages))
      const dir = tempDir("parser-lag")
      const loaded = yield* parseConfig(join(dir, "mailintake.json"), JSON.stringify({
        database: join(dir, "events.db"),
        defaults: { quarantine: smtpQuarantine(smtp) },
        configurations: [{ name: "lag", integrationType: "IMAP", mailboxes: [imapMailbox(dovecot, "lag", "test@example.test", "secret")] }]
      }))
      const plan = loaded.plan.mailboxes[0]!
      const eventLog = () => EventLog.at(loaded.plan.database)
      const integrations = yield* Effect.provide(Integrations.Integrations, Integrations.live)

      const outcome = yield* MailboxActor.run(plan, { once: true }).pipe(
        Effect.provide(Layer.mergeAll(integrations.source(plan), integrations.sink(plan), slowFirstBatch(500))),
        Effect.provide(eventLog())
      )
      expect(outcome.reached).toBe(true)
      expect(outcome.state.counts).toMatchObject({ retrieved: 350, accepted: 300, duplicates: 50, quarantined: 0, removed: 350 })
      expect(yield* Effect.promise(() => dovecot.count("test@example.test"))).toBe(0)

      const events = yield* Effect.flatMap(EventLog, (log) => log.read({ stream: plan.id })).pipe(Effect.provide(eventLog()))
      // Each message: retrieved, then decided once, then removed, in that order in the log.
      const steps = new Map<string, Array<string>>()
      for (const { event } of events) {
        if (!("ref" in event)) continue
        steps.set(event.ref, [...(steps.get(event.ref) ?? []), event._tag])
      }
      expect(steps.size).toBe(350)
      for (const sequence of steps.values()) {
        expect(sequence[0]).toBe("MessageRetrieved")
        expect(["MessageAccepted", "MessageDuplicateSkipped"]).toContain(sequence[1])
        expect(sequence.slice(2)).toEqual(["MessageRemoved"])
      }
      // The first batch's decisions, held back by the slow parse, were committed with the
      // second's, in the append of the third batch's MessageRetrieved (old: with the second's
      // MessageRetrieved, before it).
      const refsInOrder = [...steps.keys()]
      const at = (ref: string, tags: ReadonlyArray<string>) => events.find(({ event }) => tags.includes(event._tag) && "ref" in event && event.ref === ref)!.position
      const decided = (ref: string) => at(ref, ["MessageAccepted", "MessageDuplicateSkipped"])
      expect(decided(refsInOrder[0]!)).toBeGreaterThan(at(refsInOrder[199]!, ["MessageRetrieved"]))
      expect(decided(refsInOrder[100]!)).toBeLessThan(at(refsInOrder[200]!, ["MessageRetrieved"]))

      // And the state replayed from the log alone is the one the actor held.
      const replayed = yield* Effect.flatMap(EventLog, (log) => log.replay(plan.id)).pipe(Effect.provide(eventLog()))
      expect(replayed).toEqual(outcome.state)
    }))
})
