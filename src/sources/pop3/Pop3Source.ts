/**
 * The POP3 `MailSource` on our own client (`Pop3Client`). Facts this file respects:
 * - Refs are UIDL values (RFC 1939 §7), stable across sessions; message numbers are valid in
 *   one session only, so a ref is mapped to its number through this session's UIDL.
 * - RFC 1939 §6: DELE takes effect only at QUIT, and a session that ends any other way deletes
 *   nothing. So `remove` DELEs and then QUITs at once, and succeeds only on QUIT's +OK; the
 *   session is over after it (later calls fail with kind "closed"), and the caller reconnects.
 * - POP3 has one mailbox and no folders: `afterProcessing: { moveTo }` cannot be honoured.
 */
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { Duration, Effect, Layer, Option, Stream } from "effect"
import type { ServerMailbox } from "../../domain/config.js"
import { type Fetched, type Listed, type MailSession, MailSource, MailSourceError } from "../MailSource.js"
import * as Pop3Client from "./Pop3Client.js"

/** RFC 8314 §7.1 (pop3s) and RFC 1939 §3 (pop3). */
export const defaultPort = (tls: ServerMailbox["tls"]): number => (tls === "implicit" ? 995 : 110)

/** The ref of a message on a server without UIDL: the SHA-256 of its bytes. */
export const HASH_REF_PREFIX = "sha256:"

interface IndexEntry {
  readonly ref: string
  /** Several only on a server without UIDL holding byte-identical copies of one message. */
  readonly numbers: ReadonlyArray<number>
  readonly size: number | undefined
}

const readCa = (caFile: string) =>
  Effect.tryPromise({
    try: () => readFile(caFile),
    catch: (cause) =>
      new MailSourceError({ kind: "tls", message: `cannot read caFile ${caFile}: ${cause instanceof Error ? cause.message : String(cause)}` })
  })

