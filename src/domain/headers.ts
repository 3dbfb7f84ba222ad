/**
 * Reading the header section of an RFC 5322 message (and the header blocks of
 * its MIME parts) straight from the raw bytes, without a MIME parser.
 *
 * Everything here runs on mail from anyone, so every function is linear in its
 * input, bounded by explicit caps, and never throws on malformed text.
 */
import { Buffer } from "node:buffer"
import libmime from "libmime"

/** Header bytes read before giving up; RFC 5322 §2.1.1 lines are ≤ 998 octets, real headers are a few KB. */
export const MAX_HEADER_BYTES = 1024 * 1024
/** Header fields kept before giving up. */
export const MAX_HEADER_FIELDS = 10_000
/** Longest value decoded as text (RFC 2047 decoding costs a few µs per encoded word). */
const MAX_TEXT_CHARS = 64 * 1024
/** Longest part Content-Type value looked at while scanning a body. */
const MAX_PART_CONTENT_TYPE_CHARS = 1024

const LF = 0x0a
const CR = 0x0d
const SP = 0x20
const HT = 0x09
const COLON = 0x3a
const HYPHEN = 0x2d

export interface HeaderField {
  /** The name as written. */
  readonly name: string
  /** The unfolded value, read as latin1 (one char per byte), without surrounding blanks. */
  readonly value: string
}

export interface MessageHeaders {
  /** Every field in message order, duplicates included. */
  readonly fields: ReadonlyArray<HeaderField>
  /** The header section was longer than MAX_HEADER_BYTES or MAX_HEADER_FIELDS; the rest was not read. */
  readonly truncated: boolean
  /** Offset of the first body byte in the raw message; the raw length when there is no body. */
  readonly bodyOffset: number
  /** The value of the first field with this name (case-insensitive). */
  get(name: string): string | undefined
  /** The values of every field with this name, in message order. */
  getAll(name: string): string[]
  has(name: string): boolean
}

class Headers implements MessageHeaders {
  private readonly byName = new Map<string, string[]>()

  constructor(
    readonly fields: ReadonlyArray<HeaderField>,
    readonly truncated: boolean,
    readonly bodyOffset: number
  ) {
    for (const field of fields) {
      const key = field.name.toLowerCase()
      const values = this.byName.get(key)
      if (values === undefined) this.byName.set(key, [field.value])
      else values.push(field.value)
    }
  }

  get(name: string): string | undefined {
    return this.byName.get(name.toLowerCase())?.[0]
  }

  getAll(name: string): string[] {
    return [...(this.byName.get(name.toLowerCase()) ?? [])]
  }

  has(name: string): boolean {
    return this.byName.has(name.toLowerCase())
  }
}

const asBuffer = (raw: Uint8Array): Buffer => Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)

/**
 * The index of the LF that ends the line starting at `start`, or the length for
 * an unterminated last line. Short lines are scanned in JavaScript (cheaper than
 * a native call per line); long ones with the native search.
 */
const lineBreak = (raw: Buffer, start: number): number => {
  const limit = Math.min(raw.length, start + 256)
  for (let i = start; i < limit; i++) if (raw[i] === LF) return i
  if (limit === raw.length) return raw.length
  const lf = raw.indexOf(LF, limit)
  return lf === -1 ? raw.length : lf
}

/** Where the content of the line from `start` to `lf` ends: before CR LF or a bare LF. */
const contentEnd = (raw: Buffer, start: number, lf: number): number =>
  lf > start && lf < raw.length && raw[lf - 1] === CR ? lf - 1 : lf

/** RFC 5322 §2.2: a field name is one or more printable US-ASCII characters except colon. */
const isFieldName = (name: string): boolean => {
  if (name.length === 0) return false
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c < 33 || c > 126 || c === COLON) return false
  }
  return true
}

/** Trims SP and HT only: latin1 0xA0 is a character of the value, not folding white space. */
const trimBlanks = (text: string): string => {
  let start = 0
  let end = text.length
  while (start < end && (text.charCodeAt(start) === SP || text.charCodeAt(start) === HT)) start++
  while (end > start && (text.charCodeAt(end - 1) === SP || text.charCodeAt(end - 1) === HT)) end--
  return text.slice(start, end)
}

