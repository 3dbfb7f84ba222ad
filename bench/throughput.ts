/**
 * `npm run bench:throughput` — drains one Dovecot mailbox of N messages (default 5,000, about
 * 20 KB on average, generated deterministically: bench/lib/corpus.ts) with each contender,
 * refilling it identically before each run:
 *
 *   IMAP: mailintake run --once | bare imapflow (fetch source + delete, 500-UID batches: the
 *         floor) | fetchmail --bsmtp | fetchmail → MDA → Maildir | getmail6 → Maildir
 *   POP3: mailintake run --once | bare POP3 loop, pipelined like mailintake (the floor) | fetchmail --bsmtp |
 *         fetchmail → MDA → Maildir | getmail6 → Maildir
 *
 * Every contender uses the same transport: plain TCP on loopback (IMAP on Dovecot's port 143
 * equivalent, POP3 on its 110 equivalent, `tls: "none"` for mailintake, STARTTLS off for the
 * others), so TLS costs nobody anything and the ratios compare the clients alone.
 *
 * Measured per run (bench/lib/measure.ts): wall time from spawn to exit, messages/s, MB/s, CPU
 * seconds (user+sys of the whole process tree, GNU time), Dovecot's CPU seconds over the same
 * drain (bench/lib/dovecotCpu.ts) and how busy the two kept the machine ((client + server CPU) ÷
 * (cores × wall)), peak RSS (largest process, and the whole tree summed). After each run: the
 * mailbox must be empty and the contender must have delivered N messages (mailintake: N
 * MessageAccepted and N MessageRemoved in its event log).
 *
 * Options (argv `--name=value` or env `BENCH_NAME`):
 *   --n 5000                 messages
 *   --seed 42                corpus seed
 *   --protocols imap,pop3    which protocols
 *   --only a,b               only these contenders (mailintake, bare, fetchmail, fetchmail-mda, getmail6)
 *   --skip a,b               all but these
 *   --runs 3                 drains by mailintake and by the floor, alternating (this machine's spread is
 *                            ±20–40 % run to run): the tables give the median run and the range, and
 *                            the ratios compare medians; the other contenders run once
 *   --cpu-prof               one more mailintake IMAP run under `node --cpu-prof`: top functions
 *   --use-dist               run the repository's bin/ (after npm run build) instead of a private build
 *   --getmail-stock          run /usr/bin/getmail as shipped (it can hang 180 s per delivery on a busy
 *                            machine: see bench/getmail-waitpid.py) instead of through the wrapper
 *   --keep                   keep the scratch directories (logs, event logs, maildirs)
 */
