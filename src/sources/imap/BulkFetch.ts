/**
 * A second, read-only IMAP connection that only fetches whole messages by UID, for draining a
 * backlog. imapflow turns every FETCH response into a parsed token tree and a formatted object
 * (~0.15 ms of the main thread a message, and a good share of V8's optimizing compiler); here
 * a response is a line, a literal and a closing line, and the literal's bytes are the message.
 *
 * It is deliberately small, and anything it does not understand is an error, upon which the
 * session falls back to imapflow (ImapSource.ts):
 * - LOGIN with quoted strings only (RFC 3501 §6.2.3); a user or password that needs a literal
 *   is not attempted.
 * - EXAMINE (RFC 3501 §6.3.2): read-only, so nothing done here can change the folder; BODY.PEEK
 *   does not set \Seen either. The folder's UIDVALIDITY must be the session's.
 * - `UID FETCH set (UID BODY.PEEK[])`: a message gone meanwhile is simply not in the answer.
 */
import { Buffer } from "node:buffer"
import * as net from "node:net"
import * as tls from "node:tls"

export interface BulkFetchOptions {
  readonly host: string
  readonly port: number
  readonly tls: "implicit" | "starttls" | "none"
  readonly tlsOptions: tls.ConnectionOptions
  readonly user: string
  readonly password: string
  readonly folder: string
  /** The session's UIDVALIDITY: another one means the UIDs name other messages. */
  readonly uidValidity: string
  readonly connectTimeoutMillis: number
  /** Longest wait for the next bytes of an answer. */
  readonly commandTimeoutMillis: number
}

export interface BulkFetch {
  /** The messages of these UIDs that the folder still has, by UID. */
  readonly fetch: (uids: ReadonlyArray<number>) => Promise<Map<number, Buffer>>
  /** LOGOUT, then the socket is closed; never fails. */
  readonly close: () => Promise<void>
}

/** One response: its text with every literal cut out, and the literals in order. */
interface Response {
  /** The text, each literal replaced by LITERAL (its position). */
  readonly text: string
  readonly literals: ReadonlyArray<Buffer>
}

const CR = 0x0d
const LF = 0x0a
/** Stands for a literal in a response's text: NUL never occurs in IMAP text (RFC 3501 §9, CHAR8 but not NUL). */
const LITERAL = "\u0000"
/** A line ending in a literal's announcement: `{123}` or `{123+}` (RFC 7888), then CRLF. */
const LITERAL_AT_END = /\{(\d+)\+?\}$/
/** Longest response line (without literals) accepted: a FETCH line is far shorter. */
const MAX_LINE_BYTES = 64 * 1024

/** RFC 3501 §9 quoted: any CHAR except CR and LF, with `"` and `\` escaped; undefined otherwise. */
export const quoted = (text: string): string | undefined =>
  /^[\x01-\x09\x0b\x0c\x0e-\x7f]*$/.test(text) ? `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"` : undefined

/**
 * Splits received bytes into responses. Bytes go in with `push`; `next` gives a whole response
 * or undefined until one has arrived.
 */
export class ResponseReader {
  private buffered: Array<Buffer> = []
  private bufferedBytes = 0
  private text: Array<string> = []
  private literals: Array<Buffer> = []
  /** Bytes still owed to the literal being read; -1 when reading a line. */
  private owed = -1
  private literalParts: Array<Buffer> = []

  push(chunk: Buffer): void {
    this.buffered.push(chunk)
    this.bufferedBytes += chunk.byteLength
  }