const indexOfByte = (raw: Buffer, byte: number, start: number, end: number): number => {
  for (let i = start; i < end; i++) if (raw[i] === byte) return i
  return -1
}

/**
 * Reads the header section: every line up to the first empty line (CR LF or a
 * bare LF, RFC 5322 §2.1). A message without an empty line is all header.
 * Continuation lines are unfolded by removing the line breaks (RFC 5322
 * §2.2.3); lines that are not a field (an mbox "From " line, garbage) are
 * skipped. Past the caps, reading stops and `truncated` is set.
 */
export const parseHeaderBlock = (raw: Uint8Array): MessageHeaders => {
  const bytes = asBuffer(raw)
  const fields: HeaderField[] = []
  // The field being read: its name, and where its value starts and (so far) ends in `bytes`.
  let name: string | undefined
  let valueStart = 0
  let valueEnd = 0
  const flush = () => {
    if (name === undefined) return
    // Decoded once per field; the line breaks inside the span are exactly the folds.
    const folded = bytes.toString("latin1", valueStart, valueEnd)
    fields.push({ name, value: trimBlanks(folded.includes("\n") ? folded.replace(/\r?\n/g, "") : folded) })
    name = undefined
  }

  let pos = 0
  while (pos < bytes.length) {
    const lf = lineBreak(bytes, pos)
    const end = contentEnd(bytes, pos, lf)
    const next = Math.min(lf + 1, bytes.length)
    if (end === pos) {
      flush()
      return new Headers(fields, false, next)
    }
    if (next > MAX_HEADER_BYTES) {
      flush()
      return new Headers(fields, true, findBodyOffset(bytes, pos))
    }
    const first = bytes[pos]
    if (first === SP || first === HT) {
      // A continuation of the current field; one with no field before it is garbage.
      if (name !== undefined) valueEnd = end
    } else {
      flush()
      if (fields.length >= MAX_HEADER_FIELDS) return new Headers(fields, true, findBodyOffset(bytes, pos))
      const colon = indexOfByte(bytes, COLON, pos, end)
      if (colon > pos) {
        // RFC 5322 §4.5.8 (obsolete syntax) allows blanks before the colon.
        const candidate = trimBlanks(bytes.toString("latin1", pos, colon))
        if (isFieldName(candidate)) {
          name = candidate
          valueStart = colon + 1
          valueEnd = end
        }
      }
    }
    pos = next
  }
  flush()
  return new Headers(fields, false, bytes.length)
}

/**
 * The offset after the first empty line at or after the line start `from`, or
 * the length when there is none. A plain loop: the native search for "\n\r\n"
 * slows down on every LF that is not followed by CR LF.
 */
const findBodyOffset = (raw: Buffer, from: number): number => {
  if (raw[from] === LF) return from + 1
  if (raw[from] === CR && raw[from + 1] === LF) return from + 2
  for (let i = from; i < raw.length; i++) {
    if (raw[i] !== LF) continue
    if (raw[i + 1] === LF) return i + 2
    if (raw[i + 1] === CR && raw[i + 2] === LF) return i + 3
  }
  return raw.length
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** RFC 6532 allows raw UTF-8 in header values; read latin1 text as UTF-8 when it is valid UTF-8. */
const decodeUtf8IfValid = (latin1: string): string => {
  if (!/[^\x00-\x7f]/.test(latin1)) return latin1
  try {
    return utf8.decode(Buffer.from(latin1, "latin1"))
  } catch {
    return latin1
  }
}

/**
 * A header value as human text: raw UTF-8 (RFC 6532) and RFC 2047 encoded
 * words decoded. Values longer than 64 KB are cut first: no real header is that
 * long and decoding cost grows with the number of encoded words.
 */
export const decodeHeaderText = (value: string): string => {
  const text = decodeUtf8IfValid(value.length > MAX_TEXT_CHARS ? value.slice(0, MAX_TEXT_CHARS) : value)
  if (!text.includes("=?")) return text
  try {
    return libmime.decodeWords(text)
  } catch {
    return text
  }
}

/**
 * Removes RFC 5322 §3.2.2 comments: parenthesised, nestable, with quoted-pairs,
 * and not inside quoted strings. Each comment becomes one space, as comments
 * are folding white space to the grammar. An unclosed comment runs to the end.
 */
export const stripComments = (value: string): string => {
  if (!value.includes("(")) return value
  const out: string[] = []
  let depth = 0
  let quoted = false
  let segmentStart = 0
  for (let i = 0; i < value.length; i++) {
    const c = value[i]
    if (c === "\\" && (quoted || depth > 0)) {
      i++
    } else if (depth > 0) {
      if (c === "(") depth++
      else if (c === ")" && --depth === 0) {
        out.push(" ")
        segmentStart = i + 1
      }
    } else if (quoted) {
      if (c === '"') quoted = false
    } else if (c === '"') {
      quoted = true
    } else if (c === "(") {
      out.push(value.slice(segmentStart, i))
      depth = 1
    }
  }
  if (depth === 0) out.push(value.slice(segmentStart))
  return out.join("")
}

/** Splits on `separator` outside quoted strings (and outside `<…>` when asked), honouring quoted-pairs. */
const splitOutsideQuotes = (text: string, separator: string, respectAngles = false): string[] => {
  const pieces: string[] = []
  let quoted = false
  let angle = false
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted) {
      if (c === "\\") i++
      else if (c === '"') quoted = false
    } else if (c === '"') quoted = true
    else if (respectAngles && c === "<") angle = true
    else if (respectAngles && c === ">") angle = false
    else if (c === separator && !angle) {
      pieces.push(text.slice(start, i))
      start = i + 1
    }
  }
  pieces.push(text.slice(start))
  return pieces
}

