/**
 * The parsed summary a `MessageAccepted` event carries: by the quick path for the common shapes
 * of mail (quickSummary.ts), by mailparser for everything else.
 *
 * mailparser's streaming `MailParser` is fed the message a piece at a time and each
 * attachment's bytes are counted as they pass, never kept: `simpleParser` would keep every
 * attachment (and join its pieces once more) only for its size, so a 200 MB attachment would
 * cost twice its decoded size. The summary is the one simpleParser's fields give (a test holds
 * the two equal on every kind of message).
 */
import { type HeaderValue, MailParser } from "mailparser"
import { collectEvery } from "../memory/collectGarbage.js"
import { byteStream } from "./byteStream.js"
import { textToCrlf } from "./crlf.js"
import { quickSummary } from "./quickSummary.js"
import { addresses, headerDate, type Summary } from "./summaryFields.js"

/**
 * The summary of a message. `stop`, when it rejects, ends a mailparser parse early (a timeout;
 * the quick path is bounded by its size limit and linear).
 */
export const summarize = (raw: Uint8Array, stop?: Promise<never>, collectGarbage?: boolean): Promise<Summary> => {
  let quick: Summary | undefined
  try {
    quick = quickSummary(raw)
  } catch {
    // Whatever the quick path cannot read, mailparser gets to try: it decides, not this.
    quick = undefined
  }
  return quick === undefined ? summarizeWithMailparser(raw, stop, collectGarbage) : Promise.resolve(quick)
}

/**
 * The summary by mailparser's streaming parser.
 *
 * With `collectGarbage` (the parser worker), garbage is collected after every few megabytes of
 * a large message: decoding an attachment leaves its pieces behind outside the JS heap
 * (src/memory/collectGarbage.ts); for a 50 MB message that pile was the largest part of the
 * parse's memory.
 */
export const summarizeWithMailparser = (raw: Uint8Array, stop?: Promise<never>, collectGarbage?: boolean): Promise<Summary> =>
  new Promise<Summary>((resolve, reject) => {
    const parser = new MailParser({ skipHtmlToText: false, skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true })
    const input = byteStream(raw, collectGarbage === true ? collectEvery() : undefined)
    let settled = false
    const fail = (error: unknown) => {
      if (settled) return
      settled = true
      input.destroy()
      parser.destroy()
      reject(error)
    }
    stop?.catch(fail)
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
        body: textToCrlf(text ?? "")
      })
    })
    input.on("error", fail)
    input.pipe(parser)
  })
