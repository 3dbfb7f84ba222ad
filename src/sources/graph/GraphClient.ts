/**
 * Requests to Microsoft Graph for one mailbox, on @effect/platform's HttpClient (no SDK):
 *
 * - a bearer token from `GraphAuth`; on a 401 the token is dropped and the request is sent once
 *   more with a fresh one; a second 401, or a 403, is `GraphAuthFailed` (the mailbox actor stops
 *   or backs off on it instead of hammering the tenant);
 * - `Prefer: IdType="ImmutableId"` on every request ("Obtain immutable identifiers for Outlook
 *   resources": the header applies only to the request that carries it), so a message's id stays
 *   the same when it is moved and is safe to keep in the event log;
 * - 429, 503 and 504 waited out for `Retry-After` seconds and retried a bounded number of times
 *   ("Microsoft Graph throttling guidance");
 * - at most four requests in flight per mailbox: Exchange Online counts concurrent requests per
 *   app and mailbox and throttles beyond four ("Microsoft Graph service-specific throttling
 *   limits", Outlook service);
 * - error bodies decoded with Schema into the tagged errors of `GraphError.ts`.
 */
// Modules, not the package index: the index also loads the bundled Swagger and Scalar UIs
// (some 20 MB of strings in a daemon's heap).
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Duration, Effect, type Redacted, Schema } from "effect"
import * as GraphAuth from "./GraphAuth.js"
import {
  defaultRetryPolicy,
  type GraphError,
  GraphAuthFailed,
  GraphBadResponse,
  GraphNotFound,
  GraphRequestFailed,
  GraphRetryable,
  GraphTimeout,
  GraphUnreachable,
  isRetryableStatus,
  readErrorBody,
  type RetryPolicy,
  withRetries
} from "./GraphError.js"

export interface GraphClientOptions {
  /** Requests in flight at once (default 4, Exchange Online's per-mailbox limit). */
  readonly maxConcurrent?: number
  readonly retry?: RetryPolicy
  /** For a whole request, body included (default 5 minutes: a 50 MB `$value` on a slow link). */
  readonly requestTimeout?: Duration.DurationInput
}

export interface GraphClient {
  /** `graphUrl` without a trailing slash, e.g. https://graph.microsoft.com/v1.0. */
  readonly baseUrl: string
  /**
   * Sends `request` (an absolute URL) with the token and the headers above; `read` runs on a 2xx
   * answer while the concurrency permit is still held, so the body is read before another
   * request starts.
   */
  readonly execute: <A>(
    request: HttpClientRequest.HttpClientRequest,
    read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, GraphError>
  ) => Effect.Effect<A, GraphError>
  /** A 2xx JSON answer decoded with `schema`. */
  readonly json: <A, I>(request: HttpClientRequest.HttpClientRequest, schema: Schema.Schema<A, I>) => Effect.Effect<A, GraphError>
  /** A 2xx answer's body as bytes, untouched (raw MIME from `$value`). */
  readonly bytes: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<Uint8Array, GraphError>
  /** A 2xx answer whose body does not matter (204 delete, 201 move, 202 sendMail); its status. */
  readonly send: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<number, GraphError>
}

/** A 401 from Graph, internal to one attempt: the caller refreshes the token once. */
class Unauthorized {
  readonly _tag = "Unauthorized"
  constructor(readonly code: string, readonly message: string) {}
}

const IMMUTABLE_ID = "IdType=\"ImmutableId\""

