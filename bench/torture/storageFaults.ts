/**
 * Scenario 4, storage faults: while the daemon drains a mailbox, its event log stops taking
 * writes — the database is locked by another process (BEGIN EXCLUSIVE), made read-only
 * (`chattr +i` on the database, its WAL and shared-memory files), or its file system is full
 * (the database lives on a small tmpfs that a filler file fills up). New mail keeps arriving.
 * While storage is down, the server is sampled every 250 ms: no message may leave it without
 * its terminal event in the log. The daemon must say so loudly (an ERROR line), keep running,
 * and finish the mailbox by itself once storage is back.
 */
import { spawn, spawnSync } from "node:child_process"
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from "node:fs"
import { join, resolve } from "node:path"
import { smtpQuarantine } from "../../test/support/cli.js"
import { startDovecot, type Dovecot } from "../../test/support/dovecot.js"
import { startSmtpServer, type SmtpServerHandle } from "../../test/support/smtpServer.js"
import { sleep, type TortureContext, waitUntil } from "../../test/torture/lib/context.js"
import { Daemons } from "../../test/torture/lib/daemon.js"
import { expectedSet } from "../../test/torture/lib/expected.js"
import { closeReaders, countByType, terminalCount } from "../../test/torture/lib/ledger.js"
import { prng } from "../../test/torture/lib/prng.js"
import { Recorder, type ScenarioResult } from "../../test/torture/lib/report.js"
import { fullLedger, imapBox, registerArtifacts, waitDrained, writeTortureConfig } from "../../test/torture/lib/scenario.js"
import { killLoopCorpus } from "./killLoop.js"

export type StorageCaseName = "locked" | "read-only" | "disk-full"

export interface StorageOptions {
  readonly cases: ReadonlyArray<StorageCaseName>
  readonly messages: number
  /** How long storage stays unavailable, ms (the daemon's busy timeout is 10 s). */
  readonly holdMs: number
  readonly timeLimitMs: number
}

/** A storage fault: applied once the daemon is under way, removed after holdMs. */
interface Fault {
  readonly describe: string
  apply(): Promise<void>
  release(): Promise<void>
  cleanup(): Promise<void>
}

const REPO = resolve(import.meta.dirname, "../..")

/** Another process holds BEGIN EXCLUSIVE on the database until told to commit. */
const lockedFault = (database: string): Fault => {
  let holder: ReturnType<typeof spawn> | undefined
  const script = `
    const Database = require("better-sqlite3")
    const db = new Database(process.argv[1])
    db.pragma("busy_timeout = 30000")
    db.exec("BEGIN EXCLUSIVE")
    process.stdout.write("locked\\n")
    process.stdin.once("data", () => { db.exec("COMMIT"); db.close(); process.exit(0) })`
  return {
    describe: "another process holds BEGIN EXCLUSIVE on the database",
    apply: async () => {
      holder = spawn(process.execPath, ["-e", script, database], { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] })
      await new Promise<void>((resolve, reject) => {
        holder!.stdout!.once("data", () => resolve())
        holder!.once("exit", (code) => reject(new Error(`the lock holder exited with ${code}`)))
      })
    },
    release: async () => {
      if (holder === undefined) return
      const exited = new Promise((resolve) => holder!.once("exit", resolve))
      holder.stdin!.write("commit\n")
      await Promise.race([exited, sleep(15_000)])
      holder.kill("SIGKILL")
    },
    cleanup: async () => {
      holder?.kill("SIGKILL")
    }
  }
}

const chattr = (flag: "+i" | "-i", files: ReadonlyArray<string>) => {
  const result = spawnSync("chattr", [flag, ...files], { encoding: "utf8" })
  if (result.status !== 0) throw new Error(`chattr ${flag} failed: ${result.stderr || result.error}`)
}

/** The database, its WAL and its shared memory become immutable (root only). */
const readOnlyFault = (database: string): Fault => {
  const files = [database, `${database}-wal`, `${database}-shm`]
  let applied = false
  return {
    describe: "chattr +i on the database, its -wal and its -shm (writes fail with EPERM, even through open descriptors)",
    apply: async () => {
      chattr("+i", files)
      applied = true
    },
    release: async () => {
      if (applied) chattr("-i", files)
      applied = false
    },
    cleanup: async () => {
      if (applied) chattr("-i", files)
    }
  }
}

