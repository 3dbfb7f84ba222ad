/**
 * The throughput floor over IMAP: a bare imapflow client that only fetches every message's
 * `source` and deletes it (UID STORE \Deleted + UID EXPUNGE), 500 UIDs per batch, on one
 * connection — no parsing, no storage. Whatever mailintake adds is measured against this.
 *
 * Run by bench/throughput.ts (compiled, under plain node, so start-up costs the same as the
 * daemon's). Settings from the environment: BARE_HOST, BARE_PORT, BARE_USER, BARE_PASSWORD,
 * BARE_TLS (none | implicit), BARE_CA (PEM file), BARE_BATCH (500). Prints
 * {"messages":N,"bytes":B} on stdout.
 */
import { ImapFlow } from "imapflow"
import { readFileSync } from "node:fs"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const tls = env("BARE_TLS", "none")
const batch = Number(env("BARE_BATCH", "500"))
const ca = process.env.BARE_CA

const client = new ImapFlow({
  host: env("BARE_HOST", "127.0.0.1"),
  port: Number(env("BARE_PORT")),
  secure: tls === "implicit",
  doSTARTTLS: false,
  auth: { user: env("BARE_USER"), pass: env("BARE_PASSWORD") },
  ...(ca === undefined ? {} : { tls: { ca: readFileSync(ca) } }),
  logger: false
})
client.on("error", (error: unknown) => {
  process.stderr.write(`imap error: ${String(error)}\n`)
  process.exit(1)
})

let messages = 0
let bytes = 0
await client.connect()
const lock = await client.getMailboxLock("INBOX")
try {
  const uids = (await client.search({ all: true }, { uid: true })) || []
  uids.sort((a, b) => a - b)
  for (let start = 0; start < uids.length; start += batch) {
    const range = uids.slice(start, start + batch).join(",")
    for await (const message of client.fetch(range, { uid: true, source: true }, { uid: true })) {
      messages += 1
      bytes += message.source?.byteLength ?? 0
    }
    await client.messageDelete(range, { uid: true })
  }
} finally {
  lock.release()
}
await client.logout()
process.stdout.write(`${JSON.stringify({ messages, bytes })}\n`)
