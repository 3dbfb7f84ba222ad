/**
 * `npm run torture`: the full torture suite of issue 8. Prints one row per (sub-)scenario —
 * messages in, accepted, quarantined, lost, duplicated, crashes, hangs, peak RSS, time — writes
 * the same as JSON to bench/results/torture-<timestamp>.json, and exits non-zero when any
 * invariant fails.
 *
 * Options: --seed N (default 8), --only kill,kill-imap,kill-pop3,net,hostile,storage,security, --quick (small sizes,
 * a few minutes), --use-dist (run the repository's bin/ instead of a private build of src/),
 * --keep (keep the scratch directory with every log and database).
 */
import { execSync } from "node:child_process"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { join } from "node:path"
import { makeContext } from "../../test/torture/lib/context.js"
import { formatTable, passed, type ScenarioResult } from "../../test/torture/lib/report.js"
import { privateBuild, REPO, repoBuild } from "./build.js"
import { hostileInput } from "./hostileInput.js"
import { killLoop } from "./killLoop.js"
import { networkFaults } from "./networkFaults.js"
import { secretsScan, starttlsDowngrade, tlsDefault } from "./security.js"
import { storageFaults } from "./storageFaults.js"

const argv = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const at = argv.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`))
  if (at < 0) return undefined
  const arg = argv[at]!
  return arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[at + 1]?.startsWith("--") === false ? argv[at + 1] : "true"
}
const flag = (name: string) => option(name) !== undefined

const seed = Number(option("seed") ?? 8)
const quick = flag("quick")
const only = new Set((option("only") ?? "kill,net,hostile,storage,security").split(","))
const started = new Date()
const stamp = started.toISOString().replace(/[:.]/g, "-")
const log = (line: string) => process.stderr.write(`[torture ${new Date().toISOString().slice(11, 19)}] ${line}\n`)

const build = flag("use-dist") ? repoBuild() : privateBuild()
log(`seed ${seed}${quick ? " (quick)" : ""}; daemon: ${build.description}`)
const ctx = makeContext({ bin: build.bin, seed, log })
const results: Array<ScenarioResult> = []
const errors: Array<string> = []

/** Runs one scenario; a scenario that throws is a failed row, not the end of the run. */
const stage = async (name: string, run: () => Promise<ScenarioResult | Array<ScenarioResult>>) => {
  log(`=== ${name}`)
  const t = Date.now()
  try {
    const out = await run()
    for (const result of Array.isArray(out) ? out : [out]) {
      results.push(result)
      log(`${result.scenario}: ${passed(result) ? "PASS" : "FAIL"} in ${result.seconds.toFixed(0)} s`)
    }
  } catch (error) {
    const message = error instanceof Error ? error.stack ?? error.message : String(error)
    errors.push(`${name}: ${message}`)
    log(`${name} threw: ${message}`)
    results.push({
      scenario: name, messagesIn: 0, accepted: 0, quarantined: 0, duplicateSkipped: 0, lost: 0, duplicated: 0, crashes: 0, hangs: 0,
      peakRssMiB: 0, seconds: (Date.now() - t) / 1000, checks: [{ name: "the scenario ran to its end", ok: false, detail: message.slice(0, 500) }],
      notes: [], crashDetails: [], seed
    })
  }
}

const minutes = (n: number) => n * 60_000

if (only.has("kill") || only.has("kill-imap") || only.has("kill-pop3")) {
  for (const protocol of (["imap", "pop3"] as const).filter((p) => only.has("kill") || only.has(`kill-${p}`))) {
    // POP3 pipelines its RETRs and DELEs: a quick run's 300 messages drained before the loop
    // could kill the daemon six times with work left. It gets more, so that the kills land.
    const quickMessages = protocol === "pop3" ? 1_000 : 300
    await stage(`kill loop ${protocol}`, () =>
      killLoop(ctx, { protocol, messages: quick ? quickMessages : 2_000, minKills: quick ? 6 : 30, timeLimitMs: minutes(quick ? 5 : 20) }))
  }
}
if (only.has("net")) {
  await stage("network faults", () =>
    networkFaults(ctx, {
      cases: ["cut-mid-command", "cut-mid-literal", "cut-mid-data", "latency", "black-hole", "pop3-cuts"],
      messages: quick ? 100 : 300,
      faults: quick ? 3 : 8,
      timeLimitMs: minutes(quick ? 4 : 8)
    }))
}
if (only.has("hostile")) {
  await stage("hostile input imap", () =>
    hostileInput(ctx, { protocol: "imap", messages: quick ? 500 : 5_000, heavy: !quick, timeLimitMs: minutes(quick ? 5 : 10), perMessageLimitMs: 60_000, maxRssMiB: 1_536 }))
  await stage("hostile input pop3", () =>
    hostileInput(ctx, { protocol: "pop3", messages: quick ? 200 : 1_000, heavy: false, timeLimitMs: minutes(5), perMessageLimitMs: 60_000, maxRssMiB: 1_536 }))
}
if (only.has("storage")) {
  await stage("storage faults", () =>
    storageFaults(ctx, { cases: ["locked", "read-only", "disk-full"], messages: quick ? 100 : 400, holdMs: quick ? 15_000 : 25_000, timeLimitMs: minutes(3) }))
}
if (only.has("security")) {
  await stage("TLS verification", () => tlsDefault(ctx, { full: true }))
  await stage("STARTTLS downgrade", () => starttlsDowngrade(ctx, { full: true }))
  // Last: it scans the logs and databases of every scenario above.
  await stage("secrets scan", () => secretsScan(ctx))
}

const table = formatTable(results)
process.stdout.write(`\n${table}\n\n`)
for (const result of results.filter((r) => !passed(r))) {
  process.stdout.write(`${result.scenario}: FAILED\n`)
  for (const check of result.checks.filter((c) => !c.ok)) process.stdout.write(`  - ${check.name}: ${check.detail}\n`)
  for (const crash of result.crashDetails) process.stdout.write(`  - crash: ${crash}\n`)
}

const resultsDir = join(REPO, "bench", "results")
mkdirSync(resultsDir, { recursive: true })
const file = join(resultsDir, `torture-${stamp}.json`)
const gitHead = (() => {
  try {
    return execSync("git rev-parse HEAD", { cwd: REPO, encoding: "utf8" }).trim()
  } catch {
    return undefined
  }
})()
writeFileSync(file, JSON.stringify({
  suite: "torture",
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  seed,
  quick,
  daemon: build.description,
  gitHead,
  machine: { node: process.version, cpus: os.availableParallelism(), loadAverage: os.loadavg(), memoryMiB: Math.round(os.totalmem() / 1048576) },
  passed: results.every(passed),
  table: table.split("\n"),
  markdown: formatTable(results, true).split("\n"),
  results,
  errors
}, null, 2))
process.stdout.write(`results: ${file}\n`)
build.cleanup()
if (flag("keep") || !results.every(passed)) log(`logs and databases kept in ${ctx.root}`)
else rmSync(ctx.root, { recursive: true, force: true, maxRetries: 3 })
process.exit(results.every(passed) ? 0 : 1)
