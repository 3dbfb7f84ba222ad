/**
 * A batch of retrieved messages moved onto one SharedArrayBuffer, so that the threads that
 * take them next (the parser worker, the SQLite thread) share them instead of each receiving a
 * copy. Structured cloning copies a Buffer's whole underlying ArrayBuffer — for a message the
 * client library sliced out of a larger read, that is more than the message — and did so once
 * per thread; here every message is copied once, in one pass, and the client's buffers become
 * garbage at once. Messages already on a SharedArrayBuffer (large ones, assembled on one) stay.
 */
import { Buffer } from "node:buffer"

export const shareBatch = (raws: ReadonlyArray<Uint8Array>): Array<Buffer> => {
  let bytes = 0
  for (const raw of raws) if (!(raw.buffer instanceof SharedArrayBuffer)) bytes += raw.byteLength
  const shared = Buffer.from(new SharedArrayBuffer(bytes))
  let offset = 0
  return raws.map((raw) => {
    if (raw.buffer instanceof SharedArrayBuffer) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
    shared.set(raw, offset)
    offset += raw.byteLength
    return shared.subarray(offset - raw.byteLength, offset)
  })
}
