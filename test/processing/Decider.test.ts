/**
 * The worker-thread pool decides like the inline decider, and contains hostile input: a message
 * mailparser refuses, or one that takes too long, ends as processing-error, and the pool goes
 * on. Runs the compiled pool (npm test builds first), since worker threads load JavaScript.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import * as Decider from "../../src/processing/Decider.js"
import { bareLfMessage, largeMessage, plainMessage } from "../support/messages.js"
import * as samples from "../support/quarantineSamples.js"

/** The compiled worker (worker threads load JavaScript, not the TypeScript sources). */
const compiledWorker = new URL("../../dist/processing/parserWorker.js", import.meta.url)
const workerPool = (size: number) => Decider.workerPool({ size, workerScript: compiledWorker })

const options = { maxMessageBytes: 50_000_000, quarantineListMail: false, parseTimeoutMillis: 30_000 }

describe("the parser pool", () => {
  it("is the compiled one (the suite runs after a build)", () => {
    expect(existsSync(compiledWorker)).toBe(true)
  })

  it.scoped("decides a batch like the inline decider, in order", () =>
    Effect.gen(function*() {
      const raws = [plainMessage(1), bareLfMessage(2), samples.vacationReply(), samples.unparseable(), plainMessage(3)]
      const pooled = yield* Effect.flatMap(Decider.Decider, (decider) => decider.decideAll(raws, options)).pipe(
        Effect.provide(workerPool(2))
      )
      const inline = yield* Effect.flatMap(Decider.Decider, (decider) => decider.decideAll(raws, options)).pipe(
        Effect.provide(Decider.inline)
      )
      expect(pooled.map((decision) => decision._tag === "Accept" ? "accept" : decision.reason)).toEqual([
        "accept",
        "accept",
        "auto-response",
        "processing-error",
        "accept"
      ])
      expect(pooled.map((decision) => decision._tag === "Accept" ? decision.summary : decision.detail)).toEqual(
        inline.map((decision) => decision._tag === "Accept" ? decision.summary : decision.detail)
      )
      // An unchanged message comes back as the very bytes given; a bare-LF one as its CR LF form.
      const [first, second] = pooled
      expect(first!._tag === "Accept" && first!.crlf === raws[0]).toBe(true)
      expect(second!._tag === "Accept" && Buffer.from(second!.crlf).toString().includes("\r\n")).toBe(true)
    }))

  it.scoped("turns a parse over its time limit into processing-error, and keeps working", () =>
    Effect.gen(function*() {
      const decider = yield* Decider.Decider
      const [slow] = yield* decider.decideAll([largeMessage(1, 5_000_000)], { ...options, parseTimeoutMillis: 1 })
      expect(slow).toMatchObject({ _tag: "Quarantine", reason: "processing-error" })
      expect((slow as { detail: string }).detail).toMatch(/longer than/)
      const [after] = yield* decider.decideAll([plainMessage(4)], options)
      expect(after!._tag).toBe("Accept")
    }).pipe(Effect.provide(workerPool(1))))

  it.scoped("sends a batch as one request, and when the worker dies or hangs on it, fails only the message that did it", () =>
    Effect.gen(function*() {
      const decider = yield* Decider.Decider
      const raws = ["one", "CRASH-ME", "two", "HANG-ME", "three"].map((text) => Buffer.from(`${text}\nbody`))
      const decisions = yield* decider.decideAll(raws, { ...options, parseTimeoutMillis: 200 })
      expect(decisions.map((decision) => decision._tag === "Accept" ? decision.summary.subject : decision.detail)).toEqual([
        "one",
        "the parser exited with code 3",
        "two",
        "parsing took longer than 200 ms",
        "three"
      ])
      // Each accepted message comes back as its own bytes.
      expect(decisions[0]!._tag === "Accept" && decisions[0]!.crlf === raws[0]).toBe(true)
      const [after] = yield* decider.decideAll([Buffer.from("four\nbody")], options)
      expect(after).toMatchObject({ _tag: "Accept", summary: { subject: "four" } })
    }).pipe(Effect.provide(Decider.workerPool({ size: 1, workerScript: new URL("../support/misbehavingParserWorker.mjs", import.meta.url) }))))
})
