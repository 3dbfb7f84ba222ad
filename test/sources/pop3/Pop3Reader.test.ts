import { Buffer } from "node:buffer"
import { describe, expect, it } from "vitest"
import { bodyLines, Pop3Reader } from "../../../src/sources/pop3/Pop3Reader.js"

const bytes = (text: string): Buffer => Buffer.from(text, "latin1")

/** What a server sends for `message` (RFC 1939 §3): lines starting with "." get one more. */
const stuff = (message: Buffer): Buffer => {
  const parts: Array<Buffer> = []
  let start = 0
  while (start < message.length) {
    const crlf = message.indexOf("\r\n", start, "latin1")
    const end = crlf === -1 ? message.length : crlf + 2
    if (message[start] === 0x2e) parts.push(bytes("."))
    parts.push(message.subarray(start, end))
    start = end
  }
  return Buffer.concat(parts)
}

const retrResponse = (message: Buffer): Buffer =>
  Buffer.concat([bytes(`+OK ${message.length} octets\r\n`), stuff(message), bytes(".\r\n")])

const NEXT = bytes("+OK next response\r\n")

interface Outcome {
  readonly status: string
  readonly data: Buffer
  readonly next: string | undefined
}

/** Feeds the pieces one by one, reading as a client would after each: status, body, next status. */
const run = (pieces: ReadonlyArray<Buffer>): Outcome => {
  const reader = new Pop3Reader()
  let status: string | undefined
  const data: Array<Buffer> = []
  let done = false
  let next: string | undefined
  for (const piece of pieces) {
    reader.push(piece)
    if (status === undefined) {
      const line = reader.readLine()
      if (line === undefined) continue
      status = line.toString("latin1")
    }
    if (!done) {
      const read = reader.readData()
      data.push(...read.chunks)
      done = read.done
      if (!done) continue
    }
    if (next === undefined) next = reader.readLine()?.toString("latin1")
  }
  if (status === undefined || !done) throw new Error(`response incomplete (status ${status}, done ${done})`)
  return { status, data: Buffer.concat(data), next }
}

/** Every way to cut `wire` in two, plus byte by byte. */
function* splits(wire: Buffer): Generator<Array<Buffer>> {
  for (let at = 0; at <= wire.length; at++) yield [wire.subarray(0, at), wire.subarray(at)]
  yield [...wire].map((byte) => Buffer.from([byte]))
}

/** Every way to cut `wire` in three (for short inputs). */
function* splits3(wire: Buffer): Generator<Array<Buffer>> {
  for (let a = 0; a <= wire.length; a++) {
    for (let b = a; b <= wire.length; b++) yield [wire.subarray(0, a), wire.subarray(a, b), wire.subarray(b)]
  }
}

const tricky = Buffer.concat([
  bytes("From: a@example.test\r\nSubject: dots\r\n\r\n"),
  bytes(".\r\n"), // a line that is a single dot: sent as "..", must come back as "."
  bytes("..\r\n"),
  bytes("...\r\n"),
  bytes(".x leading dot\r\n"),
  bytes("\r\n"), // empty line
  bytes("bare CR\rinside\r\n"),
  bytes("a\r.\r\n"), // CR "." CRLF without LF before it: not a terminator
  bytes("b\n.\r\n"), // bare LF "." CRLF: not a line start, so not a terminator either
  bytes("c\r\r\n"), // CR CR LF
  bytes(".\r.\r\n"), // dot, CR, dot: stuffed as "..\r."
  Buffer.from([0x38, 0x62, 0x69, 0x74, 0x3a, 0x20, 0xff, 0xfe, 0x00, 0x80, 0xc3, 0xa9, 0x0d, 0x0a]), // 8-bit and NUL
  Buffer.from([0x2e, 0xe9, 0x0d, 0x0a]), // ".é" in latin1: stuffed, 8-bit after the dot
  bytes("last line\r\n")
])

