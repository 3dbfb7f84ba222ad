/**
 * The books of a torture run: what was seeded, what the event log says happened to it, and
 * what is still on the server. Read straight from the SQLite file (read-only), independently
 * of the code under test.
 *
 * A seeded message is identified by the sha256 of the bytes the server serves for it
 * (expected.ts), so seeded duplicates (identical bytes) are counted as copies of one identity:
 * - terminal events: MessageAccepted, MessageQuarantined, MessageDuplicateSkipped;
 * - lost = copies seeded − terminal events − copies still on the server (when > 0): a message
 *   gone from the server without a terminal event in the log;
 * - duplicated = terminal events − copies seeded (when > 0).
 * A message retrieved with bytes that match no seeded message is "unknown": its bytes were
 * altered somewhere between the server and the log.
 */
import Database from "better-sqlite3"
import { existsSync } from "node:fs"
import { type ExpectedSet, served, sha256 } from "./expected.js"
import { storedBlob } from "../../support/storedBlob.js"

interface Row {
  readonly stream: string
  readonly type: string
  readonly payload: string
  readonly at: string
}

export interface Ledger {
  readonly messagesIn: number
  readonly accepted: number
  readonly quarantined: number
  readonly duplicateSkipped: number
  /** Waiting for the quarantine destination (requested, not yet MessageQuarantined). */
  readonly quarantinePending: number
  readonly lost: number
  readonly duplicated: number
  readonly stillOnServer: number
  readonly retrievedEvents: number
  readonly removedEvents: number
  /** Messages the server no longer has, minus MessageRemoved events. */
  readonly removedNotLogged: number
  readonly quarantineFailedEvents: number
  readonly connectionFailures: ReadonlyArray<{ readonly stream: string; readonly error: string; readonly attempt: number; readonly retryInSeconds: number; readonly at: string }>
  readonly connectedEvents: number
  /** Retrieved bytes that match no seeded message. */
  readonly unknown: number
  /** Stored blobs whose sha256 is not their name, or missing blobs (only with checkBlobs). */
  readonly blobMismatches: number
  /** Longest time from MessageRetrieved to the message's classification event, ms. */
  readonly maxClassifyMs: number
  readonly lostLabels: ReadonlyArray<string>
  readonly duplicatedLabels: ReadonlyArray<string>
  readonly unknownLabels: ReadonlyArray<string>
  /** Accepted/quarantined shas, with reasons, for further checks. */
  readonly quarantinedShas: ReadonlyArray<{ readonly sha256: string; readonly reason: string }>
  readonly reasons: Readonly<Record<string, number>>
  /** MessageAccepted events whose summary fields carry CR, LF or NUL. */
  readonly acceptedWithControlChars: number
}

const TERMINAL = new Set(["MessageAccepted", "MessageQuarantined", "MessageDuplicateSkipped"])

export const readEvents = (database: string, streams?: ReadonlyArray<string>): Array<Row> => {
  if (!existsSync(database)) return []
  const db = new Database(database, { readonly: true, fileMustExist: true })
  try {
    db.pragma("busy_timeout = 5000")
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").get()
    if (hasTable === undefined) return []
    const rows = db.prepare("SELECT stream, type, payload, at FROM events ORDER BY position").all() as Array<Row>
    return streams === undefined ? rows : rows.filter((row) => streams.includes(row.stream))
  } finally {
    db.close()
  }
}

/** Read-only connections kept open for progress polling (opening one costs more than the query). */
const readers = new Map<string, Database.Database>()

const reader = (database: string): Database.Database | undefined => {
  const open = readers.get(database)
  if (open !== undefined) return open
  if (!existsSync(database)) return undefined
  const db = new Database(database, { readonly: true, fileMustExist: true })
  db.pragma("busy_timeout = 2000")
  readers.set(database, db)
  return db
}

export const closeReaders = (): void => {
  for (const db of readers.values()) db.close()
  readers.clear()
}

/** Counts of event types (cheap: for progress polling). */
export const countByType = (database: string): Map<string, number> => {
  const counts = new Map<string, number>()
  try {
    const db = reader(database)
    if (db === undefined) return counts
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").get()
    if (hasTable === undefined) return counts
    for (const row of db.prepare("SELECT type, count(*) AS n FROM events GROUP BY type").all() as Array<{ type: string; n: number }>) {
      counts.set(row.type, row.n)
    }
  } catch {
    // the daemon may be creating the file right now; start afresh next time
    readers.get(database)?.close()
    readers.delete(database)
  }
  return counts
}

export const terminalCount = (counts: Map<string, number>): number =>
  (counts.get("MessageAccepted") ?? 0) + (counts.get("MessageQuarantined") ?? 0) + (counts.get("MessageDuplicateSkipped") ?? 0)

export interface LedgerInput {
  readonly database: string
  readonly streams: ReadonlyArray<string>
  readonly expected: ExpectedSet
  /** The raw files still in the server's folders (Dovecot's Maildir), for every mailbox. */
  readonly onServer: ReadonlyArray<Buffer>
  readonly checkBlobs?: boolean
}

