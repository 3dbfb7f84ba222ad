/**
 * Issue 5, `mailintake check-config --config FILE` run as an operator runs it: exit 0 with what
 * would run, secrets shown as <redacted> and their values nowhere in the output; exit 2 with every
 * problem of a bad file.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { configuration, graphMailbox, imapMailbox, problemsOf } from "./support.js"

const ROOT = resolve(import.meta.dirname, "../..")
const BIN = join(ROOT, "bin/mailintake.js")

/** Files this suite owns: a build failure elsewhere (another change in progress) is not ours to report. */
const OWN_SOURCES = /src\/(config\/|domain\/(config|plan|usageType)\.ts|cli\/checkConfig\.ts)/

beforeAll(() => {
  const build = spawnSync("npm", ["run", "build"], { cwd: ROOT, encoding: "utf8" })
  const output = `${build.stdout}${build.stderr}`
  // tsc still emits JavaScript on type errors; only errors in the files under test stop the suite.
  if (build.status !== 0 && (OWN_SOURCES.test(output) || build.error !== undefined)) {
    throw new Error(`npm run build failed:\n${output}`)
  }
}, 120_000)

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const checkConfig = (path: string, env: Record<string, string> = {}, ...extra: Array<string>): Promise<Run> =>
  new Promise((done, fail) => {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("MAILINTAKE_")))
    const child = spawn(process.execPath, [BIN, "check-config", "--config", path, ...extra], {
      cwd: ROOT,
      env: { ...inherited, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk))
    child.once("error", fail)
    child.once("close", (code) =>
      done({ code, stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") }))
  })

/** Every secret below, as written in the file or in the environment. */
const SECRETS = {
  imapInline: "Imap-Inline-S3cret",
  pop3Env: "Pop3-Env-S3cret",
  graphInline: "Graph-Client-S3cret",
  smtpEnv: "Smtp-Env-S3cret",
  smtpFile: "Smtp-File-S3cret",
  smtpInline: "Smtp-Inline-S3cret"
}

const expectNoSecret = (run: Run) => {
  for (const secret of Object.values(SECRETS)) {
    expect(run.stdout).not.toContain(secret)
    expect(run.stderr).not.toContain(secret)
  }
}

const writeFile = (config: unknown): string => {
  const dir = mkdtempSync(join(tmpdir(), "mailintake-check-config-"))
  writeFileSync(join(dir, "smtp-password.txt"), `${SECRETS.smtpFile}\n`)
  const path = join(dir, "mailintake.json")
  writeFileSync(path, typeof config === "string" ? config : JSON.stringify(config, null, 2))
  return path
}

const ENV = { POP3_PASSWORD: SECRETS.pop3Env, SMTP_PASSWORD: SECRETS.smtpEnv }

const validFile = () => ({
  server: { usageType: "Production" },
  database: "./events.db",
  defaults: {
    quarantine: {
      type: "SMTP",
      mailbox: "quarantine@example.com",
      smtp: { host: "smtp.example.com", user: "relay", password: SECRETS.smtpInline, sender: "mailintake@example.com" }
    }
  },
  configurations: [
    configuration({
      name: "support",
      usageType: "Production",
      integrationType: "IMAP",
      pollingIntervalSeconds: 15,
      quarantine: { smtp: { password: { env: "SMTP_PASSWORD" } } },
      mailboxes: [
        imapMailbox("support-inbox", { password: SECRETS.imapInline, port: 993, afterProcessing: { moveTo: "Processed" } }),
        imapMailbox("support-other", {
          password: SECRETS.imapInline,
          tls: "starttls",
          quarantine: { mailbox: "other-quarantine@example.com", smtp: { password: { file: "smtp-password.txt" } } }
        })
      ]
    }),
    configuration({
      name: "legacy",
      usageType: "",
      integrationType: "POP3",
      mailboxes: [imapMailbox("legacy-pop", { host: "pop.example.com", password: { env: "POP3_PASSWORD" } })]
    }),
    configuration({
      name: "training",
      usageType: "Training",
      integrationType: "Graph",
      quarantine: { type: "Graph", mailbox: "graph-quarantine@example.com" },
      mailboxes: [graphMailbox("training-cloud", { clientSecret: SECRETS.graphInline })]
    })
  ]
})

describe("check-config on a valid file", () => {
  it("exits 0 with per configuration the verdict, integration type, mailboxes and effective quarantine", async () => {
    const path = writeFile(validFile())
    const run = await checkConfig(path, ENV)
    expect(run.code, run.stderr).toBe(0)
    expectNoSecret(run)
    const dir = resolve(path, "..")
    expect(run.stdout).toBe([
      `${path}: valid`,
      "server usage type: Production",
      `event log: ${join(dir, "events.db")}`,
      "",
      "configuration support: IMAP, usage type Production: runs",
      "  poll every 15 s, reconnect from 60 s",
      "  mailbox support-inbox: support-inbox@imap.example.com:993 tls implicit, password <redacted>, folder INBOX",
      "    then move to Processed; messages over 52428800 bytes are quarantined",
      "    quarantine: SMTP to quarantine@example.com via smtp.example.com:25, user relay, password <redacted>, sender mailintake@example.com",
      "  mailbox support-other: support-other@imap.example.com:143 tls starttls, password <redacted>, folder INBOX",
      "    then delete; messages over 52428800 bytes are quarantined",
      "    quarantine: SMTP to other-quarantine@example.com via smtp.example.com:25, user relay, password <redacted>, sender mailintake@example.com",
      "",
      "configuration legacy: POP3, usage type (blank): runs",
      "  poll every 30 s, reconnect from 60 s",
      "  mailbox legacy-pop: legacy-pop@pop.example.com:995 tls implicit, password <redacted>, folder INBOX",
      "    then delete; messages over 52428800 bytes are quarantined",
      "    quarantine: SMTP to quarantine@example.com via smtp.example.com:25, user relay, password <redacted>, sender mailintake@example.com",
      "",
      "configuration training: Graph, usage type Training: does not run: configuration usage type Training does not match the server usage type Production: its mailboxes are not polled on this server",
      "  poll every 30 s, reconnect from 60 s",
      "  mailbox training-cloud: training-cloud@example.com in tenant contoso via https://graph.microsoft.com/v1.0, clientId client-id, clientSecret <redacted>, folder inbox",
      "    then delete; messages over 52428800 bytes are quarantined",
      "    quarantine: Graph to graph-quarantine@example.com, sending with the credentials of the mailbox",
      ""
    ].join("\n"))
  })

  it("shows the MAILINTAKE_USAGE_TYPE override and the verdicts it gives", async () => {
    const run = await checkConfig(writeFile(validFile()), { ...ENV, MAILINTAKE_USAGE_TYPE: "Training" })
    expect(run.code, run.stderr).toBe(0)
    expectNoSecret(run)
    expect(run.stdout).toContain("server usage type: Training (from MAILINTAKE_USAGE_TYPE)")
    expect(run.stdout).toContain(
      "configuration support: IMAP, usage type Production: does not run: configuration usage type Production does not match the server usage type Training"
    )
    expect(run.stdout).toContain(
      `configuration legacy: POP3, usage type (blank): does not run: configuration usage type is blank and the server usage type is Training: a blank usage type runs only on a Production server; set this configuration's usageType to "Training"`
    )
    expect(run.stdout).toContain("configuration training: Graph, usage type Training: runs")
  })

  it("prints the same summary as JSON with --json", async () => {
    const path = writeFile(validFile())
    const run = await checkConfig(path, ENV, "--json")
    expect(run.code, run.stderr).toBe(0)
    expectNoSecret(run)
    const summary = JSON.parse(run.stdout)
    expect(summary).toMatchObject({
      file: path,
      valid: true,
      serverUsageType: "Production",
      serverUsageTypeSource: "file",
      database: join(resolve(path, ".."), "events.db")
    })
    expect(summary.configurations.map((c: any) => [c.name, c.integrationType, c.usageType, c.usage.verdict, c.mailboxes.map((m: any) => m.id)]))
      .toEqual([
        ["support", "IMAP", "Production", "runs", ["support-inbox", "support-other"]],
        ["legacy", "POP3", "", "runs", ["legacy-pop"]],
        ["training", "Graph", "Training", "mismatch", ["training-cloud"]]
      ])
    expect(summary.configurations[2].usage.message).toBe(
      "configuration usage type Training does not match the server usage type Production: its mailboxes are not polled on this server"
    )
    expect(summary.configurations[0].mailboxes[1]).toEqual({
      id: "support-other",
      connection: {
        host: "imap.example.com",
        port: 143,
        tls: "starttls",
        tlsRejectUnauthorized: true,
        user: "support-other",
        password: "<redacted>",
        folder: "INBOX"
      },
      maxMessageBytes: 52428800,
      quarantineListMail: false,
      afterProcessing: "delete",
      quarantine: {
        type: "SMTP",
        mailbox: "other-quarantine@example.com",
        smtp: { host: "smtp.example.com", port: 25, ssl: false, user: "relay", password: "<redacted>", sender: "mailintake@example.com" }
      }
    })
    expect(summary.configurations[2].mailboxes[0].connection.clientSecret).toBe("<redacted>")
    expect(summary.configurations[2].mailboxes[0].quarantine).toEqual({
      type: "Graph",
      mailbox: "graph-quarantine@example.com",
      graph: "the credentials of the mailbox"
    })
  })
})

describe("check-config on a bad file", () => {
  const badFile = () => ({
    server: { usageType: "Production" },
    defaults: { quarantine: { type: "SMTP", mailbox: "quarantine@example.com", smtp: { password: SECRETS.smtpInline, sender: "x@example.com" } } },
    configurations: [
      configuration({
        pollingIntervalSecond: 30,
        mailboxes: [
          imapMailbox("inbox", { password: SECRETS.imapInline, tls: "ssl" }),
          imapMailbox("inbox", { password: { env: "POP3_PASSWORD" }, afterProcesing: "delete" })
        ]
      }),
      configuration({ name: "agents", integrationType: "AgentInteraction", mailboxes: [], quarantine: { type: "AgentInteraction", mailbox: "queue" } }),
      configuration({ name: "exchange", integrationType: "EWS", mailboxes: [], reconnectIntervalSeconds: 7200 })
    ]
  })

  it("exits 2 and prints every problem with its path", async () => {
    const path = writeFile(badFile())
    const run = await checkConfig(path, ENV)
    expect(run.code, run.stdout).toBe(2)
    expect(run.stdout).toBe("")
    expectNoSecret(run)
    const problems = await problemsOf(badFile(), { env: ENV, path })
        expect(run.stderr).toBe([
      `invalid configuration ${path}:`,
      ...problems.map((problem) => `  ${problem.path}: ${problem.message}`),
      ""
    ].join("\n"))
    expect(problems.map((problem) => problem.path)).toEqual([
      "defaults.quarantine.smtp.host",
      "configurations[0].pollingIntervalSecond",
      "configurations[0].mailboxes[0].tls",
      "configurations[0].mailboxes[1].afterProcesing",
      "configurations[0].mailboxes[1].id",
      "configurations[1].serverName",
      "configurations[1].userName",
      "configurations[1].password",
      "configurations[1].integrationType",
      "configurations[2].reconnectIntervalSeconds",
      "configurations[2].integrationType"
    ])
  })

  it("prints the problems as JSON on stdout with --json, still exiting 2", async () => {
    const path = writeFile(badFile())
    const run = await checkConfig(path, ENV, "--json")
    expect(run.code, run.stderr).toBe(2)
    expectNoSecret(run)
    expect(JSON.parse(run.stdout)).toEqual({ file: path, valid: false, problems: await problemsOf(badFile(), { env: ENV, path }) })
  })

  it("exits 2 on a file that is not JSON, without echoing its text", async () => {
    const path = writeFile(`{ "configurations": [], "password": ${SECRETS.imapInline} }`)
    const run = await checkConfig(path)
    expect(run.code).toBe(2)
    expectNoSecret(run)
    expect(run.stderr).toBe(`invalid configuration ${path}:\n  (file): not valid JSON at line 1, column 37: Unexpected token 'I'\n`)
  })

  it("exits 2 when the file cannot be read", async () => {
    const run = await checkConfig(join(tmpdir(), "mailintake-no-such-dir", "missing.json"))
    expect(run.code).toBe(2)
    expect(run.stderr).toContain("cannot read the file: ENOENT")
  })
})