describe("Pop3Reader: RETR split at every byte", () => {
  const cases: Array<[string, Buffer]> = [
    ["an empty body", Buffer.alloc(0)],
    ["a body that is one line of a single dot", bytes(".\r\n")],
    ["lines of dots, bare CR, bare LF and 8-bit bytes", tricky]
  ]
  for (const [name, message] of cases) {
    it(`${name}: exact bytes, whatever the cuts`, () => {
      const wire = Buffer.concat([retrResponse(message), NEXT])
      let count = 0
      for (const pieces of splits(wire)) {
        const outcome = run(pieces)
        expect(outcome.status).toBe(`+OK ${message.length} octets`)
        expect(outcome.data.equals(message)).toBe(true)
        expect(outcome.next).toBe("+OK next response")
        count++
      }
      expect(count).toBe(wire.length + 2)
    })
  }

  it("the terminator cut in three anywhere (every pair of cut points)", () => {
    const message = bytes(".\r\n..\r\n...\r\nx\r.\r\n\r\n")
    const wire = Buffer.concat([retrResponse(message), NEXT])
    for (const pieces of splits3(wire)) {
      const outcome = run(pieces)
      expect(outcome.data.equals(message)).toBe(true)
      expect(outcome.next).toBe("+OK next response")
    }
  })

  it("a stuffed line is the only way a dot line appears: \".\\r\\n\" ends the body", () => {
    const reader = new Pop3Reader()
    reader.push(bytes("+OK\r\nbefore\r\n.\r\nafter\r\n.\r\n"))
    expect(reader.readLine()?.toString("latin1")).toBe("+OK")
    const read = reader.readData()
    expect(read.done).toBe(true)
    expect(Buffer.concat(read.chunks).toString("latin1")).toBe("before\r\n")
    // What follows the terminator is left for the next response.
    expect(reader.buffered).toBe("after\r\n.\r\n".length)
  })

  it("follows the client rule for unstuffed dot lines from a lax server (RFC 1939 §3)", () => {
    // "If so and if octets other than CRLF follow, the first octet of the line is stripped."
    const reader = new Pop3Reader()
    reader.push(bytes("+OK\r\n.x\r\n.\rz\r\n.\r\n"))
    reader.readLine()
    const read = reader.readData()
    expect(read.done).toBe(true)
    expect(Buffer.concat(read.chunks).toString("latin1")).toBe("x\r\n\rz\r\n")
  })

  it("waits for more when the body has not ended", () => {
    const reader = new Pop3Reader()
    reader.push(bytes("+OK\r\nabc\r\n."))
    reader.readLine()
    const first = reader.readData()
    expect(first.done).toBe(false)
    expect(Buffer.concat(first.chunks).toString("latin1")).toBe("abc\r\n")
    reader.push(bytes("\r"))
    expect(reader.readData()).toEqual({ chunks: [], done: false })
    reader.push(bytes("\n"))
    expect(reader.readData()).toEqual({ chunks: [], done: true })
  })
})

describe("Pop3Reader: large bodies", () => {
  it("hands out views of the received chunks, never a copy of the message", () => {
    const line = Buffer.alloc(998, 0xe9) // 8-bit filler, never decoded
    const lines: Array<Buffer> = []
    for (let size = 0; size < 5 * 1024 * 1024; size += 1000) lines.push(line, bytes("\r\n"))
    const message = Buffer.concat(lines)
    const wire = retrResponse(message)
    const received: Array<Buffer> = []
    for (let at = 0; at < wire.length; at += 65536) received.push(Buffer.from(wire.subarray(at, at + 65536)))
    const reader = new Pop3Reader()
    const out: Array<Buffer> = []
    let status: Buffer | undefined
    let done = false
    for (const chunk of received) {
      reader.push(chunk)
      status ??= reader.readLine()
      if (status === undefined) continue
      const read = reader.readData()
      out.push(...read.chunks)
      done = read.done
    }
    expect(done).toBe(true)
    expect(Buffer.concat(out).equals(message)).toBe(true)
    const backing = new Set(received.map((chunk) => chunk.buffer))
    expect(out.every((chunk) => backing.has(chunk.buffer as ArrayBuffer))).toBe(true)
    expect(reader.buffered).toBe(0)
  })
})

describe("Pop3Reader: status lines and small listings", () => {
  it("a status line split at every byte", () => {
    const wire = bytes("+OK Dovecot ready. <1.2@host>\r\n-ERR [AUTH] no\r\n")
    for (const pieces of splits(wire)) {
      const reader = new Pop3Reader()
      const lines: Array<string> = []
      for (const piece of pieces) {
        reader.push(piece)
        for (let line = reader.readLine(); line !== undefined; line = reader.readLine()) lines.push(line.toString("latin1"))
      }
      expect(lines).toEqual(["+OK Dovecot ready. <1.2@host>", "-ERR [AUTH] no"])
    }
  })

  const multilineCases: Array<[string, string, Array<string>]> = [
    [
      "CAPA",
      "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n",
      ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "STLS", "USER", "SASL PLAIN LOGIN"]
    ],
    [
      "UIDL",
      "+OK\r\n1 00000001536a7f2b\r\n2 ..dotted-uid\r\n3 000000025.ab\r\n.\r\n",
      // Dots inside a line are data: only a dot at the start of a line is special.
      ["1 00000001536a7f2b", "2 ..dotted-uid", "3 000000025.ab"]
    ],
    ["an empty LIST", "+OK 0 messages\r\n.\r\n", []]
  ]
  for (const [name, wireText, expected] of multilineCases) {
    it(`${name} split at every byte`, () => {
      const wire = Buffer.concat([bytes(wireText), NEXT])
      for (const pieces of splits(wire)) {
        const outcome = run(pieces)
        expect(bodyLines(outcome.data)).toEqual(expected)
        expect(outcome.next).toBe("+OK next response")
      }
    })
  }
})
