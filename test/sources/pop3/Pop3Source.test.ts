/**
 * The POP3 source against a real Dovecot POP3 server on 127.0.0.1 (test/support/dovecot.ts).
 * Each test has its own account, so the tests cannot see each other's mail.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import { readFile } from "node:fs/promises"
import { Duration, Effect, Option, Redacted, Stream } from "effect"
import type { ServerMailbox } from "../../../src/domain/config.js"
import { type MailSession, MailSource, MailSourceError } from "../../../src/sources/MailSource.js"
import * as Pop3Client from "../../../src/sources/pop3/Pop3Client.js"
import * as Pop3Source from "../../../src/sources/pop3/Pop3Source.js"
import { type Dovecot, startDovecot } from "../../support/dovecot.js"
import {
  dotLinesMessage,
  eightBitNoEncoding,
  largeMessage,
  latin1Message,
  plainMessage
} from "../../support/messages.js"

const PASSWORD = "s3cret-Pa55"
const USERS = [
  "starttls", "implicit", "badpass", "untrusted", "remove", "dele-destroy", "dele-scope", "stream", "client-auth", "pipelined"
].map((name) => ({ user: `${name}@example.test`, password: PASSWORD }))
const userFor = (name: string) => `${name}@example.test`

let dovecot: Dovecot

beforeAll(async () => {
  dovecot = await startDovecot({ name: "pop3-source", users: USERS })
}, 30_000)

afterAll(async () => {
  await dovecot?.destroy()
})

const mailbox = (user: string, overrides: Partial<ServerMailbox> = {}): ServerMailbox => ({
  id: `pop3-${user}`,
  afterProcessing: "delete",
  host: dovecot.host,
  port: dovecot.pop3Port,
  tls: "starttls",
  tlsRejectUnauthorized: true,
  caFile: dovecot.caFile,
  user,
  password: Redacted.make(PASSWORD),
  folder: "INBOX",
  connectTimeoutSeconds: 5,
  commandTimeoutSeconds: 20,
  ...overrides
})

/** Opens a session on `config`, runs `use`, and closes the session (the scope) afterwards. */
const withSession = <A, E>(config: ServerMailbox, use: (session: MailSession) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(MailSource, (source) => Effect.flatMap(source.open, use))).pipe(
    Effect.provide(Pop3Source.layer(config))
  )

const openError = (config: ServerMailbox) =>
  withSession(config, () => Effect.void).pipe(
    Effect.flip,
    Effect.timeoutFail({ duration: Duration.seconds(15), onTimeout: () => new Error("open did not fail in time") })
  )

/** A plain client logged in over STLS, for the tests that drive the protocol by hand. */
const clientFor = (user: string) =>
  Effect.gen(function*() {
    const ca = yield* Effect.promise(() => readFile(dovecot.caFile))
    const client = yield* Pop3Client.connect({
      host: dovecot.host,
      port: dovecot.pop3Port,
      tls: "starttls",
      ca,
      connectTimeout: Duration.seconds(5),
      commandTimeout: Duration.seconds(20)
    })
    yield* client.login({ user, password: Redacted.make(PASSWORD) })
    return client
  })

const seeded = () => [
  plainMessage(1),
  latin1Message(2),
  eightBitNoEncoding(3),
  dotLinesMessage(4),
  Buffer.from("Subject: more dots\r\n\r\n...\r\n.\r\n..\r\n. \r\nend\r\n", "latin1"),
  largeMessage(6)
]

