/**
 * Where a large message is assembled as it arrives: one buffer, filled piece by piece, instead
 * of a list of pieces joined at the end (which holds the message twice). It lives on a
 * SharedArrayBuffer, so handing it to a parser worker thread shares it instead of copying it.
 *
 * The size the server announced is only a hint (a server may be wrong, or hostile): the buffer
 * grows when more arrives, and memory that is never written is never resident (the kernel
 * maps zero pages lazily), so a hint that is too high costs address space, not memory.
 */
import { Buffer } from "node:buffer"
import { collectEvery } from "../memory/collectGarbage.js"

/** Messages at least this large are assembled here; smaller ones are not worth a shared buffer. */
export const LARGE_MESSAGE_BYTES = 1024 * 1024

/** A hint is trusted up to this much; beyond it the buffer grows as bytes actually arrive. */
const MAX_INITIAL_BYTES = 1024 * 1024 * 1024

export class MessageBuffer {
  private bytes: Buffer
  private length = 0
  /** The pieces that arrived are garbage once copied here; collected every few megabytes. */
  private readonly collect = collectEvery()

  constructor(expectedBytes: number | undefined) {
    const hint = expectedBytes !== undefined && Number.isFinite(expectedBytes) && expectedBytes > 0 ? expectedBytes : 0
    this.bytes = shared(Math.max(LARGE_MESSAGE_BYTES, Math.min(hint, MAX_INITIAL_BYTES)))
  }

  get byteLength(): number {
    return this.length
  }

  append(chunk: Uint8Array): void {
    const needed = this.length + chunk.byteLength
    if (needed > this.bytes.byteLength) {
      const grown = shared(Math.max(needed, Math.floor(this.bytes.byteLength * 1.5)))
      this.bytes.copy(grown, 0, 0, this.length)
      this.bytes = grown
    }
    this.bytes.set(chunk, this.length)
    this.length = needed
    this.collect(chunk.byteLength)
  }

  /** The bytes received, as a view (no copy). */
  contents(): Buffer {
    return this.bytes.subarray(0, this.length)
  }
}

const shared = (size: number): Buffer => Buffer.from(new SharedArrayBuffer(size))
