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

export const toCrlf = (bytes: Uint8Array): Uint8Array => {
  if (hasOnlyCrlf(bytes)) return bytes
  const out = Buffer.allocUnsafe(bytes.length * 2)
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
  return out.subarray(0, n)
}

export const textToCrlf = (text: string): string => text.replace(/\r\n|\r|\n/g, "\r\n")
