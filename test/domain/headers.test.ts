import { Buffer } from "node:buffer"
import { describe, expect, it } from "vitest"
import {
  addressLocalParts,
  decodeHeaderText,
  findPartContentType,
  MAX_HEADER_FIELDS,
  parseHeaderBlock,
  parseStructuredValue,
  stripComments
} from "../../src/domain/headers.js"

const bytes = (text: string): Uint8Array => Buffer.from(text, "latin1")

describe("parseHeaderBlock", () => {
  it("reads fields up to the empty line and finds the body (CR LF)", () => {
    const raw = bytes("From: a@example.com\r\nSubject: Hello\r\n\r\nBody line\r\n")
    const headers = parseHeaderBlock(raw)
    expect(headers.fields).toEqual([
      { name: "From", value: "a@example.com" },
      { name: "Subject", value: "Hello" }
    ])
    expect(Buffer.from(raw.subarray(headers.bodyOffset)).toString("latin1")).toBe("Body line\r\n")
    expect(headers.truncated).toBe(false)
  })

  it("reads bare-LF messages", () => {
    const raw = bytes("From: a@example.com\nSubject: Hello\n\nBody\n")
    const headers = parseHeaderBlock(raw)
    expect(headers.get("subject")).toBe("Hello")
    expect(Buffer.from(raw.subarray(headers.bodyOffset)).toString("latin1")).toBe("Body\n")
  })

  it("looks names up case-insensitively and keeps every occurrence in order", () => {
    const headers = parseHeaderBlock(bytes("Received: one\r\nRECEIVED: two\r\nreceived: three\r\n\r\n"))
    expect(headers.get("Received")).toBe("one")
    expect(headers.getAll("rEcEiVeD")).toEqual(["one", "two", "three"])
    expect(headers.has("received")).toBe(true)
    expect(headers.has("subject")).toBe(false)
    expect(headers.get("subject")).toBeUndefined()
    expect(headers.getAll("subject")).toEqual([])
  })

  it("unfolds continuation lines by removing only the line break (RFC 5322 §2.2.3)", () => {
    const headers = parseHeaderBlock(
      bytes("Subject: a long\r\n\tsubject\r\n  folded twice\r\nContent-Type: multipart/report;\n report-type=delivery-status\n\n")
    )
    expect(headers.get("subject")).toBe("a long\tsubject  folded twice")
    expect(headers.get("content-type")).toBe("multipart/report; report-type=delivery-status")
  })

  it("treats a message without an empty line as all header", () => {
    const raw = bytes("From: a@example.com\r\nSubject: no body")
    const headers = parseHeaderBlock(raw)
    expect(headers.get("subject")).toBe("no body")
    expect(headers.bodyOffset).toBe(raw.length)
  })

  it("reads an empty message and one that starts with the empty line", () => {
    expect(parseHeaderBlock(new Uint8Array(0)).fields).toEqual([])
    const headers = parseHeaderBlock(bytes("\r\nSubject: in the body\r\n"))
    expect(headers.fields).toEqual([])
    expect(headers.bodyOffset).toBe(2)
  })

  it("skips lines that are not fields and continuations with no field before them", () => {
    const headers = parseHeaderBlock(
      bytes(" orphan continuation\r\nFrom sender@example.com Mon Jun  3 09:15:02 2024\r\nno colon here\r\n: empty name\r\nSubject: ok\r\n\r\n")
    )
    expect(headers.fields).toEqual([{ name: "Subject", value: "ok" }])
  })

  it("accepts blanks before the colon (RFC 5322 §4.5.8) and empty values", () => {
    const headers = parseHeaderBlock(bytes("Subject  : spaced\r\nX-Empty:\r\n\r\n"))
    expect(headers.get("subject")).toBe("spaced")
    expect(headers.get("x-empty")).toBe("")
  })

  it("reads bytes as latin1, one char per byte, NUL included", () => {
    const headers = parseHeaderBlock(Uint8Array.from([...bytes("X-Bin: a"), 0x00, 0xe9, 0xff, ...bytes("\r\n\r\n")]))
    expect(headers.get("x-bin")).toBe("a\u0000\u00e9\u00ff")
  })

  it("reads a message that is a view into a larger buffer", () => {
    const whole = bytes("garbage-before|Subject: inner\r\n\r\nbody")
    const view = whole.subarray(15)
    const headers = parseHeaderBlock(view)
    expect(headers.get("subject")).toBe("inner")
    expect(Buffer.from(view.subarray(headers.bodyOffset)).toString("latin1")).toBe("body")
  })

  it("stops at the field cap, marks the block truncated and still finds the body", () => {
    const lines = Array.from({ length: MAX_HEADER_FIELDS + 5 }, (_, i) => `X-N: ${i}\r\n`).join("")
    const raw = bytes(`${lines}\r\nbody`)
    const headers = parseHeaderBlock(raw)
    expect(headers.fields).toHaveLength(MAX_HEADER_FIELDS)
    expect(headers.truncated).toBe(true)
    expect(Buffer.from(raw.subarray(headers.bodyOffset)).toString("latin1")).toBe("body")
  })

  it("stops at the byte cap on a single huge line", () => {
    const raw = bytes(`Subject: ok\r\nX-Huge: ${"a".repeat(2 * 1024 * 1024)}\r\n\r\nbody`)
    const headers = parseHeaderBlock(raw)
    expect(headers.truncated).toBe(true)
    expect(headers.get("subject")).toBe("ok")
    expect(headers.has("x-huge")).toBe(false)
    expect(Buffer.from(raw.subarray(headers.bodyOffset)).toString("latin1")).toBe("body")
  })
})

