/**
 * Messages are parsed as a stream (attachments counted, not kept): the summary must be the one
 * mailparser's `simpleParser` gives for the same bytes (the reference below), and a parse over
 * its time limit must end as processing-error.
 */
import { describe, expect, it } from "@effect/vitest"
import { type AddressObject, simpleParser } from "mailparser"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { INLINE_BODY_MAX_BYTES } from "../../src/processing/bodySpool.js"
import { decideMessage } from "../../src/processing/decide.js"
import { textToCrlf } from "../../src/processing/crlf.js"
import { summarize, summarizeWithMailparser } from "../../src/processing/summarize.js"
import { headerDate, type Summary } from "../../src/processing/summaryFields.js"
import {
  bareLfMessage,
  dotLinesMessage,
  eightBitNoEncoding,
  largeMessage,
  latin1Message,
  multipartWithAttachment,
  plainMessage
} from "../support/messages.js"
import * as samples from "../support/quarantineSamples.js"
import { prng, randomMessage } from "../support/randomMime.js"
import { hostileCorpus } from "../torture/lib/hostile.js"

const options = { maxMessageBytes: 50_000_000, quarantineListMail: false, parseTimeoutMillis: 30_000 }

/** The reference: the summary read off simpleParser's fields (what the service used before). */
const addressesOf = (field: AddressObject | ReadonlyArray<AddressObject> | undefined): Array<string> => {
  if (field === undefined) return []
  const flatten = (entry: AddressObject["value"][number]): Array<string> =>
    entry.group !== undefined ? entry.group.flatMap(flatten) : entry.address ? [entry.address] : entry.name ? [entry.name] : []
  return (Array.isArray(field) ? field : [field as AddressObject]).flatMap((object) => object.value.flatMap(flatten))
}
const reference = async (raw: Uint8Array): Promise<Summary> => {
  const parsed = await simpleParser(Buffer.from(raw), { skipHtmlToText: false, skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true })
  return {
    messageId: parsed.messageId ?? "",
    from: addressesOf(parsed.from)[0] ?? "",
    to: addressesOf(parsed.to),
    cc: addressesOf(parsed.cc),
    subject: typeof parsed.subject === "string" ? parsed.subject : "",
    // simpleParser gives the time of parsing for a Date it cannot read; the summary gives null.
    date: headerDate(parsed.headerLines)?.toISOString() ?? null,
    attachments: parsed.attachments.map((attachment) => ({
      filename: typeof attachment.filename === "string" ? attachment.filename : "",
      contentType: typeof attachment.contentType === "string" && attachment.contentType !== "" ? attachment.contentType : "application/octet-stream",
      size: Number.isFinite(attachment.size) ? attachment.size : (attachment.content?.length ?? 0)
    })),
    body: textToCrlf(parsed.text ?? "")
  }
}

const html = Buffer.from([
  "From: \"Ann Example\" <ann@example.test>",
  "To: Team: bob@example.test, carl@example.test;, dora@example.test",
  "Cc: eve@example.test",
  "Subject: =?UTF-8?B?w6l0w6k=?=",
  "Date: Tue, 1 Apr 2025 10:00:00 +0000",
  "Message-ID: <html-1@example.test>",
  "MIME-Version: 1.0",
  "Content-Type: multipart/mixed; boundary=b1",
  "",
  "--b1",
  "Content-Type: text/html; charset=utf-8",
  "",
  "<p>Hello <b>there</b></p><img src=\"cid:logo\">",
  "--b1",
  "Content-Type: image/png; name=logo.png",
  "Content-ID: <logo>",
  "Content-Transfer-Encoding: base64",
  "",
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  "--b1",
  "Content-Type: application/octet-stream",
  "Content-Disposition: attachment",
  "",
  "no name, no encoding",
  "--b1--",
  ""
].join("\r\n"))

const messages: ReadonlyArray<[string, Buffer]> = [
  ["plain", plainMessage(1)],
  ["multipart with an attachment", multipartWithAttachment(2, 40_000)],
  ["latin1", latin1Message(3)],
  ["8-bit without a transfer encoding", eightBitNoEncoding(4)],
  ["bare LF", bareLfMessage(5)],
  ["dot lines", dotLinesMessage(6)],
  ["html, inline image, unnamed attachment, groups", html],
  ["unparseable", samples.unparseable()],
  ["large (5 MB attachment)", largeMessage(7, 5 * 1024 * 1024)]
]

describe("the streaming summary", () => {
  for (const [label, raw] of messages) {
    it(`is the summary simpleParser gives: ${label}`, async () => {
      const streamed = await summarize(raw).catch((error) => `error: ${error}`)
      const simple = await reference(raw).catch((error) => `error: ${error}`)
      expect(streamed).toEqual(simple)
    })
  }

  it("reports each attachment's decoded size without keeping it", async () => {
    const summary = await summarize(largeMessage(8, 5 * 1024 * 1024))
    expect(summary.attachments).toHaveLength(1)
    expect(summary.attachments[0]!.size).toBe(Math.ceil((5 * 1024 * 1024) / 78) * 57)
  })
})

