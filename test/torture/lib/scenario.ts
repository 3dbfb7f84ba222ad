/**
 * Plumbing shared by the torture scenarios: configuration files, waiting for a mailbox to be
 * drained, reading the quarantine notices an SMTP server received.
 */
import { join } from "node:path"
import { writeConfig } from "../../support/cli.js"
import type { Dovecot } from "../../support/dovecot.js"
import type { ReceivedMessage } from "../../support/smtpServer.js"
import type { TortureContext } from "./context.js"
import { sleep } from "./context.js"
import type { Daemons } from "./daemon.js"
import type { ExpectedSet } from "./expected.js"
import { countByType, type Ledger, ledger, terminalCount } from "./ledger.js"

export interface Mailbox {
  readonly id: string
  readonly user: string
}

/** An IMAP mailbox on Dovecot: implicit TLS trusting its certificate, or plain (for proxies). */
export const imapBox = (
  server: { host: string; port: number; caFile?: string },
  id: string,
  user: string,
  password: unknown,
  extra: Record<string, unknown> = {}
) => ({
  id,
  host: server.host,
  port: server.port,
  tls: server.caFile === undefined ? "none" : "implicit",
  ...(server.caFile === undefined ? {} : { caFile: server.caFile }),
  user,
  password,
  connectTimeoutSeconds: 5,
  commandTimeoutSeconds: 30,
  ...extra
})

export const pop3Box = imapBox

export interface Written {
  readonly config: string
  readonly database: string
  readonly dir: string
}

/** Writes a configuration with one configuration block; registers the database for the secrets scan. */
export const writeTortureConfig = (
  ctx: TortureContext,
  dir: string,
  options: {
    readonly integrationType: "IMAP" | "POP3"
    readonly mailboxes: ReadonlyArray<unknown>
    readonly quarantine: unknown
    readonly database?: string
    readonly extra?: Record<string, unknown>
  }
): Written => {
  const database = options.database ?? join(dir, "events.db")
  const config = writeConfig(dir, {
    database,
    defaults: { quarantine: options.quarantine },
    configurations: [{
      name: "torture",
      integrationType: options.integrationType,
      pollingIntervalSeconds: 1,
      reconnectIntervalSeconds: 1,
      mailboxes: options.mailboxes,
      ...options.extra
    }]
  })
  ctx.databaseDirs.push(join(database, ".."))
  return { config, database, dir }
}

/** Everything still in these users' INBOXes (raw Maildir files). */
export const onServer = async (dovecot: Dovecot, users: ReadonlyArray<string>): Promise<Array<Buffer>> =>
  (await Promise.all(users.map((user) => dovecot.list(user)))).flat()

export const serverCount = async (dovecot: Dovecot, users: ReadonlyArray<string>): Promise<number> =>
  (await Promise.all(users.map((user) => dovecot.count(user)))).reduce((a, b) => a + b, 0)

export const fullLedger = async (
  dovecot: Dovecot,
  boxes: ReadonlyArray<Mailbox>,
  database: string,
  expected: ExpectedSet,
  checkBlobs = false
): Promise<Ledger> =>
  ledger({
    database,
    streams: boxes.map((box) => box.id),
    expected,
    onServer: await onServer(dovecot, boxes.map((box) => box.user)),
    checkBlobs
  })

const PROGRESS = ["MessageRetrieved", "MessageAccepted", "MessageQuarantineRequested", "MessageQuarantined", "MessageDuplicateSkipped", "MessageRemoved"]

/**
 * Waits until the mailboxes are empty, every seeded message has its terminal event and every
 * removal is logged, or the time is up (a hang). Cheap checks first (a directory listing and a
 * count query).
 */
export const waitDrained = async (options: {
  readonly dovecot: Dovecot
  readonly boxes: ReadonlyArray<Mailbox>
  readonly database: string
  readonly expected: ExpectedSet
  readonly timeoutMs: number
  /** Stop waiting early when this says so (e.g. the daemon died). */
  readonly abort?: () => boolean
  /** Give up (a hang) when no message made progress for this long. Default 150 s. */
  readonly stallMs?: number
}): Promise<boolean> => {
  const deadline = Date.now() + options.timeoutMs
  let lastEvents = -1
  let lastChange = Date.now()
  while (Date.now() < deadline) {
    if (options.abort?.() === true) return false
    const counts = countByType(options.database)
    // Progress with messages (not MailboxConnected/…Failed, which a crash loop writes forever).
    const events = PROGRESS.reduce((sum, type) => sum + (counts.get(type) ?? 0), 0)
    if (events !== lastEvents) {
      lastEvents = events
      lastChange = Date.now()
    } else if (Date.now() - lastChange > (options.stallMs ?? 150_000)) {
      return false
    }
    const left = await serverCount(options.dovecot, options.boxes.map((box) => box.user))
    // Drained: the server is empty, every message has its terminal event and its removal is logged.
    if (left === 0 && terminalCount(counts) >= options.expected.total && (counts.get("MessageRemoved") ?? 0) >= options.expected.total) {
      const l = await fullLedger(options.dovecot, options.boxes, options.database, options.expected)
      if (l.lost === 0 && l.stillOnServer === 0 && l.removedNotLogged <= 0) return true
    }
    await sleep(250)
  }
  return false
}

/** The SHA-256 line of a quarantine notice (the original's sha256), if any. */
export const noticeSha = (raw: Buffer): string | undefined =>
  // The text part may be quoted-printable: undo its soft line breaks first.
  /SHA-256:\s+([0-9a-f]{64})/.exec(raw.subarray(0, 64 * 1024).toString("latin1").replace(/=\r?\n/g, ""))?.[1]

export const noticeMessageId = (raw: Buffer): string | undefined =>
  /^message-id:[ \t]*(.*)$/im.exec(topHeader(raw))?.[1]?.trim()

/** The top-level header block of a message (up to the first empty line), as latin1. */
export const topHeader = (raw: Buffer): string => {
  const end = raw.indexOf("\r\n\r\n")
  return raw.subarray(0, end < 0 ? Math.min(raw.length, 256 * 1024) : end).toString("latin1")
}

/** Checks that every quarantined message reached the SMTP server; counts re-sent notices. */
export const noticeAccounting = (received: ReadonlyArray<ReceivedMessage>, l: Ledger) => {
  const bySha = new Map<string, number>()
  for (const message of received) {
    const sha = noticeSha(message.raw)
    if (sha !== undefined) bySha.set(sha, (bySha.get(sha) ?? 0) + 1)
  }
  const missing = l.quarantinedShas.filter(({ sha256 }) => (bySha.get(sha256) ?? 0) === 0).length
  const ids = received.map((message) => noticeMessageId(message.raw) ?? "")
  const resent = ids.length - new Set(ids).size
  // A notice cut short would not end with its closing MIME boundary.
  const truncated = received.filter((message) => !/--\r?\n?$/.test(message.raw.subarray(-200).toString("latin1").trimEnd())).length
  return { notices: received.length, missing, resent, truncated }
}

/** Files of a scenario for the secrets scan. */
export const registerArtifacts = (ctx: TortureContext, daemons: Daemons): void => {
  ctx.artifacts.push(...daemons.files)
}
