/**
 * Scenario 5, security checks:
 * - TLS verification is on by default: Dovecot's self-signed certificate without a caFile is
 *   refused (implicit TLS and STARTTLS, IMAP and POP3) with a MailboxConnectionFailed of kind
 *   tls, while the same mailboxes with the caFile connect.
 * - `tls: "starttls"` against a server that does not offer STARTTLS/STLS (fake servers on
 *   node:net), or offers it and then refuses it, is refused and never downgraded: the fake
 *   server records every byte and must never see a login command or the password.
 * - No secret of any scenario (passwords from the configuration, the environment or a file,
 *   a wrong one, the SMTP relay's) appears in any log line, event, database file or command
 *   output — as is, in base64, or inside SASL PLAIN.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { writeConfig } from "../../test/support/cli.js"
import { startDovecot } from "../../test/support/dovecot.js"
import { plainMessage } from "../../test/support/messages.js"
import { startSmtpServer } from "../../test/support/smtpServer.js"
import { sleep, type TortureContext } from "../../test/torture/lib/context.js"
import { Daemons } from "../../test/torture/lib/daemon.js"
import { passwordForms, startFakeImap, startFakePop3 } from "../../test/torture/lib/fakeServers.js"
import { readEvents } from "../../test/torture/lib/ledger.js"
import { prng } from "../../test/torture/lib/prng.js"
import { Recorder, type ScenarioResult } from "../../test/torture/lib/report.js"

const quarantineTo = (smtp: { host: string; port: number }, auth?: { user: string; password: unknown }) => ({
  type: "SMTP",
  mailbox: "quarantine-security@example.test",
  smtp: { host: smtp.host, port: smtp.port, ssl: false, user: auth?.user ?? "", password: auth?.password ?? "", sender: "mailintake@example.test" }
})

interface Probe {
  readonly id: string
  readonly integrationType: "IMAP" | "POP3"
  readonly mailbox: Record<string, unknown>
  /** Whether this mailbox must be refused. */
  readonly refused: boolean
}

/** Writes a configuration with one configuration block per integration type. */
const probeConfig = (dir: string, probes: ReadonlyArray<Probe>, quarantine: unknown) =>
  writeConfig(dir, {
    database: join(dir, "events.db"),
    defaults: { quarantine },
    configurations: (["IMAP", "POP3"] as const)
      .map((type) => ({
        name: `security-${type.toLowerCase()}`,
        integrationType: type,
        pollingIntervalSeconds: 1,
        reconnectIntervalSeconds: 1,
        mailboxes: probes.filter((probe) => probe.integrationType === type).map((probe) => ({
          id: probe.id,
          connectTimeoutSeconds: 5,
          commandTimeoutSeconds: 10,
          ...probe.mailbox
        }))
      }))
      .filter((configuration) => configuration.mailboxes.length > 0)
  })

/** TLS verification on by default: refused without the CA, accepted with it. */
export const tlsDefault = async (ctx: TortureContext, options: { readonly full: boolean }): Promise<ScenarioResult> => {
  const rec = new Recorder("security: TLS verified by default", ctx.seed, ctx.log)
  const user = "tls@example.test"
  const password = ctx.secret("tls", user)
  const dovecot = await startDovecot({ name: "torture-tls", users: [{ user, password }] })
  const smtp = await startSmtpServer()
  const dir = ctx.dir("security-tls")
  const daemons = new Daemons(ctx.bin, dir)
  try {
    const base = { host: dovecot.host, user, password }
    const probes: Array<Probe> = [
      { id: "imaps-no-ca", integrationType: "IMAP", refused: true, mailbox: { ...base, port: dovecot.imapsPort, tls: "implicit" } },
      { id: "imap-starttls-no-ca", integrationType: "IMAP", refused: true, mailbox: { ...base, port: dovecot.imapPort, tls: "starttls" } },
      ...(options.full
        ? [
          { id: "pop3s-no-ca", integrationType: "POP3", refused: true, mailbox: { ...base, port: dovecot.pop3sPort, tls: "implicit" } },
          { id: "pop3-stls-no-ca", integrationType: "POP3", refused: true, mailbox: { ...base, port: dovecot.pop3Port, tls: "starttls" } },
          { id: "pop3s-with-ca", integrationType: "POP3", refused: false, mailbox: { ...base, port: dovecot.pop3sPort, tls: "implicit", caFile: dovecot.caFile } }
        ] as Array<Probe>
        : []),
      { id: "imaps-with-ca", integrationType: "IMAP", refused: false, mailbox: { ...base, port: dovecot.imapsPort, tls: "implicit", caFile: dovecot.caFile } }
    ]
    await dovecot.seed(user, [plainMessage(1)])
    const config = probeConfig(dir, probes, quarantineTo(smtp))
    ctx.databaseDirs.push(dir)
    const run = await daemons.runToEnd(["run", "--once", "--config", config], { label: "once", timeoutMs: 90_000 })
    if (run.hung) rec.hang("run --once")
    rec.check("run --once says not every mailbox was reached (exit 1)", run.exit.code === 1, `exit ${run.exit.code}`)
    const events = readEvents(join(dir, "events.db"))
    for (const probe of probes) {
      const mine = events.filter((event) => event.stream === probe.id)
      const connected = mine.some((event) => event.type === "MailboxConnected")
      const failure = mine.find((event) => event.type === "MailboxConnectionFailed")
      const error = failure === undefined ? "" : (JSON.parse(failure.payload) as { error: string }).error
      if (probe.refused) {
        rec.check(`${probe.id}: refused with a tls error`, !connected && /^tls:/.test(error), connected ? "connected!" : error.slice(0, 160) || "no failure recorded")
      } else {
        rec.check(`${probe.id}: connects when the CA is configured`, connected, error.slice(0, 160))
      }
    }
    ctx.artifacts.push(...daemons.files)
    return rec.finish(undefined, [daemons], { messagesIn: probes.length })
  } finally {
    await daemons.killAll()
    await smtp.stop()
    await dovecot.destroy()
  }
}

