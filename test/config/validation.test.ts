/**
 * Issue 5, validation: one test per rule of the settings screen, each naming the exact field to
 * fix and saying how, and every problem of a file reported in one go.
 */
import { Redacted } from "effect"
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import {
  configFile,
  configuration,
  graphMailbox,
  imapMailbox,
  planOf,
  problemsOf,
  smtpQuarantine
} from "./support.js"

const NOT_SUPPORTED = (type: string) =>
  `integration type ${type} is not supported by this build yet (supported: IMAP, POP3, Graph)`

/** An interaction-server configuration with every field it needs. */
const interaction = (integrationType: string, extra: Record<string, unknown> = {}) =>
  configuration({
    name: integrationType.toLowerCase(),
    integrationType,
    serverName: "interaction.example.com",
    userName: "mailintake",
    password: "interaction-password",
    mailboxes: [],
    ...extra
  })

describe("quarantine type and integration type", () => {
  it("allows an AgentInteraction quarantine only with the AgentInteraction integration type", async () => {
    const problems = await problemsOf(configFile([
      configuration({ quarantine: { type: "AgentInteraction", mailbox: "quarantine-queue" } }),
      configuration({
        name: "sales",
        integrationType: "POP3",
        mailboxes: [
          imapMailbox("sales-inbox"),
          imapMailbox("sales-other", { quarantine: { type: "AgentInteraction", mailbox: "quarantine-queue" } })
        ]
      })
    ]))
    expect(problems).toEqual([
      {
        path: "configurations[0].quarantine.type",
        message: "quarantine type AgentInteraction is allowed only with integration type AgentInteraction, not IMAP"
      },
      {
        path: "configurations[1].mailboxes[1].quarantine.type",
        message: "quarantine type AgentInteraction is allowed only with integration type AgentInteraction, not POP3"
      }
    ])
  })

  it("allows an ICELib quarantine only with ICELib3 or ICELib4", async () => {
    const problems = await problemsOf(configFile([
      configuration({ integrationType: "Graph", mailboxes: [graphMailbox("cloud")], quarantine: { type: "ICELib", mailbox: "queue" } }),
      interaction("AgentInteraction", { quarantine: { type: "ICELib", mailbox: "queue" } }),
      interaction("ICELib3", { quarantine: { type: "ICELib", mailbox: "queue" } }),
      interaction("ICELib4", { quarantine: { type: "ICELib", mailbox: "queue" } })
    ]))
    expect(problems).toEqual([
      {
        path: "configurations[0].quarantine.type",
        message: "quarantine type ICELib is allowed only with integration types ICELib3 and ICELib4, not Graph"
      },
      {
        path: "configurations[1].quarantine.type",
        message: "quarantine type ICELib is allowed only with integration types ICELib3 and ICELib4, not AgentInteraction"
      },
      // Right pairing: only the refusal of the type this build cannot run.
      { path: "configurations[1].integrationType", message: NOT_SUPPORTED("AgentInteraction") },
      { path: "configurations[2].integrationType", message: NOT_SUPPORTED("ICELib3") },
      { path: "configurations[3].integrationType", message: NOT_SUPPORTED("ICELib4") }
    ])
  })

  it("blames the level that chose the type, once, however many mailboxes inherit it", async () => {
    const problems = await problemsOf(configFile([configuration({
      mailboxes: [imapMailbox("a"), imapMailbox("b"), imapMailbox("c")]
    })], { defaults: { quarantine: { type: "ICELib", mailbox: "queue" } } }))
    expect(problems).toEqual([{
      path: "defaults.quarantine.type",
      message: "quarantine type ICELib is allowed only with integration types ICELib3 and ICELib4, not IMAP"
    }])
  })
})

