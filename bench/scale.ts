/**
 * `npm run bench:scale` — one daemon (`mailintake run`, no --once) with M IMAP mailboxes
 * (default 1,000 Dovecot users; `--m 100` for a quick run), polling every 10 s:
 *
 * 1. Start-up: time from spawn until every mailbox has a `MailboxConnected` event.
 * 2. Steady idle: the daemon's CPU (% of one core, from /proc/<pid>/stat) and RSS over 30 s,
 *    with Dovecot's own CPU beside it for scale.
 * 3. Trickle: one new message into a random mailbox every 100 ms for 30 s (seeded PRNG);
 *    latency = the `at` of its MessageAccepted − the moment it was put into the Maildir;
 *    p50 / p99 / max.
 * 4. Server restart: Dovecot `stop(); start()` under the connected daemon; logins per second
 *    counted from Dovecot's log (and from the daemon's MailboxConnected events), compared
 *    with what the jittered reconnect backoff allows: first retries spread uniformly over
 *    [0.8, 1.2] × reconnectIntervalSeconds after the drop, i.e. M ÷ (0.4 × interval) per
 *    second on average (+ 3 standard deviations of a Poisson count for a one-second bin).
 *
 * Targets (issue 7): all connected within 60 s, idle CPU < 5 % of one core, RSS < 400 MB,
 * p99 latency < poll interval + 2 s, no login storm (peak logins/s within the backoff's
 * allowance).
 *
 * Options: --m 1000, --poll 10, --reconnect 30 (s), --tls implicit|none, --idle 30 (s),
 * --trickle 30 (s; 0 skips it), --every 100 (ms), --restart false (skips it), --use-dist, --keep,
 * --cpu-prof (the daemon runs under `node --cpu-prof` for its whole life; top functions after it
 * exits, for its whole life and for the idle window alone — run it with `--trickle 0 --restart
 * false` to see what idling costs), --heap-snapshot (one V8 heap snapshot of the daemon right after
 * the idle window, left in the scratch directory: use it with --keep).
 */
import Database from "better-sqlite3"
import { type ChildProcess, spawn } from "node:child_process"
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { smtpQuarantine, writeConfig } from "../test/support/cli.js"
import { startDovecot } from "../test/support/dovecot.js"
import { plainMessage } from "../test/support/messages.js"
import { startSmtpServer } from "../test/support/smtpServer.js"
import {
  buildDaemon,
  type Cell,
  ensureDovecotInstalled,
  flag,
  log,
  machine,
  numberOption,
  option,
  percentile,
  scratchDir,
  sleep,
  table,
  writeResults
} from "./lib/common.js"
import { prng } from "./lib/corpus.js"
import { summarize } from "./lib/cpuprofile.js"
import { dovecotCpuBetween, dovecotProcessCpu } from "./lib/dovecotCpu.js"
import { cpuSecondsOf, rssKiB } from "./lib/measure.js"

const M = Math.max(1, Math.round(numberOption("m", 1000)))
const POLL = numberOption("poll", 10)
const RECONNECT = numberOption("reconnect", 30)
const TLS = option("tls", "implicit") as "implicit" | "none"
const IDLE_SECONDS = numberOption("idle", 30)
const TRICKLE_SECONDS = numberOption("trickle", 30)
const EVERY_MS = numberOption("every", 100)
const KEEP = flag("keep")
const CPU_PROF = flag("cpu-prof")
const HEAP_SNAPSHOT = flag("heap-snapshot")
const RESTART = option("restart", "true") !== "false"
const CONNECT_TARGET_SECONDS = 60
const CPU_TARGET_PERCENT = 5
const RSS_TARGET_MB = 400
/** Bounds on every wait: the benchmark always ends. */
const CONNECT_BOUND_MS = 300_000
const DRAIN_BOUND_MS = (POLL + 60) * 1000
const RECONNECT_BOUND_MS = (RECONNECT * 10 * 1.2 + 60) * 1000

const userName = (i: number) => `user${String(i + 1).padStart(4, "0")}@example.test`
const mailboxId = (i: number) => `mb${String(i + 1).padStart(4, "0")}`