/** The database lives on a small tmpfs; a filler file takes every free byte. */
const diskFullFault = (mountPoint: string): Fault => {
  const filler = join(mountPoint, "filler")
  return {
    describe: "the database's tmpfs is filled up by another file",
    apply: async () => {
      const fd = openSync(filler, "w")
      try {
        for (const size of [1 << 20, 1 << 12, 1 << 9, 1]) {
          const chunk = Buffer.alloc(size, 0x66)
          for (;;) {
            try {
              writeSync(fd, chunk)
            } catch {
              break
            }
          }
        }
      } finally {
        closeSync(fd)
      }
      const stats = statfsSync(mountPoint)
      if (stats.bavail * stats.bsize > 64 * 1024) throw new Error(`the tmpfs still has ${stats.bavail * stats.bsize} bytes free`)
    },
    release: async () => {
      rmSync(filler, { force: true })
    },
    cleanup: async () => {
      rmSync(filler, { force: true })
    }
  }
}

/** Successful logins of a user so far, from Dovecot's log. */
const logins = (dovecot: Dovecot, user: string): number => {
  try {
    return readFileSync(dovecot.logFile, "utf8").split("\n").filter((line) => line.includes("Login: user=<" + user + ">")).length
  } catch {
    return 0
  }
}

/** How many reconnects the backoff allows in `ms` (1 s base, x1.5 per attempt, jitter -20 %, cap 10 s), plus slack. */
const backoffBudget = (ms: number): number => {
  let t = 0
  let n = 0
  while (t < ms) {
    n++
    t += Math.min(1.5 ** (n - 1), 10) * 800
  }
  return n + 2
}

