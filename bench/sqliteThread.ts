/**
 * `npx tsx bench/sqliteThread.ts` — what the event log costs the MAIN thread while a mailbox
 * drains, with the SQLite connection on the main thread and on its worker thread
 * (src/eventlog/sqliteThread/). Run `npm run build` first: the worker is dist/bundle/sqliteWorker.js.
 *
 * Appends what MailboxActor appends for 5,000 messages (bench/lib/corpus.ts) in batches of 100:
 * per batch one append of 100 MessageRetrieved with their raw bytes, one of 100 MessageAccepted
 * (a text body of a few KB each), one of 100 MessageRemoved — 150 transactions, each committed
 * with synchronous=FULL. Reports, for the appends alone (the database is open and warm):
 * - wall time;
 * - main thread busy: `performance.eventLoopUtilization()`'s active time, i.e. the time the
 *   event loop was not waiting for I/O (with SQLite on the main thread: all of it);
 * - main thread CPU (user + sys of the main thread alone, from /proc/self/task/<pid>/stat, 10 ms
 *   ticks) and the process's CPU (every thread: the worker, libuv, GC helpers);
 * - the longest the event loop was blocked at once (the longest gap between two runs of a 1 ms
 *   timer, less the 1 ms): how long an IMAP socket's data could wait to be read.
 *
 * Options: --messages 5000, --rounds 2 (each round runs main then worker, on fresh files),
 * --only main|worker, --cpu-prof (the main thread's top functions while appending, by self time).
 */
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { Session } from "node:inspector/promises"
import { performance } from "node:perf_hooks"
import { pathToFileURL } from "node:url"
import { MailboxConnected, type MailboxEvent, MessageAccepted, MessageRemoved, MessageRetrieved } from "../src/domain/events.js"
import type * as Database from "../src/eventlog/Database.js"
import { type Blob, EventLog } from "../src/eventlog/EventLog.js"
import { makeCorpus } from "./lib/corpus.js"
import { summarize } from "./lib/cpuprofile.js"

