/**
 * Issue 5, the daemon side: the usage-type guard at start and on reload, a SIGHUP reload that
 * starts a newly allowed configuration without touching the running one (no new login), an
 * invalid file that is rejected while the running set goes on, and --watch.
 */
import Database from "better-sqlite3"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventsJson, imapMailbox, smtpQuarantine, spawnCli, tempDir, waitForExit, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const eventually = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}
const count = (database: string, type: string, stream: string): number => {
  try {
    const db = new Database(database, { readonly: true, fileMustExist: true })
    try {
      return (db.prepare("SELECT count(*) AS n FROM events WHERE type = ? AND stream = ?").get(type, stream) as { n: number }).n
    } finally {
      db.close()
    }
  } catch {
    return 0
  }
}

describe("configuration reload", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  const users = ["prod", "training", "watch-a", "watch-b"].map((name) => ({ user: `${name}@example.test`, password: `${name}-pw` }))
  /** Successful IMAP logins of a user, from Dovecot's own log. */
  const logins = (user: string) =>
    readFileSync(dovecot.logFile, "utf8").split("\n").filter((line) => line.includes("imap-login") && line.includes(`Login: user=<${user}>`)).length

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "reload", users })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  const file = (dir: string, trainingUsage: string, extra: Array<unknown> = []) => ({
    server: { usageType: "Production" },
    database: join(dir, "events.db"),
    defaults: { quarantine: smtpQuarantine(smtp) },
    configurations: [
      {
        name: "prod",
        usageType: "Production",
        integrationType: "IMAP",
        pollingIntervalSeconds: 1,
        mailboxes: [imapMailbox(dovecot, "prod", "prod@example.test", "prod-pw")]
      },
      {
        name: "training",
        usageType: trainingUsage,
        integrationType: "IMAP",
        pollingIntervalSeconds: 1,
        mailboxes: [imapMailbox(dovecot, "training", "training@example.test", "training-pw")]
      },
      ...extra
    ]
  })

  it("polls only the configuration whose usage type matches; SIGHUP after the fix starts the other, the first keeps its connection", async () => {
    const dir = tempDir("reload")
    const database = join(dir, "events.db")
    const config = writeConfig(dir, file(dir, "Training"))
    await dovecot.seed("prod@example.test", [plainMessage(1)])
    await dovecot.seed("training@example.test", [plainMessage(2)])
    const daemon = spawnCli(["run", "--config", config])
    try {
      await eventually("the prod mailbox drained", () => count(database, "MessageRemoved", "prod") === 1)
      await eventually("the training mailbox refused", () => count(database, "MailboxStopped", "training") === 1)
      const [stopped] = await eventsJson(config, "--mailbox", "training", "--type", "MailboxStopped")
      expect(stopped!.data.reason).toBe("usage-type-mismatch")
      expect(stopped!.data.detail).toContain("Training")
      expect(stopped!.data.detail).toContain("Production")
      await sleep(1_500)
      expect(count(database, "MailboxConnected", "training")).toBe(0)
      expect(logins("training@example.test")).toBe(0)
      expect(await dovecot.count("training@example.test")).toBe(1)
      const prodLogins = logins("prod@example.test")
      expect(prodLogins).toBe(1)

      // An invalid file is rejected with its errors; the running set goes on.
      writeConfig(dir, { ...file(dir, "Training"), configurations: "oops" })
      daemon.kill("SIGHUP")
      await eventually("the rejection in the log", () => Buffer.concat(daemon.output.stderr).toString().includes("configuration not reloaded"))
      await dovecot.seed("prod@example.test", [plainMessage(3)])
      await eventually("prod still polling", () => count(database, "MessageRemoved", "prod") === 2)

      // The fixed file: the training configuration starts, prod is not touched.
      writeConfig(dir, file(dir, "Production"))
      daemon.kill("SIGHUP")
      await eventually("the training mailbox drained", () => count(database, "MessageRemoved", "training") === 1)
      expect(count(database, "MailboxConnected", "prod")).toBe(1)
      expect(logins("prod@example.test")).toBe(prodLogins)
      const applied = await eventsJson(config, "--type", "ConfigurationApplied")
      expect(applied).toHaveLength(2)
      expect(applied[1]!.data.started).toEqual(["training"])
      expect(applied[1]!.data.restarted).toEqual([])
      expect(applied[1]!.data.hash).not.toBe(applied[0]!.data.hash)
    } finally {
      daemon.kill("SIGTERM")
      expect((await waitForExit(daemon)).code).toBe(0)
    }
  })

  it("with --watch, a changed file stops a removed mailbox and restarts a changed one", async () => {
    const dir = tempDir("watch")
    const database = join(dir, "events.db")
    const base = (pollA: number, withB: boolean) => ({
      database,
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [{
        name: "watch",
        integrationType: "IMAP",
        pollingIntervalSeconds: pollA,
        mailboxes: [
          imapMailbox(dovecot, "watch-a", "watch-a@example.test", "watch-a-pw"),
          ...(withB ? [imapMailbox(dovecot, "watch-b", "watch-b@example.test", "watch-b-pw")] : [])
        ]
      }]
    })
    const config = writeConfig(dir, base(1, true))
    const daemon = spawnCli(["run", "--watch", "--config", config])
    try {
      await eventually("both connected", () => count(database, "MailboxConnected", "watch-a") === 1 && count(database, "MailboxConnected", "watch-b") === 1)
      writeConfig(dir, base(1, false))
      await eventually("watch-b stopped", () => count(database, "MailboxStopped", "watch-b") === 1)
      expect(count(database, "MailboxConnected", "watch-a")).toBe(1)
      writeConfig(dir, base(2, false))
      await eventually("watch-a restarted", () => count(database, "MailboxConnected", "watch-a") === 2)
      const applied = await eventsJson(config, "--type", "ConfigurationApplied")
      expect(applied.map((event) => [event.data.stopped, event.data.restarted])).toEqual([[[], []], [["watch-b"], []], [[], ["watch-a"]]])
    } finally {
      daemon.kill("SIGTERM")
      expect((await waitForExit(daemon)).code).toBe(0)
    }
  })
})
