/**
 * Decides batches of messages: on this thread (`inline`), or on a pool of worker threads
 * (`workerPool`) so that parsing runs beside fetching and committing. The pool also contains
 * a hostile message: a parse that hangs or crashes its worker ends as `processing-error` for
 * that message, and the worker is replaced.
 */
import { Context, Effect, Layer, Schedule } from "effect"
import { existsSync } from "node:fs"
import { availableParallelism } from "node:os"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { COLLECT_EVERY_BYTES, collectGarbage } from "../memory/collectGarbage.js"
import { defaultSpoolDirectory, sweepSpool } from "./bodySpool.js"
import { type DecideOptions, type Decision, tooLarge } from "./Decision.js"
import type { DecideReply, DecideRequest } from "./parserWorker.js"

/**
 * The decision core (classification, mailparser) is loaded on this thread only when a message
 * needs it: a daemon with nothing to do, or only too-large messages, never pays for mailparser.
 */
let core: Promise<typeof import("./decide.js")> | undefined
const loadCore = () => (core ??= import("./decide.js"))

/** From this size on, a message not already on a SharedArrayBuffer is copied onto one to reach a worker. */
const SHARE_FROM_BYTES = 1024 * 1024

/**
 * The bytes a worker is sent. Structured cloning copies a message (twice, for a moment); a
 * SharedArrayBuffer is shared. The sources assemble large messages on one already.
 */
const forWorker = (raw: Uint8Array): Uint8Array => {
  // The pieces a large message arrived in are garbage now: gone before the worker's parse adds its own.
  if (raw.byteLength >= COLLECT_EVERY_BYTES) collectGarbage()
  if (raw.byteLength < SHARE_FROM_BYTES || raw.buffer instanceof SharedArrayBuffer) return raw
  const shared = new Uint8Array(new SharedArrayBuffer(raw.byteLength))
  shared.set(raw)
  return shared
}

export class Decider extends Context.Tag("mailintake/Decider")<Decider, {
  /** The decisions for these messages, in order. Never fails. */
  readonly decideAll: (raws: ReadonlyArray<Uint8Array>, options: DecideOptions) => Effect.Effect<ReadonlyArray<Decision>>
  /** Loads the parser now (starts a worker), so that the next decision does not wait for it. */
  readonly warmUp: Effect.Effect<void>
}>() {}

/** A message that could not be processed is quarantined; the log says why. */
const warnIfFailed = (decision: Decision) =>
  decision._tag === "Quarantine" && decision.reason === "processing-error"
    ? Effect.logWarning(`processing failed, the message goes to quarantine: ${decision.detail}`)
    : Effect.void

/** The Effect form of `decideMessage`. */
export const decide = (raw: Uint8Array, options: DecideOptions, spoolDirectory?: string): Effect.Effect<Decision> =>
  Effect.promise(() => loadCore().then(({ decideMessage }) => decideMessage(raw, options, { spoolDirectory }))).pipe(
    Effect.tap(warnIfFailed)
  )

/**
 * Deletes the spooled bodies nobody will take (bodySpool.ts, `sweepSpool`): left by a process
 * that ended, or by an append that failed. At start, then every few minutes.
 */
const spoolJanitor = (directory: string) =>
  Effect.sync(() => sweepSpool(directory)).pipe(
    Effect.tap((removed) => removed > 0 ? Effect.logInfo(`removed ${removed} spooled message bodies left behind in ${directory}`) : Effect.void),
    Effect.repeat(Schedule.spaced("10 minutes")),
    Effect.forkScoped
  )

/** On the calling thread, one message after the other. */
export const inlineIn = (spoolDirectory: string): Layer.Layer<Decider> =>
  Layer.scoped(
    Decider,
    Effect.as(spoolJanitor(spoolDirectory), {
      decideAll: (raws, options) => Effect.forEach(raws, (raw) => decide(raw, options, spoolDirectory)),
      warmUp: Effect.asVoid(Effect.promise(loadCore))
    })
  )

