/**
 * The Graph `QuarantineSink` (quarantine type "Graph"): the notice, with the original attached as
 * message/rfc822 (`composeNotice`), is sent from a mailbox with `sendMail` in its MIME form
 * ("user: sendMail", "Send Outlook messages in MIME format"): `POST /users/{sender}/sendMail`,
 * `Content-Type: text/plain`, the body the base64 of the whole MIME message. The recipients are
 * the notice's own To header (the quarantine address). 202 Accepted means accepted for delivery,
 * which is what the seam's "the destination has accepted it" asks for. A retry after a 504 may
 * send the notice twice; its Message-ID is the same each time, so the duplicate is recognisable.
 *
 * The sender: the target's `graph` block, field by field over the credentials and user of the
 * Graph mailbox being quarantined from (DESIGN.md: without `graph`, it sends with those).
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Layer, type Redacted } from "effect"
import type { GraphMailbox } from "../../domain/config.js"
import type { GraphQuarantineTarget } from "../../domain/plan.js"
import type { GraphCredentials } from "../../sources/graph/GraphAuth.js"
import * as GraphClient from "../../sources/graph/GraphClient.js"
import { describeError, type GraphError, statusOf } from "../../sources/graph/GraphError.js"
import { composeNotice } from "../notice.js"
import { type Forwarded, QuarantineSink, QuarantineSinkError } from "../QuarantineSink.js"

const DEFAULT_AUTHORITY_URL = "https://login.microsoftonline.com"
const DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"

export interface GraphSender extends GraphCredentials {
  /** The mailbox that sends (UPN or id); also the notice's From. */
  readonly user: string
}

/**
 * The effective sender, or why there is none. A `graph` block that leaves out a field takes it
 * from the mailbox being quarantined from, when that is a Graph mailbox.
 */
export const resolveSender = (
  target: GraphQuarantineTarget,
  fallback: GraphMailbox | undefined
): { readonly _tag: "Sender"; readonly sender: GraphSender } | { readonly _tag: "Missing"; readonly fields: ReadonlyArray<string> } => {
  const spec = target.graph ?? {}
  const tenant = spec.tenant ?? fallback?.tenant
  const clientId = spec.clientId ?? fallback?.clientId
  const clientSecret: Redacted.Redacted<string> | undefined = spec.clientSecret ?? fallback?.clientSecret
  const user = spec.user ?? fallback?.user
  const missing = [
    tenant === undefined ? "tenant" : undefined,
    clientId === undefined ? "clientId" : undefined,
    clientSecret === undefined ? "clientSecret" : undefined,
    user === undefined ? "user" : undefined
  ].filter((field): field is string => field !== undefined)
  if (tenant === undefined || clientId === undefined || clientSecret === undefined || user === undefined) {
    return { _tag: "Missing", fields: missing }
  }
  return {
    _tag: "Sender",
    sender: {
      tenant,
      clientId,
      clientSecret,
      user,
      authorityUrl: spec.authorityUrl ?? fallback?.authorityUrl ?? DEFAULT_AUTHORITY_URL,
      graphUrl: spec.graphUrl ?? fallback?.graphUrl ?? DEFAULT_GRAPH_URL
    }
  }
}

/**
 * Permanent: a 4xx that resending the same message cannot fix (400 bad MIME, 403 no Mail.Send,
 * 404 no such sender). Not permanent: 401 (a token problem), 408, 429 and every 5xx, a timeout,
 * an unreachable endpoint — the quarantine is retried with backoff.
 */
export const toSinkError = (error: GraphError): QuarantineSinkError => {
  const status = statusOf(error)
  const permanent = status !== undefined && status >= 400 && status < 500 && status !== 401 && status !== 408 && status !== 429
  return new QuarantineSinkError({ message: `Graph sendMail: ${describeError(error)}`, permanent })
}

/** The Graph quarantine for one mailbox's effective target. */
export const layer = (
  target: GraphQuarantineTarget,
  fallback: GraphMailbox | undefined
): Layer.Layer<QuarantineSink, never, HttpClient.HttpClient> =>
  Layer.effect(
    QuarantineSink,
    Effect.gen(function*() {
      const resolved = resolveSender(target, fallback)
      if (resolved._tag === "Missing") {
        // The plan should have refused this configuration; fail every forward rather than the
        // layer, so the mailbox records QuarantineFailed with a message that says what to fix.
        const error = new QuarantineSinkError({
          message: `Graph quarantine to ${target.mailbox} has no sending mailbox: set quarantine.graph.${resolved.fields.join(", ")}`,
          permanent: true
        })
        return QuarantineSink.of({ forward: () => Effect.fail(error) })
      }
      const { sender } = resolved
      const graph = yield* GraphClient.make(sender)
      const sendMail = `${graph.baseUrl}/users/${encodeURIComponent(sender.user)}/sendMail`

      return QuarantineSink.of({
        forward: (raw, notice) =>
          Effect.gen(function*() {
            const mime = yield* composeNotice(raw, notice, { from: sender.user, to: target.mailbox })
            const status = yield* graph.send(
              HttpClientRequest.post(sendMail).pipe(HttpClientRequest.bodyText(mime.toString("base64"), "text/plain"))
            ).pipe(Effect.mapError(toSinkError))
            return { destination: target.mailbox, response: status === 202 ? "202 Accepted" : `${status}` } satisfies Forwarded
          })
      })
    })
  )
