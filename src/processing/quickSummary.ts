/**
 * The summary of a message of a common shape, without mailparser's streams: about 20 times
 * cheaper, and the same result.
 *
 * mailparser feeds a message through three streams (a line splitter, a decoder per part, a
 * charset decoder), with a turn of the event loop per piece; for a 20 KB message that is most
 * of a millisecond, the largest cost of taking in a message. Most mail is one of a few shapes
 * (one text part; a text part and attachments; text and HTML alternatives), and for those the
 * summary is a few header fields, one decoded text part and the decoded sizes of attachments.
 *
 * Same result by construction where it matters: the headers of every part are read by
 * mailsplit's own MimeNode (what mailparser's splitter uses) and the top-level fields by
 * mailparser's own header processing; what is left here is finding the parts (mailsplit's
 * boundary rules, carried over) and decoding their bodies (libqp, libmime, base64 by its
 * length). Anything else — a part this does not take apart exactly like mailsplit, HTML to
 * turn into text, a charset beyond UTF-8 and the single-byte ones, embedded
 * messages, delivery reports, a message over QUICK_MAX_BYTES — answers `undefined`, and the
 * caller parses with mailparser. test/processing/quickSummary.test.ts holds the two equal on
 * every message it has.
 */
import MimeNode from "@zone-eu/mailsplit/lib/mime-node.js"
import libmime from "libmime"
import charsets from "libmime/lib/charset.js"
import libqp from "libqp"
import { type HeaderValue, MailParser } from "mailparser"
import { textHasOnlyCrlf, textToCrlf } from "./crlf.js"
import { addresses, headerDate, type Summary } from "./summaryFields.js"

/** Larger messages go through mailparser, which streams them (memory stays bounded). */
const QUICK_MAX_BYTES = 4 * 1024 * 1024
/** More parts or deeper nesting than real mail has: left to mailparser (and its limits). */
const MAX_PARTS = 64
const MAX_DEPTH = 4
/**
 * Header blocks larger than this, or of more lines, are left to mailparser: mailsplit counts a
 * header line as at least 64 bytes against its limit of 1 MiB, and this stays well below it.
 */
const MAX_HEADER_BYTES = 64 * 1024
const MAX_HEADER_LINES = 1000

const LF = 0x0a
const CR = 0x0d
const DASH = 0x2d

/** What mailparser decodes as text (`textTypes`, with delivery reports kept as text). */
const TEXT_TYPES: ReadonlyArray<string | false> = ["text/plain", "text/html", "message/delivery-status"]
/** Charsets decoded here: UTF-8 as mailparser reads it as is, and single-byte ones through libmime. */
const READ_AS_IS = new Set(["ascii", "usascii", "utf8"])
const SINGLE_BYTE = /^(?:ISO-8859-\d+|WINDOWS-125\d)$/i

interface Part {
  readonly mime: MimeNode
  readonly parent: Part | undefined
  readonly depth: number
  readonly children: Array<Part>
  bodyStart: number
  bodyEnd: number
  /** A multipart whose closing delimiter was seen. */
  closed: boolean
}

const newPart = (parent: Part | undefined): Part => ({
  mime: new MimeNode(parent?.mime ?? false, {}),
  parent,
  depth: parent === undefined ? 0 : parent.depth + 1,
  children: [],
  bodyStart: 0,
  bodyEnd: 0,
  closed: false
})

/**
 * mailsplit's `compareBoundary` for a line that starts with "--": 1 for a delimiter, 2 for a
 * closing one, 0 for neither.
 */