  private take(bytes: number): Buffer {
    const parts: Array<Buffer> = []
    let left = bytes
    while (left > 0) {
      const head = this.buffered[0]!
      if (head.byteLength <= left) {
        parts.push(head)
        this.buffered.shift()
        left -= head.byteLength
      } else {
        parts.push(head.subarray(0, left))
        this.buffered[0] = head.subarray(left)
        left = 0
      }
    }
    this.bufferedBytes -= bytes
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes)
  }

  /**
   * Offset of the first LF in the buffered bytes, or -1. Only the chunks up to it are joined,
   * so a line is never found by copying everything received after it.
   */
  private lineEnd(): number {
    let offset = 0
    for (let k = 0; k < this.buffered.length; k++) {
      const lf = this.buffered[k]!.indexOf(LF)
      if (lf !== -1) {
        if (k > 0) this.buffered.splice(0, k + 1, Buffer.concat(this.buffered.slice(0, k + 1)))
        return offset + lf
      }
      offset += this.buffered[k]!.byteLength
    }
    return -1
  }

  next(): Response | undefined {
    for (;;) {
      if (this.owed >= 0) {
        if (this.bufferedBytes === 0) return undefined
        const piece = this.take(Math.min(this.owed, this.bufferedBytes))
        this.literalParts.push(piece)
        this.owed -= piece.byteLength
        if (this.owed > 0) return undefined
        this.literals.push(this.literalParts.length === 1 ? this.literalParts[0]! : Buffer.concat(this.literalParts))
        this.literalParts = []
        this.owed = -1
        continue
      }
      const end = this.lineEnd()
      if (end === -1) {
        if (this.bufferedBytes > MAX_LINE_BYTES) throw new Error(`a response line longer than ${MAX_LINE_BYTES} bytes`)
        return undefined
      }
      // RFC 3501 says CRLF; a bare LF is taken as a line end too.
      const bytes = this.take(end + 1)
      const line = bytes.toString("latin1", 0, end > 0 && bytes[end - 1] === CR ? end - 1 : end)
      const literal = LITERAL_AT_END.exec(line)
      if (literal !== null) {
        this.text.push(line.slice(0, literal.index), LITERAL)
        this.owed = Number(literal[1])
        continue
      }
      this.text.push(line)
      const response = { text: this.text.join(""), literals: this.literals }
      this.text = []
      this.literals = []
      return response
    }
  }
}

/**
 * The UID and the message of one `* n FETCH (...)` response, read item by item (RFC 3501
 * §7.4.2): values are numbers, atoms, quoted strings, literals, NIL or parenthesized lists.
 * undefined for a FETCH without both (e.g. a flag change another client caused).
 */