/** `tls: "starttls"` never falls back to plain text. */
export const starttlsDowngrade = async (ctx: TortureContext, options: { readonly full: boolean }): Promise<ScenarioResult> => {
  const rec = new Recorder("security: STARTTLS never downgraded", ctx.seed, ctx.log)
  const smtp = await startSmtpServer()
  const dir = ctx.dir("security-starttls")
  const daemons = new Daemons(ctx.bin, dir)
  const servers = [
    { id: "imap-no-starttls", integrationType: "IMAP" as const, server: await startFakeImap() },
    { id: "pop3-no-stls", integrationType: "POP3" as const, server: await startFakePop3() },
    ...(options.full
      ? [
        { id: "imap-starttls-refused", integrationType: "IMAP" as const, server: await startFakeImap({ advertiseThenRefuse: true }) },
        { id: "pop3-stls-refused", integrationType: "POP3" as const, server: await startFakePop3({ advertiseThenRefuse: true }) }
      ]
      : [])
  ]
  try {
    const users = new Map(servers.map(({ id }) => [id, `${id}@example.test`]))
    const passwords = new Map(servers.map(({ id }) => [id, ctx.secret(`starttls-${id}`, users.get(id))]))
    const probes: Array<Probe> = servers.map(({ id, integrationType, server }) => ({
      id,
      integrationType,
      refused: true,
      mailbox: { host: "127.0.0.1", port: server.port, tls: "starttls", user: users.get(id), password: passwords.get(id) }
    }))
    const config = probeConfig(dir, probes, quarantineTo(smtp))
    ctx.databaseDirs.push(dir)
    const run = await daemons.runToEnd(["run", "--once", "--config", config], { label: "once", timeoutMs: 90_000 })
    if (run.hung) rec.hang("run --once")
    const events = readEvents(join(dir, "events.db"))
    for (const { id, server } of servers) {
      const mine = events.filter((event) => event.stream === id)
      const connected = mine.some((event) => event.type === "MailboxConnected")
      const failure = mine.find((event) => event.type === "MailboxConnectionFailed")
      const error = failure === undefined ? "" : (JSON.parse(failure.payload) as { error: string }).error
      rec.check(`${id}: refused`, !connected && failure !== undefined, connected ? "connected in clear!" : error.slice(0, 160))
      const wire = server.received().toString("latin1")
      const leaked = passwordForms(passwords.get(id)!, users.get(id)!).filter((form) => wire.includes(form))
      const logins = server.commands().filter((verb) => ["LOGIN", "AUTHENTICATE", "USER", "PASS", "AUTH"].includes(verb))
      rec.check(`${id}: the password never crossed the wire, nor any login command`, leaked.length === 0 && logins.length === 0,
        `${server.connections()} connection(s), commands ${JSON.stringify(server.commands())}${leaked.length > 0 ? `; PASSWORD SEEN (${leaked.length} form(s))` : ""}`)
    }
    ctx.artifacts.push(...daemons.files)
    return rec.finish(undefined, [daemons], { messagesIn: 0 })
  } finally {
    await daemons.killAll()
    await smtp.stop()
    for (const { server } of servers) await server.close()
  }
}

/**
 * Runs the daemon with every kind of secret (inline, environment, file, a wrong one, POP3, the
 * SMTP relay's), then scans every artifact of every scenario of this run for every secret.
 */