const compareBoundary = (buf: Buffer, start: number, end: number, boundary: Buffer): 0 | 1 | 2 => {
  const length = end - start
  if (length < boundary.length + 3 || length > boundary.length + 2 + 2 + 998 + 2) return 0
  for (let i = 0; i < boundary.length; i++) {
    if (buf[start + 2 + i] !== boundary[i]) return 0
  }
  let i = start + 2 + boundary.length
  let result: 1 | 2 = 1
  if (buf[i] === DASH) {
    if (buf[i + 1] !== DASH) return 0
    result = 2
    i += 2
  }
  while (i < end && (buf[i] === 0x20 || buf[i] === 0x09)) i++
  if (i === end) return result === 2 ? 2 : 0
  while (i < end && buf[i] === CR) i++
  if (i < end && buf[i] === LF) i++
  return i === end ? result : 0
}

/**
 * Whether a part is of a structure taken apart here: not an embedded message, and a boundary
 * exactly when it is a multipart (mailsplit would split a text part with a boundary too).
 */
const takenApart = (part: Part): boolean =>
  part.mime.contentType !== "message/rfc822" && (part.mime.multipart === false) === (part.mime._boundary === false)

/**
 * A part's body without the line break that belongs to the delimiter after it (mailsplit's
 * trimBodyLineEnd); false for a body that is that line break alone, which mailsplit keeps
 * before some delimiters and drops before others: left to mailparser.
 */
const endBefore = (buf: Buffer, part: Part, lineStart: number): boolean => {
  let end = lineStart
  if (end > part.bodyStart && buf[end - 1] === LF) {
    end--
    if (end > part.bodyStart && buf[end - 1] === CR) end--
  }
  part.bodyEnd = end
  return end > part.bodyStart || lineStart === part.bodyStart
}

/**
 * The tree of parts with the byte range of every leaf's body, split as mailsplit splits it;
 * undefined for anything outside the shapes taken apart here.
 */
const splitParts = (buf: Buffer): Part | undefined => {
  const root = newPart(undefined)
  let parts = 1
  // Header block of the root.
  let pos = readHeaderBlock(buf, root, 0)
  if (pos < 0 || !takenApart(root)) return undefined
  if (root.mime.multipart === false) {
    root.bodyEnd = buf.byteLength
    return root
  }
  // mailsplit also takes a line that starts with a lone CR for a delimiter: rare enough to leave.
  if (buf.indexOf("\n\r-", pos) >= 0) return undefined

  // The parts: only lines that start with "--" can change anything.
  let node = root
  let inEpilogue = false
  while (pos < buf.byteLength) {
    const candidate = buf.indexOf("\n--", pos - 1)
    if (candidate < 0) break
    const start = candidate + 1
    const newline = buf.indexOf(LF, start)
    const end = newline < 0 ? buf.byteLength : newline + 1
    pos = end
    let kind: 0 | 1 | 2 = 0
    let owner: Part | undefined
    if (!inEpilogue && node.mime._boundary !== false) kind = compareBoundary(buf, start, end, node.mime._boundary)
    if (kind === 0) {
      for (owner = node.parent; owner !== undefined; owner = owner.parent) {
        if (owner.mime._boundary !== false && (kind = compareBoundary(buf, start, end, owner.mime._boundary)) !== 0) break
      }
      if (kind === 0) continue
    } else {
      owner = undefined
    }
    if (owner === undefined) {
      // The multipart's own delimiter: its first part (a closing one with no part is left to mailparser).
      if (kind === 2) return undefined
      node = openPart(node)
    } else {
      // A delimiter of an enclosing multipart: the current part ends here.
      if (node.mime.multipart === false) {
        if (!endBefore(buf, node, start)) return undefined
      } else if (!node.closed) {
        return undefined
      }
      for (let open = node.parent; open !== owner; open = open!.parent) {
        if (!open!.closed) return undefined
      }
      if (kind === 1) {
        node = openPart(owner)
      } else {
        owner.closed = true
        node = owner
        inEpilogue = true
        // What follows the last delimiter is the epilogue: nothing in it counts.
        if (owner === root) break
        continue
      }
    }
    // A new part: its header block, then its body (or its own parts).
    if (++parts > MAX_PARTS || node.depth > MAX_DEPTH) return undefined
    inEpilogue = false
    pos = readHeaderBlock(buf, node, pos)
    if (pos < 0 || !takenApart(node)) return undefined
  }
  return root.closed ? root : undefined
}

