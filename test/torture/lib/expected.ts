/**
 * What a seeded message looks like once the server hands it out, so that the bytes the daemon
 * stored can be compared with what was seeded. Measured on Dovecot 2.3.19 (Maildir):
 * - IMAP (FETCH BODY[]): a bare LF becomes CR LF and a NUL becomes 0x80; a bare CR stays.
 * - POP3 (RETR): a bare LF becomes CR LF, NULs stay, and a message that does not end with a
 *   line break gets CR LF before the terminating "." (RFC 1939 cannot say otherwise).
 */
import { createHash } from "node:crypto"

export type Protocol = "imap" | "pop3"

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

const CR = 0x0d
const LF = 0x0a

/** Bare LF → CR LF; everything else unchanged (a bare CR stays). */
export const bareLfToCrlf = (bytes: Uint8Array): Buffer => {
  let bare = 0
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === LF && (i === 0 || bytes[i - 1] !== CR)) bare++
  if (bare === 0) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = Buffer.allocUnsafe(bytes.length + bare)
  let n = 0
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!
    if (byte === LF && (i === 0 || bytes[i - 1] !== CR)) out[n++] = CR
    out[n++] = byte
  }
  return out
}

/** The bytes the server delivers for a seeded message. */
export const served = (seeded: Uint8Array, protocol: Protocol): Buffer => {
  const crlf = bareLfToCrlf(seeded)
  if (protocol === "imap") {
    if (!crlf.includes(0)) return crlf
    const copy = Buffer.from(crlf)
    for (let i = 0; i < copy.length; i++) if (copy[i] === 0) copy[i] = 0x80
    return copy
  }
  if (crlf.length > 0 && !(crlf[crlf.length - 2] === CR && crlf[crlf.length - 1] === LF)) {
    return Buffer.concat([crlf, Buffer.from("\r\n")])
  }
  return crlf
}

/** One expected message identity: the sha256 of its served bytes and how many copies were seeded. */
export interface ExpectedSet {
  readonly protocol: Protocol
  /** sha256 → copies seeded. */
  readonly copies: Map<string, number>
  /** sha256 → a label for reports (the Message-ID line or the generator's kind). */
  readonly labels: Map<string, string>
  readonly total: number
}

export const expectedSet = (
  messages: ReadonlyArray<Uint8Array>,
  protocol: Protocol,
  label: (message: Uint8Array, index: number) => string = defaultLabel
): ExpectedSet => {
  const copies = new Map<string, number>()
  const labels = new Map<string, string>()
  messages.forEach((message, index) => {
    const sha = sha256(served(message, protocol))
    copies.set(sha, (copies.get(sha) ?? 0) + 1)
    if (!labels.has(sha)) labels.set(sha, label(message, index))
  })
  return { protocol, copies, labels, total: messages.length }
}

const defaultLabel = (message: Uint8Array, index: number): string => {
  const head = Buffer.from(message.buffer, message.byteOffset, Math.min(message.byteLength, 4096)).toString("latin1")
  const id = /^message-id:[ \t]*(.*)$/im.exec(head)?.[1]?.trim()
  return id ? `#${index} ${id.slice(0, 120)}` : `#${index}`
}
