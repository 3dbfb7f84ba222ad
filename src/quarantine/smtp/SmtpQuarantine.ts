/**
 * The "Internet Mail (SMTP)" quarantine type: sends the quarantine notice, with the original
 * attached, to the quarantine mailbox through the configured SMTP server.
 *
 * One pooled connection per Layer: quarantines are rare, but when a burst comes (a mail loop, a
 * broken sender) they reuse one session instead of paying a handshake each, and the server never
 * sees more than one connection from us.
 */
import { readFile } from "node:fs/promises"
import { Effect, Either, Layer, Redacted } from "effect"
import type { Transporter } from "nodemailer"
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js"
import type { Readable } from "node:stream"
import type { SmtpQuarantineTarget } from "../../domain/plan.js"
import { noticeStream } from "../notice.js"
import { QuarantineSink, QuarantineSinkError, type Forwarded, type QuarantineNotice } from "../QuarantineSink.js"

/** Connect, greeting and idle-socket timeouts: a dead or stalling server fails a forward, never hangs it. */
const TIMEOUT_MS = 30_000

export const layer = (target: SmtpQuarantineTarget): Layer.Layer<QuarantineSink> =>
  Layer.scoped(
    QuarantineSink,
    Effect.gen(function*() {
      const { smtp } = target
      const where = `SMTP quarantine to ${target.mailbox} via ${smtp.host}:${smtp.port}`
      const secrets = secretForms(smtp.user, Redacted.value(smtp.password))

      // A CA file that cannot be read is a configuration problem, not a bug: every forward fails
      // with the reason (the message stays on its server and is retried), the Layer still builds.
      const ca = yield* readCaFile(smtp.caFile)
      if (Either.isLeft(ca)) {
        const error = new QuarantineSinkError({ message: `${where}: ${ca.left}`, permanent: false })
        return QuarantineSink.of({ forward: () => Effect.fail(error) })
      }

      // Made with the first quarantine: a daemon that never quarantines never loads nodemailer.
      let transport: Transporter<SMTPPool.SentMessageInfo> | undefined
      yield* Effect.addFinalizer(() =>
        // `force`: nobody is waiting for an in-flight delivery once the scope closes (its fiber was
        // interrupted), and a server that trickles its replies must not keep the socket open.
        Effect.sync(() => transport?.close({ force: true }))
      )
      const connect = Effect.promise(async () => {
        const { default: nodemailer } = await import("nodemailer")
        return (transport ??= nodemailer.createTransport({
          pool: true,
          maxConnections: 1,
          host: smtp.host,
          port: smtp.port,
          // Implicit TLS from the first byte (RFC 8314 §3.3). Without it nodemailer still
          // upgrades with STARTTLS whenever the server offers it (RFC 3207).
          secure: smtp.ssl,
          // A blank user means an anonymous relay: no AUTH at all.
          auth: smtp.user.trim() === "" ? undefined : { user: smtp.user, pass: Redacted.value(smtp.password) },
          tls: {
            rejectUnauthorized: smtp.tlsRejectUnauthorized,
            ...(ca.right === undefined ? {} : { ca: ca.right })
          },
          connectionTimeout: TIMEOUT_MS,
          greetingTimeout: TIMEOUT_MS,
          socketTimeout: TIMEOUT_MS,
          // Nodemailer logs nothing unless asked; keep it that way so no AUTH line is ever written.
          logger: false,
          debug: false
        }))
      })

      const fail = (message: string, permanent: boolean) =>
        new QuarantineSinkError({ message: redact(`${where}: ${message}`, secrets), permanent })

      // The notice is a stream, encoded as it is sent: a large original is never held twice.
      const send = (notice: Readable): Effect.Effect<Forwarded, QuarantineSinkError> =>
        Effect.flatMap(connect, (transport) => Effect.tryPromise({
          // The signal aborts when the fiber is interrupted: nodemailer then drops the queued
          // message or closes the connection that is sending it, so nothing is sent after we stop.
          try: (signal) =>
            transport.sendMail({
              envelope: { from: smtp.sender, to: [target.mailbox] },
              raw: notice,
              signal
            }),
          catch: (error) => {
            const code = responseCode(error)
            return fail(describe(error), code !== undefined && code >= 500 && code <= 599)
          }
        })).pipe(
          Effect.ensuring(Effect.sync(() => notice.destroy())),
          Effect.flatMap((info) =>
            // Nodemailer succeeds when at least one recipient was accepted; we have exactly one.
            info.rejected.length > 0 || info.accepted.length === 0
              ? Effect.fail(fail(`the server did not accept ${target.mailbox}: ${info.response}`, false))
              : Effect.succeed<Forwarded>({ destination: target.mailbox, response: info.response })
          )
        )

      return QuarantineSink.of({
        forward: (raw: Uint8Array, notice: QuarantineNotice) =>
          noticeStream(raw, notice, { from: smtp.sender, to: target.mailbox }).pipe(Effect.flatMap(send))
      })
    })
  )

const readCaFile = (caFile: string | undefined): Effect.Effect<Either.Either<Buffer | undefined, string>> =>
  caFile === undefined
    ? Effect.succeed(Either.right(undefined))
    : Effect.tryPromise(() => readFile(caFile)).pipe(
      Effect.mapError((error) => `cannot read the CA file ${caFile}: ${describe(error.error)}`),
      Effect.either
    )

/** The SMTP reply code nodemailer attached to the error, if the server answered at all. */
const responseCode = (error: unknown): number | undefined => {
  const code = typeof error === "object" && error !== null ? (error as { responseCode?: unknown }).responseCode : undefined
  return typeof code === "number" ? code : undefined
}

const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return typeof code === "string" && !error.message.includes(code) ? `${error.message} (${code})` : error.message
}

/**
 * The password as it could appear in text: as is, and inside the base64 of AUTH PLAIN (RFC 4616)
 * and AUTH LOGIN, should a server or library ever echo a command back.
 */
const secretForms = (user: string, password: string): ReadonlyArray<string> =>
  password === ""
    ? []
    : [
      password,
      Buffer.from(password).toString("base64"),
      Buffer.from(`\0${user}\0${password}`).toString("base64"),
      Buffer.from(`${user}\0${user}\0${password}`).toString("base64")
    ]

const redact = (text: string, secrets: ReadonlyArray<string>): string =>
  secrets.reduce((acc, secret) => acc.split(secret).join("<redacted>"), text)