const openSession = (mailbox: ServerMailbox) =>
  Effect.gen(function*() {
    if (mailbox.afterProcessing !== "delete") {
      return yield* Effect.fail(new MailSourceError({
        kind: "protocol",
        message: `mailbox ${mailbox.id}: POP3 has no folders, so afterProcessing { moveTo: ${JSON.stringify(mailbox.afterProcessing.moveTo)} } is impossible; use "delete"`
      }))
    }
    const port = mailbox.port ?? defaultPort(mailbox.tls)
    const ca = mailbox.caFile === undefined ? undefined : yield* readCa(mailbox.caFile)
    const client = yield* Pop3Client.connect({
      host: mailbox.host,
      port,
      tls: mailbox.tls,
      rejectUnauthorized: mailbox.tlsRejectUnauthorized,
      ...(ca === undefined ? {} : { ca }),
      connectTimeout: Duration.seconds(mailbox.connectTimeoutSeconds),
      commandTimeout: Duration.seconds(mailbox.commandTimeoutSeconds)
    })
    yield* client.login({ user: mailbox.user, password: mailbox.password })

    let index: ReadonlyArray<IndexEntry> | undefined
    let byRef = new Map<string, IndexEntry>()
    let warnedNoUidl = false

    const hashOf = (number: number) =>
      Effect.suspend(() => {
        const hash = createHash("sha256")
        return client.retrStream(number).pipe(
          Stream.runForEach((chunk) => Effect.sync(() => hash.update(chunk))),
          Effect.map(() => `${HASH_REF_PREFIX}${hash.digest("hex")}`)
        )
      })

    const withoutUidl = (listing: ReadonlyArray<Pop3Client.Pop3ScanListing>) =>
      Effect.gen(function*() {
        if (!warnedNoUidl) {
          warnedNoUidl = true
          yield* Effect.logWarning(
            "POP3 server has no UIDL (RFC 1939 §7): refs are the SHA-256 of each message, which costs a RETR of every message in every session"
          )
        }
        const entries = new Map<string, { numbers: Array<number>; size: number }>()
        for (const { number, size } of listing) {
          // Streamed into the hash: a large message is never held in memory just to name it.
          const ref = yield* hashOf(number)
          const entry = entries.get(ref)
          if (entry === undefined) entries.set(ref, { numbers: [number], size })
          else entry.numbers.push(number)
        }
        return [...entries].map(([ref, { numbers, size }]): IndexEntry => ({ ref, numbers, size }))
      })

    /** Maps refs to this session's message numbers (LIST for sizes, UIDL for refs). */
    const refresh = Effect.gen(function*() {
      const listing = yield* client.list
      const sizes = new Map(listing.map(({ number, size }) => [number, size]))
      const uids = yield* client.uidl
      const entries = Option.isSome(uids)
        ? uids.value
          // A message marked deleted is left out of LIST but some servers still show it in UIDL.
          .filter(({ number }) => sizes.has(number))
          .map(({ number, uid }): IndexEntry => ({ ref: uid, numbers: [number], size: sizes.get(number) }))
        : yield* withoutUidl(listing)
      index = [...entries].sort((a, b) => a.numbers[0]! - b.numbers[0]!)
      byRef = new Map(index.map((entry) => [entry.ref, entry]))
      return index
    })

    // RFC 1939 §4: the server locks the maildrop for the session, so its messages and their
    // numbers cannot change until QUIT, which ends the session: one index serves all of it (and
    // without UIDL, spares a second RETR of everything). A fetch or remove without a list
    // before it (recovery after a restart) builds it first.
    const current = Effect.zipRight(
      // A cached index must not make a dead session look alive.
      client.ensureOpen,
      Effect.suspend(() => (index === undefined ? refresh : Effect.succeed(index)))
    )

    const list = current.pipe(
      Effect.map((entries) => entries.map(({ ref, size }): Listed => ({ ref, size }))),
      Effect.annotateLogs({ mailbox: mailbox.id })
    )

    const fetch = (refs: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        yield* current.pipe(Effect.annotateLogs({ mailbox: mailbox.id }))
        // A ref the server no longer has was removed by someone else: left out (MailSource).
        const wanted = refs.flatMap((ref) => {
          const entry = byRef.get(ref)
          return entry === undefined ? [] : [{ ref, number: entry.numbers[0]!, expectedBytes: entry.size }]
        })
        // One exchange for the batch: pipelined where the server allows it.
        const bytes = yield* client.retrAll(wanted)
        return wanted.map(({ ref }, i): Fetched => ({ ref, raw: bytes[i]! }))
      })

    const remove = (refs: ReadonlyArray<string>) =>
      refs.length === 0
        ? Effect.void
        : Effect.gen(function*() {
          yield* current.pipe(Effect.annotateLogs({ mailbox: mailbox.id }))
          // A ref already gone is already removed; sending DELE twice for one number gets -ERR.
          const numbers = [...new Set(refs.flatMap((ref) => byRef.get(ref)?.numbers ?? []))].sort((a, b) => a - b)
          yield* client.deleAll(numbers)
          // RFC 1939 §6: only QUIT's +OK commits the DELEs.
          yield* client.quit
        }).pipe(
          // Any failure before QUIT's +OK: drop the connection so that nothing is committed, and
          // let the caller retry the whole removal on a new session.
          Effect.tapError(() => client.destroy)
        )

    const tlsLabel = mailbox.tls === "implicit" ? "pop3s" : "pop3"
    return {
      server: `${tlsLabel}://${mailbox.host}:${port}`,
      list,
      fetch,
      remove,
      // RFC 1939 §6: DELE takes effect only at QUIT, so removing ends the session.
      removalEndsSession: true,
      closed: client.closed
    } satisfies MailSession
  }).pipe(Effect.annotateLogs({ mailbox: mailbox.id }))

/** A `MailSource` for one POP3 mailbox. */
export const layer = (mailbox: ServerMailbox): Layer.Layer<MailSource> =>
  Layer.succeed(MailSource, { open: openSession(mailbox) })
