/**
 * `npm run bench:large` — peak memory of `mailintake run --once` on one large message: 50 MB
 * and 200 MB (multipart with a base64 attachment: test/support/messages.ts `largeMessage`), over
 * IMAP and over POP3 (plain TCP on loopback, `tls: "none"`), on two paths:
 *
 * - parsed: maxMessageBytes above the size, so the message is retrieved, stored, classified,
 *   parsed and accepted;
 * - too-large: maxMessageBytes below the size, so it is quarantined as `too-large` without
 *   being parsed (forwarded to a local SMTP server with the original attached).
 *
 * Peak RSS is the node process's own high-water mark (GNU time; the daemon has no children)
 * and the sampled tree sum. Target: peak RSS < 2 × size + 100 MB. After each run the mailbox
 * must be empty and the event log must say what happened (MessageAccepted, or
 * MessageQuarantineRequested too-large + MessageQuarantined), with MessageRemoved.
 *
 * Options: --sizes 50,200 (MiB), --protocols imap,pop3, --paths parsed,too-large, --use-dist, --keep,
 * --kind attachment|text (text: one text/plain part of that size, whose text becomes the
 * event's body — the heaviest shape for memory; default attachment).
 */
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { smtpQuarantine, writeConfig } from "../test/support/cli.js"
import { startDovecot } from "../test/support/dovecot.js"
import { largeMessage } from "../test/support/messages.js"
import { startSmtpServer } from "../test/support/smtpServer.js"
import { buildDaemon, type Cell, ensureDovecotInstalled, eventCounts, flag, log, machine, mb, option, scratchDir, table, writeResults } from "./lib/common.js"
import { ensureGnuTime, measure, type Measured } from "./lib/measure.js"

const SIZES = option("sizes", "50,200").split(",").map(Number).filter((n) => n > 0)
const PROTOCOLS = option("protocols", "imap,pop3").split(",").map((p) => p.trim().toUpperCase()).filter(Boolean) as Array<"IMAP" | "POP3">
const PATHS = option("paths", "parsed,too-large").split(",").map((p) => p.trim()).filter(Boolean) as Array<"parsed" | "too-large">
const KEEP = flag("keep")
const KIND = option("kind", "attachment")
if (KIND !== "attachment" && KIND !== "text") throw new Error(`--kind must be attachment or text, not ${KIND}`)

/** A text/plain message of about `bytes` bytes: lines of 76 ASCII characters. */
const textMessage = (bytes: number): Buffer => {
  const head = Buffer.from(
    "From: Sender <sender@example.test>\r\nTo: support@example.test\r\nSubject: A very long text\r\n" +
      "Message-ID: <large-text@example.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
    "latin1"
  )
  const line = Buffer.from(`${"The quick brown fox jumps over the lazy dog. ".repeat(2).slice(0, 76)}\r\n`, "latin1")
  const body = Buffer.alloc(Math.ceil((bytes - head.length) / line.length) * line.length)
  for (let at = 0; at < body.length; at += line.length) line.copy(body, at)
  return Buffer.concat([head, body])
}
const USER = "large@example.test"
const PASSWORD = "large-pw"
const MiB = 1024 * 1024

interface LargeResult extends Measured {
  readonly protocol: string
  readonly sizeMiB: number
  readonly messageBytes: number
  readonly path: string
  readonly maxMessageBytes: number
  readonly limitMiB: number
  readonly pass: boolean
  readonly ok: boolean
  readonly problems: ReadonlyArray<string>
  readonly events: Record<string, number>
}

