/**
 * The retrieval seam (DESIGN.md, "The two seams"). One Layer per integration type provides a
 * `MailSource` for one mailbox; everything above it knows neither IMAP nor POP3 nor Graph.
 */
import { Context, Data, type Effect, type Scope } from "effect"

/** A message waiting on the server, by its stable reference. */
export interface Listed {
  /** IMAP: "UIDVALIDITY:UID"; POP3: the UIDL; Graph: the immutable id. */
  readonly ref: string
  /**
   * Size in bytes as the server reports it, or a bound it does not exceed (IMAP lists small
   * messages with one); `undefined` when unknown. It only bounds what one batch holds.
   */
  readonly size: number | undefined
  /**
   * IMAP: already flagged \Deleted. A new message so flagged is another client's to expunge
   * and is left alone; one of ours (a removal cut short by a crash) is removed again.
   */
  readonly flaggedDeleted?: boolean
}

export interface Fetched {
  readonly ref: string
  readonly raw: Uint8Array
}

/** Why the source failed. `auth` and `tls` will not heal by retrying soon; the rest may. */
export type MailSourceErrorKind = "connect" | "auth" | "tls" | "timeout" | "protocol" | "closed"

export class MailSourceError extends Data.TaggedError("MailSourceError")<{
  readonly kind: MailSourceErrorKind
  readonly message: string
  /**
   * The mailbox must stop rather than retry (e.g. Graph answering 403 after a token refresh:
   * retrying would only hammer the service). It starts again when the configuration changes.
   */
  readonly stopMailbox?: boolean
}> {}

/** How `MailSession.awaitChange` checks. */
export interface ChangeWatch {
  readonly firstCheckInMillis: number
  readonly everyMillis: number
  readonly onQuiet: () => void
}

/** An open, logged-in session on one mailbox. */
export interface MailSession {
  /** Where it is connected, for the `MailboxConnected` event (never with credentials). */
  readonly server: string
  /** Every message waiting in the mailbox's folder, oldest first. */
  readonly list: Effect.Effect<ReadonlyArray<Listed>, MailSourceError>
  /**
   * The raw RFC 5322 bytes of these messages, exactly as the server delivers them. A ref the
   * server no longer has is left out of the result (it was removed by someone else).
   */
  readonly fetch: (refs: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Fetched>, MailSourceError>
  /**
   * Deletes these messages, or moves them where the mailbox says. Succeeds only once the
   * server has committed the removal (POP3: after QUIT, which also ends the session).
   */
  readonly remove: (refs: ReadonlyArray<string>) => Effect.Effect<void, MailSourceError>
  /**
   * True when `remove` ends the session (POP3: deletions take effect at QUIT, RFC 1939 §6):
   * the caller then removes once, at the end of a poll.
   */
  readonly removalEndsSession?: boolean
  /**
   * Optional: waits for news, checking on its own (IMAP: one NOOP a check) first after
   * `firstCheckInMillis`, then every `everyMillis` from the start of the previous check. Ends
   * when a check finds the folder changed (a new message, an expunge, a flag change) since the
   * last `list` of this session began — or at once before the first `list`; fails when a check
   * fails. `onQuiet` is called after each check that found nothing.
   *
   * This is how an idle mailbox polls: the checks run on plain timers and promises, with none
   * of the actor's machinery per poll (a thousand idle mailboxes poll a hundred times a second).
   * The caller lists as usual once it ends, and does not wait like this while it has
   * unfinished work of its own.
   */
  readonly awaitChange?: (watch: ChangeWatch) => Effect.Effect<void, MailSourceError>
  /** Fails when the connection is lost between commands; never succeeds. */
  readonly closed: Effect.Effect<never, MailSourceError>
}

export class MailSource extends Context.Tag("mailintake/MailSource")<MailSource, {
  /** Connects and logs in; the session is closed (logged out) when the scope closes. */
  readonly open: Effect.Effect<MailSession, MailSourceError, Scope.Scope>
}>() {}