describe("quarantine type and mailbox or queue name", () => {
  it("refuses a type without a name, and a name without a type, where each was written", async () => {
    const problems = await problemsOf({
      configurations: [
        configuration({ name: "a", quarantine: { type: "SMTP", smtp: smtpQuarantine.smtp }, mailboxes: [imapMailbox("a-1")] }),
        configuration({
          name: "b",
          quarantine: { mailbox: "quarantine@example.com", smtp: smtpQuarantine.smtp },
          mailboxes: [imapMailbox("b-1")]
        }),
        configuration({
          name: "c",
          quarantine: smtpQuarantine,
          mailboxes: [imapMailbox("c-1"), imapMailbox("c-2", { quarantine: { mailbox: "" } })]
        }),
        interaction("ICELib3", { quarantine: { type: "ICELib" } })
      ]
    })
    expect(problems).toEqual([
      {
        path: "configurations[0].quarantine.mailbox",
        message: "quarantine type SMTP needs a mailbox: the address quarantined messages are forwarded to"
      },
      {
        path: "configurations[1].quarantine.type",
        message: 'quarantine mailbox "quarantine@example.com" has no type: set type to SMTP, Graph, AgentInteraction or ICELib'
      },
      {
        path: "configurations[2].mailboxes[1].quarantine.mailbox",
        message: "quarantine type SMTP needs a mailbox: the address quarantined messages are forwarded to"
      },
      { path: "configurations[3].quarantine.mailbox", message: 'quarantine type ICELib needs a queue name in "mailbox"' },
      { path: "configurations[3].integrationType", message: NOT_SUPPORTED("ICELib3") }
    ])
  })

  it("refuses a configuration with no quarantine at all", async () => {
    const problems = await problemsOf({ configurations: [configuration()] })
    expect(problems).toEqual([{
      path: "configurations[0].quarantine",
      message: "no quarantine destination: set quarantine.type and quarantine.mailbox here, on the configuration or in defaults"
    }])
  })

  it("wants an address for SMTP and Graph quarantines", async () => {
    const problems = await problemsOf(configFile([configuration({ quarantine: { mailbox: "quarantine" } })]))
    expect(problems).toEqual([{
      path: "configurations[0].quarantine.mailbox",
      message: '"quarantine" is not an e-mail address: SMTP quarantines forward to an address'
    }])
  })
})

describe("SMTP settings of an SMTP quarantine", () => {
  it.each(["POP3", "IMAP", "EWS"])("requires the SMTP server and sender when a %s mailbox quarantines by SMTP", async (integrationType) => {
    const problems = await problemsOf({
      configurations: [configuration({
        integrationType,
        quarantine: { type: "SMTP", mailbox: "quarantine@example.com", smtp: { port: 2525 } }
      })]
    })
    expect(problems).toEqual([
      {
        path: "configurations[0].quarantine.smtp.host",
        message: "an SMTP server (host) is required to quarantine by SMTP"
      },
      {
        path: "configurations[0].quarantine.smtp.sender",
        message: "an SMTP sender address is required to quarantine by SMTP"
      },
      ...(integrationType === "EWS" ? [{ path: "configurations[0].integrationType", message: NOT_SUPPORTED("EWS") }] : [])
    ])
  })

  it("points at the mailbox that blanked the host it inherited", async () => {
    const problems = await problemsOf(configFile([configuration({
      mailboxes: [
        imapMailbox("first"),
        imapMailbox("second", { quarantine: { smtp: { host: " " } } }),
        imapMailbox("third", { quarantine: { smtp: { sender: "not-an-address" } } })
      ]
    })]))
    expect(problems).toEqual([
      {
        path: "configurations[0].mailboxes[1].quarantine.smtp.host",
        message: "an SMTP server (host) is required to quarantine by SMTP"
      },
      { path: "configurations[0].mailboxes[2].quarantine.smtp.sender", message: '"not-an-address" is not an e-mail address' }
    ])
  })

  it("defaults the port to 25 and refuses a port out of range", async () => {
    const plan = await planOf(configFile())
    expect(plan.mailboxes[0]!.quarantine).toMatchObject({ type: "SMTP", smtp: { host: "smtp.example.com", port: 25 } })

    const problems = await problemsOf(configFile([configuration({
      quarantine: { smtp: { port: 0 } },
      mailboxes: [imapMailbox("a", { quarantine: { smtp: { port: 65536 } } }), imapMailbox("b", { port: 993.5 })]
    })]))
    expect(problems).toEqual([
      { path: "configurations[0].quarantine.smtp.port", message: "must be a port number from 1 to 65535" },
      { path: "configurations[0].mailboxes[0].quarantine.smtp.port", message: "must be a port number from 1 to 65535" },
      { path: "configurations[0].mailboxes[1].port", message: "must be a port number from 1 to 65535" }
    ])
  })
})

