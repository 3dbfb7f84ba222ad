/**
 * Test harness: a local stand-in for Microsoft Graph and the Microsoft identity platform token
 * endpoint, one per `startGraphServer()` (node:http on 127.0.0.1, a random port), written from
 * Microsoft's documentation and answering in its documented shapes:
 *
 * - "Microsoft identity platform and the OAuth 2.0 client credentials flow":
 *   `POST /{tenant}/oauth2/v2.0/token` (form-encoded) → `{token_type, expires_in, ext_expires_in,
 *   access_token}`; errors `{error, error_description: "AADSTSnnn: ...", error_codes, ...}` with
 *   400 (unknown tenant or app, bad scope or grant) or 401 invalid_client (wrong secret).
 * - "Microsoft Graph error responses and resource types": `{"error":{"code","message",
 *   "innerError"}}`; 401 InvalidAuthenticationToken for a missing, unknown or expired token.
 * - "List messages": `$select`, `$top` (1-1000, default 10), `$orderby=receivedDateTime [asc|desc]`
 *   (default newest first), `$expand=singleValueExtendedProperties($filter=id eq '...')` for
 *   PidTagMessageSize; `@odata.nextLink` is an absolute URL that carries `$skip`, as the page
 *   describes for messages ("This API uses the $skip value to keep count").
 * - "Get MIME content of a message": `GET .../messages/{id}/$value` → the raw MIME, text/plain.
 * - "Delete message" (204), "message: move" (201 and the message; with
 *   `Prefer: IdType="ImmutableId"` the id survives the move, "Obtain immutable identifiers for
 *   Outlook resources", otherwise the moved copy gets a new id).
 * - "user: sendMail" in MIME form: `Content-Type: text/plain`, a base64 body; 202; malformed base64
 *   → 400 ErrorMimeContentInvalidBase64String. The decoded MIME is kept in `sent` and saved in
 *   Sent Items.
 * - "mailFolder resource type": well-known folder names (inbox, archive, deleteditems, ...),
 *   `GET mailFolders/{id}`, `mailFolders?$filter=displayName eq '...'`, `childFolders`.
 * - "Microsoft Graph throttling guidance": `failNext(n, 429, seconds)` answers the next n requests
 *   with the status and `Retry-After`.
 *
 * Simplifications: one id per message (real Exchange has a REST id and an immutable id for the
 * same item); tokens are opaque random strings, not JWTs; a DELETE removes the message outright.
 */
import { randomBytes, randomUUID } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface GraphServerOptions {
  readonly tenant?: string
  readonly clientId?: string
  readonly clientSecret?: string
  /** `expires_in` of issued tokens. Default 3599, as Entra ID issues. */
  readonly tokenLifetimeSeconds?: number
}

export interface RecordedRequest {
  readonly method: string
  /** Decoded path, e.g. /v1.0/users/a@b/messages/AAk...=/$value or /tenant/oauth2/v2.0/token. */
  readonly path: string
  /** The raw query string, with its "?", or "". */
  readonly query: string
  /** When the request arrived (Date.now()). */
  readonly time: number
  /** The status it was answered with. */
  readonly status: number
  readonly target: "token" | "graph"
  readonly prefer: string | undefined
  readonly contentType: string | undefined
}

export interface StoredMessage {
  readonly id: string
  readonly raw: Buffer
  readonly internetMessageId: string | null
  readonly subject: string | null
  readonly receivedDateTime: string
}

export interface SentMail {
  /** The user in the sendMail path. */
  readonly user: string
  /** The decoded MIME, byte for byte. */
  readonly mime: Buffer
  readonly time: number
}

export interface FailOptions {
  /** Which endpoint fails: the Graph API (default) or the token endpoint. */
  readonly target?: "graph" | "token"
  readonly code?: string
  readonly message?: string
}

