/**
 * The IMAP source's listing and FETCH against Dovecot. The listing: searches, sizes only of large
 * messages. The FETCH: one FETCH of at most one piece of each message, the
 * rest of a large message in partial FETCHes (RFC 3501 §6.4.5) into one shared buffer. Sizes
 * around the piece size (2 MiB) cover a message that ends exactly at a piece boundary.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import { readFile } from "node:fs/promises"
import { Effect, Logger, Redacted } from "effect"
import { ImapFlow } from "imapflow"
import type { ServerMailbox } from "../../../src/domain/config.js"
import { type MailSession, MailSource } from "../../../src/sources/MailSource.js"
import * as ImapSource from "../../../src/sources/imap/ImapSource.js"
import { type Dovecot, startDovecot } from "../../support/dovecot.js"
import { startFaultProxy } from "../../support/faultProxy.js"
import { largeMessage, plainMessage } from "../../support/messages.js"

const PASSWORD = "imap-Pa55"
const USER = "fetch@example.test"
const LISTER = "list@example.test"
const BACKLOG = "backlog@example.test"
const BACKLOG_TLS = "backlog-tls@example.test"
const REMOVER = "remove@example.test"
/** Not a quoted string (RFC 3501 §9): the backlog connection does not log in with it. */
const UNQUOTABLE = "unquotable@example.test"
const UNQUOTABLE_PASSWORD = "pa\u00dfwort-\u00e9"
const PIECE = 2 * 1024 * 1024

let dovecot: Dovecot

beforeAll(async () => {
  dovecot = await startDovecot({ name: "imap-source", users: [
    { user: USER, password: PASSWORD },
    { user: LISTER, password: PASSWORD },
    { user: BACKLOG, password: PASSWORD },
    { user: BACKLOG_TLS, password: PASSWORD },
    { user: REMOVER, password: PASSWORD },
    { user: UNQUOTABLE, password: UNQUOTABLE_PASSWORD }
  ] })
}, 30_000)

afterAll(async () => {
  await dovecot?.destroy()
})

const mailbox = (user = USER): ServerMailbox => ({
  id: "imap-fetch",
  afterProcessing: "delete",
  host: dovecot.host,
  port: dovecot.imapPort,
  tls: "none",
  tlsRejectUnauthorized: true,
  user,
  password: Redacted.make(PASSWORD),
  folder: "INBOX",
  connectTimeoutSeconds: 5,
  commandTimeoutSeconds: 60
})

