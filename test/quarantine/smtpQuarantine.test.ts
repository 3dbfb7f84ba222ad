import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Redacted } from "effect"
import { simpleParser } from "mailparser"
import type { SmtpQuarantineTarget } from "../../src/domain/plan.js"
import * as SmtpQuarantine from "../../src/quarantine/smtp/SmtpQuarantine.js"
import { QuarantineSink, QuarantineSinkError, type QuarantineNotice } from "../../src/quarantine/QuarantineSink.js"
import { startSmtpServer, type StartSmtpServerOptions } from "../support/smtpServer.js"

const USER = "quarantine-relay"
const PASSWORD = "Pa55-w0rd-that-must-never-leak"
const SENDER = "mailintake@example.test"
const MAILBOX = "quarantine@example.test"

const targetFor = (port: number, smtp: Partial<SmtpQuarantineTarget["smtp"]> = {}): SmtpQuarantineTarget => ({
  type: "SMTP",
  mailbox: MAILBOX,
  smtp: {
    host: "127.0.0.1",
    port,
    ssl: false,
    user: "",
    password: Redacted.make(""),
    sender: SENDER,
    tlsRejectUnauthorized: true,
    caFile: undefined,
    ...smtp
  }
})

const withCredentials = { user: USER, password: Redacted.make(PASSWORD) }

/** Bare LF, latin1, a NUL, a 2,000-octet line and a line starting with a dot: every trap at once. */
const hostile = Buffer.concat([
  Buffer.from("From: x@example.test\nSubject: caf\xe9\n\n.\n..dots\nnul\x00here\n", "latin1"),
  Buffer.from(`${"w".repeat(2_000)}\n.\n`, "latin1")
])

/** A clean 7-bit message whose lines start with dots: exercises SMTP dot-stuffing (RFC 5321 §4.5.2). */
const dotted = Buffer.from("Subject: dots\r\n\r\n.\r\n..\r\n.end\r\n", "latin1")

const noticeFor = (raw: Uint8Array): QuarantineNotice => ({
  mailbox: "support-inbox",
  reason: "processing-error",
  detail: "boom",
  ref: "1700000000:7",
  sha256: createHash("sha256").update(raw).digest("hex"),
  retrievedAt: new Date("2024-05-01T12:00:00.000Z")
})

/** A smtp-server on a free port for the length of the test's scope. */
const smtpServer = (options?: StartSmtpServerOptions) =>
  Effect.acquireRelease(Effect.promise(() => startSmtpServer(options)), (server) => Effect.promise(() => server.stop()))

/** Forwards through a fresh SmtpQuarantine layer for `target`; the layer (and its pool) closes afterwards. */
const forward = (target: SmtpQuarantineTarget, raw: Uint8Array = hostile) =>
  Effect.flatMap(QuarantineSink, (sink) => sink.forward(raw, noticeFor(raw))).pipe(
    Effect.provide(SmtpQuarantine.layer(target))
  )

/** Runs a forward that must fail and returns its QuarantineSinkError, checking the password stays out of it. */
const forwardFailure = (target: SmtpQuarantineTarget, raw: Uint8Array = hostile) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(forward(target, raw))
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isSuccess(exit)) throw new Error("forward succeeded")
    const rendered = Cause.pretty(exit.cause)
    expect(rendered).not.toContain(PASSWORD)
    expect(rendered).not.toContain(Buffer.from(PASSWORD).toString("base64"))
    const error = Cause.failureOption(exit.cause)
    expect(error._tag).toBe("Some")
    if (error._tag !== "Some") throw new Error("not a failure")
    expect(error.value).toBeInstanceOf(QuarantineSinkError)
    expect(error.value.message).not.toContain(PASSWORD)
    expect(JSON.stringify(error.value)).not.toContain(PASSWORD)
    return error.value
  })

const attachmentOf = (raw: Buffer) =>
  Effect.promise(() => simpleParser(raw)).pipe(
    Effect.map((parsed) => {
      expect(parsed.attachments).toHaveLength(1)
      expect(parsed.attachments[0]!.contentType).toBe("message/rfc822")
      return { parsed, original: parsed.attachments[0]!.content }
    })
  )

