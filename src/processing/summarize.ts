/**
 * The parsed summary a `MessageAccepted` event carries, from mailparser.
 */
import { simpleParser, type AddressObject } from "mailparser"
import { textToCrlf } from "./crlf.js"

export interface Summary {
  readonly messageId: string
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly cc: ReadonlyArray<string>
  readonly subject: string
  readonly date: string | null
  readonly attachments: ReadonlyArray<{ readonly filename: string; readonly contentType: string; readonly size: number }>
  readonly body: string
}

const addresses = (field: AddressObject | ReadonlyArray<AddressObject> | undefined): Array<string> => {
  if (field === undefined) return []
  const objects = Array.isArray(field) ? field : [field as AddressObject]
  return objects.flatMap((object) => object.value.flatMap(flatten))
}

type Entry = AddressObject["value"][number]
const flatten = (entry: Entry): Array<string> =>
  entry.group !== undefined ? entry.group.flatMap(flatten) : entry.address ? [entry.address] : entry.name ? [entry.name] : []

export const summarize = async (raw: Uint8Array): Promise<Summary> => {
  const parsed = await simpleParser(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), {
    skipHtmlToText: false,
    skipImageLinks: true,
    skipTextToHtml: true,
    skipTextLinks: true
  })
  const date = parsed.date !== undefined && !Number.isNaN(parsed.date.getTime()) ? parsed.date.toISOString() : null
  return {
    messageId: parsed.messageId ?? "",
    from: addresses(parsed.from)[0] ?? "",
    to: addresses(parsed.to),
    cc: addresses(parsed.cc),
    subject: typeof parsed.subject === "string" ? parsed.subject : "",
    date,
    // mailparser's fields are not always what its types say (a part with an empty
    // Content-Type has contentType false): coerce, so a broken part cannot break the event.
    attachments: parsed.attachments.map((attachment) => ({
      filename: typeof attachment.filename === "string" ? attachment.filename : "",
      contentType: typeof attachment.contentType === "string" && attachment.contentType !== ""
        ? attachment.contentType
        : "application/octet-stream",
      size: Number.isFinite(attachment.size) ? attachment.size : (attachment.content?.length ?? 0)
    })),
    body: textToCrlf(parsed.text ?? "")
  }
}
