/**
 * A worker thread that decides messages (classify, parse, CR LF) off the main thread, where
 * mailparser would otherwise cost about 1 ms per message on the critical path. The edge of a
 * thread, like main.ts, is where an Effect is run.
 */
import { Effect } from "effect"
import { parentPort } from "node:worker_threads"
import { decide, type DecideOptions } from "./decide.js"

export interface DecideRequest {
  readonly id: number
  readonly raw: Uint8Array
  readonly options: DecideOptions
}

parentPort?.on("message", (request: DecideRequest) => {
  void Effect.runPromise(decide(request.raw, request.options)).then((decision) => {
    // The CR LF copy travels back only when it differs from the original.
    const reply = decision._tag === "Accept" && decision.crlf === request.raw
      ? { id: request.id, decision: { ...decision, crlf: undefined } }
      : { id: request.id, decision }
    parentPort!.postMessage(reply)
  })
})