describe("a spooled body (text parts written to a file as they are decoded)", () => {
  const spoolDirectory = mkdtempSync(join(tmpdir(), "mailintake-summarize-spool-"))

  /** The summary with every text part spooled (as for a large message), its body read back from a file when it stayed one. */
  const spooledSummary = async (raw: Uint8Array) => {
    const summary = await summarizeWithMailparser(raw, { spoolDirectory, spoolFrom: 0 })
    if (summary.spooledBody === undefined) return summary
    const { spooledBody, ...rest } = summary
    const body = readFileSync(spooledBody.path, "utf8")
    rmSync(spooledBody.path)
    return { ...rest, body }
  }
  const expectSame = async (label: string, raw: Buffer) => {
    const spooled = await spooledSummary(raw).catch((error) => `error: ${error}`)
    const kept = await summarizeWithMailparser(raw).catch((error) => `error: ${error}`)
    if (JSON.stringify(spooled) !== JSON.stringify(kept)) {
      expect({ label, spooled, raw: raw.toString("latin1").slice(0, 4000) }).toEqual({ label, spooled: kept, raw: raw.toString("latin1").slice(0, 4000) })
    }
  }

  it("is the summary mailparser gives with the text kept, on the messages above and hostile ones", async () => {
    for (const [label, raw] of messages) await expectSame(label, raw)
    for (const [i, message] of hostileCorpus(prng(12), 150, { heavy: false }).entries()) {
      await expectSame(`hostile ${i} (${message.kind})`, Buffer.from(message.bytes))
    }
    expect(readdirSync(spoolDirectory)).toEqual([])
  })

  it("is the summary mailparser gives with the text kept, on random MIME trees (HTML turned into text, embedded messages, charsets, flowed text)", async () => {
    const r = prng(20261128)
    for (let i = 0; i < 1500; i++) await expectSame(`random ${i}`, randomMessage(r, i))
    expect(readdirSync(spoolDirectory)).toEqual([])
  }, 120_000)

  it("stays a file when it is over INLINE_BODY_MAX_BYTES, and only then", async () => {
    const text = (bytes: number) =>
      Buffer.from(`Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${"é and some text to make a line\n".repeat(Math.ceil(bytes / 33))}`)
    const large = await summarizeWithMailparser(text(INLINE_BODY_MAX_BYTES + 100), { spoolDirectory, spoolFrom: 0 })
    expect(large.body).toBe("")
    expect(large.spooledBody?.size).toBeGreaterThan(INLINE_BODY_MAX_BYTES)
    expect(readFileSync(large.spooledBody!.path, "utf8")).toBe((await summarizeWithMailparser(text(INLINE_BODY_MAX_BYTES + 100))).body)
    rmSync(large.spooledBody!.path)
    const small = await summarizeWithMailparser(text(INLINE_BODY_MAX_BYTES - 1000), { spoolDirectory, spoolFrom: 0 })
    expect(small.spooledBody).toBeUndefined()
    expect(small.body.length).toBeGreaterThan(INLINE_BODY_MAX_BYTES / 2)
    expect(readdirSync(spoolDirectory)).toEqual([])
  })

  it("leaves nothing in the spool when the parse is stopped", async () => {
    const decision = await decideMessage(largeMessage(13, 5 * 1024 * 1024), { ...options, parseTimeoutMillis: 1 }, { spoolDirectory })
    expect(decision).toMatchObject({ _tag: "Quarantine", reason: "processing-error" })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(readdirSync(spoolDirectory)).toEqual([])
  })
})

describe("the date", () => {
  const withDate = (...date: Array<string>) =>
    Buffer.from([...date, "From: a@example.test", "Subject: s", "", "body", ""].join("\r\n"))
  it("is the Date header's time", async () => {
    expect((await summarize(withDate("Date: Tue, 1 Apr 2025 12:00:00 +0200 (CEST)"))).date).toBe("2025-04-01T10:00:00.000Z")
    expect((await summarize(withDate("Date: Tue, 1 Apr 2025", "  12:00:00 +0200"))).date).toBe("2025-04-01T10:00:00.000Z")
  })
  it("is null, not the time of parsing, when the message has none or an unreadable one", async () => {
    expect((await summarize(withDate())).date).toBeNull()
    expect((await summarize(withDate("Date: the day after tomorrow"))).date).toBeNull()
  })
})

describe("decideMessage", () => {
  it("turns a parse over its time limit into processing-error", async () => {
    const decision = await decideMessage(largeMessage(11, 5 * 1024 * 1024), { ...options, parseTimeoutMillis: 1 })
    expect(decision).toMatchObject({ _tag: "Quarantine", reason: "processing-error" })
    expect((decision as { detail: string }).detail).toMatch(/longer than 1 ms/)
  })
})