/** `inlineIn` the default spool directory. */
export const inline: Layer.Layer<Decider> = Layer.suspend(() => inlineIn(defaultSpoolDirectory()))

const processingError = (detail: string): Decision => ({ _tag: "Quarantine", reason: "processing-error", detail })

/** A request to a worker: several messages, answered together (or each failed alike). */
interface Pending {
  readonly raws: ReadonlyArray<Uint8Array>
  /** The decisions in order, or the reason the worker could not give them. */
  readonly resolve: (result: ReadonlyArray<Decision> | { readonly failed: string }) => void
  timer: NodeJS.Timeout
  readonly timeoutMillis: number
}

/**
 * One worker and the requests it is working on. The thread starts with its first message (a
 * worker with mailparser loaded is some 40 MB), and after a crash with the next one.
 *
 * A batch of messages travels as one request and comes back as one reply: a message each way
 * per message woke the other thread 10,000 times for 5,000 messages, which on two busy cores
 * cost more than the messages' bytes. The worker reports progress on a batch that runs long,
 * so the hang timer measures one message's parse, not the batch's.
 */
class PoolWorker {
  private worker: Worker | undefined
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  /** Messages in requests not answered yet (what "least busy" compares). */
  load = 0

  constructor(private readonly script: URL, private readonly spoolDirectory: string) {}

  private spawn(): Worker {
    // A small young generation: a parse's garbage is short-lived, and with V8's default (up to
    // 48 MB) a worker parsing one large message grew by that much before collecting any.
    const worker = new Worker(this.script, { resourceLimits: { maxYoungGenerationSizeMb: 4 } })
    worker.on("message", (reply: DecideReply) => {
      // Any word from the worker shows it is not hung: every request waiting on it (queued
      // behind the one it works on, or the next message of a long batch) gets its full time again.
      for (const waiting of this.pending.values()) {
        clearTimeout(waiting.timer)
        waiting.timer = this.hangTimer(waiting.timeoutMillis)
      }
      const pending = this.pending.get(reply.id)
      // Without decisions: progress on a long batch.
      if (pending === undefined || reply.decisions === undefined) return
      clearTimeout(pending.timer)
      this.settle(reply.id, pending)
      pending.resolve(reply.decisions.map((decision, i) =>
        decision._tag === "Accept" ? { ...decision, crlf: decision.crlf ?? pending.raws[i]! } : decision
      ))
    })
    worker.on("error", (error) => this.replace(`the parser crashed: ${error.message}`))
    worker.on("exit", (code) => {
      if (worker === this.worker && code !== 0) this.replace(`the parser exited with code ${code}`)
    })
    worker.unref()
    return worker
  }

  private settle(id: number, pending: Pending) {
    this.pending.delete(id)
    this.load -= pending.raws.length
  }

  /** A parse that blocks its thread cannot time itself out: the pool ends a hung worker from here. */
  private hangTimer(timeoutMillis: number) {
    return setTimeout(() => this.replace(`parsing took longer than ${timeoutMillis} ms`), timeoutMillis + 1_000)
  }

  /** Fails everything in flight on this worker and stops it; the next request starts a new one. */
  private replace(detail: string) {
    const old = this.worker
    this.worker = undefined
    void old?.terminate()
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer)
      this.settle(id, pending)
      pending.resolve({ failed: detail })
    }
  }

  decide(raws: ReadonlyArray<Uint8Array>, options: DecideOptions): Promise<ReadonlyArray<Decision> | { readonly failed: string }> {
    return new Promise((resolve) => {
      const id = this.nextId++
      this.pending.set(id, { raws, resolve, timer: this.hangTimer(options.parseTimeoutMillis), timeoutMillis: options.parseTimeoutMillis })
      this.load += raws.length
      this.worker ??= this.spawn()
      this.worker.postMessage({ id, raws: raws.map(forWorker), options, spoolDirectory: this.spoolDirectory } satisfies DecideRequest)
    })
  }

  close() {
    for (const pending of this.pending.values()) clearTimeout(pending.timer)
    return this.worker?.terminate()
  }
}

