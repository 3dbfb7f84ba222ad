/**
 * The quarantine notice: a short text/plain explanation plus the original message, attached
 * unchanged as message/rfc822. Every quarantine type that sends e-mail (SMTP, Graph) uses it.
 *
 * What a quarantined message carries is hostile until proven otherwise, so nothing taken from it
 * (or from the error it caused) reaches the notice's header: the Subject is our own text, and every
 * value that is printed in the body loses its control characters and is capped in length.
 */
import { createHash, randomBytes } from "node:crypto"
import { Effect } from "effect"
import type { Options as MailComposerOptions } from "nodemailer/lib/mailer/index.js"
import type { Readable } from "node:stream"
import { byteStream } from "../processing/byteStream.js"
import { QuarantineSinkError, type QuarantineNotice } from "./QuarantineSink.js"

export interface NoticeEnvelope {
  /** Our sender address (configuration). */
  readonly from: string
  /** The quarantine mailbox (configuration). */
  readonly to: string
}

const CR = 0x0d
const LF = 0x0a
/** RFC 5322 §2.1.1: a line is at most 998 characters, excluding the CRLF. */
const MAX_LINE_OCTETS = 998

const LIMITS = {
  mailbox: 200,
  address: 320,
  ref: 500,
  detail: 2_000
} as const

const composeFailed = (error: unknown) =>
  new QuarantineSinkError({
    message: `could not compose the quarantine notice: ${error instanceof Error ? error.message : String(error)}`,
    permanent: false
  })

/**
 * The notice, a complete RFC 5322 message with CRLF line endings throughout, as a stream: the
 * original is encoded as it is sent, a piece at a time, so a 200 MB original is never held a
 * second time as base64. The attachment decodes to `raw` byte for byte.
 */
export const noticeStream = (
  raw: Uint8Array,
  notice: QuarantineNotice,
  envelope: NoticeEnvelope
): Effect.Effect<Readable, QuarantineSinkError> =>
  Effect.tryPromise({
    try: async () => {
      const { default: MailComposer } = await import("nodemailer/lib/mail-composer/index.js")
      return new MailComposer(composerOptions(raw, notice, envelope)).compile().createReadStream()
    },
    catch: composeFailed
  })

/** The whole notice in memory (for destinations that take it in one piece, e.g. Graph). */
export const composeNotice = (
  raw: Uint8Array,
  notice: QuarantineNotice,
  envelope: NoticeEnvelope
): Effect.Effect<Buffer, QuarantineSinkError> =>
  Effect.flatMap(noticeStream(raw, notice, envelope), (stream) =>
    Effect.tryPromise({
      try: async () => {
        const chunks: Array<Buffer> = []
        for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
        return Buffer.concat(chunks)
      },
      catch: composeFailed
    }))

const composerOptions = (raw: Uint8Array, notice: QuarantineNotice, envelope: NoticeEnvelope): MailComposerOptions => {
  const original = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
  const sha256 = hexOnly(notice.sha256) || createHash("sha256").update(original).digest("hex")
  const reason = singleLine(notice.reason, 40)
  const mailbox = singleLine(notice.mailbox, LIMITS.mailbox)
  const from = singleLine(envelope.from, LIMITS.address)
  const to = singleLine(envelope.to, LIMITS.address)
  const filename = `original-${sha256.slice(0, 16)}.eml`
  // Our own boundary, so we can prove the original does not contain it (see below).
  const baseBoundary = randomBytes(12).toString("hex")

  const text = [
    "mailintake quarantined a message instead of delivering it.",
    "",
    `Mailbox:    ${mailbox}`,
    `Reason:     ${reason}`,
    `Detail:     ${singleLine(notice.detail, LIMITS.detail)}`,
    `Reference:  ${singleLine(notice.ref, LIMITS.ref)}`,
    `SHA-256:    ${sha256}`,
    `Size:       ${original.byteLength} octets`,
    `Retrieved:  ${isoOrUnknown(notice.retrievedAt)}`,
    "",
    `The original message is attached unchanged as ${filename}.`,
    ""
  ].join("\r\n")

  return {
    from,
    to,
    subject: `[mailintake quarantine] ${reason} from ${mailbox}`,
    messageId: noticeMessageId(notice, sha256, from),
    date: new Date(),
    headers: {
      // RFC 3834 §5: marks the notice as machine-generated, so no compliant responder answers it
      // and a quarantine mailbox that is itself polled can recognise (and never re-quarantine) it.
      "Auto-Submitted": "auto-generated",
      "X-Mailintake-Quarantine": reason,
      // [MS-OXCMAIL] §2.2.3.2.14: Exchange sends no out-of-office or other auto-replies for it.
      "X-Auto-Response-Suppress": "All"
    },
    baseBoundary,
    text,
    attachments: [
      {
        filename,
        content: byteStream(original),
        contentType: "message/rfc822",
        // Nodemailer makes message/* parts inline by default; as an attachment every client
        // (and mailparser) hands out the original as a file instead of rendering it in place.
        contentDisposition: "attachment",
        contentTransferEncoding: fitsSevenBit(original, baseBoundary) ? "7bit" : "base64"
      }
    ],
    disableFileAccess: true,
    disableUrlAccess: true
  }
}

