/**
 * The IMAP session's `awaitChange` (how an idle mailbox polls: a NOOP every interval on plain
 * timers, ending when the server reports news), against a real Dovecot: it ends at once before
 * the first listing, keeps checking while nothing happens, ends when a message arrives or our
 * own removal expunges one, and stops checking when interrupted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Duration, Effect, Option, Redacted } from "effect"
import type { ServerMailbox } from "../../../src/domain/config.js"
import * as ImapSource from "../../../src/sources/imap/ImapSource.js"
import { type MailSession, MailSource } from "../../../src/sources/MailSource.js"
import { type Dovecot, startDovecot } from "../../support/dovecot.js"
import { plainMessage } from "../../support/messages.js"

let dovecot: Dovecot
beforeAll(async () => {
  dovecot = await startDovecot({ name: "imap-await-change", users: [{ user: "idle@example.test", password: "pw" }] })
}, 120_000)
afterAll(async () => {
  await dovecot?.destroy()
})

const EVERY_MILLIS = 100

/** Waits for news for at most `millis`: whether it came, and how many quiet checks it took. */
const watch = (session: MailSession, millis: number) =>
  Effect.gen(function*() {
    let quiet = 0
    const ended = yield* session.awaitChange!({ firstCheckInMillis: 0, everyMillis: EVERY_MILLIS, onQuiet: () => quiet++ }).pipe(
      Effect.timeoutOption(Duration.millis(millis))
    )
    return { changed: Option.isSome(ended), quiet }
  })

describe("ImapSource awaitChange", () => {
  it("waits through quiet checks and ends on news", async () => {
    const mailbox = {
      id: "idle", host: "127.0.0.1", port: dovecot.imapsPort, tls: "implicit", tlsRejectUnauthorized: true,
      caFile: dovecot.caFile, user: "idle@example.test", password: Redacted.make("pw"), folder: "INBOX",
      afterProcessing: "delete", connectTimeoutSeconds: 10, commandTimeoutSeconds: 10
    } as unknown as ServerMailbox
    const steps = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const session = yield* Effect.flatMap(MailSource, (source) => source.open).pipe(Effect.provide(ImapSource.layer(mailbox)))
      const beforeListing = yield* watch(session, 2_000)
      const first = yield* session.list
      const idle = yield* watch(session, 1_000)
      // Interrupted: no check runs after it (its timer is cleared).
      let lateChecks = 0
      yield* session.awaitChange!({ firstCheckInMillis: 0, everyMillis: EVERY_MILLIS, onQuiet: () => lateChecks++ }).pipe(
        Effect.timeoutOption(Duration.millis(350))
      )
      const checksWhenInterrupted = lateChecks
      yield* Effect.sleep(Duration.millis(500))
      const checksAfterwards = lateChecks
      // News arrives while it waits.
      const waiting = yield* Effect.fork(watch(session, 10_000))
      yield* Effect.sleep(Duration.millis(300))
      yield* Effect.promise(() => dovecot.seed("idle@example.test", [plainMessage(1)]))
      const afterDelivery = yield* waiting.await.pipe(Effect.flatten)
      const second = yield* session.list
      const afterListing = yield* watch(session, 500)
      yield* session.remove(second.map((item) => item.ref))
      const afterRemoval = yield* watch(session, 2_000)
      const third = yield* session.list
      const idleAgain = yield* watch(session, 500)
      return { beforeListing, first, idle, checksWhenInterrupted, checksAfterwards, afterDelivery, second, afterListing, afterRemoval, third, idleAgain }
    })))
    expect(steps.beforeListing).toEqual({ changed: true, quiet: 0 })
    expect(steps.first).toEqual([])
    expect(steps.idle.changed).toBe(false)
    expect(steps.idle.quiet).toBeGreaterThanOrEqual(3)
    expect(steps.checksWhenInterrupted).toBeGreaterThanOrEqual(1)
    expect(steps.checksAfterwards).toBe(steps.checksWhenInterrupted)
    expect(steps.afterDelivery.changed).toBe(true)
    expect(steps.afterDelivery.quiet).toBeGreaterThanOrEqual(1)
    expect(steps.second).toHaveLength(1)
    expect(steps.second[0]!.ref).toMatch(/^\d+:\d+$/)
    // The listing itself changes nothing; our own removal (an EXPUNGE) does.
    expect(steps.afterListing.changed).toBe(false)
    expect(steps.afterRemoval.changed).toBe(true)
    expect(steps.third).toEqual([])
    expect(steps.idleAgain.changed).toBe(false)
  }, 60_000)
})
