/**
 * The spool (src/processing/bodySpool.ts) must write exactly the body mailparser's text would
 * give — `textToCrlf` of the parts, each normalised `\r?\n` → `\n`, joined by `\n` with
 * mailparser's own pieces — however the decoded bytes are cut, and leave no file behind but a
 * large body's.
 */
import { describe, expect, it } from "@effect/vitest"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BodySpool, htmlPart, HTML_TO_TEXT_MAX_BYTES, INLINE_BODY_MAX_BYTES, sweepSpool } from "../../src/processing/bodySpool.js"
import { textToCrlf } from "../../src/processing/crlf.js"
import { prng, type Prng } from "../torture/lib/prng.js"

type Piece = { readonly part: string } | { readonly literal: string }

/** What mailparser and the summary make of these pieces without a spool. */
const reference = (pieces: ReadonlyArray<Piece>): string =>
  textToCrlf(
    pieces.flatMap((piece) => ("part" in piece ? (piece.part === "" ? [] : [piece.part.replace(/\r?\n/g, "\n")]) : [piece.literal])).join("\n")
  )

/** The same through a spool, each part's UTF-8 bytes fed in random cuts (some of them strings). */
const spooled = (directory: string, pieces: ReadonlyArray<Piece>, r: Prng): string => {
  const spool = new BodySpool(directory)
  const text = pieces.flatMap((piece) => {
    if ("literal" in piece) return [piece.literal]
    const writer = spool.textPart()
    const bytes = Buffer.from(piece.part, "utf8")
    for (let offset = 0; offset < bytes.length;) {
      const cut = Math.min(bytes.length, offset + r.int(1, 7))
      const chunk = bytes.subarray(offset, cut)
      // A decoder stream may give a string; whole characters only, as a charset decoder would.
      writer.write(r.chance(0.2) && chunk.toString("utf8") === chunk.toString("latin1") ? chunk.toString("latin1") : chunk)
      offset = cut
    }
    const marker = writer.end()
    return marker === "" ? [] : [marker]
  }).join("\n")
  const result = spool.finish(text)
  if ("body" in result) return result.body
  const body = readFileSync(result.spooled.path, "utf8")
  rmSync(result.spooled.path)
  return body
}

const ALPHABET = ["\r", "\n", "\r\n", "a", "é", "😀", " "]
const randomText = (r: Prng) => Array.from({ length: r.int(0, 12) }, () => r.pick(ALPHABET)).join("")

const withDirectory = <A>(body: (directory: string) => A): A => {
  const directory = mkdtempSync(join(tmpdir(), "mailintake-spool-test-"))
  try {
    return body(directory)
  } finally {
    rmSync(directory, { recursive: true, force: true })
  }
}

describe("the body spool", () => {
  it("writes textToCrlf of mailparser's text, however the parts are cut (random text over CR, LF and multibyte characters)", () =>
    withDirectory((directory) => {
      const r = prng(271)
      for (let i = 0; i < 5000; i++) {
        const pieces = Array.from({ length: r.int(0, 4) }, (): Piece => (r.chance(0.7) ? { part: randomText(r) } : { literal: randomText(r) }))
        const expected = reference(pieces)
        const actual = spooled(directory, pieces, r)
        if (actual !== expected) expect({ pieces, actual }).toEqual({ pieces, actual: expected })
      }
      expect(readdirSync(directory)).toEqual([])
    }))

  it("decodes invalid UTF-8 as mailparser does, across cuts", () =>
    withDirectory((directory) => {
      const r = prng(272)
      for (let i = 0; i < 2000; i++) {
        const bytes = Buffer.from(Array.from({ length: r.int(1, 10) }, () => r.pick([0x41, 0x0d, 0x0a, 0xc3, 0xa9, 0xe2, 0x82, 0xff, 0xf0, 0x9f])))
        const spool = new BodySpool(directory)
        const writer = spool.textPart()
        for (let offset = 0; offset < bytes.length; offset++) writer.write(bytes.subarray(offset, offset + 1))
        const result = spool.finish(writer.end())
        expect(result).toEqual({ body: textToCrlf(bytes.toString().replace(/\r?\n/g, "\n")) })
      }
    }))

  it("keeps a body over INLINE_BODY_MAX_BYTES as a file, named by its sha256, with mailparser's pieces around it", () =>
    withDirectory((directory) => {
      const large = "line of text\n".repeat(Math.ceil((INLINE_BODY_MAX_BYTES + 10) / 13))
      const pieces: Array<Piece> = [{ literal: "\nFrom: a@example.test\n" }, { part: large }, { part: "" }, { literal: "html text\r" }]
      const spool = new BodySpool(directory)
      const markers = pieces.flatMap((piece) => {
        if ("literal" in piece) return [piece.literal]
        const writer = spool.textPart()
        writer.write(Buffer.from(piece.part))
        const marker = writer.end()
        return marker === "" ? [] : [marker]
      })
      const result = spool.finish(markers.join("\n"))
      if (!("spooled" in result)) throw new Error("expected a spooled body")
      const body = readFileSync(result.spooled.path)
      expect(body.toString("utf8")).toBe(reference(pieces))
      expect(result.spooled.size).toBe(body.length)
      expect(result.spooled.sha256).toMatch(/^[0-9a-f]{64}$/)
      // The parts file is gone; the body is the one file left.
      expect(readdirSync(directory)).toEqual([result.spooled.path.slice(directory.length + 1)])
    }))

  it("leaves nothing behind when a parse is discarded", () =>
    withDirectory((directory) => {
      const spool = new BodySpool(directory)
      // More than the spool gathers before it writes.
      spool.textPart().write(Buffer.alloc(512 * 1024, 0x61))
      expect(readdirSync(directory)).toHaveLength(1)
      spool.discard()
      expect(readdirSync(directory)).toEqual([])
    }))

  it("gives an HTML part to mailparser whole, or — over HTML_TO_TEXT_MAX_BYTES — as nothing", () => {
    const small = htmlPart()
    small.write(Buffer.from("<p>a</p>\r\n"))
    small.write("<p>b</p>")
    expect(small.end()).toBe("<p>a</p>\n<p>b</p>")
    const large = htmlPart()
    for (let i = 0; i <= HTML_TO_TEXT_MAX_BYTES / 65536; i++) large.write(Buffer.alloc(65536, 0x61))
    expect(large.end()).toBe("")
  })
})

describe("sweepSpool", () => {
  it("deletes files of processes that ended and files older than an hour, and keeps the rest", () =>
    withDirectory((directory) => {
      // A pid no process has (above the kernel's pid_max).
      const gone = join(directory, "99999999-0b6e2a1e-7d6c-4f3b-9a51-3f2c1d0e9b8a.body")
      const mine = join(directory, `${process.pid}-1c6e2a1e-7d6c-4f3b-9a51-3f2c1d0e9b8a.parts`)
      const old = join(directory, `${process.pid}-2c6e2a1e-7d6c-4f3b-9a51-3f2c1d0e9b8a.body`)
      const other = join(directory, "notes.txt")
      for (const path of [gone, mine, old, other]) writeFileSync(path, "x")
      const twoHoursAgo = (Date.now() - 2 * 60 * 60 * 1000) / 1000
      utimesSync(old, twoHoursAgo, twoHoursAgo)
      expect(sweepSpool(directory)).toBe(2)
      expect([gone, mine, old, other].map(existsSync)).toEqual([false, true, false, true])
    }))

  it("is quiet about a directory that is not there", () => {
    expect(sweepSpool(join(tmpdir(), "mailintake-no-such-spool"))).toBe(0)
  })
})