/** Read-only queries on the daemon's event log while it runs (WAL: readers never block it). */
class LogReader {
  private db: Database.Database | undefined
  constructor(private readonly file: string) {}
  private open(): Database.Database | undefined {
    if (this.db === undefined && existsSync(this.file)) {
      try {
        this.db = new Database(this.file, { readonly: true, fileMustExist: true })
        this.db.pragma("busy_timeout = 5000")
      } catch {
        this.db = undefined
      }
    }
    return this.db
  }
  connectedSince(position: number): number {
    try {
      const row = this.open()?.prepare(
        "SELECT COUNT(DISTINCT stream) AS n FROM events WHERE type = 'MailboxConnected' AND position > ?"
      ).get(position) as { n: number } | undefined
      return row?.n ?? 0
    } catch {
      return 0
    }
  }
  maxPosition(): number {
    const row = this.open()?.prepare("SELECT COALESCE(MAX(position), 0) AS p FROM events").get() as { p: number } | undefined
    return row?.p ?? 0
  }
  count(type: string, after = 0): number {
    const row = this.open()?.prepare("SELECT COUNT(*) AS n FROM events WHERE type = ? AND position > ?").get(type, after) as { n: number } | undefined
    return row?.n ?? 0
  }
  connectedTimes(after: number): Array<number> {
    const rows = this.open()?.prepare("SELECT at FROM events WHERE type = 'MailboxConnected' AND position > ? ORDER BY position").all(after) as
      | Array<{ at: string }>
      | undefined
    return (rows ?? []).map((r) => Date.parse(r.at))
  }
  accepted(after: number): Map<string, number> {
    const rows = this.open()?.prepare(
      "SELECT json_extract(payload, '$.messageId') AS id, at FROM events WHERE type = 'MessageAccepted' AND position > ?"
    ).all(after) as Array<{ id: string; at: string }> | undefined
    return new Map((rows ?? []).map((r) => [r.id, Date.parse(r.at)]))
  }
  close() {
    this.db?.close()
  }
}

const waitFor = async (what: string, boundMs: number, check: () => boolean, everyMs = 250): Promise<boolean> => {
  const deadline = Date.now() + boundMs
  while (Date.now() < deadline) {
    if (check()) return true
    await sleep(everyMs)
  }
  log(`gave up waiting for ${what} after ${boundMs / 1000} s`)
  return check()
}

/** "Mar 01 11:40:47 imap-login: Info: Login: user=<...>" → logins per wall-clock second. */
const loginsPerSecond = (logText: string): Map<string, number> => {
  const perSecond = new Map<string, number>()
  for (const line of logText.split("\n")) {
    if (!/imap-login: (Info: )?Login: /.test(line)) continue
    const second = line.slice(0, 15)
    perSecond.set(second, (perSecond.get(second) ?? 0) + 1)
  }
  return perSecond
}

const peakPerSecond = (timesMs: ReadonlyArray<number>): { peak: number; spreadSeconds: number } => {
  if (timesMs.length === 0) return { peak: 0, spreadSeconds: 0 }
  const bins = new Map<number, number>()
  for (const t of timesMs) bins.set(Math.floor(t / 1000), (bins.get(Math.floor(t / 1000)) ?? 0) + 1)
  return { peak: Math.max(...bins.values()), spreadSeconds: (Math.max(...timesMs) - Math.min(...timesMs)) / 1000 }
}

/** V8's profile clock (CLOCK_MONOTONIC, µs): the same clock as process.hrtime. */
const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n)

/**
 * Writes a copy of a .cpuprofile that keeps only the samples taken within [fromMicros, toMicros]
 * (monotonic), so a phase (e.g. the idle window) can be summarized apart from start-up.
 */
const profileWindow = (file: string, fromMicros: number, toMicros: number, out: string): string => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as { samples: Array<number>; timeDeltas: Array<number>; startTime: number; endTime: number }
  const samples: Array<number> = []
  const timeDeltas: Array<number> = []
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0
    if (t >= fromMicros && t <= toMicros) {
      samples.push(profile.samples[i]!)
      timeDeltas.push(profile.timeDeltas[i] ?? 0)
    }
  }
  writeFileSync(out, JSON.stringify({ ...profile, samples, timeDeltas, startTime: fromMicros, endTime: toMicros }))
  return out
}

