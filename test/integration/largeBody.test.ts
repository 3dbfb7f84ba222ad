/**
 * A large text body end to end (`mailintake run --once` on a real Dovecot, IMAP and POP3): a
 * body over INLINE_BODY_MAX_BYTES is stored apart and named by MessageAccepted's `bodySha256`,
 * `show` gives it back as mailparser reads it with CR LF line endings, and the parser's spool is
 * left empty. Three shapes: a message over 4 MiB, whose text goes through the spool (written to a
 * file as it is decoded); a smaller Latin-1 one whose body doubles as UTF-8, parsed as a string
 * and stored apart by the mailbox actor; and one whose 2 MiB body stays in the event.
 */
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { INLINE_BODY_MAX_BYTES } from "../../src/processing/bodySpool.js"
import { summarizeWithMailparser } from "../../src/processing/summarize.js"
import { eventsJson, runCli, smtpQuarantine, tempDir, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { plainMessage } from "../support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

const MiB = 1024 * 1024

/** A text/plain message of about `bytes`, with LF line endings in its body and non-ASCII text. */
const textMessage = (id: string, bytes: number, encoding: "8bit" | "quoted-printable" | "latin1") => {
  const line = {
    "8bit": "Grüße aus dem Support — ticket text\n",
    "quoted-printable": "Gr=C3=BC=C3=9Fe aus dem Support, ticket text=\n and more\n",
    // One byte a character here, two in UTF-8.
    latin1: "\u00e9\u00e8\u00e0\u00fc\u00f6\u00e4\u00df\u00e7\u00f1\u00f8".repeat(7) + "\n"
  }[encoding]
  const head = [
    "From: Customer <customer@example.test>",
    "To: support@example.test",
    `Subject: A long text ${id}`,
    `Message-ID: <${id}@example.test>`,
    "Date: Fri, 27 Nov 2026 10:00:00 +0000",
    "MIME-Version: 1.0",
    `Content-Type: text/plain; charset=${encoding === "latin1" ? "iso-8859-1" : "utf-8"}`,
    `Content-Transfer-Encoding: ${encoding === "latin1" ? "8bit" : encoding}`,
    "",
    ""
  ].join("\r\n")
  const charset = encoding === "latin1" ? "latin1" : "utf8"
  return Buffer.concat([Buffer.from(head), Buffer.from(line.repeat(Math.ceil(bytes / Buffer.byteLength(line, charset))), charset)])
}

describe("a large text body through the daemon", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  const users = ["imap", "pop3"].map((name) => ({ user: `${name}@example.test`, password: `${name}-pw` }))

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "large-body", users })
    smtp = await startSmtpServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
  })

  for (const protocol of ["imap", "pop3"] as const) {
    it(`is stored apart, named by bodySha256, and shown as mailparser reads it (${protocol.toUpperCase()})`, async () => {
      const seeded = [
        textMessage(`spooled-${protocol}`, 6 * MiB, "8bit"),
        textMessage(`doubled-${protocol}`, 3 * MiB, "latin1"),
        textMessage(`inline-${protocol}`, 2 * MiB, "quoted-printable"),
        plainMessage(1)
      ]
      await dovecot.seed(`${protocol}@example.test`, seeded)
      const dir = tempDir(`large-body-${protocol}`)
      const database = join(dir, "events.db")
      const config = writeConfig(dir, {
        database,
        defaults: { quarantine: smtpQuarantine(smtp) },
        configurations: [{
          name: protocol,
          integrationType: protocol.toUpperCase(),
          mailboxes: [{
            id: protocol,
            host: dovecot.host,
            port: protocol === "imap" ? dovecot.imapsPort : dovecot.pop3sPort,
            tls: "implicit",
            caFile: dovecot.caFile,
            user: `${protocol}@example.test`,
            password: `${protocol}-pw`,
            connectTimeoutSeconds: 5
          }]
        }]
      })
      const run = await runCli(["run", "--once", "--config", config])
      expect(run.code, run.stderr).toBe(0)

      const accepted = (await eventsJson(config, "--type", "MessageAccepted")).map((event) => event.data)
      expect(accepted).toHaveLength(4)
      expect(await dovecot.count(`${protocol}@example.test`)).toBe(0)
      const storedApart: Array<string> = []
      for (const raw of seeded) {
        const expected = (await summarizeWithMailparser(raw)).body
        const event = accepted.find((data) => raw.includes(Buffer.from(`Message-ID: ${data.messageId}`)))
        expect(event, String(raw.subarray(0, 200))).toBeDefined()
        if (Buffer.byteLength(expected) <= INLINE_BODY_MAX_BYTES) {
          expect(event!.body).toBe(expected)
          expect(event!.bodySha256).toBeUndefined()
          continue
        }
        expect(event!.body).toBe("")
        expect(event!.bodySha256).toMatch(/^[0-9a-f]{64}$/)
        storedApart.push(event!.messageId)
        const shown = await runCli(["show", "--config", config, event!.bodySha256])
        expect(shown.code, shown.stderr).toBe(0)
        expect(shown.stdout.toString("utf8") === expected, `body of ${event!.messageId}`).toBe(true)
      }
      expect(storedApart.sort()).toEqual([`<doubled-${protocol}@example.test>`, `<spooled-${protocol}@example.test>`])
      // The 6 MiB message was spooled beside the database (the directory is made by the first
      // spooled part), and every spooled body went into the log: none is left behind.
      expect(readdirSync(`${database}.spool`)).toEqual([])
    }, 120_000)
  }
})
