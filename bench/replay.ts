/**
 * `npm run bench:replay` — the event log at scale, through the project's own `EventLog`
 * service (src/eventlog/EventLog.ts) on its real SQLite database (WAL, synchronous=FULL,
 * migrations: src/eventlog/Database.ts):
 *
 * 1. Appends 1,000,000 events (default) with group commit: `appendAll` of 100 events per
 *    transaction (what one mailbox step writes) and of 1,000, each into a fresh database.
 *    Events: MailboxConnected, then per message MessageRetrieved, MessageAccepted (a realistic
 *    summary: addresses, subject, date, attachments, a text body of 0.3–1.5 KB) and
 *    MessageRemoved, in the daemon's order (100-message batches), for ~333,000 messages in 4
 *    streams. Raw message blobs are skipped (replay never reads them).
 * 2. Without group commit: one event per transaction, on a 5,000-event sample (an fsync per
 *    commit), extrapolated to 1,000,000 — the figure says so.
 * 3. Replays every stream with `EventLog.replay` from its first event (no snapshot: the log has
 *    none), `--rounds` times over, and reports per stream and per round; target: under 10 s for
 *    1,000,000 events, judged on the median round. Replay reads the `events_replay` index
 *    (migrations/0003_replay_index.sql: MessageAccepted without its summary and body) and folds
 *    without the Schema decode. Also reported, once: reading every event fully decoded
 *    (`readStream`: whole payloads, Schema classes) without folding, what replay used to start from.
 *
 * Options (argv `--name=value` or env `BENCH_NAME`): --events 1000000, --streams 4,
 * --single 5000 (sample for one event per transaction), --batches 100,1000, --rounds 3, --keep,
 * --replay-index false (drop the `events_replay` index before appending: what it costs appends,
 * and replay reading the table instead),
 * --cpu-prof (profile the replay rounds alone with node:inspector: top functions by self time).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Stream } from "effect"
import { createHash } from "node:crypto"
import { rmSync, statSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { join } from "node:path"
import {
  MailboxConnected,
  MessageAccepted,
  type MailboxEvent,
  MessageRemoved,
  MessageRetrieved
} from "../src/domain/events.js"
import { EventLog } from "../src/eventlog/EventLog.js"
import { type Cell, flag, log, machine, mb, numberOption, option, scratchDir, table, writeResults } from "./lib/common.js"
import { prng } from "./lib/corpus.js"
import { summarize } from "./lib/cpuprofile.js"

const EVENTS = numberOption("events", 1_000_000)
const STREAMS = Math.max(1, numberOption("streams", 4))
const SINGLE = numberOption("single", 5_000)
const BATCHES = option("batches", "100,1000").split(",").map(Number).filter((n) => n > 0)
const KEEP = flag("keep")
const CPU_PROF = flag("cpu-prof")
const ROUNDS = Math.max(1, numberOption("rounds", 3))
const REPLAY_INDEX = option("replay-index", "true") !== "false"
/** Messages are processed by the daemon in steps of this many (MailboxActor BATCH_MESSAGES). */
const STEP = 100
const TARGET_SECONDS = 10

const LOREM =
  "Dear support team, I am writing about my order which has not arrived yet. The tracking number " +
  "says it left the warehouse last week but nothing has changed since. Could you please check with " +
  "the carrier and let me know when I can expect it? I also noticed that the invoice lists a second " +
  "item that I did not order; please correct it and send me a new invoice. Thank you in advance for " +
  "your help, and have a good day. Kind regards, a customer who would like an answer this week. "

const sha = (text: string): string => createHash("sha256").update(text).digest("hex")

/**
 * The events of one stream, in the order the daemon writes them, produced lazily so a million
 * events never sit in memory at once.
 */
