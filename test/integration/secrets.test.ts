/**
 * Issues 5 and 8: run the daemon with known passwords (IMAP from the environment, SMTP inline,
 * a wrong one that fails to log in, a Graph-style file secret), then search every log line,
 * the whole database and every command's output for them: zero hits.
 */
import Database from "better-sqlite3"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { imapMailbox, runCli, spawnCli, tempDir, waitForExit, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

const IMAP_PASSWORD = "imap-Pa55-7f3a91c2"
const WRONG_PASSWORD = "wrong-Pa55-0be4d7aa"
const SMTP_PASSWORD = "smtp-Pa55-c94e1d03"
const FILE_PASSWORD = "file-Pa55-5d2b8e6f"
const SECRETS = [IMAP_PASSWORD, WRONG_PASSWORD, SMTP_PASSWORD, FILE_PASSWORD]

/** Every form a secret could leak in: as is, and base64 the way SASL PLAIN and LOGIN send it. */
const leakForms = (secret: string, user: string) => [
  secret,
  Buffer.from(secret).toString("base64"),
  Buffer.from(`\u0000${user}\u0000${secret}`).toString("base64")
]

describe("secrets", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  beforeAll(async () => {
    dovecot = await startDovecot({
      name: "secrets",
      users: [
        { user: "env@example.test", password: IMAP_PASSWORD },
        { user: "file@example.test", password: FILE_PASSWORD },
        { user: "wrong@example.test", password: "the-right-one" }
      ]
    })
    smtp = await startSmtpServer({ auth: { user: "relay", pass: SMTP_PASSWORD } })
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  it("never appear in a log line, an event, or any command's output", async () => {
    const dir = tempDir("secrets")
    writeFileSync(join(dir, "file-password"), `${FILE_PASSWORD}\n`)
    await dovecot.seed("env@example.test", [plainMessage(1), plainMessage(2, { subject: "[pcemail quarantine test message]" })])
    await dovecot.seed("file@example.test", [plainMessage(3)])
    const config = writeConfig(dir, {
      database: join(dir, "events.db"),
      defaults: {
        quarantine: {
          type: "SMTP",
          mailbox: "quarantine@example.test",
          smtp: { host: smtp.host, port: smtp.port, user: "relay", password: SMTP_PASSWORD, sender: "mailintake@example.test" }
        }
      },
      configurations: [{
        name: "secrets",
        integrationType: "IMAP",
        pollingIntervalSeconds: 1,
        reconnectIntervalSeconds: 1,
        mailboxes: [
          imapMailbox(dovecot, "env", "env@example.test", { env: "IMAP_PASSWORD" }),
          imapMailbox(dovecot, "file", "file@example.test", { file: "file-password" }),
          imapMailbox(dovecot, "wrong", "wrong@example.test", WRONG_PASSWORD)
        ]
      }]
    })
    const env = { IMAP_PASSWORD, MAILINTAKE_LOG_LEVEL: "debug" }
    const daemon = spawnCli(["run", "--config", config], env)
    await smtp.waitFor(1, 30_000)
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline && ((await dovecot.count("env@example.test")) > 0 || (await dovecot.count("file@example.test")) > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    daemon.kill("SIGTERM")
    const run = await waitForExit(daemon)
    expect(run.code).toBe(0)
    expect(await dovecot.count("env@example.test")).toBe(0)

    const outputs: Array<[string, string]> = [["run", run.stdout.toString() + run.stderr]]
    for (const args of [["status"], ["status", "--json"], ["events"], ["events", "--json"], ["check-config"], ["check-config", "--json"]]) {
      const result = await runCli([...args, "--config", config], env)
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(0)
      outputs.push([args.join(" "), result.stdout.toString() + result.stderr])
    }
    // A failing command prints its error: it must not carry a secret either.
    const badDir = tempDir("secrets-bad")
    const bad = writeConfig(badDir, { configurations: [{ name: "x", integrationType: "IMAP", mailboxes: [{ id: "x", host: "h", user: "u", password: SMTP_PASSWORD, tls: "bogus" }] }] })
    const invalid = await runCli(["check-config", "--config", bad])
    expect(invalid.code).toBe(2)
    outputs.push(["check-config (invalid)", invalid.stdout.toString() + invalid.stderr])

    // The whole database, every table and column, the WAL included.
    const db = new Database(join(dir, "events.db"), { readonly: true })
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>
    for (const { name } of tables) {
      const rows = db.prepare(`SELECT * FROM "${name}"`).all()
      outputs.push([`table ${name}`, JSON.stringify(rows, (_, value) => (Buffer.isBuffer(value) ? value.toString("latin1") : value))])
    }
    db.close()
    for (const file of readdirSync(dir).filter((name) => name.startsWith("events.db"))) {
      outputs.push([file, readFileSync(join(dir, file)).toString("latin1")])
    }
    expect(outputs.find(([what]) => what === "table events")![1]).toContain("MessageQuarantined")

    for (const [what, text] of outputs) {
      for (const secret of SECRETS) {
        for (const form of leakForms(secret, "relay")) {
          expect(text.includes(form), `${what} contains a form of ${secret}`).toBe(false)
        }
      }
    }
  })
})
