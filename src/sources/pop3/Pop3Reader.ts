/**
 * Byte-exact reader of POP3 responses (RFC 1939 §3), with no I/O: bytes go in with `push`,
 * status lines and multi-line data come out. It works on Buffers only, so 8-bit message
 * bytes are never decoded, and it hands out views of the received chunks, so a large RETR is
 * never copied here nor held as one string.
 *
 * The caller decides what comes next, because only the command and its status tell whether
 * a multi-line body follows (RFC 1939 §3: "+OK" to RETR/LIST/UIDL/CAPA, never "-ERR"):
 * `readLine` for a status line, then `readData` until `done` for the body. Bytes received
 * beyond what was asked for stay buffered for the next call.
 */
import { Buffer } from "node:buffer"

const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e

const CR_BYTES = Buffer.from([CR])

/**
 * Where a multi-line body stands between two bytes.
 * - `lineStart`: just after CRLF (or right after the status line): a "." here is special.
 * - `dot`: a "." at the start of a line, held back until we know what follows it.
 * - `dotCr`: ".\r" at the start of a line, held back: "\n" next ends the response.
 * - `inLine`: inside a line, the last byte was not CR.
 * - `cr`: inside a line, the last byte was CR: "\n" next starts a new line.
 */
type DataState = "lineStart" | "dot" | "dotCr" | "inLine" | "cr"

/** The unstuffed body bytes available now, and whether the terminating "." line was seen. */
export interface DataRead {
  readonly chunks: ReadonlyArray<Buffer>
  readonly done: boolean
}

export class Pop3Reader {
  /** Received bytes not yet handed out, oldest first. */
  private pending: Array<Buffer> = []
  private pendingBytes = 0
  private state: DataState = "lineStart"

  /** Bytes received and not yet consumed (lets the caller cap line length and apply backpressure). */
  get buffered(): number {
    return this.pendingBytes
  }

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    this.pending.push(buffer)
    this.pendingBytes += buffer.byteLength
  }

  /**
   * The next status line without its line ending, or `undefined` until one is complete. A line
   * ends at LF; a CR before it is dropped. (RFC 1939 says CRLF; accepting a bare LF here costs
   * nothing and only makes the error clearer when a broken server sends one.)
   */
  readLine(): Buffer | undefined {
    for (let i = 0; i < this.pending.length; i++) {
      const buffer = this.pending[i]!
      const lf = buffer.indexOf(LF)
      if (lf === -1) continue
      const parts = this.pending.slice(0, i)
      parts.push(buffer.subarray(0, lf + 1))
      const rest = buffer.subarray(lf + 1)
      this.pending = rest.byteLength > 0 ? [rest, ...this.pending.slice(i + 1)] : this.pending.slice(i + 1)
      const line = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
      this.pendingBytes -= line.byteLength
      const end = line.byteLength >= 2 && line[line.byteLength - 2] === CR ? line.byteLength - 2 : line.byteLength - 1
      return line.subarray(0, end)
    }
    return undefined
  }

  /**
   * The body of a multi-line response, unstuffed, as far as it has arrived. RFC 1939 §3: a line
   * that starts with "." and has more than CRLF after it loses that first "."; a line that is
   * exactly ".CRLF" ends the response and is not part of it. The CRLF before that line is the
   * end of the last data line, so it is part of the body. Lines are CRLF-delimited: a bare CR
   * or bare LF is data, never a line boundary, so "\r.\r\n" or "\n.\r\n" inside a line cannot
   * end a response early.
   */
  readData(): DataRead {
    const chunks: Array<Buffer> = []
    while (this.pending.length > 0) {
      const buffer = this.pending[0]!
      const end = this.scan(buffer, chunks)
      if (end === -1) {
        this.pending.shift()
        this.pendingBytes -= buffer.byteLength
        continue
      }
      // The terminator ended inside this buffer: keep what follows it for the next response.
      this.pendingBytes -= end
      if (end === buffer.byteLength) this.pending.shift()
      else this.pending[0] = buffer.subarray(end)
      this.state = "lineStart"
      return { chunks, done: true }
    }
    return { chunks, done: false }
  }

  /**
   * Runs the state machine over one buffer, appending data to `out` as views of `buffer`.
   * Returns the offset just after the terminator, or -1 when the buffer ended first. Only the
   * bytes at a line start are looked at one by one; inside lines `indexOf` finds the next LF.
   */
  private scan(buffer: Buffer, out: Array<Buffer>): number {
    const length = buffer.byteLength
    let i = 0
    // Start of the run of bytes not yet handed out.
    let from = 0
    const flush = (to: number) => {
      if (to > from) out.push(buffer.subarray(from, to))
    }
    while (i < length) {
      switch (this.state) {
        case "lineStart": {
          if (buffer[i] === DOT) {
            // Hold the dot back: it is either a stuffing octet or the terminator, never data.
            flush(i)
            i += 1
            from = i
            this.state = "dot"
          } else {
            this.state = "inLine"
          }
          break
        }
        case "dot": {
          if (buffer[i] === CR) {
            i += 1
            from = i
            this.state = "dotCr"
          } else {
            // A stuffed line ("..", ".x"): the held-back dot is dropped, this byte is data.
            this.state = "inLine"
          }
          break
        }
        case "dotCr": {
          if (buffer[i] === LF) return i + 1
          // ".\r" then something other than LF: the dot was stuffing and the CR is data.
          out.push(CR_BYTES)
          this.state = "cr"
          break
        }
        case "inLine":
        case "cr": {
          const lf = buffer.indexOf(LF, i)
          if (lf === -1) {
            this.state = buffer[length - 1] === CR ? "cr" : "inLine"
            i = length
            break
          }
          const afterCr = lf > i ? buffer[lf - 1] === CR : this.state === "cr"
          i = lf + 1
          this.state = afterCr ? "lineStart" : "inLine"
          break
        }
      }
    }
    flush(length)
    return -1
  }
}

/**
 * Splits a small multi-line body (CAPA, LIST, UIDL) into its lines, without line endings.
 * These bodies are ASCII by definition (RFC 1939 §7, RFC 2449 §5), so latin1 is lossless.
 */
export const bodyLines = (body: Buffer): Array<string> => {
  const text = body.toString("latin1")
  if (text.length === 0) return []
  const lines = text.split("\r\n")
  if (lines[lines.length - 1] === "") lines.pop()
  return lines
}