/**
 * True when the original can travel as 7bit: US-ASCII without NUL, CRLF line endings only, no
 * line over 998 octets (RFC 2045 §2.7), and no line that could be mistaken for our boundary
 * (RFC 2046 §5.1.1).
 *
 * Anything else is base64-encoded. RFC 2046 §5.2.1 allows only 7bit, 8bit or binary for a
 * message/rfc822 body, but 8bit has the same line rules as 7bit and binary needs BINARYMIME
 * end to end, so neither can carry a bare LF, a NUL or a 2,000-octet line without a relay or
 * client "repairing" it. A quarantine copy that is not the original byte for byte is useless as
 * evidence, so we deliberately deviate: RFC 6532 §3.5 lifts the same restriction for
 * message/global, and mail clients and parsers (mailparser included) decode it.
 */
const fitsSevenBit = (content: Buffer, baseBoundary: string): boolean => {
  let lineLength = 0
  for (let i = 0; i < content.length; i++) {
    const octet = content[i]!
    if (octet === 0 || octet > 0x7f) return false
    if (octet === CR) {
      if (content[i + 1] !== LF) return false
      i++
      lineLength = 0
    } else if (octet === LF) {
      return false
    } else if (++lineLength > MAX_LINE_OCTETS) {
      return false
    }
  }
  return !content.includes(baseBoundary, 0, "latin1")
}

/**
 * The same quarantine (mailbox, ref, content) always gets the same Message-ID: a retry after a
 * lost 250 reply re-sends the same message (RFC 5322 §3.6.4), so the receiving side can drop the
 * duplicate.
 */
const noticeMessageId = (notice: QuarantineNotice, sha256: string, from: string): string => {
  const id = createHash("sha256").update(`${notice.mailbox}\0${notice.ref}\0${sha256}`).digest("hex").slice(0, 32)
  const domain = from.slice(from.lastIndexOf("@") + 1).replace(/[^A-Za-z0-9.-]/g, "").slice(0, 200)
  return `<${id}.quarantine@${/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(domain) ? domain : "mailintake.invalid"}>`
}

/**
 * One line of printable text: C0/C1 controls (CR, LF, NUL, TAB, ESC…), DEL, Unicode line and
 * paragraph separators and bidi overrides become spaces, runs of spaces collapse, and the result
 * is capped at `max` code points. Used for every value that may come from the message or its error.
 */
const singleLine = (value: string, max: number): string => {
  const cleaned = String(value)
    .replace(/[\p{Cc}\p{Zl}\p{Zp}\u202A-\u202E\u2066-\u2069]/gu, " ")
    .replace(/ {2,}/g, " ")
    .trim()
  const codePoints = Array.from(cleaned)
  return codePoints.length <= max ? cleaned : `${codePoints.slice(0, max - 1).join("")}…`
}

const hexOnly = (value: string): string => (/^[0-9a-f]{64}$/i.test(value) ? value.toLowerCase() : "")

const isoOrUnknown = (date: Date): string =>
  date instanceof Date && !Number.isNaN(date.getTime()) ? date.toISOString() : "unknown"
