/**
 * The Graph QuarantineSink against the local Graph server: sendMail in MIME form, and what the
 * quarantine mailbox receives.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { simpleParser } from "mailparser"
import type { GraphMailbox } from "../../../src/domain/config.js"
import type { GraphQuarantineTarget } from "../../../src/domain/plan.js"
import * as GraphQuarantine from "../../../src/quarantine/graph/GraphQuarantine.js"
import { type QuarantineNotice, QuarantineSink } from "../../../src/quarantine/QuarantineSink.js"
import { type GraphServer, startGraphServer } from "../../support/graphServer.js"
import { bareLfMessage, multipartWithAttachment, plainMessage } from "../../support/messages.js"

const USER = "support@contoso.test"
const QUARANTINE = "quarantine@contoso.test"

const graphServer = Effect.acquireRelease(
  Effect.promise(() => startGraphServer()),
  (server) => Effect.promise(() => server.stop())
)

const mailboxOn = (server: GraphServer): GraphMailbox => ({
  id: "graph-support",
  tenant: server.tenant,
  clientId: server.clientId,
  clientSecret: Redacted.make(server.clientSecret),
  user: USER,
  folder: "inbox",
  afterProcessing: "delete",
  authorityUrl: server.authorityUrl,
  graphUrl: server.graphUrl
})

const noticeFor = (ref: string): QuarantineNotice => ({
  mailbox: "graph-support",
  reason: "quarantine-test",
  detail: "subject contains [pcemail quarantine test message]",
  ref,
  sha256: "",
  retrievedAt: new Date("2024-05-01T10:00:00Z")
})

const forward = (
  target: GraphQuarantineTarget,
  fallback: GraphMailbox | undefined,
  raw: Uint8Array,
  notice: QuarantineNotice = noticeFor("ref-1")
) =>
  Effect.flatMap(QuarantineSink, (sink) => sink.forward(raw, notice)).pipe(
    Effect.provide(GraphQuarantine.layer(target, fallback).pipe(Layer.provide(FetchHttpClient.layer)))
  )

/** The message/rfc822 attachment of a notice, as mailparser hands it out. */
const attachedOriginal = async (mime: Buffer) => {
  const parsed = await simpleParser(mime)
  const attachments = parsed.attachments.filter((a) => a.contentType === "message/rfc822")
  expect(attachments).toHaveLength(1)
  return { parsed, original: attachments[0]!.content }
}

