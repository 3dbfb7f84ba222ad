/**
 * The state of one mailbox, rebuilt by folding its event stream. It says which refs are still
 * in flight (retrieved but not removed), which messages were already accepted (the duplicate
 * check), and the counters `status` shows.
 *
 * `evolve` updates the state it is given and returns it: a mailbox stream can hold millions of
 * events, and copying maps per event would make replay quadratic. The state is owned by one
 * fold at a time (replay, or the mailbox actor), never shared.
 */
import type { MailboxEvent } from "./events.js"
import type { QuarantineReason } from "./QuarantineReason.js"

export type RefStage = "retrieved" | "accepted" | "quarantine-requested" | "quarantined" | "duplicate"

/** A message that was retrieved and is not yet removed from the server. */
export interface InFlight {
  readonly ref: string
  readonly sha256: string
  readonly messageId: string
  readonly size: number
  readonly retrievedAt: Date
  stage: RefStage
  reason?: QuarantineReason
  detail?: string
  /** Failed quarantine attempts so far, and when the last one failed. */
  attempts: number
  lastAttemptAt?: Date
}

export type ConnectionState = "never" | "connected" | "failing" | "stopped"

export interface MailboxState {
  /** The stream version: number of events folded. */
  version: number
  readonly inFlight: Map<string, InFlight>
  /** Refs whose removal was confirmed; a ref seen again is removed without being retrieved again. */
  readonly removed: Set<string>
  /** sha256 + Message-ID of every accepted message → the ref it was accepted under. */
  readonly accepted: Map<string, string>
  readonly counts: {
    retrieved: number
    accepted: number
    quarantineRequested: number
    quarantined: number
    quarantineFailures: number
    duplicates: number
    removed: number
  }
  readonly quarantinedByReason: Partial<Record<QuarantineReason, number>>
  connection: {
    state: ConnectionState
    since: Date | undefined
    server: string | undefined
    lastError: string | undefined
    lastErrorAt: Date | undefined
    stoppedReason: string | undefined
  }
  lastEventAt: Date | undefined
}

export const emptyState = (): MailboxState => ({
  version: 0,
  inFlight: new Map(),
  removed: new Set(),
  accepted: new Map(),
  counts: {
    retrieved: 0,
    accepted: 0,
    quarantineRequested: 0,
    quarantined: 0,
    quarantineFailures: 0,
    duplicates: 0,
    removed: 0
  },
  quarantinedByReason: {},
  connection: {
    state: "never",
    since: undefined,
    server: undefined,
    lastError: undefined,
    lastErrorAt: undefined,
    stoppedReason: undefined
  },
  lastEventAt: undefined
})

/** The duplicate key of DESIGN.md: the same bytes with the same Message-ID. */
export const dedupKey = (sha256: string, messageId: string): string => `${sha256} ${messageId}`

/**
 * Folds one event into the state. Replay hands it events that are not Schema-decoded, and of a
 * MessageAccepted only ref, sha256 and messageId (EventLog's FOLDED_PAYLOAD and the index
 * `events_replay`): reading another field of it needs both changed (test/eventlog/replay.test.ts
 * fails until they are).
 */
export const evolve = (state: MailboxState, event: MailboxEvent, at: Date): MailboxState => {
  state.version += 1
  state.lastEventAt = at
  switch (event._tag) {
    case "MessageRetrieved":
      state.counts.retrieved += 1
      state.inFlight.set(event.ref, {
        ref: event.ref,
        sha256: event.sha256,
        messageId: event.messageId,
        size: event.size,
        retrievedAt: at,
        stage: "retrieved",
        attempts: 0
      })
      break
    case "MessageAccepted": {
      state.counts.accepted += 1
      state.accepted.set(dedupKey(event.sha256, event.messageId), event.ref)
      const entry = state.inFlight.get(event.ref)
      if (entry) entry.stage = "accepted"
      break
    }
    case "MessageDuplicateSkipped": {
      state.counts.duplicates += 1
      const entry = state.inFlight.get(event.ref)
      if (entry) entry.stage = "duplicate"
      break
    }
    case "MessageQuarantineRequested": {
      state.counts.quarantineRequested += 1
      const entry = state.inFlight.get(event.ref)
      if (entry) {
        entry.stage = "quarantine-requested"
        entry.reason = event.reason
        entry.detail = event.detail
      }
      break
    }
    case "QuarantineFailed": {
      state.counts.quarantineFailures += 1
      state.connection.lastError = `quarantine of ${event.ref} failed: ${event.error}`
      state.connection.lastErrorAt = at
      const entry = state.inFlight.get(event.ref)
      if (entry) {
        entry.attempts = event.attempt
        entry.lastAttemptAt = at
      }
      break
    }
    case "MessageQuarantined": {
      state.counts.quarantined += 1
      state.quarantinedByReason[event.reason] = (state.quarantinedByReason[event.reason] ?? 0) + 1
      const entry = state.inFlight.get(event.ref)
      if (entry) entry.stage = "quarantined"
      break
    }
    case "MessageRemoved":
      state.counts.removed += 1
      state.inFlight.delete(event.ref)
      state.removed.add(event.ref)
      break
    case "MailboxConnected":
      state.connection.state = "connected"
      state.connection.since = at
      state.connection.server = event.server
      state.connection.stoppedReason = undefined
      break
    case "MailboxConnectionFailed":
      state.connection.state = "failing"
      state.connection.since = at
      state.connection.lastError = event.error
      state.connection.lastErrorAt = at
      break
    case "MailboxStopped":
      state.connection.state = "stopped"
      state.connection.since = at
      state.connection.stoppedReason = event.reason
      if (event.reason !== "shutdown") {
        state.connection.lastError = event.detail
        state.connection.lastErrorAt = at
      }
      break
    case "ConfigurationApplied":
      break
  }
  return state
}

/** Folds a whole stream from the beginning. */
export const replay = (events: Iterable<{ readonly event: MailboxEvent; readonly at: Date }>): MailboxState => {
  const state = emptyState()
  for (const { at, event } of events) evolve(state, event, at)
  return state
}
