/**
 * The Microsoft Graph `MailSource` (integrationType "Graph"), on @effect/platform's HttpClient.
 *
 * Listing: a paged list of the folder's messages, not a delta query.
 * - The seam asks, on every poll, for every message waiting in the folder, oldest first.
 *   mailintake empties the folder as it goes, so the folder is a short queue and a full listing
 *   is one page or a few ("List messages": `$top` up to 1000; we ask for 100 so that a page never
 *   risks the gateway timeout the same page warns about).
 * - A delta query ("message: delta", "Get incremental changes to messages in a folder") answers
 *   with changes since a state token. Its first round returns the whole folder anyway; the
 *   deltaLink would have to be kept across polls and restarts outside the event log, and a lost
 *   or expired one means a full listing again; our own deletes and moves come back as `@removed`
 *   entries; and it orders only by `receivedDateTime desc` ("without `$orderby` the return order
 *   is not guaranteed"), so oldest-first would need the whole round buffered regardless. It saves
 *   nothing for a folder that is kept empty, and adds state that can go stale.
 * - So: `GET /users/{user}/mailFolders/{folder}/messages?$select=id,internetMessageId,
 *   receivedDateTime&$top=100&$orderby=receivedDateTime asc`, following `@odata.nextLink` as an
 *   opaque URL ("List messages": "Do not try to extract the `$skip` value from the
 *   `@odata.nextLink` URL"). `$orderby` without `$filter` has none of the restrictions that
 *   "Using filter and orderby in the same query" lists.
 *
 * Size: the message resource has none; PidTagMessageSize ([MS-OXPROPS], property 0x0E08) is
 * asked for as a single-value extended property ("Get singleValueLegacyExtendedProperty":
 * `$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')`). It is the store's
 * size of the item, close to but not exactly the MIME size; absent or unreadable → undefined.
 *
 * Refs are immutable ids (see `GraphClient.ts`), so a message keeps its ref when it is moved.
 * fetch: `GET /users/{user}/messages/{id}/$value` ("Get MIME content of a message").
 * remove: `DELETE /users/{user}/messages/{id}` (204, "Delete message") or
 * `POST /users/{user}/messages/{id}/move` with `{"destinationId"}` (201, "message: move"); a 404
 * means it is already gone, which is what remove wanted.
 *
 * Folders (`folder`, `moveTo`) may be a folder id, a well-known folder name ("mailFolder resource
 * type": inbox, archive, deleteditems, ...) or a display name, "Parent/Child" for a nested one;
 * they are resolved to ids when the session opens, so a wrong name fails at once, before any
 * message has been fetched.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Effect, Layer, Option, Schema } from "effect"
import type { GraphMailbox } from "../../domain/config.js"
import { type Fetched, type Listed, type MailSession, MailSource, MailSourceError } from "../MailSource.js"
import type { GraphCredentials } from "./GraphAuth.js"
import * as GraphClient from "./GraphClient.js"
import { describeError, type GraphError, GraphNotFound, statusOf } from "./GraphError.js"

/** PidTagMessageSize as a Graph extended property id ("Outlook extended properties overview"). */
const MESSAGE_SIZE_PROPERTY = "Integer 0x0E08"

export const PAGE_SIZE = 100

const ExtendedProperty = Schema.Struct({ id: Schema.String, value: Schema.NullOr(Schema.String) })

const MessagePage = Schema.Struct({
  value: Schema.Array(Schema.Struct({
    id: Schema.String,
    internetMessageId: Schema.optional(Schema.NullOr(Schema.String)),
    receivedDateTime: Schema.optional(Schema.NullOr(Schema.String)),
    singleValueExtendedProperties: Schema.optional(Schema.NullOr(Schema.Array(ExtendedProperty)))
  })),
  "@odata.nextLink": Schema.optional(Schema.String)
})
type MessagePage = typeof MessagePage.Type

const MailFolder = Schema.Struct({ id: Schema.String, displayName: Schema.optional(Schema.String) })
const MailFolders = Schema.Struct({ value: Schema.Array(MailFolder) })