const openPart = (parent: Part): Part => {
  const part = newPart(parent)
  parent.children.push(part)
  return part
}

/**
 * A part's header block from `start` to its empty line, parsed by MimeNode; the position of
 * its body, or -1 when the block does not end or is outside the limits. In a part (not the
 * root), a header line that could be a delimiter would end the part there in mailsplit: -1.
 */
const readHeaderBlock = (buf: Buffer, part: Part, start: number): number => {
  let pos = start
  for (let lines = 0; ; lines++) {
    const newline = buf.indexOf(LF, pos)
    if (newline < 0 || lines >= MAX_HEADER_LINES || newline - start >= MAX_HEADER_BYTES) return -1
    if (part.parent !== undefined && buf[pos] === DASH && buf[pos + 1] === DASH) return -1
    const line = buf.subarray(pos, newline + 1)
    pos = newline + 1
    if (part.mime.addHeaderChunk(line)) break
  }
  part.mime.parseHeaders()
  part.bodyStart = pos
  return pos
}

/** What a byte is in a base64 body: a digit of the alphabet, a line break, padding, or anything else. */
const DIGIT = 0
const BREAK = 1
const PAD = 2
const OTHER = 3
const BASE64_CLASS = (() => {
  const table = new Uint8Array(256).fill(OTHER)
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") table[c.charCodeAt(0)] = DIGIT
  table[CR] = BREAK
  table[LF] = BREAK
  table["=".charCodeAt(0)] = PAD
  return table
})()

/**
 * The number of bytes the base64 body in `buf` from `start` to `end` decodes to, counted (6
 * bits a digit); undefined unless it is plain base64 lines, padded at the end only (libbase64
 * decodes a body padded in the middle segment by segment). One pass over the bytes: no string.
 */
const base64Size = (buf: Buffer, start: number, end: number): number | undefined => {
  let digits = 0
  let padded = false
  for (let i = start; i < end; i++) {
    const kind = BASE64_CLASS[buf[i]!]!
    if (kind === DIGIT) {
      if (padded) return undefined
      digits++
    } else if (kind === PAD) {
      padded = true
    } else if (kind === OTHER) {
      return undefined
    }
  }
  return Math.floor((digits * 3) / 4)
}

const decodeBody = (buf: Buffer, part: Part, encoding: string): Buffer | undefined => {
  const body = buf.subarray(part.bodyStart, part.bodyEnd)
  if (encoding === "quoted-printable") return libqp.decode(body)
  if (encoding === "base64") {
    return base64Size(buf, part.bodyStart, part.bodyEnd) === undefined ? undefined : Buffer.from(body.toString("latin1"), "base64")
  }
  return body
}

/** An attachment's decoded size: base64 counted, not decoded. */
const bodySize = (buf: Buffer, part: Part, encoding: string): number | undefined =>
  encoding === "base64"
    ? base64Size(buf, part.bodyStart, part.bodyEnd)
    : decodeBody(buf, part, encoding)?.byteLength

/** A text part's content as mailparser decodes it (its line ends are made LF by `bodyOf`); undefined when not handled. */
const textOf = (bytes: Buffer, charset: string | false): string | undefined => {
  const name = charset || "utf-8"
  if (READ_AS_IS.has(name.toLowerCase().replace(/[^a-z0-9]+/g, ""))) return bytes.toString()
  return SINGLE_BYTE.test(charsets.normalizeCharset(name)) ? charsets.decode(bytes, name) : undefined
}

/**
 * The body as the event carries it: the text parts, each with LF line ends as mailparser gives
 * them, joined by LF, in CR LF. A single part already in CR LF throughout is that already (the
 * common case, and two passes over the text cheaper).
 */