function* streamEvents(stream: number, count: number): Generator<MailboxEvent> {
  if (count <= 0) return
  const random = prng(1000 + stream)
  const server = "imaps://mail.example.com:993/INBOX"
  yield new MailboxConnected({ server })
  const total = Math.floor((count - 1) / 3)
  for (let first = 0; first < total; first += STEP) {
    const batch = Array.from({ length: Math.min(STEP, total - first) }, (_, k) => {
      const n = first + k
      const ref = `1700000000:${n + 1}`
      return { n, ref, sha256: sha(`${stream}/${n}`), messageId: `<msg-${stream}-${n}@customer${n % 97}.example>` }
    })
    for (const m of batch) {
      yield new MessageRetrieved({ ref: m.ref, sha256: m.sha256, size: 2_000 + Math.floor(random() * 40_000), messageId: m.messageId })
    }
    for (const m of batch) {
      const bodyLength = 300 + Math.floor(random() * 1_200)
      const attachments = random() < 0.4
        ? [{ filename: `invoice-${m.n}.pdf`, contentType: "application/pdf", size: 10_000 + Math.floor(random() * 90_000) }]
        : []
      yield new MessageAccepted({
        ref: m.ref,
        sha256: m.sha256,
        messageId: m.messageId,
        from: `customer${m.n % 997}@customer${m.n % 97}.example`,
        to: ["support@example.com"],
        cc: random() < 0.2 ? ["sales@example.com"] : [],
        subject: `Re: order ${100000 + m.n} has not arrived`,
        date: new Date(Date.UTC(2024, 0, 1) + m.n * 60_000).toISOString(),
        attachments,
        body: LOREM.repeat(4).slice(0, bodyLength).replace(/\. /g, ".\r\n"),
        crlfSha256: m.sha256
      })
    }
    for (const m of batch) yield new MessageRemoved({ ref: m.ref, how: "delete" })
  }
  // The count is exact: a reconnection or two fill what three events per message leave over.
  for (let k = 1 + 3 * total; k < count; k++) yield new MailboxConnected({ server })
}

const streamName = (s: number) => `mailbox-${String(s + 1).padStart(2, "0")}`

/** How many events each stream gets (they add up to `total`). */
const perStream = (total: number): Array<number> =>
  Array.from({ length: STREAMS }, (_, s) => Math.floor(total / STREAMS) + (s < total % STREAMS ? 1 : 0))

interface AppendFigures {
  readonly batch: number
  readonly events: number
  readonly seconds: number
  readonly eventsPerSecond: number
  readonly transactions: number
  readonly databaseMiB: number
}

