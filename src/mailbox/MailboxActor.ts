/**
 * One mailbox: connect, poll on a schedule, process every message by the protocol of
 * DESIGN.md, reconnect with backoff. Each step of the protocol is an event committed before
 * the next step starts, so a crash at any point leaves the log saying exactly what to finish:
 *
 *   fetch → MessageRetrieved (+ raw bytes) → MessageAccepted | MessageQuarantineRequested
 *         | MessageDuplicateSkipped → [forward → MessageQuarantined | QuarantineFailed]
 *         → remove → MessageRemoved
 *
 * Work is done in batches (one FETCH, one transaction per step for the whole batch): the
 * group commit that keeps the log durable without an fsync per message.
 */
import { Clock, Duration, Effect, Fiber, Option, Random, Ref, Schedule } from "effect"
import { createHash, randomUUID } from "node:crypto"
import { rmSync } from "node:fs"
import {
  MailboxConnected,
  MailboxConnectionFailed,
  type MailboxEvent,
  MailboxStopped,
  MessageAccepted,
  MessageDuplicateSkipped,
  MessageQuarantined,
  MessageQuarantineRequested,
  MessageRemoved,
  MessageRetrieved,
  QuarantineFailed
} from "../domain/events.js"
import type { MailboxPlan } from "../domain/plan.js"
import { dedupKey, evolve, type InFlight, type MailboxState } from "../domain/state.js"
import { type Blob, EventLog, type EventLogError } from "../eventlog/EventLog.js"
import type { Decision } from "../processing/decide.js"
import { shareBatch } from "../memory/shareBatch.js"
import { INLINE_BODY_MAX_BYTES } from "../processing/bodySpool.js"
import { Decider } from "../processing/Decider.js"
import { messageIdOf } from "../processing/messageId.js"
import type { Summary } from "../processing/summaryFields.js"
import { QuarantineSink } from "../quarantine/QuarantineSink.js"
import { type Fetched, type Listed, type MailSession, MailSource, type MailSourceError } from "../sources/MailSource.js"
import { HEALTHY_AFTER, reconnectDelay } from "./reconnect.js"

/** A batch: one FETCH and one transaction per step. */
const BATCH_MESSAGES = 100
const BATCH_BYTES = 32 * 1024 * 1024
/** Assumed size of a message whose size the server does not report. */
const UNKNOWN_SIZE = 1024 * 1024
const PARSE_TIMEOUT_MILLIS = 30_000
/**
 * How many fetched batches may wait for their decisions before the poll waits for the parser:
 * one more than the batch being parsed lets the parser lag a batch behind on a busy machine
 * without stopping the fetch and the commits (one more batch of raw bytes held: ≤ BATCH_BYTES).
 */
const PARSED_BEHIND_BATCHES = 1
/**
 * How many later runs of the mailbox (a restart of the daemon, or of the mailbox's fiber) decide
 * again a message retrieved and not yet decided. With the first, that makes
 * DECISION_ATTEMPTS_AFTER_RESTART + 1 tries; when the mailbox stopped during each, the message
 * is quarantined as processing-error without being parsed, and the mailbox goes on.
 */
const DECISION_ATTEMPTS_AFTER_RESTART = 2
/** Longest wait between two attempts to forward the same message to quarantine. */
const QUARANTINE_RETRY_CAP = Duration.hours(1)

export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/**
 * Where an accepted message's body goes: in its event, or — over INLINE_BODY_MAX_BYTES — in a
 * blob of its own that the event names (MessageAccepted's `bodySha256`). A spooled body is one
 * already (bodySpool.ts); a body parsed as a string becomes one here.
 */
const bodyRecord = (summary: Summary): { readonly body: string; readonly bodySha256?: string; readonly blob?: Blob } => {
  if (summary.spooledBody !== undefined) {
    const { path, sha256, size } = summary.spooledBody
    return { body: "", bodySha256: sha256, blob: { sha256, path, size } }
  }
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most bodies need no count.
  if (summary.body.length * 3 <= INLINE_BODY_MAX_BYTES || Buffer.byteLength(summary.body, "utf8") <= INLINE_BODY_MAX_BYTES) {
    return { body: summary.body }
  }
  const bytes = Buffer.from(summary.body, "utf8")
  const sha256 = sha256Hex(bytes)
  return { body: "", bodySha256: sha256, blob: { sha256, bytes } }
}

