/**
 * The POP3 client and source against a scripted server (fakePop3Server.ts), for the cases a
 * real Dovecot will not produce on request. The happy paths run against Dovecot in
 * Pop3Source.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import { createHash } from "node:crypto"
import * as net from "node:net"
import { Duration, Effect, Logger, Redacted } from "effect"
import type { ServerMailbox } from "../../../src/domain/config.js"
import { type MailSession, MailSource } from "../../../src/sources/MailSource.js"
import * as Pop3Client from "../../../src/sources/pop3/Pop3Client.js"
import * as Pop3Source from "../../../src/sources/pop3/Pop3Source.js"
import { fakePop3Server, type FakeServer } from "./fakePop3Server.js"

const PASSWORD = "fake-Pa55"

const connectTo = (server: FakeServer, overrides: Partial<Pop3Client.Pop3ConnectOptions> = {}) =>
  Pop3Client.connect({
    host: "127.0.0.1",
    port: server.port,
    tls: "none",
    connectTimeout: Duration.seconds(2),
    commandTimeout: Duration.seconds(2),
    ...overrides
  })

const mailbox = (server: FakeServer, overrides: Partial<ServerMailbox> = {}): ServerMailbox => ({
  id: "fake",
  afterProcessing: "delete",
  host: "127.0.0.1",
  port: server.port,
  tls: "none",
  tlsRejectUnauthorized: true,
  user: "someone",
  password: Redacted.make(PASSWORD),
  folder: "INBOX",
  connectTimeoutSeconds: 2,
  commandTimeoutSeconds: 2,
  ...overrides
})

const withSession = <A, E>(config: ServerMailbox, use: (session: MailSession) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(MailSource, (source) => Effect.flatMap(source.open, use))).pipe(
    Effect.provide(Pop3Source.layer(config))
  )

const message = (i: number) => Buffer.from(`Subject: ${i}\r\n\r\n.line ${i}\r\n\u00e9\r\n`, "latin1")
const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`

describe("Pop3Client against a scripted server", () => {
  it.scopedLive("tls starttls: a server without STLS is refused before any credential is sent", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ capabilities: ["USER", "UIDL", "SASL PLAIN"], password: PASSWORD })
      const error = yield* Effect.flip(withSession(mailbox(server, { tls: "starttls" }), () => Effect.void))
      expect(error.kind).toBe("tls")
      expect(error.message).toContain("does not offer STLS")
      // Only a polite QUIT follows: no USER, PASS or AUTH in clear.
      expect(server.received).toEqual(["CAPA", "QUIT"])
    }))

  it.scopedLive("bytes sent after +OK to STLS, before the handshake, are refused (no STARTTLS injection)", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        capabilities: ["STLS"],
        override: (line, connection) => {
          if (line !== "STLS") return false
          connection.write("+OK begin TLS\r\n+OK injected\r\n")
          return true
        }
      })
      const error = yield* Effect.flip(connectTo(server, { tls: "starttls" }))
      expect(error.kind).toBe("tls")
      expect(error.message).toContain("before the TLS handshake")
    }))

  it.scopedLive("prefers AUTH PLAIN when CAPA lists SASL PLAIN, USER/PASS otherwise", () =>
    Effect.gen(function*() {
      const plain = yield* fakePop3Server({ capabilities: ["USER", "SASL LOGIN PLAIN"], password: PASSWORD })
      const client = yield* connectTo(plain)
      yield* client.login({ user: "someone", password: Redacted.make(PASSWORD) })
      expect(client.state).toBe("transaction")
      const expected = Buffer.from(`\u0000someone\u0000${PASSWORD}`).toString("base64")
      expect(plain.received).toEqual(["CAPA", `AUTH PLAIN ${expected}`])

      const userPass = yield* fakePop3Server({ capabilities: ["USER"], password: PASSWORD })
      const other = yield* connectTo(userPass)
      yield* other.login({ user: "someone", password: Redacted.make(PASSWORD) })
      expect(userPass.received).toEqual(["CAPA", "USER someone", `PASS ${PASSWORD}`])
    }))

  it.scopedLive("a server without CAPA gets USER/PASS", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ password: PASSWORD })
      const client = yield* connectTo(server)
      expect(client.capabilities).toEqual([])
      yield* client.login({ user: "someone", password: Redacted.make(PASSWORD) })
      expect(server.received.slice(1)).toEqual(["USER someone", `PASS ${PASSWORD}`])
    }))

  it.scopedLive("AUTH PLAIN too long for one line goes on a continuation (RFC 5034, RFC 2449 §4)", () =>
    Effect.gen(function*() {
      const long = "p".repeat(300)
      const server = yield* fakePop3Server({ capabilities: ["SASL PLAIN"], password: long })
      const client = yield* connectTo(server)
      yield* client.login({ user: "someone", password: Redacted.make(long) })
      expect(server.received[1]).toBe("AUTH PLAIN")
      expect(Buffer.from(server.received[2]!, "base64").toString()).toBe(`\u0000someone\u0000${long}`)
    }))

  it.scopedLive("AUTH XOAUTH2 sends user and bearer token, on a continuation when the token is long", () =>
    Effect.gen(function*() {
      const sent: Array<string> = []
      const server = yield* fakePop3Server({
        capabilities: ["SASL XOAUTH2"],
        override: (line, connection) => {
          if (line === "CAPA" || line === "QUIT") return false
          if (line === "AUTH XOAUTH2") {
            connection.write("+ \r\n")
            return true
          }
          const response = line.startsWith("AUTH XOAUTH2 ") ? line.slice(13) : line
          sent.push(Buffer.from(response, "base64").toString("utf8"))
          connection.write("+OK welcome\r\n")
          return true
        }
      })
      const short = yield* connectTo(server)
      yield* short.login({ user: "a@example.test", accessToken: Redacted.make("tok") })
      const token = "t".repeat(400)
      const long = yield* connectTo(server)
      yield* long.authXoauth2("a@example.test", Redacted.make(token))
      expect(sent).toEqual([
        "user=a@example.test\u0001auth=Bearer tok\u0001\u0001",
        `user=a@example.test\u0001auth=Bearer ${token}\u0001\u0001`
      ])
      expect(server.received.filter((line) => line.startsWith("AUTH"))).toEqual([
        `AUTH XOAUTH2 ${Buffer.from("user=a@example.test\u0001auth=Bearer tok\u0001\u0001").toString("base64")}`,
        "AUTH XOAUTH2"
      ])
    }))

  it.scopedLive("a refused XOAUTH2 token: the error challenge is answered with an empty line, then auth error", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        capabilities: ["SASL XOAUTH2"],
        override: (line, connection) => {
          if (line.startsWith("AUTH XOAUTH2 ")) connection.write(`+ ${Buffer.from("{\"status\":\"401\"}").toString("base64")}\r\n`)
          else if (line === "") connection.write("-ERR [AUTH] invalid credentials\r\n")
          else return false
          return true
        }
      })
      const client = yield* connectTo(server)
      const error = yield* Effect.flip(client.login({ user: "a@example.test", accessToken: Redacted.make("secret-token") }))
      expect(error.kind).toBe("auth")
      expect(error.message).not.toContain("secret-token")
      expect(server.received.at(-1)).toBe("")
    }))

  it.scopedLive("RFC 3206: [IN-USE] on login is not a credentials problem", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        capabilities: ["USER"],
        override: (line, connection) => {
          if (!line.startsWith("PASS ")) return false
          connection.write("-ERR [IN-USE] maildrop locked by another session\r\n")
          return true
        }
      })
      const error = yield* Effect.flip(withSession(mailbox(server), () => Effect.void))
      expect(error.kind).toBe("connect")
      expect(error.message).toContain("[IN-USE]")
      expect(error.message).not.toContain(PASSWORD)
    }))

  it.scopedLive("a greeting -ERR, a refused connection and a silent TLS port", () =>
    Effect.gen(function*() {
      const busy = yield* fakePop3Server({ greeting: "-ERR too many connections" })
      expect((yield* Effect.flip(connectTo(busy))).kind).toBe("connect")

      const closedPort = yield* Effect.async<number>((resume) => {
        const probe = net.createServer().listen(0, "127.0.0.1", () => {
          const { port } = probe.address() as net.AddressInfo
          probe.close(() => resume(Effect.succeed(port)))
        })
      })
      const refused = yield* Effect.flip(connectTo({ port: closedPort, received: [], expunged: [] }))
      expect(refused.kind).toBe("connect")

      // Accepts TCP but never speaks TLS: the connect timeout covers the handshake.
      const silent = yield* fakePop3Server({ greeting: null })
      const started = Date.now()
      const timedOut = yield* Effect.flip(
        connectTo(silent, { tls: "implicit", connectTimeout: Duration.millis(300), ca: "unused" })
      )
      expect(timedOut.kind).toBe("timeout")
      expect(Date.now() - started).toBeLessThan(2_000)
    }))

  it.scopedLive("a server that stops answering: timeout, then the connection is abandoned", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: [message(1)],
        // Half a body, then silence.
        override: (line, connection) => {
          if (line !== "RETR 1") return false
          connection.write("+OK\r\nSubject: 1\r\n")
          return true
        }
      })
      const client = yield* connectTo(server, { commandTimeout: Duration.millis(300) })
      yield* client.login({ user: "someone", password: Redacted.make(PASSWORD) })
      const error = yield* Effect.flip(client.retr(1))
      expect(error.kind).toBe("timeout")
      // The rest of that body could arrive any time: no further command on this connection.
      expect((yield* Effect.flip(client.noop)).kind).toBe("closed")
      expect((yield* Effect.flip(client.closed)).kind).toBe("closed")
    }))

  it.scopedLive("a large RETR arrives byte for byte on a shared buffer, whatever size the server announced", () =>
    Effect.gen(function*() {
      // 3 MiB of lines, a third of them starting with a dot (stuffed on the wire), 8-bit bytes too.
      const lines: Array<string> = []
      for (let i = 0; lines.length * 80 < 3 * 1024 * 1024; i++) lines.push(`${i % 3 === 0 ? "." : ""}line ${i} \u00e9${"x".repeat(60)}`)
      const large = Buffer.from(`Subject: large\r\n\r\n${lines.join("\r\n")}\r\n`, "latin1")
      const server = yield* fakePop3Server({ password: PASSWORD, messages: [large, message(2)] })
      const client = yield* connectTo(server)
      yield* client.login({ user: "someone", password: Redacted.make(PASSWORD) })
      for (const hint of [undefined, 100, large.length, 10 * large.length]) {
        const raw = yield* client.retr(1, hint)
        expect(raw.equals(large), `hint ${hint}`).toBe(true)
        // Shared: the parser worker reads it without a copy.
        expect(raw.buffer instanceof SharedArrayBuffer, `hint ${hint}`).toBe(true)
      }
      // A small one is not worth a shared buffer.
      expect((yield* client.retr(2, 100)).equals(message(2))).toBe(true)
    }))

  it.scopedLive("a refused RETR fails that message only: the connection stays in step", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ password: PASSWORD, messages: [message(1)] })
      const client = yield* connectTo(server)
      yield* client.login({ user: "someone", password: Redacted.make(PASSWORD) })
      const error = yield* Effect.flip(client.retr(7))
      expect(error.kind).toBe("protocol")
      expect(error.message).toContain("RETR 7 refused")
      expect((yield* client.retr(1)).equals(message(1))).toBe(true)
    }))

  it.scopedLive("an interrupted command abandons the connection and sends no QUIT", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: [message(1)],
        override: (line) => line === "RETR 1" // never answered
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* connectTo(server)
        yield* client.login({ user: "someone", password: Redacted.make(PASSWORD) })
        yield* client.dele(1)
        yield* client.rset
        yield* client.retr(1).pipe(Effect.timeout(Duration.millis(100)), Effect.ignore)
        expect(client.state).toBe("closed")
      }))
      expect(server.received).not.toContain("QUIT")
    }))
})

describe("Pop3Client batches (RFC 2449 PIPELINING)", () => {
  /** The most commands of `verb` the server found in one burst of received bytes. */
  const burstCounter = (verb: string) => {
    const seen = { burst: 0, most: 0 }
    const override = (line: string) => {
      if (line.startsWith(`${verb} `)) {
        if (seen.burst === 0) queueMicrotask(() => (seen.burst = 0))
        seen.burst += 1
        seen.most = Math.max(seen.most, seen.burst)
      }
      return false
    }
    return { seen, override }
  }

  const batchOn = (capabilities: ReadonlyArray<string> | undefined) =>
    Effect.gen(function*() {
      const retr = burstCounter("RETR")
      const dele = burstCounter("DELE")
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: [message(1), message(2), message(3)],
        ...(capabilities === undefined ? {} : { capabilities }),
        override: (line) => retr.override(line) || dele.override(line)
      })
      const client = yield* connectTo(server)
      yield* client.userPass("someone", Redacted.make(PASSWORD))
      const fetched = yield* client.retrAll([{ number: 3 }, { number: 1 }, { number: 2 }])
      yield* client.deleAll([1, 2, 3])
      yield* client.quit
      return { fetched, pipelining: client.pipelining, server, retrBurst: retr.seen.most, deleBurst: dele.seen.most }
    })

  it.scopedLive("with PIPELINING announced, a batch is sent in one write and its answers read in order", () =>
    Effect.gen(function*() {
      const { deleBurst, fetched, pipelining, retrBurst, server } = yield* batchOn(["USER", "UIDL", "PIPELINING"])
      expect(pipelining).toBe(true)
      expect(fetched).toEqual([message(3), message(1), message(2)])
      expect(retrBurst).toBe(3)
      expect(deleBurst).toBe(3)
      expect(server.expunged).toEqual([1, 2, 3])
    }))

  it.scopedLive("without PIPELINING (or without CAPA), each command waits for the previous answer", () =>
    Effect.gen(function*() {
      for (const capabilities of [["USER", "UIDL"], undefined]) {
        const { deleBurst, fetched, pipelining, retrBurst, server } = yield* batchOn(capabilities)
        expect(pipelining).toBe(false)
        expect(fetched).toEqual([message(3), message(1), message(2)])
        expect(retrBurst).toBe(1)
        expect(deleBurst).toBe(1)
        expect(server.expunged).toEqual([1, 2, 3])
      }
    }))

  it.scopedLive("a long batch goes out 100 commands at a time, each window after the previous one's answers", () =>
    Effect.gen(function*() {
      const dele = burstCounter("DELE")
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: Array.from({ length: 250 }, (_, i) => message(i + 1)),
        capabilities: ["USER", "PIPELINING"],
        override: dele.override
      })
      const client = yield* connectTo(server)
      yield* client.userPass("someone", Redacted.make(PASSWORD))
      yield* client.deleAll(Array.from({ length: 250 }, (_, i) => i + 1))
      expect(client.pendingDeletes).toBe(250)
      expect(dele.seen.most).toBe(100)
      yield* client.quit
      expect(server.expunged).toHaveLength(250)
    }))

  it.scopedLive("a refused DELE in a pipelined batch fails it after every answer: nothing is counted as pending twice", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ password: PASSWORD, messages: [message(1), message(2)], capabilities: ["USER", "PIPELINING"] })
      const client = yield* connectTo(server)
      yield* client.userPass("someone", Redacted.make(PASSWORD))
      const error = yield* Effect.flip(client.deleAll([1, 7, 2]))
      expect(error.message).toContain("DELE 7 refused")
      // Both real DELEs were answered +OK; the connection is still in step.
      expect(client.pendingDeletes).toBe(2)
      yield* client.noop
    }))
})

