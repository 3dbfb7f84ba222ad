import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { simpleParser } from "mailparser"
import { composeNotice } from "../../src/quarantine/notice.js"
import type { QuarantineNotice } from "../../src/quarantine/QuarantineSink.js"

const envelope = { from: "mailintake@example.test", to: "quarantine@example.test" }

const noticeFor = (raw: Buffer, overrides: Partial<QuarantineNotice> = {}): QuarantineNotice => ({
  mailbox: "support-inbox",
  reason: "processing-error",
  detail: "mailparser: unexpected end of input",
  ref: "1700000000:42",
  sha256: createHash("sha256").update(raw).digest("hex"),
  retrievedAt: new Date("2024-05-01T12:00:00.000Z"),
  ...overrides
})

const crlf = (...lines: Array<string>) => Buffer.from(lines.join("\r\n"), "latin1")

/** The messages a quarantine must carry unchanged, and the transfer encoding each one needs. */
const originals: ReadonlyArray<{ readonly name: string; readonly raw: Buffer; readonly encoding: "7bit" | "base64" }> = [
  {
    name: "a 7-bit message with CRLF line endings",
    raw: crlf("From: a@example.test", "To: b@example.test", "Subject: hello", "", "Hi.", ".leading dot", "-- ", "sig", ""),
    encoding: "7bit"
  },
  {
    name: "a 7-bit message without a final CRLF",
    raw: crlf("Subject: no final newline", "", "last line"),
    encoding: "7bit"
  },
  {
    name: "a multipart message with boundaries of its own",
    raw: crlf(
      "Subject: multipart",
      "MIME-Version: 1.0",
      "Content-Type: multipart/mixed; boundary=\"inner\"",
      "",
      "--inner",
      "Content-Type: text/plain",
      "",
      "part one",
      "--inner--",
      ""
    ),
    encoding: "7bit"
  },
  {
    name: "a message with a line of exactly 998 octets",
    raw: crlf("Subject: long", "", "x".repeat(998), ""),
    encoding: "7bit"
  },
  {
    name: "a message with bare LF line endings",
    raw: Buffer.from("From: a@example.test\nSubject: unix\n\nline one\nline two\n", "latin1"),
    encoding: "base64"
  },
  {
    name: "a message with a bare CR",
    raw: crlf("Subject: old mac", "", "one\rtwo", ""),
    encoding: "base64"
  },
  {
    name: "an 8-bit latin1 message",
    raw: crlf("Subject: caf\xe9", "Content-Type: text/plain; charset=iso-8859-1", "", "Gr\xfc\xdfe aus K\xf6ln", ""),
    encoding: "base64"
  },
  {
    name: "a message with a 2,000-octet line",
    raw: crlf("Subject: long", "", "y".repeat(2_000), ""),
    encoding: "base64"
  },
  {
    name: "a message with a 999-octet line",
    raw: crlf("Subject: long", "", "z".repeat(999), ""),
    encoding: "base64"
  },
  {
    name: "a message with NUL bytes",
    raw: crlf("Subject: nul", "", "before\x00after", "\x00\x00", ""),
    encoding: "base64"
  }
]

interface Part {
  readonly headers: string
  readonly body: string
}

/** Splits a message (as a latin1 string, one char per octet) at its first empty line. */
const splitHead = (message: string): Part => {
  const end = message.indexOf("\r\n\r\n")
  return { headers: message.slice(0, end), body: message.slice(end + 4) }
}

/** Unfolds a header block (RFC 5322 §2.2.3) into one entry per field. */
const fields = (headers: string): Array<{ readonly name: string; readonly value: string }> =>
  headers
    .replace(/\r\n(?=[ \t])/g, "")
    .split("\r\n")
    .map((line) => {
      const colon = line.indexOf(":")
      return { name: line.slice(0, colon), value: line.slice(colon + 1).trim() }
    })

const field = (headers: string, name: string): string | undefined =>
  fields(headers).find((f) => f.name.toLowerCase() === name.toLowerCase())?.value

