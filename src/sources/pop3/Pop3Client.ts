/**
 * A small POP3 client (RFC 1939) on `node:net` / `node:tls`, with CAPA (RFC 2449), STLS
 * (RFC 2595), SASL PLAIN and XOAUTH2 (RFC 5034) and the response codes of RFC 3206.
 *
 * - One exchange at a time: a semaphore serialises them, and an exchange that does not read its
 *   responses to the end (timeout, interruption, broken stream) abandons the connection, since
 *   the next response could no longer be told apart from the rest of this one. Abandoning
 *   never sends QUIT, so pending DELEs are never committed (RFC 1939 §6).
 * - A batch of RETRs or DELEs is one exchange: up to 100 commands to a write when the server
 *   announces PIPELINING (RFC 2449 §6.6), their answers read in order; one at a time otherwise.
 * - Every wait for bytes has the command timeout; a long RETR is fine as long as bytes flow.
 * - Received bytes go through `Pop3Reader` as Buffers: message bytes are never decoded.
 * - Credentials are only ever written to the socket: no error message or log carries them.
 */
import { Buffer } from "node:buffer"
import * as net from "node:net"
import * as tls from "node:tls"
import { Chunk, Deferred, Duration, Effect, Exit, Option, Redacted, type Scope, Stream } from "effect"
import { MailSourceError, type MailSourceErrorKind } from "../MailSource.js"
import { LARGE_MESSAGE_BYTES, MessageBuffer } from "../MessageBuffer.js"
import { TLS_ERROR_CODES } from "../tlsErrors.js"
import { bodyLines, Pop3Reader } from "./Pop3Reader.js"

export interface Pop3ConnectOptions {
  readonly host: string
  readonly port: number
  /** `starttls` requires STLS (RFC 2595) and refuses a server that does not offer it. */
  readonly tls: "implicit" | "starttls" | "none"
  /** Certificate verification; on unless explicitly turned off. */
  readonly rejectUnauthorized?: boolean
  /** PEM certificates to trust instead of Node's default roots (e.g. a private CA). */
  readonly ca?: string | Buffer
  /** TCP connect plus TLS handshake (implicit or STLS). */
  readonly connectTimeout: Duration.DurationInput
  /** Longest wait for the next bytes of any response. */
  readonly commandTimeout: Duration.DurationInput
}

export type Pop3Credentials =
  | { readonly user: string; readonly password: Redacted.Redacted<string> }
  | { readonly user: string; readonly accessToken: Redacted.Redacted<string> }

export interface Pop3ScanListing {
  /** Message number, valid for this session only (RFC 1939 §5). */
  readonly number: number
  readonly size: number
}

export interface Pop3UniqueId {
  readonly number: number
  /** RFC 1939 §7: 1 to 70 characters 0x21-0x7E, stable across sessions. */
  readonly uid: string
}

/** RFC 1939 §3: AUTHORIZATION until logged in, then TRANSACTION; `closed` after QUIT or failure. */
export type Pop3State = "authorization" | "transaction" | "closed"