const main = async () => {
  await ensureDovecotInstalled()
  ensureGnuTime()
  const build = buildDaemon()
  const machineBefore = machine()
  const dovecot = await startDovecot({ name: "bench-large", users: [{ user: USER, password: PASSWORD }] })
  const smtp = await startSmtpServer()
  /** The configuration of one run: the bench user's mailbox, plain TCP, quarantine to `smtp`. */
  const configFor = (dir: string, protocol: "IMAP" | "POP3", maxMessageBytes?: number) =>
    writeConfig(dir, {
      database: join(dir, "events.db"),
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [{
        name: "large",
        usageType: "Production",
        integrationType: protocol,
        ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
        mailboxes: [{
          id: "large",
          host: "127.0.0.1",
          port: protocol === "IMAP" ? dovecot.imapPort : dovecot.pop3Port,
          tls: "none",
          user: USER,
          password: PASSWORD,
          connectTimeoutSeconds: 10,
          commandTimeoutSeconds: 600
        }]
      }]
    })
  /** `mailintake run --once`, measured; its output goes to `dir`. */
  const runOnce = (config: string, dir: string, timeoutMs: number) =>
    measure({
      command: process.execPath,
      args: [build.bin, "run", "--once", "--config", config],
      env: { MAILINTAKE_LOG_LEVEL: "info" },
      stdoutFile: join(dir, "stdout"),
      stderrFile: join(dir, "stderr"),
      timeoutMs
    })
  const results: Array<LargeResult> = []
  const baselines: Array<Measured & { protocol: string }> = []
  const scratch: Array<string> = []
  try {
    // The fixed cost: the same run on an empty mailbox.
    for (const protocol of PROTOCOLS) {
      const dir = scratchDir(`large-${protocol.toLowerCase()}-empty`)
      scratch.push(dir)
      const config = configFor(dir, protocol)
      log(`${protocol} empty mailbox (baseline)`)
      const measured = await runOnce(config, dir, 120_000)
      baselines.push({ protocol, ...measured })
    }
    for (const sizeMiB of SIZES) {
      log(`generating a ${sizeMiB} MiB message`)
      let message: Buffer | undefined = KIND === "text" ? textMessage(sizeMiB * MiB) : largeMessage(sizeMiB, sizeMiB * MiB)
      const messageBytes = message.byteLength
      for (const protocol of PROTOCOLS) {
        for (const path of PATHS) {
          await dovecot.seed(USER, [message])
          const dir = scratchDir(`large-${protocol.toLowerCase()}-${sizeMiB}-${path}`)
          scratch.push(dir)
          const database = join(dir, "events.db")
          const maxMessageBytes = path === "parsed" ? messageBytes + 64 * MiB : Math.floor(messageBytes / 2)
          const config = configFor(dir, protocol, maxMessageBytes)
          const received = smtp.received.length
          log(`${protocol} ${sizeMiB} MiB ${path} (maxMessageBytes ${maxMessageBytes})`)
          const measured = await runOnce(config, dir, 900_000)
          const events = eventCounts(database)
          const left = await dovecot.count(USER)
          const problems: Array<string> = []
          if (measured.exitCode !== 0) problems.push(`exit code ${measured.exitCode ?? measured.signal}`)
          if (left !== 0) problems.push(`${left} message(s) left on the server`)
          if ((events.MessageRemoved ?? 0) !== 1) problems.push(`${events.MessageRemoved ?? 0} MessageRemoved`)
          if (path === "parsed" && (events.MessageAccepted ?? 0) !== 1) problems.push(`not accepted: ${JSON.stringify(events)}`)
          if (path === "too-large") {
            if ((events.MessageQuarantined ?? 0) !== 1) problems.push(`not quarantined: ${JSON.stringify(events)}`)
            if (smtp.received.length !== received + 1) problems.push("the quarantine SMTP server received nothing")
          }
          smtp.received.splice(0)
          if (problems.length > 0) {
            log(`  PROBLEM: ${problems.join("; ")}\n${readFileSync(join(dir, "stderr"), "utf8").split("\n").slice(-10).join("\n")}`)
            // Leave the mailbox empty for the next run.
            const box = join(dovecot.dir, "mail", USER, "Maildir")
            for (const sub of ["cur", "new"]) rmSync(join(box, sub), { recursive: true, force: true })
          }
          const limitMiB = 2 * mb(messageBytes) + 100
          const peak = Math.max(measured.maxRssMiB ?? 0, measured.treePeakRssMiB)
          const result: LargeResult = {
            ...measured,
            protocol,
            sizeMiB,
            messageBytes,
            path,
            maxMessageBytes,
            limitMiB,
            pass: peak < limitMiB,
            ok: problems.length === 0,
            problems,
            events
          }
          log(`  ${measured.wallSeconds.toFixed(1)} s, peak RSS ${peak.toFixed(0)} MiB (limit ${limitMiB.toFixed(0)}), CPU ${measured.cpuSeconds?.toFixed(1)} s`)
          results.push(result)
        }
      }
      message = undefined
    }
  } finally {
    await dovecot.destroy()
    await smtp.stop()
    build.cleanup()
    if (!KEEP) for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
    else log(`kept ${scratch.join(" ")}`)
  }

  let report = `\nLarge messages (${KIND === "text" ? "one text/plain part" : "a base64 attachment"}): one message per run, mailintake run --once over plain TCP on loopback. Target: peak RSS < 2 × size + 100 MiB.\n`
  report += `Machine: ${machineBefore.cpus} cores, load average ${machineBefore.loadAverage.join(" / ")} at start (shared with other work).\n`
  const rows: Array<Array<Cell>> = results.map((r) => {
    const peak = Math.max(r.maxRssMiB ?? 0, r.treePeakRssMiB)
    return [
      r.protocol,
      `${mb(r.messageBytes).toFixed(1)} MiB`,
      r.path,
      `${(r.maxMessageBytes / MiB).toFixed(0)} MiB`,
      r.wallSeconds,
      r.cpuSeconds,
      peak,
      r.limitMiB,
      peak / mb(r.messageBytes),
      r.pass ? "PASS" : `FAIL (+${(peak - r.limitMiB).toFixed(0)} MiB)`,
      r.ok ? "ok" : r.problems.join("; ")
    ]
  })
  report += table(
    "Baseline: the same run on an empty mailbox",
    ["proto", "wall s", "CPU s", "peak RSS MiB", "exit"],
    baselines.map((b) => [b.protocol, b.wallSeconds, b.cpuSeconds, Math.max(b.maxRssMiB ?? 0, b.treePeakRssMiB), String(b.exitCode)])
  )
  report += table("Peak RSS", ["proto", "message", "path", "maxMessageBytes", "wall s", "CPU s", "peak RSS MiB", "limit MiB", "RSS ÷ size", "target", "check"], rows)
  process.stdout.write(report)
  const file = writeResults("large", {
    benchmark: "large",
    machine: machineBefore,
    machineAfter: machine(),
    options: { sizes: SIZES, protocols: PROTOCOLS, paths: PATHS, kind: KIND, transport: "plain TCP, 127.0.0.1" },
    baselines,
    runs: results,
    table: report
  })
  process.stdout.write(`\nresults: ${file}\n`)
  if (results.some((r) => !r.ok)) process.exitCode = 1
}

await main()
