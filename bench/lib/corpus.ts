/**
 * The throughput corpus: N messages, the same bytes for the same (N, seed) on every machine.
 * Mostly plain text and multipart with an attachment, a few 8-bit ones, and about one in a
 * thousand (at least one) of several MB — about 20 KB on average overall.
 */
import {
  eightBitNoEncoding,
  largeMessage,
  latin1Message,
  multipartWithAttachment,
  plainMessage
} from "../../test/support/messages.js"

/** mulberry32: a small deterministic PRNG, uniform in [0, 1). */
export const prng = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Log-uniform between a and b: many small, a long tail of bigger ones, as real mail. */
const logUniform = (random: () => number, a: number, b: number): number => Math.round(a * (b / a) ** random())

export interface Corpus {
  readonly messages: ReadonlyArray<Buffer>
  readonly kinds: Readonly<Record<string, number>>
  readonly totalBytes: number
  readonly averageBytes: number
  readonly largest: number
}

export const makeCorpus = (n: number, seed = 42): Corpus => {
  const random = prng(seed)
  const largeCount = n === 0 ? 0 : Math.max(1, Math.round(n / 1000))
  const large = new Set<number>()
  while (large.size < Math.min(largeCount, n)) large.add(Math.floor(random() * n))
  const kinds: Record<string, number> = { plain: 0, multipart: 0, "8bit": 0, large: 0 }
  const messages: Array<Buffer> = []
  for (let i = 0; i < n; i++) {
    const r = random()
    let message: Buffer
    if (large.has(i)) {
      message = largeMessage(i, logUniform(random, 2 * 1024 * 1024, 4 * 1024 * 1024))
      kinds.large! += 1
    } else if (r < 0.52) {
      message = plainMessage(i, { bodyBytes: logUniform(random, 1024, 32 * 1024), subject: `Plain message ${i} (bench)` })
      kinds.plain! += 1
    } else if (r < 0.95) {
      message = multipartWithAttachment(i, logUniform(random, 4 * 1024, 64 * 1024))
      kinds.multipart! += 1
    } else {
      message = r < 0.975 ? latin1Message(i) : eightBitNoEncoding(i)
      kinds["8bit"]! += 1
    }
    messages.push(message)
  }
  const totalBytes = messages.reduce((sum, m) => sum + m.byteLength, 0)
  return {
    messages,
    kinds,
    totalBytes,
    averageBytes: n === 0 ? 0 : totalBytes / n,
    largest: messages.reduce((max, m) => Math.max(max, m.byteLength), 0)
  }
}