/** Appends `total` events, `batch` per appendAll (one transaction), streams taking turns. */
const appendRun = (file: string, total: number, batch: number) =>
  Effect.gen(function*() {
    const eventLog = yield* EventLog
    if (!REPLAY_INDEX) yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP INDEX IF EXISTS events_replay`)
    const counts = perStream(total)
    const generators = counts.map((count, s) => streamEvents(s, count))
    const versions = counts.map(() => 0)
    let transactions = 0
    let appended = 0
    let nextReport = 100_000
    const started = performance.now()
    let live = generators.length
    while (live > 0) {
      live = 0
      for (let s = 0; s < generators.length; s++) {
        const events: Array<MailboxEvent> = []
        for (let k = 0; k < batch; k++) {
          const next = generators[s]!.next()
          if (next.done) break
          events.push(next.value)
        }
        if (events.length === 0) continue
        live++
        yield* eventLog.appendAll([{ stream: streamName(s), expectedVersion: versions[s]!, events }])
        versions[s]! += events.length
        transactions++
        appended += events.length
        if (appended >= nextReport) {
          log(`  batch ${batch}: ${appended.toLocaleString("en-US")} events, ${(appended / ((performance.now() - started) / 1000)).toFixed(0)} events/s`)
          nextReport += 100_000
        }
      }
    }
    const seconds = (performance.now() - started) / 1000
    return {
      batch,
      events: appended,
      seconds,
      eventsPerSecond: appended / seconds,
      transactions,
      databaseMiB: mb(statSync(file).size)
    } satisfies AppendFigures
  })

const main = async () => {
  const machineBefore = machine()
  const dir = scratchDir("replay")
  const appendResults: Array<AppendFigures & { extrapolatedSecondsFor1M: number | null }> = []
  let replayFile: string | undefined
  try {
    for (const batch of BATCHES) {
      const file = join(dir, `events-batch${batch}.db`)
      log(`appending ${EVENTS.toLocaleString("en-US")} events, ${batch} per transaction, into ${file}`)
      const figures = await Effect.runPromise(appendRun(file, EVENTS, batch).pipe(Effect.provide(EventLog.at(file))))
      appendResults.push({ ...figures, extrapolatedSecondsFor1M: null })
      log(`  ${figures.seconds.toFixed(1)} s, ${figures.eventsPerSecond.toFixed(0)} events/s`)
      if (replayFile === undefined || batch === Math.max(...BATCHES)) replayFile = file
    }
    if (SINGLE > 0) {
      const file = join(dir, "events-single.db")
      log(`appending ${SINGLE.toLocaleString("en-US")} events, one per transaction (sample, extrapolated)`)
      const figures = await Effect.runPromise(appendRun(file, SINGLE, 1).pipe(Effect.provide(EventLog.at(file))))
      appendResults.push({ ...figures, extrapolatedSecondsFor1M: 1_000_000 / figures.eventsPerSecond })
      log(`  ${figures.seconds.toFixed(1)} s, ${figures.eventsPerSecond.toFixed(0)} events/s`)
    }
    if (replayFile === undefined) throw new Error("no batch size given: nothing to replay")

    log(`replaying ${replayFile}`)
    const file = replayFile
    const session = CPU_PROF ? new Session() : undefined
    const replayed = await Effect.runPromise(
      Effect.gen(function*() {
        const eventLog = yield* EventLog
        const sql = yield* SqlClient.SqlClient
        const streams = yield* eventLog.streams
        const sizes = yield* sql<{ name: string; mib: number }>`SELECT name, sum(pgsize) / 1048576.0 AS mib FROM dbstat
          WHERE name IN ('events', 'events_replay') GROUP BY name`
        // Every event fully decoded, not folded: the read replay used to do (whole payloads,
        // Schema classes). Once, before the replay rounds.
        const decoded: Array<{ stream: string; events: number; seconds: number }> = []
        for (const stream of streams) {
          const started = performance.now()
          const events = yield* Stream.runCount(eventLog.readStream(stream))
          decoded.push({ stream, events, seconds: (performance.now() - started) / 1000 })
          log(`  ${stream}: ${events} events read and Schema-decoded in ${decoded.at(-1)!.seconds.toFixed(2)} s`)
        }
        if (session !== undefined) {
          session.connect()
          yield* Effect.promise(() => session.post("Profiler.enable"))
          yield* Effect.promise(() => session.post("Profiler.start"))
        }
        const rounds: Array<Array<{ stream: string; events: number; seconds: number; accepted: number; removed: number; inFlight: number }>> = []
        for (let round = 1; round <= ROUNDS; round++) {
          const results: (typeof rounds)[number] = []
          for (const stream of streams) {
            const started = performance.now()
            const state = yield* eventLog.replay(stream)
            const seconds = (performance.now() - started) / 1000
            results.push({ stream, events: state.version, seconds, accepted: state.counts.accepted, removed: state.counts.removed, inFlight: state.inFlight.size })
          }
          rounds.push(results)
          log(`  round ${round}: ${results.reduce((n, r) => n + r.events, 0)} events replayed in ${results.reduce((n, r) => n + r.seconds, 0).toFixed(2)} s (load average ${machine().loadAverage.join(" / ")})`)
        }
        return { decoded, rounds, sizes: Object.fromEntries(sizes.map((row) => [row.name, Number(row.mib)])) }
      }).pipe(Effect.provide(EventLog.at(file)))
    )
    let profile: ReturnType<typeof summarize> | undefined
    if (session !== undefined) {
      const { profile: data } = await session.post("Profiler.stop")
      const profileFile = join(dir, "replay.cpuprofile")
      writeFileSync(profileFile, JSON.stringify(data))
      profile = summarize(profileFile, 20)
      session.disconnect()
    }
    const totals = replayed.rounds.map((results) => results.reduce((n, r) => n + r.seconds, 0))
    const sorted = [...totals].sort((a, b) => a - b)
    const medianRound = totals.indexOf(sorted[Math.floor((sorted.length - 1) / 2)]!)
    const median = replayed.rounds[medianRound]!
    const totalEvents = median.reduce((n, r) => n + r.events, 0)
    const totalReplay = totals[medianRound]!
    const totalDecoded = replayed.decoded.reduce((n, r) => n + r.seconds, 0)
    const perMillion = (seconds: number) => (seconds * 1_000_000) / totalEvents
    // Per 1,000,000 events (the run may be smaller with --events).
    const pass = perMillion(totalReplay) < TARGET_SECONDS
    const machineAfter = machine()

    let report = `\nReplay: ${totalEvents.toLocaleString("en-US")} events in ${STREAMS} streams (${median.reduce((n, r) => n + r.accepted, 0).toLocaleString("en-US")} messages accepted and removed), through src/eventlog/EventLog.ts on SQLite (WAL, synchronous=FULL). Every replay starts from the first event: the log has no snapshots.\n`
    report += `Machine: ${machineBefore.cpus} cores, load average ${machineBefore.loadAverage.join(" / ")} at start, ${machineAfter.loadAverage.join(" / ")} at the end (shared with other work).\n`
    if (!REPLAY_INDEX) report += `Run with --replay-index=false: the logs have no events_replay index (appends do not maintain it; replay reads the events table).\n`
    report += `Database of the replayed log: events table ${(replayed.sizes["events"] ?? 0).toFixed(0)} MiB, events_replay index ${(replayed.sizes["events_replay"] ?? 0).toFixed(0)} MiB.\n`
    const appendRows: Array<Array<Cell>> = appendResults.map((a) => [
      a.batch === 1 ? "1 (no group commit)" : String(a.batch),
      a.events,
      a.transactions,
      a.seconds,
      a.eventsPerSecond,
      a.extrapolatedSecondsFor1M === null ? a.seconds * (1_000_000 / a.events) : a.extrapolatedSecondsFor1M,
      a.batch === 1 ? `sample of ${a.events}, extrapolated` : "measured",
      a.databaseMiB
    ])
    report += table("Append (EventLog.appendAll)", ["events per transaction", "events", "transactions", "seconds", "events/s", "s per 1M events", "how", "db MiB"], appendRows)
    const replayRows: Array<Array<Cell>> = median.map((r, i) => [r.stream, r.events, replayed.decoded[i]?.seconds ?? "", r.seconds, r.events / r.seconds, r.accepted, r.inFlight])
    replayRows.push(["total", totalEvents, totalDecoded, totalReplay, totalEvents / totalReplay, median.reduce((n, r) => n + r.accepted, 0), median.reduce((n, r) => n + r.inFlight, 0)])
    report += table(`Replay from the first event (EventLog.replay per stream, median of ${ROUNDS} rounds)`, ["stream", "events", "read + Schema decode s (no fold)", "replay s", "events/s", "accepted", "in flight"], replayRows)
    report += table("Replay rounds", ["round", "events", "seconds", "s per 1M events"], totals.map((seconds, i) => [i + 1, totalEvents, seconds, perMillion(seconds)]))
    report += table("Target", ["target", "measured", "verdict"], [[
      `replay of 1,000,000 events < ${TARGET_SECONDS} s`,
      `${totalReplay.toFixed(1)} s for ${totalEvents.toLocaleString("en-US")} (median of ${ROUNDS}; rounds ${totals.map((t) => t.toFixed(1)).join(", ")} s)`,
      `${pass ? "PASS" : "FAIL"} (${perMillion(totalReplay).toFixed(1)} s per 1,000,000 events: ${(perMillion(totalReplay) / TARGET_SECONDS).toFixed(2)} × the target)`
    ]])
    if (profile !== undefined) {
      report += `\nReplay rounds under the V8 profiler: ${profile.totalMs} ms of samples.\n`
      report += table("Self time by package", ["where", "self ms", "%"], profile.packages.map((p) => [p.name, p.selfMs, p.percent]))
      report += table("Top functions by self time", ["function", "where", "self ms", "%"], profile.functions.map((f) => [f.name, f.where, f.selfMs, f.percent]))
    }
    process.stdout.write(report)
    const out = writeResults("replay", {
      benchmark: "replay",
      machine: machineBefore,
      machineAfter,
      options: { events: EVENTS, streams: STREAMS, single: SINGLE, batches: BATCHES, rounds: ROUNDS, replayIndex: REPLAY_INDEX },
      append: appendResults,
      profile: profile ?? null,
      replay: {
        snapshots: false,
        decoded: replayed.decoded,
        rounds: replayed.rounds,
        medianRound: medianRound + 1,
        totalEvents,
        totalReplaySeconds: totalReplay,
        totalReadDecodeSeconds: totalDecoded,
        databaseMiB: replayed.sizes,
        targetSeconds: TARGET_SECONDS,
        pass
      },
      table: report
    })
    process.stdout.write(`\nresults: ${out}\n`)
  } finally {
    if (KEEP) log(`kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }
}

await main()