/** A query string; `$` stays literal in names (OData system query options), values are escaped. */
export const query = (params: ReadonlyArray<readonly [string, string]>): string =>
  "?" + params.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join("&")

/** OData string literal: single quotes doubled (OData ABNF, SQUOTE-in-string). */
const odataString = (value: string): string => `'${value.replaceAll("'", "''")}'`

export const credentialsOf = (mailbox: GraphMailbox): GraphCredentials => ({
  tenant: mailbox.tenant,
  clientId: mailbox.clientId,
  clientSecret: mailbox.clientSecret,
  authorityUrl: mailbox.authorityUrl,
  graphUrl: mailbox.graphUrl
})

/** Maps a Graph failure to a kind the mailbox actor acts on (auth: stop or back off long). */
export const toSourceError = (during: string) => (error: GraphError): MailSourceError => {
  const message = `${during}: ${describeError(error)}`
  switch (error._tag) {
    case "GraphAuthFailed":
      // 401 after a token refresh, 403, or the token refused: a permission or credential
      // problem that retrying cannot fix.
      return new MailSourceError({ kind: "auth", message, stopMailbox: true })
    case "GraphUnreachable":
      return new MailSourceError({ kind: error.tls ? "tls" : "connect", message })
    case "GraphTimeout":
      return new MailSourceError({ kind: "timeout", message })
    case "GraphThrottled":
      return new MailSourceError({ kind: error.status === 504 ? "timeout" : "connect", message })
    case "GraphNotFound":
    case "GraphRequestFailed":
    case "GraphBadResponse":
      return new MailSourceError({ kind: "protocol", message })
  }
}

const sizeOf = (message: MessagePage["value"][number]): number | undefined => {
  const property = message.singleValueExtendedProperties?.find((p) => p.id.toLowerCase().endsWith(" 0xe08"))
  if (property === undefined || property.value === null) return undefined
  const size = Number(property.value)
  return Number.isSafeInteger(size) && size >= 0 ? size : undefined
}

