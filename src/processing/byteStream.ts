/**
 * Bytes already in memory as a stream of views of them, a piece at a time (no copy): for the
 * stream APIs that take a message — mailparser's MailParser, nodemailer's attachment encoder —
 * so that neither holds it a second time.
 */
import { Readable } from "node:stream"

const PIECE_BYTES = 256 * 1024

/** `onPiece`, when given, is told the size of each piece as it is handed out. */
export const byteStream = (bytes: Uint8Array, onPiece?: (pieceBytes: number) => void): Readable =>
  Readable.from((function*() {
    for (let offset = 0; offset < bytes.byteLength; offset += PIECE_BYTES) {
      onPiece?.(Math.min(PIECE_BYTES, bytes.byteLength - offset))
      yield Buffer.from(bytes.buffer, bytes.byteOffset + offset, Math.min(PIECE_BYTES, bytes.byteLength - offset))
    }
  })(), { objectMode: false })
