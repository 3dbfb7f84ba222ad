/**
 * How Microsoft Graph and the Microsoft identity platform fail, read into tagged errors, and the
 * one policy that decides which failures are waited out and retried.
 *
 * - "Microsoft Graph error responses and resource types": every error is a status code and a
 *   JSON body `{"error":{"code","message","innerError"}}`.
 * - "Microsoft Graph throttling guidance": 429 (and 503/504 under load) carry `Retry-After` in
 *   seconds; wait that long, then retry; without it, back off exponentially.
 * - "Microsoft identity platform and the OAuth 2.0 client credentials flow": the token endpoint
 *   answers `{"error","error_description","error_codes",...}` instead (e.g. 401 invalid_client,
 *   AADSTS7000215, for a wrong secret).
 */
import { Clock, Data, Duration, Effect, Option, Schema } from "effect"

// ---------------------------------------------------------------------------------------------
// What callers see
// ---------------------------------------------------------------------------------------------

/** The credentials or the app's permissions were refused: retrying soon will not help. */
export class GraphAuthFailed extends Data.TaggedError("GraphAuthFailed")<{
  readonly status: number
  readonly code: string
  readonly message: string
}> {}

/** Still throttled or unavailable (429/503/504) after the bounded number of retries. */
export class GraphThrottled extends Data.TaggedError("GraphThrottled")<{
  readonly status: number
  readonly code: string
  readonly message: string
}> {}

/** The resource does not exist (404): a message already removed, a folder that is not there. */
export class GraphNotFound extends Data.TaggedError("GraphNotFound")<{
  readonly code: string
  readonly message: string
}> {}

/** Any other status Graph answered with. */
export class GraphRequestFailed extends Data.TaggedError("GraphRequestFailed")<{
  readonly status: number
  readonly code: string
  readonly message: string
}> {}

/** No HTTP answer at all: DNS, refused connection, reset, TLS handshake. */
export class GraphUnreachable extends Data.TaggedError("GraphUnreachable")<{
  readonly message: string
  readonly tls: boolean
}> {}

/** No complete answer within the request timeout. */
export class GraphTimeout extends Data.TaggedError("GraphTimeout")<{
  readonly message: string
}> {}

/** A 2xx answer whose body is not what the documentation describes. */
export class GraphBadResponse extends Data.TaggedError("GraphBadResponse")<{
  readonly message: string
}> {}

export type GraphError =
  | GraphAuthFailed
  | GraphThrottled
  | GraphNotFound
  | GraphRequestFailed
  | GraphUnreachable
  | GraphTimeout
  | GraphBadResponse

/** The HTTP status behind an error, when there was one. */
export const statusOf = (error: GraphError): number | undefined => {
  switch (error._tag) {
    case "GraphAuthFailed":
    case "GraphThrottled":
    case "GraphRequestFailed":
      return error.status
    case "GraphNotFound":
      return 404
    default:
      return undefined
  }
}

/** "429 ApplicationThrottled: Application is over its MailboxConcurrency limit." */
export const describeError = (error: GraphError): string => {
  const status = statusOf(error)
  const prefix = [status === undefined ? undefined : String(status), "code" in error ? error.code : undefined]
    .filter((part): part is string => part !== undefined && part !== "")
    .join(" ")
  return prefix === "" ? error.message : `${prefix}: ${error.message}`
}

// ---------------------------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------------------------

/** "Microsoft Graph error responses and resource types": the error resource. */
export const GraphErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.String,
    message: Schema.String
  })
})

/** The token endpoint's error body (RFC 6749 §5.2, with Entra ID's additions). */
export const TokenErrorBody = Schema.Struct({
  error: Schema.String,
  error_description: Schema.optional(Schema.String)
})

const decodeGraphErrorBody = Schema.decodeUnknownOption(Schema.parseJson(GraphErrorBody))
const decodeTokenErrorBody = Schema.decodeUnknownOption(Schema.parseJson(TokenErrorBody))

