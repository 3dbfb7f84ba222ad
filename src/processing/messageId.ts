import { parseHeaderBlock } from "../domain/headers.js"

/** The Message-ID as written in the header, without the angle brackets' surrounding space. */
export const messageIdOf = (raw: Uint8Array): string => {
  const value = parseHeaderBlock(raw).get("message-id")
  return value === undefined ? "" : value.trim().replace(/[\r\n]/g, "").slice(0, 998)
}
