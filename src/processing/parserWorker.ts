/**
 * A worker thread that decides messages (classify, parse, CR LF) off the main thread, where
 * mailparser would otherwise cost about 1 ms per message on the critical path. It loads only
 * the plain-Promise core of `decide`, so each worker stays small.
 *
 * A request is a batch of messages, answered with one reply (see Decider.ts); a batch that runs
 * long sends progress after each message, which restarts the pool's hang timer.
 */
import { parentPort } from "node:worker_threads"
import { COLLECT_EVERY_BYTES, collectGarbage } from "../memory/collectGarbage.js"
import { type DecideOptions, type Decision, decideMessage } from "./decide.js"

export interface DecideRequest {
  readonly id: number
  readonly raws: ReadonlyArray<Uint8Array>
  readonly options: DecideOptions
  /** Where large text bodies are spooled (bodySpool.ts). */
  readonly spoolDirectory: string
}

/** A decision as it travels back: an accepted message's CR LF form only when it is not the message itself. */
export type SentDecision = Exclude<Decision, { _tag: "Accept" }> | (Omit<Extract<Decision, { _tag: "Accept" }>, "crlf"> & { readonly crlf?: Uint8Array })

/** The decisions of a request, in order; without them, progress on it. */
export interface DecideReply {
  readonly id: number
  readonly decisions?: ReadonlyArray<SentDecision>
}

/** After this long on one batch, progress is reported after every message. */
const PROGRESS_AFTER_MILLIS = 500

/** One request at a time, in the order they came. */
let queue = Promise.resolve()

parentPort?.on("message", (request: DecideRequest) => {
  queue = queue.then(async () => {
    const started = Date.now()
    const decisions: Array<SentDecision> = []
    for (const raw of request.raws) {
      // A large message's parse collects garbage every few megabytes (src/memory/collectGarbage.ts).
      const decision = await decideMessage(raw, request.options, { collectGarbage: true, spoolDirectory: request.spoolDirectory })
      // What the parse of a large message left behind goes now, not while the main thread stores it.
      if (raw.byteLength >= COLLECT_EVERY_BYTES) collectGarbage()
      // The CR LF copy travels back only when it differs from the original (shared, not copied,
      // when the original was on a SharedArrayBuffer).
      decisions.push(decision._tag === "Accept" && decision.crlf === raw ? { _tag: "Accept", summary: decision.summary } : decision)
      if (Date.now() - started > PROGRESS_AFTER_MILLIS) parentPort!.postMessage({ id: request.id } satisfies DecideReply)
    }
    parentPort!.postMessage({ id: request.id, decisions } satisfies DecideReply)
  })
})
