/**
 * `mailintake events`: the event log, filtered. With --json, one event per line:
 * {"position":N,"mailbox":"ID","type":"MessageAccepted","at":"ISO-8601","data":{...}}
 */
import { Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Console, Duration, Effect, Option, Schema } from "effect"
import { EVENT_TYPES, type EventType, MailboxEvent, type StoredEvent } from "../domain/events.js"
import { EventLog } from "../eventlog/EventLog.js"
import { configOption, jsonOption, withEventLog } from "./shared.js"

const mailbox = Options.text("mailbox").pipe(Options.withDescription("only this mailbox id"), Options.optional)
const type = Options.text("type").pipe(
  Options.withDescription(`only events of this type; repeat for several (${EVENT_TYPES.join(", ")})`),
  Options.repeated,
  Options.mapEffect((types) => {
    const unknown = types.filter((type) => !EVENT_TYPES.includes(type as EventType))
    return unknown.length === 0
      ? Effect.succeed(types as ReadonlyArray<EventType>)
      : Effect.fail(HelpDoc.p(`unknown event type ${unknown.join(", ")}: one of ${EVENT_TYPES.join(", ")}`)).pipe(
        Effect.mapError((doc) => ValidationError.invalidValue(doc))
      )
  })
)
const after = Options.integer("after").pipe(Options.withDescription("only events after this position"), Options.optional)
const since = Options.date("since").pipe(Options.withDescription("only events at or after this time (ISO-8601)"), Options.optional)
const limit = Options.integer("limit").pipe(Options.withDescription("at most this many events"), Options.optional)
const follow = Options.boolean("follow").pipe(Options.withAlias("f"), Options.withDescription("keep printing new events as they are appended"))

const encode = Schema.encodeSync(MailboxEvent)

export const toJson = (stored: StoredEvent) => {
  const { _tag, ...data } = encode(stored.event) as { _tag: string }
  return { position: stored.position, mailbox: stored.stream, type: _tag, at: stored.at.toISOString(), data }
}

/** A one-line human form: the event's fields but the long ones. */
export const toLine = (stored: StoredEvent): string => {
  const { data, type } = toJson(stored)
  const fields = Object.entries(data)
    .filter(([key]) => key !== "body")
    .map(([key, value]) => `${key}=${typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value)}`)
    .join(" ")
  return `${String(stored.position).padStart(6)} ${stored.at.toISOString()} ${stored.stream} ${type} ${fields}`
}

export const events = Command.make(
  "events",
  { config: configOption, mailbox, type, after, since, limit, json: jsonOption, follow },
  (options) =>
    withEventLog(options.config, () =>
      Effect.gen(function*() {
        const log = yield* EventLog
        let position = Option.getOrElse(options.after, () => 0)
        let remaining = Option.getOrUndefined(options.limit)
        while (true) {
          const page = yield* log.read({
            stream: Option.getOrUndefined(options.mailbox),
            types: options.type,
            after: position,
            since: Option.getOrUndefined(options.since),
            limit: remaining === undefined ? 1000 : Math.min(remaining, 1000)
          })
          for (const stored of page) {
            yield* Console.log(options.json ? JSON.stringify(toJson(stored)) : toLine(stored))
            position = stored.position
          }
          if (remaining !== undefined) {
            remaining -= page.length
            if (remaining <= 0) return
          }
          if (page.length === 1000) continue
          if (!options.follow) return
          yield* Effect.sleep(Duration.millis(500))
        }
      }))
).pipe(Command.withDescription("print the event log, oldest first"))
