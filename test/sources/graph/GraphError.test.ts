/** Reading Graph's and the token endpoint's error bodies, and `Retry-After`. */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import { readErrorBody, retryAfterDelay } from "../../../src/sources/graph/GraphError.js"

describe("readErrorBody", () => {
  it("reads Graph's error resource", () => {
    const body = JSON.stringify({
      error: { code: "ErrorItemNotFound", message: "The specified object was not found in the store.", innerError: { date: "2024-01-01T00:00:00" } }
    })
    expect(readErrorBody(404, body)).toEqual({ code: "ErrorItemNotFound", message: "The specified object was not found in the store." })
  })

  it("reads the token endpoint's error and keeps only the first line of its description", () => {
    const body = JSON.stringify({
      error: "invalid_client",
      error_description: "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2024-01-01 00:00:00Z",
      error_codes: [7000215]
    })
    expect(readErrorBody(401, body)).toEqual({ code: "invalid_client", message: "AADSTS7000215: Invalid client secret provided." })
  })

  it("falls back to the status for a body that is not JSON", () => {
    expect(readErrorBody(502, "<html>Bad Gateway</html>")).toEqual({ code: "HTTP 502", message: "<html>Bad Gateway</html>" })
    expect(readErrorBody(503, "")).toEqual({ code: "HTTP 503", message: "HTTP status 503" })
  })
})

describe("retryAfterDelay", () => {
  it.effect("reads delay-seconds", () =>
    Effect.gen(function*() {
      expect(yield* retryAfterDelay("7")).toEqual(Duration.seconds(7))
      expect(yield* retryAfterDelay(" 120 ")).toEqual(Duration.seconds(120))
    }))

  it.effect("reads an HTTP-date relative to the clock (RFC 9110 §10.2.3)", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.parse("2024-01-01T00:00:00Z"))
      expect(yield* retryAfterDelay("Mon, 01 Jan 2024 00:00:30 GMT")).toEqual(Duration.millis(30_000))
      expect(yield* retryAfterDelay("Sun, 31 Dec 2023 23:59:00 GMT")).toEqual(Duration.millis(0))
    }))

  it.effect("is undefined when absent or unreadable (exponential backoff applies)", () =>
    Effect.gen(function*() {
      expect(yield* retryAfterDelay(undefined)).toBeUndefined()
      expect(yield* retryAfterDelay("soon")).toBeUndefined()
    }))
})
