/**
 * App-only access tokens for Microsoft Graph ("Microsoft identity platform and the OAuth 2.0
 * client credentials flow"): `POST {authority}/{tenant}/oauth2/v2.0/token` with
 * `grant_type=client_credentials`, the client id and secret, and `scope={resource}/.default`.
 *
 * A token is cached and reused until shortly before `expires_in` runs out (the smaller of five
 * minutes and a tenth of its lifetime, so a clock skew or a slow request never sends an expired
 * one); a 401 from Graph invalidates it and the next request fetches a new one.
 *
 * The client secret is read with `Redacted.value` only to build the form body; it never reaches a
 * log line or an error, and the token itself is kept `Redacted`.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Clock, Duration, Effect, Option, Redacted, Ref, Schema } from "effect"
import { TLS_ERROR_CODES } from "../tlsErrors.js"
import {
  type GraphError,
  GraphAuthFailed,
  GraphBadResponse,
  GraphRequestFailed,
  GraphRetryable,
  GraphTimeout,
  GraphUnreachable,
  isRetryableStatus,
  readErrorBody,
  type RetryPolicy,
  withRetries
} from "./GraphError.js"

/** What it takes to get a token for a tenant and to reach its Graph endpoint. */
export interface GraphCredentials {
  readonly tenant: string
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  /** e.g. https://login.microsoftonline.com (another for national clouds and tests). */
  readonly authorityUrl: string
  /** e.g. https://graph.microsoft.com/v1.0; the token's scope is its origin + "/.default". */
  readonly graphUrl: string
}

export interface GraphAuth {
  /** A valid bearer token, from the cache or freshly requested. */
  readonly token: Effect.Effect<Redacted.Redacted<string>, GraphError>
  /** Forgets `token` if it is still the cached one (Graph refused it with 401). */
  readonly invalidate: (token: Redacted.Redacted<string>) => Effect.Effect<void>
}

/** The token endpoint's success body. `expires_in` is a number in v2.0 (a string in v1.0). */
const TokenResponse = Schema.Struct({
  token_type: Schema.String,
  expires_in: Schema.Union(Schema.Number, Schema.NumberFromString),
  access_token: Schema.String
})

const TOKEN_TIMEOUT = Duration.seconds(60)
const MAX_REFRESH_MARGIN_MS = 5 * 60 * 1000

/** "The .default scope": app permissions granted to the client on the resource at this origin. */
export const scopeFor = (graphUrl: string): string => `${new URL(graphUrl).origin}/.default`

export const tokenEndpoint = (credentials: GraphCredentials): string =>
  `${credentials.authorityUrl.replace(/\/+$/, "")}/${encodeURIComponent(credentials.tenant)}/oauth2/v2.0/token`

interface Cached {
  readonly token: Redacted.Redacted<string>
  /** When to stop using it (epoch ms): the expiry minus the safety margin. */
  readonly refreshAt: number
}

/** Token cache for one set of credentials; the HttpClient is the caller's. */
export const make = (
  credentials: GraphCredentials,
  options?: { readonly retry?: RetryPolicy }
): Effect.Effect<GraphAuth, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    const cache = yield* Ref.make(Option.none<Cached>())
    // One request at a time: concurrent callers that find no token wait for the one in flight.
    const lock = yield* Effect.makeSemaphore(1)
    const endpoint = tokenEndpoint(credentials)

    const attempt = Effect.gen(function*() {
      const request = HttpClientRequest.post(endpoint).pipe(
        HttpClientRequest.acceptJson,
        HttpClientRequest.bodyUrlParams({
          grant_type: "client_credentials",
          client_id: credentials.clientId,
          client_secret: Redacted.value(credentials.clientSecret),
          scope: scopeFor(credentials.graphUrl)
        })
      )
      const response = yield* http.execute(request).pipe(
        Effect.mapError((error) =>
          new GraphUnreachable({ message: `token endpoint ${endpoint}: ${describeTransport(error)}`, tls: isTlsFailure(error) })
        )
      )
      const text = yield* response.text.pipe(
        Effect.mapError((error) => new GraphUnreachable({ message: `token endpoint: ${error.message}`, tls: false }))
      )
      if (response.status === 200) {
        const body = yield* Schema.decodeUnknown(Schema.parseJson(TokenResponse))(text).pipe(
          Effect.mapError(() => new GraphBadResponse({ message: "token endpoint: the answer is not a token response" }))
        )
        if (body.token_type.toLowerCase() !== "bearer") {
          return yield* new GraphBadResponse({ message: `token endpoint: unexpected token_type ${body.token_type}` })
        }
        return body
      }
      const { code, message } = readErrorBody(response.status, text)
      if (isRetryableStatus(response.status) || response.status >= 500) {
        return yield* new GraphRetryable({ status: response.status, code, message, retryAfter: response.headers["retry-after"] })
      }
      // 400 invalid_request (unknown tenant), 400 unauthorized_client (unknown app),
      // 401 invalid_client (wrong secret): configuration, not weather.
      if (response.status === 400 || response.status === 401 || response.status === 403) {
        return yield* new GraphAuthFailed({ status: response.status, code, message: `token request refused: ${message}` })
      }
      return yield* new GraphRequestFailed({ status: response.status, code, message: `token endpoint: ${message}` })
    }).pipe(
      Effect.timeoutFail({
        duration: TOKEN_TIMEOUT,
        onTimeout: () => new GraphTimeout({ message: `token endpoint: no answer within ${Duration.format(TOKEN_TIMEOUT)}` })
      })
    )

    const fetchToken = Effect.gen(function*() {
      const body = yield* withRetries(attempt, options?.retry)
      const now = yield* Clock.currentTimeMillis
      const lifetimeMs = Math.max(0, body.expires_in * 1000)
      const margin = Math.min(MAX_REFRESH_MARGIN_MS, lifetimeMs / 10)
      const cached: Cached = { token: Redacted.make(body.access_token), refreshAt: now + lifetimeMs - margin }
      yield* Ref.set(cache, Option.some(cached))
      return cached.token
    })

    const token = lock.withPermits(1)(
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const cached = yield* Ref.get(cache)
        if (Option.isSome(cached) && now < cached.value.refreshAt) return cached.value.token
        return yield* fetchToken
      })
    )

    const invalidate = (stale: Redacted.Redacted<string>) =>
      // Only the token that failed: another fiber may already have fetched its successor.
      Ref.update(cache, (cached) => (Option.isSome(cached) && cached.value.token === stale ? Option.none() : cached))

    return { token, invalidate } satisfies GraphAuth
  })


const causeCode = (error: unknown): string | undefined => {
  let current: unknown = error
  // The platform wraps the socket error (RequestError.cause, sometimes one level deeper).
  for (let depth = 0; depth < 4 && typeof current === "object" && current !== null; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === "string") return code
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** Whether a transport failure is a certificate or TLS handshake problem. */
export const isTlsFailure = (error: unknown): boolean => {
  const code = causeCode(error)
  return code !== undefined && (TLS_ERROR_CODES.has(code) || code.startsWith("ERR_TLS") || code.startsWith("ERR_SSL"))
}

/** A transport failure in a few words: the socket error code, never the request body. */
export const describeTransport = (error: unknown): string => {
  const code = causeCode(error)
  const cause = (error as { cause?: { message?: unknown } }).cause
  const message = typeof cause?.message === "string" ? cause.message : "request failed"
  return code === undefined || message.includes(code) ? message : `${code} ${message}`
}
