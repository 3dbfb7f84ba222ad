/**
 * The IMAP `MailSource` on imapflow. Facts this file respects:
 * - imapflow never reconnects and a client cannot be reused: one client per session.
 * - Without an 'error' listener an error event kills the process.
 * - The mailbox lock is held only inside one operation and always released in `finally`.
 * - No command is issued while a FETCH is being iterated (it would deadlock): `fetchAll`.
 * - Refs carry UIDVALIDITY (RFC 3501 §2.3.1.1): a ref from another UIDVALIDITY is gone.
 * - Removal uses UID EXPUNGE (RFC 4315 UIDPLUS) or MOVE (RFC 6851), never a plain EXPUNGE,
 *   which would also remove every other \Deleted message in the folder.
 * - A backlog is fetched on a second, read-only connection of our own (BulkFetch.ts), for
 *   speed; anything unexpected there and the session goes on with imapflow alone.
 */
import { Deferred, Duration, Effect, Layer, Redacted } from "effect"
import { ImapFlow, type ImapFlowOptions } from "imapflow"
import { readFileSync } from "node:fs"
import { isIP } from "node:net"
import { createSecureContext, type SecureContext } from "node:tls"
import type { ServerMailbox } from "../../domain/config.js"
import { type ChangeWatch, type Fetched, type Listed, type MailSession, MailSource, MailSourceError } from "../MailSource.js"
import { MessageBuffer } from "../MessageBuffer.js"
import { type BulkFetch, openBulkFetch } from "./BulkFetch.js"
import { TLS_ERROR_CODES } from "../tlsErrors.js"

export const defaultPort = (tls: ServerMailbox["tls"]): number => (tls === "implicit" ? 993 : 143)


/** Maps an imapflow or socket error to a kind the mailbox actor can act on. */
export const toSourceError = (cause: unknown, during: string): MailSourceError => {
  const error = cause as {
    message?: string
    code?: string
    authenticationFailed?: boolean
    tlsFailed?: boolean
    responseText?: string
    serverResponseCode?: string
  }
  const detail = [error.responseText ?? error.message ?? String(cause), error.code].filter(Boolean).join(" ")
  const message = `${during}: ${detail}`
  if (error.authenticationFailed || error.serverResponseCode === "AUTHENTICATIONFAILED") {
    return new MailSourceError({ kind: "auth", message })
  }
  if (error.tlsFailed || (error.code !== undefined && TLS_ERROR_CODES.has(error.code))) {
    return new MailSourceError({ kind: "tls", message })
  }
  if (error.code === "ETIMEDOUT" || error.code === "CONNECT_TIMEOUT" || error.code === "GREETING_TIMEOUT") {
    return new MailSourceError({ kind: "timeout", message })
  }
  if (error.code === "NoConnection" || error.code === "EConnectionClosed") {
    return new MailSourceError({ kind: "closed", message })
  }
  if (error.code === "ECONNREFUSED" || error.code === "ECONNRESET" || error.code === "ENOTFOUND" || error.code === "EHOSTUNREACH") {
    return new MailSourceError({ kind: "connect", message })
  }
  return new MailSourceError({ kind: "protocol", message })
}

class DeadlineExceeded extends Error {
  readonly code = "ETIMEDOUT"
}

/** Rejects when `promise` has not settled within `millis`, after running `onExpiry`. */
const withDeadline = <A>(promise: Promise<A>, millis: number, onExpiry: () => void): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onExpiry()
        reject(new DeadlineExceeded(`no answer within ${millis / 1000} s`))
      }, millis)
    })
  ]).finally(() => clearTimeout(timer))
}

interface Ref {
  readonly uidValidity: string
  readonly uid: number
}

/** The grid idle checks are aligned to (see `checkAfter`). */
const CHECK_GRID_MILLIS = 250