export interface Pop3Client {
  /** The server's greeting text (after "+OK"). */
  readonly greeting: string
  /** The CAPA lines (RFC 2449), as last read; empty when the server has no CAPA. */
  readonly capabilities: ReadonlyArray<string>
  /** True once the connection is encrypted (implicit TLS or after STLS). */
  readonly secure: boolean
  readonly state: Pop3State
  /** DELEs sent since the last RSET; they are committed only by QUIT's +OK (RFC 1939 §6). */
  readonly pendingDeletes: number
  /** Re-reads the capabilities; `undefined` when the server answers CAPA with -ERR. */
  readonly capa: Effect.Effect<ReadonlyArray<string> | undefined, MailSourceError>
  /** Logs in: XOAUTH2 for a token; with a password, AUTH PLAIN when the server offers it, else USER/PASS. */
  readonly login: (credentials: Pop3Credentials) => Effect.Effect<void, MailSourceError>
  readonly userPass: (user: string, password: Redacted.Redacted<string>) => Effect.Effect<void, MailSourceError>
  readonly authPlain: (user: string, password: Redacted.Redacted<string>) => Effect.Effect<void, MailSourceError>
  readonly authXoauth2: (user: string, accessToken: Redacted.Redacted<string>) => Effect.Effect<void, MailSourceError>
  readonly stat: Effect.Effect<{ readonly count: number; readonly size: number }, MailSourceError>
  readonly list: Effect.Effect<ReadonlyArray<Pop3ScanListing>, MailSourceError>
  /** `None` when the server does not implement UIDL (it is optional, RFC 1939 §7). */
  readonly uidl: Effect.Effect<Option.Option<ReadonlyArray<Pop3UniqueId>>, MailSourceError>
  /**
   * The message's bytes, unstuffed. `expectedBytes` (the LIST size) is a hint: a large message
   * is written into one buffer as it arrives (`MessageBuffer`), never held twice.
   */
  readonly retr: (number: number, expectedBytes?: number) => Effect.Effect<Buffer, MailSourceError>
  /**
   * The message's bytes as they arrive. Holds the connection until the stream ends; a stream
   * not read to the end abandons the connection (no QUIT, nothing deleted).
   */
  readonly retrStream: (number: number) => Stream.Stream<Buffer, MailSourceError>
  /**
   * `retr` of several messages as one exchange, pipelined when the server allows it. The
   * bytes come back in the order asked; a refusal fails the whole call, but only after every
   * answer was read, so the connection stays usable.
   */
  readonly retrAll: (
    messages: ReadonlyArray<{ readonly number: number; readonly expectedBytes?: number | undefined }>
  ) => Effect.Effect<ReadonlyArray<Buffer>, MailSourceError>
  readonly dele: (number: number) => Effect.Effect<void, MailSourceError>
  /** `dele` of several messages as one exchange, pipelined when the server allows it. */
  readonly deleAll: (numbers: ReadonlyArray<number>) => Effect.Effect<void, MailSourceError>
  /** Whether the server announced PIPELINING (RFC 2449 §6.6) in its last CAPA. */
  readonly pipelining: boolean
  readonly rset: Effect.Effect<void, MailSourceError>
  readonly noop: Effect.Effect<void, MailSourceError>
  /**
   * Ends the session. In TRANSACTION state its +OK is the server's word that every DELE is
   * committed (RFC 1939 §6); -ERR means some were not.
   */
  readonly quit: Effect.Effect<void, MailSourceError>
  /** Drops the connection without QUIT: the server deletes nothing (RFC 1939 §6). */
  readonly destroy: Effect.Effect<void>
  /** Fails once the connection is gone (closed by either side, or abandoned); never succeeds. */
  readonly closed: Effect.Effect<never, MailSourceError>
  /** Fails with kind "closed" when the session is over; succeeds at once otherwise (no I/O). */
  readonly ensureOpen: Effect.Effect<void, MailSourceError>
}

// RFC 2449 §4: responses are at most 512 octets; leave room for servers that exceed it a bit.
const MAX_STATUS_LINE_BYTES = 8 * 1024
// RFC 2449 §4: a command line is at most 255 octets including CRLF.
const MAX_COMMAND_BYTES = 255
/** Commands written together when pipelining (a batch of RETRs is at most 100). */
const PIPELINE_WINDOW = 100
// Stop reading the socket while this much is waiting to be consumed (a slow RETR consumer).
const HIGH_WATER_BYTES = 1024 * 1024
// A RETR stream hands out at least this much per pull (or the rest of the message).
const STREAM_PULL_BYTES = 64 * 1024
// A finalizer's QUIT must not hold up closing the scope for a whole command timeout.
const FINALIZER_QUIT_TIMEOUT = Duration.seconds(5)


interface Status {
  readonly kind: "ok" | "err" | "continue"
  readonly text: string
}

/** Server text is shown in errors: keep it printable and short. */
const shown = (text: string): string => {
  const clean = text.replace(/[\x00-\x1f\x7f]/g, "?")
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean
}

const parseStatus = (line: Buffer): Status | undefined => {
  const text = line.toString("utf8")
  if (text.startsWith("+OK")) return { kind: "ok", text: text.slice(3).trimStart() }
  if (text.startsWith("-ERR")) return { kind: "err", text: text.slice(4).trimStart() }
  // RFC 5034 §4: a SASL continuation is "+" SP base64, possibly empty.
  if (text === "+" || text.startsWith("+ ")) return { kind: "continue", text: text.slice(1).trimStart() }
  return undefined
}

/**
 * RFC 3206 response codes on a refused login: [IN-USE] (maildrop locked by another session),
 * [SYS/TEMP] and RFC 2449's [LOGIN-DELAY] heal by themselves, unlike bad credentials.
 */
const loginRefusedKind = (text: string): MailSourceErrorKind =>
  /^\[(IN-USE|SYS\/TEMP|LOGIN-DELAY)\]/i.test(text) ? "connect" : "auth"

const socketErrorCode = (error: unknown): string | undefined => (error as { code?: string } | undefined)?.code

const describeSocketError = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  const code = socketErrorCode(error)
  return code !== undefined && !message.includes(code) ? `${message} (${code})` : message
}

