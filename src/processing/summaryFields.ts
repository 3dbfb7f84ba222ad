/**
 * The fields of a message's summary (the `MessageAccepted` event carries them) and the helpers
 * both ways of summarizing share: mailparser's streaming parse (summarize.ts) and the quick
 * path for common shapes (quickSummary.ts).
 */
import type { AddressObject, HeaderValue } from "mailparser"
import type { SpooledBody } from "./bodySpool.js"

export interface Summary {
  readonly messageId: string
  readonly from: string
  readonly to: ReadonlyArray<string>
  readonly cc: ReadonlyArray<string>
  readonly subject: string
  readonly date: string | null
  readonly attachments: ReadonlyArray<{ readonly filename: string; readonly contentType: string; readonly size: number }>
  /** The text body with CR LF line endings; "" when it is spooled. */
  readonly body: string
  /** A large message's large body, left in the spool for the event log (bodySpool.ts). */
  readonly spooledBody?: SpooledBody
}

// mailparser's fields are not always what its types say (a part with an empty Content-Type
// has contentType false, a broken address header is no AddressObject): everything is coerced,
// so a broken part cannot break the event.

export const addresses = (field: HeaderValue | undefined): Array<string> => {
  if (field === undefined || typeof field !== "object" || field === null) return []
  const objects = (Array.isArray(field) ? field : [field]) as Array<AddressObject>
  return objects.flatMap((object) => (Array.isArray(object?.value) ? object.value.flatMap(flatten) : []))
}

type Entry = AddressObject["value"][number]
const flatten = (entry: Entry): Array<string> =>
  entry.group !== undefined ? entry.group.flatMap(flatten) : entry.address ? [entry.address] : entry.name ? [entry.name] : []

/**
 * The Date header's value when it is a date. mailparser puts the time of parsing in place of
 * a Date it cannot read; the summary says null instead (as it does for a message without one).
 */
export const headerDate = (lines: ReadonlyArray<{ readonly key: string; readonly line: string }>): Date | undefined => {
  const line = lines.find((header) => header.key === "date")?.line
  if (line === undefined) return undefined
  const date = new Date(line.slice(line.indexOf(":") + 1).replace(/\s+/g, " ").trim())
  return Number.isNaN(date.getTime()) ? undefined : date
}

