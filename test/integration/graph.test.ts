/**
 * Issue 6 through the daemon: a Graph configuration beside an IMAP one in one process, 200
 * messages over several pages with a forced 429, and a quarantine through Graph sendMail with
 * the original attached byte for byte.
 */
import { simpleParser } from "mailparser"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { messageIdOf } from "../../src/processing/messageId.js"
import { eventsJson, imapMailbox, runCli, smtpQuarantine, spawnCli, tempDir, waitForExit, writeConfig } from "../support/cli.js"
import { startDovecot, type Dovecot } from "../support/dovecot.js"
import { startGraphServer, type GraphServer } from "../support/graphServer.js"
import { mixedMessages, plainMessage } from "../support/messages.js"
import * as samples from "../support/quarantineSamples.js"
import { startSmtpServer, type SmtpServerHandle } from "../support/smtpServer.js"

const GRAPH_USER = "support@contoso.example"

describe("Graph beside IMAP in one daemon", () => {
  let dovecot: Dovecot
  let smtp: SmtpServerHandle
  let graph: GraphServer
  beforeAll(async () => {
    dovecot = await startDovecot({ name: "graph" })
    smtp = await startSmtpServer()
    graph = await startGraphServer()
  })
  afterAll(async () => {
    await dovecot?.destroy()
    await smtp?.stop()
    await graph?.stop()
  })

  it("drains both, every message once, honouring a 429's Retry-After, and quarantines through sendMail", async () => {
    const graphMessages = [...mixedMessages(200).slice(0, 199), samples.vacationReply()]
    graph.seed(GRAPH_USER, "inbox", graphMessages)
    await dovecot.seed("test@example.test", [plainMessage(1), plainMessage(2)])
    const dir = tempDir("graph")
    const config = writeConfig(dir, {
      database: join(dir, "events.db"),
      defaults: { quarantine: smtpQuarantine(smtp) },
      configurations: [
        { name: "imap", integrationType: "IMAP", mailboxes: [imapMailbox(dovecot, "imap", "test@example.test", "secret")] },
        {
          name: "m365",
          integrationType: "Graph",
          quarantine: { type: "Graph", mailbox: "quarantine@contoso.example" },
          mailboxes: [{
            id: "m365",
            tenant: graph.tenant,
            clientId: graph.clientId,
            clientSecret: { env: "GRAPH_SECRET" },
            user: GRAPH_USER,
            authorityUrl: graph.authorityUrl,
            graphUrl: graph.graphUrl
          }]
        }
      ]
    })
    graph.failNext(1, 429, 2)
    const started = Date.now()
    const run = await runCli(["run", "--once", "--config", config], { GRAPH_SECRET: graph.clientSecret })
    expect(run.code, run.stderr).toBe(0)
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000)

    // The 429 was answered, then the same request came again no sooner than Retry-After said.
    const throttled = graph.requests.findIndex((request) => request.status === 429)
    expect(throttled).toBeGreaterThanOrEqual(0)
    const retry = graph.requests.slice(throttled + 1).find((request) =>
      request.path === graph.requests[throttled]!.path && request.query === graph.requests[throttled]!.query)
    expect(retry!.time - graph.requests[throttled]!.time).toBeGreaterThanOrEqual(2_000)

    const accepted = await eventsJson(config, "--type", "MessageAccepted")
    const byMailbox = (mailbox: string) => accepted.filter((event) => event.mailbox === mailbox).map((event) => event.data.messageId)
    expect(new Set(byMailbox("m365"))).toEqual(new Set(graphMessages.slice(0, 199).map(messageIdOf)))
    expect(byMailbox("m365")).toHaveLength(199)
    expect(byMailbox("imap")).toHaveLength(2)
    expect(graph.messages(GRAPH_USER, "inbox")).toHaveLength(0)
    expect(await dovecot.count("test@example.test")).toBe(0)

    expect(graph.sent).toHaveLength(1)
    const notice = await simpleParser(graph.sent[0]!.mime)
    expect(notice.headers.get("x-mailintake-quarantine")).toBe("auto-response")
    const original = notice.attachments.find((attachment) => attachment.contentType === "message/rfc822")
    expect(original!.content.equals(samples.vacationReply())).toBe(true)
    const quarantined = await eventsJson(config, "--type", "MessageQuarantined")
    expect(quarantined.map((event) => [event.mailbox, event.data.destination])).toEqual([["m365", "quarantine@contoso.example"]])
  })

  it("stops a mailbox whose access is denied, with a clear MailboxStopped, instead of hammering the service", async () => {
    const user = "denied@contoso.example"
    graph.seed(user, "inbox", [plainMessage(10)])
    graph.denyAccess(user)
    const dir = tempDir("graph-denied")
    const config = writeConfig(dir, {
      database: join(dir, "events.db"),
      configurations: [{
        name: "m365",
        integrationType: "Graph",
        pollingIntervalSeconds: 1,
        reconnectIntervalSeconds: 1,
        quarantine: { type: "Graph", mailbox: "quarantine@contoso.example" },
        mailboxes: [{
          id: "denied",
          tenant: graph.tenant,
          clientId: graph.clientId,
          clientSecret: graph.clientSecret,
          user,
          authorityUrl: graph.authorityUrl,
          graphUrl: graph.graphUrl
        }]
      }]
    })
    const daemon = spawnCli(["run", "--config", config])
    try {
      const deadline = Date.now() + 30_000
      while (Date.now() < deadline && (await eventsJson(config, "--type", "MailboxStopped")).length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 300))
      }
      const [stopped] = await eventsJson(config, "--type", "MailboxStopped")
      expect(stopped!.data.reason).toBe("auth-failed")
      expect(stopped!.data.detail).toMatch(/403|denied/i)
      const requests = graph.requests.filter((request) => request.path.includes(encodeURIComponent(user)) || request.path.includes(user)).length
      await new Promise((resolve) => setTimeout(resolve, 3_000))
      const later = graph.requests.filter((request) => request.path.includes(encodeURIComponent(user)) || request.path.includes(user)).length
      expect(later).toBe(requests)
      expect(graph.messages(user, "inbox")).toHaveLength(1)
    } finally {
      daemon.kill("SIGTERM")
      expect((await waitForExit(daemon)).code).toBe(0)
    }
  })
})
