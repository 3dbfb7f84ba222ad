/**
 * CR LF line endings for what is handed on to agents (settings summary: "Messages handed on
 * to agents must use CR LF line endings"). A bare LF or a bare CR becomes CR LF; everything
 * else is kept byte for byte.
 */
const CR = 0x0d
const LF = 0x0a

export const hasOnlyCrlf = (bytes: Uint8Array): boolean => {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]
    if (byte === LF && (i === 0 || bytes[i - 1] !== CR)) return false
    if (byte === CR && bytes[i + 1] !== LF) return false
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