describe("SmtpQuarantine", () => {
  it.scopedLive("forwards the notice with the original attached, byte for byte", () =>
    Effect.gen(function*() {
      const server = yield* smtpServer()
      const forwarded = yield* forward(targetFor(server.port))

      expect(forwarded.destination).toBe(MAILBOX)
      expect(forwarded.response).toMatch(/^250\b/)
      expect(server.received).toHaveLength(1)
      const [message] = server.received
      expect(message!.from).toBe(SENDER)
      expect(message!.to).toEqual([MAILBOX])

      const { parsed, original } = yield* attachmentOf(message!.raw)
      expect(original.equals(hostile)).toBe(true)
      expect(parsed.headers.get("auto-submitted")).toBe("auto-generated")
      expect(parsed.headers.get("x-mailintake-quarantine")).toBe("processing-error")
      expect(parsed.subject).toBe("[mailintake quarantine] processing-error from support-inbox")
    }))

  it.scopedLive("keeps leading dots of a 7-bit original intact across SMTP", () =>
    Effect.gen(function*() {
      const server = yield* smtpServer()
      yield* forward(targetFor(server.port), dotted)
      expect(server.received[0]!.raw.toString("latin1")).toContain("Content-Transfer-Encoding: 7bit")
      const { original } = yield* attachmentOf(server.received[0]!.raw)
      expect(original.equals(dotted)).toBe(true)
    }))

  it.scopedLive("reuses one pooled connection for several forwards", () =>
    Effect.gen(function*() {
      const server = yield* smtpServer()
      const start = Date.now()
      yield* Effect.flatMap(QuarantineSink, (sink) =>
        Effect.forEach([1, 2, 3, 4, 5], (i) => sink.forward(Buffer.from(`Subject: ${i}\r\n\r\nx\r\n`), noticeFor(dotted)))
      ).pipe(Effect.provide(SmtpQuarantine.layer(targetFor(server.port))))
      expect(server.received).toHaveLength(5)
      // A new connection costs smtp-server's 100 ms greeting delay; five would take 500 ms or more.
      expect(new Set(server.received.map((m) => m.sessionId)).size).toBe(1)
      expect(Date.now() - start).toBeLessThan(2_000)
    }))

  describe("authentication", () => {
    it.scopedLive("a blank user sends anonymously", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer()
        yield* forward(targetFor(server.port))
        expect(server.received[0]!.user).toBeUndefined()
      }))

    it.scopedLive("a user and password log in with AUTH PLAIN", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ auth: { user: USER, pass: PASSWORD } })
        yield* forward(targetFor(server.port, withCredentials))
        expect(server.received).toHaveLength(1)
        expect(server.received[0]!.user).toBe(USER)
        expect(server.received[0]!.authMethod).toBe("PLAIN")
      }))

    it.scopedLive("a server that requires AUTH refuses an anonymous sender (5xx: permanent)", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ auth: { user: USER, pass: PASSWORD } })
        const error = yield* forwardFailure(targetFor(server.port))
        expect(error.permanent).toBe(true)
        expect(server.received).toHaveLength(0)
      }))

    it.scopedLive("a wrong password fails with 535, and the error never shows the password", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ auth: { user: USER, pass: "another password" } })
        const error = yield* forwardFailure(targetFor(server.port, withCredentials))
        expect(error.message).toMatch(/535/)
        expect(error.permanent).toBe(true)
        expect(server.authFailures).toBeGreaterThan(0)
        expect(server.received).toHaveLength(0)
      }))
  })

  describe("refusals", () => {
    const cases = [
      { stage: "DATA", code: 451, permanent: false },
      { stage: "DATA", code: 550, permanent: true },
      { stage: "RCPT TO", code: 450, permanent: false },
      { stage: "RCPT TO", code: 550, permanent: true },
      { stage: "MAIL FROM", code: 421, permanent: false },
      { stage: "MAIL FROM", code: 553, permanent: true }
    ] as const

    for (const { stage, code, permanent } of cases) {
      it.scopedLive(`${code} at ${stage} is a QuarantineSinkError with permanent ${permanent}`, () =>
        Effect.gen(function*() {
          const server = yield* smtpServer({
            auth: { user: USER, pass: PASSWORD },
            rejectWith: (at) => (at === stage ? { code, message: `refused at ${stage}` } : undefined)
          })
          const error = yield* forwardFailure(targetFor(server.port, withCredentials))
          expect(error.permanent).toBe(permanent)
          expect(error.message).toContain(String(code))
          expect(server.received).toHaveLength(0)
        }))
    }

    it.scopedLive("a forward succeeds again once the server stops refusing", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ rejectWith: () => ({ code: 451, message: "greylisted" }) })
        yield* Effect.flatMap(QuarantineSink, (sink) =>
          Effect.gen(function*() {
            const failed = yield* Effect.flip(sink.forward(hostile, noticeFor(hostile)))
            expect(failed.permanent).toBe(false)
            server.setRejecting(undefined)
            yield* sink.forward(hostile, noticeFor(hostile))
          })
        ).pipe(Effect.provide(SmtpQuarantine.layer(targetFor(server.port))))
        expect(server.received).toHaveLength(1)
      }))
  })

  describe("unreachable servers", () => {
    it.scopedLive("connection refused fails quickly, not permanent, without the password", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const start = Date.now()
        const error = yield* forwardFailure(targetFor(port, withCredentials))
        expect(Date.now() - start).toBeLessThan(2_000)
        expect(error.permanent).toBe(false)
        expect(error.message).toMatch(/ECONNREFUSED/)
        expect(error.message).toContain(`127.0.0.1:${port}`)
      }))

    it.scopedLive("interrupting a forward to a server that never answers closes the connection", () =>
      Effect.gen(function*() {
        const silent = yield* silentServer
        const result = yield* forward(targetFor(silent.port, withCredentials)).pipe(
          Effect.timeout(Duration.millis(300)),
          Effect.either
        )
        expect(result._tag).toBe("Left")
        // The layer's scope has closed by now: the pool must have dropped its socket.
        yield* Effect.promise(() => silent.waitForClose(2_000))
      }))
  })

  describe("TLS", () => {
    let tlsDir: string
    let key: Buffer
    let cert: Buffer
    let caFile: string

    beforeAll(() => {
      tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), "mailintake-smtp-tls-"))
      caFile = path.join(tlsDir, "cert.pem")
      const openssl = spawnSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", path.join(tlsDir, "key.pem"), "-out", caFile
      ], { encoding: "utf8" })
      if (openssl.status !== 0) throw new Error(`openssl failed: ${openssl.stderr}`)
      key = fs.readFileSync(path.join(tlsDir, "key.pem"))
      cert = fs.readFileSync(caFile)
    })
    afterAll(() => fs.rmSync(tlsDir, { recursive: true, force: true }))

    it.scopedLive("implicit TLS (ssl: true) with the server's CA from caFile", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ tls: { key, cert }, secure: true, auth: { user: USER, pass: PASSWORD } })
        yield* forward(targetFor(server.port, { ssl: true, caFile, ...withCredentials }))
        expect(server.received).toHaveLength(1)
        expect(server.received[0]!.secure).toBe(true)
        const { original } = yield* attachmentOf(server.received[0]!.raw)
        expect(original.equals(hostile)).toBe(true)
      }))

    it.scopedLive("STARTTLS is used whenever the server offers it", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ tls: { key, cert } })
        yield* forward(targetFor(server.port, { caFile }))
        expect(server.received[0]!.secure).toBe(true)
      }))

    it.scopedLive("an untrusted certificate is refused, unless tlsRejectUnauthorized is false", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ tls: { key, cert }, secure: true })
        const error = yield* forwardFailure(targetFor(server.port, { ssl: true, ...withCredentials }))
        expect(error.permanent).toBe(false)
        expect(server.received).toHaveLength(0)

        yield* forward(targetFor(server.port, { ssl: true, tlsRejectUnauthorized: false }))
        expect(server.received).toHaveLength(1)
      }))

    it.scopedLive("an unreadable caFile fails every forward with a clear, non-permanent error", () =>
      Effect.gen(function*() {
        const server = yield* smtpServer({ tls: { key, cert }, secure: true })
        const missing = path.join(tlsDir, "missing.pem")
        const error = yield* forwardFailure(targetFor(server.port, { ssl: true, caFile: missing, ...withCredentials }))
        expect(error.permanent).toBe(false)
        expect(error.message).toContain(missing)
        expect(server.received).toHaveLength(0)
      }))
  })
})

