/**
 * `decideMessage` for a large message: the same decision and the same summary, with the parse
 * bounded in memory. `simpleParser` keeps every attachment (and joins its pieces once more) only
 * to report its size; here mailparser's streaming `MailParser` is fed the message a piece at a
 * time and each attachment's bytes are counted as they pass, never kept. A 200 MB attachment
 * then costs the parser a few pieces instead of twice its decoded size.
 *
 * The parser worker uses it for messages of LARGE_PARSE_BYTES and more. The summary is built as
 * `summarize` builds it (same mailparser options, same header fields, same coercions): keep the
 * two in step.
 */
import { MailParser, type AddressObject, type HeaderValue } from "mailparser"
import { Readable } from "node:stream"
import { classify } from "../domain/classify.js"
import { textToCrlf, toCrlf } from "./crlf.js"
import { type DecideOptions, type Decision, tooLarge } from "./decide.js"
import type { Summary } from "./summarize.js"

/** From this size on, a message is parsed as a stream. */
export const LARGE_PARSE_BYTES = 4 * 1024 * 1024

/** Bytes handed to the parser per write. */
const FEED_BYTES = 256 * 1024

const oneLine = (text: string) => text.replace(/[\r\n\t]+/g, " ").slice(0, 1000)

const addresses = (field: HeaderValue | undefined): Array<string> => {
  if (field === undefined || typeof field !== "object" || field === null) return []
  const objects = (Array.isArray(field) ? field : [field]) as Array<AddressObject>
  return objects.flatMap((object) => (Array.isArray(object?.value) ? object.value.flatMap(flatten) : []))
}

type Entry = AddressObject["value"][number]
const flatten = (entry: Entry): Array<string> =>
  entry.group !== undefined ? entry.group.flatMap(flatten) : entry.address ? [entry.address] : entry.name ? [entry.name] : []

/** The message as a stream of views of its bytes (no copy). */
const pieces = (raw: Uint8Array): Readable =>
  Readable.from((function*() {
    for (let offset = 0; offset < raw.byteLength; offset += FEED_BYTES) {
      yield Buffer.from(raw.buffer, raw.byteOffset + offset, Math.min(FEED_BYTES, raw.byteLength - offset))
    }
  })(), { objectMode: false })

/** The summary `summarize` would give, from a streaming parse. `stop` ends the parse early (timeout). */
export const summarizeLarge = (raw: Uint8Array, stop: Promise<never>): Promise<Summary> =>
  new Promise<Summary>((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: false, skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true })
    const input = pieces(raw)
    let settled = false
    const fail = (error: unknown) => {
      if (settled) return
      settled = true
      input.destroy()
      parser.destroy()
      reject(error)
    }
    stop.catch(fail)
    let headers: Map<string, HeaderValue> = new Map()
    let text: string | undefined
    const attachments: Array<Summary["attachments"][number]> = []
    parser.on("error", fail)
    parser.on("headers", (value) => {
      headers = value
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
      settled = true
      const date = headers.get("date")
      const subject = headers.get("subject")
      const messageId = headers.get("message-id")
      resolve({
        messageId: typeof messageId === "string" ? messageId : "",
        from: addresses(headers.get("from"))[0] ?? "",
        to: addresses(headers.get("to")),
        cc: addresses(headers.get("cc")),
        subject: typeof subject === "string" ? subject : "",
        date: date instanceof Date && !Number.isNaN(date.getTime()) ? date.toISOString() : null,
        attachments,
        body: textToCrlf(text ?? "")
      })
    })
    input.on("error", fail)
    input.pipe(parser)
  })

/** A timer that rejects; `clear` stops it. */
const deadline = (millis: number) => {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`parsing took longer than ${millis} ms`)), millis)
  })
  return { promise, clear: () => clearTimeout(timer) }
}

/** The decision `decideMessage` would make, parsing as a stream. Never fails. */
export const decideLargeMessage = async (raw: Uint8Array, options: DecideOptions): Promise<Decision> => {
  const timer = deadline(options.parseTimeoutMillis)
  timer.promise.catch(() => {})
  try {
    const large = tooLarge(raw, options)
    if (large !== undefined) return large
    const verdict = classify(raw, { quarantineListMail: options.quarantineListMail })
    if (verdict._tag === "Quarantine") return { _tag: "Quarantine", reason: verdict.reason, detail: verdict.detail }
    const summary = await Promise.race([summarizeLarge(raw, timer.promise), timer.promise])
    return { _tag: "Accept", summary, crlf: toCrlf(raw) }
  } catch (error) {
    return { _tag: "Quarantine", reason: "processing-error", detail: oneLine(error instanceof Error ? `${error.name}: ${error.message}` : String(error)) }
  } finally {
    timer.clear()
  }
}