/** Reads a failed answer's body into the error its status calls for. */
const failure = (
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<never, GraphError | GraphRetryable | Unauthorized> =>
  Effect.gen(function*() {
    const text = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
    const { code, message } = readErrorBody(response.status, text)
    const status = response.status
    if (status === 401) return yield* Effect.fail(new Unauthorized(code, message))
    if (status === 403) return yield* new GraphAuthFailed({ status, code, message })
    if (status === 404) return yield* new GraphNotFound({ code, message })
    if (isRetryableStatus(status)) {
      return yield* new GraphRetryable({ status, code, message, retryAfter: response.headers["retry-after"] })
    }
    return yield* new GraphRequestFailed({ status, code, message })
  })

const transportError = (request: HttpClientRequest.HttpClientRequest) => (error: HttpClientError.HttpClientError) =>
  new GraphUnreachable({
    message: `${request.method} ${pathOf(request.url)}: ${GraphAuth.describeTransport(error)}`,
    tls: GraphAuth.isTlsFailure(error)
  })

/** The path of a URL, for messages: never the query (it may be long) nor credentials. */
const pathOf = (url: string): string => {
  try {
    return new URL(url).pathname
  } catch {
    return url
  }
}

export const make = (
  credentials: GraphAuth.GraphCredentials,
  options?: GraphClientOptions
): Effect.Effect<GraphClient, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    const auth = yield* GraphAuth.make(credentials, { retry: options?.retry ?? defaultRetryPolicy })
    const permits = yield* Effect.makeSemaphore(options?.maxConcurrent ?? 4)
    const timeout = Duration.decode(options?.requestTimeout ?? Duration.minutes(5))
    const baseUrl = credentials.graphUrl.replace(/\/+$/, "")

    const once = <A>(
      request: HttpClientRequest.HttpClientRequest,
      token: Redacted.Redacted<string>,
      read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, GraphError>
    ): Effect.Effect<A, GraphError | GraphRetryable | Unauthorized> =>
      permits.withPermits(1)(
        http.execute(
          request.pipe(
            HttpClientRequest.bearerToken(token),
            HttpClientRequest.setHeader("Prefer", IMMUTABLE_ID)
          )
        ).pipe(
          Effect.mapError(transportError(request)),
          Effect.flatMap((response) =>
            response.status >= 200 && response.status < 300 ? read(response) : failure(response)
          ),
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () =>
              new GraphTimeout({ message: `${request.method} ${pathOf(request.url)}: no answer within ${Duration.format(timeout)}` })
          })
        )
      )

    /** One attempt with the cached token, and after a 401 exactly one more with a fresh one. */
    const authorized = <A>(
      request: HttpClientRequest.HttpClientRequest,
      read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, GraphError>
    ): Effect.Effect<A, GraphError | GraphRetryable> =>
      Effect.gen(function*() {
        const token = yield* auth.token
        return yield* once(request, token, read).pipe(
          Effect.catchIf(
            (error): error is Unauthorized => error instanceof Unauthorized,
            () =>
              Effect.gen(function*() {
                yield* auth.invalidate(token)
                const fresh = yield* auth.token
                return yield* once(request, fresh, read)
              })
          ),
          Effect.catchIf(
            (error): error is Unauthorized => error instanceof Unauthorized,
            (error) => Effect.fail(new GraphAuthFailed({ status: 401, code: error.code, message: error.message }))
          )
        )
      })

    const execute = <A>(
      request: HttpClientRequest.HttpClientRequest,
      read: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<A, GraphError>
    ): Effect.Effect<A, GraphError> => withRetries(authorized(request, read), options?.retry ?? defaultRetryPolicy)

    const bodyError = (request: HttpClientRequest.HttpClientRequest) => (error: HttpClientError.ResponseError) =>
      new GraphUnreachable({ message: `${request.method} ${pathOf(request.url)}: reading the answer: ${error.message}`, tls: false })

    const json = <A, I>(request: HttpClientRequest.HttpClientRequest, schema: Schema.Schema<A, I>) =>
      execute(HttpClientRequest.acceptJson(request), (response) =>
        response.json.pipe(
          Effect.mapError(bodyError(request)),
          Effect.flatMap((body) =>
            Schema.decodeUnknown(schema)(body).pipe(
              Effect.mapError((error) =>
                new GraphBadResponse({ message: `${request.method} ${pathOf(request.url)}: unexpected answer: ${error.message}` })
              )
            )
          )
        ))

    const bytes = (request: HttpClientRequest.HttpClientRequest) =>
      execute(request, (response) =>
        response.arrayBuffer.pipe(
          Effect.map((buffer) => new Uint8Array(buffer)),
          Effect.mapError(bodyError(request))
        ))

    const send = (request: HttpClientRequest.HttpClientRequest) =>
      execute(request, (response) =>
        // Drain the body so the connection goes back to the pool.
        response.arrayBuffer.pipe(Effect.ignore, Effect.as(response.status)))

    return { baseUrl, execute, json, bytes, send } satisfies GraphClient
  })
