/**
 * The reconnect backoff (issue 2): the delays, the cap, the jitter bounds and the reset, first
 * as a pure function, then through the real mailbox actor driven by TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Redacted, Ref, TestClock } from "effect"
import type { MailboxPlan } from "../../src/domain/plan.js"
import { usageVerdict } from "../../src/domain/usageType.js"
import { EventLog } from "../../src/eventlog/EventLog.js"
import * as MailboxActor from "../../src/mailbox/MailboxActor.js"
import { CAP_FACTOR, HEALTHY_AFTER, reconnectDelay } from "../../src/mailbox/reconnect.js"
import * as Decider from "../../src/processing/Decider.js"
import { QuarantineSink } from "../../src/quarantine/QuarantineSink.js"
import { MailSource, MailSourceError } from "../../src/sources/MailSource.js"

const seconds = (duration: Duration.Duration) => Duration.toMillis(duration) / 1000

describe("reconnectDelay", () => {
  it("starts at the reconnect interval and grows by 1.5 per attempt", () => {
    expect([1, 2, 3, 4].map((attempt) => seconds(reconnectDelay(60, attempt, 0.5)))).toEqual([60, 90, 135, 202.5])
  })
  it("is capped at ten times the interval", () => {
    for (const attempt of [7, 8, 20, 1000]) expect(seconds(reconnectDelay(60, attempt, 0.5))).toBe(60 * CAP_FACTOR)
  })
  it("is jittered within ±20 %", () => {
    expect(seconds(reconnectDelay(60, 1, 0))).toBe(48)
    expect(seconds(reconnectDelay(60, 1, 0.999999))).toBeCloseTo(72, 3)
    expect(seconds(reconnectDelay(60, 50, 0))).toBe(480)
    expect(seconds(reconnectDelay(60, 50, 0.999999))).toBeCloseTo(720, 3)
  })
})

const plan: MailboxPlan = {
  id: "flaky",
  configuration: "test",
  integrationType: "IMAP",
  usageType: "Production",
  usage: usageVerdict("Production", "Production"),
  pollingIntervalSeconds: 30,
  reconnectIntervalSeconds: 10,
  maxMessageBytes: 1_000_000,
  quarantineListMail: false,
  afterProcessing: "delete",
  quarantine: {
    type: "SMTP",
    mailbox: "q@example.test",
    smtp: { host: "127.0.0.1", port: 25, ssl: false, user: "", password: Redacted.make(""), sender: "m@example.test", tlsRejectUnauthorized: true, caFile: undefined }
  },
  connection: {
    _tag: "Server",
    protocol: "IMAP",
    settings: {
      id: "flaky", host: "127.0.0.1", tls: "implicit", tlsRejectUnauthorized: true, user: "u", password: Redacted.make("p"),
      folder: "INBOX", afterProcessing: "delete", connectTimeoutSeconds: 5, commandTimeoutSeconds: 5
    }
  }
}

const sink = Layer.succeed(QuarantineSink, { forward: () => Effect.die("no quarantine in this test") })
const eventLog = EventLog.at(":memory:")

/**
 * A server that refuses every login, or — when `healthyFor` says so — accepts one, keeps the
 * session for that long and then drops it.
 */
const flakySource = (healthyFor: Ref.Ref<ReadonlyArray<Duration.Duration>>) =>
  Layer.succeed(MailSource, {
    open: Effect.gen(function*() {
      const next = yield* Ref.modify(healthyFor, (queue) => [queue[0], queue.slice(1)])
      if (next === undefined) return yield* new MailSourceError({ kind: "connect", message: "connection refused" })
      return {
        server: "imaps://flaky",
        list: Effect.succeed([]),
        fetch: () => Effect.succeed([]),
        remove: () => Effect.void,
        closed: Effect.sleep(next).pipe(
          Effect.zipRight(Effect.fail(new MailSourceError({ kind: "closed", message: "connection reset" })))
        )
      }
    })
  })

const failures = Effect.flatMap(EventLog, (log) => log.read({ stream: "flaky", types: ["MailboxConnectionFailed"] })).pipe(
  Effect.map((events) => events.map((stored) => stored.event as Extract<typeof stored.event, { _tag: "MailboxConnectionFailed" }>))
)