describe("Pop3Source against Dovecot", () => {
  it.live("STLS on the plain port: list, then fetch gives every message byte for byte", () =>
    Effect.gen(function*() {
      const user = userFor("starttls")
      const messages = seeded()
      yield* Effect.promise(() => dovecot.seed(user, messages))
      const large = messages[messages.length - 1]!
      expect(large.length).toBeGreaterThanOrEqual(10 * 1024 * 1024)

      const { listed, fetched, server, largeMillis } = yield* withSession(mailbox(user), (session) =>
        Effect.gen(function*() {
          const listed = yield* session.list
          const fetched = yield* session.fetch(listed.slice(0, -1).map((entry) => entry.ref))
          const started = performance.now()
          const [big] = yield* session.fetch([listed[listed.length - 1]!.ref])
          const largeMillis = performance.now() - started
          return { listed, fetched: [...fetched, big!], server: session.server, largeMillis }
        }))

      expect(server).toBe(`pop3://127.0.0.1:${dovecot.pop3Port}`)
      expect(listed.map((entry) => entry.size)).toEqual(messages.map((message) => message.length))
      expect(new Set(listed.map((entry) => entry.ref)).size).toBe(messages.length)
      expect(fetched.map((entry) => entry.ref)).toEqual(listed.map((entry) => entry.ref))
      fetched.forEach((entry, i) => expect(Buffer.from(entry.raw).equals(messages[i]!), `message ${i}`).toBe(true))
      const mbPerSecond = large.length / 1024 / 1024 / (largeMillis / 1000)
      console.log(`RETR of ${(large.length / 1024 / 1024).toFixed(1)} MiB over STLS: ${largeMillis.toFixed(0)} ms, ${mbPerSecond.toFixed(0)} MiB/s`)

      // Closing the scope without remove deletes nothing, and the refs are stable across sessions.
      expect(yield* Effect.promise(() => dovecot.count(user))).toBe(messages.length)
      const again = yield* withSession(mailbox(user), (session) => session.list)
      expect(again).toEqual(listed)
    }), 60_000)

  it.live("implicit TLS on the pop3s port, trusting the self-signed certificate through caFile", () =>
    Effect.gen(function*() {
      const user = userFor("implicit")
      const messages = [plainMessage(1), dotLinesMessage(2)]
      yield* Effect.promise(() => dovecot.seed(user, messages))
      const config = mailbox(user, { tls: "implicit", port: dovecot.pop3sPort })
      const { fetched, server } = yield* withSession(config, (session) =>
        Effect.gen(function*() {
          const listed = yield* session.list
          return { fetched: yield* session.fetch(listed.map((entry) => entry.ref)), server: session.server }
        }))
      expect(server).toBe(`pop3s://127.0.0.1:${dovecot.pop3sPort}`)
      expect(fetched.map((entry) => Buffer.from(entry.raw))).toEqual(messages)
    }))

  it.live("a wrong password is an auth error that does not show the password", () =>
    Effect.gen(function*() {
      const wrong = "Wr0ng-Pa55word"
      const error = yield* openError(mailbox(userFor("badpass"), { password: Redacted.make(wrong) }))
      expect(error).toBeInstanceOf(MailSourceError)
      expect((error as MailSourceError).kind).toBe("auth")
      expect((error as MailSourceError).message).toContain("AUTH PLAIN refused")
      expect(JSON.stringify(error)).not.toContain(wrong)
      expect(String(error)).not.toContain(wrong)
      expect(String(error)).not.toContain(Buffer.from(`\u0000${userFor("badpass")}\u0000${wrong}`).toString("base64"))
    }))

  it.live("USER/PASS with a wrong password is an auth error too", () =>
    Effect.gen(function*() {
      const error = yield* Effect.scoped(
        Effect.gen(function*() {
          const client = yield* Pop3Client.connect({
            host: dovecot.host,
            port: dovecot.pop3sPort,
            tls: "implicit",
            ca: yield* Effect.promise(() => readFile(dovecot.caFile)),
            connectTimeout: Duration.seconds(5),
            commandTimeout: Duration.seconds(20)
          })
          expect(client.secure).toBe(true)
          return yield* client.userPass(userFor("client-auth"), Redacted.make("nope-nope"))
        })
      ).pipe(Effect.flip)
      expect(error.kind).toBe("auth")
      expect(error.message).toContain("PASS refused")
      expect(error.message).not.toContain("nope-nope")
    }))

  it.live("an untrusted certificate (no caFile) is a tls error, on both ports", () =>
    Effect.gen(function*() {
      const user = userFor("untrusted")
      const implicit = yield* openError(mailbox(user, { tls: "implicit", port: dovecot.pop3sPort, caFile: undefined }))
      expect((implicit as MailSourceError).kind).toBe("tls")
      const starttls = yield* openError(mailbox(user, { caFile: undefined }))
      expect((starttls as MailSourceError).kind).toBe("tls")
      expect((starttls as MailSourceError).message).toMatch(/self.signed/i)
    }))

  it.live("remove deletes at QUIT: the maildir is empty and the session is over", () =>
    Effect.gen(function*() {
      const user = userFor("remove")
      const messages = [plainMessage(1), dotLinesMessage(2), plainMessage(3)]
      yield* Effect.promise(() => dovecot.seed(user, messages))
      const after = yield* withSession(mailbox(user), (session) =>
        Effect.gen(function*() {
          const listed = yield* session.list
          yield* session.remove(listed.map((entry) => entry.ref))
          // RFC 1939 §6: the removal is committed once remove succeeded, while the scope is open.
          const countAfterRemove = yield* Effect.promise(() => dovecot.count(user))
          return {
            countAfterRemove,
            list: yield* Effect.flip(session.list),
            fetch: yield* Effect.flip(session.fetch([listed[0]!.ref])),
            remove: yield* Effect.flip(session.remove([listed[0]!.ref])),
            closed: yield* Effect.flip(session.closed)
          }
        }))
      expect(after.countAfterRemove).toBe(0)
      expect([after.list.kind, after.fetch.kind, after.remove.kind, after.closed.kind]).toEqual(["closed", "closed", "closed", "closed"])
      // The next session finds nothing, and removing the same refs again is harmless.
      expect(yield* withSession(mailbox(user), (session) => session.list)).toEqual([])
    }))

  it.live("DELE then a dropped connection (no QUIT) deletes nothing", () =>
    Effect.gen(function*() {
      const user = userFor("dele-destroy")
      const messages = [plainMessage(1), plainMessage(2)]
      yield* Effect.promise(() => dovecot.seed(user, messages))
      yield* Effect.scoped(
        Effect.gen(function*() {
          const client = yield* clientFor(user)
          yield* client.dele(1)
          yield* client.dele(2)
          expect(client.pendingDeletes).toBe(2)
          yield* client.destroy
          const closed = yield* Effect.flip(client.closed)
          expect(closed.kind).toBe("closed")
          expect((yield* Effect.flip(client.noop)).kind).toBe("closed")
        })
      )
      // Dovecot notices the close asynchronously; give it a moment before looking.
      yield* Effect.sleep(Duration.millis(300))
      expect(yield* Effect.promise(() => dovecot.list(user))).toEqual(messages)
    }))

  it.live("a scope closed after DELE, before QUIT, sends no QUIT and deletes nothing", () =>
    Effect.gen(function*() {
      const user = userFor("dele-scope")
      const messages = [plainMessage(1), plainMessage(2)]
      yield* Effect.promise(() => dovecot.seed(user, messages))
      yield* Effect.scoped(Effect.flatMap(clientFor(user), (client) => client.dele(1)))
      yield* Effect.sleep(Duration.millis(300))
      expect(yield* Effect.promise(() => dovecot.list(user))).toEqual(messages)
      // And the session after it still sees both (the DELE was never committed).
      const listed = yield* withSession(mailbox(user), (session) => session.list)
      expect(listed.length).toBe(2)
    }))

  it.live("RETR as a stream gives the same bytes, and STAT/LIST/UIDL agree", () =>
    Effect.gen(function*() {
      const user = userFor("stream")
      const messages = [dotLinesMessage(1), largeMessage(2)]
      yield* Effect.promise(() => dovecot.seed(user, messages))
      yield* Effect.scoped(
        Effect.gen(function*() {
          const client = yield* clientFor(user)
          expect(client.secure).toBe(true)
          expect(client.capabilities).toContain("UIDL")
          // RFC 2595 §4: STLS is not offered again once the connection is encrypted.
          expect(client.capabilities).not.toContain("STLS")
          const stat = yield* client.stat
          expect(stat).toEqual({ count: 2, size: messages[0]!.length + messages[1]!.length })
          expect(yield* client.list).toEqual(messages.map((m, i) => ({ number: i + 1, size: m.length })))
          const uids = yield* client.uidl
          expect(Option.map(uids, (entries) => entries.map((entry) => entry.number))).toEqual(Option.some([1, 2]))
          const started = performance.now()
          const chunks = yield* Stream.runCollect(client.retrStream(2))
          const streamed = Buffer.concat([...chunks])
          const millis = performance.now() - started
          console.log(`RETR stream of ${(streamed.length / 1024 / 1024).toFixed(1)} MiB: ${millis.toFixed(0)} ms in ${chunks.length} chunks`)
          expect(streamed.equals(messages[1]!)).toBe(true)
          // The connection is still in step after the stream: the next command works.
          expect((yield* client.retr(1)).equals(messages[0]!)).toBe(true)
          yield* client.noop
          // A stream abandoned half-way must not leave the rest of the body on the wire.
          yield* Stream.runCollect(Stream.take(client.retrStream(2), 1))
          expect((yield* Effect.flip(client.noop)).kind).toBe("closed")
        })
      )
      expect(yield* Effect.promise(() => dovecot.count(user))).toBe(2)
    }), 60_000)

  it.live("a pipelined batch: RETRs in order, a refusal mid-batch read to its end, then DELEs committed by QUIT", () =>
    Effect.gen(function*() {
      const user = userFor("pipelined")
      const messages = [plainMessage(1), dotLinesMessage(2), largeMessage(3), latin1Message(4)]
      yield* Effect.promise(() => dovecot.seed(user, messages))
      yield* Effect.scoped(
        Effect.gen(function*() {
          const client = yield* clientFor(user)
          // Dovecot announces RFC 2449 PIPELINING: a batch goes out in one write.
          expect(client.pipelining).toBe(true)
          const all = yield* client.retrAll([4, 3, 2, 1].map((number) => ({ number, expectedBytes: messages[number - 1]!.length })))
          all.forEach((bytes, i) => expect(bytes.equals(messages[3 - i]!), `message ${4 - i}`).toBe(true))
          // Message 9 does not exist: the batch fails, but only after 1 and 2 were read as well.
          const refused = yield* Effect.flip(client.retrAll([{ number: 1 }, { number: 9 }, { number: 2 }]))
          expect(refused.kind).toBe("protocol")
          expect(refused.message).toContain("RETR 9 refused")
          expect((yield* client.retrAll([{ number: 2 }]))[0]!.equals(messages[1]!)).toBe(true)
          yield* client.deleAll([1, 2, 3, 4])
          expect(client.pendingDeletes).toBe(4)
          yield* client.quit
        })
      )
      expect(yield* Effect.promise(() => dovecot.count(user))).toBe(0)
    }), 60_000)

  it.live("afterProcessing moveTo is refused at open: POP3 has no folders", () =>
    Effect.gen(function*() {
      const error = yield* openError(mailbox(userFor("starttls"), { afterProcessing: { moveTo: "Archive" } }))
      expect((error as MailSourceError).kind).toBe("protocol")
      expect((error as MailSourceError).message).toContain("POP3 has no folders")
    }))
})
