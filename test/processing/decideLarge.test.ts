/**
 * Large messages are parsed as a stream (attachments counted, not kept): the decision and the
 * summary must be the ones `decideMessage` (simpleParser) gives for the same bytes.
 */
import { describe, expect, it } from "@effect/vitest"
import { decideMessage } from "../../src/processing/decide.js"
import { decideLargeMessage, summarizeLarge } from "../../src/processing/decideLarge.js"
import { summarize } from "../../src/processing/summarize.js"
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

const options = { maxMessageBytes: 50_000_000, quarantineListMail: false, parseTimeoutMillis: 30_000 }
const never = new Promise<never>(() => {})

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
      const streamed = await summarizeLarge(raw, never).catch((error) => `error: ${error}`)
      const simple = await summarize(raw).catch((error) => `error: ${error}`)
      expect(streamed).toEqual(simple)
    })
  }

  it("reports each attachment's decoded size without keeping it", async () => {
    const summary = await summarizeLarge(largeMessage(8, 5 * 1024 * 1024), never)
    expect(summary.attachments).toHaveLength(1)
    expect(summary.attachments[0]!.size).toBe(Math.ceil((5 * 1024 * 1024) / 78) * 57)
  })
})

describe("decideLargeMessage", () => {
  it("decides as decideMessage does, also for messages that go to quarantine", async () => {
    const raws = [largeMessage(9, 5 * 1024 * 1024), samples.vacationReply(), samples.deliveryStatusBounce(), samples.oversized(2_000), bareLfMessage(10)]
    for (const raw of raws) {
      const small = { ...options, maxMessageBytes: 1_000 }
      for (const opts of [options, small]) {
        const large = await decideLargeMessage(raw, opts)
        const simple = await decideMessage(raw, opts)
        // The CR LF bytes are compared as bytes (toEqual walks a 5 MB array element by element).
        const { crlf: largeCrlf, ...largeRest } = large as { crlf?: Uint8Array }
        const { crlf: simpleCrlf, ...simpleRest } = simple as { crlf?: Uint8Array }
        expect(largeRest).toEqual(simpleRest)
        expect(largeCrlf === undefined ? undefined : Buffer.compare(largeCrlf, simpleCrlf!)).toBe(simpleCrlf === undefined ? undefined : 0)
      }
    }
  })

  it("turns a parse over its time limit into processing-error", async () => {
    const decision = await decideLargeMessage(largeMessage(11, 5 * 1024 * 1024), { ...options, parseTimeoutMillis: 1 })
    expect(decision).toMatchObject({ _tag: "Quarantine", reason: "processing-error" })
    expect((decision as { detail: string }).detail).toMatch(/longer than 1 ms/)
  })
})