const bodyOf = (texts: ReadonlyArray<string>): string => {
  if (texts.length === 1 && textHasOnlyCrlf(texts[0]!)) return texts[0]!
  return textToCrlf(texts.map((text) => text.replace(/\r?\n/g, "\n")).join("\n"))
}

/** mailparser's header processing, without a parser: it only needs `libmime` on `this`. */
interface HeaderReader {
  processHeaders(lines: Array<{ key: string; line: string }>): Map<string, HeaderValue>
}
let headerReader: HeaderReader | undefined
const readHeaders = (lines: Array<{ key: string; line: string }>) => {
  headerReader ??= Object.assign(Object.create(MailParser.prototype), { libmime: new libmime.Libmime({}) }) as HeaderReader
  return headerReader.processHeaders(lines)
}

/** The summary, or undefined when the message is not of a shape handled here (then: mailparser). */
export const quickSummary = (raw: Uint8Array): Summary | undefined => {
  if (raw.byteLength > QUICK_MAX_BYTES) return undefined
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
  const root = splitParts(buf)
  if (root === undefined) return undefined

  const texts: Array<string> = []
  const attachments: Array<Summary["attachments"][number]> = []
  // The leaves in document order, each with whether a multipart/alternative encloses it.
  const visit = (part: Part, alternative: boolean): boolean => {
    const mime = part.mime
    if (mime.multipart !== false) {
      const inner = alternative || mime.contentType === "multipart/alternative"
      return part.children.every((child) => visit(child, inner))
    }
    // mailparser's createNode.
    const contentType = mime.contentType === false && part.parent === undefined ? "text/plain" : mime.contentType
    let disposition = mime.disposition
    if (disposition !== false && disposition !== "attachment" && disposition !== "inline") disposition = "attachment"
    const isText = TEXT_TYPES.includes(contentType)
    const finalDisposition = disposition === false && !isText ? "attachment" : disposition || "inline"
    const encoding = mime.encoding === "quoted-printable" || mime.encoding === "base64" ? mime.encoding : "binary"
    if (!isText || finalDisposition !== "inline") {
      const size = bodySize(buf, part, encoding)
      if (size === undefined) return false
      const type = contentType === "application/octet-stream" && mime.filename
        ? libmime.detectMimeType(mime.filename) || "application/octet-stream"
        : contentType
      attachments.push({
        filename: typeof mime.filename === "string" ? mime.filename : "",
        contentType: typeof type === "string" && type !== "" ? type : "application/octet-stream",
        size
      })
      return true
    }
    // HTML outside alternatives becomes text through html-to-text, and delivery reports have
    // their own handling: mailparser's.
    if (contentType === "text/html") return alternative
    if (contentType !== "text/plain") return false
    const decoded = decodeBody(buf, part, encoding)
    // format=flowed (RFC 3676) is undone on the decoded bytes, before the charset: as mailsplit's FlowedDecoder does.
    const bytes = decoded !== undefined && mime.flowed
      ? Buffer.from(libmime.decodeFlowed(decoded.toString("binary"), mime.delSp), "binary")
      : decoded
    const text = bytes === undefined ? undefined : textOf(bytes, mime.charset)
    if (text === undefined) return false
    // mailparser leaves out a part with no text (CR LF to LF never empties a text).
    if (text !== "") texts.push(text)
    return true
  }
  if (!visit(root, false)) return undefined

  // parseHeaders ran on every part of a split tree.
  const lines = root.mime.headers === false ? [] : root.mime.headers.getList()
  const headers = readHeaders(lines)
  const subject = headers.get("subject")
  const messageId = headers.get("message-id")
  const date = headerDate(lines)
  return {
    messageId: typeof messageId === "string" ? messageId : "",
    from: addresses(headers.get("from"))[0] ?? "",
    to: addresses(headers.get("to")),
    cc: addresses(headers.get("cc")),
    subject: typeof subject === "string" ? subject : "",
    date: date === undefined ? null : date.toISOString(),
    attachments,
    body: bodyOf(texts)
  }
}