/**
 * Decides `raws` on `worker` as one request. When the worker fails the request (it crashed, or
 * a parse hung), each message is tried again on its own, so that only the message that brings
 * the worker down ends as processing-error, not the batch it came in.
 */
const decideOn = async (
  worker: () => PoolWorker,
  raws: ReadonlyArray<Uint8Array>,
  options: DecideOptions
): Promise<ReadonlyArray<Decision>> => {
  if (raws.length === 0) return []
  const result = await worker().decide(raws, options)
  if (!("failed" in result)) return result
  if (raws.length === 1) return [processingError(result.failed)]
  const decisions: Array<Decision> = []
  for (const raw of raws) {
    const one = await worker().decide([raw], options)
    decisions.push("failed" in one ? processingError(one.failed) : one[0]!)
  }
  return decisions
}

/** The compiled worker script; absent when running from TypeScript sources (tests). */
const compiledWorker = new URL("./parserWorker.js", import.meta.url)

export const defaultPoolSize = () => Math.max(1, Math.min(4, availableParallelism() - 1))

/**
 * A pool of `size` workers: a batch is shared out among them, each share as one request to the
 * least busy worker. Falls back to `inline` when the compiled worker script is not there
 * (running from sources). Large text bodies are spooled in `spoolDirectory`.
 */
export const workerPool = ({ size = defaultPoolSize(), workerScript = compiledWorker, spoolDirectory = defaultSpoolDirectory() }: {
  readonly size?: number
  /** The compiled parserWorker.js (a test runs one that misbehaves). */
  readonly workerScript?: URL
  readonly spoolDirectory?: string
} = {}): Layer.Layer<Decider> =>
  existsSync(fileURLToPath(workerScript))
    ? Layer.scoped(
      Decider,
      Effect.gen(function*() {
        yield* spoolJanitor(spoolDirectory)
        const workers = yield* Effect.acquireRelease(
          Effect.sync(() => Array.from({ length: size }, () => new PoolWorker(workerScript, spoolDirectory))),
          (workers) => Effect.promise(() => Promise.all(workers.map((worker) => worker.close())))
        )
        const leastBusy = () => workers.reduce((best, worker) => (worker.load < best.load ? worker : best))
        /** The batch in one request a worker (a share of it each, with several workers); too-large ones need none. */
        const decideAll = async (raws: ReadonlyArray<Uint8Array>, options: DecideOptions): Promise<ReadonlyArray<Decision>> => {
          const decisions: Array<Decision | undefined> = raws.map((raw) => tooLarge(raw, options))
          const toParse = raws.flatMap((_, i) => (decisions[i] === undefined ? [i] : []))
          if (toParse.length === 0) return decisions as ReadonlyArray<Decision>
          const share = Math.ceil(toParse.length / workers.length)
          await Promise.all(Array.from({ length: Math.ceil(toParse.length / share) }, async (_, part) => {
            const indices = toParse.slice(part * share, (part + 1) * share)
            const decided = await decideOn(leastBusy, indices.map((i) => raws[i]!), options)
            indices.forEach((index, i) => (decisions[index] = decided[i]))
          }))
          return decisions as ReadonlyArray<Decision>
        }
        return {
          // An empty request: the worker starts (loading the parser) and answers.
          warmUp: Effect.promise(() => leastBusy().decide([], { maxMessageBytes: 0, quarantineListMail: false, parseTimeoutMillis: 60_000 })).pipe(
            Effect.asVoid
          ),
          decideAll: (raws, options) =>
            Effect.promise(() => decideAll(raws, options)).pipe(Effect.tap((decisions) =>
              Effect.forEach(decisions.filter((decision) => decision._tag === "Quarantine"), warnIfFailed)
            ))
        }
      })
    )
    : inlineIn(spoolDirectory)
