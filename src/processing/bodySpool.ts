/**
 * The text body of a large message, written to a file as it is decoded, never held whole.
 *
 * mailparser keeps every text part whole — its decoded pieces, their join, the string, the
 * string with its line breaks normalised — and the summary then held the body once more as CR LF
 * text, sent it across threads and put it in the event: a 50 MiB text body cost a gigabyte. For a
 * message of STREAM_BODY_FROM_BYTES or more, the parse (summarize.ts) hands each text part's
 * decoded stream to a `BodySpool` instead. The spool writes the part to a file a piece at a time,
 * already in the body's final form (UTF-8, CR LF), and gives mailparser a marker to keep in its
 * place. When the parse ends, mailparser's text — its own pieces (HTML turned into text, the
 * headers of an embedded message) and the markers, in its order — is put together with the parts.
 *
 * The result is byte for byte what `textToCrlf` of mailparser's text would be: each part goes
 * through mailparser's `\r?\n` → `\n` and then `textToCrlf`, with the CRs at the end of a piece
 * held back until what follows them is known (test/processing/bodySpool.test.ts holds this on
 * random text cut at random places).
 *
 * A body of at most INLINE_BODY_MAX_BYTES is read back and carried in the event as usual; a larger
 * one stays a file, which the append moves into the log in pieces, in the transaction of the
 * event that names it by `bodySha256` (EventLog's `Blob`), and then deletes.
 */
import { createHash, randomUUID } from "node:crypto"
import { closeSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, dirname, join } from "node:path"
import { StringDecoder } from "node:string_decoder"
import { textToCrlf } from "./crlf.js"

/** A message this large has its text parts spooled (below it, the body is a string anyway). */
export const STREAM_BODY_FROM_BYTES = 4 * 1024 * 1024

/**
 * A text body larger than this (UTF-8 bytes) is stored apart from its event. As large as memory
 * allows: held as a string, a body costs some five times its size on its way into the log (the
 * worker's string, its copy to the main thread, the event's JSON, SQLite's copy), and a message
 * under STREAM_BODY_FROM_BYTES keeps its body in the event whatever its shape.
 */
export const INLINE_BODY_MAX_BYTES = 4 * 1024 * 1024

/**
 * The largest HTML part of a spooled message that is turned into text. html-to-text builds a
 * document tree several times the size of its input; a larger part gives the body no text (the
 * message is stored whole, so nothing of it is lost).
 */
export const HTML_TO_TEXT_MAX_BYTES = 4 * 1024 * 1024

/** A body left in the spool for the event log to take. */
export interface SpooledBody {
  readonly path: string
  readonly sha256: string
  /** In bytes (UTF-8). */
  readonly size: number
}

/** Where a daemon whose event log is `database` spools: beside it, on the same disk. */
export const spoolDirectoryFor = (database: string): string =>
  database === ":memory:" || database === "" ? defaultSpoolDirectory() : join(dirname(database), `${basename(database)}.spool`)

/**
 * Without an event log on disk: under the temporary directory, one directory per user (Debian
 * keeps /tmp in memory from version 13 on; a daemon spools beside its database instead).
 */
export const defaultSpoolDirectory = (): string => join(tmpdir(), `mailintake-spool-${process.getuid?.() ?? "user"}`)

/** A spooled file older than this is nobody's any more (its append failed or its batch stopped). */
const STALE_AFTER_MILLIS = 60 * 60 * 1000