const runCase = async (ctx: TortureContext, dovecot: Dovecot, smtp: SmtpServerHandle, options: StorageOptions, name: StorageCaseName): Promise<ScenarioResult> => {
  const rng = prng(ctx.seed).fork(`storage-${name}`)
  const rec = new Recorder(`storage: ${name}`, rng.seed, ctx.log)
  const user = `storage-${name}@example.test`
  const password = ctx.secret(`storage-${name}`, user)
  await dovecot.addUser(user, password)
  const dir = ctx.dir(`storage-${name}`)
  const daemons = new Daemons(ctx.bin, dir)
  const box = { id: `storage-${name}`, user }
  let mountPoint: string | undefined
  let fault: Fault | undefined
  try {
    let database = join(dir, "events.db")
    if (name === "disk-full") {
      mountPoint = join(dir, "db")
      mkdirSync(mountPoint)
      const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=48m,mode=755", "tmpfs", mountPoint], { encoding: "utf8" })
      if (mounted.status !== 0) {
        mountPoint = undefined
        rec.note(`cannot mount a tmpfs here (${mounted.stderr.trim() || mounted.error}): the disk-full case needs root and mount; skipped`)
        return rec.finish(undefined, [daemons])
      }
      database = join(mountPoint, "events.db")
    }
    const corpus = killLoopCorpus(rng, options.messages)
    const first = corpus.slice(0, Math.ceil(corpus.length / 2))
    const later = corpus.slice(first.length)
    await dovecot.seed(user, first)
    const expected = expectedSet(corpus, "imap")
    const { config } = writeTortureConfig(ctx, dir, {
      integrationType: "IMAP",
      database,
      mailboxes: [imapBox({ host: dovecot.host, port: dovecot.imapsPort, caFile: dovecot.caFile }, box.id, user, password)],
      quarantine: smtpQuarantine(smtp)
    })
    fault = name === "locked" ? lockedFault(database) : name === "read-only" ? readOnlyFault(database) : diskFullFault(mountPoint!)
    rec.note(fault.describe)

    const daemon = daemons.start(["run", "--config", config], { label: "run" })
    const started = await waitUntil(() => terminalCount(countByType(database)) >= Math.min(20, first.length), 60_000)
    if (!started) rec.hang("the first messages before the fault")
    await fault.apply()
    const faultAt = Date.now()
    const loginsAtFault = logins(dovecot, user)
    const stderrBefore = daemon.stderr().length
    // Mail keeps arriving while the log is down.
    await dovecot.seed(user, later)
    let maxLost = 0
    let maxUnlogged = 0
    let samples = 0
    const progressAtFault = terminalCount(countByType(database))
    while (Date.now() - faultAt < options.holdMs && daemon.running) {
      const l = await fullLedger(dovecot, [box], database, expected)
      // Messages still to come are neither on the server nor logged: only count what was seeded.
      maxLost = Math.max(maxLost, l.lost - 0)
      maxUnlogged = Math.max(maxUnlogged, l.removedNotLogged)
      samples++
      await sleep(250)
    }
    const progressDuringFault = terminalCount(countByType(database)) - progressAtFault
    const loginsDuringFault = logins(dovecot, user) - loginsAtFault
    const heldMs = Date.now() - faultAt
    await fault.release()
    const releasedAt = Date.now()
    const ok = await waitDrained({ dovecot, boxes: [box], database, expected, timeoutMs: options.timeLimitMs, abort: () => !daemon.running })
    const recoveredIn = (Date.now() - releasedAt) / 1000
    if (!daemon.running) rec.note("the daemon exited while storage was down or after")
    else if (!ok) rec.hang(`recovering after storage came back (limit ${options.timeLimitMs / 1000} s, or 150 s without progress)`)
    const duringFault = daemon.stderr().slice(stderrBefore)
    const stopped = await daemon.stop()
    if (!stopped.inTime) rec.hang("stopping on SIGTERM")

    const l = await fullLedger(dovecot, [box], database, expected, true)
    rec.check("while storage was down, nothing left the server without its terminal event", maxLost === 0, `${samples} samples, worst ${maxLost}`)
    rec.check("while storage was down, the server lost at most one batch ahead of MessageRemoved", maxUnlogged <= 100, `worst ${maxUnlogged} removed from the server and not yet logged as MessageRemoved`)
    const errorLine = duringFault.split("\n").find((line) => /level=ERROR/.test(line) && /event log|SQLITE|database|disk|read-?only|locked|busy/i.test(line))
    rec.check("the daemon said so loudly (an ERROR line about the event log)", errorLine !== undefined, errorLine === undefined ? "no ERROR line" : errorLine.replace(/^.*message="?/, "").slice(0, 200))
    rec.check("the daemon kept running and recovered by itself", ok && daemon.running === false && stopped.exit.code === 0, `drained ${recoveredIn.toFixed(1)} s after storage came back`)
    rec.check("INBOX empty and every removal logged at the end", l.stillOnServer === 0 && l.removedNotLogged === 0, `${l.stillOnServer} left, ${l.removedNotLogged} unlogged`)
    rec.check("retrieved bytes are the seeded ones", l.unknown === 0 && l.blobMismatches === 0, `${l.unknown} unknown, ${l.blobMismatches} bad blobs`)
    const budget = backoffBudget(heldMs)
    const restarts = (duringFault.match(/failed; restarting it/g) ?? []).length
    rec.check("reconnects to the mail server while storage is down follow the backoff", loginsDuringFault <= budget,
      `${loginsDuringFault} IMAP logins in ${(heldMs / 1000).toFixed(0)} s (the backoff allows about ${budget}); ${restarts} supervisor restart(s) of the mailbox after a defect`)
    rec.note(`terminal events while storage was down: ${progressDuringFault}; ${l.connectionFailures.length} MailboxConnectionFailed recorded`)
    const integrity = spawnSync(process.execPath, ["-e", `const D=require("better-sqlite3");const db=new D(process.argv[1],{readonly:true});console.log(db.pragma("integrity_check",{simple:true}))`, database], { cwd: REPO, encoding: "utf8" })
    rec.check("the database passes PRAGMA integrity_check", integrity.stdout.trim() === "ok", integrity.stdout.trim() || integrity.stderr.trim().slice(0, 200))
    registerArtifacts(ctx, daemons)
    return rec.finish(l, [daemons])
  } finally {
    closeReaders()
    await fault?.cleanup()
    await daemons.killAll()
    if (mountPoint !== undefined) spawnSync("umount", ["-l", mountPoint])
  }
}

export const storageFaults = async (ctx: TortureContext, options: StorageOptions): Promise<Array<ScenarioResult>> => {
  const dovecot = await startDovecot({ name: "torture-storage", users: [{ user: "nobody@example.test", password: ctx.secret("storage-nobody") }] })
  const smtp = await startSmtpServer()
  try {
    const results: Array<ScenarioResult> = []
    for (const name of options.cases) results.push(await runCase(ctx, dovecot, smtp, options, name))
    return results
  } finally {
    await smtp.stop()
    await dovecot.destroy()
  }
}
