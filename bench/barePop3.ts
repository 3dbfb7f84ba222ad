/**
 * The throughput floor over POP3: a minimal client on node:net — USER/PASS, CAPA, STAT, then
 * RETR of every message (read to the terminating CRLF.CRLF, dot-unstuffed) and DELE of every
 * message, then QUIT (which commits the deletions, RFC 1939 §6). Pipelined like mailintake's
 * own POP3 client when the server announces PIPELINING (RFC 2449 §6.6): RETRs 100 to a write,
 * the DELEs in one; one command at a time otherwise. No parsing, no storage. Plain TCP only
 * (the benchmark's transport).
 *
 * Settings from the environment: BARE_HOST, BARE_PORT, BARE_USER, BARE_PASSWORD.
 * Prints {"messages":N,"bytes":B} on stdout.
 */
import * as net from "node:net"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const socket = net.connect({ host: env("BARE_HOST", "127.0.0.1"), port: Number(env("BARE_PORT")) })
socket.setNoDelay(true)

/** Received chunks not yet consumed. */
let chunks: Array<Buffer> = []
let waiter: (() => void) | undefined
let failure: Error | undefined
socket.on("data", (chunk: Buffer) => {
  chunks.push(chunk)
  waiter?.()
})
socket.on("error", (error) => {
  failure = error
  waiter?.()
})
socket.on("close", () => {
  failure ??= new Error("connection closed")
  waiter?.()
})

const more = () =>
  new Promise<void>((resolve, reject) => {
    if (failure !== undefined) return reject(failure)
    waiter = () => {
      waiter = undefined
      if (failure !== undefined) reject(failure)
      else resolve()
    }
  })

/** Reads until `terminator`; returns everything up to and including it. */
const readUntil = async (terminator: Buffer): Promise<Buffer> => {
  let scanned = 0
  for (;;) {
    // Only the new bytes (plus an overlap for a terminator split across chunks) are searched.
    const joined = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
    chunks = joined.length === 0 ? [] : [joined]
    const at = joined.indexOf(terminator, Math.max(0, scanned - terminator.length))
    if (at >= 0) {
      const end = at + terminator.length
      chunks = end < joined.length ? [joined.subarray(end)] : []
      return joined.subarray(0, end)
    }
    scanned = joined.length
    await more()
  }
}

const CRLF = Buffer.from("\r\n")
const END = Buffer.from("\r\n.\r\n")

const command = async (line: string): Promise<string> => {
  socket.write(`${line}\r\n`)
  const reply = (await readUntil(CRLF)).toString("latin1")
  if (!reply.startsWith("+OK")) throw new Error(`${line.split(" ")[0]}: ${reply.trim()}`)
  return reply
}

/** RFC 1939 §3: a line starting with "." had one more "." added; remove it. */
const unstuff = (body: Buffer): Buffer => {
  if (body.indexOf("\r\n..") < 0 && !(body[0] === 0x2e && body[1] === 0x2e)) return body
  const parts: Array<Buffer> = []
  let from = body[0] === 0x2e && body[1] === 0x2e ? 1 : 0
  for (let at = body.indexOf("\r\n..", from); at >= 0; at = body.indexOf("\r\n..", from)) {
    parts.push(body.subarray(from, at + 2))
    from = at + 3
  }
  parts.push(body.subarray(from))
  return Buffer.concat(parts)
}

await readUntil(CRLF) // greeting
await command(`USER ${env("BARE_USER")}`)
await command(`PASS ${env("BARE_PASSWORD")}`)
socket.write("CAPA\r\n")
const capabilities = (await readUntil(CRLF)).toString("latin1").startsWith("+OK") ? (await readUntil(END)).toString("latin1") : ""
const pipelining = /^PIPELINING\r?$/m.test(capabilities)
const count = Number(/^\+OK (\d+)/.exec(await command("STAT"))?.[1] ?? 0)
const BATCH = pipelining ? 100 : 1

/** Sends the commands of `lines` together and hands each status line (and body) to `read`, in order. */
const pipelined = async (lines: ReadonlyArray<string>, read: (line: string) => Promise<void>) => {
  for (let first = 0; first < lines.length; first += BATCH) {
    const group = lines.slice(first, first + BATCH)
    socket.write(group.map((line) => `${line}\r\n`).join(""))
    for (const line of group) await read(line)
  }
}

const numbers = Array.from({ length: count }, (_, i) => i + 1)
let bytes = 0
await pipelined(numbers.map((n) => `RETR ${n}`), async (line) => {
  const status = (await readUntil(CRLF)).toString("latin1")
  if (!status.startsWith("+OK")) throw new Error(`${line}: ${status.trim()}`)
  // The message ends with CRLF, so the terminator is CRLF.CRLF; an empty one is ".CRLF" at once.
  const body = await readUntil(END)
  bytes += unstuff(body.subarray(0, body.length - 3)).byteLength
})
await pipelined(numbers.map((n) => `DELE ${n}`), async (line) => {
  const status = (await readUntil(CRLF)).toString("latin1")
  if (!status.startsWith("+OK")) throw new Error(`${line}: ${status.trim()}`)
})
await command("QUIT")
socket.end()
process.stdout.write(`${JSON.stringify({ messages: count, bytes, pipelining })}\n`)