/** A spooled body that no event will name (a duplicate, a summary the event could not hold) is deleted now. */
const discardSpooled = (decision: Decision | undefined) =>
  Effect.sync(() => {
    if (decision?._tag === "Accept" && decision.summary.spooledBody !== undefined) rmSync(decision.summary.spooledBody.path, { force: true })
  })

export interface PollReport {
  readonly listed: number
  readonly retrieved: number
  readonly accepted: number
  readonly quarantined: number
  readonly duplicates: number
  readonly removed: number
  readonly quarantinePending: number
}

const emptyReport = (): { -readonly [K in keyof PollReport]: PollReport[K] } => ({
  listed: 0,
  retrieved: 0,
  accepted: 0,
  quarantined: 0,
  duplicates: 0,
  removed: 0,
  quarantinePending: 0
})

/** Splits refs into batches bounded by count and by bytes. */
export const batches = (listed: ReadonlyArray<Listed>): Array<Array<Listed>> => {
  const result: Array<Array<Listed>> = []
  let current: Array<Listed> = []
  let bytes = 0
  for (const item of listed) {
    const size = item.size ?? UNKNOWN_SIZE
    if (current.length > 0 && (current.length >= BATCH_MESSAGES || bytes + size > BATCH_BYTES)) {
      result.push(current)
      current = []
      bytes = 0
    }
    current.push(item)
    bytes += size
  }
  if (current.length > 0) result.push(current)
  return result
}

/** Per poll: whether the quarantine destination already failed (then the rest wait). */
interface SinkStatus {
  unavailable: boolean
}

/** When a message whose forward failed `attempts` times may be tried again. */
export const quarantineRetryDue = (entry: InFlight, pollSeconds: number): number => {
  if (entry.attempts === 0 || entry.lastAttemptAt === undefined) return 0
  const delay = Math.min(pollSeconds * 1000 * 2 ** (entry.attempts - 1), Duration.toMillis(QUARANTINE_RETRY_CAP))
  return entry.lastAttemptAt.getTime() + delay
}

/**
 * The mailbox's processing logic, bound to its state. The state is loaded by replaying the
 * mailbox's stream and then kept current by folding every event this actor appends.
 */
