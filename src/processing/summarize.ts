/**
 * The parsed summary a `MessageAccepted` event carries: by the quick path for the common shapes
 * of mail (quickSummary.ts), by mailparser for everything else.
 *
 * mailparser's streaming `MailParser` is fed the message a piece at a time and each
 * attachment's bytes are counted as they pass, never kept: `simpleParser` would keep every
 * attachment (and join its pieces once more) only for its size, so a 200 MB attachment would
 * cost twice its decoded size. The summary is the one simpleParser's fields give (a test holds
 * the two equal on every kind of message).
 *
 * The text parts of a large message are not kept either: they are written to a spool as they
 * are decoded (bodySpool.ts), and a large body stays there for the event log to take.
 */
import { type HeaderValue, MailParser } from "mailparser"
import type { Readable } from "node:stream"
import { collectEvery } from "../memory/collectGarbage.js"
import { BodySpool, htmlPart, STREAM_BODY_FROM_BYTES, type TextPartWriter } from "./bodySpool.js"
import { byteStream } from "./byteStream.js"
import { textToCrlf } from "./crlf.js"
import { quickSummary } from "./quickSummary.js"
import { addresses, headerDate, type Summary } from "./summaryFields.js"

export interface SummarizeOptions {
  /** When it rejects, a mailparser parse ends early (a timeout; the quick path is bounded by its size limit and linear). */
  readonly stop?: Promise<never> | undefined
  /**
   * Collect garbage after every few megabytes of a large message (the parser worker): decoding
   * leaves its pieces behind outside the JS heap (src/memory/collectGarbage.ts); for a 50 MB
   * message that pile was the largest part of the parse's memory.
   */
  readonly collectGarbage?: boolean | undefined
  /** Where the text of a message of `spoolFrom` bytes or more is written as it is decoded; without it, nothing is spooled. */
  readonly spoolDirectory?: string | undefined
  /** Default STREAM_BODY_FROM_BYTES; tests spool small messages. */
  readonly spoolFrom?: number | undefined
}

/** The summary of a message. */
export const summarize = (raw: Uint8Array, options: SummarizeOptions = {}): Promise<Summary> => {
  let quick: Summary | undefined
  try {
    quick = quickSummary(raw)
  } catch {
    // Whatever the quick path cannot read, mailparser gets to try: it decides, not this.
    quick = undefined
  }
  return quick === undefined ? summarizeWithMailparser(raw, options) : Promise.resolve(quick)
}

/** mailparser's internals that spooling reaches into (mailparser 3.x, `lib/mail-parser.js`). */
interface ParserNode {
  readonly contentType?: string | false
  readonly isAttachment?: boolean
  readonly disposition?: string
  /** Set for a part mailparser collects as text: the stream of its decoded (and charset-decoded) bytes. */
  readonly contentStream?: Readable
  textContent?: string
}
interface ParserInternals {
  processChunk: (data: { readonly type: string }, done: (error?: unknown) => void) => void
  readonly curnode: ParserNode | false
}

/**
 * Takes every text part's decoded stream from mailparser as the part begins: mailparser would
 * gather it into one string (`textContent`); `take` gets it a piece at a time and gives back
 * what mailparser is to keep in its place. mailparser itself still decides which parts are text,
 * which HTML is turned into text and in what order it all goes (test/processing/summarize.test.ts
 * holds the result to mailparser's on random MIME trees, so that an upgrade that moves these
 * internals fails there).
 */
const takeTextParts = (parser: MailParser, take: (node: ParserNode) => TextPartWriter) => {
  const internals = parser as unknown as ParserInternals
  const processChunk = internals.processChunk.bind(parser)
  internals.processChunk = (data, done) => {
    processChunk(data, done)
    if (data.type !== "node") return
    // mailparser has just made the part its current node and, for a text part, hung its
    // collector on the part's stream: no byte of the part has been decoded yet.
    const node = internals.curnode
    const stream = node === false ? undefined : node.contentStream
    if (node === false || stream === undefined || node.isAttachment !== false || node.disposition !== "inline") return
    const writer = take(node)
    // mailparser's collector (the stream's only `readable` listener) never sees a byte; its `end`
    // listener sets textContent to "" from nothing, and this one, added after it, sets it right.
    stream.removeAllListeners("readable")
    stream.on("readable", () => {
      try {
        let chunk: Buffer | string | null
        while ((chunk = stream.read() as Buffer | string | null) !== null) writer.write(chunk)
      } catch (error) {
        parser.emit("error", error)
      }
    })
    stream.once("end", () => {
      try {
        node.textContent = writer.end()
      } catch (error) {
        parser.emit("error", error)
      }
    })
  }
}

/** The summary by mailparser's streaming parser. */
export const summarizeWithMailparser = (raw: Uint8Array, options: SummarizeOptions = {}): Promise<Summary> =>
  new Promise<Summary>((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: false, skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true })
    const input = byteStream(raw, options.collectGarbage === true ? collectEvery() : undefined)
    const spool = options.spoolDirectory !== undefined && raw.byteLength >= (options.spoolFrom ?? STREAM_BODY_FROM_BYTES)
      ? new BodySpool(options.spoolDirectory)
      : undefined
    if (spool !== undefined) {
      takeTextParts(parser, (node) => (node.contentType === "text/html" ? htmlPart() : spool.textPart()))
    }
    let settled = false
    const fail = (error: unknown) => {
      if (settled) return
      settled = true
      input.destroy()
      parser.destroy()
      spool?.discard()
      reject(error)
    }
    options.stop?.catch(fail)
    let headers: Map<string, HeaderValue> = new Map()
    let date: Date | undefined
    let text: string | undefined
    const attachments: Array<Summary["attachments"][number]> = []
    parser.on("error", fail)
    parser.on("headers", (value) => {
      headers = value
    })
    parser.on("headerLines", (lines) => {
      date = headerDate(lines)
    })
    parser.on("data", (data) => {
      if (data.type === "text") {
        if (typeof data.text === "string") text = data.text
        return
      }
      // Counted as it passes, then let go: only the size goes into the summary.
      const attachment = data
      let counted = 0
      attachment.content.on("data", (chunk: Buffer) => {
        counted += chunk.length
      })
      attachment.content.on("end", () => {
        attachments.push({
          filename: typeof attachment.filename === "string" ? attachment.filename : "",
          contentType: typeof attachment.contentType === "string" && attachment.contentType !== ""
            ? attachment.contentType
            : "application/octet-stream",
          size: Number.isFinite(attachment.size) ? Number(attachment.size) : counted
        })
        attachment.release?.()
      })
    })
    parser.on("end", () => {
      if (settled) return
      let body: ReturnType<BodySpool["finish"]>
      try {
        body = spool === undefined ? { body: textToCrlf(text ?? "") } : spool.finish(text ?? "")
      } catch (error) {
        return fail(error)
      }
      settled = true
      const subject = headers.get("subject")
      const messageId = headers.get("message-id")
      resolve({
        messageId: typeof messageId === "string" ? messageId : "",
        from: addresses(headers.get("from"))[0] ?? "",
        to: addresses(headers.get("to")),
        cc: addresses(headers.get("cc")),
        subject: typeof subject === "string" ? subject : "",
        date: date === undefined ? null : date.toISOString(),
        attachments,
        ...("spooled" in body ? { body: "", spooledBody: body.spooled } : body)
      })
    })
    input.on("error", fail)
    input.pipe(parser)
  })