/** SASL PLAIN (RFC 4616): empty authzid, authcid, password. */
const plainResponse = (user: string, password: Redacted.Redacted<string>): Redacted.Redacted<string> =>
  Redacted.make(Buffer.from(`\u0000${user}\u0000${Redacted.value(password)}`, "utf8").toString("base64"))

/** Google's XOAUTH2: "user=" user ^A "auth=Bearer " token ^A ^A. */
const xoauth2Response = (user: string, token: Redacted.Redacted<string>): Redacted.Redacted<string> =>
  Redacted.make(Buffer.from(`user=${user}\u0001auth=Bearer ${Redacted.value(token)}\u0001\u0001`, "utf8").toString("base64"))

const parseListing = (line: string): [number, string] | undefined => {
  const match = /^(\d+) +(\S+)/.exec(line)
  return match === null ? undefined : [Number(match[1]), match[2]!]
}

/**
 * Connects, reads the greeting and reads CAPA; with `tls: "starttls"` it then upgrades with
 * STLS and reads CAPA again. The client is in AUTHORIZATION state. Closing the scope sends QUIT
 * when that is safe (no DELE pending, connection in step) and always destroys the socket.
 */
export const connect = (options: Pop3ConnectOptions): Effect.Effect<Pop3Client, MailSourceError, Scope.Scope> =>
  Effect.gen(function*() {
    const target = `${options.host}:${options.port}`
    const connectTimeout = Duration.decode(options.connectTimeout)
    const commandTimeout = Duration.decode(options.commandTimeout)
    const error = (kind: MailSourceErrorKind, message: string) => new MailSourceError({ kind, message: `POP3 ${target}: ${message}` })

    const reader = new Pop3Reader()
    const semaphore = yield* Effect.makeSemaphore(1)
    const closedSignal = yield* Deferred.make<never, MailSourceError>()
    const sockets: Array<net.Socket> = []
    let socket: net.Socket
    /** Why the socket can deliver no more bytes (closed, errored, abandoned). */
    let streamFailure: MailSourceError | undefined
    /** Why no further command may be sent; set with streamFailure, or by QUIT. */
    let endedBecause: string | undefined
    let waiter: (() => void) | undefined
    let greeting = ""
    /** Whether the server said +OK to us at all: before that, there is no one to say QUIT to. */
    let greeted = false
    let capabilities: ReadonlyArray<string> = []
    let secure = false
    let state: Pop3State = "authorization"
    let pendingDeletes = 0

    const wake = () => {
      const resume = waiter
      waiter = undefined
      resume?.()
    }
    const destroySockets = () => {
      for (const s of sockets) s.destroy()
    }
    /** The connection is over: no more bytes, no more commands, `closed` fails. */
    const end = (reason: string) => {
      streamFailure ??= error("closed", reason)
      endedBecause ??= reason
      state = "closed"
      Deferred.unsafeDone(closedSignal, Exit.fail(error("closed", `session is closed: ${endedBecause}`)))
      wake()
    }
    const abandon = (reason: string) =>
      Effect.sync(() => {
        end(reason)
        destroySockets()
      })

    const onData = (chunk: Buffer) => {
      reader.push(chunk)
      if (reader.buffered >= HIGH_WATER_BYTES) socket.pause()
      wake()
    }
    const onError = (cause: unknown) => end(`connection failed: ${describeSocketError(cause)}`)
    const onClose = () => end("connection closed")
    const attach = (s: net.Socket) => {
      socket = s
      s.on("data", onData)
      s.on("error", onError)
      s.on("close", onClose)
    }
    const detach = (s: net.Socket) => {
      s.off("data", onData)
      s.off("error", onError)
      s.off("close", onClose)
      // The TLS layer now owns this socket; an error on it must still never go unhandled.
      s.on("error", () => {})
    }

    /** Waits for the socket to connect (and finish the TLS handshake when `secureEvent`). */
    const established = (s: net.Socket, tcpConnected: boolean, secureEvent: boolean) =>
      Effect.async<void, MailSourceError>((resume) => {
        let connected = tcpConnected
        const cleanup = () => {
          s.off("connect", onConnect)
          s.off("secureConnect", onSecure)
          s.off("error", onFail)
          s.off("close", onClosed)
        }
        const onConnect = () => {
          connected = true
          if (!secureEvent) {
            cleanup()
            resume(Effect.void)
          }
        }
        const onSecure = () => {
          cleanup()
          resume(Effect.void)
        }
        const onFail = (cause: unknown) => {
          cleanup()
          const code = socketErrorCode(cause)
          const tlsFailure = (connected && secureEvent) || (code !== undefined && TLS_ERROR_CODES.has(code))
          resume(Effect.fail(error(
            tlsFailure ? "tls" : "connect",
            `${tlsFailure ? "TLS handshake failed" : "cannot connect"}: ${describeSocketError(cause)}`
          )))
        }
        const onClosed = () => {
          cleanup()
          resume(Effect.fail(error(connected && secureEvent ? "tls" : "connect", "connection closed while connecting")))
        }
        s.on("connect", onConnect)
        s.on("secureConnect", onSecure)
        s.on("error", onFail)
        s.on("close", onClosed)
        return Effect.sync(cleanup)
      }).pipe(
        Effect.timeoutFail({
          duration: connectTimeout,
          onTimeout: () => error("timeout", `no connection within ${Duration.format(connectTimeout)}`)
        })
      )

    const tlsOptions = (): tls.ConnectionOptions => ({
      host: options.host,
      // RFC 6066 §3: SNI carries host names only, never IP addresses.
      ...(net.isIP(options.host) === 0 ? { servername: options.host } : {}),
      rejectUnauthorized: options.rejectUnauthorized ?? true,
      ...(options.ca === undefined ? {} : { ca: options.ca })
    })

    // ---- reading and writing ---------------------------------------------------------------

    const commandTimeoutMillis = Duration.toMillis(commandTimeout)

    /**
     * Runs `attempt` now and again on every arrival of bytes until it has an answer (`undefined`:
     * not yet). It runs inside the socket's event handler, so a body of thousands of small TLS
     * records costs one fiber suspension, not one per record. The timer is an idle timer: it
     * restarts whenever bytes arrive, so a long RETR only fails when the server stalls.
     */
    const whenReady = <A>(attempt: () => Exit.Exit<A, MailSourceError> | undefined): Effect.Effect<A, MailSourceError> =>
      Effect.async<A, MailSourceError>((resume) => {
        const first = attempt()
        if (first !== undefined) return resume(first)
        if (streamFailure !== undefined) return resume(Exit.fail(streamFailure))
        const settle = (exit: Exit.Exit<A, MailSourceError>) => {
          clearTimeout(timer)
          waiter = undefined
          resume(exit)
        }
        const onBytes = () => {
          const result = attempt()
          if (result !== undefined) return settle(result)
          if (streamFailure !== undefined) return settle(Exit.fail(streamFailure))
          timer.refresh()
          waiter = onBytes
        }
        const timer = setTimeout(
          () => settle(Exit.fail(error("timeout", `no answer within ${Duration.format(commandTimeout)}`))),
          commandTimeoutMillis
        )
        waiter = onBytes
        // Paused only while the reader held a lot that nobody asked for; now somebody does.
        if (socket.isPaused()) socket.resume()
        return Effect.sync(() => {
          clearTimeout(timer)
          waiter = undefined
        })
      })

    const readStatus = (command: string): Effect.Effect<Status, MailSourceError> =>
      whenReady(() => {
        const line = reader.readLine()
        if (line !== undefined) {
          const status = parseStatus(line)
          return status === undefined
            ? Exit.fail(error("protocol", `unexpected answer to ${command}: ${shown(line.toString("latin1"))}`))
            : Exit.succeed(status)
        }
        return reader.buffered > MAX_STATUS_LINE_BYTES
          ? Exit.fail(error("protocol", `answer to ${command} is not a line (over ${MAX_STATUS_LINE_BYTES} bytes)`))
          : undefined
      })

    /** Reads a multi-line body to its terminator, handing each piece to `onChunk` as it comes. */
    const readBody = (onChunk: (chunk: Buffer) => void) =>
      whenReady(() => {
        const { chunks, done } = reader.readData()
        for (const chunk of chunks) onChunk(chunk)
        return done ? Exit.void : undefined
      })

    const readBodyBuffer = Effect.suspend(() => {
      const chunks: Array<Buffer> = []
      let size = 0
      return readBody((chunk) => {
        chunks.push(chunk)
        size += chunk.byteLength
      }).pipe(Effect.map(() => Buffer.concat(chunks, size)))
    })

    /**
     * A message body: a small one joined once at the end; past LARGE_MESSAGE_BYTES (or when the
     * server announced that much) written into one buffer as it arrives, so that the received
     * pieces are let go at once and the message is never held twice.
     */
    const readMessageBody = (expectedBytes: number | undefined) =>
      Effect.suspend(() => {
        let chunks: Array<Buffer> = []
        let size = 0
        let large = expectedBytes !== undefined && expectedBytes >= LARGE_MESSAGE_BYTES ? new MessageBuffer(expectedBytes) : undefined
        const add = (chunk: Buffer) => {
          if (large !== undefined) return large.append(chunk)
          chunks.push(chunk)
          size += chunk.byteLength
          if (size >= LARGE_MESSAGE_BYTES) {
            large = new MessageBuffer(Math.max(size, expectedBytes ?? 0))
            for (const piece of chunks) large.append(piece)
            chunks = []
          }
        }
        return whenReady(() => {
          const { chunks: received, done } = reader.readData()
          try {
            for (const chunk of received) add(chunk)
          } catch (cause) {
            // Runs in the socket's event handler: a message too large to hold must fail the
            // command (and abandon the connection), never throw out of it.
            return Exit.fail(error("protocol", `message too large to hold: ${cause instanceof Error ? cause.message : String(cause)}`))
          }
          return done ? Exit.void : undefined
        }).pipe(Effect.map(() => large?.contents() ?? Buffer.concat(chunks, size)))
      })

    /** A command line as sent; `label` names it in errors, so that PASS/AUTH lines never appear in one. */
    const commandBytes = (line: string, label: string): Buffer | MailSourceError => {
      // A CR or LF in an argument would smuggle in a second command.
      if (/[\r\n\0]/.test(line)) return error("protocol", `${label}: argument contains a line break`)
      const bytes = Buffer.from(`${line}\r\n`, "utf8")
      return bytes.byteLength > MAX_COMMAND_BYTES
        ? error("protocol", `${label}: command longer than ${MAX_COMMAND_BYTES} octets (RFC 2449 §4)`)
        : bytes
    }

    /** Sends command lines in one write (several only when pipelining). */
    const write = (lines: string | ReadonlyArray<string>, label: string) =>
      Effect.suspend(() => {
        if (streamFailure !== undefined) return Effect.fail(streamFailure)
        const all: Array<Buffer> = []
        for (const line of typeof lines === "string" ? [lines] : lines) {
          const bytes = commandBytes(line, label)
          if (!Buffer.isBuffer(bytes)) return Effect.fail(bytes)
          all.push(bytes)
        }
        socket.write(all.length === 1 ? all[0]! : Buffer.concat(all))
        return Effect.void
      })

    /**
     * Runs one exchange with the server, alone. A failure or interruption inside it means the
     * response was not read to its end: the connection is out of step and is abandoned.
     */
    const exchange = <A>(label: string, body: Effect.Effect<A, MailSourceError>): Effect.Effect<A, MailSourceError> =>
      semaphore.withPermits(1)(
        Effect.suspend(() =>
          endedBecause !== undefined
            ? Effect.fail(error("closed", `${label}: session is closed: ${endedBecause}`))
            : body.pipe(Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : abandon(`${label} did not complete`))))
        )
      )

    const command = (line: string, label = line) =>
      exchange(label, Effect.zipRight(write(line, label), readStatus(label)))

    const expectOk = (label: string, kind: MailSourceErrorKind = "protocol") => (status: Status) =>
      status.kind === "ok"
        ? Effect.succeed(status.text)
        : Effect.fail(error(kind, `${label} refused: ${shown(status.text)}`))

    /** A command whose +OK is followed by a multi-line body (RFC 1939 §3). */
    const multiline = (line: string, label = line) =>
      exchange(label, Effect.gen(function*() {
        yield* write(line, label)
        const status = yield* readStatus(label)
        if (status.kind !== "ok") return { status, body: Buffer.alloc(0) }
        return { status, body: yield* readBodyBuffer }
      }))

    const requireState = (label: string, wanted: Pop3State) =>
      Effect.suspend(() =>
        state === wanted || state === "closed"
          ? Effect.void
          : Effect.fail(error("protocol", `${label} is not allowed in ${state.toUpperCase()} state`))
      )

    const capa = multiline("CAPA").pipe(
      Effect.map(({ body, status }) => {
        const lines = status.kind === "ok" ? bodyLines(body) : undefined
        capabilities = lines ?? []
        return lines
      })
    )
    const hasCapability = (name: string) => capabilities.some((line) => line.split(" ")[0]!.toUpperCase() === name)
    const saslMechanisms = () =>
      capabilities
        .filter((line) => line.split(" ")[0]!.toUpperCase() === "SASL")
        .flatMap((line) => line.split(" ").slice(1).map((mechanism) => mechanism.toUpperCase()))

    const stls = exchange("STLS", Effect.gen(function*() {
      // RFC 2595 §4: STLS only in AUTHORIZATION state, and only once.
      if (state !== "authorization" || secure) return yield* Effect.fail(error("protocol", "STLS is only allowed once, before login"))
      yield* write("STLS", "STLS")
      const status = yield* readStatus("STLS")
      if (status.kind !== "ok") return yield* Effect.fail(error("tls", `STLS refused: ${shown(status.text)}`))
      // Bytes that came before the handshake are unprotected: a man in the middle could have
      // injected them (the STARTTLS command injection of CVE-2011-0411). Refuse the server.
      if (reader.buffered > 0) return yield* Effect.fail(error("tls", "server sent data after +OK to STLS, before the TLS handshake"))
      const plain = socket
      detach(plain)
      const upgraded = tls.connect({ ...tlsOptions(), socket: plain })
      sockets.push(upgraded)
      attach(upgraded)
      yield* established(upgraded, true, true)
      secure = true
    }))

    // ---- AUTHORIZATION -----------------------------------------------------------------------

    /** RFC 5034: AUTH with an initial response, or on a continuation when the line would be too long. */
    const sasl = (mechanism: string, response: Redacted.Redacted<string>) => {
      const label = `AUTH ${mechanism}`
      return requireState(label, "authorization").pipe(
        Effect.zipRight(exchange(label, Effect.gen(function*() {
          const initial = `AUTH ${mechanism} ${Redacted.value(response)}`
          if (initial.length + 2 <= MAX_COMMAND_BYTES) {
            yield* write(initial, label)
          } else {
            yield* write(`AUTH ${mechanism}`, label)
            const challenge = yield* readStatus(label)
            if (challenge.kind !== "continue") return challenge
            // A base64 response line is not a command: RFC 2449's 255-octet limit does not apply.
            socket.write(`${Redacted.value(response)}\r\n`)
          }
          const status = yield* readStatus(label)
          if (status.kind !== "continue") return status
          // RFC 5034 §4: a challenge after our only response reports a failure (XOAUTH2 sends
          // its error JSON this way and expects an empty line); "*" cancels for the others.
          yield* write(mechanism === "XOAUTH2" ? "" : "*", label)
          return yield* readStatus(label)
        }))),
        Effect.flatMap((status) => {
          if (status.kind === "ok") {
            state = "transaction"
            return Effect.void
          }
          return Effect.fail(error(
            status.kind === "err" ? loginRefusedKind(status.text) : "protocol",
            `${label} refused: ${shown(status.text)}`
          ))
        })
      )
    }

    const authPlain = (user: string, password: Redacted.Redacted<string>) => sasl("PLAIN", plainResponse(user, password))
    const authXoauth2 = (user: string, accessToken: Redacted.Redacted<string>) =>
      sasl("XOAUTH2", xoauth2Response(user, accessToken))

    const userPass = (user: string, password: Redacted.Redacted<string>) =>
      requireState("USER", "authorization").pipe(
        Effect.zipRight(command(`USER ${user}`, "USER")),
        Effect.flatMap((status) => status.kind === "ok" ? Effect.void : Effect.fail(error(loginRefusedKind(status.text), `USER refused: ${shown(status.text)}`))),
        Effect.zipRight(command(`PASS ${Redacted.value(password)}`, "PASS")),
        Effect.flatMap((status) => {
          if (status.kind === "ok") {
            state = "transaction"
            return Effect.void
          }
          return Effect.fail(error(loginRefusedKind(status.text), `PASS refused: ${shown(status.text)}`))
        })
      )

    const login = (credentials: Pop3Credentials) =>
      "accessToken" in credentials
        ? authXoauth2(credentials.user, credentials.accessToken)
        : saslMechanisms().includes("PLAIN")
        ? authPlain(credentials.user, credentials.password)
        : userPass(credentials.user, credentials.password)

    // ---- TRANSACTION -------------------------------------------------------------------------

    const inTransaction = <A>(label: string, effect: Effect.Effect<A, MailSourceError>) =>
      Effect.zipRight(requireState(label, "transaction"), effect)

    const stat = inTransaction(
      "STAT",
      command("STAT").pipe(
        Effect.flatMap(expectOk("STAT")),
        Effect.flatMap((text) => {
          const match = /^(\d+) +(\d+)/.exec(text)
          return match === null
            ? Effect.fail(error("protocol", `malformed STAT answer: ${shown(text)}`))
            : Effect.succeed({ count: Number(match[1]), size: Number(match[2]) })
        })
      )
    )

    const list = inTransaction(
      "LIST",
      multiline("LIST").pipe(
        Effect.flatMap(({ body, status }) =>
          status.kind !== "ok" ? Effect.fail(error("protocol", `LIST refused: ${shown(status.text)}`)) : Effect.succeed(body)
        ),
        Effect.flatMap((body) =>
          Effect.forEach(bodyLines(body), (line) => {
            const listing = parseListing(line)
            return listing === undefined || !/^\d+$/.test(listing[1])
              ? Effect.fail(error("protocol", `malformed LIST line: ${shown(line)}`))
              : Effect.succeed<Pop3ScanListing>({ number: listing[0], size: Number(listing[1]) })
          })
        )
      )
    )

    const uidl = inTransaction(
      "UIDL",
      multiline("UIDL").pipe(
        Effect.flatMap(({ body, status }) =>
          status.kind !== "ok"
            ? Effect.succeed(Option.none())
            : Effect.forEach(bodyLines(body), (line) => {
              const listing = parseListing(line)
              return listing === undefined
                ? Effect.fail(error("protocol", `malformed UIDL line: ${shown(line)}`))
                : Effect.succeed<Pop3UniqueId>({ number: listing[0], uid: listing[1] })
            }).pipe(Effect.map(Option.some))
        )
      )
    )

    const retr = (number: number, expectedBytes?: number) =>
      inTransaction(
        "RETR",
        // A refusal is read to its end: the connection stays in step, only this message fails.
        exchange(`RETR ${number}`, Effect.gen(function*() {
          yield* write(`RETR ${number}`, `RETR ${number}`)
          const status = yield* readStatus(`RETR ${number}`)
          return status.kind === "ok" ? { status, body: yield* readMessageBody(expectedBytes) } : { status, body: undefined }
        })).pipe(
          Effect.flatMap(({ body, status }) =>
            body !== undefined ? Effect.succeed(body) : Effect.fail(error("protocol", `RETR ${number} refused: ${shown(status.text)}`))
          )
        )
      )

    /**
     * Commands of one kind as one exchange: when pipelining, written PIPELINE_WINDOW at a time,
     * each window once the previous one is answered (RFC 2449 §6.6: the answers come back in
     * order; the window spares a server with a small input buffer thousands of lines at once);
     * else each written after the previous one's answer. `answer` reads one command's answer to
     * its end.
     */
    const batch = <A>(
      label: string,
      lines: ReadonlyArray<string>,
      answer: (index: number, status: Status) => Effect.Effect<A, MailSourceError>
    ) =>
      exchange(label, Effect.gen(function*() {
        const window = hasCapability("PIPELINING") ? PIPELINE_WINDOW : 1
        const results: Array<A> = []
        for (let i = 0; i < lines.length; i++) {
          if (i % window === 0) yield* write(lines.slice(i, i + window), label)
          results.push(yield* answer(i, yield* readStatus(lines[i]!)))
        }
        return results
      }))

    const retrAll = (messages: ReadonlyArray<{ readonly number: number; readonly expectedBytes?: number | undefined }>) =>
      messages.length === 0 ? Effect.succeed([]) : inTransaction(
        "RETR",
        batch(
          `RETR of ${messages.length} message(s)`,
          messages.map(({ number }) => `RETR ${number}`),
          (i, status): Effect.Effect<{ body?: Buffer; refused?: string }, MailSourceError> =>
            status.kind === "ok"
              ? Effect.map(readMessageBody(messages[i]!.expectedBytes), (body) => ({ body }))
              : Effect.succeed({ refused: `RETR ${messages[i]!.number} refused: ${shown(status.text)}` })
        ).pipe(
          // A refusal was read to its end, like every other answer: the connection stays in step.
          Effect.flatMap((answers) => {
            const refused = answers.find(({ refused }) => refused !== undefined)?.refused
            return refused !== undefined ? Effect.fail(error("protocol", refused)) : Effect.succeed(answers.map(({ body }) => body!))
          })
        )
      )

    const retrStream = (number: number): Stream.Stream<Buffer, MailSourceError> =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const label = `RETR ${number}`
        yield* requireState(label, "transaction")
        yield* Effect.acquireRelease(semaphore.take(1), () => semaphore.release(1))
        if (endedBecause !== undefined) return yield* Effect.fail(error("closed", `${label}: session is closed: ${endedBecause}`))
        let complete = false
        // Runs before the permit is released: the next command must not read this body.
        yield* Effect.addFinalizer(() => (complete ? Effect.void : abandon(`${label} was not read to the end`)))
        yield* write(label, label)
        const status = yield* readStatus(label)
        if (status.kind !== "ok") {
          complete = true
          return yield* Effect.fail(error("protocol", `${label} refused: ${shown(status.text)}`))
        }
        const pull: Effect.Effect<Chunk.Chunk<Buffer>, Option.Option<MailSourceError>> = Effect.suspend(() => {
          if (complete) return Effect.fail(Option.none())
          // Hand out at least STREAM_PULL_BYTES at a time: one pull per 4 KiB TLS record
          // would cost more than the bytes themselves.
          const gathered: Array<Buffer> = []
          let size = 0
          return whenReady(() => {
            const { chunks, done } = reader.readData()
            complete = done
            for (const chunk of chunks) {
              gathered.push(chunk)
              size += chunk.byteLength
            }
            return size >= STREAM_PULL_BYTES || done ? Exit.void : undefined
          }).pipe(
            Effect.mapError(Option.some),
            Effect.flatMap(() => gathered.length > 0 ? Effect.succeed(Chunk.unsafeFromArray(gathered)) : Effect.fail(Option.none()))
          )
        })
        return Stream.repeatEffectChunkOption(pull)
      }))

    const dele = (number: number) =>
      inTransaction(
        "DELE",
        command(`DELE ${number}`).pipe(
          Effect.flatMap(expectOk(`DELE ${number}`)),
          Effect.tap(() => {
            pendingDeletes += 1
          }),
          Effect.asVoid
        )
      )

    const deleAll = (numbers: ReadonlyArray<number>) =>
      numbers.length === 0 ? Effect.void : inTransaction(
        "DELE",
        batch(`DELE of ${numbers.length} message(s)`, numbers.map((number) => `DELE ${number}`), (i, status): Effect.Effect<string | undefined> => {
          if (status.kind !== "ok") return Effect.succeed(`DELE ${numbers[i]} refused: ${shown(status.text)}`)
          pendingDeletes += 1
          return Effect.succeed(undefined)
        }).pipe(
          Effect.flatMap((refusals) => {
            const refused = refusals.find((refusal) => refusal !== undefined)
            return refused !== undefined ? Effect.fail(error("protocol", refused)) : Effect.void
          })
        )
      )

    const rset = inTransaction(
      "RSET",
      command("RSET").pipe(
        Effect.flatMap(expectOk("RSET")),
        Effect.tap(() => {
          pendingDeletes = 0
        }),
        Effect.asVoid
      )
    )

    const noop = inTransaction("NOOP", command("NOOP").pipe(Effect.flatMap(expectOk("NOOP")), Effect.asVoid))

    const quit: Effect.Effect<void, MailSourceError> = command("QUIT").pipe(
      Effect.flatMap((status) =>
        Effect.sync(() => {
          // RFC 1939 §6: after QUIT the server releases the maildrop and closes; we are done too.
          end("session ended with QUIT")
          socket.end()
          if (status.kind === "ok") pendingDeletes = 0
        }).pipe(Effect.zipRight(expectOk("QUIT")(status)))
      ),
      Effect.asVoid
    )

    // ---- connect, greeting, CAPA, STLS -------------------------------------------------------

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        // QUIT is safe only with nothing pending: a QUIT after DELEs would commit them (RFC 1939 §6).
        const quitFirst = greeted && endedBecause === undefined && pendingDeletes === 0
        return (quitFirst ? quit.pipe(Effect.timeout(FINALIZER_QUIT_TIMEOUT), Effect.ignore) : Effect.void).pipe(
          Effect.ensuring(Effect.sync(() => {
            end("session scope closed")
            destroySockets()
          }))
        )
      })
    )

    const first = options.tls === "implicit"
      ? tls.connect({ ...tlsOptions(), port: options.port })
      : net.connect({ host: options.host, port: options.port })
    sockets.push(first)
    // Listen at once: an 'error' without a listener would crash the process.
    attach(first)
    first.setNoDelay(true)
    yield* established(first, false, options.tls === "implicit")
    secure = options.tls === "implicit"

    const greetingStatus = yield* exchange("greeting", readStatus("greeting"))
    if (greetingStatus.kind !== "ok") {
      return yield* Effect.fail(error("connect", `server refused the connection: ${shown(greetingStatus.text)}`))
    }
    greeting = greetingStatus.text
    greeted = true

    yield* capa
    if (options.tls === "starttls") {
      // Never downgrade: a server that does not offer STLS is refused, not used in clear.
      if (!hasCapability("STLS")) {
        return yield* Effect.fail(error("tls", "tls is \"starttls\" but the server does not offer STLS in CAPA"))
      }
      yield* stls
      // RFC 2595 §4: capabilities learnt before the handshake must be discarded.
      yield* capa
    }

    return {
      get greeting() {
        return greeting
      },
      get capabilities() {
        return capabilities
      },
      get secure() {
        return secure
      },
      get state() {
        return state
      },
      get pendingDeletes() {
        return pendingDeletes
      },
      capa,
      login,
      userPass,
      authPlain,
      authXoauth2,
      stat,
      list,
      uidl,
      retr,
      retrStream,
      retrAll,
      dele,
      deleAll,
      get pipelining() {
        return hasCapability("PIPELINING")
      },
      rset,
      noop,
      quit,
      destroy: abandon("connection dropped without QUIT"),
      closed: Deferred.await(closedSignal),
      ensureOpen: Effect.suspend(() =>
        endedBecause === undefined ? Effect.void : Effect.fail(error("closed", `session is closed: ${endedBecause}`))
      )
    } satisfies Pop3Client
  })
