/**
 * Line endings (src/processing/crlf.ts) against a one-line regular-expression reference, on
 * every string of up to 7 characters over CR, LF and two others, as Buffers, as plain
 * Uint8Arrays at an offset, and as text.
 */
import { describe, expect, it } from "@effect/vitest"
import { Buffer } from "node:buffer"
import { hasOnlyCrlf, textHasOnlyCrlf, toCrlf } from "../../src/processing/crlf.js"

const ALPHABET = ["\r", "\n", "a", "."]

const allStrings = (maxLength: number): Array<string> => {
  const out = [""]
  let layer = [""]
  for (let length = 1; length <= maxLength; length++) {
    layer = layer.flatMap((prefix) => ALPHABET.map((c) => prefix + c))
    out.push(...layer)
  }
  return out
}

const referenceOnlyCrlf = (text: string) => !/\r(?!\n)|(?<!\r)\n/.test(text)
const referenceToCrlf = (text: string) => text.replace(/\r\n|\r|\n/g, "\r\n")

/** `text`'s bytes as a Uint8Array that is not a Buffer and does not start its ArrayBuffer. */
const offsetBytes = (text: string) => {
  const backing = new Uint8Array(text.length + 3).fill(0x0a)
  backing.set(Buffer.from(text, "latin1"), 2)
  return backing.subarray(2, 2 + text.length)
}

describe("CR LF", () => {
  const strings = allStrings(7)

  it("hasOnlyCrlf and textHasOnlyCrlf agree with the reference on every short string", () => {
    for (const text of strings) {
      const expected = referenceOnlyCrlf(text)
      expect(hasOnlyCrlf(Buffer.from(text, "latin1")), JSON.stringify(text)).toBe(expected)
      expect(hasOnlyCrlf(offsetBytes(text)), JSON.stringify(text)).toBe(expected)
      expect(textHasOnlyCrlf(text), JSON.stringify(text)).toBe(expected)
    }
  })

  it("toCrlf makes every bare CR and bare LF a CR LF, byte for byte otherwise", () => {
    for (const text of strings) {
      expect(Buffer.from(toCrlf(offsetBytes(text))).toString("latin1"), JSON.stringify(text)).toBe(referenceToCrlf(text))
    }
  })

  it("toCrlf returns its input when it is CR LF already, and stays on a SharedArrayBuffer", () => {
    const crlf = Buffer.from("a\r\nb\r\n", "latin1")
    expect(toCrlf(crlf)).toBe(crlf)
    const shared = Buffer.from(new SharedArrayBuffer(4))
    shared.write("a\nb\n", "latin1")
    const out = toCrlf(shared)
    expect(Buffer.from(out).toString("latin1")).toBe("a\r\nb\r\n")
    expect(out.buffer instanceof SharedArrayBuffer).toBe(true)
  })
})