describe("the mailbox actor's reconnects", () => {
  it.effect("wait out the backoff before each new login, and never log in early", () =>
    Effect.gen(function*() {
      const healthy = yield* Ref.make<ReadonlyArray<Duration.Duration>>([])
      const fiber = yield* MailboxActor.run(plan, { once: false }).pipe(
        Effect.provide(Layer.mergeAll(flakySource(healthy), sink, Decider.inline)),
        Effect.fork
      )
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* failures).toHaveLength(1)
      for (let attempt = 1; attempt <= 9; attempt++) {
        const [failure] = (yield* failures).slice(-1)
        expect(failure!.attempt).toBe(attempt)
        const expected = Math.min(10 * 1.5 ** (attempt - 1), 100)
        expect(failure!.retryInSeconds).toBeGreaterThanOrEqual(expected * 0.8)
        expect(failure!.retryInSeconds).toBeLessThanOrEqual(expected * 1.2)
        // 1 ms before the delay is over: no new login yet; 1 ms after: the next attempt.
        // (The clock stands 1 ms past the failure.)
        yield* TestClock.adjust(Duration.millis(failure!.retryInSeconds * 1000 - 2))
        expect(yield* failures).toHaveLength(attempt)
        yield* TestClock.adjust(Duration.millis(2))
        expect(yield* failures).toHaveLength(attempt + 1)
      }
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(eventLog)))

  it.effect("reset the backoff after a connection stayed healthy, but not after a short one", () =>
    Effect.gen(function*() {
      const healthy = yield* Ref.make<ReadonlyArray<Duration.Duration>>([])
      const fiber = yield* MailboxActor.run(plan, { once: false }).pipe(
        Effect.provide(Layer.mergeAll(flakySource(healthy), sink, Decider.inline)),
        Effect.fork
      )
      // Five refused logins: the backoff grows to attempt 5.
      for (let i = 0; i < 5; i++) yield* TestClock.adjust(Duration.seconds(200))
      expect((yield* failures).at(-1)!.attempt).toBeGreaterThanOrEqual(5)
      const before = (yield* failures).at(-1)!.attempt
      // A session that drops after 10 s (flapping): the count keeps growing.
      yield* Ref.set(healthy, [Duration.seconds(10)])
      yield* TestClock.adjust(Duration.seconds(200))
      yield* TestClock.adjust(Duration.seconds(20))
      const drops = () => Effect.map(failures, (all) => all.filter((failure) => failure.error.startsWith("closed")))
      expect((yield* drops()).map((failure) => failure.attempt)).toEqual([before + 1])
      // A session that stays up longer than HEALTHY_AFTER: the next failure starts over at 1.
      yield* Ref.set(healthy, [Duration.sum(HEALTHY_AFTER, Duration.seconds(1))])
      yield* TestClock.adjust(Duration.seconds(200))
      yield* TestClock.adjust(Duration.sum(HEALTHY_AFTER, Duration.seconds(5)))
      const connected = yield* Effect.flatMap(EventLog, (log) => log.read({ stream: "flaky", types: ["MailboxConnected"] }))
      expect(connected.length).toBeGreaterThanOrEqual(2)
      expect((yield* drops()).map((failure) => failure.attempt)).toEqual([before + 1, 1])
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(eventLog)))
})

describe("the mailbox actor's polls", () => {
  /** A healthy session that records when each poll started and can be told to take long. */
  const timedSource = (pollStarts: Array<number>, pollTakes: Ref.Ref<Duration.Duration>) =>
    Layer.succeed(MailSource, {
      open: Effect.succeed({
        server: "imaps://steady",
        list: Effect.gen(function*() {
          pollStarts.push(yield* TestClock.currentTimeMillis)
          yield* Effect.sleep(yield* Ref.get(pollTakes))
          return []
        }),
        fetch: () => Effect.succeed([]),
        remove: () => Effect.void,
        closed: Effect.never
      })
    })

  it.effect("start every polling interval, not an interval after the last poll ended; an overrun poll is followed at once", () =>
    Effect.gen(function*() {
      const starts: Array<number> = []
      const takes = yield* Ref.make(Duration.seconds(4))
      const fiber = yield* MailboxActor.run(plan, { once: false }).pipe(
        Effect.provide(Layer.mergeAll(timedSource(starts, takes), sink, Decider.inline)),
        Effect.fork
      )
      // Polls of 4 s, every 30 s from the end of the first (Schedule.fixed): 0, 34, 64, 94 s —
      // not 0, 34, 68, 102 s as an interval after each poll would give.
      for (let i = 0; i < 10; i++) yield* TestClock.adjust(Duration.seconds(10))
      expect(starts).toEqual([0, 34_000, 64_000, 94_000])
      // A poll of 45 s, longer than the interval: the next one starts when it ends.
      yield* Ref.set(takes, Duration.seconds(45))
      for (let i = 0; i < 7; i++) yield* TestClock.adjust(Duration.seconds(10))
      yield* Ref.set(takes, Duration.seconds(1))
      for (let i = 0; i < 3; i++) yield* TestClock.adjust(Duration.seconds(10))
      expect(starts.slice(4, 6)).toEqual([124_000, 169_000])
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(eventLog)))
})