import { chmodSync, chownSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { smtpQuarantine, writeConfig } from "../test/support/cli.js"
import { type Dovecot, startDovecot } from "../test/support/dovecot.js"
import { startSmtpServer, type SmtpServerHandle } from "../test/support/smtpServer.js"
import {
  buildDaemon,
  eventCounts,
  type Cell,
  ensureDebian,
  ensureDovecotInstalled,
  ensureUser,
  flag,
  log,
  machine,
  mb,
  numberOption,
  option,
  REPO,
  scratchDir,
  table,
  version,
  writeResults
} from "./lib/common.js"
import { makeCorpus } from "./lib/corpus.js"
import { dovecotCpuBetween, dovecotProcessCpu } from "./lib/dovecotCpu.js"
import { summarize } from "./lib/cpuprofile.js"
import { ensureGnuTime, measure, type Measured, type RunSpec } from "./lib/measure.js"

const N = numberOption("n", 5000)
const SEED = numberOption("seed", 42)
const PROTOCOLS = option("protocols", "imap,pop3").split(",").map((p) => p.trim().toUpperCase()).filter(Boolean) as Array<Protocol>
const ONLY = option("only", "").split(",").map((s) => s.trim()).filter(Boolean)
const SKIP = option("skip", "").split(",").map((s) => s.trim()).filter(Boolean)
const RUNS = Math.max(1, numberOption("runs", 3))
/** Run RUNS times each, alternating: mailintake and the floor, the ratio nearest its target. */
const REPEATED = new Set(["mailintake", "bare"])
const CPU_PROF = flag("cpu-prof")
const KEEP = flag("keep")
/** Stock /usr/bin/getmail, with its lost-wake-up race (bench/getmail-waitpid.py). */
const GETMAIL_STOCK = flag("getmail-stock")
/** Generous: getmail6 needs about 45 ms per message here; the bound is only against a hang. */
const TIMEOUT_MS = 180_000 + N * 250

const USER = "bench@example.test"
const PASSWORD = "bench-pw"
const PASSWORD_ENV = "BENCH_MAILBOX_PASSWORD"
const BENCH_UNIX_USER = "mailintake-bench"

type Protocol = "IMAP" | "POP3"

interface Prepared {
  readonly spec: Omit<RunSpec, "stdoutFile" | "stderrFile" | "timeoutMs">
  /** How many messages the contender says it delivered, checked after the run. */
  readonly delivered: () => Promise<number>
  readonly detail?: () => Promise<Record<string, unknown>>
}

interface Contender {
  readonly key: string
  readonly name: string
  readonly prepare: (dir: string) => Prepared
}

interface RunResult extends Measured {
  readonly protocol: Protocol
  readonly key: string
  readonly name: string
  readonly messages: number
  readonly megabytes: number
  readonly messagesPerSecond: number
  readonly megabytesPerSecond: number
  readonly delivered: number
  readonly leftOnServer: number
  /** CPU seconds Dovecot spent during the drain (it shares the machine's cores with the contender). */
  readonly serverCpuSeconds: number
  /** (contender CPU + Dovecot CPU) ÷ (cores × wall): how busy the drain kept the whole machine. */
  readonly machineBusy: number | null
  readonly ok: boolean
  readonly problems: ReadonlyArray<string>
  readonly detail?: Record<string, unknown>
}

// ---------------------------------------------------------------------------------------------

const countFiles = (dir: string): number => {
  try {
    return readdirSync(dir).filter((name) => !name.startsWith(".")).length
  } catch {
    return 0
  }
}

const maildir = (dir: string, owner?: { uid: number; gid: number }): string => {
  const root = join(dir, "Maildir")
  for (const sub of ["", "cur", "new", "tmp"]) {
    mkdirSync(join(root, sub), { recursive: true })
    if (owner) chownSync(join(root, sub), owner.uid, owner.gid)
  }
  return root
}

/** BSMTP: one "MAIL FROM:" line per message. */
const countBsmtp = (file: string): number => {
  let content: Buffer
  try {
    content = readFileSync(file)
  } catch {
    return 0
  }
  let count = content.subarray(0, 10).toString("latin1") === "MAIL FROM:" ? 1 : 0
  for (let at = content.indexOf("\nMAIL FROM:"); at >= 0; at = content.indexOf("\nMAIL FROM:", at + 1)) count++
  return count
}

const fetchmailRc = (dir: string, dovecot: Dovecot, protocol: Protocol, extra: string): string => {
  const file = join(dir, "fetchmailrc")
  const port = protocol === "IMAP" ? dovecot.imapPort : dovecot.pop3Port
  writeFileSync(
    file,
    [
      "set no syslog",
      "set no bouncemail",
      `poll 127.0.0.1 service ${port} protocol ${protocol} auth password`,
      // sslproto '': no opportunistic STARTTLS, the same plain transport as everyone else.
      `  user "${USER}" there with password "${PASSWORD}" is "root" here`,
      `  options fetchall nokeep no rewrite sslproto ''${extra}`,
      ""
    ].join("\n"),
    { mode: 0o600 }
  )
  chmodSync(file, 0o600)
  return file
}

const contenders = (
  protocol: Protocol,
  dovecot: Dovecot,
  smtp: SmtpServerHandle,
  bin: string,
  benchScript: (name: string) => string,
  benchUser: { uid: number; gid: number }
): Array<Contender> => {
  const port = protocol === "IMAP" ? dovecot.imapPort : dovecot.pop3Port
  const all: Array<Contender> = [
    {
      key: "mailintake",
      name: "mailintake run --once",
      prepare: (dir) => {
        const database = join(dir, "events.db")
        const config = writeConfig(dir, {
          database,
          defaults: { quarantine: smtpQuarantine(smtp) },
          configurations: [{
            name: "bench",
            usageType: "Production",
            integrationType: protocol,
            mailboxes: [{
              id: "bench",
              host: "127.0.0.1",
              port,
              tls: "none",
              user: USER,
              password: { env: PASSWORD_ENV },
              connectTimeoutSeconds: 10,
              commandTimeoutSeconds: 600
            }]
          }]
        })
        return {
          spec: {
            command: process.execPath,
            args: [bin, "run", "--once", "--config", config],
            env: { [PASSWORD_ENV]: PASSWORD, MAILINTAKE_LOG_LEVEL: "info" }
          },
          delivered: async () => {
            const counts = eventCounts(database)
            return Math.min(counts.MessageAccepted ?? 0, counts.MessageRemoved ?? 0)
          },
          detail: async () => ({ events: eventCounts(database), databaseMiB: Math.round(mb(statSync(database).size)) })
        }
      }
    },
    {
      key: "bare",
      name: protocol === "IMAP" ? "bare imapflow: fetch + delete, 500-UID batches (floor)" : "bare POP3 loop: pipelined RETR + DELE (floor)",
      prepare: (dir) => {
        const out = join(dir, "stdout")
        return {
          spec: {
            command: process.execPath,
            args: [benchScript(protocol === "IMAP" ? "bareImap" : "barePop3")],
            env: { BARE_HOST: "127.0.0.1", BARE_PORT: String(port), BARE_USER: USER, BARE_PASSWORD: PASSWORD, BARE_TLS: "none", BARE_BATCH: "500" }
          },
          delivered: async () => {
            try {
              return (JSON.parse(readFileSync(out, "utf8")) as { messages: number }).messages
            } catch {
              return 0
            }
          }
        }
      }
    },
    {
      key: "fetchmail",
      name: "fetchmail --bsmtp (to a file)",
      prepare: (dir) => {
        const rc = fetchmailRc(dir, dovecot, protocol, "")
        const bsmtp = join(dir, "out.bsmtp")
        return {
          spec: {
            command: "fetchmail",
            args: ["-f", rc, "--bsmtp", bsmtp, "--pidfile", join(dir, "fetchmail.pid"), "--silent"],
            env: { FETCHMAILHOME: dir }
          },
          delivered: async () => countBsmtp(bsmtp)
        }
      }
    },
    {
      key: "fetchmail-mda",
      name: "fetchmail → MDA (sh) → Maildir",
      prepare: (dir) => {
        const box = maildir(dir)
        const mda = join(dir, "mda.sh")
        writeFileSync(
          mda,
          `#!/bin/sh\nf="$(date +%s.%N).$$.bench"\ncat > "${box}/tmp/$f" && mv "${box}/tmp/$f" "${box}/new/$f"\n`,
          { mode: 0o755 }
        )
        const rc = fetchmailRc(dir, dovecot, protocol, `\n  mda "/bin/sh ${mda}"`)
        return {
          spec: {
            command: "fetchmail",
            args: ["-f", rc, "--pidfile", join(dir, "fetchmail.pid"), "--silent"],
            env: { FETCHMAILHOME: dir }
          },
          delivered: async () => countFiles(join(box, "new"))
        }
      }
    },
    {
      key: "getmail6",
      name: `getmail6 → Maildir, delete (as ${BENCH_UNIX_USER})${GETMAIL_STOCK ? ", stock" : ""}`,
      prepare: (dir) => {
        const box = maildir(dir, benchUser)
        const home = join(dir, "getmail")
        mkdirSync(home, { recursive: true })
        writeFileSync(
          join(home, "getmailrc"),
          [
            "[retriever]",
            `type = ${protocol === "IMAP" ? "SimpleIMAPRetriever" : "SimplePOP3Retriever"}`,
            "server = 127.0.0.1",
            `port = ${port}`,
            `username = ${USER}`,
            `password = ${PASSWORD}`,
            ...(protocol === "IMAP" ? ['mailboxes = ("INBOX",)'] : []),
            "",
            "[destination]",
            "type = Maildir",
            `path = ${box}/`,
            "",
            "[options]",
            "delete = true",
            "read_all = true",
            "verbose = 0",
            ""
          ].join("\n"),
          { mode: 0o600 }
        )
        // The wrapper fixes getmail6's lost SIGCHLD wake-up (see bench/getmail-waitpid.py).
        const wrapper = join(home, "getmail-waitpid.py")
        copyFileSync(join(REPO, "bench", "getmail-waitpid.py"), wrapper)
        for (const path of [dir, home, join(home, "getmailrc"), wrapper]) chownSync(path, benchUser.uid, benchUser.gid)
        const getmailArgs = ["--getmaildir", home, "--rcfile", "getmailrc", "--quiet"]
        return {
          spec: {
            // Debian's interpreter, the one /usr/bin/getmail names (not whatever python3 is first on PATH).
            command: GETMAIL_STOCK ? "/usr/bin/getmail" : "/usr/bin/python3",
            args: GETMAIL_STOCK ? getmailArgs : [wrapper, ...getmailArgs],
            env: { HOME: home },
            asUser: benchUser
          },
          delivered: async () => countFiles(join(box, "new"))
        }
      }
    }
  ]
  return all.filter((c) => (ONLY.length === 0 || ONLY.includes(c.key)) && !SKIP.includes(c.key))
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  await ensureDovecotInstalled()
  ensureDebian(["fetchmail", "getmail6"], ["fetchmail", "getmail"])
  ensureGnuTime()
  const benchUser = ensureUser(BENCH_UNIX_USER)
  const build = buildDaemon(["bareImap", "barePop3"])

  log(`generating ${N} messages (seed ${SEED})`)
  const corpus = makeCorpus(N, SEED)
  const totalMiB = mb(corpus.totalBytes)
  log(`corpus: ${totalMiB.toFixed(1)} MiB, ${(corpus.averageBytes / 1024).toFixed(1)} KiB average, largest ${mb(corpus.largest).toFixed(1)} MiB, ${JSON.stringify(corpus.kinds)}`)

  const machineBefore = machine()
  const dovecot = await startDovecot({ name: "bench-throughput", users: [{ user: USER, password: PASSWORD }] })
  const smtp = await startSmtpServer()
  const scratch: Array<string> = []
  const results: Array<RunResult> = []
  const startups: Array<RunResult> = []
  let profile: ReturnType<typeof summarize> | undefined

  const clear = async () => {
    const left = await dovecot.count(USER)
    if (left > 0) {
      log(`${left} message(s) left from the previous run: removing them on disk`)
      const box = join(dovecot.dir, "mail", USER, "Maildir")
      for (const sub of ["cur", "new"]) rmSync(join(box, sub), { recursive: true, force: true })
    }
  }

  const refill = async () => {
    await clear()
    await dovecot.seed(USER, corpus.messages)
    const count = await dovecot.count(USER)
    if (count !== N) throw new Error(`seeded ${count} messages, expected ${N}`)
  }

  const runOne = async (
    protocol: Protocol,
    contender: Contender,
    nodeArgs?: (dir: string) => ReadonlyArray<string>,
    empty = false
  ): Promise<{ result: RunResult; dir: string }> => {
    const expected = empty ? 0 : N
    if (empty) await clear()
    else await refill()
    const dir = scratchDir(`${protocol.toLowerCase()}-${contender.key}`)
    scratch.push(dir)
    const prepared = contender.prepare(dir)
    const spec = nodeArgs === undefined ? prepared.spec : { ...prepared.spec, args: [...nodeArgs(dir), ...prepared.spec.args] }
    log(`${protocol} ${contender.name}: ${empty ? "empty mailbox (start-up cost)" : `draining ${N} messages`}`)
    const server0 = dovecotProcessCpu(dovecot)
    const measured = await measure({ ...spec, stdoutFile: join(dir, "stdout"), stderrFile: join(dir, "stderr"), timeoutMs: TIMEOUT_MS })
    const serverCpuSeconds = dovecotCpuBetween(server0, dovecotProcessCpu(dovecot))
    const leftOnServer = await dovecot.count(USER)
    const delivered = await prepared.delivered()
    const problems: Array<string> = []
    if (measured.timedOut) problems.push(`killed after ${TIMEOUT_MS / 1000} s`)
    // fetchmail exits 0 when it retrieved mail; getmail and the others 0 on success.
    if (measured.exitCode !== 0) problems.push(`exit code ${measured.exitCode ?? measured.signal}`)
    if (leftOnServer !== 0) problems.push(`${leftOnServer} message(s) left on the server`)
    if (delivered !== expected) problems.push(`delivered ${delivered} of ${expected}`)
    if (problems.length > 0) {
      const stderr = readFileSync(join(dir, "stderr"), "utf8")
      log(`  PROBLEM: ${problems.join("; ")}\n${stderr.split("\n").slice(-15).join("\n")}`)
    }
    const result: RunResult = {
      ...measured,
      protocol,
      key: contender.key,
      name: contender.name,
      messages: expected,
      megabytes: empty ? 0 : totalMiB,
      messagesPerSecond: expected / measured.wallSeconds,
      megabytesPerSecond: (empty ? 0 : totalMiB) / measured.wallSeconds,
      delivered,
      leftOnServer,
      serverCpuSeconds,
      machineBusy: measured.cpuSeconds === null ? null : (measured.cpuSeconds + serverCpuSeconds) / (machineBefore.cpus * measured.wallSeconds),
      ok: problems.length === 0,
      problems,
      ...(prepared.detail === undefined ? {} : { detail: await prepared.detail() })
    }
    log(`  ${result.wallSeconds.toFixed(2)} s, ${result.messagesPerSecond.toFixed(0)} msg/s, ${result.megabytesPerSecond.toFixed(1)} MiB/s, CPU ${result.cpuSeconds?.toFixed(2)} s (Dovecot ${serverCpuSeconds.toFixed(2)} s), RSS ${result.maxRssMiB?.toFixed(0)} MiB${result.ok ? "" : "  (FAILED)"}`)
    return { result, dir }
  }

  try {
    for (const protocol of PROTOCOLS) {
      const list = contenders(protocol, dovecot, smtp, build.bin, build.benchScript, benchUser)
      const mailintake = list.find((c) => c.key === "mailintake")
      // What every run of the daemon costs before the first message: start-up, log in, shut down.
      if (mailintake !== undefined) startups.push((await runOne(protocol, mailintake, undefined, true)).result)
      const repeated = list.filter((c) => REPEATED.has(c.key))
      for (let run = 0; run < RUNS; run++) {
        for (const contender of repeated) results.push((await runOne(protocol, contender)).result)
      }
      for (const contender of list.filter((c) => !REPEATED.has(c.key))) results.push((await runOne(protocol, contender)).result)
    }
    if (CPU_PROF) {
      const mailintake = contenders("IMAP", dovecot, smtp, build.bin, build.benchScript, benchUser).find((c) => c.key === "mailintake")
      if (mailintake !== undefined) {
        log("profiling: one more mailintake IMAP run under node --cpu-prof (not counted in the table)")
        const { dir } = await runOne("IMAP", mailintake, (dir) => ["--cpu-prof", "--cpu-prof-dir", join(dir, "profile")])
        const files = readdirSync(join(dir, "profile")).filter((f) => f.endsWith(".cpuprofile"))
        if (files.length > 0) profile = summarize(join(dir, "profile", files[0]!), 20)
        else log("no .cpuprofile written")
      }
    }
  } finally {
    await dovecot.destroy()
    await smtp.stop()
    build.cleanup()
    if (!KEEP) for (const dir of scratch) rmSync(dir, { recursive: true, force: true })
    else log(`scratch directories kept: ${scratch.join(" ")}`)
  }

  // -------------------------------------------------------------------------------------------
  // Report
  // -------------------------------------------------------------------------------------------

  let report = ""
  report += `\nThroughput: ${N} messages, ${totalMiB.toFixed(1)} MiB (${(corpus.averageBytes / 1024).toFixed(1)} KiB average, largest ${mb(corpus.largest).toFixed(1)} MiB; ${Object.entries(corpus.kinds).map(([k, v]) => `${v} ${k}`).join(", ")}), seed ${SEED}.\n`
  report += `Transport: plain TCP on 127.0.0.1 for every contender (mailintake tls "none"; STARTTLS off elsewhere). Dovecot ${version("dovecot", ["--version"])}, ${version("fetchmail", ["--version"]).replace(/^This is /, "")}, getmail ${version("getmail", ["--version"])}.\n`
  report += `Machine: ${machineBefore.cpus} cores (${machineBefore.cpuModel}), load average ${machineBefore.loadAverage.join(" / ")} at start (shared with other work).\n`
  /** A contender's runs of one protocol: the median one by wall time (of an even number, the faster middle one) stands for them all. */
  const medians: Array<RunResult & { readonly runs: number; readonly minMessagesPerSecond: number; readonly maxMessagesPerSecond: number }> = []
  for (const protocol of PROTOCOLS) {
    for (const key of [...new Set(results.filter((r) => r.protocol === protocol).map((r) => r.key))]) {
      const runs = results.filter((r) => r.protocol === protocol && r.key === key).sort((a, b) => a.wallSeconds - b.wallSeconds)
      const speeds = runs.map((r) => r.messagesPerSecond)
      medians.push({
        ...runs[Math.floor((runs.length - 1) / 2)]!,
        // A failed run fails the contender, whichever run is the median.
        ok: runs.every((r) => r.ok),
        problems: runs.flatMap((r) => r.problems),
        runs: runs.length,
        minMessagesPerSecond: Math.min(...speeds),
        maxMessagesPerSecond: Math.max(...speeds)
      })
    }
  }
  const spread = (r: (typeof medians)[number]) =>
    r.runs === 1 ? "1 run" : `${r.runs} runs: ${r.minMessagesPerSecond.toFixed(0)}–${r.maxMessagesPerSecond.toFixed(0)}`
  const rows: Array<Array<Cell>> = medians.map((r) => [
    r.protocol,
    r.name,
    r.wallSeconds,
    r.messagesPerSecond,
    spread(r),
    r.megabytesPerSecond,
    r.cpuSeconds,
    r.serverCpuSeconds,
    r.machineBusy === null ? null : `${(r.machineBusy * 100).toFixed(0)} %`,
    r.maxRssMiB,
    r.treePeakRssMiB,
    r.ok ? "ok" : `FAILED: ${r.problems.join("; ")}`
  ])
  report += table(
    "mailintake on an empty mailbox (fixed cost of a run: start-up, migrations, log in, shut down)",
    ["proto", "wall s", "CPU s", "peak RSS MiB (1 proc)", "check"],
    startups.map((r) => [r.protocol, r.wallSeconds, r.cpuSeconds, r.maxRssMiB, r.ok ? "ok" : `FAILED: ${r.problems.join("; ")}`])
  )
  report += table("Drain N messages (the median run of each contender; msg/s of every run in the range)", ["proto", "contender", "wall s", "msg/s", "range msg/s", "MiB/s", "CPU s", "Dovecot CPU s", "machine busy", "peak RSS MiB (1 proc)", "peak RSS MiB (tree)", "check"], rows)

  const ratioRows: Array<Array<Cell>> = []
  const targets: Array<{ protocol: Protocol; against: string; required: number; ratio: number | null; pass: boolean | null; detail: string }> = []
  const required: Record<string, number> = { bare: 0.8, fetchmail: 7, getmail6: 40 }
  for (const protocol of PROTOCOLS) {
    const ours = medians.find((r) => r.protocol === protocol && r.key === "mailintake")
    if (ours === undefined) continue
    for (const other of medians.filter((r) => r.protocol === protocol && r.key !== "mailintake")) {
      const ratio = ours.messagesPerSecond / other.messagesPerSecond
      const need = required[other.key]
      const startup = startups.find((r) => r.protocol === protocol)
      const net = startup === undefined ? null : N / (ours.wallSeconds - startup.wallSeconds)
      ratioRows.push([protocol, other.name, other.messagesPerSecond, ours.messagesPerSecond, ratio, net, need === undefined ? null : `≥ ${need}`])
      if (need !== undefined) {
        const valid = ours.ok && other.ok
        const pass = valid ? ratio >= need : null
        const gap = ratio >= need
          ? `${((ratio / need - 1) * 100).toFixed(0)} % above`
          : `needs ${(need * other.messagesPerSecond).toFixed(0)} msg/s, has ${ours.messagesPerSecond.toFixed(0)}: ${((1 - ratio / need) * 100).toFixed(0)} % short`
        targets.push({ protocol, against: other.name, required: need, ratio, pass, detail: valid ? gap : "a run failed its checks" })
      }
    }
  }
  report += table("mailintake ÷ each other (messages/s)", ["proto", "other", "other msg/s", "mailintake msg/s", "ratio", "mailintake msg/s net of its empty-mailbox run", "target"], ratioRows)
  report += table(
    "Targets",
    ["proto", "mailintake vs", "required", "ratio", "verdict", "detail"],
    targets.map((t) => [t.protocol, t.against, `≥ ${t.required} ×`, t.ratio, t.pass === null ? "n/a" : t.pass ? "PASS" : "FAIL", t.detail])
  )
  if (profile !== undefined) {
    report += `\nmailintake IMAP under node --cpu-prof: ${profile.totalMs} ms of samples.\n`
    report += table("Self time by package / folder", ["where", "self ms", "%"], profile.packages.map((p) => [p.name, p.selfMs, p.percent]))
    report += table("Top functions by self time", ["function", "where", "self ms", "%"], profile.functions.map((f) => [f.name, f.where, f.selfMs, f.percent]))
  }
  process.stdout.write(report)
  const file = writeResults("throughput", {
    benchmark: "throughput",
    machine: machineBefore,
    machineAfter: machine(),
    options: { n: N, seed: SEED, runs: RUNS, protocols: PROTOCOLS, transport: "plain TCP, 127.0.0.1", only: ONLY, skip: SKIP },
    corpus: { messages: N, totalMiB, averageKiB: corpus.averageBytes / 1024, largestMiB: mb(corpus.largest), kinds: corpus.kinds },
    runs: results,
    medians,
    startups,
    targets,
    profile: profile ?? null,
    table: report
  })
  process.stdout.write(`\nresults: ${file}\n`)
  if (results.some((r) => !r.ok)) process.exitCode = 1
}

await main()