export interface GraphServer {
  /** http://127.0.0.1:port */
  readonly url: string
  /** For `authorityUrl`: the token endpoint is `${authorityUrl}/${tenant}/oauth2/v2.0/token`. */
  readonly authorityUrl: string
  /** For `graphUrl`: `${url}/v1.0`. */
  readonly graphUrl: string
  readonly tenant: string
  readonly clientId: string
  readonly clientSecret: string
  /** Puts raw MIME messages into a folder (well-known name, id or display-name path, created when missing); returns their ids. */
  seed(user: string, folder: string, raws: ReadonlyArray<Uint8Array | string>): Array<string>
  /** The messages now in a folder, in arrival order. */
  messages(user: string, folder: string): Array<StoredMessage>
  /** The id of a folder (well-known name, id or display-name path), creating a display-name path when missing. */
  folderId(user: string, folder: string): string
  readonly sent: ReadonlyArray<SentMail>
  readonly requests: ReadonlyArray<RecordedRequest>
  /** The next `n` requests to `options.target` are answered with `status` (and `Retry-After`, when given). */
  failNext(n: number, status: number, retryAfterSeconds?: number, options?: FailOptions): void
  /** Every token issued so far is expired from now on (the next use gets 401). */
  expireTokens(): void
  /** Requests on this user's mailbox get 403 ErrorAccessDenied (the app lacks the permission). */
  denyAccess(user: string): void
  /** Graph API answers are delayed by this many milliseconds (to observe concurrency). */
  setLatency(ms: number): void
  /** The most Graph API requests that were in flight at once. */
  readonly maxInFlight: number
  stop(): Promise<void>
}

const DEFAULT_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
const DEFAULT_CLIENT_ID = "2f6c4a0e-5b1d-4c1e-9d3a-0c7a8b9e1f23"
const DEFAULT_CLIENT_SECRET = "Xy8Q~local-graph-secret-not-a-real-one"

/** "mailFolder resource type": well-known folder names and their display names. */
const WELL_KNOWN: ReadonlyArray<readonly [string, string]> = [
  ["inbox", "Inbox"],
  ["drafts", "Drafts"],
  ["sentitems", "Sent Items"],
  ["deleteditems", "Deleted Items"],
  ["archive", "Archive"],
  ["junkemail", "Junk Email"],
  ["outbox", "Outbox"]
]

/** The message properties this server can `$select`. */
const MESSAGE_PROPERTIES = new Set([
  "id",
  "internetMessageId",
  "receivedDateTime",
  "sentDateTime",
  "createdDateTime",
  "lastModifiedDateTime",
  "subject",
  "parentFolderId",
  "isRead"
])

interface Folder {
  readonly id: string
  readonly displayName: string
  readonly parentId: string | null
  readonly wellKnown: string | undefined
  readonly messages: Map<string, StoredMessage>
}

interface Mailbox {
  readonly user: string
  readonly root: Folder
  readonly folders: Map<string, Folder>
}

class HttpFailure {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly message: string,
    readonly headers: Readonly<Record<string, string>> = {}
  ) {}
}

const base64url = (bytes: number) => randomBytes(bytes).toString("base64url")
/** Shaped like Exchange ids: base64, "AAMk..." for folders, "AAkALg..." for immutable item ids. */
const newFolderId = () => `AAMkAGI2${base64url(30)}AAA=`
const newMessageId = () => `AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A${base64url(36)}AAA=`
const looksLikeId = (key: string) => /^AA[A-Za-z0-9_\-+/]{30,}=*$/.test(key)

/** The header block of a raw message, unfolded, as [name, value] pairs. */
const headerFields = (raw: Buffer): Array<[string, string]> => {
  const text = raw.toString("latin1")
  const end = text.search(/\r?\n\r?\n/)
  const block = end === -1 ? text : text.slice(0, end)
  const fields: Array<[string, string]> = []
  for (const line of block.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && fields.length > 0) {
      fields[fields.length - 1]![1] += ` ${line.trim()}`
    } else {
      const colon = line.indexOf(":")
      if (colon > 0) fields.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()])
    }
  }
  return fields
}

