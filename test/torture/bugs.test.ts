/**
 * Issue 8: what the torture suite found in src/, kept as regression tests now that each is
 * fixed (the descriptions say what was wrong). Each test is small and bounded in time.
 *
 * 1. MailboxActor.removeDone runs session.remove inside Effect.uninterruptible, and Effect's
 *    timeouts work by interruption: withMailbox's commandTimeoutSeconds can never fire for a
 *    removal. A server that does not answer UID STORE/UID EXPUNGE holds the mailbox until
 *    imapflow's own socket timeout (5 minutes), and no failure is recorded meanwhile.
 * 2. ImapSource.openSession awaits client.connect() (greeting, CAPABILITY, LOGIN, SELECT)
 *    inside the acquire of Effect.acquireRelease, which is uninterruptible, and with no timeout
 *    of ours: a server that greets and then never answers LOGIN holds the session for
 *    imapflow's 5-minute socket timeout, and SIGTERM cannot stop the daemon meanwhile.
 * 3. @effect/sql turns a failed COMMIT into a defect (Effect.orDie). When the event log cannot
 *    be written (read-only, disk full), the append dies instead of failing with SqlError, so the
 *    actor's storage path ("mailbox paused", backoff, replay) is skipped: the Supervisor restarts
 *    the whole mailbox every reconnectIntervalSeconds, each time with a full replay and a new
 *    login to the mail server (no backoff).
 * 4. Quarantine forwards run inside the poll, one after another, before the batch's removal, and
 *    the SMTP sink's timeouts are a fixed 30 s: a quarantine destination that accepts TCP and
 *    never answers holds every other message of the batch (and every later poll, through
 *    finishInFlight) for 30 s per quarantined message, contrary to "the others keep flowing".
 * 5. A truncated multipart whose last part header is an empty "Content-Type:" makes mailparser
 *    report an attachment with contentType false; summarize.ts passes it on, and
 *    `new MessageAccepted(...)` in MailboxActor.classifyAll (outside decide's catchAllCause)
 *    throws a ParseError. The defect kills the mailbox; the Supervisor restarts it every
 *    reconnectIntervalSeconds, finishInFlight classifies the same message again and dies again:
 *    one 150-byte message blocks its mailbox for good (found by the hostile generator).
 */
import { spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { smtpQuarantine, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"
import { startChaosProxy } from "./lib/chaosProxy.js"
import { makeContext, sleep, waitUntil } from "./lib/context.js"
import { Daemons } from "./lib/daemon.js"
import { closeReaders, countByType, readEvents } from "./lib/ledger.js"
import { createServer, type Socket } from "node:net"

describe("torture findings", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  const ctx = makeContext({ seed: 901 })
  const users = ["removal", "storage", "smtp", "poison"].map((name) => ({ user: `${name}@example.test`, password: `${name}-pw` }))

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "torture-bugs", users })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    closeReaders()
    if (process.env.TORTURE_KEEP === undefined) rmSync(ctx.root, { recursive: true, force: true, maxRetries: 3 })
    await dovecot?.destroy()
    await smtp?.stop()
  })

  const config = (dir: string, mailbox: Record<string, unknown>, integrationType = "IMAP") =>
    writeConfig(dir, {
      database: join(dir, "events.db"),
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [{ name: "bugs", integrationType, pollingIntervalSeconds: 1, reconnectIntervalSeconds: 1, mailboxes: [mailbox] }]
    })

  /** A server that greets like IMAP and then never answers anything. */
  const silentImap = async () => {
    const sockets = new Set<Socket>()
    let connections = 0
    const server = createServer((socket) => {
      connections++
      sockets.add(socket)
      socket.on("error", () => socket.destroy())
      socket.write("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
      socket.on("data", () => {})
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return {
      port: (server.address() as { port: number }).port,
      connections: () => connections,
      close: () => new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
    }
  }

  it("1. an IMAP removal that the server never answers fails within commandTimeoutSeconds", async () => {
    await dovecot.seed("removal@example.test", [plainMessage(1), plainMessage(2), plainMessage(3)])
    const proxy = await startChaosProxy({ host: dovecot.host, port: dovecot.imapPort })
    // Swallow the removal commands (the client waits for an answer that never comes).
    proxy.hooks = { onClient: (chunk) => (/^\S+ UID (STORE|EXPUNGE)/im.test(chunk.toString("latin1")) ? { forward: 0 } : undefined) }
    const dir = ctx.dir("bug-removal")
    const daemons = new Daemons(ctx.bin, dir)
    try {
      const file = config(dir, {
        id: "removal", host: "127.0.0.1", port: proxy.port, tls: "none", user: "removal@example.test", password: "removal-pw",
        connectTimeoutSeconds: 3, commandTimeoutSeconds: 3
      })
      daemons.start(["run", "--config", file])
      const database = join(dir, "events.db")
      expect(await waitUntil(() => (countByType(database).get("MessageAccepted") ?? 0) >= 3, 30_000)).toBe(true)
      // 3 s of command timeout, plus generous slack for a loaded machine.
      const failed = await waitUntil(() => (countByType(database).get("MailboxConnectionFailed") ?? 0) >= 1, 20_000, 200)
      const failures = readEvents(database).filter((event) => event.type === "MailboxConnectionFailed").map((event) => event.payload)
      expect(failed, "no MailboxConnectionFailed within 20 s of a removal that is never answered (commandTimeoutSeconds: 3)").toBe(true)
      expect(failures.join("\n")).toMatch(/timeout: remove/)
    } finally {
      await daemons.killAll()
      await proxy.close()
    }
  }, 90_000)

  it("2a. an IMAP server that greets and never answers LOGIN: run --once ends within its timeouts", async () => {
    const silent = await silentImap()
    const dir = ctx.dir("bug-login")
    const daemons = new Daemons(ctx.bin, dir)
    try {
      const file = config(dir, {
        id: "silent", host: "127.0.0.1", port: silent.port, tls: "none", user: "x@example.test", password: "x-pw",
        connectTimeoutSeconds: 2, commandTimeoutSeconds: 2
      })
      const started = Date.now()
      const result = await daemons.runToEnd(["run", "--once", "--config", file], { timeoutMs: 30_000 })
      const seconds = (Date.now() - started) / 1000
      expect(result.hung, `run --once still waiting for LOGIN after ${seconds.toFixed(0)} s (connect 2 s + command 2 s)`).toBe(false)
      expect(result.exit.code).toBe(1)
    } finally {
      await daemons.killAll()
      await silent.close()
    }
  }, 90_000)

  it("2b. SIGTERM stops the daemon promptly while a login is pending", async () => {
    const silent = await silentImap()
    const dir = ctx.dir("bug-login-sigterm")
    const daemons = new Daemons(ctx.bin, dir)
    try {
      const file = config(dir, {
        id: "silent", host: "127.0.0.1", port: silent.port, tls: "none", user: "x@example.test", password: "x-pw",
        connectTimeoutSeconds: 2, commandTimeoutSeconds: 2
      })
      const daemon = daemons.start(["run", "--config", file])
      expect(await waitUntil(() => silent.connections() >= 1, 30_000)).toBe(true)
      await sleep(1_000)
      const stopped = await daemon.stop(10_000)
      expect(stopped.inTime, "the daemon did not exit within 10 s of SIGTERM").toBe(true)
    } finally {
      await daemons.killAll()
      await silent.close()
    }
  }, 90_000)

  const canChattr = process.getuid?.() === 0 && spawnSync("chattr", ["--help"]).error === undefined

  it.skipIf(!canChattr)("3. a read-only event log pauses the mailbox with backoff (no restart and login every second)", async () => {
    const user = "storage@example.test"
    await dovecot.seed(user, Array.from({ length: 5 }, (_, i) => plainMessage(100 + i)))
    const dir = ctx.dir("bug-storage")
    const database = join(dir, "events.db")
    const daemons = new Daemons(ctx.bin, dir)
    const files = [database, `${database}-wal`, `${database}-shm`]
    let immutable = false
    try {
      const file = config(dir, { id: "storage", host: dovecot.host, port: dovecot.imapsPort, tls: "implicit", caFile: dovecot.caFile, user, password: "storage-pw" })
      const daemon = daemons.start(["run", "--config", file])
      expect(await waitUntil(() => (countByType(database).get("MessageRemoved") ?? 0) >= 5, 30_000)).toBe(true)
      const loginsBefore = logins(dovecot, user)
      expect(spawnSync("chattr", ["+i", ...files]).status).toBe(0)
      immutable = true
      await dovecot.seed(user, [plainMessage(200)])
      await sleep(12_000)
      const during = logins(dovecot, user) - loginsBefore
      spawnSync("chattr", ["-i", ...files])
      immutable = false
      expect(await waitUntil(async () => (await dovecot.count(user)) === 0, 30_000)).toBe(true)
      await daemon.stop()
      const stderr = daemons.allStderr()
      // Backoff from 1 s, x1.5 per attempt: about 5 attempts in 12 s (7 with slack), not one a second.
      expect(during, `${during} logins to the mail server in 12 s of storage outage`).toBeLessThanOrEqual(7)
      expect(stderr).toContain("mailbox paused")
      expect(stderr).not.toContain("failed; restarting it")
    } finally {
      if (immutable) spawnSync("chattr", ["-i", ...files])
      await daemons.killAll()
    }
  }, 120_000)

  it("4. normal messages keep flowing while the quarantine destination black-holes", async () => {
    const user = "smtp@example.test"
    const smtpProxy = await startChaosProxy({ host: smtp.host, port: smtp.port })
    smtpProxy.blackHoleNew = true
    await dovecot.seed(user, [
      plainMessage(300, { subject: "[pcemail quarantine test message] one" }),
      plainMessage(301, { subject: "[pcemail quarantine test message] two" }),
      plainMessage(302),
      plainMessage(303)
    ])
    const dir = ctx.dir("bug-smtp")
    const database = join(dir, "events.db")
    const daemons = new Daemons(ctx.bin, dir)
    try {
      const file = writeConfig(dir, {
        database,
        defaults: { quarantine: { ...smtpQuarantine(smtp), smtp: { ...smtpQuarantine(smtp).smtp, port: smtpProxy.port } } },
        configurations: [{
          name: "bugs", integrationType: "IMAP", pollingIntervalSeconds: 1, reconnectIntervalSeconds: 1,
          mailboxes: [{ id: "smtp", host: dovecot.host, port: dovecot.imapsPort, tls: "implicit", caFile: dovecot.caFile, user, password: "smtp-pw" }]
        }]
      })
      daemons.start(["run", "--config", file])
      expect(await waitUntil(() => (countByType(database).get("MessageAccepted") ?? 0) >= 2, 30_000)).toBe(true)
      const acceptedAt = Date.now()
      // The two normal messages are accepted: they should leave the server at once, not after 2 x 30 s.
      const flowed = await waitUntil(async () => (await dovecot.count(user)) <= 2, 20_000, 200)
      expect(flowed, `the accepted messages were still on the server ${((Date.now() - acceptedAt) / 1000).toFixed(0)} s after being accepted, behind two forwards to a silent SMTP server`).toBe(true)
    } finally {
      await daemons.killAll()
      await smtpProxy.close()
    }
  }, 90_000)

  it("5. a truncated multipart with an empty Content-Type neither kills the mailbox nor blocks the next message", async () => {
    const user = "poison@example.test"
    const poison = Buffer.from(
      "Message-ID: <poison@torture.test>\r\nFrom: a@b.test\r\nSubject: truncated\r\nMIME-Version: 1.0\r\n" +
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type:'
    )
    await dovecot.seed(user, [poison, plainMessage(400)])
    const dir = ctx.dir("bug-poison")
    const database = join(dir, "events.db")
    const daemons = new Daemons(ctx.bin, dir)
    try {
      const file = config(dir, { id: "poison", host: dovecot.host, port: dovecot.imapsPort, tls: "implicit", caFile: dovecot.caFile, user, password: "poison-pw" })
      const result = await daemons.runToEnd(["run", "--once", "--config", file], { timeoutMs: 60_000 })
      const counts = countByType(database)
      const done = (counts.get("MessageAccepted") ?? 0) + (counts.get("MessageQuarantineRequested") ?? 0)
      expect(result.stderr).not.toMatch(/ParseError/)
      expect(done, "both messages classified (accepted, or quarantined as processing-error)").toBe(2)
      expect(result.exit.code).toBe(0)
    } finally {
      await daemons.killAll()
    }
  }, 90_000)
})

const logins = (dovecot: Dovecot, user: string): number =>
  readFileSync(dovecot.logFile, "utf8").split("\n").filter((line) => line.includes(`Login: user=<${user}>`)).length
