/**
 * The Graph MailSource against the local Graph server (test/support/graphServer.ts), over real
 * HTTP with @effect/platform-node's client.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Redacted, TestClock } from "effect"
import type { GraphMailbox } from "../../../src/domain/config.js"
import * as GraphSource from "../../../src/sources/graph/GraphSource.js"
import { type MailSession, MailSource } from "../../../src/sources/MailSource.js"
import { type GraphServer, startGraphServer } from "../../support/graphServer.js"
import { bareLfMessage, eightBitNoEncoding, latin1Message, multipartWithAttachment, plainMessage } from "../../support/messages.js"

const USER = "support@contoso.test"

/** A fresh server per test, stopped when the test's scope closes. */
const graphServer = Effect.acquireRelease(
  Effect.promise(() => startGraphServer()),
  (server) => Effect.promise(() => server.stop())
)

const mailboxOn = (server: GraphServer, overrides: Partial<GraphMailbox> = {}): GraphMailbox => ({
  id: "graph-support",
  tenant: server.tenant,
  clientId: server.clientId,
  clientSecret: Redacted.make(server.clientSecret),
  user: USER,
  folder: "inbox",
  afterProcessing: "delete",
  authorityUrl: server.authorityUrl,
  graphUrl: server.graphUrl,
  ...overrides
})

const sourceLayer = (mailbox: GraphMailbox) => GraphSource.layer(mailbox).pipe(Layer.provide(FetchHttpClient.layer))

/** Opens a session on `mailbox` and runs `use` in it; the layer (and its token cache) is built once. */
const inSession = <A, E>(mailbox: GraphMailbox, use: (session: MailSession) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(MailSource, (source) => Effect.flatMap(source.open, use))).pipe(
    Effect.provide(sourceLayer(mailbox))
  )

/** Lets real I/O (sockets) progress while the TestClock stands still. */
const realPause = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

const messageListings = (server: GraphServer) =>
  server.requests.filter((r) => r.method === "GET" && r.path.endsWith("/messages"))