export const ledger = (input: LedgerInput): Ledger => {
  const { expected } = input
  const rows = readEvents(input.database, input.streams)
  const terminal = new Map<string, number>()
  let accepted = 0
  let quarantined = 0
  let duplicateSkipped = 0
  let retrievedEvents = 0
  let removedEvents = 0
  let quarantineFailedEvents = 0
  let connectedEvents = 0
  let acceptedWithControlChars = 0
  const requested = new Map<string, string>()
  const retrievedAt = new Map<string, number>()
  const retrievedShas: Array<{ stream: string; sha: string }> = []
  const connectionFailures: Array<Ledger["connectionFailures"][number]> = []
  const quarantinedShas: Array<{ sha256: string; reason: string }> = []
  const reasons: Record<string, number> = {}
  let maxClassifyMs = 0
  const unknownLabels: Array<string> = []
  let unknown = 0

  for (const row of rows) {
    const data = JSON.parse(row.payload) as Record<string, any>
    const key = `${row.stream}\u0000${data.ref as string}`
    const at = Date.parse(row.at)
    switch (row.type) {
      case "MessageRetrieved":
        retrievedEvents++
        retrievedAt.set(key, at)
        retrievedShas.push({ stream: row.stream, sha: data.sha256 })
        if (!expected.copies.has(data.sha256)) {
          unknown++
          if (unknownLabels.length < 10) unknownLabels.push(`${row.stream} ${data.ref} ${data.messageId} (${data.size} bytes)`)
        }
        break
      case "MessageAccepted":
      case "MessageDuplicateSkipped":
      case "MessageQuarantineRequested": {
        const since = retrievedAt.get(key)
        if (since !== undefined) maxClassifyMs = Math.max(maxClassifyMs, at - since)
        if (row.type === "MessageAccepted") {
          accepted++
          const fields = [data.subject, data.from, ...(data.to ?? []), ...(data.cc ?? []), data.messageId].join("\u0001")
          if (/[\r\n\0]/.test(fields)) acceptedWithControlChars++
        }
        if (row.type === "MessageDuplicateSkipped") duplicateSkipped++
        if (row.type === "MessageQuarantineRequested") requested.set(key, data.reason)
        break
      }
      case "MessageQuarantined":
        quarantined++
        requested.delete(key)
        quarantinedShas.push({ sha256: data.sha256, reason: data.reason })
        reasons[data.reason] = (reasons[data.reason] ?? 0) + 1
        break
      case "QuarantineFailed":
        quarantineFailedEvents++
        break
      case "MessageRemoved":
        removedEvents++
        break
      case "MailboxConnected":
        connectedEvents++
        break
      case "MailboxConnectionFailed":
        connectionFailures.push({ stream: row.stream, error: data.error, attempt: data.attempt, retryInSeconds: data.retryInSeconds, at: row.at })
        break
    }
    if (TERMINAL.has(row.type)) terminal.set(data.sha256, (terminal.get(data.sha256) ?? 0) + 1)
  }

  const onServer = new Map<string, number>()
  for (const file of input.onServer) {
    const sha = sha256(served(file, expected.protocol))
    onServer.set(sha, (onServer.get(sha) ?? 0) + 1)
  }

  let lost = 0
  let duplicated = 0
  const lostLabels: Array<string> = []
  const duplicatedLabels: Array<string> = []
  for (const [sha, copies] of expected.copies) {
    const done = terminal.get(sha) ?? 0
    const waiting = onServer.get(sha) ?? 0
    const missing = copies - done - waiting
    if (missing > 0) {
      lost += missing
      if (lostLabels.length < 10) lostLabels.push(expected.labels.get(sha) ?? sha)
    }
    if (done > copies) {
      duplicated += done - copies
      if (duplicatedLabels.length < 10) duplicatedLabels.push(expected.labels.get(sha) ?? sha)
    }
  }

  let blobMismatches = 0
  if (input.checkBlobs === true && retrievedShas.length > 0) {
    const db = new Database(input.database, { readonly: true, fileMustExist: true })
    try {
      for (const { sha } of retrievedShas) {
        const content = storedBlob(db, sha)
        if (content === undefined || sha256(content) !== sha) blobMismatches++
      }
    } finally {
      db.close()
    }
  }

  const stillOnServer = input.onServer.length
  return {
    messagesIn: expected.total,
    accepted,
    quarantined,
    duplicateSkipped,
    quarantinePending: requested.size,
    lost,
    duplicated,
    stillOnServer,
    retrievedEvents,
    removedEvents,
    removedNotLogged: expected.total - stillOnServer - removedEvents,
    quarantineFailedEvents,
    connectionFailures,
    connectedEvents,
    unknown,
    blobMismatches,
    maxClassifyMs,
    lostLabels,
    duplicatedLabels,
    unknownLabels,
    quarantinedShas,
    reasons,
    acceptedWithControlChars
  }
}

/** Drained: nothing left on the server and every seeded copy has its terminal event. */
export const drained = (l: Ledger): boolean =>
  l.stillOnServer === 0 && l.lost === 0 && l.accepted + l.quarantined + l.duplicateSkipped >= l.messagesIn