const isRunning = (pid: number): boolean => {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Deletes what is left in `directory` by a process that ended (every file is named after the
 * process that wrote it) or left there for an hour. Returns how many files went.
 */
export const sweepSpool = (directory: string, now = Date.now()): number => {
  let names: Array<string>
  try {
    names = readdirSync(directory)
  } catch {
    return 0
  }
  let removed = 0
  for (const name of names) {
    const match = /^(\d+)-[0-9a-f-]+\.(?:parts|body)$/.exec(name)
    if (match === null) continue
    const path = join(directory, name)
    try {
      if (!isRunning(Number(match[1])) || now - statSync(path).mtimeMs > STALE_AFTER_MILLIS) {
        rmSync(path, { force: true })
        removed++
      }
    } catch {
      // Gone already, or not ours to delete: the next sweep looks again.
    }
  }
  return removed
}

const CR = 0x0d
/** Text gathered before a write to the file. */
const WRITE_AFTER_CHARS = 256 * 1024
const COPY_BYTES = 1024 * 1024
const MARK = "\u0000"

const writeAll = (fd: number, bytes: Buffer) => {
  for (let offset = 0; offset < bytes.length;) offset += writeSync(fd, bytes, offset, bytes.length - offset)
}

interface SpooledPart {
  readonly start: number
  length: number
  /**
   * The part's text ended in CRs. Followed by mailparser's `\n` between parts, `textToCrlf` makes
   * the last CR and that `\n` one line break: the part has written it, so the `\n` is dropped.
   */
  endsInCr: boolean
}

/** What a text part is fed: mailparser's decoded pieces of it. */
export interface TextPartWriter {
  readonly write: (chunk: Buffer | string) => void
  /** What stands for the part in mailparser's text: a marker, or "" for an empty part (mailparser skips those). */
  readonly end: () => string
}

/** The spool of one message's parse. */
export class BodySpool {
  private readonly nonce = randomUUID()
  private readonly partsPath: string
  private fd: number | undefined
  private written = 0
  private readonly parts = new Map<number, SpooledPart>()
  private nextPart = 0
  /** Discarded: the parse was stopped, and what its streams still write goes nowhere. */
  private discarded = false

  constructor(private readonly directory: string) {
    this.partsPath = join(directory, `${process.pid}-${this.nonce}.parts`)
  }

  private marker(index: number) {
    return `${MARK}${this.nonce}:${index}${MARK}`
  }

  private append(text: string) {
    if (text.length === 0 || this.discarded) return
    if (this.fd === undefined) {
      mkdirSync(this.directory, { recursive: true })
      this.fd = openSync(this.partsPath, "w+")
    }
    // Written as a string: Node encodes it into a buffer it frees at once, where a Buffer of our
    // own would be garbage outside the heap until the next full collection.
    const size = Buffer.byteLength(text, "utf8")
    const written = writeSync(this.fd, text, null, "utf8")
    if (written !== size) throw new Error(`the spool took ${written} of ${size} bytes (disk full?)`)
    this.written += size
  }

  /** A text/plain part (or a delivery report), written as it is decoded. */
  textPart(): TextPartWriter {
    const index = this.nextPart++
    const part: SpooledPart = { start: this.written, length: 0, endsInCr: false }
    const decoder = new StringDecoder("utf8")
    let decodedChars = 0
    /** CRs at the end of what came so far: what they become depends on what follows. */
    let heldCrs = 0
    let pending = ""
    const flush = () => {
      this.append(pending)
      pending = ""
    }
    const take = (decoded: string) => {
      if (decoded.length === 0) return
      decodedChars += decoded.length
      let end = decoded.length
      while (end > 0 && decoded.charCodeAt(end - 1) === CR) end--
      if (end === 0) {
        heldCrs += decoded.length
        return
      }
      const text = (heldCrs > 0 ? "\r".repeat(heldCrs) : "") + (end === decoded.length ? decoded : decoded.slice(0, end))
      heldCrs = decoded.length - end
      // mailparser's normalisation of a text part, then the body's CR LF.
      pending += textToCrlf(text.replace(/\r?\n/g, "\n"))
      if (pending.length >= WRITE_AFTER_CHARS) flush()
    }
    return {
      // mailparser turns a string piece into bytes and decodes all of them as UTF-8 at the end.
      write: (chunk) => take(decoder.write(typeof chunk === "string" ? Buffer.from(chunk) : chunk)),
      end: () => {
        take(decoder.end())
        if (decodedChars === 0) return ""
        // Each CR at the very end is a line break of its own, whatever follows.
        pending += "\r\n".repeat(heldCrs)
        part.endsInCr = heldCrs > 0
        flush()
        part.length = this.written - part.start
        this.parts.set(index, part)
        return this.marker(index)
      }
    }
  }

  /**
   * The body: mailparser's `text` with its markers replaced by their parts, CR LF throughout.
   * Up to INLINE_BODY_MAX_BYTES as a string; larger, as a file in the spool.
   */
  finish(text: string): { readonly body: string } | { readonly spooled: SpooledBody } {
    const pieces: Array<string | SpooledPart> = []
    let size = 0
    let last = 0
    let afterCr = false
    const literal = (upTo: number) => {
      let slice = text.slice(last, upTo)
      if (afterCr && slice.startsWith("\n")) slice = slice.slice(1)
      const crlf = textToCrlf(slice)
      if (crlf.length > 0) {
        pieces.push(crlf)
        size += Buffer.byteLength(crlf, "utf8")
      }
    }
    for (const match of text.matchAll(new RegExp(`${MARK}${this.nonce}:(\\d+)${MARK}`, "g"))) {
      literal(match.index)
      const part = this.parts.get(Number(match[1]))!
      pieces.push(part)
      size += part.length
      afterCr = part.endsInCr
      last = match.index + match[0].length
    }
    literal(text.length)
    try {
      if (size <= INLINE_BODY_MAX_BYTES) {
        return { body: pieces.map((piece) => (typeof piece === "string" ? piece : this.readPart(piece).toString("utf8"))).join("") }
      }
      return { spooled: this.assemble(pieces, size) }
    } finally {
      this.closeParts()
    }
  }

  /** `into` filled from the parts file at `position`, all of it. */
  private readExactly(into: Buffer, position: number): Buffer {
    for (let offset = 0; offset < into.length;) {
      const read = readSync(this.fd!, into, offset, into.length - offset, position + offset)
      if (read === 0) throw new Error(`the spool's parts file is short: ${offset} of ${into.length} bytes at ${position}`)
      offset += read
    }
    return into
  }

  private readPart(part: SpooledPart): Buffer {
    return this.readExactly(Buffer.allocUnsafe(part.length), part.start)
  }

  private assemble(pieces: ReadonlyArray<string | SpooledPart>, size: number): SpooledBody {
    const path = join(this.directory, `${process.pid}-${this.nonce}.body`)
    const out = openSync(path, "w")
    const hash = createHash("sha256")
    const copy = Buffer.allocUnsafe(COPY_BYTES)
    try {
      for (const piece of pieces) {
        if (typeof piece === "string") {
          const bytes = Buffer.from(piece, "utf8")
          hash.update(bytes)
          writeAll(out, bytes)
          continue
        }
        for (let offset = 0; offset < piece.length; offset += COPY_BYTES) {
          const bytes = this.readExactly(copy.subarray(0, Math.min(COPY_BYTES, piece.length - offset)), piece.start + offset)
          hash.update(bytes)
          writeAll(out, bytes)
        }
      }
    } catch (error) {
      closeSync(out)
      rmSync(path, { force: true })
      throw error
    }
    closeSync(out)
    return { path, sha256: hash.digest("hex"), size }
  }

  private closeParts() {
    if (this.fd === undefined) return
    closeSync(this.fd)
    this.fd = undefined
    rmSync(this.partsPath, { force: true })
  }

  /** After a failed parse: nothing is left behind. */
  discard(): void {
    this.discarded = true
    this.closeParts()
  }
}

/** Collects an HTML part of a spooled message, up to HTML_TO_TEXT_MAX_BYTES (see there). */
export const htmlPart = (): TextPartWriter => {
  const chunks: Array<Buffer> = []
  let size = 0
  return {
    write: (chunk) => {
      if (size > HTML_TO_TEXT_MAX_BYTES) return
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk
      size += bytes.length
      if (size > HTML_TO_TEXT_MAX_BYTES) chunks.length = 0
      else chunks.push(bytes)
    },
    // What mailparser's own collection of a text part makes of it.
    end: () => (size > HTML_TO_TEXT_MAX_BYTES ? "" : Buffer.concat(chunks, size).toString().replace(/\r?\n/g, "\n"))
  }
}