describe("GraphSource", () => {
  it.scoped("lists every message across pages, oldest first, by immutable id", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const raws = Array.from({ length: 250 }, (_, i) => plainMessage(i))
      const ids = server.seed(USER, "inbox", raws)

      const listed = yield* inSession(mailboxOn(server), (session) => session.list)

      expect(listed.map((m) => m.ref)).toEqual(ids)
      // PidTagMessageSize, as the store reports it.
      expect(listed.map((m) => m.size)).toEqual(raws.map((raw) => raw.length))
      const pages = messageListings(server)
      expect(pages.map((r) => r.status)).toEqual([200, 200, 200])
      expect(decodeURIComponent(pages[0]!.query)).toContain("$top=100")
      expect(decodeURIComponent(pages[0]!.query)).toContain("$orderby=receivedDateTime asc")
      // Pages 2 and 3 are the server's @odata.nextLink, followed as given.
      expect(pages[1]!.query).toContain("%24skip=100")
      expect(pages[2]!.query).toContain("%24skip=200")
      expect(server.requests.filter((r) => r.target === "graph").every((r) => r.prefer === "IdType=\"ImmutableId\"")).toBe(true)
      expect(server.requests.filter((r) => r.target === "token")).toHaveLength(1)
    }))

  it.scoped("lists an empty folder as empty", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      const listed = yield* inSession(mailboxOn(server), (session) => session.list)
      expect(listed).toEqual([])
    }))

  it.scoped("fetches the raw MIME byte for byte and leaves out refs that are gone", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const raws = [plainMessage(1), multipartWithAttachment(2, 100_000), latin1Message(3), eightBitNoEncoding(4), bareLfMessage(5)]
      const ids = server.seed(USER, "inbox", raws)
      const gone = server.seed(USER, "inbox", [plainMessage(6)])[0]!

      const fetched = yield* inSession(mailboxOn(server), (session) =>
        Effect.gen(function*() {
          yield* session.remove([gone])
          return yield* session.fetch([...ids, gone])
        }))

      expect(fetched.map((f) => f.ref)).toEqual(ids)
      fetched.forEach((f, i) => expect(Buffer.from(f.raw).equals(raws[i]!)).toBe(true))
    }))

  it.scoped("removes by DELETE; removing again is a success", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", [plainMessage(1), plainMessage(2), plainMessage(3)])

      yield* inSession(mailboxOn(server), (session) =>
        Effect.gen(function*() {
          yield* session.remove([ids[0]!, ids[2]!])
          // A retry after a crash between the delete and its event: 404, already gone.
          yield* session.remove([ids[0]!])
        }))

      expect(server.messages(USER, "inbox").map((m) => m.id)).toEqual([ids[1]])
      const deletes = server.requests.filter((r) => r.method === "DELETE")
      expect(deletes.map((r) => r.status)).toEqual([204, 204, 404])
    }))

  it.scoped("removes by moving to a folder named by display name; the ids survive the move", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", [plainMessage(1), plainMessage(2)])
      server.folderId(USER, "Processed/2024")

      yield* inSession(mailboxOn(server, { afterProcessing: { moveTo: "Processed/2024" } }), (session) => session.remove(ids))

      expect(server.messages(USER, "inbox")).toEqual([])
      expect(server.messages(USER, "Processed/2024").map((m) => m.id)).toEqual(ids)
      const moves = server.requests.filter((r) => r.method === "POST" && r.path.endsWith("/move"))
      expect(moves.map((r) => r.status)).toEqual([201, 201])
    }))

  it.scoped("moves to a well-known folder", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", [plainMessage(1)])
      yield* inSession(mailboxOn(server, { afterProcessing: { moveTo: "archive" } }), (session) => session.remove(ids))
      expect(server.messages(USER, "archive").map((m) => m.id)).toEqual(ids)
    }))

  it.scoped("reads a folder given by display name", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "Support Queue", [plainMessage(1)])
      server.seed(USER, "inbox", [plainMessage(2)])
      const listed = yield* inSession(mailboxOn(server, { folder: "Support Queue" }), (session) => session.list)
      expect(listed.map((m) => m.ref)).toEqual(ids)
    }))

  it.scoped("fails to open, as a protocol error, when the folder does not exist", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      const error = yield* inSession(mailboxOn(server, { folder: "Nowhere" }), () => Effect.void).pipe(Effect.flip)
      expect(error.kind).toBe("protocol")
      expect(error.message).toContain("Nowhere")
    }))

  it.scoped("waits exactly the Retry-After of a 429 (TestClock), then retries", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", [plainMessage(1)])

      const listed = yield* inSession(mailboxOn(server), (session) =>
        Effect.gen(function*() {
          server.failNext(1, 429, 7)
          const fiber = yield* Effect.fork(session.list)
          // The 429 travels over a real socket: wait (in real time) until the client sleeps on it.
          let sleeps: ReadonlyArray<number> = []
          for (let i = 0; i < 500 && !sleeps.includes(7_000); i++) {
            yield* realPause(10)
            sleeps = Chunk.toReadonlyArray(yield* TestClock.sleeps())
          }
          expect(sleeps).toContain(7_000)

          yield* TestClock.adjust("6999 millis")
          yield* realPause(100)
          expect(messageListings(server).map((r) => r.status)).toEqual([429])

          yield* TestClock.adjust("1 millis")
          return yield* Fiber.join(fiber)
        }))

      expect(listed.map((m) => m.ref)).toEqual(ids)
      expect(messageListings(server).map((r) => r.status)).toEqual([429, 200])
    }))

  it.live("waits out a 503 in real time too (Retry-After: 1)", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", [plainMessage(1)])
      const fetched = yield* inSession(mailboxOn(server), (session) =>
        Effect.gen(function*() {
          server.failNext(1, 503, 1)
          return yield* session.fetch(ids)
        }))
      expect(fetched.map((f) => f.ref)).toEqual(ids)
      const values = server.requests.filter((r) => r.path.endsWith("/$value"))
      expect(values.map((r) => r.status)).toEqual([503, 200])
      expect(values[1]!.time - values[0]!.time).toBeGreaterThanOrEqual(1_000)
    })))

  it.live("gives up after a bounded number of throttled answers", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [plainMessage(1)])
      const error = yield* inSession(mailboxOn(server), (session) =>
        Effect.gen(function*() {
          server.failNext(100, 429, 0)
          return yield* session.list
        })).pipe(Effect.flip)
      expect(error.kind).toBe("connect")
      expect(error.message).toContain("429")
      // The first attempt and four retries.
      expect(messageListings(server)).toHaveLength(5)
    })))

  it.scoped("an expired token: one 401, one token refresh, then success", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", [plainMessage(1)])

      const [first, second] = yield* Effect.gen(function*() {
        const source = yield* MailSource
        const first = yield* Effect.scoped(Effect.flatMap(source.open, (session) => session.list))
        server.expireTokens()
        // A new session reuses the cached token: Graph refuses it once.
        const second = yield* Effect.scoped(Effect.flatMap(source.open, (session) => session.list))
        return [first, second] as const
      }).pipe(Effect.provide(sourceLayer(mailboxOn(server))))

      expect(first.map((m) => m.ref)).toEqual(ids)
      expect(second.map((m) => m.ref)).toEqual(ids)
      expect(server.requests.filter((r) => r.target === "token").map((r) => r.status)).toEqual([200, 200])
      expect(server.requests.filter((r) => r.status === 401)).toHaveLength(1)
    }))

  it.scoped("reuses a token until shortly before it expires (TestClock)", () =>
    Effect.gen(function*() {
      const server = yield* Effect.acquireRelease(
        Effect.promise(() => startGraphServer({ tokenLifetimeSeconds: 600 })),
        (server) => Effect.promise(() => server.stop())
      )
      server.seed(USER, "inbox", [plainMessage(1)])
      const tokenRequests = () => server.requests.filter((r) => r.target === "token").length

      yield* Effect.gen(function*() {
        const source = yield* MailSource
        const session = yield* source.open
        yield* session.list
        expect(tokenRequests()).toBe(1)
        // Refreshed a tenth of its lifetime (60 s of 600 s) before it expires, not later.
        yield* TestClock.adjust("539 seconds")
        yield* session.list
        expect(tokenRequests()).toBe(1)
        yield* TestClock.adjust("2 seconds")
        yield* session.list
        expect(tokenRequests()).toBe(2)
      }).pipe(Effect.provide(sourceLayer(mailboxOn(server))))

      expect(server.requests.filter((r) => r.status === 401)).toHaveLength(0)
    }))

  it.scoped("a wrong client secret is an auth error that does not reveal the secret", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      const wrong = "wrong-secret-value-1234"
      const error = yield* inSession(mailboxOn(server, { clientSecret: Redacted.make(wrong) }), () => Effect.void).pipe(Effect.flip)
      expect(error.kind).toBe("auth")
      expect(error.message).toContain("AADSTS7000215")
      expect(error.message).not.toContain(wrong)
      expect(server.requests.filter((r) => r.target === "graph")).toHaveLength(0)
    }))

  it.scoped("403 (the app may not read this mailbox) is an auth error", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      server.denyAccess(USER)
      const error = yield* inSession(mailboxOn(server), () => Effect.void).pipe(Effect.flip)
      expect(error.kind).toBe("auth")
      expect(error.message).toContain("ErrorAccessDenied")
    }))

  it.scoped("keeps at most four requests in flight per mailbox", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const ids = server.seed(USER, "inbox", Array.from({ length: 20 }, (_, i) => plainMessage(i)))
      server.setLatency(30)
      const fetched = yield* inSession(mailboxOn(server), (session) =>
        Effect.all([session.fetch(ids.slice(0, 10)), session.fetch(ids.slice(10))], { concurrency: "unbounded" }))
      expect(fetched.flat().map((f) => f.ref)).toEqual(ids)
      expect(server.maxInFlight).toBe(4)
    }))

  it.scoped("names the server without credentials", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      const name = yield* inSession(mailboxOn(server), (session) => Effect.succeed(session.server))
      expect(name).toBe(`${server.graphUrl}/users/${USER}/mailFolders/inbox`)
      expect(name).not.toContain(server.clientSecret)
    }))
})
