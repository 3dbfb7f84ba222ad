/**
 * Issue 4, end to end through the daemon: POP3 with STLS and with implicit TLS, the
 * 200-message scenario byte-exact, a connection cut between DELE and QUIT, and a quarantine
 * that removes the message only after the SMTP server accepted it.
 */
import Database from "better-sqlite3"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { toCrlf } from "../../src/processing/crlf.js"
import { messageIdOf } from "../../src/processing/messageId.js"
import { eventsJson, runCli, smtpQuarantine, tempDir, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { startFaultProxy } from "../support/faultProxy.js"
import { mixedMessages, plainMessage } from "../support/messages.js"
import { storedBlob } from "../support/storedBlob.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

describe("POP3 through the daemon", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  const users = ["stls", "implicit", "cut", "quarantine"].map((name) => ({ user: `${name}@example.test`, password: `${name}-pw` }))

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "pop3", users })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  const configFor = (label: string, mailbox: Record<string, unknown>) => {
    const dir = tempDir(label)
    const database = join(dir, "events.db")
    const config = writeConfig(dir, {
      database,
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [{ name: label, integrationType: "POP3", pollingIntervalSeconds: 1, mailboxes: [{ id: label, connectTimeoutSeconds: 5, ...mailbox }] }]
    })
    return { config, database }
  }

  const storedBytes = (database: string) => {
    const db = new Database(database, { readonly: true })
    const rows = db.prepare(`SELECT payload FROM events WHERE type = 'MessageRetrieved'`).all() as Array<{ payload: string }>
    const stored = new Map(rows.map((row) => {
      const { messageId, sha256 } = JSON.parse(row.payload) as { messageId: string; sha256: string }
      return [messageId, storedBlob(db, sha256)]
    }))
    db.close()
    return stored
  }

  for (const mode of ["stls", "implicit"] as const) {
    it(`drains 200 messages of every shape byte-exact (${mode === "stls" ? "STLS on the plain port" : "implicit TLS"})`, async () => {
      const seeded = mixedMessages(200)
      await dovecot.seed(`${mode}@example.test`, seeded)
      const { config, database } = configFor(mode, {
        host: dovecot.host,
        port: mode === "stls" ? dovecot.pop3Port : dovecot.pop3sPort,
        tls: mode === "stls" ? "starttls" : "implicit",
        caFile: dovecot.caFile,
        user: `${mode}@example.test`,
        password: `${mode}-pw`
      })
      const run = await runCli(["run", "--once", "--config", config])
      expect(run.code, run.stderr).toBe(0)
      const events = await eventsJson(config)
      expect(events.filter((event) => event.type === "MessageAccepted")).toHaveLength(200)
      expect(events.filter((event) => event.type === "MessageRemoved")).toHaveLength(200)
      expect(await dovecot.count(`${mode}@example.test`)).toBe(0)
      const stored = storedBytes(database)
      for (const message of seeded) {
        expect(Buffer.compare(stored.get(messageIdOf(message))!, Buffer.from(toCrlf(message))), messageIdOf(message)).toBe(0)
      }
    })
  }

  it("loses nothing and accepts nothing twice when the connection is cut after DELE, before QUIT", async () => {
    const seeded = Array.from({ length: 20 }, (_, i) => plainMessage(500 + i))
    await dovecot.seed("cut@example.test", seeded)
    const proxy = await startFaultProxy({ host: dovecot.host, port: dovecot.pop3Port })
    try {
      const { config } = configFor("cut", {
        host: "127.0.0.1",
        port: proxy.port,
        tls: "none",
        user: "cut@example.test",
        password: "cut-pw"
      })
      proxy.cutWhen((bytes) => bytes.toString("latin1").startsWith("QUIT"))
      const first = await runCli(["run", "--once", "--config", config])
      expect(proxy.cuts).toBeGreaterThan(0)
      expect(first.code).toBe(0)
      // DELE without QUIT deletes nothing.
      expect(await dovecot.count("cut@example.test")).toBe(20)
      const accepted = await eventsJson(config, "--type", "MessageAccepted")
      expect(accepted).toHaveLength(20)
      expect(await eventsJson(config, "--type", "MessageRemoved")).toHaveLength(0)

      proxy.cutWhen(undefined)
      const second = await runCli(["run", "--once", "--config", config])
      expect(second.code, second.stderr).toBe(0)
      expect(await dovecot.count("cut@example.test")).toBe(0)
      expect(await eventsJson(config, "--type", "MessageAccepted")).toHaveLength(20)
      expect(await eventsJson(config, "--type", "MessageRetrieved")).toHaveLength(20)
      expect(await eventsJson(config, "--type", "MessageRemoved")).toHaveLength(20)
    } finally {
      await proxy.close()
    }
  })

  it("removes a quarantine-test message only after the SMTP server accepted it", async () => {
    const test = plainMessage(600, { subject: "Hello [PCEmail Quarantine Test Message] there" })
    await dovecot.seed("quarantine@example.test", [test, plainMessage(601)])
    const { config } = configFor("quarantine", {
      host: dovecot.host,
      port: dovecot.pop3sPort,
      tls: "implicit",
      caFile: dovecot.caFile,
      user: "quarantine@example.test",
      password: "quarantine-pw"
    })
    smtp.setRejecting(() => ({ code: 451, message: "try again later" }))
    const refused = await runCli(["run", "--once", "--config", config])
    expect(refused.code).toBe(0)
    expect(await dovecot.count("quarantine@example.test")).toBe(1)
    expect(await eventsJson(config, "--type", "QuarantineFailed")).toHaveLength(1)

    smtp.setRejecting(undefined)
    const before = smtp.received.length
    // The retry waits for its backoff (one polling interval); --once polls right away, so
    // run the daemon's next poll after that interval.
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    const accepted = await runCli(["run", "--once", "--config", config])
    expect(accepted.code).toBe(0)
    expect(await dovecot.count("quarantine@example.test")).toBe(0)
    expect(smtp.received.length).toBe(before + 1)
    const quarantined = await eventsJson(config, "--type", "MessageQuarantined")
    expect(quarantined.map((event) => event.data.reason)).toEqual(["quarantine-test"])
  })
})