/** A port nothing listens on: bind port 0, note the port, close. */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const probe = net.createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo
      probe.close(() => resolve(port))
    })
  })

/** Accepts TCP connections and never says a word (no SMTP greeting): a hung server. */
const silentServer = Effect.acquireRelease(
  Effect.promise(async () => {
    const sockets = new Set<net.Socket>()
    let connected = 0
    const closeWaiters: Array<() => void> = []
    const server = net.createServer((socket) => {
      connected++
      sockets.add(socket)
      socket.on("error", () => {})
      socket.once("close", () => {
        sockets.delete(socket)
        if (sockets.size === 0) for (const wake of closeWaiters.splice(0)) wake()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return {
      server,
      sockets,
      port: (server.address() as net.AddressInfo).port,
      /** Resolves once a client connected and every connection is closed again. */
      waitForClose: (timeoutMs: number) =>
        new Promise<void>((resolve, reject) => {
          if (connected > 0 && sockets.size === 0) return resolve()
          const timer = setTimeout(
            () => reject(new Error(`${sockets.size} of ${connected} connections still open after ${timeoutMs} ms`)),
            timeoutMs
          )
          closeWaiters.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
    }
  }),
  ({ server, sockets }) =>
    Effect.promise(() => {
      for (const socket of sockets) socket.destroy()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    })
)
