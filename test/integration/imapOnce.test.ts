/**
 * Issue 2, end to end: 200 messages of every shape in a real Dovecot, drained by
 * `mailintake run --once`, every stored message byte-exact, nothing done twice.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { join } from "node:path"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import Database from "better-sqlite3"
import { MIXED_LARGE_INDEX, mixedMessages } from "../support/messages.js"
import { storedBlob } from "../support/storedBlob.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"
import { eventsJson, imapMailbox, runCli, smtpQuarantine, tempDir, writeConfig } from "../support/cli.js"
import { toCrlf } from "../../src/processing/crlf.js"
import { messageIdOf } from "../../src/processing/messageId.js"

const USER = "test@example.test"

describe("run --once over IMAP", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  let config: string
  let database: string
  const seeded = mixedMessages(200)

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "imap-once" })
    smtp = await startSmtpServer()
    await dovecot.seed(USER, seeded)
    const dir = tempDir("imap-once")
    database = join(dir, "events.db")
    config = writeConfig(dir, {
      database,
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [{
        name: "support",
        usageType: "Production",
        integrationType: "IMAP",
        mailboxes: [imapMailbox(dovecot, "support-inbox", USER, { env: "SUPPORT_PASSWORD" })]
      }]
    })
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  it("accepts and removes every message once, storing the bytes the server delivered", async () => {
    const first = await runCli(["run", "--once", "--config", config], { SUPPORT_PASSWORD: "secret" })
    expect(first.stderr).not.toContain("secret\"")
    expect(first.code, first.stderr).toBe(0)

    const events = await eventsJson(config)
    const count = (type: string) => events.filter((event) => event.type === type).length
    expect(count("MessageRetrieved")).toBe(200)
    expect(count("MessageAccepted")).toBe(200)
    expect(count("MessageRemoved")).toBe(200)
    expect(count("MessageQuarantineRequested")).toBe(0)
    expect(await dovecot.count(USER)).toBe(0)

    // Every accepted message names its sender and subject, and has a CR LF body.
    for (const accepted of events.filter((event) => event.type === "MessageAccepted")) {
      expect(accepted.data.from).toMatch(/@/)
      expect(accepted.data.subject).not.toBe("")
      expect(accepted.data.body).not.toMatch(/(^|[^\r])\n/)
    }

    // The log holds exactly what Dovecot delivered: the seeded bytes, a bare LF as CR LF.
    const bySha = new Map(events.filter((event) => event.type === "MessageRetrieved").map((event) => [event.data.messageId as string, event.data.sha256 as string]))
    const db = new Database(database, { readonly: true })
    for (const message of seeded) {
      const sha256 = bySha.get(messageIdOf(message))
      expect(sha256, messageIdOf(message)).toBeDefined()
      const stored = storedBlob(db, sha256!)!
      expect(Buffer.compare(stored, Buffer.from(toCrlf(message))), messageIdOf(message)).toBe(0)
    }
    db.close()
    // `show` writes them byte for byte: one message of each kind, and the 10 MB one.
    for (const index of [0, 1, 2, 3, 4, 5, MIXED_LARGE_INDEX]) {
      const shown = await runCli(["show", "--config", config, bySha.get(messageIdOf(seeded[index]!))!])
      expect(shown.code).toBe(0)
      expect(Buffer.compare(shown.stdout, Buffer.from(toCrlf(seeded[index]!)))).toBe(0)
    }

    // A second run changes nothing.
    const second = await runCli(["run", "--once", "--config", config], { SUPPORT_PASSWORD: "secret" })
    expect(second.code).toBe(0)
    const after = await eventsJson(config)
    expect(after.filter((event) => event.type.startsWith("Message")).length).toBe(
      events.filter((event) => event.type.startsWith("Message")).length
    )
  })
})