const main = async () => {
  await ensureDovecotInstalled()
  const build = buildDaemon()
  const machineBefore = machine()
  const users = Array.from({ length: M }, (_, i) => ({ user: userName(i), password: `pw-${i + 1}` }))
  log(`starting Dovecot with ${M} users`)
  const dovecot = await startDovecot({ name: "bench-scale", users })
  const smtp = await startSmtpServer()
  const dir = scratchDir("scale")
  const database = join(dir, "events.db")
  const config = writeConfig(dir, {
    database,
    defaults: { quarantine: smtpQuarantine(smtp) },
    configurations: [{
      name: "scale",
      usageType: "Production",
      integrationType: "IMAP",
      pollingIntervalSeconds: POLL,
      reconnectIntervalSeconds: RECONNECT,
      mailboxes: users.map((u, i) => ({
        id: mailboxId(i),
        host: "127.0.0.1",
        port: TLS === "implicit" ? dovecot.imapsPort : dovecot.imapPort,
        tls: TLS,
        ...(TLS === "implicit" ? { caFile: dovecot.caFile } : {}),
        user: u.user,
        password: u.password,
        connectTimeoutSeconds: 30
      }))
    }]
  })
  const reader = new LogReader(database)
  let daemon: ChildProcess | undefined
  const idleWindow = { from: 0, to: 0 }
  const figures: Record<string, unknown> = {}
  try {
    // 1. Start-up ------------------------------------------------------------------------------
    const out = openSync(join(dir, "daemon.log"), "w")
    const started = Date.now()
    const profileDir = join(dir, "profile")
    const nodeArgs = [
      ...(CPU_PROF ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : []),
      ...(HEAP_SNAPSHOT ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${dir}`] : [])
    ]
    daemon = spawn(process.execPath, [...nodeArgs, build.bin, "run", "--config", config], {
      env: { ...process.env, MAILINTAKE_LOG_LEVEL: "info" },
      stdio: ["ignore", out, out]
    })
    closeSync(out)
    const pid = daemon.pid!
    log(`daemon ${pid} started with ${M} mailboxes (${TLS === "implicit" ? "IMAP over implicit TLS" : "plain IMAP"}, poll ${POLL} s, reconnect ${RECONNECT} s)`)
    let lastReport = 0
    const allConnected = await waitFor("all mailboxes connected", CONNECT_BOUND_MS, () => {
      const n = reader.connectedSince(0)
      if (Date.now() - lastReport > 5000) {
        lastReport = Date.now()
        log(`  ${n} / ${M} connected after ${((Date.now() - started) / 1000).toFixed(1)} s`)
      }
      return n >= M
    })
    const connectSeconds = (Date.now() - started) / 1000
    const connectTimes = reader.connectedTimes(0)
    const startupFailures = reader.count("MailboxConnectionFailed")
    figures.startup = {
      allConnected,
      connected: reader.connectedSince(0),
      secondsUntilAllConnected: connectSeconds,
      firstToLastConnectedSeconds: connectTimes.length > 0 ? (Math.max(...connectTimes) - Math.min(...connectTimes)) / 1000 : null,
      connectionFailures: startupFailures,
      rssMiBAtAllConnected: rssKiB(pid) / 1024
    }
    log(`  all ${M} connected: ${allConnected} after ${connectSeconds.toFixed(1)} s (${startupFailures} connection failures)`)

    // 2. Steady idle ---------------------------------------------------------------------------
    log(`settling for one poll interval (${POLL} s), then measuring ${IDLE_SECONDS} s of idle`)
    await sleep(POLL * 1000)
    const positionBeforeIdle = reader.maxPosition()
    const cpu0 = cpuSecondsOf(pid)
    const dovecot0 = dovecotProcessCpu(dovecot)
    const idleStart = performance.now()
    idleWindow.from = monotonicMicros()
    const rss: Array<number> = []
    while (performance.now() - idleStart < IDLE_SECONDS * 1000) {
      rss.push(rssKiB(pid) / 1024)
      await sleep(1000)
    }
    idleWindow.to = monotonicMicros()
    const idleElapsed = (performance.now() - idleStart) / 1000
    const cpu1 = cpuSecondsOf(pid)
    const dovecot1 = dovecotProcessCpu(dovecot)
    const dovecotSeconds = dovecotCpuBetween(dovecot0, dovecot1)
    const idle = {
      seconds: idleElapsed,
      cpuPercentOfOneCore: ((cpu1 - cpu0) / idleElapsed) * 100,
      rssMiBAverage: rss.reduce((a, b) => a + b, 0) / rss.length,
      rssMiBMax: Math.max(...rss),
      dovecotCpuPercentOfOneCore: (dovecotSeconds / idleElapsed) * 100,
      dovecotProcesses: dovecot1.size,
      eventsWrittenWhileIdle: reader.maxPosition() - positionBeforeIdle
    }
    figures.idle = idle
    if (HEAP_SNAPSHOT) {
      // After the CPU window: writing a snapshot of a few hundred MB takes seconds of CPU.
      daemon.kill("SIGUSR2")
      await waitFor("the heap snapshot", 120_000, () => readdirSync(dir).some((f) => f.endsWith(".heapsnapshot") && statSync(join(dir, f)).size > 0), 1000)
      await sleep(5000)
      log(`  heap snapshot written in ${dir} (keep it with --keep)`)
    }
    log(`  idle: CPU ${idle.cpuPercentOfOneCore.toFixed(1)} % of a core, RSS ${idle.rssMiBAverage.toFixed(0)} MiB avg / ${idle.rssMiBMax.toFixed(0)} max; Dovecot ${idle.dovecotCpuPercentOfOneCore.toFixed(1)} %`)

    // 3. Trickle -------------------------------------------------------------------------------
    if (TRICKLE_SECONDS > 0) {
      const positionBeforeTrickle = reader.maxPosition()
      const random = prng(7)
      const seeded = new Map<string, number>()
      const total = Math.floor((TRICKLE_SECONDS * 1000) / EVERY_MS)
      log(`trickle: ${total} messages, one every ${EVERY_MS} ms into random mailboxes`)
      const trickleStart = Date.now()
      const seeding: Array<Promise<void>> = []
      for (let k = 0; k < total; k++) {
        const due = trickleStart + k * EVERY_MS
        const wait = due - Date.now()
        if (wait > 0) await sleep(wait)
        const user = userName(Math.floor(random() * M))
        const message = plainMessage(1_000_000 + k, { subject: `Trickle ${k}` })
        const id = `<test-plain-${1_000_000 + k}@example.test>`
        seeded.set(id, Date.now())
        seeding.push(dovecot.seed(user, [message]))
    }
    await Promise.all(seeding)
    await waitFor("every trickled message accepted", DRAIN_BOUND_MS, () => reader.accepted(positionBeforeTrickle).size >= total, 500)
    const accepted = reader.accepted(positionBeforeTrickle)
    const latencies = [...seeded].flatMap(([id, at]) => (accepted.has(id) ? [(accepted.get(id)! - at) / 1000] : [])).sort((a, b) => a - b)
    const latency = {
      messages: total,
      accepted: latencies.length,
      p50Seconds: percentile(latencies, 50),
      p99Seconds: percentile(latencies, 99),
      maxSeconds: latencies.at(-1) ?? NaN,
      targetP99Seconds: POLL + 2
    }
    figures.latency = latency
    log(`  latency p50 ${latency.p50Seconds.toFixed(2)} s, p99 ${latency.p99Seconds.toFixed(2)} s, max ${latency.maxSeconds.toFixed(2)} s (${latencies.length}/${total} accepted)`)
    }

    // 4. Restart -------------------------------------------------------------------------------
    if (RESTART) {
      const logOffset = statSync(dovecot.logFile).size
      const positionBeforeRestart = reader.maxPosition()
      log("restarting Dovecot under the daemon")
      const stopAt = Date.now()
      await dovecot.stop()
      await dovecot.start()
      const downSeconds = (Date.now() - stopAt) / 1000
      log(`  Dovecot back after ${downSeconds.toFixed(1)} s; waiting for ${M} reconnections`)
      const reconnected = await waitFor("all mailboxes reconnected", RECONNECT_BOUND_MS, () => reader.connectedSince(positionBeforeRestart) >= M, 500)
      const reconnectSeconds = (Date.now() - stopAt) / 1000
      await sleep(2000) // let the log catch up
      const logText = readFileSync(dovecot.logFile).subarray(logOffset).toString("utf8")
      const perSecond = loginsPerSecond(logText)
      const dovecotPeak = perSecond.size === 0 ? 0 : Math.max(...perSecond.values())
      const dovecotLogins = [...perSecond.values()].reduce((a, b) => a + b, 0)
      const eventTimes = reader.connectedTimes(positionBeforeRestart)
      const fromEvents = peakPerSecond(eventTimes)
      const lambda = M / (0.4 * RECONNECT)
      const allowed = Math.ceil(lambda + 3 * Math.sqrt(lambda))
      const restart = {
        dovecotDownSeconds: downSeconds,
        allReconnected: reconnected,
        reconnected: reader.connectedSince(positionBeforeRestart),
        secondsUntilAllReconnected: reconnectSeconds,
        connectionFailures: reader.count("MailboxConnectionFailed", positionBeforeRestart),
        dovecotLogins,
        peakLoginsPerSecondDovecotLog: dovecotPeak,
        loginsPerSecondDovecotLog: Object.fromEntries([...perSecond].map(([k, v]) => [k.slice(7), v])),
        peakConnectedPerSecondEvents: fromEvents.peak,
        reconnectSpreadSeconds: fromEvents.spreadSeconds,
        backoffAverageRate: lambda,
        backoffAllowedPeak: allowed,
        withoutJitterPeak: M,
        pass: reconnected && dovecotPeak <= allowed
    }
    figures.restart = restart
    log(`  reconnected ${restart.reconnected}/${M} in ${reconnectSeconds.toFixed(1)} s; peak ${dovecotPeak} logins/s (Dovecot log), allowed ${allowed}`)
    }
  } finally {
    if (daemon !== undefined && daemon.exitCode === null) {
      const exited = new Promise<void>((resolve) => daemon!.once("exit", () => resolve()))
      daemon.kill("SIGTERM")
      const timeout = sleep(30_000).then(() => "timeout")
      if ((await Promise.race([exited.then(() => "exited"), timeout])) === "timeout") daemon.kill("SIGKILL")
    }
    if (CPU_PROF) {
      try {
        // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread (the parser workers have their own).
        const files = readdirSync(join(dir, "profile")).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f))
        if (files.length > 0) {
          const file = join(dir, "profile", files[0]!)
          figures.profile = summarize(file, 20)
          if (idleWindow.to > idleWindow.from) {
            figures.idleProfile = summarize(profileWindow(file, idleWindow.from, idleWindow.to, join(dir, "profile", "idle.cpuprofile")), 30)
          }
        }
      } catch (error) {
        log(`no profile: ${String(error)}`)
      }
    }
    reader.close()
    await dovecot.destroy()
    await smtp.stop()
    build.cleanup()
    if (KEEP) log(`kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }

  const startup = figures.startup as { secondsUntilAllConnected: number; allConnected: boolean; connectionFailures: number; firstToLastConnectedSeconds: number | null }
  const idle = figures.idle as { cpuPercentOfOneCore: number; rssMiBAverage: number; rssMiBMax: number; dovecotCpuPercentOfOneCore: number; eventsWrittenWhileIdle: number }
  const latency = figures.latency as { p50Seconds: number; p99Seconds: number; maxSeconds: number; messages: number; accepted: number } | undefined
  const restart = figures.restart as { peakLoginsPerSecondDovecotLog: number; backoffAllowedPeak: number; backoffAverageRate: number; peakConnectedPerSecondEvents: number; reconnectSpreadSeconds: number; secondsUntilAllReconnected: number; reconnected: number; pass: boolean; dovecotLogins: number; connectionFailures: number } | undefined
  const verdict = (ok: boolean) => (ok ? "PASS" : "FAIL")
  const rssMB = idle.rssMiBMax * 1.048576
  const rows: Array<Array<Cell>> = [
    [`all ${M} mailboxes connected`, `${startup.secondsUntilAllConnected.toFixed(1)} s from spawn (first → last MailboxConnected ${startup.firstToLastConnectedSeconds?.toFixed(1)} s; ${startup.connectionFailures} failures)`, `≤ ${CONNECT_TARGET_SECONDS} s`, verdict(startup.allConnected && startup.secondsUntilAllConnected <= CONNECT_TARGET_SECONDS)],
    [`idle CPU over ${IDLE_SECONDS} s`, `${idle.cpuPercentOfOneCore.toFixed(1)} % of one core (Dovecot: ${idle.dovecotCpuPercentOfOneCore.toFixed(1)} %); ${idle.eventsWrittenWhileIdle} events written`, `< ${CPU_TARGET_PERCENT} %`, verdict(idle.cpuPercentOfOneCore < CPU_TARGET_PERCENT)],
    ["idle RSS", `${idle.rssMiBAverage.toFixed(0)} MiB average, ${idle.rssMiBMax.toFixed(0)} MiB max (${rssMB.toFixed(0)} MB)`, `< ${RSS_TARGET_MB} MB`, verdict(rssMB < RSS_TARGET_MB)]
  ]
  if (latency !== undefined) {
    rows.push([`delivery → MessageAccepted (${latency.accepted}/${latency.messages})`, `p50 ${latency.p50Seconds.toFixed(2)} s, p99 ${latency.p99Seconds.toFixed(2)} s, max ${latency.maxSeconds.toFixed(2)} s`, `p99 < ${POLL + 2} s`, verdict(latency.accepted === latency.messages && latency.p99Seconds < POLL + 2)])
  }
  if (restart !== undefined) {
    rows.push(["logins after a Dovecot restart", `peak ${restart.peakLoginsPerSecondDovecotLog}/s in Dovecot's log (${restart.dovecotLogins} logins; ${restart.peakConnectedPerSecondEvents}/s by MailboxConnected), spread over ${restart.reconnectSpreadSeconds.toFixed(1)} s, all ${restart.reconnected} back in ${restart.secondsUntilAllReconnected.toFixed(1)} s; ${restart.connectionFailures} MailboxConnectionFailed events (the drops included)`, `≤ ${restart.backoffAllowedPeak}/s (backoff: ${restart.backoffAverageRate.toFixed(0)}/s average; no jitter: ${M} at once)`, verdict(restart.pass)])
  }
  let report = `\nScale: ${M} IMAP mailboxes (${TLS === "implicit" ? "implicit TLS" : "plain"}) in one daemon, pollingIntervalSeconds ${POLL}, reconnectIntervalSeconds ${RECONNECT}.\n`
  report += `Machine: ${machineBefore.cpus} cores, load average ${machineBefore.loadAverage.join(" / ")} at start (shared with other work; Dovecot runs on the same 2 cores).\n`
  report += table("Scale", ["measure", "measured", "target", "verdict"], rows)
  const profile = figures.profile as ReturnType<typeof summarize> | undefined
  if (profile !== undefined) {
    report += `\nThe daemon under node --cpu-prof, its whole life: ${profile.totalMs} ms of samples.\n`
    report += table("Self time by package", ["where", "self ms", "%"], profile.packages.map((p) => [p.name, p.selfMs, p.percent]))
    report += table("Top functions by self time", ["function", "where", "self ms", "%"], profile.functions.map((f) => [f.name, f.where, f.selfMs, f.percent]))
  }
  const idleProfile = figures.idleProfile as ReturnType<typeof summarize> | undefined
  if (idleProfile !== undefined) {
    report += `\nThe idle window only (${IDLE_SECONDS} s): ${idleProfile.totalMs} ms of samples.\n`
    report += table("Idle: self time by package", ["where", "self ms", "%"], idleProfile.packages.map((p) => [p.name, p.selfMs, p.percent]))
    report += table("Idle: top functions by self time", ["function", "where", "self ms", "%"], idleProfile.functions.map((f) => [f.name, f.where, f.selfMs, f.percent]))
  }
  process.stdout.write(report)
  const file = writeResults("scale", {
    benchmark: "scale",
    machine: machineBefore,
    machineAfter: machine(),
    options: { m: M, poll: POLL, reconnect: RECONNECT, tls: TLS, idleSeconds: IDLE_SECONDS, trickleSeconds: TRICKLE_SECONDS, everyMs: EVERY_MS },
    ...figures,
    table: report
  })
  process.stdout.write(`\nresults: ${file}\n`)
}

await main()