const option = (name: string, fallback: number): number => {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`))
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3))
}
const MESSAGES = option("messages", 5000)
const ROUNDS = option("rounds", 2)
const ONLY = process.argv.find((a) => a.startsWith("--only="))?.slice("--only=".length)
const CPU_PROF = process.argv.includes("--cpu-prof")
const BATCH = 100

const workerScript = pathToFileURL(resolve(import.meta.dirname, "../dist/bundle/sqliteWorker.js"))
if (!existsSync(workerScript)) throw new Error(`${workerScript.pathname} is missing: run npm run build first`)

/** The longest time between two runs of a 1 ms timer, less the 1 ms, until stopped. */
const blockProbe = () => {
  let last = performance.now()
  let longest = 0
  let timer: NodeJS.Timeout
  const tick = () => {
    const now = performance.now()
    longest = Math.max(longest, now - last - 1)
    last = now
    timer = setTimeout(tick, 1)
  }
  timer = setTimeout(tick, 1)
  return () => {
    clearTimeout(timer)
    return Math.max(longest, performance.now() - last - 1)
  }
}

/** The main thread's CPU time in ms (utime + stime of the task whose id is the pid). */
const mainThreadCpuMs = (): number => {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  // Fields 14 and 15 of stat(5), counted from after the command name (field 3 is index 0).
  return (Number(fields[11]) + Number(fields[12])) * 10
}

interface Batch {
  readonly retrieved: ReadonlyArray<MailboxEvent>
  readonly blobs: ReadonlyArray<Blob>
  readonly accepted: ReadonlyArray<MailboxEvent>
  readonly removed: ReadonlyArray<MailboxEvent>
}

/** The events and blobs of every batch, made before anything is measured. */
const prepare = (): { batches: ReadonlyArray<Batch>; bytes: number } => {
  const corpus = makeCorpus(MESSAGES)
  const batches: Array<Batch> = []
  for (let start = 0; start < corpus.messages.length; start += BATCH) {
    const raws = corpus.messages.slice(start, start + BATCH)
    const refs = raws.map((_, i) => `1:${start + i + 1}`)
    const shas = raws.map((raw) => createHash("sha256").update(raw).digest("hex"))
    const messageIds = raws.map((_, i) => `<bench-${start + i}@example.com>`)
    batches.push({
      retrieved: raws.map((raw, i) => new MessageRetrieved({ ref: refs[i]!, sha256: shas[i]!, size: raw.byteLength, messageId: messageIds[i]! })),
      blobs: raws.map((raw, i) => ({ sha256: shas[i]!, bytes: raw })),
      accepted: raws.map((raw, i) =>
        new MessageAccepted({
          ref: refs[i]!,
          sha256: shas[i]!,
          messageId: messageIds[i]!,
          from: "Alice Example <alice@example.com>",
          to: ["support@example.com"],
          cc: [],
          subject: `Bench message ${start + i}`,
          date: "2024-05-01T10:00:00.000Z",
          attachments: [],
          // A few KB of text, as a parsed body is.
          body: raw.subarray(0, Math.min(raw.byteLength, 2048 + ((start + i) % 4096))).toString("latin1"),
          crlfSha256: shas[i]!
        })
      ),
      removed: refs.map((ref) => new MessageRemoved({ ref, how: "delete" }))
    })
  }
  return { batches, bytes: corpus.totalBytes }
}

interface Result {
  readonly wallMs: number
  readonly busyMs: number
  readonly mainCpuMs: number
  readonly processCpuMs: number
  readonly maxBlockedMs: number
}

const run = (thread: "main" | "worker", batches: ReadonlyArray<Batch>): Promise<Result> => {
  const dir = mkdtempSync(join(tmpdir(), "mailintake-bench-sqlite-thread-"))
  const options: Database.Options = thread === "worker" ? { thread, workerScript } : {}
  const program = Effect.gen(function*() {
    const log = yield* EventLog
    // Warm: the statements prepared, the JIT past its first runs, the file grown a little.
    for (let i = 0; i < 5; i++) {
      yield* log.append({ stream: "warm-up", expectedVersion: i, events: [new MailboxConnected({ server: "imap://warm" })] })
    }
    const session = CPU_PROF ? new Session() : undefined
    if (session !== undefined) {
      session.connect()
      yield* Effect.promise(() => session.post("Profiler.enable"))
      yield* Effect.promise(() => session.post("Profiler.start"))
    }
    const stopProbe = blockProbe()
    const elu = performance.eventLoopUtilization()
    const cpu = process.cpuUsage()
    const mainCpu = mainThreadCpuMs()
    const started = performance.now()
    let version = 0
    for (const batch of batches) {
      for (const [events, blobs] of [[batch.retrieved, batch.blobs], [batch.accepted, undefined], [batch.removed, undefined]] as const) {
        version = (yield* log.append({ stream: "bench", expectedVersion: version, events, blobs })).version
        // The daemon waits for the network between appends: let the event loop turn, as it would.
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      }
    }
    const wallMs = performance.now() - started
    const used = performance.eventLoopUtilization(elu)
    const processCpu = process.cpuUsage(cpu)
    const maxBlockedMs = stopProbe()
    if (session !== undefined) {
      const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
      const file = join(dir, `${thread}.cpuprofile`)
      writeFileSync(file, JSON.stringify(profile))
      const summary = summarize(file, 25)
      console.log(`${thread}: main thread profile, ${summary.totalMs.toFixed(0)} ms`)
      for (const p of summary.packages.slice(0, 12)) console.log(`  ${p.name.padEnd(40)} ${p.selfMs.toFixed(0).padStart(6)} ms ${p.percent.toFixed(1)} %`)
      for (const f of summary.functions) console.log(`  ${f.name.slice(0, 40).padEnd(40)} ${f.selfMs.toFixed(0).padStart(6)} ms ${f.percent.toFixed(1)} %  ${f.where}`)
      session.disconnect()
    }
    return {
      wallMs,
      busyMs: used.active,
      mainCpuMs: mainThreadCpuMs() - mainCpu,
      processCpuMs: (processCpu.user + processCpu.system) / 1000,
      maxBlockedMs
    } satisfies Result
  })
  return Effect.runPromise(program.pipe(Effect.provide(EventLog.at(join(dir, "events.db"), options)))).finally(() =>
    rmSync(dir, { recursive: true, force: true })
  )
}

const { batches, bytes } = prepare()
console.log(`${MESSAGES} messages (${(bytes / 1024 / 1024).toFixed(1)} MiB raw) in batches of ${BATCH}: ${batches.length * 3} appends`)
console.log("thread  wall ms  main busy ms  main CPU ms  process CPU ms  max blocked ms  main busy µs/message")
for (let round = 0; round < ROUNDS; round++) {
  for (const thread of (["main", "worker"] as const).filter((thread) => ONLY === undefined || thread === ONLY)) {
    const r = await run(thread, batches)
    console.log(
      [
        thread.padEnd(6),
        r.wallMs.toFixed(0).padStart(7),
        r.busyMs.toFixed(0).padStart(13),
        r.mainCpuMs.toFixed(0).padStart(12),
        r.processCpuMs.toFixed(0).padStart(15),
        r.maxBlockedMs.toFixed(1).padStart(15),
        ((r.busyMs * 1000) / MESSAGES).toFixed(0).padStart(21)
      ].join(" ")
    )
  }
}
