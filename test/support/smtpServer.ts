/**
 * Test harness: a real SMTP server (the `smtp-server` package) on 127.0.0.1 that records every
 * message it accepts, for the SMTP quarantine destination.
 *
 * - Port 0 by default: the OS picks a free port, so test files can run in parallel.
 * - No `auth`: AUTH is not offered and not required (anonymous relay). With `auth`: AUTH PLAIN
 *   and LOGIN are offered over plain TCP too (loopback only) and required before MAIL FROM.
 * - No `tls`: STARTTLS is not offered. With `tls` and `secure: true`: implicit TLS from the
 *   first byte (RFC 8314 §3.3); with `tls` alone: STARTTLS is offered (RFC 3207).
 * - `rejectWith` (changeable later with `setRejecting`) refuses transactions with a chosen reply.
 *
 * smtp-server waits a fixed 100 ms before each greeting (its early-talker check; there is no
 * option to shorten it), so every new connection costs 100 ms: use a pooled client.
 */
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from "smtp-server"

/** The SMTP stage a rejection applies to. */
export type SmtpStage = "MAIL FROM" | "RCPT TO" | "DATA"

export interface SmtpRejection {
  /** The reply code, e.g. 451 (try again later) or 550 (refused for good). */
  readonly code: number
  readonly message: string
}

/**
 * Decides, at each stage of every transaction, whether to refuse it. A function that ignores the
 * stage therefore refuses at MAIL FROM; one that checks for `"DATA"` refuses after the message
 * text was received (the message is then not recorded).
 */
export type SmtpRejecter = (stage: SmtpStage) => SmtpRejection | undefined

export interface StartSmtpServerOptions {
  /** Default 0: a random free port. */
  readonly port?: number
  /** Require this user and password (AUTH PLAIN or LOGIN). */
  readonly auth?: { readonly user: string; readonly pass: string }
  /** Certificate and key: implicit TLS with `secure: true`, STARTTLS otherwise. */
  readonly tls?: { readonly key: string | Buffer; readonly cert: string | Buffer }
  readonly secure?: boolean
  readonly rejectWith?: SmtpRejecter
}

export interface ReceivedMessage {
  /** MAIL FROM address ("" for the null sender). */
  readonly from: string
  /** RCPT TO addresses. */
  readonly to: Array<string>
  /** The message exactly as received after DATA (dot-unstuffed, final CRLF.CRLF removed). */
  readonly raw: Buffer
  /** The authenticated user, undefined for an anonymous session. */
  readonly user: string | undefined
  /** The AUTH mechanism used, undefined for an anonymous session. */
  readonly authMethod: string | undefined
  /** True when the session ran over TLS (implicit or STARTTLS). */
  readonly secure: boolean
  /** The SMTP session (one per connection): equal ids mean one reused connection. */
  readonly sessionId: string
}

export interface SmtpServerHandle {
  readonly port: number
  readonly host: "127.0.0.1"
  /** Every message accepted so far, in order. */
  readonly received: Array<ReceivedMessage>
  /** Failed AUTH attempts (wrong user or password) so far. */
  readonly authFailures: number
  /** Resolves once at least `count` messages were accepted; rejects after `timeoutMs`. */
  waitFor(count: number, timeoutMs?: number): Promise<void>
  setRejecting(fn: SmtpRejecter | undefined): void
  /** Stops listening and closes open sessions (after a short grace period). */
  stop(): Promise<void>
}

interface SessionAuth {
  readonly user: string
  readonly method: string
}

export const startSmtpServer = async (options: StartSmtpServerOptions = {}): Promise<SmtpServerHandle> => {
  const received: Array<ReceivedMessage> = []
  const waiters = new Set<() => void>()
  let rejecter = options.rejectWith
  let authFailures = 0

  const rejection = (stage: SmtpStage): Error | undefined => {
    const reply = rejecter?.(stage)
    if (reply === undefined) return undefined
    return Object.assign(new Error(reply.message), { responseCode: reply.code })
  }

  const disabledCommands: Array<string> = []
  if (options.tls === undefined) disabledCommands.push("STARTTLS")
  if (options.auth === undefined) disabledCommands.push("AUTH")

  const serverOptions: SMTPServerOptions = {
    secure: options.secure === true,
    ...(options.tls === undefined ? {} : { key: options.tls.key, cert: options.tls.cert }),
    disabledCommands,
    authOptional: options.auth === undefined,
    // AUTH over plain TCP is fine on loopback; it lets tests check credentials without TLS.
    allowInsecureAuth: true,
    authMethods: ["PLAIN", "LOGIN"],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 200,
    socketTimeout: 10_000,
    onAuth(auth, _session, callback) {
      const expected = options.auth
      if (expected !== undefined && auth.username === expected.user && auth.password === expected.pass) {
        const user: SessionAuth = { user: auth.username, method: auth.method }
        callback(null, { user })
        return
      }
      authFailures++
      callback(Object.assign(new Error("Authentication credentials invalid"), { responseCode: 535 }))
    },
    onMailFrom(_address, _session, callback) {
      callback(rejection("MAIL FROM"))
    },
    onRcptTo(_address, _session, callback) {
      callback(rejection("RCPT TO"))
    },
    onData(stream, session, callback) {
      const chunks: Array<Buffer> = []
      stream.on("data", (chunk: Buffer) => chunks.push(chunk))
      stream.once("error", (error) => callback(error))
      stream.once("end", () => {
        const refused = rejection("DATA")
        if (refused !== undefined) {
          callback(refused)
          return
        }
        received.push(toReceived(session, Buffer.concat(chunks)))
        for (const wake of [...waiters]) wake()
        callback(null)
      })
    }
  }

  const server = new SMTPServer(serverOptions)
  // A client that drops its connection makes the server emit "error"; that must not crash tests.
  server.on("error", () => {})

  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject)
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.server.off("error", reject)
      resolve()
    })
  })
  const address = server.server.address()
  if (address === null || typeof address === "string") throw new Error("smtp-server did not bind a TCP port")

  let stopped: Promise<void> | undefined

  return {
    port: address.port,
    host: "127.0.0.1",
    received,
    get authFailures() {
      return authFailures
    },
    waitFor(count, timeoutMs = 5_000) {
      if (received.length >= count) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`smtp-server received ${received.length} of ${count} messages within ${timeoutMs} ms`))
        }, timeoutMs)
        const check = () => {
          if (received.length < count) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve()
        }
        waiters.add(check)
      })
    },
    setRejecting(fn) {
      rejecter = fn
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => server.close(() => resolve()))
      return stopped
    }
  }
}

const toReceived = (session: SMTPServerSession, raw: Buffer): ReceivedMessage => {
  const auth = session.user as SessionAuth | undefined
  return {
    from: session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address,
    to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
    raw,
    user: auth?.user,
    authMethod: auth?.method,
    secure: session.secure,
    sessionId: session.id
  }
}
