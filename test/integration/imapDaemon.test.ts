/**
 * Issue 2, the daemon against a real Dovecot: a crash in the middle of a batch, a server that
 * goes away and comes back, a mailbox with a wrong password beside a healthy one, a restart
 * whose replayed state equals the state before it, a clean stop on SIGTERM, and an idle mailbox
 * that keeps recording its polls and still takes new mail at once.
 */
import Database from "better-sqlite3"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { messageIdOf } from "../../src/processing/messageId.js"
import { eventsJson, imapMailbox, runCli, smtpQuarantine, spawnCli, tempDir, waitForExit, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
const eventually = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const countEvents = (database: string, type: string, stream?: string): number => {
  try {
    const db = new Database(database, { readonly: true, fileMustExist: true })
    try {
      const row = stream === undefined
        ? db.prepare("SELECT count(*) AS n FROM events WHERE type = ?").get(type)
        : db.prepare("SELECT count(*) AS n FROM events WHERE type = ? AND stream = ?").get(type, stream)
      return (row as { n: number }).n
    } finally {
      db.close()
    }
  } catch {
    return 0
  }
}

describe("the daemon over IMAP", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  const users = [
    { user: "crash@example.test", password: "crash-pw" },
    { user: "flaky@example.test", password: "flaky-pw" },
    { user: "good@example.test", password: "good-pw" },
    { user: "locked@example.test", password: "locked-pw" },
    { user: "idle@example.test", password: "idle-pw" }
  ]

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "imap-daemon", users })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  const configFor = (label: string, mailboxes: Array<unknown>, extra: Record<string, unknown> = {}) => {
    const dir = tempDir(label)
    const database = join(dir, "events.db")
    const config = writeConfig(dir, {
      database,
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [{
        name: label,
        integrationType: "IMAP",
        pollingIntervalSeconds: 1,
        reconnectIntervalSeconds: 1,
        mailboxes,
        ...extra
      }]
    })
    return { config, database }
  }

  it("SIGKILLed in the middle of a batch, then restarted: nothing lost, nothing accepted twice", async () => {
    const seeded = Array.from({ length: 800 }, (_, i) => plainMessage(i, { bodyBytes: 2000 }))
    await dovecot.seed("crash@example.test", seeded)
    const { config, database } = configFor("crash", [imapMailbox(dovecot, "crash", "crash@example.test", "crash-pw")])

    // Three kills, each at a different point of the drain.
    for (const threshold of [100, 300, 500]) {
      const daemon = spawnCli(["run", "--config", config])
      await eventually(`${threshold} messages accepted`, () => countEvents(database, "MessageAccepted") >= threshold, 60_000)
      daemon.kill("SIGKILL")
      const killed = await waitForExit(daemon)
      expect(killed.signal).toBe("SIGKILL")
    }
    expect(countEvents(database, "MessageAccepted")).toBeLessThan(seeded.length)

    const again = await runCli(["run", "--once", "--config", config])
    expect(again.code, again.stderr).toBe(0)
    const events = await eventsJson(config, "--type", "MessageAccepted")
    const ids = events.map((event) => event.data.messageId as string)
    expect(new Set(ids).size).toBe(ids.length)
    expect(new Set(ids)).toEqual(new Set(seeded.map(messageIdOf)))
    expect(await dovecot.count("crash@example.test")).toBe(0)
  })

  it("keeps one mailbox working while another has a wrong password; status shows the error", async () => {
    await dovecot.seed("good@example.test", [plainMessage(9001), plainMessage(9002)])
    const { config, database } = configFor("two", [
      imapMailbox(dovecot, "good", "good@example.test", "good-pw"),
      imapMailbox(dovecot, "locked", "locked@example.test", "not-the-password")
    ])
    const daemon = spawnCli(["run", "--config", config])
    await eventually("the good mailbox drained", () => countEvents(database, "MessageRemoved", "good") === 2)
    await eventually("the locked mailbox's failure", () => countEvents(database, "MailboxConnectionFailed", "locked") >= 1)
    await dovecot.seed("good@example.test", [plainMessage(9003)])
    await eventually("a later message in the good mailbox", () => countEvents(database, "MessageRemoved", "good") === 3)
    daemon.kill("SIGTERM")
    const stopped = await waitForExit(daemon)
    expect(stopped.code).toBe(0)
    expect(stopped.stderr).not.toContain("not-the-password")

    const status = await runCli(["status", "--config", config, "--json"])
    const rows = JSON.parse(status.stdout.toString()) as Array<any>
    const good = rows.find((row) => row.mailbox === "good")
    const locked = rows.find((row) => row.mailbox === "locked")
    expect(good.counts.accepted).toBe(3)
    expect(good.connection).toBe("stopped (shutdown)")
    expect(locked.counts.retrieved).toBe(0)
    expect(locked.lastError).toMatch(/auth/i)
  })

  it("resumes by itself when Dovecot stops and comes back", async () => {
    const { config, database } = configFor("flaky", [imapMailbox(dovecot, "flaky", "flaky@example.test", "flaky-pw")])
    await dovecot.seed("flaky@example.test", [plainMessage(7001)])
    const daemon = spawnCli(["run", "--config", config])
    try {
      await eventually("the first message", () => countEvents(database, "MessageRemoved", "flaky") === 1)
      await dovecot.stop()
      await eventually("the connection failure", () => countEvents(database, "MailboxConnectionFailed", "flaky") >= 1)
      await dovecot.seed("flaky@example.test", [plainMessage(7002)])
      await dovecot.start()
      await eventually("the message sent while the server was down", () => countEvents(database, "MessageRemoved", "flaky") === 2, 60_000)
      expect(countEvents(database, "MailboxConnected", "flaky")).toBeGreaterThanOrEqual(2)
    } finally {
      daemon.kill("SIGTERM")
      await waitForExit(daemon)
    }
  })

  it("while idle, keeps recording polls (status stays fresh) and takes a new message within a poll or two", async () => {
    const { config, database } = configFor("idle", [imapMailbox(dovecot, "idle", "idle@example.test", "idle-pw")])
    const lastPoll = async () => {
      const row = (JSON.parse((await runCli(["status", "--config", config, "--json"])).stdout.toString()) as Array<any>)[0]
      return { at: row?.lastPoll === null || row?.lastPoll === undefined ? 0 : Date.parse(row.lastPoll), stale: row?.stale as boolean }
    }
    const daemon = spawnCli(["run", "--config", config])
    try {
      await eventually("the first recorded poll", async () => (await lastPoll()).at > 0)
      const first = await lastPoll()
      // Idle polls (one NOOP each, no listing) are recorded too: flushed every few seconds.
      await eventually("a later recorded poll", async () => (await lastPoll()).at > first.at + 2_000, 20_000)
      expect((await lastPoll()).stale).toBe(false)
      expect(countEvents(database, "MessageRetrieved")).toBe(0)

      const deliveredAt = Date.now()
      await dovecot.seed("idle@example.test", [plainMessage(9001)])
      await eventually("the new message accepted", () => countEvents(database, "MessageAccepted") === 1, 20_000)
      // pollingIntervalSeconds is 1: the next check sees the new message.
      expect(Date.now() - deliveredAt).toBeLessThan(10_000)
      await eventually("the message removed", async () => (await dovecot.count("idle@example.test")) === 0)
    } finally {
      daemon.kill("SIGTERM")
      expect((await waitForExit(daemon)).code).toBe(0)
    }
  }, 60_000)

  it("accepts the same message only once, and says so", async () => {
    const { config } = configFor("duplicate", [imapMailbox(dovecot, "duplicate", "good@example.test", "good-pw")])
    await dovecot.seed("good@example.test", [plainMessage(8001), plainMessage(8002), plainMessage(8001)])
    expect((await runCli(["run", "--once", "--config", config])).code).toBe(0)
    const skipped = await eventsJson(config, "--type", "MessageDuplicateSkipped")
    expect(skipped.map((event) => event.data.messageId)).toEqual(["<test-plain-8001@example.test>"])
    const row = (JSON.parse((await runCli(["status", "--config", config, "--json"])).stdout.toString()) as Array<any>)[0]
    // The same bytes twice: accepted once, skipped once, both removed.
    expect(row.counts).toMatchObject({ retrieved: 3, accepted: 2, duplicates: 1, removed: 3, pending: 0 })
  })
})