describe("Graph quarantine credentials", () => {
  it("needs its own graph credentials on a mailbox that is not a Graph mailbox", async () => {
    const problems = await problemsOf(configFile([
      configuration({ name: "a", quarantine: { type: "Graph", mailbox: "quarantine@example.com" } }),
      configuration({
        name: "b",
        integrationType: "POP3",
        quarantine: { type: "Graph", mailbox: "quarantine@example.com", graph: { tenant: "contoso", clientId: "app" } },
        mailboxes: [imapMailbox("b-1")]
      })
    ]))
    expect(problems).toEqual([
      {
        path: "configurations[0].quarantine.graph",
        message: "a Graph quarantine of IMAP mail needs graph credentials: tenant, clientId, clientSecret and user (only a Graph mailbox lends its own)"
      },
      { path: "configurations[1].quarantine.graph.clientSecret", message: "is required for a Graph quarantine of POP3 mail" },
      { path: "configurations[1].quarantine.graph.user", message: "is required for a Graph quarantine of POP3 mail" }
    ])
  })
})

describe("interaction server settings", () => {
  it.each(["AgentInteraction", "ICELib3", "ICELib4"])(
    "requires server name, user name and password for %s, reported with the refusal of the type",
    async (integrationType) => {
      const problems = await problemsOf(configFile([
        configuration({ integrationType, mailboxes: [], serverName: " " })
      ]))
      expect(problems).toEqual([
        {
          path: "configurations[0].serverName",
          message: `the interaction server name is required for integration type ${integrationType}`
        },
        {
          path: "configurations[0].userName",
          message: `the interaction server user name is required for integration type ${integrationType}`
        },
        {
          path: "configurations[0].password",
          message: `the interaction server password is required for integration type ${integrationType}`
        },
        { path: "configurations[0].integrationType", message: NOT_SUPPORTED(integrationType) }
      ])
    }
  )

  it("refuses the interaction fields on a type that has no interaction server", async () => {
    const problems = await problemsOf(configFile([configuration({ serverName: "interaction.example.com" })]))
    expect(problems).toEqual([{ path: "configurations[0].serverName", message: 'unknown field "serverName"' }])
  })
})

describe("intervals", () => {
  it("accepts whole seconds within bounds, and applies the defaults", async () => {
    const plan = await planOf(configFile([
      configuration({ name: "low", pollingIntervalSeconds: 1, reconnectIntervalSeconds: 1, mailboxes: [imapMailbox("low")] }),
      configuration({ name: "high", pollingIntervalSeconds: 86_400, reconnectIntervalSeconds: 3_600, mailboxes: [imapMailbox("high")] }),
      configuration({ name: "default", mailboxes: [imapMailbox("default")] })
    ]))
    expect(plan.mailboxes.map((mailbox) => [mailbox.id, mailbox.pollingIntervalSeconds, mailbox.reconnectIntervalSeconds]))
      .toEqual([["low", 1, 1], ["high", 86_400, 3_600], ["default", 30, 60]])
  })

  it("refuses zero, negative, fractional, too large and non-numeric intervals", async () => {
    const polling = "must be a whole number of seconds from 1 to 86400"
    const reconnect = "must be a whole number of seconds from 1 to 3600"
    const problems = await problemsOf(configFile([
      configuration({ name: "a", pollingIntervalSeconds: 0, reconnectIntervalSeconds: -5, mailboxes: [imapMailbox("a")] }),
      configuration({ name: "b", pollingIntervalSeconds: 86_401, reconnectIntervalSeconds: 3_601, mailboxes: [imapMailbox("b")] }),
      configuration({ name: "c", pollingIntervalSeconds: 2.5, reconnectIntervalSeconds: "60", mailboxes: [imapMailbox("c")] })
    ]))
    expect(problems).toEqual([
      { path: "configurations[0].pollingIntervalSeconds", message: polling },
      { path: "configurations[0].reconnectIntervalSeconds", message: reconnect },
      { path: "configurations[1].pollingIntervalSeconds", message: polling },
      { path: "configurations[1].reconnectIntervalSeconds", message: reconnect },
      { path: "configurations[2].pollingIntervalSeconds", message: polling },
      { path: "configurations[2].reconnectIntervalSeconds", message: 'expected number, got "60"' }
    ])
  })
})

