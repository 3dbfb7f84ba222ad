/**
 * Issue 5, defaults: the quarantine block of a mailbox overrides its configuration's field by
 * field, the configuration's overrides `defaults`, and the SMTP and Graph sub-blocks merge field
 * by field too. Each row is a file and the effective quarantine target of each of its mailboxes.
 */
import { Redacted } from "effect"
import { describe, expect, it } from "vitest"
import type { QuarantineTarget } from "../../src/domain/plan.js"
import { configuration, graphMailbox, imapMailbox, planOf, smtpQuarantine } from "./support.js"

/** A target with its secrets revealed, to compare with what the row expects. */
const effective = (target: QuarantineTarget) =>
  target.type === "SMTP"
    ? { ...target, smtp: { ...target.smtp, password: Redacted.value(target.smtp.password) } }
    : {
      ...target,
      graph: target.graph === undefined
        ? undefined
        : {
          ...target.graph,
          ...(target.graph.clientSecret === undefined ? {} : { clientSecret: Redacted.value(target.graph.clientSecret) })
        }
    }

const smtpTarget = (mailbox: string, smtp: Record<string, unknown> = {}) => ({
  type: "SMTP",
  mailbox,
  smtp: {
    host: "smtp.example.com",
    port: 25,
    ssl: false,
    user: "",
    password: "",
    sender: "mailintake@example.com",
    tlsRejectUnauthorized: true,
    caFile: undefined,
    ...smtp
  }
})

const graphCredentials = { tenant: "contoso", clientId: "sender-app", clientSecret: "sender-secret", user: "sender@example.com" }

interface Row {
  readonly name: string
  readonly defaults?: unknown
  readonly configurations: ReadonlyArray<unknown>
  readonly env?: Record<string, string>
  readonly expected: Record<string, unknown>
}

