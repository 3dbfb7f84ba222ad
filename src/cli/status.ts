/**
 * `mailintake status`: per mailbox, its connection state, last poll, counts and last error,
 * rebuilt by replaying each mailbox's stream.
 */
import { Command } from "@effect/cli"
import { Clock, Console, Effect } from "effect"
import { CONFIG_STREAM } from "../domain/events.js"
import type { MailboxState } from "../domain/state.js"
import { EventLog } from "../eventlog/EventLog.js"
import { configOption, jsonOption, withEventLog } from "./shared.js"

export interface MailboxStatus {
  readonly mailbox: string
  readonly configuration: string | null
  readonly connection: string
  readonly since: string | null
  readonly lastPoll: string | null
  /**
   * Connected by the log, but no poll recorded for three polling intervals: the daemon is
   * probably not running (the log cannot say "disconnected" for a process that was killed).
   */
  readonly stale: boolean
  readonly counts: MailboxState["counts"] & { readonly pending: number; readonly awaitingQuarantine: number }
  readonly quarantinedByReason: MailboxState["quarantinedByReason"]
  readonly lastError: string | null
  readonly lastErrorAt: string | null
}

const iso = (date: Date | undefined) => (date === undefined ? null : date.toISOString())

/** Poll times reach the database every few seconds (EventLog's heartbeat flush). */
const HEARTBEAT_SLACK_MILLIS = 10_000

export const describeStatus = (
  mailbox: string,
  configuration: string | undefined,
  state: MailboxState,
  lastPoll: Date | undefined,
  pollingIntervalSeconds: number | undefined,
  now: Date
): MailboxStatus => {
  const pending = [...state.inFlight.values()]
  const since = lastPoll ?? state.connection.since
  const stale = state.connection.state === "connected" && pollingIntervalSeconds !== undefined && since !== undefined &&
    now.getTime() - since.getTime() > 3 * pollingIntervalSeconds * 1000 + HEARTBEAT_SLACK_MILLIS
  return {
    mailbox,
    configuration: configuration ?? null,
    connection: state.connection.state === "stopped"
      ? `stopped (${state.connection.stoppedReason})`
      : state.connection.state,
    since: iso(state.connection.since),
    lastPoll: iso(lastPoll),
    stale,
    counts: {
      ...state.counts,
      pending: pending.length,
      awaitingQuarantine: pending.filter((entry) => entry.stage === "quarantine-requested").length
    },
    quarantinedByReason: state.quarantinedByReason,
    lastError: state.connection.lastError ?? null,
    lastErrorAt: iso(state.connection.lastErrorAt)
  }
}

const table = (rows: ReadonlyArray<MailboxStatus>): string => {
  const header = ["MAILBOX", "CONNECTION", "LAST POLL", "RETRIEVED", "ACCEPTED", "QUARANTINED", "REMOVED", "PENDING", "LAST ERROR"]
  const lines = rows.map((row) => [
    row.mailbox,
    row.connection,
    (row.lastPoll ?? "never") + (row.stale ? " (stale: daemon not running?)" : ""),
    String(row.counts.retrieved),
    String(row.counts.accepted),
    String(row.counts.quarantined) +
    (Object.keys(row.quarantinedByReason).length === 0
      ? ""
      : ` (${Object.entries(row.quarantinedByReason).map(([reason, n]) => `${reason}:${n}`).join(" ")})`),
    String(row.counts.removed),
    String(row.counts.pending) + (row.counts.awaitingQuarantine > 0 ? ` (${row.counts.awaitingQuarantine} to quarantine)` : ""),
    row.lastError === null ? "" : `${row.lastErrorAt} ${row.lastError}`
  ])
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i]!.length)))
  return [header, ...lines]
    .map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd())
    .join("\n")
}

export const status = Command.make("status", { config: configOption, json: jsonOption }, ({ config, json }) =>
  withEventLog(config, (loaded) =>
    Effect.gen(function*() {
      const log = yield* EventLog
      const configured = new Map(loaded.plan.mailboxes.map((plan) => [plan.id, plan]))
      const streams = new Set([...configured.keys(), ...(yield* log.streams).filter((stream) => stream !== CONFIG_STREAM)])
      const polls = yield* log.lastPolls
      const rows: Array<MailboxStatus> = []
      for (const stream of [...streams].sort()) {
        const plan = configured.get(stream)
        rows.push(describeStatus(
          stream,
          plan?.configuration,
          yield* log.replay(stream),
          polls.get(stream),
          plan?.pollingIntervalSeconds,
          new Date(yield* Clock.currentTimeMillis)
        ))
      }
      yield* Console.log(json ? JSON.stringify(rows, null, 2) : table(rows))
    }))).pipe(Command.withDescription("show each mailbox's connection, last poll, counts and last error"))