/** Takes the notice apart by hand (no MIME library): the text part and the attachment part. */
const dissect = (notice: Buffer) => {
  const message = notice.toString("latin1")
  const top = splitHead(message)
  const boundary = /boundary="?([^";]+)"?/.exec(field(top.headers, "Content-Type") ?? "")![1]!
  // RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the delimiter, not to the part.
  const parts = `\r\n${top.body}`.split(`\r\n--${boundary}`)
  expect(parts[0]).toBe("")
  expect(parts.at(-1)).toBe("--\r\n")
  const [text, attachment] = parts.slice(1, -1).map((part) => splitHead(part.replace(/^\r\n/, "")))
  return { top, text: text!, attachment: attachment! }
}

const decodePart = (part: Part): Buffer => {
  switch (field(part.headers, "Content-Transfer-Encoding")) {
    case "base64":
      return Buffer.from(part.body, "base64")
    case "quoted-printable":
      // RFC 2045 §6.7: "=" CRLF is a soft line break, "=XX" one octet.
      return Buffer.from(
        part.body.replace(/=\r\n/g, "").replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
        "latin1"
      )
    default:
      return Buffer.from(part.body, "latin1")
  }
}

const compose = (raw: Buffer, notice: QuarantineNotice = noticeFor(raw)) => composeNotice(raw, notice, envelope)