const openSession = (mailbox: GraphMailbox, graph: GraphClient.GraphClient) =>
  Effect.gen(function*() {
    const user = `${graph.baseUrl}/users/${encodeURIComponent(mailbox.user)}`

    /** A folder by id or well-known name, else by display name, one path segment at a time. */
    const resolveFolder = (path: string) =>
      Effect.gen(function*() {
        const segments = path.split("/").filter((segment) => segment !== "")
        if (segments.length === 0) {
          return yield* new MailSourceError({ kind: "protocol", message: `folder "${path}" is empty` })
        }
        const [first, ...rest] = segments as [string, ...Array<string>]
        const direct = yield* graph.json(
          HttpClientRequest.get(`${user}/mailFolders/${encodeURIComponent(first)}${query([["$select", "id,displayName"]])}`),
          MailFolder
        ).pipe(
          Effect.map(Option.some),
          // Not an id nor a well-known name: Graph answers 404, or 400 ErrorInvalidIdMalformed.
          Effect.catchIf((error) => error instanceof GraphNotFound || statusOf(error) === 400, () => Effect.succeedNone)
        )
        let id = Option.isSome(direct) ? direct.value.id : yield* byDisplayName(`${user}/mailFolders`, first, path)
        for (const segment of rest) id = yield* byDisplayName(`${user}/mailFolders/${encodeURIComponent(id)}/childFolders`, segment, path)
        return id
      }).pipe(Effect.mapError((error) => error instanceof MailSourceError ? error : toSourceError(`folder "${path}"`)(error)))

    const byDisplayName = (collection: string, name: string, path: string) =>
      graph.json(
        HttpClientRequest.get(`${collection}${query([["$filter", `displayName eq ${odataString(name)}`], ["$select", "id,displayName"]])}`),
        MailFolders
      ).pipe(
        Effect.flatMap((folders) =>
          folders.value.length === 1
            ? Effect.succeed(folders.value[0]!.id)
            : Effect.fail(new MailSourceError({
              kind: "protocol",
              message: folders.value.length === 0
                ? `folder "${path}" not found in the mailbox of ${mailbox.user} ("${name}" does not exist)`
                : `folder "${path}" is ambiguous in the mailbox of ${mailbox.user} (${folders.value.length} folders are named "${name}")`
            }))
        )
      )

    // Resolving also proves that the credentials, the permissions and the user are right.
    const folderId = yield* resolveFolder(mailbox.folder)
    const destinationId = mailbox.afterProcessing === "delete" ? undefined : yield* resolveFolder(mailbox.afterProcessing.moveTo)

    const firstPage = `${user}/mailFolders/${encodeURIComponent(folderId)}/messages${
      query([
        ["$select", "id,internetMessageId,receivedDateTime"],
        ["$top", String(PAGE_SIZE)],
        ["$orderby", "receivedDateTime asc"],
        ["$expand", `singleValueExtendedProperties($filter=id eq ${odataString(MESSAGE_SIZE_PROPERTY)})`]
      ])
    }`

    const list = Effect.gen(function*() {
      const listed: Array<Listed> = []
      // $skip paging can show a message twice when others arrive meanwhile: keep the first.
      const seen = new Set<string>()
      const visited = new Set<string>()
      let next: string | undefined = firstPage
      while (next !== undefined) {
        if (visited.has(next)) {
          return yield* new MailSourceError({ kind: "protocol", message: "list: @odata.nextLink points back to a page already read" })
        }
        visited.add(next)
        const page: MessagePage = yield* graph.json(HttpClientRequest.get(next), MessagePage).pipe(
          Effect.mapError(toSourceError("list"))
        )
        for (const message of page.value) {
          if (seen.has(message.id)) continue
          seen.add(message.id)
          listed.push({ ref: message.id, size: sizeOf(message) })
        }
        next = page["@odata.nextLink"]
      }
      return listed as ReadonlyArray<Listed>
    })

    const messageUrl = (ref: string) => `${user}/messages/${encodeURIComponent(ref)}`

    const fetch = (refs: ReadonlyArray<string>) =>
      Effect.forEach(
        refs,
        (ref) =>
          graph.bytes(HttpClientRequest.get(`${messageUrl(ref)}/$value`)).pipe(
            Effect.map((raw): Array<Fetched> => [{ ref, raw }]),
            // Removed by someone else since it was listed: the seam says leave it out.
            Effect.catchTag("GraphNotFound", () => Effect.succeed([]))
          ),
        // The client's semaphore caps requests in flight; this only bounds the queued fibers.
        { concurrency: 4 }
      ).pipe(
        Effect.map((results) => results.flat() as ReadonlyArray<Fetched>),
        Effect.mapError(toSourceError("fetch"))
      )

    const removeOne = (ref: string) =>
      (destinationId === undefined
        ? graph.send(HttpClientRequest.del(messageUrl(ref)))
        : graph.send(HttpClientRequest.post(`${messageUrl(ref)}/move`).pipe(
          HttpClientRequest.bodyUnsafeJson({ destinationId })
        ))).pipe(
          Effect.asVoid,
          // Already deleted or moved (a retry after a crash between remove and its event).
          Effect.catchTag("GraphNotFound", () => Effect.void)
        )

    const remove = (refs: ReadonlyArray<string>) =>
      Effect.forEach(refs, removeOne, { concurrency: 4, discard: true }).pipe(
        Effect.mapError(toSourceError(destinationId === undefined ? "remove (delete)" : "remove (move)"))
      )

    return {
      server: `${graph.baseUrl}/users/${mailbox.user}/mailFolders/${mailbox.folder}`,
      list,
      fetch,
      remove,
      // HTTP keeps no connection whose loss the actor would need to hear about.
      closed: Effect.never
    } satisfies MailSession
  })

/**
 * A `MailSource` for one Graph mailbox. The token cache and the four-request limit live in the
 * layer, so they outlast sessions: a reconnect does not fetch a new token.
 */
export const layer = (mailbox: GraphMailbox): Layer.Layer<MailSource, never, HttpClient.HttpClient> =>
  Layer.effect(
    MailSource,
    Effect.gen(function*() {
      const graph = yield* GraphClient.make(credentialsOf(mailbox))
      return MailSource.of({ open: openSession(mailbox, graph) })
    })
  )