const ROWS: ReadonlyArray<Row> = [
  {
    name: "defaults only",
    defaults: smtpQuarantine,
    configurations: [configuration({ mailboxes: [imapMailbox("a"), imapMailbox("b")] })],
    expected: { a: smtpTarget("quarantine@example.com"), b: smtpTarget("quarantine@example.com") }
  },
  {
    name: "the configuration overrides type and mailbox; the defaults' SMTP block is then unused",
    defaults: smtpQuarantine,
    configurations: [configuration({
      integrationType: "Graph",
      quarantine: { type: "Graph", mailbox: "graph-quarantine@example.com" },
      mailboxes: [graphMailbox("cloud")]
    })],
    expected: { cloud: { type: "Graph", mailbox: "graph-quarantine@example.com", graph: undefined } }
  },
  {
    name: "a mailbox overrides only the quarantine mailbox",
    defaults: smtpQuarantine,
    configurations: [configuration({
      quarantine: { mailbox: "support-quarantine@example.com" },
      mailboxes: [imapMailbox("a"), imapMailbox("b", { quarantine: { mailbox: "b-quarantine@example.com" } })]
    })],
    expected: {
      a: smtpTarget("support-quarantine@example.com"),
      b: smtpTarget("b-quarantine@example.com")
    }
  },
  {
    name: "a mailbox overrides only smtp.port; host and sender stay those of the defaults",
    defaults: smtpQuarantine,
    configurations: [configuration({
      quarantine: { smtp: { ssl: true } },
      mailboxes: [imapMailbox("a"), imapMailbox("b", { quarantine: { smtp: { port: 2525 } } })]
    })],
    expected: {
      a: smtpTarget("quarantine@example.com", { ssl: true }),
      b: smtpTarget("quarantine@example.com", { ssl: true, port: 2525 })
    }
  },
  {
    name: "smtp.password from the environment at the configuration level, user from the defaults",
    defaults: { ...smtpQuarantine, smtp: { ...smtpQuarantine.smtp, user: "relay" } },
    configurations: [configuration({
      quarantine: { smtp: { password: { env: "SMTP_PASSWORD" } } },
      mailboxes: [imapMailbox("a")]
    })],
    env: { SMTP_PASSWORD: "smtp-secret" },
    expected: { a: smtpTarget("quarantine@example.com", { user: "relay", password: "smtp-secret" }) }
  },
  {
    name: "no defaults: the configuration's block is the whole quarantine",
    configurations: [configuration({
      quarantine: { type: "SMTP", mailbox: "q@example.org", smtp: { host: "relay.example.org", sender: "robot@example.org", caFile: "/etc/ca.pem", tlsRejectUnauthorized: false } },
      mailboxes: [imapMailbox("a")]
    })],
    expected: {
      a: smtpTarget("q@example.org", { host: "relay.example.org", sender: "robot@example.org", caFile: "/etc/ca.pem", tlsRejectUnauthorized: false })
    }
  },
  {
    name: "a Graph quarantine on a Graph mailbox without credentials of its own sends with the mailbox's",
    configurations: [configuration({
      integrationType: "Graph",
      quarantine: { type: "Graph", mailbox: "graph-quarantine@example.com" },
      mailboxes: [graphMailbox("one"), graphMailbox("two")]
    })],
    expected: {
      one: { type: "Graph", mailbox: "graph-quarantine@example.com", graph: undefined },
      two: { type: "Graph", mailbox: "graph-quarantine@example.com", graph: undefined }
    }
  },
  {
    name: "Graph credentials from the defaults, the sending user overridden by one mailbox",
    defaults: { type: "Graph", mailbox: "graph-quarantine@example.com", graph: graphCredentials },
    configurations: [configuration({
      mailboxes: [imapMailbox("a"), imapMailbox("b", { quarantine: { graph: { user: "other-sender@example.com" } } })]
    })],
    expected: {
      a: { type: "Graph", mailbox: "graph-quarantine@example.com", graph: graphCredentials },
      b: { type: "Graph", mailbox: "graph-quarantine@example.com", graph: { ...graphCredentials, user: "other-sender@example.com" } }
    }
  },
  {
    name: "one mailbox switches to a Graph quarantine, its neighbour keeps SMTP",
    defaults: smtpQuarantine,
    configurations: [configuration({
      integrationType: "Graph",
      mailboxes: [
        graphMailbox("smtp-one"),
        graphMailbox("graph-one", { quarantine: { type: "Graph", mailbox: "graph-quarantine@example.com" } })
      ]
    })],
    expected: {
      "smtp-one": smtpTarget("quarantine@example.com"),
      "graph-one": { type: "Graph", mailbox: "graph-quarantine@example.com", graph: undefined }
    }
  },
  {
    name: "several configurations, each with its own quarantine over the same defaults",
    defaults: smtpQuarantine,
    configurations: [
      configuration({ name: "support", quarantine: { mailbox: "support-q@example.com" }, mailboxes: [imapMailbox("support")] }),
      configuration({
        name: "sales",
        integrationType: "POP3",
        quarantine: { smtp: { host: "sales-relay.example.com", port: 587 } },
        mailboxes: [imapMailbox("sales")]
      }),
      configuration({ name: "plain", mailboxes: [imapMailbox("plain")] })
    ],
    expected: {
      support: smtpTarget("support-q@example.com"),
      sales: smtpTarget("quarantine@example.com", { host: "sales-relay.example.com", port: 587 }),
      plain: smtpTarget("quarantine@example.com")
    }
  }
]

describe("quarantine merge: defaults ← configuration ← mailbox", () => {
  it.each(ROWS)("$name", async (row) => {
    const plan = await planOf(
      { configurations: row.configurations, ...(row.defaults === undefined ? {} : { defaults: { quarantine: row.defaults } }) },
      { env: row.env ?? {} }
    )
    expect(Object.fromEntries(plan.mailboxes.map((mailbox) => [mailbox.id, effective(mailbox.quarantine)]))).toEqual(row.expected)
  })
})
