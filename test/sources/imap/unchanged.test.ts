/**
 * The IMAP session's `unchanged` check (what lets an idle poll skip the listing and the whole
 * poll): false before the first listing, true while the server reports nothing new, false once
 * a message arrives (and the listing that follows finds it), against a real Dovecot.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect, Redacted } from "effect"
import type { ServerMailbox } from "../../../src/domain/config.js"
import * as ImapSource from "../../../src/sources/imap/ImapSource.js"
import { MailSource } from "../../../src/sources/MailSource.js"
import { type Dovecot, startDovecot } from "../../support/dovecot.js"
import { plainMessage } from "../../support/messages.js"

let dovecot: Dovecot
beforeAll(async () => {
  dovecot = await startDovecot({ name: "imap-unchanged", users: [{ user: "idle@example.test", password: "pw" }] })
}, 120_000)
afterAll(async () => {
  await dovecot?.destroy()
})

describe("ImapSource unchanged", () => {
  it("tells an idle poll apart from one with news", async () => {
    const mailbox = {
      id: "idle", host: "127.0.0.1", port: dovecot.imapsPort, tls: "implicit", tlsRejectUnauthorized: true,
      caFile: dovecot.caFile, user: "idle@example.test", password: Redacted.make("pw"), folder: "INBOX",
      afterProcessing: "delete", connectTimeoutSeconds: 10, commandTimeoutSeconds: 10
    } as unknown as ServerMailbox
    const steps = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const session = yield* Effect.flatMap(MailSource, (source) => source.open).pipe(Effect.provide(ImapSource.layer(mailbox)))
      const unchanged = session.unchanged!
      const beforeListing = yield* unchanged
      const first = yield* session.list
      const idle = [yield* unchanged, yield* unchanged]
      yield* Effect.promise(() => dovecot.seed("idle@example.test", [plainMessage(1)]))
      const afterDelivery = yield* unchanged
      const second = yield* session.list
      const afterListing = yield* unchanged
      yield* session.remove(second.map((item) => item.ref))
      const afterRemoval = yield* unchanged
      const third = yield* session.list
      const idleAgain = yield* unchanged
      return { beforeListing, first, idle, afterDelivery, second, afterListing, afterRemoval, third, idleAgain }
    })))
    expect(steps.beforeListing).toBe(false)
    expect(steps.first).toEqual([])
    expect(steps.idle).toEqual([true, true])
    expect(steps.afterDelivery).toBe(false)
    expect(steps.second).toHaveLength(1)
    expect(steps.second[0]!.ref).toMatch(/^\d+:\d+$/)
    // The listing itself changes nothing; our own removal (an EXPUNGE) does.
    expect(steps.afterListing).toBe(true)
    expect(steps.afterRemoval).toBe(false)
    expect(steps.third).toEqual([])
    expect(steps.idleAgain).toBe(true)
  }, 60_000)
})
