/**
 * The backlog connection's response reader and FETCH item parser (src/sources/imap/BulkFetch.ts)
 * on byte streams cut at every offset; its use against Dovecot is in ImapSource.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import { fetchedMessage, quoted, ResponseReader } from "../../../src/sources/imap/BulkFetch.js"

const bytes = (text: string) => Buffer.from(text, "latin1")

/** Every response in `stream`, fed in pieces of `piece` bytes. */
const readAll = (stream: Buffer, piece: number) => {
  const reader = new ResponseReader()
  const responses = []
  for (let at = 0; at < stream.length; at += piece) {
    reader.push(stream.subarray(at, at + piece))
    for (let response = reader.next(); response !== undefined; response = reader.next()) responses.push(response)
  }
  return responses
}

const message = bytes("Subject: {5}\r\n\r\n) BODY[] {3}\r\nA1 OK not a tag\r\n\u00e9\r\n")
const literal = (body: Buffer) => Buffer.concat([bytes(`{${body.length}}\r\n`), body])

describe("ResponseReader", () => {
  const stream = Buffer.concat([
    bytes("* 3 EXISTS\r\n"),
    bytes("* 1 FETCH (UID 7 BODY[] "),
    literal(message),
    bytes(")\r\n* 2 FETCH (BODY[] "),
    literal(Buffer.alloc(0)),
    bytes(" UID 9)\r\nB4 OK done\r\n")
  ])

  it("splits responses and literals the same whatever the pieces they arrive in", () => {
    for (const piece of [1, 2, 3, 7, 64, stream.length]) {
      const responses = readAll(stream, piece)
      expect(responses.map((response) => response.literals.length), `pieces of ${piece}`).toEqual([0, 1, 1, 0])
      expect(responses[0]!.text).toBe("* 3 EXISTS")
      expect(responses[1]!.literals[0]!.equals(message), `pieces of ${piece}`).toBe(true)
      expect(responses[3]!.text).toBe("B4 OK done")
      expect(fetchedMessage(responses[1]!)).toEqual({ uid: 7, raw: message })
      expect(fetchedMessage(responses[2]!)).toEqual({ uid: 9, raw: Buffer.alloc(0) })
    }
  })

  it("refuses a line that never ends", () => {
    const reader = new ResponseReader()
    reader.push(Buffer.alloc(70 * 1024, "a"))
    expect(() => reader.next()).toThrow(/longer than/)
  })
})

describe("fetchedMessage", () => {
  it("reads the items in any order, past lists, strings and literals it did not ask for", () => {
    const stream = Buffer.concat([
      bytes("* 12 FETCH (FLAGS (\\Seen $Label \"x)\") X-GM-LABELS ("),
      literal(bytes("label ) with paren")),
      bytes(") BODY[HEADER.FIELDS (SUBJECT)] "),
      literal(bytes("Subject: not this one\r\n")),
      bytes(" RFC822.SIZE 5 BODY[] "),
      literal(bytes("right")),
      bytes(" UID 4242)\r\n")
    ])
    const [parsed] = readAll(stream, 5)
    expect(fetchedMessage(parsed!)).toEqual({ uid: 4242, raw: bytes("right") })
  })

  it("takes a body sent as a quoted string, and lowercase item names", () => {
    const [parsed] = readAll(bytes("* 1 FETCH (uid 3 body[] \"a \\\"quoted\\\" \\\\ body\")\r\n"), 4)
    expect(fetchedMessage(parsed!)).toEqual({ uid: 3, raw: bytes("a \"quoted\" \\ body") })
  })

  it("has nothing for a FETCH without a body or without a UID (a flag change, NIL), or another response", () => {
    for (const text of ["* 1 FETCH (UID 3 FLAGS (\\Deleted))", "* 1 FETCH (UID 3 BODY[] NIL)", "* 1 FETCH (BODY[] \"x\")", "* 1 EXPUNGE", "B1 OK"]) {
      const [parsed] = readAll(bytes(`${text}\r\n`), 3)
      expect(fetchedMessage(parsed!), text).toBeUndefined()
    }
  })

  it("a literal's bytes are the message as sent: CR, LF, NUL, 8-bit and a line that looks like a tag", () => {
    const body = Buffer.from([0x41, 0x0d, 0x0a, 0x00, 0xff, 0x0a, 0x0d, 0x42, ...bytes("\r\nB1 OK\r\n* BYE\r\n")])
    const [parsed] = readAll(Buffer.concat([bytes("* 9 FETCH (UID 1 BODY[] "), literal(body), bytes(")\r\n")]), 2)
    expect(fetchedMessage(parsed!)?.raw.equals(body)).toBe(true)
  })
})

describe("quoted", () => {
  it("quotes what a quoted string can carry, escaping \" and \\, and refuses the rest", () => {
    expect(quoted("INBOX")).toBe("\"INBOX\"")
    expect(quoted("pa\"ss\\word")).toBe("\"pa\\\"ss\\\\word\"")
    for (const text of ["line\r\nbreak", "caf\u00e9", "nul\u0000"]) expect(quoted(text), text).toBeUndefined()
  })
})
