/**
 * Decides batches of messages: on this thread (`inline`), or on a pool of worker threads
 * (`workerPool`) so that parsing runs beside fetching and committing. The pool also contains
 * a hostile message: a parse that hangs or crashes its worker ends as `processing-error` for
 * that message, and the worker is replaced.
 */
import { Context, Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import { availableParallelism } from "node:os"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { type DecideOptions, type Decision, tooLarge } from "./Decision.js"
import type { DecideRequest } from "./parserWorker.js"

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
  if (raw.byteLength < SHARE_FROM_BYTES || raw.buffer instanceof SharedArrayBuffer) return raw
  const shared = new Uint8Array(new SharedArrayBuffer(raw.byteLength))
  shared.set(raw)
  return shared
}

export class Decider extends Context.Tag("mailintake/Decider")<Decider, {
  /** The decisions for these messages, in order. Never fails. */
  readonly decideAll: (raws: ReadonlyArray<Uint8Array>, options: DecideOptions) => Effect.Effect<ReadonlyArray<Decision>>
}>() {}

/** A message that could not be processed is quarantined; the log says why. */
const warnIfFailed = (decision: Decision) =>
  decision._tag === "Quarantine" && decision.reason === "processing-error"
    ? Effect.logWarning(`processing failed, the message goes to quarantine: ${decision.detail}`)
    : Effect.void

/** The Effect form of `decideMessage`. */
export const decide = (raw: Uint8Array, options: DecideOptions): Effect.Effect<Decision> =>
  Effect.promise(() => loadCore().then(({ decideMessage }) => decideMessage(raw, options))).pipe(Effect.tap(warnIfFailed))

/** On the calling thread, one message after the other. */
export const inline = Layer.succeed(Decider, {
  decideAll: (raws, options) => Effect.forEach(raws, (raw) => decide(raw, options))
})

const processingError = (detail: string): Decision => ({ _tag: "Quarantine", reason: "processing-error", detail })

interface Pending {
  readonly raw: Uint8Array
  readonly resolve: (decision: Decision) => void
  readonly timer: NodeJS.Timeout
}

/**
 * One worker and the requests it is working on. The thread starts with its first message (a
 * worker with mailparser loaded is some 40 MB), and after a crash with the next one.
 */
class PoolWorker {
  private worker: Worker | undefined
  private readonly pending = new Map<number, Pending>()
  private nextId = 0

  constructor(private readonly script: URL) {}

  private spawn(): Worker {
    // A small young generation: a parse's garbage is short-lived, and with V8's default (up to
    // 48 MB) a worker parsing one large message grew by that much before collecting any.
    const worker = new Worker(this.script, { resourceLimits: { maxYoungGenerationSizeMb: 4 } })
    worker.on("message", (reply: { id: number; decision: Decision }) => {
      const pending = this.pending.get(reply.id)
      if (pending === undefined) return
      this.pending.delete(reply.id)
      clearTimeout(pending.timer)
      const decision = reply.decision
      pending.resolve(decision._tag === "Accept" && decision.crlf === undefined ? { ...decision, crlf: pending.raw } : decision)
    })
    worker.on("error", (error) => this.replace(`the parser crashed: ${error.message}`))
    worker.on("exit", (code) => {
      if (worker === this.worker && code !== 0) this.replace(`the parser exited with code ${code}`)
    })
    worker.unref()
    return worker
  }

  /** Fails everything in flight on this worker and stops it; the next message starts a new one. */
  private replace(detail: string) {
    const old = this.worker
    this.worker = undefined
    void old?.terminate()
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer)
      this.pending.delete(id)
      pending.resolve(processingError(detail))
    }
  }

  get load() {
    return this.pending.size
  }

  decide(raw: Uint8Array, options: DecideOptions): Promise<Decision> {
    return new Promise((resolve) => {
      const id = this.nextId++
      // A parse that blocks its thread cannot time itself out: the pool enforces the limit
      // from here, and a hung worker is terminated and replaced.
      const timer = setTimeout(
        () => this.replace(`parsing took longer than ${options.parseTimeoutMillis} ms`),
        options.parseTimeoutMillis + 1_000
      )
      this.pending.set(id, { raw, resolve, timer })
      this.worker ??= this.spawn()
      this.worker.postMessage({ id, raw: forWorker(raw), options } satisfies DecideRequest)
    })
  }

  close() {
    for (const pending of this.pending.values()) clearTimeout(pending.timer)
    return this.worker?.terminate()
  }
}

/** The compiled worker script; absent when running from TypeScript sources (tests). */
const compiledWorker = new URL("./parserWorker.js", import.meta.url)

export const defaultPoolSize = () => Math.max(1, Math.min(4, availableParallelism() - 1))

/**
 * A pool of `size` workers, each message to the least busy one. Falls back to `inline` when
 * the compiled worker script is not there (running from sources).
 */
export const workerPool = (size = defaultPoolSize(), workerScript = compiledWorker): Layer.Layer<Decider> =>
  existsSync(fileURLToPath(workerScript))
    ? Layer.scoped(
      Decider,
      Effect.gen(function*() {
        const workers = yield* Effect.acquireRelease(
          Effect.sync(() => Array.from({ length: size }, () => new PoolWorker(workerScript))),
          (workers) => Effect.promise(() => Promise.all(workers.map((worker) => worker.close())))
        )
        const leastBusy = () => workers.reduce((best, worker) => (worker.load < best.load ? worker : best))
        return {
          decideAll: (raws, options) =>
            Effect.promise(() =>
              Promise.all(raws.map((raw) => tooLarge(raw, options) ?? leastBusy().decide(raw, options)))
            ).pipe(Effect.tap((decisions) =>
              Effect.forEach(decisions.filter((decision) => decision._tag === "Quarantine"), warnIfFailed)
            ))
        }
      })
    )
    : inline