/**
 * FETCH asks for at most this much of a message at a time (a partial fetch, RFC 3501 §6.4.5):
 * what one FETCH holds in memory is bounded by it, and most messages fit in one piece. Each
 * piece is a round trip: 2 MiB costs 100 of them for 200 MB (1 MiB saved ~7 MB more of peak
 * memory on a 50 MB message in bench:large, for twice the round trips).
 */
const FETCH_PIECE_BYTES = 2 * 1024 * 1024
/**
 * The listing reports the size of a message larger than this, and this bound for the others
 * (`Listed.size` bounds what a batch holds): 100 such messages, a full batch, stay under the
 * batch's 32 MiB.
 */
const SMALL_MESSAGE_BYTES = 256 * 1024
/**
 * A listing with at least this many small messages is a backlog: they are fetched on a second,
 * read-only connection of our own (BulkFetch.ts), opened for the drain and closed once it is
 * done. Below it (the steady trickle of a live mailbox) everything goes through imapflow, so
 * a thousand mailboxes never log in twice each.
 */
const BACKLOG_MESSAGES = 500
/**
 * Beyond this a message is refused rather than assembled (a server that never stops sending):
 * imapflow's own limit on one literal, which bounded a whole-message FETCH before.
 */
const MAX_MESSAGE_BYTES = 1024 * 1024 * 1024

const parseRef = (ref: string): Ref | undefined => {
  const match = /^(\d+):(\d+)$/.exec(ref)
  return match === null ? undefined : { uidValidity: match[1]!, uid: Number(match[2]) }
}

/**
 * One TLS context per CA file, shared by every session that trusts it: a context of its own
 * per connection (what a `ca` option makes) costs ~20 KB and ~0.5 ms of CPU per login, which
 * adds up with a thousand mailboxes. Read once per process: a changed CA file takes a restart,
 * like any other file the daemon reads at start.
 */
const secureContexts = new Map<string, SecureContext>()
const secureContextFor = (caFile: string): SecureContext => {
  let context = secureContexts.get(caFile)
  if (context === undefined) {
    context = createSecureContext({ ca: readFileSync(caFile) })
    secureContexts.set(caFile, context)
  }
  return context
}

/**
 * imapflow starts IDLE on its own after this long without a command. Polls closer together
 * than this keep the session alive with their NOOP alone (IDLE between them would cost two more
 * round trips per poll: DONE, then IDLE again); with longer intervals IDLE holds the session
 * open. Below imapflow's socket timeout (at least 5 minutes, see `socketTimeout`).
 */
const AUTO_IDLE_AFTER_MILLIS = 2 * 60 * 1000

/** Certificate checking, for imapflow's connection and the backlog's alike. */
const tlsSettings = (mailbox: ServerMailbox) => ({
  rejectUnauthorized: mailbox.tlsRejectUnauthorized,
  ...(mailbox.caFile === undefined ? {} : { secureContext: secureContextFor(mailbox.caFile) })
})

const clientOptions = (mailbox: ServerMailbox): ImapFlowOptions => ({
  host: mailbox.host,
  port: mailbox.port ?? defaultPort(mailbox.tls),
  secure: mailbox.tls === "implicit",
  // true: STARTTLS required, a server without it is refused (never downgraded); false: never.
  doSTARTTLS: mailbox.tls === "starttls" ? true : false,
  auth: { user: mailbox.user, pass: Redacted.value(mailbox.password) },
  tls: tlsSettings(mailbox),
  logger: false,
  connectionTimeout: mailbox.connectTimeoutSeconds * 1000,
  greetingTimeout: mailbox.connectTimeoutSeconds * 1000,
  socketTimeout: Math.max(mailbox.commandTimeoutSeconds * 1000, 5 * 60 * 1000),
  autoIdleDelay: AUTO_IDLE_AFTER_MILLIS,
  // No ENABLE CONDSTORE (nor UTF8=ACCEPT, IMAP4rev2): nothing here reads MODSEQs, and with
  // CONDSTORE on, every `STORE +FLAGS.SILENT \Deleted` is answered by an untagged FETCH
  // (UID MODSEQ) per message anyway (RFC 7162 §3.1.3): 5,000 responses for imapflow to parse
  // per 5,000 removals. Folder names then go as modified UTF-7, which every server reads.
  disableAutoEnable: true,
  clientInfo: { name: "mailintake" }
} as ImapFlowOptions)

