/**
 * A worker thread that decides messages (classify, parse, CR LF) off the main thread, where
 * mailparser would otherwise cost about 1 ms per message on the critical path. It loads only
 * the plain-Promise core of `decide`, so each worker stays small.
 */
import { parentPort } from "node:worker_threads"
import { type DecideOptions, decideMessage } from "./decide.js"

export interface DecideRequest {
  readonly id: number
  readonly raw: Uint8Array
  readonly options: DecideOptions
}

parentPort?.on("message", (request: DecideRequest) => {
  // true: a large message's parse collects garbage every few megabytes (src/memory/collectGarbage.ts).
  void decideMessage(request.raw, request.options, true).then((decision) => {
    // The CR LF copy travels back only when it differs from the original (shared, not copied,
    // when the original was on a SharedArrayBuffer).
    const reply = decision._tag === "Accept" && decision.crlf === request.raw
      ? { id: request.id, decision: { ...decision, crlf: undefined } }
      : { id: request.id, decision }
    parentPort!.postMessage(reply)
  })
})
