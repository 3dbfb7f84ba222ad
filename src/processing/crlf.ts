/**
 * CR LF line endings for what is handed on to agents (settings summary: "Messages handed on
 * to agents must use CR LF line endings"). A bare LF or a bare CR becomes CR LF; everything
 * else is kept byte for byte.
 */
import { Buffer } from "node:buffer"

const CR = 0x0d
const LF = 0x0a

/**
 * Whether every line break is CR LF. Line breaks are found with `indexOf` (memchr), not byte by
 * byte: ~5 times faster on mail, whose lines are tens of bytes long.
 */
export const hasOnlyCrlf = (bytes: Uint8Array): boolean => {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let lf = buf.indexOf(LF); lf !== -1; lf = buf.indexOf(LF, lf + 1)) {
    if (lf === 0 || buf[lf - 1] !== CR) return false
  }
  for (let cr = buf.indexOf(CR); cr !== -1; cr = buf.indexOf(CR, cr + 1)) {
    if (buf[cr + 1] !== LF) return false
  }
  return true
}

/** `hasOnlyCrlf` for text. */
export const textHasOnlyCrlf = (text: string): boolean => {
  for (let lf = text.indexOf("\n"); lf !== -1; lf = text.indexOf("\n", lf + 1)) {
    if (lf === 0 || text.charCodeAt(lf - 1) !== CR) return false
  }
  for (let cr = text.indexOf("\r"); cr !== -1; cr = text.indexOf("\r", cr + 1)) {
    if (text.charCodeAt(cr + 1) !== LF) return false
  }
  return true
}

/** How many line endings are a bare CR or a bare LF: each becomes one byte longer. */
const bareEndings = (bytes: Uint8Array): number => {
  let count = 0
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]
    if (byte === CR) {
      if (bytes[i + 1] === LF) i++
      else count++
    } else if (byte === LF) {
      count++
    }
  }
  return count
}

/**
 * The output is allocated at its exact size (a large message must not cost twice its size),
 * and on a SharedArrayBuffer when the input is on one: the parser worker then hands it back to
 * the main thread without a copy.
 */
export const toCrlf = (bytes: Uint8Array): Uint8Array => {
  if (hasOnlyCrlf(bytes)) return bytes
  const size = bytes.length + bareEndings(bytes)
  const out = bytes.buffer instanceof SharedArrayBuffer ? Buffer.from(new SharedArrayBuffer(size)) : Buffer.allocUnsafe(size)
  let n = 0
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!
    if (byte === CR) {
      out[n++] = CR
      out[n++] = LF
      if (bytes[i + 1] === LF) i++
    } else if (byte === LF) {
      out[n++] = CR
      out[n++] = LF
    } else {
      out[n++] = byte
    }
  }
  return out
}

export const textToCrlf = (text: string): string => text.replace(/\r\n|\r|\n/g, "\r\n")