const makeProcessor = (plan: MailboxPlan, stateRef: Ref.Ref<MailboxState>, runId: string) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const sink = yield* QuarantineSink
    const decider = yield* Decider

    const emit = (events: ReadonlyArray<MailboxEvent>, blobs?: ReadonlyArray<Blob>) =>
      Effect.gen(function*() {
        if (events.length === 0) return
        const state = yield* Ref.get(stateRef)
        const appended = yield* log.append({ stream: plan.id, expectedVersion: state.version, events, blobs })
        // The fold runs only after the commit, so the in-memory state never runs ahead of the log.
        for (const stored of appended.events) evolve(state, stored.event, stored.at)
      })

    /** How MessageRemoved says a message left the server. */
    const how = plan.afterProcessing === "delete" ? "delete" : `move:${plan.afterProcessing.moveTo}`

    const decideOptions = {
      maxMessageBytes: plan.maxMessageBytes,
      quarantineListMail: plan.quarantineListMail,
      parseTimeoutMillis: PARSE_TIMEOUT_MILLIS
    }

    type Retrieved = { readonly entry: InFlight; readonly raw: Uint8Array }

    interface ToDecide {
      readonly ref: string
      readonly sha256: string
      readonly messageId: string
      readonly raw: Uint8Array
    }

    /**
     * Step 2a, no I/O: decisions for messages not already accepted (on the worker pool). It may
     * start before the batch's MessageRetrieved is committed: a decision is only recorded after.
     */
    const decideBatch = (items: ReadonlyArray<ToDecide>) =>
      Effect.gen(function*() {
        const state = yield* Ref.get(stateRef)
        const toDecide = items.filter((item) => !state.accepted.has(dedupKey(item.sha256, item.messageId)))
        const decided = yield* decider.decideAll(toDecide.map(({ raw }) => raw), decideOptions)
        return new Map(toDecide.map(({ ref }, i) => [ref, decided[i]!]))
      })

    /**
     * Step 2b: the events (and CR LF copies) that record the decisions of a batch whose
     * MessageRetrieved is committed; appended by the caller, alone or with other steps' events.
     */
    const decisionRecord = (entries: ReadonlyArray<Retrieved>, decisions: ReadonlyMap<string, Decision>) =>
      Effect.gen(function*() {
        const state = yield* Ref.get(stateRef)
        const events: Array<MailboxEvent> = []
        const blobs: Array<Blob> = []
        const acceptedNow = new Map<string, string>()
        for (const { entry, raw } of entries) {
          const key = dedupKey(entry.sha256, entry.messageId)
          const earlier = state.accepted.get(key) ?? acceptedNow.get(key)
          const decision = decisions.get(entry.ref)
          if (earlier !== undefined || decision === undefined) {
            yield* discardSpooled(decision)
            events.push(new MessageDuplicateSkipped({
              ref: entry.ref,
              sha256: entry.sha256,
              messageId: entry.messageId,
              duplicateOf: earlier ?? ""
            }))
            continue
          }
          if (decision._tag === "Quarantine") {
            events.push(new MessageQuarantineRequested({
              ref: entry.ref,
              sha256: entry.sha256,
              reason: decision.reason,
              detail: decision.detail
            }))
            continue
          }
          const crlfSha256 = decision.crlf === raw ? entry.sha256 : sha256Hex(decision.crlf)
          const { summary } = decision
          const body = bodyRecord(summary)
          let accepted: MessageAccepted
          try {
            accepted = new MessageAccepted({
              ref: entry.ref,
              sha256: entry.sha256,
              messageId: entry.messageId,
              from: summary.from,
              to: summary.to,
              cc: summary.cc,
              subject: summary.subject,
              date: summary.date,
              attachments: summary.attachments,
              body: body.body,
              crlfSha256,
              ...(body.bodySha256 === undefined ? {} : { bodySha256: body.bodySha256 })
            })
          } catch (error) {
            yield* discardSpooled(decision)
            // A summary the event cannot hold is a processing error of this message, never of
            // the mailbox: it goes to quarantine and the others go on.
            yield* Effect.logWarning(`message ${entry.ref} cannot be recorded as accepted; quarantining it`, error)
            events.push(new MessageQuarantineRequested({
              ref: entry.ref,
              sha256: entry.sha256,
              reason: "processing-error",
              detail: String(error instanceof Error ? error.message : error).replace(/\s+/g, " ").slice(0, 1000)
            }))
            continue
          }
          if (crlfSha256 !== entry.sha256) blobs.push({ sha256: crlfSha256, bytes: decision.crlf })
          if (body.blob !== undefined) blobs.push(body.blob)
          acceptedNow.set(key, entry.ref)
          events.push(accepted)
        }
        return { events, blobs }
      })

    const recordDecisions = (entries: ReadonlyArray<Retrieved>, decisions: ReadonlyMap<string, Decision>) =>
      Effect.flatMap(decisionRecord(entries, decisions), ({ blobs, events }) => emit(events, blobs))

    const classifyAll = (entries: ReadonlyArray<Retrieved>) =>
      Effect.flatMap(
        decideBatch(entries.map(({ entry, raw }) => ({ ref: entry.ref, sha256: entry.sha256, messageId: entry.messageId, raw }))),
        (decisions) => recordDecisions(entries, decisions)
      )

    /** Step 3: forward what waits for quarantine and is due; a failure never blocks the rest. */
    const forwardDue = (refs: ReadonlyArray<string>, report: ReturnType<typeof emptyReport>, sink$: SinkStatus) =>
      Effect.flatMap(Ref.get(stateRef), (current) =>
        Effect.forEach(refs.filter((ref) => current.inFlight.get(ref)?.stage === "quarantine-requested"), (ref) =>
        Effect.gen(function*() {
          const state = yield* Ref.get(stateRef)
          const entry = state.inFlight.get(ref)
          if (entry === undefined || entry.stage !== "quarantine-requested" || entry.reason === undefined) return
          const now = yield* Clock.currentTimeMillis
          // Once the destination failed in this poll (down, or not answering), the rest wait
          // for the next poll: one unreachable destination costs a poll one timeout, not one
          // per quarantined message.
          if (sink$.unavailable || now < quarantineRetryDue(entry, plan.pollingIntervalSeconds)) {
            report.quarantinePending += 1
            return
          }
          const raw = yield* log.blob(entry.sha256)
          if (Option.isNone(raw)) {
            return yield* Effect.dieMessage(`raw message ${entry.sha256} of ${ref} is missing from the log`)
          }
          const reason = entry.reason
          // Forward and record as one unit: an interruption between the two would forward twice.
          yield* sink.forward(raw.value, {
            mailbox: plan.id,
            reason,
            detail: entry.detail ?? "",
            ref,
            sha256: entry.sha256,
            retrievedAt: entry.retrievedAt
          }).pipe(
            Effect.matchEffect({
              onSuccess: (forwarded) =>
                emit([new MessageQuarantined({ ref, sha256: entry.sha256, reason, ...forwarded })]).pipe(
                  Effect.tap(() => Effect.sync(() => (report.quarantined += 1)))
                ),
              onFailure: (error) =>
                Effect.logWarning(`quarantine of ${ref} failed (attempt ${entry.attempts + 1}): ${error.message}`).pipe(
                  Effect.tap(() => Effect.sync(() => (sink$.unavailable ||= !error.permanent))),
                  Effect.zipRight(emit([new QuarantineFailed({
                    ref,
                    sha256: entry.sha256,
                    reason,
                    attempt: entry.attempts + 1,
                    error: error.message
                  })])),
                  Effect.tap(() => Effect.sync(() => (report.quarantinePending += 1)))
                )
            }),
            Effect.uninterruptible
          )
        }), { discard: true }))

    /** Step 4: remove from the server what is done with, then record it. */
    const removeDone = (
      session: MailSession,
      refs: ReadonlyArray<string>,
      listed: ReadonlySet<string>,
      report: ReturnType<typeof emptyReport>,
      /** Refs whose removal is already recorded but which the server still has: removed again, silently. */
      removedBefore: ReadonlyArray<string> = []
    ) =>
      Effect.gen(function*() {
        const state = yield* Ref.get(stateRef)
        const done = refs.filter((ref) => {
          const stage = state.inFlight.get(ref)?.stage
          return stage === "accepted" || stage === "duplicate" || stage === "quarantined"
        })
        if (done.length === 0 && removedBefore.length === 0) return
        const onServer = done.filter((ref) => listed.has(ref))
        const gone = done.filter((ref) => !listed.has(ref))
        yield* Effect.uninterruptible(
          Effect.gen(function*() {
            // One call: for POP3 the removal is the QUIT that ends the session.
            if (onServer.length + removedBefore.length > 0) yield* session.remove([...onServer, ...removedBefore])
            yield* emit([
              ...onServer.map((ref) => new MessageRemoved({ ref, how })),
              ...gone.map((ref) => new MessageRemoved({ ref, how: "gone" }))
            ])
          })
        )
        report.removed += done.length
      })

    /**
     * Step 1 for a batch of new messages: MessageRetrieved and the raw bytes, to append. The
     * batch is moved onto one SharedArrayBuffer first, which the parser and SQLite threads share.
     */
    const retrievedRecord = (fetched: ReadonlyArray<Fetched>) => {
      const shared = shareBatch(fetched.map(({ raw }) => raw))
      const items = fetched.map(({ ref }, i) => ({
        ref,
        raw: shared[i]!,
        sha256: sha256Hex(shared[i]!),
        messageId: messageIdOf(shared[i]!)
      }))
      return {
        items,
        events: items.map(({ messageId, raw, ref, sha256 }) => new MessageRetrieved({ ref, sha256, size: raw.byteLength, messageId })),
        blobs: items.map(({ raw, sha256 }): Blob => ({ sha256, bytes: raw }))
      }
    }

    /** Messages retrieved before (an earlier session or a crash) whose protocol is unfinished. */
    const finishInFlight = (
      session: MailSession,
      listed: ReadonlySet<string>,
      report: ReturnType<typeof emptyReport>,
      removeNow: boolean,
      sink$: SinkStatus
    ) =>
      Effect.gen(function*() {
        const state = yield* Ref.get(stateRef)
        const entries = [...state.inFlight.values()]
        const unclassified = entries.filter((entry) => entry.stage === "retrieved")
        // One at a time, each attempt counted first: a message that takes the daemon down while
        // it is decided takes only itself to quarantine, not the ones retrieved with it. The
        // parser is loaded before the first count, so that a restart that is stopped again while
        // it loads (a kill loop, an impatient operator) does not count against the first message.
        if (unclassified.length > 0) yield* decider.warmUp
        for (const entry of unclassified) {
          const attempts = yield* log.noteDecisionAttempt(plan.id, entry.ref, entry.sha256, runId)
          if (attempts > DECISION_ATTEMPTS_AFTER_RESTART) {
            yield* Effect.logWarning(
              `message ${entry.ref} was being processed when the mailbox stopped, ${DECISION_ATTEMPTS_AFTER_RESTART + 1} times over; quarantining it without parsing`
            )
            yield* emit([new MessageQuarantineRequested({
              ref: entry.ref,
              sha256: entry.sha256,
              reason: "processing-error",
              detail: `the mailbox stopped ${DECISION_ATTEMPTS_AFTER_RESTART + 1} times while this message was being processed (the daemon crashed, ran out of memory or was killed, or the mailbox failed); not parsed again`
            })])
            continue
          }
          const raw = yield* log.blob(entry.sha256)
          if (Option.isNone(raw)) {
            return yield* Effect.dieMessage(`raw message ${entry.sha256} of ${entry.ref} is missing from the log`)
          }
          yield* classifyAll([{ entry, raw: raw.value }])
        }
        const refs = entries.map((entry) => entry.ref)
        yield* forwardDue(refs, report, sink$)
        if (removeNow) yield* removeDone(session, refs, listed, report)
        return refs
      })

    const countOutcomes = (before: MailboxState["counts"], after: MailboxState["counts"], report: ReturnType<typeof emptyReport>) => {
      report.accepted += after.accepted - before.accepted
      report.duplicates += after.duplicates - before.duplicates
    }

    /** One poll: finish what is in flight, then retrieve what is new. */
    const poll = (session: MailSession) =>
      Effect.gen(function*() {
        const report = emptyReport()
        const before = { ...(yield* Ref.get(stateRef)).counts }
        const listing = yield* session.list
        report.listed = listing.length
        const listed = new Set(listing.map((item) => item.ref))
        // POP3 removes at QUIT, which ends the session: remove once, at the end of the poll.
        const removeAtEnd = session.removalEndsSession === true
        const toRemove: Array<string> = []

        const sink$: SinkStatus = { unavailable: false }
        toRemove.push(...yield* finishInFlight(session, listed, report, !removeAtEnd, sink$))

        const state = yield* Ref.get(stateRef)
        const seenAgain = listing.filter((item) => state.removed.has(item.ref)).map((item) => item.ref)
        if (seenAgain.length > 0) {
          // Removed before, but the server still has it (a POP3 session that died before QUIT).
          yield* Effect.logInfo(`${seenAgain.length} message(s) already handled are still on the server: removing them again`)
          if (!removeAtEnd) yield* removeDone(session, [], listed, report, seenAgain)
        }
        const fresh = listing.filter((item) =>
          !state.inFlight.has(item.ref) && !state.removed.has(item.ref) && item.flaggedDeleted !== true
        )
        // Pipelined, with ONE append a batch, and the append itself beside the next batch's
        // fetch and parse: while batch i+1 is fetched, batch i's append commits, batch i is
        // parsed (on the worker pool, from the moment it arrived) and earlier removals run on
        // the server. The transaction of batch i holds MessageRetrieved of i, the decisions of
        // the earlier batches the parser has finished (i-1, or i-2 when the parser lags:
        // takeDecided) and MessageRemoved of whatever the server finished removing. Every
        // message still goes through the protocol's steps in order, each committed before the
        // next starts; only steps of different messages share a commit. One append at a time,
        // all started by this fiber.
        const removable = (refs: ReadonlyArray<string>, stages: ReadonlyArray<InFlight["stage"]>) =>
          Effect.map(Ref.get(stateRef), (state) =>
            refs.filter((ref) => {
              const stage = state.inFlight.get(ref)?.stage
              return stage !== undefined && stages.includes(stage)
            }))
        type Removal = Fiber.RuntimeFiber<ReadonlyArray<string>, MailSourceError>
        /** The removal running on the server, if any: one at a time. */
        let removal: Removal | undefined
        /** Refs to remove once it is done: removals that queue up while one runs become one. */
        let queued: Array<string> = []
        const fork = (refs: ReadonlyArray<string>) =>
          Effect.map(Effect.fork(Effect.uninterruptible(Effect.as(session.remove(refs), refs))), (fiber) => {
            removal = fiber
          })
        /** A removal on the server, running beside the rest; its MessageRemoved goes into a later append. */
        const startRemoval = (refs: ReadonlyArray<string>) =>
          Effect.suspend(() => {
            if (refs.length === 0) return Effect.void
            if (removal !== undefined) {
              queued.push(...refs)
              return Effect.void
            }
            return fork(refs)
          })
        /**
         * MessageRemoved for what the server finished removing (with `wait`: everything started
         * or queued). Called once a batch: the queued refs start here, once the running removal
         * is done. A failed removal fails the poll; what it left is in flight and removed on the
         * next poll.
         */
        const removedEvents = (wait: boolean) =>
          Effect.gen(function*() {
            const events: Array<MessageRemoved> = []
            while (removal !== undefined) {
              const exit = wait ? Option.some(yield* Fiber.await(removal)) : yield* Fiber.poll(removal)
              if (Option.isNone(exit)) break
              removal = undefined
              const refs = yield* exit.value
              report.removed += refs.length
              for (const ref of refs) events.push(new MessageRemoved({ ref, how }))
              if (queued.length > 0) {
                const next = queued
                queued = []
                yield* fork(next)
              }
            }
            return events
          })
        const pending = batches(fresh)
        const fetchBatch = (index: number) =>
          index < pending.length ? Effect.asSome(Effect.fork(session.fetch(pending[index]!.map((item) => item.ref)))) : Effect.succeedNone
        type Parsing = { readonly items: ReadonlyArray<{ readonly ref: string; readonly raw: Uint8Array }>; readonly decisions: Fiber.RuntimeFiber<ReadonlyMap<string, Decision>> }
        type Appending = { readonly fiber: Fiber.RuntimeFiber<void, EventLogError>; readonly parsing: Parsing | undefined; readonly decided: ReadonlyArray<string> }
        let nextFetch = yield* fetchBatch(0)
        /** The last append started: MessageRetrieved of the batch being parsed, the decisions of `decided`. */
        let appending: Appending | undefined
        /** Batches whose MessageRetrieved is committed and whose decisions are not recorded yet, oldest first. */
        const unrecorded: Array<Parsing> = []
        /** Forwarded to quarantine after their batch's removal had started: removed with the next. */
        let forwarded: ReadonlyArray<string> = []
        /** What follows a batch's decisions once committed: removal (or, for POP3, at the end) and quarantine. */
        const afterDecisions = (refs: ReadonlyArray<string>) =>
          Effect.gen(function*() {
            if (refs.length === 0) return
            if (removeAtEnd) {
              yield* forwardDue(refs, report, sink$)
              toRemove.push(...refs)
              return
            }
            // Accepted messages leave the server before any quarantine forward is tried.
            yield* startRemoval(yield* removable([...forwarded, ...refs], ["accepted", "duplicate", "quarantined"]))
            yield* forwardDue(refs, report, sink$)
            forwarded = yield* removable(refs, ["quarantined"])
          })
        /**
         * The batches whose decisions go into the next append, oldest first: those the parser has
         * finished, and the oldest ones whether finished or not once more than
         * `PARSED_BEHIND_BATCHES` wait (all of them, `atEnd`). The parser thus has the time of
         * two batches' fetch and commit for each batch, instead of the main thread waiting for
         * it after every one; a batch's decisions are still recorded in order, after its
         * MessageRetrieved.
         */
        const takeDecided = (atEnd: boolean) =>
          Effect.gen(function*() {
            const taken: Array<{ readonly items: Parsing["items"]; readonly decisions: ReadonlyMap<string, Decision> }> = []
            while (unrecorded.length > 0) {
              const oldest = unrecorded[0]!
              const done = yield* Fiber.poll(oldest.decisions)
              const wait = atEnd || unrecorded.length > PARSED_BEHIND_BATCHES
              if (Option.isNone(done) && !wait) break
              const decisions = Option.isSome(done) ? yield* done.value : yield* Fiber.join(oldest.decisions)
              unrecorded.shift()
              taken.push({ items: oldest.items, decisions })
            }
            return taken
          })
        for (let next = 1; Option.isSome(nextFetch) || appending !== undefined; next++) {
          const fetched = Option.isSome(nextFetch) ? yield* Fiber.join(nextFetch.value) : []
          nextFetch = Option.isSome(nextFetch) ? yield* fetchBatch(next) : Option.none()
          // Parsed from now on, beside the commit of its MessageRetrieved: the parser never waits for the log.
          const retrieved = retrievedRecord(fetched)
          const deciding = retrieved.items.length === 0 ? undefined : yield* Effect.fork(decideBatch(retrieved.items))
          // The previous append is committed: its batch's messages are in flight, its decisions
          // recorded, so what was decided can leave the server.
          const previous = appending
          appending = undefined
          if (previous !== undefined) {
            yield* Fiber.join(previous.fiber)
            yield* afterDecisions(previous.decided)
            if (previous.parsing !== undefined) unrecorded.push(previous.parsing)
          }
          const atEnd = retrieved.items.length === 0 && Option.isNone(nextFetch)
          if (atEnd && unrecorded.length === 0) break
          const toRecord = yield* takeDecided(atEnd)
          const state = yield* Ref.get(stateRef)
          // One record for all of them: a duplicate across two of these batches is seen as one.
          const decided = toRecord.length === 0 ? { events: [], blobs: [] } : yield* decisionRecord(
            toRecord.flatMap(({ items }) => items.map(({ raw, ref }): Retrieved => ({ entry: state.inFlight.get(ref)!, raw }))),
            new Map(toRecord.flatMap(({ decisions }) => [...decisions]))
          )
          const removed = yield* removedEvents(false)
          const events = [...removed, ...decided.events, ...retrieved.events]
          // Uninterruptible: a commit is whole and the state follows it, even when the poll is interrupted.
          const fiber = yield* Effect.fork(Effect.uninterruptible(emit(events, [...decided.blobs, ...retrieved.blobs])))
          report.retrieved += retrieved.items.length
          appending = {
            fiber,
            parsing: deciding === undefined ? undefined : { items: retrieved.items, decisions: deciding },
            decided: toRecord.flatMap(({ items }) => items.map(({ ref }) => ref))
          }
        }
        if (!removeAtEnd) {
          const removed = yield* removedEvents(true)
          if (removed.length > 0) yield* emit(removed)
          if (forwarded.length > 0) yield* removeDone(session, forwarded, listed, report)
        }
        if (removeAtEnd) yield* removeDone(session, toRemove, listed, report, seenAgain)
        countOutcomes(before, (yield* Ref.get(stateRef)).counts, report)
        yield* log.recordPoll(plan.id)
        if (report.listed > 0) {
          yield* Effect.logInfo("poll").pipe(Effect.annotateLogs(report))
        }
        return report as PollReport
      })

    return { emit, poll } as const
  })