export const secretsScan = async (ctx: TortureContext): Promise<ScenarioResult> => {
  const rng = prng(ctx.seed).fork("secrets")
  const rec = new Recorder("security: no secret in any output", rng.seed, ctx.log)
  const users = ["inline", "env", "file", "wrong", "pop3"].map((name) => `secret-${name}@example.test`)
  const pw = new Map(users.map((user) => [user, ctx.secret(`scan-${user}`, user)]))
  const wrong = ctx.secret("scan-wrong", "secret-wrong@example.test")
  const relay = ctx.secret("scan-smtp-relay", "relay")
  const dovecot = await startDovecot({ name: "torture-secrets", users: users.map((user) => ({ user, password: pw.get(user)! })) })
  const smtp = await startSmtpServer({ auth: { user: "relay", pass: relay } })
  const dir = ctx.dir("security-secrets")
  const daemons = new Daemons(ctx.bin, dir, { MAILINTAKE_LOG_LEVEL: "debug", SECRET_ENV_PASSWORD: pw.get("secret-env@example.test")! })
  try {
    writeFileSync(join(dir, "password-file"), `${pw.get("secret-file@example.test")}\n`)
    for (const user of users) {
      await dovecot.seed(user, [plainMessage(rng.int(1, 1e6)), plainMessage(rng.int(1, 1e6), { subject: "[pcemail quarantine test message]" })])
    }
    const imap = (user: string, password: unknown) => ({
      id: user.replace(/@.*/, ""), host: dovecot.host, port: dovecot.imapsPort, tls: "implicit", caFile: dovecot.caFile, user, password, connectTimeoutSeconds: 5
    })
    const config = writeConfig(dir, {
      database: join(dir, "events.db"),
      defaults: { quarantine: quarantineTo(smtp, { user: "relay", password: relay }) },
      configurations: [
        {
          name: "secrets-imap",
          integrationType: "IMAP",
          pollingIntervalSeconds: 1,
          reconnectIntervalSeconds: 1,
          mailboxes: [
            imap("secret-inline@example.test", pw.get("secret-inline@example.test")),
            imap("secret-env@example.test", { env: "SECRET_ENV_PASSWORD" }),
            imap("secret-file@example.test", { file: "password-file" }),
            imap("secret-wrong@example.test", wrong)
          ]
        },
        {
          name: "secrets-pop3",
          integrationType: "POP3",
          pollingIntervalSeconds: 1,
          reconnectIntervalSeconds: 1,
          mailboxes: [{ ...imap("secret-pop3@example.test", pw.get("secret-pop3@example.test")), port: dovecot.pop3sPort }]
        }
      ]
    })
    ctx.databaseDirs.push(dir)
    const daemon = daemons.start(["run", "--config", config], { label: "run" })
    const deadline = Date.now() + 60_000
    const good = users.filter((user) => user !== "secret-wrong@example.test")
    while (Date.now() < deadline && (await Promise.all(good.map((user) => dovecot.count(user)))).some((n) => n > 0)) await sleep(250)
    await sleep(2_000)
    const drained = (await Promise.all(good.map((user) => dovecot.count(user)))).every((n) => n === 0)
    if (!drained) rec.hang("draining the mailboxes with good passwords")
    const stopped = await daemon.stop()
    if (!stopped.inTime) rec.hang("stopping on SIGTERM")
    rec.check("the quarantine notices went through the authenticated relay", smtp.received.length >= good.length && smtp.authFailures === 0, `${smtp.received.length} notices, ${smtp.authFailures} AUTH failures`)

    // Every command's output becomes an artifact too.
    for (const args of [["status"], ["status", "--json"], ["events"], ["events", "--json"], ["check-config"], ["check-config", "--json"]]) {
      const result = await daemons.runToEnd([...args, "--config", config], { label: args.join("-"), timeoutMs: 60_000 })
      if (result.hung) rec.hang(args.join(" "))
      rec.check(`${args.join(" ")} exits 0`, result.exit.code === 0, `exit ${result.exit.code}`)
    }
    ctx.artifacts.push(...daemons.files)

    // The scan: every artifact and every database file of every scenario so far.
    const files = new Set(ctx.artifacts)
    for (const databaseDir of new Set(ctx.databaseDirs)) {
      try {
        for (const name of readdirSync(databaseDir)) if (name.startsWith("events.db")) files.add(join(databaseDir, name))
      } catch {
        // a scenario's directory that is gone (unmounted tmpfs)
      }
    }
    const needles = ctx.secrets.flatMap(({ label, value, user }) =>
      (user === undefined ? [value, Buffer.from(value).toString("base64")] : passwordForms(value, user)).map((form) => ({ label, form: Buffer.from(form) })))
    const hits: Array<string> = []
    let bytes = 0
    for (const file of files) {
      let content: Buffer
      try {
        content = readFileSync(file)
      } catch {
        continue
      }
      bytes += content.length
      for (const { label, form } of needles) if (content.includes(form)) hits.push(`${file}: ${label}`)
    }
    rec.check("no secret, in any form, in any log, event, database or command output", hits.length === 0,
      `${ctx.secrets.length} secrets x forms in ${files.size} files (${(bytes / 1048576).toFixed(0)} MiB)${hits.length > 0 ? `: ${hits.slice(0, 5).join("; ")}` : ""}`)
    const outcome = readEvents(join(dir, "events.db"))
    return rec.finish(undefined, [daemons], {
      messagesIn: users.length * 2,
      accepted: outcome.filter((event) => event.type === "MessageAccepted").length,
      quarantined: outcome.filter((event) => event.type === "MessageQuarantined").length
    })
  } finally {
    await daemons.killAll()
    await smtp.stop()
    await dovecot.destroy()
  }
}