describe("duplicates", () => {
  it("refuses two configurations with the same name", async () => {
    const problems = await problemsOf(configFile([
      configuration({ mailboxes: [imapMailbox("a")] }),
      configuration({ mailboxes: [imapMailbox("b")] })
    ]))
    expect(problems).toEqual([{
      path: "configurations[1].name",
      message: 'duplicate configuration name "support" (also configurations[0].name)'
    }])
  })

  it("refuses a mailbox id used twice, within a configuration or across configurations", async () => {
    const problems = await problemsOf(configFile([
      configuration({ name: "a", mailboxes: [imapMailbox("inbox"), imapMailbox("inbox")] }),
      configuration({ name: "b", integrationType: "Graph", mailboxes: [graphMailbox("other"), graphMailbox("inbox")] })
    ]))
    expect(problems).toEqual([
      {
        path: "configurations[0].mailboxes[1].id",
        message: 'duplicate mailbox id "inbox" (also configurations[0].mailboxes[0].id): ids must be unique across configurations'
      },
      {
        path: "configurations[1].mailboxes[1].id",
        message: 'duplicate mailbox id "inbox" (also configurations[0].mailboxes[0].id): ids must be unique across configurations'
      }
    ])
  })
})

describe("unknown fields", () => {
  it("are refused at every level, with a suggestion when one is close", async () => {
    const problems = await problemsOf({
      server: { usageType: "Production", usagetype: "Test" },
      databse: "./events.db",
      defaults: { quarantine: { ...smtpQuarantine, smtp: { ...smtpQuarantine.smtp, hots: "smtp.example.com" } } },
      configurations: [
        configuration({
          pollingIntervalSecond: 30,
          colour: "blue",
          quarantine: { smpt: { host: "smtp.example.com" } },
          mailboxes: [imapMailbox("inbox", { afterProcesing: "delete", password: { envv: "IMAP_PASSWORD" } })]
        }),
        configuration({
          name: "cloud",
          integrationType: "Graph",
          quarantine: { type: "Graph", mailbox: "quarantine@example.com", graph: { tenantId: "contoso" } },
          mailboxes: [graphMailbox("cloud", { foldr: "inbox" })]
        })
      ]
    })
    expect(problems).toEqual([
      { path: "databse", message: 'unknown field "databse" (did you mean "database"?)' },
      { path: "server.usagetype", message: 'unknown field "usagetype" (did you mean "usageType"?)' },
      { path: "defaults.quarantine.smtp.hots", message: 'unknown field "hots" (did you mean "host"?)' },
      { path: "configurations[0].pollingIntervalSecond", message: 'unknown field "pollingIntervalSecond" (did you mean "pollingIntervalSeconds"?)' },
      { path: "configurations[0].colour", message: 'unknown field "colour"' },
      { path: "configurations[0].quarantine.smpt", message: 'unknown field "smpt" (did you mean "smtp"?)' },
      { path: "configurations[0].mailboxes[0].afterProcesing", message: 'unknown field "afterProcesing" (did you mean "afterProcessing"?)' },
      { path: "configurations[0].mailboxes[0].password.envv", message: 'unknown field "envv" (did you mean "env"?)' },
      { path: "configurations[1].quarantine.graph.tenantId", message: 'unknown field "tenantId" (did you mean "tenant"?)' },
      { path: "configurations[1].mailboxes[0].foldr", message: 'unknown field "foldr" (did you mean "folder"?)' }
    ])
  })

  it("names a missing required field", async () => {
    const problems = await problemsOf(configFile([{ name: "x", integrationType: "IMAP" }, { name: "y", mailboxes: [] }]))
    expect(problems).toEqual([
      { path: "configurations[0].mailboxes", message: "is required" },
      { path: "configurations[1].integrationType", message: "is required" }
    ])
  })
})

