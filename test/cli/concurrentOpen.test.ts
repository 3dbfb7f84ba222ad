/**
 * Several processes opening one new event log at once — the daemon starting while an operator
 * (or a script) already runs `mailintake events` — must all find it migrated and usable. Each
 * round starts six real CLI processes on a fresh database file.
 */
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { runCli, tempDir, writeConfig } from "../support/cli.js"

const freshConfig = (round: number) => {
  const dir = tempDir(`concurrent-open-${round}`)
  return writeConfig(dir, {
    database: join(dir, "events.db"),
    configurations: [{
      name: "nowhere",
      integrationType: "IMAP",
      quarantine: {
        type: "SMTP",
        mailbox: "quarantine@example.test",
        smtp: { host: "127.0.0.1", port: 1, ssl: false, user: "", password: "", sender: "mailintake@example.test" }
      },
      mailboxes: [{ id: "nowhere", host: "127.0.0.1", port: 1, tls: "none", user: "u", password: "p" }]
    }]
  })
}

describe("opening one new event log from several processes at once", () => {
  it("migrates it once and every process reads it without an error", async () => {
    for (let round = 0; round < 3; round++) {
      const config = freshConfig(round)
      const results = await Promise.all([
        runCli(["events", "--config", config, "--json", "--type", "MessageAccepted"]),
        runCli(["events", "--config", config, "--json"]),
        runCli(["status", "--config", config, "--json"]),
        runCli(["events", "--config", config]),
        runCli(["status", "--config", config]),
        runCli(["events", "--config", config, "--json", "--limit", "5"])
      ])
      for (const result of results) expect(result.code, result.stderr).toBe(0)
      const status = JSON.parse((await runCli(["status", "--config", config, "--json"])).stdout.toString())
      expect(status.map((row: { mailbox: string }) => row.mailbox)).toEqual(["nowhere"])
    }
  }, 120_000)
})
