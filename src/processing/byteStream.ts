/**
 * Bytes already in memory as a stream of views of them, a piece at a time (no copy): for the
 * stream APIs that take a message — mailparser's MailParser, nodemailer's attachment encoder —
 * so that neither holds it a second time.
 */
import { Readable } from "node:stream"

const PIECE_BYTES = 256 * 1024

export const byteStream = (bytes: Uint8Array): Readable =>
  Readable.from((function*() {
    for (let offset = 0; offset < bytes.byteLength; offset += PIECE_BYTES) {
      yield Buffer.from(bytes.buffer, bytes.byteOffset + offset, Math.min(PIECE_BYTES, bytes.byteLength - offset))
    }
  })(), { objectMode: false })