describe("values", () => {
  it("refuses an unknown tls mode, and suggests the right spelling", async () => {
    const problems = await problemsOf(configFile([configuration({
      mailboxes: [imapMailbox("a", { tls: "ssl" }), imapMailbox("b", { tls: "STARTTLS" })]
    })]))
    expect(problems).toEqual([
      { path: "configurations[0].mailboxes[0].tls", message: 'expected one of "implicit", "starttls", "none", got "ssl"' },
      {
        path: "configurations[0].mailboxes[1].tls",
        message: 'expected one of "implicit", "starttls", "none", got "STARTTLS" (did you mean "starttls"?)'
      }
    ])
  })

  it("refuses afterProcessing with an empty folder, or neither delete nor moveTo", async () => {
    const problems = await problemsOf(configFile([configuration({
      mailboxes: [imapMailbox("a", { afterProcessing: { moveTo: "" } }), imapMailbox("b", { afterProcessing: "keep" })]
    })]))
    expect(problems).toEqual([
      { path: "configurations[0].mailboxes[0].afterProcessing.moveTo", message: "must not be empty" },
      {
        path: "configurations[0].mailboxes[1].afterProcessing",
        message: 'expected one of "delete", { "moveTo": "folder" }, got "keep"'
      }
    ])
  })

  it("refuses an unknown integration type, suggesting the right spelling", async () => {
    const problems = await problemsOf(configFile([configuration({ integrationType: "imap" })]))
    expect(problems).toEqual([{
      path: "configurations[0].integrationType",
      message: 'expected one of "IMAP", "POP3", "Graph", "EWS", "AgentInteraction", "ICELib3", "ICELib4", got "imap" (did you mean "IMAP"?)'
    }])
  })

  it("refuses EWS, which this build cannot run yet, while still checking the rest of it", async () => {
    expect(await problemsOf(configFile([configuration({ integrationType: "EWS", mailboxes: [{ id: "ews" }] })])))
      .toEqual([{ path: "configurations[0].integrationType", message: NOT_SUPPORTED("EWS") }])
    expect(await problemsOf(configFile([configuration({ integrationType: "EWS", pollingIntervalSeconds: 0, mailboxes: [] })])))
      .toEqual([
        { path: "configurations[0].pollingIntervalSeconds", message: "must be a whole number of seconds from 1 to 86400" },
        { path: "configurations[0].integrationType", message: NOT_SUPPORTED("EWS") }
      ])
  })
})

describe("secrets", () => {
  it("names the unset environment variable and the field, never a secret value", async () => {
    const problems = await problemsOf(configFile([configuration({
      quarantine: { smtp: { password: { env: "SMTP_PASSWORD" } } },
      mailboxes: [
        imapMailbox("a", { password: { env: "IMAP_PASSWORD_A" } }),
        imapMailbox("b", { password: { env: "IMAP_PASSWORD_B" } }),
        imapMailbox("c", { password: 12345678 })
      ]
    })]), { env: { IMAP_PASSWORD_B: "b-secret-value", SMTP_PASSWORD: "smtp-secret-value" } })
    expect(problems).toEqual([
      { path: "configurations[0].mailboxes[0].password", message: "environment variable IMAP_PASSWORD_A is not set" },
      { path: "configurations[0].mailboxes[2].password", message: 'must be a string, { "env": "NAME" } or { "file": "path" }' }
    ])
    const shown = JSON.stringify(problems)
    for (const secret of ["b-secret-value", "smtp-secret-value", "12345678", "imap-password"]) expect(shown).not.toContain(secret)
  })

  it("refuses a secret reference that names both or neither of env and file", async () => {
    const problems = await problemsOf(configFile([configuration({
      mailboxes: [
        imapMailbox("a", { password: { env: "A", file: "a.txt" } }),
        imapMailbox("b", { password: {} }),
        imapMailbox("c", { password: { env: "" } })
      ]
    })]), { env: { A: "x" } })
    const both = 'must be { "env": "NAME" } or { "file": "path" }: exactly one of the two'
    expect(problems).toEqual([
      { path: "configurations[0].mailboxes[0].password", message: both },
      { path: "configurations[0].mailboxes[1].password", message: both },
      { path: "configurations[0].mailboxes[2].password.env", message: "must not be empty" }
    ])
  })

  it("reads a { file } secret relative to the configuration file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mailintake-config-secrets-"))
    mkdirSync(join(dir, "secrets"))
    writeFileSync(join(dir, "secrets", "imap.txt"), "file-secret-value\n")
    const path = join(dir, "mailintake.json")
    const plan = await planOf(configFile([configuration({
      mailboxes: [imapMailbox("a", { password: { file: "secrets/imap.txt" } })]
    })]), { path })
    const connection = plan.mailboxes[0]!.connection
    expect(connection._tag === "Server" && Redacted.value(connection.settings.password)).toBe("file-secret-value")

    const problems = await problemsOf(configFile([configuration({
      mailboxes: [imapMailbox("a", { password: { file: "secrets/missing.txt" } })]
    })]), { path })
    expect(problems).toEqual([{
      path: "configurations[0].mailboxes[0].password",
      message: `cannot read secret file ${join(dir, "secrets", "missing.txt")}: ENOENT`
    }])
  })
})