/** Removes the quotes and quoted-pairs of an RFC 5322 §3.2.4 quoted-string; other text is returned as is. */
const unquote = (text: string): string => {
  if (text.length < 2 || !text.startsWith('"') || !text.endsWith('"')) return text
  return text.slice(1, -1).replace(/\\(.)/g, "$1")
}

const noParams: ReadonlyMap<string, string> = new Map()

export interface StructuredValue {
  /** The main token, lower case, comments removed: `multipart/report`. */
  readonly value: string
  /** Parameters by lower-case name, values unquoted with their case kept; the first of a repeated name wins. */
  readonly params: ReadonlyMap<string, string>
}

/**
 * Reads a structured value such as `multipart/report; report-type="delivery-status"`
 * (RFC 2045 §5.1) or `auto-replied; owner-email="a@b"` (RFC 3834 §5):
 * the main token and its `name=value` parameters, comments ignored.
 */
export const parseStructuredValue = (value: string): StructuredValue => {
  // Most values are a bare token; they need no splitting.
  if (!/[;("]/.test(value)) return { value: trimBlanks(value).toLowerCase(), params: noParams }
  const pieces = splitOutsideQuotes(stripComments(value), ";")
  const params = new Map<string, string>()
  for (let i = 1; i < pieces.length; i++) {
    const piece = pieces[i]
    const eq = piece.indexOf("=")
    const name = trimBlanks(eq === -1 ? piece : piece.slice(0, eq)).toLowerCase()
    if (name === "" || params.has(name)) continue
    params.set(name, eq === -1 ? "" : unquote(trimBlanks(piece.slice(eq + 1))))
  }
  return { value: trimBlanks(pieces[0]).toLowerCase(), params }
}

/**
 * The local parts (lower case) of the addresses in an address-list header such
 * as From (RFC 5322 §3.4): `Mail Delivery System <MAILER-DAEMON@example.com>`,
 * `postmaster@example.com (Postmaster)`, or a bare `MAILER-DAEMON`.
 */
export const addressLocalParts = (value: string): string[] => {
  const localParts: string[] = []
  for (const mailbox of splitOutsideQuotes(stripComments(value), ",", true)) {
    let address = mailbox
    const open = address.lastIndexOf("<")
    if (open !== -1) {
      const close = address.indexOf(">", open)
      address = address.slice(open + 1, close === -1 ? undefined : close)
      // RFC 5322 §4.4 obsolete source route: <@relay1,@relay2:user@example.com>
      if (address.trimStart().startsWith("@")) address = address.slice(address.indexOf(":") + 1)
    } else {
      // RFC 5322 §3.4 group syntax: `Name: a@example.com, b@example.com;` — drop the display name and the ";".
      const colon = address.indexOf(":")
      if (colon !== -1 && !address.slice(0, colon).includes('"')) address = address.slice(colon + 1)
      address = address.replace(/;\s*$/, "")
    }
    const at = address.lastIndexOf("@")
    const local = unquote(trimBlanks(at === -1 ? address : address.slice(0, at)))
    if (local !== "") localParts.push(local.toLowerCase())
  }
  return localParts
}

const startsWithIgnoringCase = (raw: Buffer, start: number, end: number, lowerAscii: string): boolean => {
  if (end - start < lowerAscii.length) return false
  for (let i = 0; i < lowerAscii.length; i++) {
    const c = raw[start + i]
    // ASCII letters: set the 0x20 bit to compare case-insensitively.
    const lower = c >= 0x41 && c <= 0x5a ? c | 0x20 : c
    if (lower !== lowerAscii.charCodeAt(i)) return false
  }
  return true
}

const isBoundaryLine = (raw: Buffer, start: number): boolean => raw[start] === HYPHEN && raw[start + 1] === HYPHEN

/** A line that begins with "--", with the line break before it. */
const LINE_OF_DASHES = Buffer.from("\n--", "latin1")

/**
 * The start of the next line beginning with "--" after `from`, or -1: one native search for
 * LF "-" "-", whose candidates (every LF) are checked inside the search. About 16 times faster
 * than a byte loop in JS on base64 lines (most of a large body); a body of nothing but line
 * breaks is its worst case, still linear (about 9 ns a byte against the loop's 3).
 */
const nextBoundaryLine = (raw: Buffer, from: number): number => {
  const at = raw.indexOf(LINE_OF_DASHES, from)
  return at === -1 ? -1 : at + 1
}

/**
 * Finds a MIME part, at any depth, whose Content-Type main token satisfies
 * `wanted`, by scanning the body instead of parsing MIME: a line starting with
 * "--" (a boundary, RFC 2046 §5.1.1) opens a part header block, which runs to
 * the next empty line; between header blocks only "--" lines are looked for.
 * Folded Content-Type values are unfolded; each value looked at is capped at
 * 1 KB. Linear in the body size. Returns the matching media type.
 */
export const findPartContentType = (
  body: Uint8Array,
  wanted: (mediaType: string) => boolean
): string | undefined => {
  const bytes = asBuffer(body)
  // The Content-Type field being read in the current part header block, as a byte range.
  let valueStart = -1
  let valueEnd = -1
  const finish = (): string | undefined => {
    if (valueStart === -1) return undefined
    // Built by hand: for a few dozen bytes this is much cheaper than a native call per part.
    let folded = ""
    const stop = Math.min(valueEnd, valueStart + MAX_PART_CONTENT_TYPE_CHARS)
    for (let i = valueStart; i < stop; i++) if (bytes[i] !== CR && bytes[i] !== LF) folded += String.fromCharCode(bytes[i])
    valueStart = -1
    const mediaType = parseStructuredValue(folded).value
    return wanted(mediaType) ? mediaType : undefined
  }

  let pos = 0
  let inPartHeader = false
  while (pos < bytes.length) {
    if (!inPartHeader) {
      if (!isBoundaryLine(bytes, pos)) {
        pos = nextBoundaryLine(bytes, pos)
        if (pos === -1) return undefined
      }
      inPartHeader = true
      pos = lineBreak(bytes, pos) + 1
      continue
    }
    const lf = lineBreak(bytes, pos)
    const end = contentEnd(bytes, pos, lf)
    if (end === pos || bytes[pos] !== SP && bytes[pos] !== HT) {
      // An empty line or a new field ends the Content-Type field being read.
      const found = finish()
      if (found !== undefined) return found
    }
    if (end === pos) {
      inPartHeader = false
    } else if (bytes[pos] === SP || bytes[pos] === HT) {
      if (valueStart !== -1) valueEnd = end
    } else if (startsWithIgnoringCase(bytes, pos, end, "content-type")) {
      let colon = pos + "content-type".length
      while (colon < end && (bytes[colon] === SP || bytes[colon] === HT)) colon++
      if (colon < end && bytes[colon] === COLON) {
        valueStart = colon + 1
        valueEnd = end
      }
    }
    pos = lf + 1
  }
  return finish()
}