describe("composeNotice", () => {
  describe("the attachment is the original, byte for byte", () => {
    for (const original of originals) {
      it.effect(`${original.name} (${original.encoding})`, () =>
        Effect.gen(function*() {
          const notice = yield* compose(original.raw)
          const { attachment } = dissect(notice)

          expect(field(attachment.headers, "Content-Type")).toMatch(/^message\/rfc822\b/)
          expect(field(attachment.headers, "Content-Disposition")).toMatch(/^attachment; filename=original-[0-9a-f]{16}\.eml$/)
          expect(field(attachment.headers, "Content-Transfer-Encoding")).toBe(original.encoding)
          expect(decodePart(attachment).equals(original.raw)).toBe(true)

          const parsed = yield* Effect.promise(() => simpleParser(notice))
          expect(parsed.attachments).toHaveLength(1)
          const [parsedAttachment] = parsed.attachments
          expect(parsedAttachment!.contentType).toBe("message/rfc822")
          expect(parsedAttachment!.content.equals(original.raw)).toBe(true)
        }))
    }

    it.effect("an empty message", () =>
      Effect.gen(function*() {
        const raw = Buffer.alloc(0)
        const { attachment } = dissect(yield* compose(raw))
        expect(decodePart(attachment).length).toBe(0)
      }))

    it.effect("a Uint8Array that is a view into a larger buffer", () =>
      Effect.gen(function*() {
        const backing = Buffer.from("GARBAGE" + "Subject: view\r\n\r\nbody\r\n" + "GARBAGE", "latin1")
        const view = new Uint8Array(backing.buffer, backing.byteOffset + 7, backing.length - 14)
        const notice = yield* composeNotice(view, noticeFor(Buffer.from(view)), envelope)
        expect(decodePart(dissect(notice).attachment).toString("latin1")).toBe("Subject: view\r\n\r\nbody\r\n")
      }))
  })

  it.effect("every line of the notice ends with CRLF and fits RFC 5322 line limits", () =>
    Effect.gen(function*() {
      for (const original of originals) {
        const notice = (yield* compose(original.raw, noticeFor(original.raw, { detail: "d".repeat(5_000) }))).toString(
          "latin1"
        )
        expect(notice.endsWith("\r\n")).toBe(true)
        expect(notice.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/)
        for (const line of notice.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998)
      }
    }))

  it.effect("the notice carries the loop-breaking headers, our own Subject and Message-ID", () =>
    Effect.gen(function*() {
      const raw = crlf("From: boss@example.test", "Subject: Out of office", "Message-ID: <theirs@example.test>", "", "x", "")
      const notice = yield* compose(raw, noticeFor(raw, { reason: "auto-response" }))
      const { top, text } = dissect(notice)

      expect(field(top.headers, "Auto-Submitted")).toBe("auto-generated")
      expect(field(top.headers, "X-Mailintake-Quarantine")).toBe("auto-response")
      expect(field(top.headers, "Subject")).toBe("[mailintake quarantine] auto-response from support-inbox")
      expect(field(top.headers, "From")).toBe("mailintake@example.test")
      expect(field(top.headers, "To")).toBe("quarantine@example.test")
      expect(field(top.headers, "MIME-Version")).toBe("1.0")
      expect(field(top.headers, "Date")).toBeDefined()
      expect(field(top.headers, "Message-ID")).toMatch(/^<[0-9a-f]{32}\.quarantine@example\.test>$/)

      const body = decodePart(text).toString("utf8")
      expect(body).toContain("support-inbox")
      expect(body).toContain("auto-response")
      expect(body).toContain("1700000000:42")
      expect(body).toContain(createHash("sha256").update(raw).digest("hex"))
      expect(body).toContain("2024-05-01T12:00:00.000Z")
      expect(body).toContain("mailparser: unexpected end of input")
      expect(body).not.toMatch(/[^\r]\n/)

      const parsed = yield* Effect.promise(() => simpleParser(notice))
      expect(parsed.headers.get("auto-submitted")).toBe("auto-generated")
      expect(parsed.headers.get("x-mailintake-quarantine")).toBe("auto-response")
      expect(parsed.subject).toBe("[mailintake quarantine] auto-response from support-inbox")
      expect(parsed.messageId).not.toBe("<theirs@example.test>")
    }))

  it.effect("a retry of the same quarantine gets the same Message-ID, another quarantine another one", () =>
    Effect.gen(function*() {
      const raw = crlf("Subject: a", "", "b", "")
      const messageId = (n: Buffer) => field(splitHead(n.toString("latin1")).headers, "Message-ID")
      const first = messageId(yield* compose(raw))
      expect(messageId(yield* compose(raw))).toBe(first)
      expect(messageId(yield* compose(raw, noticeFor(raw, { ref: "1700000000:43" })))).not.toBe(first)
    }))

  describe("nothing from the message can inject a header", () => {
    const attacks = [
      "x\r\nBcc: victim@example.com",
      "x\nBcc: victim@example.com",
      "x\rBcc: victim@example.com",
      "x\r\n\r\nBcc: victim@example.com",
      "x\u2028Bcc: victim@example.com",
      "x\u0085Bcc: victim@example.com",
      "=?utf-8?q?x=0D=0ABcc:_victim@example.com?=",
      "x\r\n Bcc: victim@example.com"
    ]
    const expectedFields = [
      "auto-submitted",
      "content-type",
      "date",
      "from",
      "message-id",
      "mime-version",
      "subject",
      "to",
      "x-auto-response-suppress",
      "x-mailintake-quarantine"
    ]

    for (const attack of attacks) {
      it.effect(JSON.stringify(attack), () =>
        Effect.gen(function*() {
          const raw = crlf("Subject: evil", "", "body", "")
          const notice = yield* compose(
            raw,
            noticeFor(raw, { detail: attack, ref: attack, mailbox: `support${attack}` })
          )
          const { top, text } = dissect(notice)
          expect(fields(top.headers).map((f) => f.name.toLowerCase()).sort()).toEqual(expectedFields)
          expect(fields(text.headers).map((f) => f.name.toLowerCase()).sort()).toEqual([
            "content-transfer-encoding",
            "content-type"
          ])
          // The text survives, on one line, in the body.
          const body = decodePart(text).toString("utf8")
          expect(body.split("\r\n").filter((line) => line.includes("victim@example.com"))).toHaveLength(3)

          const parsed = yield* Effect.promise(() => simpleParser(notice))
          expect(parsed.bcc).toBeUndefined()
          expect(parsed.headers.has("bcc")).toBe(false)
          expect(parsed.attachments).toHaveLength(1)
        }))
    }

    it.effect("control characters are removed and long values are capped", () =>
      Effect.gen(function*() {
        const raw = crlf("Subject: evil", "", "body", "")
        const notice = yield* compose(
          raw,
          noticeFor(raw, { detail: `a\x00b\x1bc\x7fd\t${"e".repeat(10_000)}`, ref: "r".repeat(10_000) })
        )
        const body = decodePart(dissect(notice).text).toString("utf8")
        const detail = body.split("\r\n").find((line) => line.startsWith("Detail:"))!
        expect(detail).toMatch(/^Detail: +a b c d e+…$/)
        expect(Array.from(detail.replace(/^Detail: +/, ""))).toHaveLength(2_000)
        const ref = body.split("\r\n").find((line) => line.startsWith("Reference:"))!
        expect(Array.from(ref.replace(/^Reference: +/, ""))).toHaveLength(500)
      }))
  })
})