describe("Pop3Source against a scripted server", () => {
  it.scopedLive("without UIDL: refs are sha256 of the bytes, with one warning per session", () =>
    Effect.gen(function*() {
      const messages = [message(1), message(2), message(1)]
      const server = yield* fakePop3Server({ uidl: false, password: PASSWORD, messages })
      const warnings: Array<unknown> = []
      const logger = Logger.make(({ logLevel, message: logged }) => {
        if (logLevel._tag === "Warning") warnings.push(logged)
      })
      const { listed, again, fetched } = yield* withSession(mailbox(server), (session) =>
        Effect.gen(function*() {
          const listed = yield* session.list
          const again = yield* session.list
          const fetched = yield* session.fetch(listed.map((entry) => entry.ref))
          yield* session.remove([listed[0]!.ref])
          return { listed, again, fetched }
        })).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      // Byte-identical copies share one ref; removing it removes every copy.
      expect(listed).toEqual([
        { ref: sha256(message(1)), size: message(1).length },
        { ref: sha256(message(2)), size: message(2).length }
      ])
      expect(again).toEqual(listed)
      expect(fetched.map((entry) => Buffer.from(entry.raw))).toEqual([message(1), message(2)])
      expect(warnings.length).toBe(1)
      expect(String(warnings[0])).toContain("no UIDL")
      expect(server.expunged).toEqual([1, 3])
    }))

  it.scopedLive("fetch and remove without a list first (recovery after a restart) map refs through UIDL", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ password: PASSWORD, messages: [message(1), message(2), message(3)] })
      const fetched = yield* withSession(mailbox(server), (session) => session.fetch(["uid-3", "uid-gone", "uid-1"]))
      expect(fetched).toEqual([{ ref: "uid-3", raw: message(3) }, { ref: "uid-1", raw: message(1) }])
      yield* withSession(mailbox(server), (session) => session.remove(["uid-2", "uid-gone"]))
      expect(server.expunged).toEqual([2])
    }))

  it.scopedLive("remove fails, and nothing is committed, when the line drops before QUIT's +OK", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: [message(1)],
        override: (line, connection) => {
          if (line !== "QUIT") return false
          connection.socket.destroy()
          return true
        }
      })
      const error = yield* Effect.flip(withSession(mailbox(server), (session) => session.remove(["uid-1"])))
      expect(error.kind).toBe("closed")
      expect(server.expunged).toEqual([])
    }))

  it.scopedLive("a DELE refused in remove: the connection is dropped without QUIT", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: [message(1), message(2)],
        override: (line, connection) => {
          if (line !== "DELE 2") return false
          connection.write("-ERR cannot delete\r\n")
          return true
        }
      })
      const error = yield* Effect.flip(withSession(mailbox(server), (session) => session.remove(["uid-1", "uid-2"])))
      expect(error.kind).toBe("protocol")
      expect(server.received).toContain("DELE 1")
      expect(server.received).not.toContain("QUIT")
      expect(server.expunged).toEqual([])
    }))

  it.scopedLive("a session closed without remove ends with QUIT (nothing pending)", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ password: PASSWORD, messages: [message(1)] })
      yield* withSession(mailbox(server), (session) => session.list)
      yield* Effect.sleep(Duration.millis(50))
      expect(server.received.at(-1)).toBe("QUIT")
      expect(server.expunged).toEqual([])
    }))

  it.scopedLive("a connection the server closed: list fails with kind closed, and so does closed", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({
        password: PASSWORD,
        messages: [message(1)],
        override: (line, connection) => {
          if (line !== "UIDL") return false
          connection.socket.end("+OK\r\n1 uid-1\r\n.\r\n")
          return true
        }
      })
      const { first, second, closed } = yield* withSession(mailbox(server), (session) =>
        Effect.gen(function*() {
          const first = yield* session.list
          const closed = yield* Effect.flip(session.closed)
          const second = yield* Effect.flip(session.list)
          return { first, second, closed }
        }))
      expect(first).toEqual([{ ref: "uid-1", size: message(1).length }])
      expect(closed.kind).toBe("closed")
      expect(second.kind).toBe("closed")
    }))

  it.scopedLive("a caFile that cannot be read is a tls error", () =>
    Effect.gen(function*() {
      const server = yield* fakePop3Server({ password: PASSWORD })
      const error = yield* Effect.flip(
        withSession(mailbox(server, { tls: "implicit", caFile: "/nonexistent/ca.pem" }), () => Effect.void)
      )
      expect(error.kind).toBe("tls")
      expect(error.message).toContain("/nonexistent/ca.pem")
    }))
})

describe("Pop3Source.defaultPort", () => {
  it("995 for implicit TLS (RFC 8314), 110 otherwise", () => {
    expect(Pop3Source.defaultPort("implicit")).toBe(995)
    expect(Pop3Source.defaultPort("starttls")).toBe(110)
    expect(Pop3Source.defaultPort("none")).toBe(110)
  })
})