const header = (raw: Buffer, name: string): string | null => headerFields(raw).find(([n]) => n === name)?.[1] ?? null

/** RFC 7240: several Prefer fields are one list. */
const preferOf = (req: http.IncomingMessage): string => {
  const value = req.headers.prefer
  return Array.isArray(value) ? value.join(", ") : (value ?? "")
}

/** Graph's DateTimeOffset form for received times: seconds, UTC, "Z". */
const isoSeconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z")

export async function startGraphServer(options: GraphServerOptions = {}): Promise<GraphServer> {
  const tenant = options.tenant ?? DEFAULT_TENANT
  const clientId = options.clientId ?? DEFAULT_CLIENT_ID
  const clientSecret = options.clientSecret ?? DEFAULT_CLIENT_SECRET
  const lifetime = options.tokenLifetimeSeconds ?? 3599

  const mailboxes = new Map<string, Mailbox>()
  const tokens = new Map<string, { expiresAt: number }>()
  const requests: Array<RecordedRequest> = []
  const sent: Array<SentMail> = []
  const failures: Array<{ remaining: number; status: number; retryAfter: number | undefined; target: "graph" | "token"; code?: string; message?: string }> = []
  const denied = new Set<string>()
  let latency = 0
  let inFlight = 0
  let maxInFlight = 0
  // Received times: 2024-01-01T00:00:00Z plus one second per message, so every message has its own.
  let clock = Date.UTC(2024, 0, 1)

  // ------------------------------------------------------------------------------------------
  // The store
  // ------------------------------------------------------------------------------------------

  const makeFolder = (mailbox: Mailbox | undefined, displayName: string, parentId: string | null, wellKnown?: string): Folder => {
    const folder: Folder = { id: newFolderId(), displayName, parentId, wellKnown, messages: new Map() }
    mailbox?.folders.set(folder.id, folder)
    return folder
  }

  const mailboxOf = (user: string, create: boolean): Mailbox | undefined => {
    const key = user.toLowerCase()
    const existing = mailboxes.get(key)
    if (existing !== undefined || !create) return existing
    const root = makeFolder(undefined, "Top of Information Store", null, "msgfolderroot")
    const mailbox: Mailbox = { user, root, folders: new Map([[root.id, root]]) }
    for (const [name, displayName] of WELL_KNOWN) makeFolder(mailbox, displayName, root.id, name)
    mailboxes.set(key, mailbox)
    return mailbox
  }

  const childrenOf = (mailbox: Mailbox, parentId: string) => [...mailbox.folders.values()].filter((f) => f.parentId === parentId)

  /** A folder by well-known name (case-insensitive) or id, as the URL and `destinationId` name it. */
  const folderByKey = (mailbox: Mailbox, key: string): Folder => {
    const lower = key.toLowerCase()
    for (const folder of mailbox.folders.values()) {
      if (folder.wellKnown === lower || folder.id === key) return folder
    }
    if (looksLikeId(key)) throw new HttpFailure(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    throw new HttpFailure(400, "ErrorInvalidIdMalformed", "Id is malformed.")
  }

  /** For the test's own calls: well-known name, id, or a display-name path created when missing. */
  const folderForTest = (user: string, folder: string): Folder => {
    const mailbox = mailboxOf(user, true)!
    try {
      return folderByKey(mailbox, folder)
    } catch {
      let parent = mailbox.root
      for (const name of folder.split("/").filter((s) => s !== "")) {
        parent = childrenOf(mailbox, parent.id).find((f) => f.displayName === name) ?? makeFolder(mailbox, name, parent.id)
      }
      return parent
    }
  }

  const findMessage = (mailbox: Mailbox, id: string, within?: Folder): { folder: Folder; message: StoredMessage } => {
    for (const folder of within === undefined ? mailbox.folders.values() : [within]) {
      const message = folder.messages.get(id)
      if (message !== undefined) return { folder, message }
    }
    if (looksLikeId(id)) throw new HttpFailure(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    throw new HttpFailure(400, "ErrorInvalidIdMalformed", "Id is malformed.")
  }

  const store = (folder: Folder, raw: Buffer, id = newMessageId(), receivedDateTime = isoSeconds((clock += 1000))): StoredMessage => {
    const message: StoredMessage = {
      id,
      raw,
      internetMessageId: header(raw, "message-id"),
      subject: header(raw, "subject"),
      receivedDateTime
    }
    folder.messages.set(id, message)
    return message
  }

  // ------------------------------------------------------------------------------------------
  // Answers
  // ------------------------------------------------------------------------------------------

  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body)
    res.writeHead(status, {
      "Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
      "Content-Length": Buffer.byteLength(text),
      "request-id": randomUUID(),
      ...headers
    })
    res.end(text)
  }

  const graphError = (res: http.ServerResponse, failure: HttpFailure) =>
    json(res, failure.status, {
      error: {
        code: failure.code,
        message: failure.message,
        innerError: { date: new Date().toISOString().slice(0, 19), "request-id": randomUUID(), "client-request-id": randomUUID() }
      }
    }, { ...failure.headers })

  const tokenError = (res: http.ServerResponse, status: number, error: string, aadsts: number, description: string) => {
    const trace = randomUUID()
    json(res, status, {
      error,
      error_description: `AADSTS${aadsts}: ${description}\r\nTrace ID: ${trace}\r\nCorrelation ID: ${randomUUID()}\r\nTimestamp: ${new Date().toISOString().replace("T", " ").slice(0, 19)}Z`,
      error_codes: [aadsts],
      timestamp: new Date().toISOString().replace("T", " ").slice(0, 19) + "Z",
      trace_id: trace,
      correlation_id: randomUUID(),
      error_uri: `https://login.microsoftonline.com/error?code=${aadsts}`
    })
  }

  const messageJson = (message: StoredMessage, folder: Folder, select: ReadonlySet<string> | undefined) => {
    const full: Record<string, unknown> = {
      "@odata.etag": `W/"CQAAABYAAAA${base64url(12)}"`,
      id: message.id,
      createdDateTime: message.receivedDateTime,
      lastModifiedDateTime: message.receivedDateTime,
      receivedDateTime: message.receivedDateTime,
      sentDateTime: message.receivedDateTime,
      internetMessageId: message.internetMessageId,
      subject: message.subject,
      parentFolderId: folder.id,
      isRead: false
    }
    if (select === undefined) return full
    // With $select, Graph still returns the id and the etag.
    return Object.fromEntries(Object.entries(full).filter(([key]) => key === "id" || key === "@odata.etag" || select.has(key)))
  }

  const folderJson = (mailbox: Mailbox, folder: Folder, select: ReadonlySet<string> | undefined) => {
    const full: Record<string, unknown> = {
      id: folder.id,
      displayName: folder.displayName,
      parentFolderId: folder.parentId,
      childFolderCount: childrenOf(mailbox, folder.id).length,
      unreadItemCount: folder.messages.size,
      totalItemCount: folder.messages.size,
      isHidden: false
    }
    if (select === undefined) return full
    return Object.fromEntries(Object.entries(full).filter(([key]) => key === "id" || select.has(key)))
  }

  const parseSelect = (value: string | null, allowed: ReadonlySet<string> | undefined, type: string) => {
    if (value === null) return undefined
    const names = value.split(",").map((s) => s.trim()).filter((s) => s !== "")
    for (const name of names) {
      if (allowed !== undefined && !allowed.has(name)) {
        throw new HttpFailure(400, "RequestBroker--ParseUri", `Could not find a property named '${name}' on type 'microsoft.graph.${type}'.`)
      }
    }
    return new Set(names)
  }

  const parseTop = (value: string | null, fallback: number) => {
    if (value === null) return fallback
    const top = Number(value)
    if (!Number.isInteger(top) || top < 1 || top > 1000) {
      throw new HttpFailure(400, "ErrorInvalidArgument", `The value '${value}' of $top is out of range (1 to 1000).`)
    }
    return top
  }

  const parseSkip = (value: string | null) => {
    if (value === null) return 0
    const skip = Number(value)
    if (!Number.isInteger(skip) || skip < 0) throw new HttpFailure(400, "BadRequest", `Invalid value '${value}' for $skip.`)
    return skip
  }

  /** Only `displayName eq '...'` (OData string literal, '' for a quote), which is all folder lookup needs. */
  const parseDisplayNameFilter = (value: string | null): string | undefined => {
    if (value === null) return undefined
    const match = /^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$/.exec(value)
    if (match === null) throw new HttpFailure(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
    return match[1]!.replaceAll("''", "'")
  }

  const rejectUnknownOptions = (params: URLSearchParams, allowed: ReadonlyArray<string>) => {
    for (const name of params.keys()) {
      if (name.startsWith("$") && !allowed.includes(name)) {
        throw new HttpFailure(400, "BadRequest", `Query option '${name}' is not allowed here.`)
      }
    }
  }

  /** "List messages" on one folder, with paging by $skip in an absolute @odata.nextLink. */
  const listMessages = (url: URL, mailbox: Mailbox, folder: Folder) => {
    const params = url.searchParams
    rejectUnknownOptions(params, ["$select", "$top", "$skip", "$orderby", "$expand"])
    const select = parseSelect(params.get("$select"), MESSAGE_PROPERTIES, "message")
    const top = parseTop(params.get("$top"), 10)
    const skip = parseSkip(params.get("$skip"))
    const orderby = (params.get("$orderby") ?? "receivedDateTime desc").trim()
    const order = /^receivedDateTime(\s+(asc|desc))?$/i.exec(orderby)
    if (order === null) {
      throw new HttpFailure(400, "BadRequest", `The $orderby '${orderby}' is not supported by this server.`)
    }
    const descending = (order[2] ?? "asc").toLowerCase() === "desc"
    let sizeProperty: string | undefined
    const expand = params.get("$expand")
    if (expand !== null) {
      const match = /^singleValueExtendedProperties\(\$filter=id eq '([^']+)'\)$/i.exec(expand.trim())
      if (match === null) throw new HttpFailure(400, "BadRequest", `Parsing OData Select and Expand failed: '${expand}'.`)
      sizeProperty = match[1]!
    }
    const all = [...folder.messages.values()].sort((a, b) =>
      descending ? b.receivedDateTime.localeCompare(a.receivedDateTime) : a.receivedDateTime.localeCompare(b.receivedDateTime)
    )
    const page = all.slice(skip, skip + top).map((message) => {
      const item = messageJson(message, folder, select)
      // PidTagMessageSize (0x0E08) is the only extended property this store knows.
      if (sizeProperty !== undefined && /^(integer|long)\s+0x0?e08$/i.test(sizeProperty)) {
        const [type] = sizeProperty.split(/\s+/)
        item.singleValueExtendedProperties = [{ id: `${type} 0xe08`, value: String(message.raw.length) }]
      }
      return item
    })
    const body: Record<string, unknown> = {
      "@odata.context": `${graphUrl}/$metadata#users('${encodeURIComponent(mailbox.user)}')/mailFolders('${folder.id}')/messages`,
      value: page
    }
    if (skip + top < all.length) {
      const next = new URLSearchParams(params)
      next.set("$skip", String(skip + top))
      body["@odata.nextLink"] = `${serverUrl}${url.pathname}?${next.toString()}`
    }
    return body
  }

  const listFolders = (url: URL, mailbox: Mailbox, parent: Folder) => {
    const params = url.searchParams
    rejectUnknownOptions(params, ["$select", "$top", "$filter", "$skip"])
    const select = parseSelect(params.get("$select"), undefined, "mailFolder")
    const name = parseDisplayNameFilter(params.get("$filter"))
    const top = parseTop(params.get("$top"), 10)
    const skip = parseSkip(params.get("$skip"))
    const all = childrenOf(mailbox, parent.id).filter((f) => name === undefined || f.displayName.toLowerCase() === name.toLowerCase())
    const body: Record<string, unknown> = { value: all.slice(skip, skip + top).map((f) => folderJson(mailbox, f, select)) }
    if (skip + top < all.length) {
      const next = new URLSearchParams(params)
      next.set("$skip", String(skip + top))
      body["@odata.nextLink"] = `${serverUrl}${url.pathname}?${next.toString()}`
    }
    return body
  }

  const readBody = (req: http.IncomingMessage) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => resolve(Buffer.concat(chunks)))
      req.on("error", reject)
    })

  // ------------------------------------------------------------------------------------------
  // Endpoints
  // ------------------------------------------------------------------------------------------

  const handleToken = async (req: http.IncomingMessage, res: http.ServerResponse, pathTenant: string) => {
    const body = await readBody(req)
    if (req.method !== "POST") return tokenError(res, 400, "invalid_request", 900561, "The endpoint only accepts POST requests.")
    if (!(req.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
      return tokenError(res, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
    }
    const form = new URLSearchParams(body.toString("utf8"))
    if (pathTenant !== tenant) return tokenError(res, 400, "invalid_request", 90002, `Tenant '${pathTenant}' not found.`)
    if (form.get("grant_type") !== "client_credentials") {
      return tokenError(res, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    }
    if (form.get("client_id") !== clientId) {
      return tokenError(res, 400, "unauthorized_client", 700016, `Application with identifier '${form.get("client_id") ?? ""}' was not found in the directory '${tenant}'.`)
    }
    const secret = form.get("client_secret")
    if (secret === null || secret === "") {
      return tokenError(res, 401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
    }
    if (secret !== clientSecret) {
      return tokenError(res, 401, "invalid_client", 7000215, `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`)
    }
    const scope = form.get("scope")
    if (scope !== `${serverUrl}/.default`) {
      return tokenError(res, 400, "invalid_scope", 1002012, `The provided value for scope ${scope ?? ""} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`)
    }
    const accessToken = `eyJ0eXAiOiJKV1QiLCJub25jZSI6${base64url(96)}`
    tokens.set(accessToken, { expiresAt: Date.now() + lifetime * 1000 })
    json(res, 200, { token_type: "Bearer", expires_in: lifetime, ext_expires_in: lifetime, access_token: accessToken })
  }

  const authenticate = (req: http.IncomingMessage) => {
    const authorization = req.headers.authorization ?? ""
    const token = /^Bearer\s+(.+)$/i.exec(authorization)?.[1]?.trim()
    const challenge = {
      "WWW-Authenticate": `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`
    }
    if (token === undefined || token === "") throw new HttpFailure(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
    const issued = tokens.get(token)
    if (issued === undefined) throw new HttpFailure(401, "InvalidAuthenticationToken", "Access token validation failure.", challenge)
    if (Date.now() >= issued.expiresAt) {
      throw new HttpFailure(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", challenge)
    }
  }

  const handleGraph = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL, segments: ReadonlyArray<string>) => {
    const body = await readBody(req)
    authenticate(req)
    const method = req.method ?? "GET"
    const [users, user, ...rest] = segments
    if (users !== "users" || user === undefined) {
      throw new HttpFailure(400, "BadRequest", `Resource not found for the segment '${segments[0] ?? ""}'.`)
    }
    if (denied.has(user.toLowerCase())) throw new HttpFailure(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    const mailbox = mailboxOf(user, false)
    if (mailbox === undefined) throw new HttpFailure(404, "ErrorInvalidUser", `The requested user '${user}' is invalid.`)
    const immutable = /IdType="ImmutableId"/i.test(preferOf(req))

    // POST /users/{user}/sendMail
    if (rest.length === 1 && rest[0] === "sendMail" && method === "POST") {
      const contentType = (req.headers["content-type"] ?? "").toLowerCase()
      if (!contentType.startsWith("text/plain")) {
        throw new HttpFailure(501, "NotImplemented", "This server implements only the MIME form of sendMail (Content-Type: text/plain).")
      }
      const text = body.toString("latin1").replace(/\s+/g, "")
      if (text === "" || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
        throw new HttpFailure(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
      }
      const mime = Buffer.from(text, "base64")
      const recipients = headerFields(mime).filter(([name]) => name === "to" || name === "cc" || name === "bcc")
      if (recipients.length === 0) {
        throw new HttpFailure(400, "ErrorInvalidRecipients", "At least one recipient isn't valid., A message can't be sent because it contains no recipients.")
      }
      sent.push({ user, mime, time: Date.now() })
      store(folderByKey(mailbox, "sentitems"), mime)
      res.writeHead(202, { "Content-Length": 0, "request-id": randomUUID() })
      return res.end()
    }

    // mailFolders collection and folders
    let folder: Folder | undefined
    let tail = rest
    if (rest[0] === "mailFolders") {
      if (rest.length === 1 && method === "GET") return json(res, 200, listFolders(url, mailbox, mailbox.root))
      folder = folderByKey(mailbox, rest[1]!)
      tail = rest.slice(2)
      if (tail.length === 0 && method === "GET") {
        rejectUnknownOptions(url.searchParams, ["$select"])
        return json(res, 200, folderJson(mailbox, folder, parseSelect(url.searchParams.get("$select"), undefined, "mailFolder")))
      }
      if (tail.length === 1 && tail[0] === "childFolders" && method === "GET") return json(res, 200, listFolders(url, mailbox, folder))
      if (tail.length === 1 && tail[0] === "messages" && method === "GET") return json(res, 200, listMessages(url, mailbox, folder))
    }
    if (tail[0] !== "messages" || tail[1] === undefined) {
      throw new HttpFailure(400, "BadRequest", `Resource not found for the segment '${tail[0] ?? rest[0] ?? ""}'.`)
    }
    const found = findMessage(mailbox, tail[1], folder)
    const action = tail.slice(2)

    if (action.length === 0 && method === "GET") {
      return json(res, 200, messageJson(found.message, found.folder, parseSelect(url.searchParams.get("$select"), MESSAGE_PROPERTIES, "message")))
    }
    if (action.length === 0 && method === "DELETE") {
      found.folder.messages.delete(found.message.id)
      res.writeHead(204, { "request-id": randomUUID() })
      return res.end()
    }
    if (action.length === 1 && action[0] === "$value" && method === "GET") {
      res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": found.message.raw.length, "request-id": randomUUID() })
      return res.end(found.message.raw)
    }
    if (action.length === 1 && action[0] === "move" && method === "POST") {
      let destinationId: unknown
      try {
        destinationId = (JSON.parse(body.toString("utf8")) as { destinationId?: unknown }).destinationId
      } catch {
        throw new HttpFailure(400, "BadRequest", "Empty Payload. JSON content expected.")
      }
      if (typeof destinationId !== "string") throw new HttpFailure(400, "ErrorInvalidParameter", "The value of the parameter 'DestinationId' is empty.")
      const destination = folderByKey(mailbox, destinationId)
      found.folder.messages.delete(found.message.id)
      // "Obtain immutable identifiers for Outlook resources": a move keeps an immutable id.
      const moved = store(destination, found.message.raw, immutable ? found.message.id : newMessageId(), found.message.receivedDateTime)
      return json(res, 201, { "@odata.context": `${graphUrl}/$metadata#users('${encodeURIComponent(user)}')/messages/$entity`, ...messageJson(moved, destination, undefined) })
    }
    throw new HttpFailure(405, "ErrorInvalidRequest", `The OData request is not supported: ${method} ${url.pathname}.`)
  }

  // ------------------------------------------------------------------------------------------
  // The server
  // ------------------------------------------------------------------------------------------

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", serverUrl)
    const segments = url.pathname.split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s))
    const isToken = segments.length === 4 && segments[1] === "oauth2" && segments[2] === "v2.0" && segments[3] === "token"
    const target: "token" | "graph" = isToken ? "token" : "graph"
    const time = Date.now()
    const counted = target === "graph"
    if (counted) {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
    }
    res.on("close", () => {
      if (counted) inFlight--
      requests.push({
        method: req.method ?? "GET",
        path: "/" + segments.join("/"),
        query: url.search,
        time,
        status: res.statusCode,
        target,
        prefer: req.headers.prefer === undefined ? undefined : preferOf(req),
        contentType: req.headers["content-type"]
      })
    })

    const run = async () => {
      if (target === "graph" && latency > 0) await new Promise((resolve) => setTimeout(resolve, latency))
      const failure = failures.find((f) => f.target === target)
      if (failure !== undefined) {
        if (--failure.remaining <= 0) failures.splice(failures.indexOf(failure), 1)
        await readBody(req)
        const code = failure.code ?? (failure.status === 429 ? "ApplicationThrottled" : failure.status === 503 ? "ServiceUnavailable" : failure.status === 504 ? "GatewayTimeout" : "ErrorInternalServerError")
        const message = failure.message ?? (failure.status === 429 ? "Application is over its MailboxConcurrency limit." : `Failure injected by the test (HTTP ${failure.status}).`)
        const headers: Record<string, string> = failure.retryAfter === undefined ? {} : { "Retry-After": String(failure.retryAfter) }
        if (target === "token") {
          return json(res, failure.status, { error: code, error_description: message }, headers)
        }
        return graphError(res, new HttpFailure(failure.status, code, message, headers))
      }
      if (isToken) return handleToken(req, res, segments[0]!)
      if (segments[0] !== "v1.0") throw new HttpFailure(404, "NotFound", `No such endpoint: ${url.pathname}`)
      return handleGraph(req, res, url, segments.slice(1))
    }

    run().catch((error: unknown) => {
      if (res.headersSent) return res.destroy()
      if (error instanceof HttpFailure) return graphError(res, error)
      graphError(res, new HttpFailure(500, "InternalServerError", error instanceof Error ? error.message : String(error)))
    })
  })

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const serverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const graphUrl = `${serverUrl}/v1.0`

  return {
    url: serverUrl,
    authorityUrl: serverUrl,
    graphUrl,
    tenant,
    clientId,
    clientSecret,
    seed: (user, folder, raws) => {
      const target = folderForTest(user, folder)
      return raws.map((raw) => store(target, typeof raw === "string" ? Buffer.from(raw, "utf8") : Buffer.from(raw)).id)
    },
    messages: (user, folder) => [...folderForTest(user, folder).messages.values()],
    folderId: (user, folder) => folderForTest(user, folder).id,
    sent,
    requests,
    failNext: (n, status, retryAfterSeconds, failOptions = {}) => {
      failures.push({
        remaining: n,
        status,
        retryAfter: retryAfterSeconds,
        target: failOptions.target ?? "graph",
        ...(failOptions.code === undefined ? {} : { code: failOptions.code }),
        ...(failOptions.message === undefined ? {} : { message: failOptions.message })
      })
    },
    expireTokens: () => {
      const now = Date.now()
      for (const issued of tokens.values()) issued.expiresAt = Math.min(issued.expiresAt, now)
    },
    denyAccess: (user) => void denied.add(user.toLowerCase()),
    setLatency: (ms) => void (latency = ms),
    get maxInFlight() {
      return maxInFlight
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