export interface RunOptions {
  /** Poll once and return, without reconnecting. */
  readonly once: boolean
}

export interface RunOutcome {
  /** Whether the mailbox was reached (connected and polled) at least once. */
  readonly reached: boolean
  /** The actor's state at the end, kept current event by event (replay must rebuild it). */
  readonly state: MailboxState
}

type SessionError = MailSourceError | EventLogError

const describe = (error: SessionError): string => {
  switch (error._tag) {
    case "MailSourceError":
      return `${error.kind}: ${error.message}`
    case "SqlError":
      return `event log unavailable: ${error.message}${error.cause ? ` (${String(error.cause)})` : ""}`
    case "StreamVersionConflict":
      return `another writer appended to this mailbox's stream (expected version ${error.expected}, found ${error.actual})`
  }
}

/**
 * Runs one mailbox until interrupted (or for one poll with `once`). Requires the mailbox's
 * source and quarantine sink, and the event log.
 */
export const run = (plan: MailboxPlan, options: RunOptions) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    const source = yield* MailSource
    const stateRef = yield* Ref.make(yield* log.replay(plan.id))
    // This run, as the decision attempts on messages retrieved before count it.
    const processor = yield* makeProcessor(plan, stateRef, randomUUID())
    const reached = yield* Ref.make(false)

    // MailboxConnected is a change of state: written on the first session of this process and
    // after a failure, not on every POP3 poll (each of which is a session of its own).
    const announced = yield* Ref.make(false)

    /** One session: polls until it fails (IMAP, Graph), or once when removal ends it (POP3). */
    const session = Effect.scoped(
      Effect.gen(function*() {
        const opened = yield* source.open
        if (!(yield* Ref.get(announced))) {
          yield* processor.emit([new MailboxConnected({ server: opened.server })])
          yield* Ref.set(announced, true)
          yield* Effect.logInfo(`connected to ${opened.server}`)
        }
        yield* Ref.set(reached, true)
        const poll = processor.poll(opened)
        if (options.once || opened.removalEndsSession === true) return yield* Effect.asVoid(poll)
        const interval = Duration.seconds(plan.pollingIntervalSeconds)
        // Polls start every interval (not an interval after the previous one ended), so a new
        // message waits at most one interval plus the poll; a poll that overruns is followed
        // by the next at once. The session ends when a poll fails or the connection drops.
        const { awaitChange } = opened
        if (awaitChange === undefined) {
          return yield* Effect.raceFirst(Effect.asVoid(Effect.repeat(poll, Schedule.fixed(interval))), opened.closed)
        }
        // A source that can wait for news (IMAP) checks on its own while nothing of ours is
        // unfinished; its quiet checks count as polls (mailbox_heartbeats, `status`).
        const everyMillis = Duration.toMillis(interval)
        const onQuiet = () => log.notePoll(plan.id)
        const polls = Effect.gen(function*() {
          while (true) {
            const startedAt = yield* Clock.currentTimeMillis
            yield* poll
            const nextIn = startedAt + everyMillis - (yield* Clock.currentTimeMillis)
            if ((yield* Ref.get(stateRef)).inFlight.size > 0) {
              yield* Effect.sleep(Duration.millis(Math.max(0, nextIn)))
            } else {
              yield* awaitChange({ firstCheckInMillis: nextIn, everyMillis, onQuiet })
            }
          }
        })
        return yield* Effect.raceFirst(polls, opened.closed)
      })
    )

    const recordFailure = (error: SessionError, attempt: number, retryIn: Duration.Duration) =>
      Effect.gen(function*() {
        const message = options.once
          ? describe(error)
          : `${describe(error)}; retrying in ${Duration.format(retryIn)} (attempt ${attempt})`
        if (error._tag === "MailSourceError") {
          yield* Effect.logWarning(`connection failed: ${message}`)
        } else {
          // Storage trouble: nothing is removed from the server until the log takes writes again.
          yield* Effect.logError(`mailbox paused: ${message}`)
          // Whatever was not committed is not in the log: start again from what is.
          yield* log.replay(plan.id).pipe(Effect.flatMap((state) => Ref.set(stateRef, state)), Effect.ignore)
        }
        yield* processor.emit([new MailboxConnectionFailed({
          error: describe(error),
          attempt,
          retryInSeconds: Duration.toMillis(retryIn) / 1000
        })]).pipe(Effect.catchAll((cause) => Effect.logError(`cannot record the failure: ${describe(cause)}`)))
      })

    if (options.once) {
      yield* session.pipe(Effect.catchAll((error) => recordFailure(error, 1, Duration.zero)))
      return { reached: yield* Ref.get(reached), state: yield* Ref.get(stateRef) } satisfies RunOutcome
    }

    // Reconnect loop: the attempt count resets only after the mailbox stayed healthy a while
    // since the last failure, so a server that accepts logins and then drops them (flapping)
    // still sees the backoff grow.
    const reconnectLoop = Effect.gen(function*() {
      let attempt = 0
      let healthySince = yield* Clock.currentTimeMillis
      while (true) {
        const result = yield* Effect.either(session)
        if (result._tag === "Right") {
          // A session that ends by itself (POP3 after QUIT): the next one at the next poll.
          yield* Effect.sleep(Duration.seconds(plan.pollingIntervalSeconds))
          continue
        }
        if (result.left._tag === "MailSourceError" && result.left.stopMailbox === true) {
          const detail = describe(result.left)
          yield* Effect.logError(`mailbox stopped until its configuration changes: ${detail}`)
          yield* processor.emit([new MailboxStopped({ reason: `${result.left.kind}-failed`, detail })])
          return { reached: yield* Ref.get(reached), state: yield* Ref.get(stateRef) } satisfies RunOutcome
        }
        yield* Ref.set(announced, false)
        const failedAt = yield* Clock.currentTimeMillis
        if (failedAt - healthySince >= Duration.toMillis(HEALTHY_AFTER)) attempt = 0
        attempt += 1
        const delay = reconnectDelay(plan.reconnectIntervalSeconds, attempt, yield* Random.next)
        yield* recordFailure(result.left, attempt, delay)
        yield* Effect.sleep(delay)
        healthySince = yield* Clock.currentTimeMillis
      }
    })
    return yield* reconnectLoop.pipe(
      Effect.onInterrupt(() =>
        processor.emit([new MailboxStopped({ reason: "shutdown", detail: "the daemon is stopping" })]).pipe(Effect.ignore)
      )
    )
  }).pipe(Effect.annotateLogs({ mailbox: plan.id }))