describe("the file itself", () => {
  it("says where the JSON breaks, without quoting the text around it", async () => {
    const text = '{\n  "configurations": [],\n  "password": hunter2-secret\n}'
    expect(await problemsOf(text)).toEqual([{ path: "", message: "not valid JSON at line 3, column 15: Unexpected token 'h'" }])
    expect(await problemsOf('{\n  "configurations": [],\n}')).toEqual([
      { path: "", message: "not valid JSON at line 3, column 1: Expected double-quoted property name" }
    ])
    expect(await problemsOf("")).toEqual([{ path: "", message: "not valid JSON at line 1, column 1: Unexpected end of JSON input" }])
  })

  it("wants an object with configurations", async () => {
    expect(await problemsOf("[]")).toEqual([{ path: "", message: "expected an object, got an array" }])
    expect(await problemsOf({})).toEqual([{ path: "configurations", message: "is required" }])
  })
})

describe("a file with many mistakes", () => {
  it("reports every one of them at once: field errors and the rules spanning fields", async () => {
    const problems = await problemsOf({
      server: { usageType: "Production" },
      defaults: { quarantine: { type: "SMTP", mailbox: "quarantine@example.com", smtp: { sender: "mailintake@example.com" } } },
      configurations: [
        configuration({
          name: "support",
          pollingIntervalSecond: 30,
          reconnectIntervalSeconds: 0,
          quarantine: { type: "AgentInteraction", mailbox: "queue" },
          mailboxes: [
            imapMailbox("support-inbox", { tls: "ssl", afterProcessing: { moveTo: "" } }),
            imapMailbox("support-other", { password: { env: "UNSET_PASSWORD" } }),
            imapMailbox("support-inbox", { quarantine: { type: "SMTP" } })
          ]
        }),
        configuration({ name: "support", integrationType: "ICELib4", mailboxes: [], quarantine: { type: "ICELib", mailbox: "" } }),
        configuration({ name: "exchange", integrationType: "EWS", mailboxes: [] })
      ]
    }, { env: { MAILINTAKE_USAGE_TYPE: "prod" } })
    // In the order of the file: the whole file first, then configuration by configuration.
    expect(problems).toEqual([
      { path: "MAILINTAKE_USAGE_TYPE", message: '"prod" is not a usage type: use Production, Test, Development or Training' },
      { path: "defaults.quarantine.smtp.host", message: "an SMTP server (host) is required to quarantine by SMTP" },
      { path: "configurations[0].pollingIntervalSecond", message: 'unknown field "pollingIntervalSecond" (did you mean "pollingIntervalSeconds"?)' },
      { path: "configurations[0].reconnectIntervalSeconds", message: "must be a whole number of seconds from 1 to 3600" },
      {
        path: "configurations[0].quarantine.type",
        message: "quarantine type AgentInteraction is allowed only with integration type AgentInteraction, not IMAP"
      },
      { path: "configurations[0].quarantine.mailbox", message: '"queue" is not an e-mail address: SMTP quarantines forward to an address' },
      { path: "configurations[0].mailboxes[0].afterProcessing.moveTo", message: "must not be empty" },
      { path: "configurations[0].mailboxes[0].tls", message: 'expected one of "implicit", "starttls", "none", got "ssl"' },
      { path: "configurations[0].mailboxes[1].password", message: "environment variable UNSET_PASSWORD is not set" },
      {
        path: "configurations[0].mailboxes[2].id",
        message: 'duplicate mailbox id "support-inbox" (also configurations[0].mailboxes[0].id): ids must be unique across configurations'
      },
      { path: "configurations[0].mailboxes[2].quarantine.smtp.host", message: "an SMTP server (host) is required to quarantine by SMTP" },
      { path: "configurations[1].name", message: 'duplicate configuration name "support" (also configurations[0].name)' },
      { path: "configurations[1].serverName", message: "the interaction server name is required for integration type ICELib4" },
      { path: "configurations[1].userName", message: "the interaction server user name is required for integration type ICELib4" },
      { path: "configurations[1].password", message: "the interaction server password is required for integration type ICELib4" },
      { path: "configurations[1].quarantine.mailbox", message: 'quarantine type ICELib needs a queue name in "mailbox"' },
      { path: "configurations[1].integrationType", message: NOT_SUPPORTED("ICELib4") },
      { path: "configurations[2].integrationType", message: NOT_SUPPORTED("EWS") }
    ])
  })
})