/** Code and message of an error body; falls back to the status when the body is not JSON. */
export const readErrorBody = (status: number, text: string): { readonly code: string; readonly message: string } => {
  const graph = decodeGraphErrorBody(text)
  if (Option.isSome(graph)) return graph.value.error
  const token = decodeTokenErrorBody(text)
  if (Option.isSome(token)) {
    // Entra ID appends "Trace ID / Correlation ID / Timestamp" lines: the first line is the reason.
    const description = (token.value.error_description ?? "").split(/\r?\n/)[0] ?? ""
    return { code: token.value.error, message: description === "" ? token.value.error : description }
  }
  const snippet = text.trim().slice(0, 200)
  return { code: `HTTP ${status}`, message: snippet === "" ? `HTTP status ${status}` : snippet }
}

// ---------------------------------------------------------------------------------------------
// Retry policy
// ---------------------------------------------------------------------------------------------

/** A throttled or unavailable answer, internal to one attempt: the policy below decides. */
export class GraphRetryable extends Data.TaggedError("GraphRetryable")<{
  readonly status: number
  readonly code: string
  readonly message: string
  /** The raw `Retry-After` header, when there was one. */
  readonly retryAfter: string | undefined
}> {}

/** "Microsoft Graph throttling guidance": these statuses may be retried after a delay. */
export const isRetryableStatus = (status: number): boolean => status === 429 || status === 503 || status === 504

export interface RetryPolicy {
  /** Retries after the first attempt; the attempt after the last retry fails for good. */
  readonly maxRetries: number
  /** A `Retry-After` longer than this is not waited out in-line: the caller's backoff takes over. */
  readonly maxDelay: Duration.Duration
  /** First delay when the answer has no `Retry-After`; doubled on each further retry. */
  readonly baseDelay: Duration.Duration
}

export const defaultRetryPolicy: RetryPolicy = {
  maxRetries: 4,
  maxDelay: Duration.minutes(2),
  baseDelay: Duration.seconds(1)
}

/**
 * `Retry-After` (RFC 9110 §10.2.3) is delay-seconds or an HTTP-date; Graph sends seconds.
 * Undefined when absent or unreadable, so the exponential backoff applies.
 */
export const retryAfterDelay = (header: string | undefined): Effect.Effect<Duration.Duration | undefined> =>
  Effect.gen(function*() {
    if (header === undefined) return undefined
    const value = header.trim()
    if (/^\d+$/.test(value)) return Duration.seconds(Number(value))
    const date = Date.parse(value)
    if (Number.isNaN(date)) return undefined
    const now = yield* Clock.currentTimeMillis
    return Duration.millis(Math.max(0, date - now))
  })

/**
 * Runs `attempt`, and after a throttled answer sleeps for the `Retry-After` it gave (through
 * `Effect.sleep`, so the clock is the fiber's and tests drive it with `TestClock`) and tries
 * again, at most `policy.maxRetries` times.
 */
export const withRetries = <A, E, R>(
  attempt: Effect.Effect<A, E | GraphRetryable, R>,
  policy: RetryPolicy = defaultRetryPolicy
): Effect.Effect<A, E | GraphThrottled, R> => {
  const loop = (retry: number): Effect.Effect<A, E | GraphThrottled, R> =>
    Effect.catchIf(
      attempt,
      (error): error is GraphRetryable => error instanceof GraphRetryable,
      (throttled) =>
        Effect.gen(function*() {
          const giveUp = (why: string) =>
            new GraphThrottled({ status: throttled.status, code: throttled.code, message: `${throttled.message} (${why})` })
          if (retry >= policy.maxRetries) return yield* Effect.fail(giveUp(`still refused after ${retry + 1} attempts`))
          const asked = yield* retryAfterDelay(throttled.retryAfter)
          const delay = asked ?? Duration.times(policy.baseDelay, 2 ** retry)
          if (Duration.greaterThan(delay, policy.maxDelay)) {
            return yield* Effect.fail(giveUp(`Retry-After ${Duration.format(delay)} is longer than ${Duration.format(policy.maxDelay)}`))
          }
          yield* Effect.logDebug(`Graph answered ${throttled.status} ${throttled.code}; retrying in ${Duration.format(delay)}`)
          yield* Effect.sleep(delay)
          return yield* loop(retry + 1)
        })
    ) as Effect.Effect<A, E | GraphThrottled, R>
  return loop(0)
}
