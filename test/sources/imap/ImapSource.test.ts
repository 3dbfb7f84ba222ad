/**
 * The IMAP source's FETCH against Dovecot: one FETCH of at most one piece of each message, the
 * rest of a large message in partial FETCHes (RFC 3501 §6.4.5) into one shared buffer. Sizes
 * around the piece size (2 MiB) cover a message that ends exactly at a piece boundary.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import { Effect, Redacted } from "effect"
import type { ServerMailbox } from "../../../src/domain/config.js"
import { type MailSession, MailSource } from "../../../src/sources/MailSource.js"
import * as ImapSource from "../../../src/sources/imap/ImapSource.js"
import { type Dovecot, startDovecot } from "../../support/dovecot.js"
import { largeMessage, plainMessage } from "../../support/messages.js"

const PASSWORD = "imap-Pa55"
const USER = "fetch@example.test"
const PIECE = 2 * 1024 * 1024

let dovecot: Dovecot

beforeAll(async () => {
  dovecot = await startDovecot({ name: "imap-source", users: [{ user: USER, password: PASSWORD }] })
}, 30_000)

afterAll(async () => {
  await dovecot?.destroy()
})

const mailbox = (): ServerMailbox => ({
  id: "imap-fetch",
  afterProcessing: "delete",
  host: dovecot.host,
  port: dovecot.imapPort,
  tls: "none",
  tlsRejectUnauthorized: true,
  user: USER,
  password: Redacted.make(PASSWORD),
  folder: "INBOX",
  connectTimeoutSeconds: 5,
  commandTimeoutSeconds: 60
})

const withSession = <A, E>(use: (session: MailSession) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(MailSource, (source) => Effect.flatMap(source.open, use))).pipe(
    Effect.provide(ImapSource.layer(mailbox()))
  )

/** A message of exactly `bytes` bytes: `plainMessage`'s headers, then lines of filler. */
const exactly = (i: number, bytes: number): Buffer => {
  const head = plainMessage(i)
  const filler = Buffer.alloc(bytes - head.length, "a")
  for (let at = 76; at + 1 < filler.length; at += 78) filler.write("\r\n", at, "latin1")
  filler.write("\r\n", filler.length - 2, "latin1")
  return Buffer.concat([head, filler])
}

describe("ImapSource fetch against Dovecot", () => {
  it.live("gives every message byte for byte, small and large, ending inside and at a piece boundary", () =>
    Effect.gen(function*() {
      const messages = [
        plainMessage(1),
        exactly(2, PIECE - 1),
        exactly(3, PIECE),
        exactly(4, PIECE + 1),
        exactly(5, 2 * PIECE),
        largeMessage(6, 9 * 1024 * 1024),
        plainMessage(7)
      ]
      yield* Effect.promise(() => dovecot.seed(USER, messages))
      const fetched = yield* withSession((session) =>
        Effect.flatMap(session.list, (listed) => session.fetch(listed.map((entry) => entry.ref)))
      )
      expect(fetched).toHaveLength(messages.length)
      fetched.forEach((entry, i) => {
        expect(entry.raw.byteLength, `message ${i}`).toBe(messages[i]!.length)
        expect(Buffer.from(entry.raw).equals(messages[i]!), `message ${i}`).toBe(true)
        // A message over one piece is assembled on a SharedArrayBuffer (the parser worker shares it).
        expect(entry.raw.buffer instanceof SharedArrayBuffer, `message ${i}`).toBe(messages[i]!.length >= PIECE)
      })
    }), 120_000)
})