describe("GraphQuarantine", () => {
  it.scoped("sends the notice with sendMail (MIME, base64); the attachment is the original byte for byte", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      const target: GraphQuarantineTarget = { type: "Graph", mailbox: QUARANTINE, graph: undefined }
      const originals = [plainMessage(1), multipartWithAttachment(2, 50_000), bareLfMessage(3)]

      for (const [i, raw] of originals.entries()) {
        const forwarded = yield* forward(target, mailboxOn(server), raw, noticeFor(`ref-${i}`))
        expect(forwarded).toEqual({ destination: QUARANTINE, response: "202 Accepted" })
      }

      const sendMails = server.requests.filter((r) => r.path.endsWith("/sendMail"))
      expect(sendMails.map((r) => [r.path, r.status, r.contentType])).toEqual(
        originals.map(() => [`/v1.0/users/${USER}/sendMail`, 202, "text/plain"])
      )
      expect(server.sent).toHaveLength(originals.length)
      for (const [i, sent] of server.sent.entries()) {
        expect(sent.user).toBe(USER)
        const { parsed, original } = yield* Effect.promise(() => attachedOriginal(sent.mime))
        expect(Buffer.compare(original, originals[i]!)).toBe(0)
        expect(parsed.to).toMatchObject({ value: [{ address: QUARANTINE }] })
        expect(parsed.from).toMatchObject({ value: [{ address: USER }] })
      }
      // "user: sendMail": the message is saved in Sent Items.
      expect(server.messages(USER, "sentitems")).toHaveLength(originals.length)
    }))

  it.scoped("sends from the target's own mailbox, taking missing credentials from the quarantined mailbox", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const sender = "mailintake@contoso.test"
      server.seed(sender, "inbox", [])
      const target: GraphQuarantineTarget = { type: "Graph", mailbox: QUARANTINE, graph: { user: sender } }
      yield* forward(target, mailboxOn(server), plainMessage(1))
      expect(server.sent.map((s) => s.user)).toEqual([sender])
    }))

  it.scoped("sends with its own credentials when the quarantined mailbox is not a Graph mailbox", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      const sender = "mailintake@contoso.test"
      server.seed(sender, "inbox", [])
      const target: GraphQuarantineTarget = {
        type: "Graph",
        mailbox: QUARANTINE,
        graph: {
          tenant: server.tenant,
          clientId: server.clientId,
          clientSecret: Redacted.make(server.clientSecret),
          user: sender,
          authorityUrl: server.authorityUrl,
          graphUrl: server.graphUrl
        }
      }
      const raw = plainMessage(7)
      yield* forward(target, undefined, raw)
      const { original } = yield* Effect.promise(() => attachedOriginal(server.sent[0]!.mime))
      expect(Buffer.compare(original, raw)).toBe(0)
    }))

  it.effect("without any sending mailbox every forward fails for good, naming what to set", () =>
    Effect.gen(function*() {
      const target: GraphQuarantineTarget = { type: "Graph", mailbox: QUARANTINE, graph: { user: "x@contoso.test" } }
      const error = yield* forward(target, undefined, plainMessage(1)).pipe(Effect.flip)
      expect(error.permanent).toBe(true)
      expect(error.message).toContain("tenant")
      expect(error.message).toContain("clientSecret")
    }))

  it.scoped("a 4xx refusal is permanent (403: no Mail.Send for this mailbox)", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      server.denyAccess(USER)
      const error = yield* forward({ type: "Graph", mailbox: QUARANTINE, graph: undefined }, mailboxOn(server), plainMessage(1)).pipe(
        Effect.flip
      )
      expect(error.permanent).toBe(true)
      expect(error.message).toContain("403")
      expect(server.sent).toHaveLength(0)
    }))

  it.scoped("a 400 from sendMail is permanent", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      server.failNext(1, 400, undefined, { code: "ErrorMimeContentInvalidBase64String", message: "Invalid base64 string for MIME content." })
      const error = yield* forward({ type: "Graph", mailbox: QUARANTINE, graph: undefined }, mailboxOn(server), plainMessage(1)).pipe(
        Effect.flip
      )
      expect(error.permanent).toBe(true)
      expect(error.message).toContain("ErrorMimeContentInvalidBase64String")
    }))

  it.live("a throttled sendMail is retried; if it stays throttled, the failure is not permanent", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      server.failNext(1, 429, 0)
      yield* forward({ type: "Graph", mailbox: QUARANTINE, graph: undefined }, mailboxOn(server), plainMessage(1))
      expect(server.sent).toHaveLength(1)

      server.failNext(100, 503, 0)
      const error = yield* forward({ type: "Graph", mailbox: QUARANTINE, graph: undefined }, mailboxOn(server), plainMessage(2)).pipe(
        Effect.flip
      )
      expect(error.permanent).toBe(false)
      expect(server.sent).toHaveLength(1)
    })))

  it.scoped("a wrong client secret is not permanent and does not reveal the secret", () =>
    Effect.gen(function*() {
      const server = yield* graphServer
      server.seed(USER, "inbox", [])
      const wrong = "wrong-secret-value-5678"
      const fallback = { ...mailboxOn(server), clientSecret: Redacted.make(wrong) }
      const error = yield* forward({ type: "Graph", mailbox: QUARANTINE, graph: undefined }, fallback, plainMessage(1)).pipe(Effect.flip)
      expect(error.permanent).toBe(false)
      expect(error.message).toContain("AADSTS7000215")
      expect(error.message).not.toContain(wrong)
    }))
})