const openSession = (mailbox: ServerMailbox) =>
  Effect.gen(function*() {
    const closed = yield* Deferred.make<never, MailSourceError>()
    const client = yield* Effect.try({
      try: () => new ImapFlow(clientOptions(mailbox)),
      catch: (cause) => toSourceError(cause, "configure")
    })
    // Without an 'error' listener imapflow's error event would crash the process.
    client.on("error", (error: unknown) => {
      Deferred.unsafeDone(closed, Effect.fail(toSourceError(error, "connection")))
    })
    // Set when we close the connection ourselves (a deadline passed), so that is what is reported.
    let closedBecause: MailSourceError | undefined
    const abandon = (during: string, millis: number) => () => {
      closedBecause ??= new MailSourceError({ kind: "timeout", message: `${during}: no answer within ${millis / 1000} s` })
      client.close()
    }
    // Counts what the server reported about the folder (new messages, expunges, flag changes,
    // a re-selected folder): `unchanged` compares it with its value when the last listing began.
    let changes = 0
    const changed = () => {
      changes += 1
    }
    for (const event of ["exists", "expunge", "flags", "mailboxOpen", "mailboxClose"]) client.on(event, changed)
    client.on("close", () => {
      Deferred.unsafeDone(closed, Effect.fail(closedBecause ?? new MailSourceError({ kind: "closed", message: "connection closed by the server" })))
    })

    // Logout is registered before connecting, so that an interrupted login (SIGTERM) still
    // closes the socket; the login itself stays interruptible.
    yield* Effect.addFinalizer(() =>
      Effect.tryPromise(() => client.logout()).pipe(
        Effect.timeout(Duration.seconds(5)),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => client.close()))
      )
    )
    // imapflow's own timeouts cover the TCP connect and the greeting, not LOGIN or SELECT.
    const loginTimeout = (mailbox.connectTimeoutSeconds + mailbox.commandTimeoutSeconds) * 1000
    yield* Effect.tryPromise({
      try: () => withDeadline(client.connect(), loginTimeout, abandon("connect", loginTimeout)),
      catch: (cause) => toSourceError(cause, "connect")
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => client.close())))

    const commandTimeout = mailbox.commandTimeoutSeconds * 1000
    const server = `imap${mailbox.tls === "implicit" ? "s" : ""}://${mailbox.host}:${mailbox.port ?? defaultPort(mailbox.tls)}/${mailbox.folder}`

    /**
     * Runs one operation under the mailbox lock. Its deadline is a timer on the promise, not an
     * Effect timeout: the actor runs removals uninterruptibly, and a removal must still end when
     * the server stops answering. A client that failed or timed out is closed: its state is
     * unknown.
     */
    const underLock = <A>(during: string, operation: () => Promise<A>): Promise<A> =>
      withDeadline(
        (async () => {
          const lock = await client.getMailboxLock(mailbox.folder)
          try {
            return await operation()
          } finally {
            lock.release()
          }
        })(),
        commandTimeout,
        abandon(during, commandTimeout)
      ).catch((cause: unknown) => {
        client.close()
        throw toSourceError(cause, during)
      })

    const withMailbox = <A>(during: string, operation: () => Promise<A>) =>
      Effect.tryPromise({
        try: () => underLock(during, operation),
        catch: (error) => error as MailSourceError
      })

    const currentUidValidity = () => String(client.mailbox && client.mailbox.uidValidity)

    /** `changes` when the last listing began (after its NOOP); undefined before the first. */
    let listedAt: number | undefined
    /** Set when a check just ran the NOOP and found a change: the listing then skips its own. */
    let nooped = false

    /** One check: a NOOP (RFC 3501 §6.1.2: keeps the session alive, lets the server report changes). */
    const unchanged = () =>
      underLock("noop", async () => {
        await client.noop()
        const same = changes === listedAt
        nooped = !same
        return same
      })

    /**
     * Checks start on a grid of CHECK_GRID_MILLIS: a thousand idle mailboxes then wake the
     * process ten at a time instead of one at a time, and each wake-up (the event loop, timers,
     * reading the answers) is shared. Measured at 1,000 mailboxes polling every 10 s: idle CPU
     * 6.1–8.4 % of a core with a wake-up per check, 2.6–3.0 % on the grid (and 5.3–6.5 % with
     * the actor's own Effect schedule per poll, before `awaitChange`). A check is at most one
     * grid step late.
     */
    const checkAfter = (check: () => void, millis: number) => {
      const now = Date.now()
      return setTimeout(check, Math.ceil((now + Math.max(0, millis)) / CHECK_GRID_MILLIS) * CHECK_GRID_MILLIS - now)
    }

    const awaitChange = ({ firstCheckInMillis, everyMillis, onQuiet }: ChangeWatch) =>
      Effect.async<void, MailSourceError>((resume) => {
        if (listedAt === undefined) return resume(Effect.void)
        let timer: NodeJS.Timeout | undefined
        let stopped = false
        const check = () => {
          const startedAt = Date.now()
          unchanged().then(
            (same) => {
              if (stopped) return
              if (!same) return resume(Effect.void)
              onQuiet()
              timer = checkAfter(check, startedAt + everyMillis - Date.now())
            },
            (error: MailSourceError) => {
              if (!stopped) resume(Effect.fail(error))
            }
          )
        }
        timer = checkAfter(check, firstCheckInMillis)
        return Effect.sync(() => {
          stopped = true
          clearTimeout(timer)
        })
      })

    const list = withMailbox("list", async () => {
      // The session stays open between polls: NOOP lets the server report new messages (RFC 3501 §6.1.2).
      if (!nooped) await client.noop()
      nooped = false
      // Whatever the server reports from here on (even during this FETCH) makes the next
      // check (`awaitChange`) find a change, so nothing that arrives while listing can be missed.
      listedAt = changes
      // A new listing: a drain still open from the last one is over.
      await closeBulk()
      if (client.mailbox === false || client.mailbox.exists === 0) return []
      const uidValidity = currentUidValidity()
      // Three searches (one response line each) instead of a FETCH of every message's UID,
      // flags and size (a response each: ~0.17 ms apiece in imapflow, most of a large poll's
      // listing). Sizes are fetched only for the messages above SMALL_MESSAGE_BYTES; the rest
      // are listed with that bound. ALL comes first: a message that arrives after it is left
      // for the next poll, and every message it lists was there when LARGER ran.
      const all = await searchUids({ all: true })
      if (all.length === 0) return []
      const deleted = new Set(await searchUids({ deleted: true }))
      const large = await searchUids({ larger: SMALL_MESSAGE_BYTES })
      const sizes = new Map<number, number>()
      if (large.length > 0) {
        for (const message of await client.fetchAll(large.join(","), { uid: true, size: true }, { uid: true })) {
          if (message.size !== undefined) sizes.set(message.uid, message.size)
        }
      }
      const small = all.filter((uid) => !sizes.has(uid))
      backlog = small.length >= BACKLOG_MESSAGES && !bulkRefused ? new Set(small) : undefined
      return all
        .sort((a, b) => a - b)
        .map((uid): Listed => ({
          ref: `${uidValidity}:${uid}`,
          // A large message expunged between the searches and the FETCH has no size: it is gone.
          size: sizes.get(uid) ?? SMALL_MESSAGE_BYTES,
          flaggedDeleted: deleted.has(uid)
        }))
    })

    /** UID SEARCH (RFC 3501 §6.4.4); a refused search is an error, never an empty mailbox. */
    const searchUids = async (query: Parameters<ImapFlow["search"]>[0]): Promise<Array<number>> => {
      const uids = await client.search(query, { uid: true })
      if (uids === false || uids === undefined) throw new Error(`UID SEARCH ${JSON.stringify(query)} was refused`)
      return uids
    }

    const uidsOf = (refs: ReadonlyArray<string>, uidValidity: string) =>
      refs
        .map(parseRef)
        .filter((ref): ref is Ref => ref !== undefined && ref.uidValidity === uidValidity)
        .map((ref) => ref.uid)

    /**
     * The rest of a message larger than one piece, piece by piece into one buffer: imapflow
     * holds a literal whole (and joins its pieces once more), so a 200 MB FETCH would cost
     * several copies of it. `undefined` when the message went away meanwhile.
     */
    const fetchRest = async (uid: number, first: Buffer, size: number | undefined): Promise<Buffer | undefined> => {
      const buffer = new MessageBuffer(size)
      buffer.append(first)
      for (let piece = first; piece.byteLength >= FETCH_PIECE_BYTES;) {
        if (buffer.byteLength > MAX_MESSAGE_BYTES) throw new Error(`message UID ${uid} is larger than ${MAX_MESSAGE_BYTES} bytes`)
        const start = buffer.byteLength
        const next = await client.fetchOne(String(uid), { uid: true, source: { start, maxLength: FETCH_PIECE_BYTES } }, { uid: true })
        if (next === false) return undefined
        // RFC 3501 §6.4.5: past the end, the answer is an empty string.
        piece = next.source || Buffer.alloc(0)
        // RFC 3501 §7.4.2: the answer names the octet it starts at; another start would splice wrong bytes.
        const origin = (next as { partialOrigins?: Map<string, number> }).partialOrigins?.get("")
        if (piece.byteLength > 0 && origin !== start) {
          throw new Error(`the server answered a partial FETCH of UID ${uid} from octet ${start} with octet ${origin ?? "0 (the whole message)"}`)
        }
        buffer.append(piece)
      }
      return buffer.contents()
    }

    /** Small messages of the last listing, when it was a backlog, not yet fetched. */
    let backlog: Set<number> | undefined
    /** The drain's own connection, while a backlog is fetched. */
    let bulk: Promise<BulkFetch> | undefined
    /** Set once the bulk connection failed: this session uses imapflow alone from then on. */
    let bulkRefused = false

    const closeBulk = async () => {
      const open = bulk
      bulk = undefined
      if (open !== undefined) await open.then((connection) => connection.close(), () => {})
    }
    yield* Effect.addFinalizer(() => Effect.promise(closeBulk))

    const openBulk = (uidValidity: string) =>
      openBulkFetch({
        host: mailbox.host,
        port: mailbox.port ?? defaultPort(mailbox.tls),
        tls: mailbox.tls,
        tlsOptions: {
          ...tlsSettings(mailbox),
          // RFC 6066 §3: SNI carries host names only, never IP addresses (imapflow does the same).
          ...(isIP(mailbox.host) === 0 ? { servername: mailbox.host } : {})
        },
        user: mailbox.user,
        password: Redacted.value(mailbox.password),
        folder: mailbox.folder,
        uidValidity,
        connectTimeoutMillis: mailbox.connectTimeoutSeconds * 1000,
        commandTimeoutMillis: mailbox.commandTimeoutSeconds * 1000
      })

    /**
     * The backlog's messages among `uids`, on the drain's own connection; the Error when that
     * connection failed (then imapflow fetches them, and does so for the rest of the session).
     */
    const fetchBacklog = async (uids: ReadonlyArray<number>, uidValidity: string) => {
      try {
        bulk ??= openBulk(uidValidity)
        const fetched = await (await bulk).fetch(uids)
        for (const uid of uids) backlog?.delete(uid)
        if (backlog?.size === 0) await closeBulk()
        return fetched
      } catch (cause) {
        bulkRefused = true
        backlog = undefined
        await closeBulk()
        return cause instanceof Error ? cause : new Error(String(cause))
      }
    }

    const fetch = (refs: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const uidValidity = currentUidValidity()
        const uids = uidsOf(refs, uidValidity)
        if (uids.length === 0) return []
        const fromBacklog = new Set(backlog === undefined ? [] : uids.filter((uid) => backlog!.has(uid)))
        /** What the drain's connection fetched; a backlog UID it did not return is gone from the folder. */
        let drained: Map<number, Buffer> | undefined
        if (fromBacklog.size > 0) {
          const result = yield* Effect.promise(() => fetchBacklog([...fromBacklog], uidValidity))
          if (result instanceof Error) {
            yield* Effect.logWarning(`the backlog's own connection failed (${result.message}); fetching through the session from now on`)
          } else drained = result
        }
        const rest = drained === undefined ? uids : uids.filter((uid) => !fromBacklog.has(uid))
        const viaSession = rest.length === 0 ? new Map<number, Buffer>() : yield* fetchThroughSession(rest)
        const fetched: Array<Fetched> = []
        for (const uid of uids) {
          const raw = drained?.get(uid) ?? viaSession.get(uid)
          if (raw !== undefined) fetched.push({ ref: `${uidValidity}:${uid}`, raw })
        }
        return fetched
      })

    /** Messages through imapflow: one FETCH of at most one piece of each, the rest of a large one piece by piece. */
    const fetchThroughSession = (uids: ReadonlyArray<number>) =>
      withMailbox("fetch", async () => {
        const messages = await client.fetchAll(
          uids.join(","),
          { uid: true, size: true, source: { start: 0, maxLength: FETCH_PIECE_BYTES } },
          { uid: true }
        )
        const byUid = new Map(messages.map((message) => [message.uid, message]))
        const fetched = new Map<number, Buffer>()
        for (const uid of uids) {
          const message = byUid.get(uid)
          const first = message?.source
          if (message === undefined || !first) continue
          const raw = first.byteLength < FETCH_PIECE_BYTES ? first : await fetchRest(uid, first, message.size)
          if (raw !== undefined) fetched.set(uid, raw)
        }
        return fetched
      })

    const remove = (refs: ReadonlyArray<string>) =>
      withMailbox("remove", async () => {
        const uids = uidsOf(refs, currentUidValidity())
        if (uids.length === 0) return
        const range = uids.join(",")
        const capabilities = client.capabilities
        if (mailbox.afterProcessing !== "delete") {
          // RFC 6851 MOVE is atomic; without it imapflow would COPY and then EXPUNGE.
          if (!capabilities.has("MOVE") && !capabilities.has("UIDPLUS")) {
            throw new Error("the server supports neither MOVE nor UIDPLUS: cannot move without a plain EXPUNGE")
          }
          const moved = await client.messageMove(range, mailbox.afterProcessing.moveTo, { uid: true })
          if (moved === false) throw new Error(`MOVE to ${mailbox.afterProcessing.moveTo} was refused`)
          return
        }
        if (!capabilities.has("UIDPLUS")) {
          throw new Error("the server does not support UIDPLUS (RFC 4315): refusing a plain EXPUNGE, which would remove other clients' \\Deleted messages too")
        }
        // FLAGS.SILENT (RFC 3501 §6.4.6): no FETCH response per message for imapflow to parse.
        // imapflow passes the option on to its STORE; its typings do not list it.
        const deleted = await client.messageDelete(range, { uid: true, silent: true } as { uid: boolean })
        if (!deleted) throw new Error("UID EXPUNGE was refused")
      })

    return {
      server,
      list,
      awaitChange,
      fetch,
      remove,
      closed: Deferred.await(closed)
    } satisfies MailSession
  })

/** A `MailSource` for one IMAP mailbox. */
export const layer = (mailbox: ServerMailbox): Layer.Layer<MailSource> =>
  Layer.succeed(MailSource, { open: openSession(mailbox) })