describe("decodeHeaderText", () => {
  it("decodes RFC 2047 B and Q encoded words", () => {
    expect(decodeHeaderText("=?UTF-8?B?SGVsbG8gd8O2cmxk?=")).toBe("Hello wörld")
    expect(decodeHeaderText("=?iso-8859-1?Q?caf=E9?= au lait")).toBe("café au lait")
  })

  it("reads raw UTF-8 (RFC 6532) and leaves invalid UTF-8 as latin1", () => {
    expect(decodeHeaderText(Buffer.from("Grüße", "utf8").toString("latin1"))).toBe("Grüße")
    expect(decodeHeaderText("caf\u00e9")).toBe("café")
  })

  it("leaves malformed encoded words alone", () => {
    expect(decodeHeaderText("=?broken")).toBe("=?broken")
  })
})

describe("stripComments", () => {
  it("removes nested comments, keeping quoted strings and quoted-pairs", () => {
    expect(stripComments("auto-replied (vacation (nested) reply)").trim()).toBe("auto-replied")
    expect(stripComments('"(not a comment)" <a@b> (real)')).toBe('"(not a comment)" <a@b>  ')
    expect(stripComments("a (escaped \\) paren) b")).toBe("a   b")
    expect(stripComments("value (unclosed")).toBe("value ")
    expect(stripComments("no comment")).toBe("no comment")
  })
})

describe("parseStructuredValue", () => {
  it("reads the main token and parameters case-insensitively", () => {
    const { params, value } = parseStructuredValue('Multipart/Report; Report-Type="delivery-status";\tboundary="AbC;d"')
    expect(value).toBe("multipart/report")
    expect(params.get("report-type")).toBe("delivery-status")
    expect(params.get("boundary")).toBe("AbC;d")
  })

  it("ignores comments and keeps the first of a repeated parameter", () => {
    const { params, value } = parseStructuredValue("No (manual) ; a=1; A=2; flag")
    expect(value).toBe("no")
    expect(params.get("a")).toBe("1")
    expect(params.get("flag")).toBe("")
  })

  it("reads an empty value", () => {
    expect(parseStructuredValue("").value).toBe("")
  })
})

describe("addressLocalParts", () => {
  it.each([
    ["Mail Delivery System <MAILER-DAEMON@example.com>", ["mailer-daemon"]],
    ["MAILER-DAEMON@example.com (Mail Delivery System)", ["mailer-daemon"]],
    ['"Mail Delivery Subsystem" <mailer-daemon@googlemail.com>', ["mailer-daemon"]],
    ["MAILER-DAEMON", ["mailer-daemon"]],
    ['"postmaster, the" <Postmaster@example.com>, bob@example.com', ["postmaster", "bob"]],
    ['"MAILER-DAEMON" <alice@example.com>', ["alice"]],
    ['"quoted.local"@example.com', ["quoted.local"]],
    ["<@relay.example:user@example.com>", ["user"]],
    ["Team: a@example.com, b@example.com;", ["a", "b"]],
    ["undisclosed-recipients:;", []]
  ])("%s", (value, expected) => {
    expect(addressLocalParts(value)).toEqual(expected)
  })
})

describe("findPartContentType", () => {
  const isDsn = (type: string) => type === "message/delivery-status"

  it("finds a part header at any depth, folded or not", () => {
    const body = bytes(
      "--outer\r\nContent-Type: multipart/report; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\ntext\r\n" +
        "--inner\r\nContent-Description: Delivery report\r\ncontent-TYPE :\r\n\tMessage/Delivery-Status (dsn)\r\n\r\nReporting-MTA: dns; mx\r\n--inner--\r\n--outer--\r\n"
    )
    expect(findPartContentType(body, isDsn)).toBe("message/delivery-status")
  })

  it("ignores the same text in a part body", () => {
    const body = bytes("--b\r\nContent-Type: text/plain\r\n\r\nContent-Type: message/delivery-status\r\n--b--\r\n")
    expect(findPartContentType(body, isDsn)).toBeUndefined()
  })

  it("finds a part header at the very end of the body", () => {
    expect(findPartContentType(bytes("--b\nContent-Type: message/delivery-status"), isDsn)).toBe("message/delivery-status")
  })
})
