/**
 * One fiber per mailbox, in a FiberMap keyed by mailbox id. Each fiber catches and logs its
 * own failures, so one mailbox can never take another down; `reconcile` starts, restarts and
 * stops fibers to match a new plan.
 */
import { Cause, Duration, Effect, FiberMap, Layer, Random, Redacted, type Scope } from "effect"
import { createHash } from "node:crypto"
import { CONFIG_STREAM, ConfigurationApplied, MailboxStopped } from "../domain/events.js"
import type { MailboxPlan } from "../domain/plan.js"
import { EventLog } from "../eventlog/EventLog.js"
import type { Decider } from "../processing/Decider.js"
import { Integrations } from "./Integrations.js"
import * as MailboxActor from "./MailboxActor.js"
import { reconnectDelay } from "./reconnect.js"

/** A hash of everything that defines a mailbox, secrets included (hashed, never shown). */
export const fingerprint = (plan: MailboxPlan): string =>
  createHash("sha256")
    .update(JSON.stringify(plan, (_, value) =>
      Redacted.isRedacted(value)
        ? `secret:${createHash("sha256").update(String(Redacted.value(value))).digest("hex")}`
        : value))
    .digest("hex")

/** A hash of a whole plan: changes whenever any setting (or secret) of any mailbox does. */
export const planHash = (plans: ReadonlyArray<MailboxPlan>, serverUsageType: string): string =>
  createHash("sha256")
    .update(serverUsageType)
    .update(plans.map((plan) => `${plan.id}:${fingerprint(plan)}`).sort().join("\n"))
    .digest("hex")

const provideIntegrations = (plan: MailboxPlan) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.flatMap(Integrations, (integrations) =>
      Effect.provide(effect, Layer.merge(integrations.source(plan), integrations.sink(plan))))

/** Appends `MailboxStopped` for a mailbox whose configuration may not run on this server. */
const refuseUsage = (plan: MailboxPlan, message: string) =>
  Effect.gen(function*() {
    const log = yield* EventLog
    yield* Effect.logError(`not polling mailbox ${plan.id} of configuration ${plan.configuration}: ${message}`)
    yield* log.appendAtEnd(plan.id, [new MailboxStopped({ reason: "usage-type-mismatch", detail: message })])
  })

/** Polls every mailbox once, concurrently; says which were reached. */
export const runOnce = (plans: ReadonlyArray<MailboxPlan>) =>
  Effect.forEach(
    plans,
    (plan) =>
      plan.usage._tag === "Mismatch"
        ? refuseUsage(plan, plan.usage.message).pipe(Effect.as({ id: plan.id, reached: false, refused: true }))
        : MailboxActor.run(plan, { once: true }).pipe(
          provideIntegrations(plan),
          Effect.map((outcome) => ({ id: plan.id, reached: outcome.reached, refused: false })),
          Effect.catchAllCause((cause) =>
            Effect.logError(`mailbox ${plan.id} failed`, cause).pipe(Effect.as({ id: plan.id, reached: false, refused: false }))
          )
        ),
    { concurrency: "unbounded" }
  )

/**
 * Runs a mailbox until interrupted, or until it stops itself (a failure retrying cannot fix).
 * A defect is logged and the mailbox starts over after its reconnect interval.
 */
const supervise = (plan: MailboxPlan, restarts = 0): Effect.Effect<void, never, EventLog | Integrations | Decider> =>
  MailboxActor.run(plan, { once: false }).pipe(
    Effect.asVoid,
    provideIntegrations(plan),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Effect.gen(function*() {
          // The same backoff as reconnects: a mailbox that keeps failing must not spin.
          const delay = reconnectDelay(plan.reconnectIntervalSeconds, restarts + 1, yield* Random.next)
          yield* Effect.logError(`mailbox ${plan.id} failed; restarting it in ${Duration.format(delay)}`, cause)
          yield* Effect.sleep(delay)
          return yield* supervise(plan, restarts + 1)
        })
    ),
    Effect.annotateLogs({ mailbox: plan.id })
  )

export interface Supervisor {
  /** Brings the running mailboxes in line with `plans`; returns what changed. */
  readonly reconcile: (plans: ReadonlyArray<MailboxPlan>) => Effect.Effect<Changes>
}

export interface Changes {
  readonly started: ReadonlyArray<string>
  readonly restarted: ReadonlyArray<string>
  readonly stopped: ReadonlyArray<string>
  readonly refused: ReadonlyArray<string>
}

/** Records an applied configuration in the log (stream `$config`); never fails the daemon. */
export const recordApplied = (plans: ReadonlyArray<MailboxPlan>, serverUsageType: string, source: string, changes: Changes) =>
  Effect.flatMap(EventLog, (log) =>
    log.appendAtEnd(CONFIG_STREAM, [
      new ConfigurationApplied({
        hash: planHash(plans, serverUsageType),
        summary: `${source}: ${plans.length} mailbox(es) in ${new Set(plans.map((plan) => plan.configuration)).size} configuration(s); server usage type ${serverUsageType || "(blank)"}`,
        ...changes
      })
    ])).pipe(Effect.catchAll((error) => Effect.logError(`cannot record the applied configuration: ${error.message}`)))

export const make: Effect.Effect<Supervisor, never, EventLog | Integrations | Decider | Scope.Scope> = Effect.gen(function*() {
  const fibers = yield* FiberMap.make<string>()
  // Mailbox id → fingerprint of what runs (or was refused), to leave unchanged ones untouched.
  const running = new Map<string, string>()
  const refusedPrints = new Map<string, string>()
  const context = yield* Effect.context<EventLog | Integrations | Decider>()

  const reconcile = (plans: ReadonlyArray<MailboxPlan>) =>
    Effect.gen(function*() {
      const started: Array<string> = []
      const restarted: Array<string> = []
      const stopped: Array<string> = []
      const refused: Array<string> = []
      const wanted = new Map(plans.map((plan) => [plan.id, plan]))
      for (const id of [...refusedPrints.keys()]) if (!wanted.has(id)) refusedPrints.delete(id)
      for (const id of [...running.keys()]) {
        if (!wanted.has(id)) {
          yield* FiberMap.remove(fibers, id)
          running.delete(id)
          stopped.push(id)
        }
      }
      for (const plan of plans) {
        const print = fingerprint(plan)
        const previous = running.get(plan.id)
        if (previous === print) continue
        if (plan.usage._tag === "Mismatch") {
          if (refusedPrints.get(plan.id) === print) continue
          if (previous !== undefined) yield* FiberMap.remove(fibers, plan.id)
          running.delete(plan.id)
          refusedPrints.set(plan.id, print)
          yield* refuseUsage(plan, plan.usage.message).pipe(
            Effect.provide(context),
            Effect.catchAll((error) => Effect.logError(String(error)))
          )
          refused.push(plan.id)
          continue
        }
        refusedPrints.delete(plan.id)
        // Let the old fiber finish its step and record its stop before the new one replays.
        if (previous !== undefined) yield* FiberMap.remove(fibers, plan.id)
        yield* FiberMap.run(fibers, plan.id, Effect.provide(supervise(plan), context))
        running.set(plan.id, print)
        ;(previous === undefined ? started : restarted).push(plan.id)
      }
      return { started, restarted, stopped, refused }
    })

  return { reconcile }
})