export const fetchedMessage = (response: Response): { uid: number; raw: Buffer } | undefined => {
  const { literals, text } = response
  const open = /^\* \d+ FETCH \(/i.exec(text)
  if (open === null) return undefined
  let i = open[0].length
  let literal = 0
  let uid: number | undefined
  let raw: Buffer | undefined
  const skipSpaces = () => {
    while (text[i] === " ") i++
  }
  /** Reads one value; returns the literal or string bytes for a string, the atom text otherwise. */
  const value = (): Buffer | string | undefined => {
    skipSpaces()
    if (text[i] === LITERAL) {
      i += 1
      return literals[literal++]
    }
    if (text[i] === "\"") {
      let out = ""
      for (i++; i < text.length && text[i] !== "\""; i++) out += text[i] === "\\" ? text[++i] : text[i]
      i++
      return Buffer.from(out, "latin1")
    }
    if (text[i] === "(") {
      // A list: skipped, with whatever it holds (strings, literals, nested lists).
      let depth = 0
      do {
        if (text[i] === "(") depth++
        else if (text[i] === ")") depth--
        else if (text[i] === "\"") {
          for (i++; i < text.length && text[i] !== "\""; i++) if (text[i] === "\\") i++
        } else if (text[i] === LITERAL) {
          literal++
        }
        i++
      } while (depth > 0 && i < text.length)
      return ""
    }
    const start = i
    while (i < text.length && text[i] !== " " && text[i] !== ")") i++
    return text.slice(start, i)
  }
  for (;;) {
    skipSpaces()
    if (i >= text.length || text[i] === ")") break
    // The item's name: an atom, with a section in brackets that may hold spaces and parentheses.
    const start = i
    while (i < text.length && text[i] !== " " && text[i] !== ")") {
      if (text[i] === "[") {
        const close = text.indexOf("]", i)
        if (close === -1) return undefined
        i = close
      }
      i++
    }
    const name = text.slice(start, i).toUpperCase()
    const item = value()
    if (name === "UID" && typeof item === "string" && /^\d+$/.test(item)) uid = Number(item)
    else if (name === "BODY[]" && Buffer.isBuffer(item)) raw = item
  }
  return uid === undefined || raw === undefined ? undefined : { uid, raw }
}

/** Connects, logs in and opens the folder read-only; rejects on anything unexpected. */
export const openBulkFetch = async (options: BulkFetchOptions): Promise<BulkFetch> => {
  const reader = new ResponseReader()
  let socket: net.Socket
  let failure: Error | undefined
  let wake: (() => void) | undefined
  const onData = (chunk: Buffer) => {
    reader.push(chunk)
    wake?.()
  }
  const onEnd = (error?: Error) => {
    failure ??= error ?? new Error("connection closed")
    wake?.()
  }
  const attach = (s: net.Socket) => {
    socket = s
    s.on("data", onData)
    s.on("error", onEnd)
    s.on("close", () => onEnd())
  }

  /** The next response; rejects when the connection ends or goes quiet for the command timeout. */
  const nextResponse = (): Promise<Response> =>
    new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const attempt = () => {
        let response: Response | undefined
        try {
          response = reader.next()
        } catch (error) {
          failure ??= error as Error
        }
        if (response !== undefined || failure !== undefined) {
          wake = undefined
          clearTimeout(timer)
          if (response !== undefined) resolve(response)
          else reject(failure)
          return
        }
        timer?.refresh()
      }
      timer = setTimeout(() => {
        wake = undefined
        failure ??= new Error(`no answer within ${options.commandTimeoutMillis / 1000} s`)
        socket.destroy()
        reject(failure)
      }, options.commandTimeoutMillis)
      wake = attempt
      attempt()
    })

  let tagCounter = 0
  /** Whether a command waits for its answer (one at a time). */
  let busy = false
  /** Sends a command; hands the untagged responses before its tagged OK to `onUntagged`. */
  const command = async (line: string, onUntagged?: (response: Response) => void): Promise<void> => {
    if (failure !== undefined) throw failure
    if (busy) throw new Error("a command is already waiting for its answer")
    busy = true
    try {
      const tag = `B${++tagCounter}`
      socket.write(`${tag} ${line}\r\n`)
      for (;;) {
        const response = await nextResponse()
        if (response.text.startsWith(`${tag} `)) {
          const status = response.text.slice(tag.length + 1)
          if (!/^OK\b/i.test(status)) throw new Error(`${line.split(" ")[0]} refused: ${status.slice(0, 200)}`)
          return
        }
        if (/^\* BYE\b/i.test(response.text)) throw new Error(`server said BYE: ${response.text.slice(0, 200)}`)
        onUntagged?.(response)
      }
    } finally {
      busy = false
    }
  }

  const connected = (s: net.Socket, event: "connect" | "secureConnect") =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy()
        reject(new Error(`no connection within ${options.connectTimeoutMillis / 1000} s`))
      }, options.connectTimeoutMillis)
      s.once(event, () => {
        clearTimeout(timer)
        resolve()
      })
      s.once("error", (error) => {
        clearTimeout(timer)
        reject(error)
      })
    })

  const user = quoted(options.user)
  const password = quoted(options.password)
  const folder = quoted(options.folder)
  if (user === undefined || password === undefined || folder === undefined) {
    throw new Error("the user, password or folder would need a literal: not supported here")
  }

  const first = options.tls === "implicit"
    ? tls.connect({ ...options.tlsOptions, host: options.host, port: options.port })
    : net.connect({ host: options.host, port: options.port })
  attach(first)
  first.setNoDelay(true)
  try {
    await connected(first, options.tls === "implicit" ? "secureConnect" : "connect")
    const greeting = await nextResponse()
    if (!/^\* OK\b/i.test(greeting.text)) throw new Error(`unexpected greeting: ${greeting.text.slice(0, 200)}`)
    if (options.tls === "starttls") {
      await command("STARTTLS")
      // RFC 3501 §6.2.1: nothing may follow the OK before the handshake (an injection otherwise).
      if (reader.next() !== undefined) throw new Error("server sent data after STARTTLS, before the TLS handshake")
      const plain = socket!
      plain.removeAllListeners("data")
      plain.on("error", () => {})
      const upgraded = tls.connect({ ...options.tlsOptions, host: options.host, socket: plain })
      attach(upgraded)
      await connected(upgraded, "secureConnect")
    }
    await command(`LOGIN ${user} ${password}`)
    let uidValidity: string | undefined
    await command(`EXAMINE ${folder}`, (response) => {
      uidValidity = /^\* OK \[UIDVALIDITY (\d+)\]/i.exec(response.text)?.[1] ?? uidValidity
    })
    if (uidValidity !== options.uidValidity) {
      throw new Error(`UIDVALIDITY is ${uidValidity ?? "not reported"}, the session's is ${options.uidValidity}`)
    }
  } catch (error) {
    socket!.destroy()
    throw error
  }

  return {
    fetch: async (uids) => {
      const messages = new Map<number, Buffer>()
      if (uids.length === 0) return messages
      await command(`UID FETCH ${uids.join(",")} (UID BODY.PEEK[])`, (response) => {
        const message = fetchedMessage(response)
        if (message !== undefined) messages.set(message.uid, message.raw)
      })
      return messages
    },
    close: async () => {
      // A fetch still waiting (its caller was interrupted) ends with the socket.
      if (failure === undefined && !busy) {
        await Promise.race([command("LOGOUT").catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000))])
      }
      socket.destroy()
    }
  }
}