const withSession = <A, E>(use: (session: MailSession) => Effect.Effect<A, E>, user = USER) =>
  Effect.scoped(Effect.flatMap(MailSource, (source) => Effect.flatMap(source.open, use))).pipe(
    Effect.provide(ImapSource.layer(mailbox(user)))
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

  it.live("lists in UID order: another client's \\Deleted flag, exact sizes of large messages, a bound for small ones", () =>
    Effect.gen(function*() {
      const small = 256 * 1024
      const messages = [plainMessage(1), exactly(2, small), exactly(3, small + 1), plainMessage(4), largeMessage(5, 3 * 1024 * 1024)]
      yield* Effect.promise(() => dovecot.seed(LISTER, messages))
      // Another client flags message 4 \Deleted (without expunging it).
      yield* Effect.promise(async () => {
        const other = new ImapFlow({ host: dovecot.host, port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user: LISTER, pass: PASSWORD }, logger: false })
        await other.connect()
        await other.mailboxOpen("INBOX")
        await other.messageFlagsAdd("4", ["\\Deleted"])
        await other.logout()
      })
      const listed = yield* withSession((session) => session.list, LISTER)
      const uids = listed.map((entry) => Number(entry.ref.split(":")[1]))
      expect(uids).toEqual([...uids].sort((a, b) => a - b))
      expect(listed).toHaveLength(5)
      expect(listed.map((entry) => entry.flaggedDeleted)).toEqual([false, false, false, true, false])
      // Over the bound: the server's size; at or under it: the bound, never less than the message.
      expect(listed[2]!.size).toBe(small + 1)
      expect(listed[4]!.size).toBe(messages[4]!.length)
      for (const i of [0, 1, 3]) expect(listed[i]!.size).toBe(small)
      listed.forEach((entry, i) => expect(entry.size!, `message ${i + 1}`).toBeGreaterThanOrEqual(messages[i]!.length))
    }), 60_000)

  it.live("removing 300 messages costs the session a few responses, not one per message", () =>
    Effect.gen(function*() {
      // With CONDSTORE enabled, a server answers even `STORE +FLAGS.SILENT` with a FETCH (UID
      // MODSEQ) per message (RFC 7162 §3.1.3): thousands of responses for imapflow to parse.
      yield* Effect.promise(() => dovecot.seed(REMOVER, Array.from({ length: 300 }, (_, i) => plainMessage(i + 1))))
      const proxy = yield* Effect.acquireRelease(
        Effect.promise(() => startFaultProxy({ host: dovecot.host, port: dovecot.imapPort })),
        (proxy) => Effect.promise(() => proxy.close())
      )
      // Counted on the whole answer: a response line may be cut between two reads.
      const answer: Array<Buffer> = []
      yield* Effect.scoped(Effect.flatMap(MailSource, (source) =>
        Effect.flatMap(source.open, (session) =>
          Effect.gen(function*() {
            const listed = yield* session.list
            expect(listed).toHaveLength(300)
            proxy.watchServer((bytes) => answer.push(bytes))
            yield* session.remove(listed.map((entry) => entry.ref))
            proxy.watchServer(undefined)
          })
        ))).pipe(Effect.provide(ImapSource.layer({ ...mailbox(REMOVER), port: proxy.port })))
      const fetchResponses = Buffer.concat(answer).toString("latin1").match(/^\* \d+ FETCH /gm)?.length ?? 0
      expect(fetchResponses).toBe(0)
      expect(yield* Effect.promise(() => dovecot.count(REMOVER))).toBe(0)
    }).pipe(Effect.scoped), 60_000)

  /** Logins of `user` in Dovecot's log so far. */
  const logins = (user: string) =>
    Effect.promise(async () => (await readFile(dovecot.logFile, "utf8")).split("\n").filter((line) => line.includes(`Login: user=<${user}>`)).length)

  /** A backlog (600 small messages, over the 500 that make one): listed, then fetched in batches of 100. */
  const drainBacklog = (user: string, overrides: Partial<ServerMailbox>) =>
    Effect.gen(function*() {
      const messages = Array.from({ length: 600 }, (_, i) => plainMessage(i + 1))
      yield* Effect.promise(() => dovecot.seed(user, messages))
      const before = yield* logins(user)
      const warnings: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(message))
      })
      const fetched = yield* Effect.scoped(Effect.flatMap(MailSource, (source) =>
        Effect.flatMap(source.open, (session) =>
          Effect.gen(function*() {
            const listed = yield* session.list
            const all = []
            for (let i = 0; i < listed.length; i += 100) all.push(...yield* session.fetch(listed.slice(i, i + 100).map((entry) => entry.ref)))
            return all
          })))).pipe(
        Effect.provide(ImapSource.layer({ ...mailbox(user), ...overrides })),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      expect(fetched).toHaveLength(messages.length)
      fetched.forEach((entry, i) => expect(Buffer.from(entry.raw).equals(messages[i]!), `message ${i + 1}`).toBe(true))
      const loggedIn = (yield* logins(user)) - before
      // Read-only and BODY.PEEK: nothing left the folder, nothing was marked \Seen.
      expect(yield* Effect.promise(() => dovecot.count(user))).toBe(messages.length)
      const seen = yield* Effect.promise(async () => {
        const password = overrides.password === undefined ? PASSWORD : Redacted.value(overrides.password)
        const other = new ImapFlow({ host: dovecot.host, port: dovecot.imapPort, secure: false, doSTARTTLS: false, auth: { user, pass: password }, logger: false })
        await other.connect()
        await other.mailboxOpen("INBOX", { readOnly: true })
        const uids = await other.search({ seen: true }, { uid: true })
        await other.logout()
        return uids
      })
      expect(seen).toEqual([])
      return { logins: loggedIn, warnings }
    })

  it.live("a backlog is fetched on a read-only connection of its own, over STARTTLS, byte for byte", () =>
    Effect.gen(function*() {
      const { logins, warnings } = yield* drainBacklog(BACKLOG, { tls: "starttls", caFile: dovecot.caFile })
      // The session's login and the backlog connection's.
      expect(logins).toBe(2)
      expect(warnings).toEqual([])
    }), 60_000)

  it.live("and over implicit TLS", () =>
    Effect.gen(function*() {
      const { logins, warnings } = yield* drainBacklog(BACKLOG_TLS, { tls: "implicit", port: dovecot.imapsPort, caFile: dovecot.caFile })
      expect(logins).toBe(2)
      expect(warnings).toEqual([])
    }), 60_000)

  it.live("when the backlog connection cannot be used (a password it cannot quote), the session fetches everything", () =>
    Effect.gen(function*() {
      const { logins, warnings } = yield* drainBacklog(UNQUOTABLE, { password: Redacted.make(UNQUOTABLE_PASSWORD) })
      expect(logins).toBe(1)
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain("would need a literal")
      // The password never appears in what is logged.
      expect(warnings[0]).not.toContain(UNQUOTABLE_PASSWORD)
    }), 60_000)
})
