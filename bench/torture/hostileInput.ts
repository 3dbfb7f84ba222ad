/**
 * Scenario 3, hostile input: thousands of malformed and adversarial messages from a seeded
 * generator (test/torture/lib/hostile.ts) go through the daemon. Nothing may crash or hang,
 * every message ends accepted or quarantined within a per-message time limit, memory stays
 * bounded, and no quarantine notice carries a header (or a recipient) injected from the
 * message: the notices' top-level headers are parsed and only our known set may appear.
 */
import { simpleParser } from "mailparser"
import { createHash } from "node:crypto"
import { startDovecot } from "../../test/support/dovecot.js"
import { startSmtpServer, type ReceivedMessage } from "../../test/support/smtpServer.js"
import type { TortureContext } from "../../test/torture/lib/context.js"
import { Daemons } from "../../test/torture/lib/daemon.js"
import { expectedSet, type Protocol } from "../../test/torture/lib/expected.js"
import { hostileCorpus, INJECTED_ADDRESS, INJECTED_HEADER } from "../../test/torture/lib/hostile.js"
import { closeReaders } from "../../test/torture/lib/ledger.js"
import { prng } from "../../test/torture/lib/prng.js"
import { Recorder, type ScenarioResult } from "../../test/torture/lib/report.js"
import { fullLedger, imapBox, noticeSha, registerArtifacts, topHeader, waitDrained, writeTortureConfig } from "../../test/torture/lib/scenario.js"

export interface HostileOptions {
  readonly protocol: Protocol
  readonly messages: number
  readonly heavy: boolean
  readonly timeLimitMs: number
  /** Longest time from retrieval to classification of any one message. */
  readonly perMessageLimitMs: number
  readonly maxRssMiB: number
}

const QUARANTINE = "quarantine-hostile@example.test"
const SENDER = "mailintake@example.test"
/** The headers a notice may carry at its top level (nodemailer's MailComposer and ours). */
const ALLOWED = new Set([
  "from", "to", "subject", "message-id", "date", "mime-version", "content-type", "content-transfer-encoding",
  "auto-submitted", "x-mailintake-quarantine", "x-auto-response-suppress"
])
const REASONS = /^(auto-response|bounce|list-mail|quarantine-test|too-large|processing-error)$/

/** Unfolded top-level header fields of a message. */
const headerFields = (raw: Buffer): Array<{ name: string; value: string; line: string }> => {
  const fields: Array<{ name: string; value: string; line: string }> = []
  for (const line of topHeader(raw).split(/\r\n(?![ \t])/)) {
    const match = /^([!-9;-~]+):[ \t]*([\s\S]*)$/.exec(line)
    fields.push(match === null ? { name: "", value: "", line } : { name: match[1]!.toLowerCase(), value: match[2]!.replace(/\r\n[ \t]+/g, " "), line })
  }
  return fields
}

/** What is wrong with one notice's envelope and top-level header, if anything. */
export const noticeProblems = (notice: ReceivedMessage, mailboxId: string): Array<string> => {
  const problems: Array<string> = []
  if (notice.to.length !== 1 || notice.to[0] !== QUARANTINE) problems.push(`envelope recipients ${JSON.stringify(notice.to)}`)
  if (notice.from !== SENDER) problems.push(`envelope sender ${notice.from}`)
  const fields = headerFields(notice.raw)
  const seen = new Map<string, number>()
  for (const field of fields) {
    if (field.name === "") {
      problems.push(`not a header field: ${JSON.stringify(field.line.slice(0, 100))}`)
      continue
    }
    seen.set(field.name, (seen.get(field.name) ?? 0) + 1)
    if (!ALLOWED.has(field.name)) problems.push(`unexpected header ${field.name}`)
    if (/[\0\r\n]/.test(field.value.replace(/\r\n[ \t]/g, ""))) problems.push(`control characters in ${field.name}`)
  }
  for (const [name, count] of seen) if (count > 1) problems.push(`${name} ${count} times`)
  const value = (name: string) => fields.find((field) => field.name === name)?.value ?? ""
  if (value("to") !== QUARANTINE) problems.push(`To: ${value("to").slice(0, 100)}`)
  if (value("from") !== SENDER) problems.push(`From: ${value("from").slice(0, 100)}`)
  const subject = /^\[mailintake quarantine\] (\S+) from (\S+)$/.exec(value("subject"))
  if (subject === null || !REASONS.test(subject[1]!) || subject[2] !== mailboxId) problems.push(`Subject: ${value("subject").slice(0, 100)}`)
  if (!REASONS.test(value("x-mailintake-quarantine"))) problems.push(`X-Mailintake-Quarantine: ${value("x-mailintake-quarantine").slice(0, 100)}`)
  if (value("auto-submitted") !== "auto-generated") problems.push(`Auto-Submitted: ${value("auto-submitted")}`)
  const top = topHeader(notice.raw)
  if (top.includes(INJECTED_HEADER) || top.includes(INJECTED_ADDRESS)) problems.push("an injected payload is in the top-level header")
  return problems
}

export const hostileInput = async (ctx: TortureContext, options: HostileOptions): Promise<ScenarioResult> => {
  const name = `hostile input (${options.protocol.toUpperCase()})`
  const rng = prng(ctx.seed).fork(`hostile-${options.protocol}`)
  const rec = new Recorder(name, rng.seed, ctx.log)
  const user = `hostile-${options.protocol}@example.test`
  const password = ctx.secret(`hostile-${options.protocol}`, user)
  const dovecot = await startDovecot({ name: `torture-hostile-${options.protocol}`, users: [{ user, password }] })
  const smtp = await startSmtpServer()
  const dir = ctx.dir(`hostile-${options.protocol}`)
  const daemons = new Daemons(ctx.bin, dir)
  const limit = options.heavy ? 25 * 1024 * 1024 : 2 * 1024 * 1024
  try {
    const corpus = hostileCorpus(rng, options.messages, { heavy: options.heavy, overLimit: limit })
    const kinds: Record<string, number> = {}
    for (const message of corpus) kinds[message.kind.replace(/^duplicate-of-.*/, "duplicate")] = (kinds[message.kind.replace(/^duplicate-of-.*/, "duplicate")] ?? 0) + 1
    rec.note(`corpus: ${corpus.length} messages, ${(corpus.reduce((n, m) => n + m.bytes.length, 0) / 1048576).toFixed(1)} MiB: ${JSON.stringify(kinds)}`)
    await dovecot.seed(user, corpus.map((message) => message.bytes))
    const expected = expectedSet(corpus.map((message) => message.bytes), options.protocol, (_m, i) => `#${i} ${corpus[i]!.kind}`)
    const box = { id: `hostile-${options.protocol}`, user }
    const { config, database } = writeTortureConfig(ctx, dir, {
      integrationType: options.protocol === "imap" ? "IMAP" : "POP3",
      mailboxes: [imapBox({ host: dovecot.host, port: options.protocol === "imap" ? dovecot.imapsPort : dovecot.pop3sPort, caFile: dovecot.caFile }, box.id, user, password, { commandTimeoutSeconds: 120 })],
      quarantine: { type: "SMTP", mailbox: QUARANTINE, smtp: { host: smtp.host, port: smtp.port, ssl: false, user: "", password: "", sender: SENDER } },
      extra: { maxMessageBytes: limit }
    })
    const daemon = daemons.start(["run", "--config", config], { label: "run" })
    const ok = await waitDrained({ dovecot, boxes: [box], database, expected, timeoutMs: options.timeLimitMs, abort: () => !daemon.running })
    if (!daemon.running) rec.note("the daemon exited during the drain")
    else if (!ok) rec.hang(`draining ${corpus.length} messages (limit ${options.timeLimitMs / 1000} s, or 150 s without progress)`)
    const stopped = await daemon.stop()
    if (!stopped.inTime) rec.hang("stopping on SIGTERM")

    const l = await fullLedger(dovecot, [box], database, expected, true)
    rec.check("INBOX empty", l.stillOnServer === 0, `${l.stillOnServer} left`)
    rec.check("retrieved bytes are the seeded ones (as the server serves them)", l.unknown === 0 && l.blobMismatches === 0, `${l.unknown} unknown, ${l.blobMismatches} bad blobs`)
    rec.check(`every message classified within ${options.perMessageLimitMs / 1000} s of its retrieval`, l.maxClassifyMs <= options.perMessageLimitMs, `longest ${(l.maxClassifyMs / 1000).toFixed(1)} s`)
    rec.check(`peak RSS under ${options.maxRssMiB} MiB`, daemons.peakRssMiB <= options.maxRssMiB, `${daemons.peakRssMiB.toFixed(0)} MiB`)
    rec.check("nothing waits for quarantine at the end", l.quarantinePending === 0, `${l.quarantinePending} pending`)

    // The notices: headers, recipients, and the original attached byte for byte.
    const problems = new Map<string, number>()
    let badNotices = 0
    let attachmentMismatches = 0
    const quarantinedShas = new Set(l.quarantinedShas.map((q) => q.sha256))
    const noticed = new Set<string>()
    for (const notice of smtp.received) {
      const found = noticeProblems(notice, box.id)
      if (found.length > 0) badNotices++
      for (const problem of found) problems.set(problem, (problems.get(problem) ?? 0) + 1)
      const sha = noticeSha(notice.raw)
      if (sha !== undefined) noticed.add(sha)
      const parsed = await simpleParser(notice.raw, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true })
      const original = parsed.attachments.find((a) => a.contentType === "message/rfc822")
      if (original === undefined || createHash("sha256").update(original.content).digest("hex") !== sha) attachmentMismatches++
    }
    rec.check("no quarantine notice carries an injected header or recipient", badNotices === 0,
      `${smtp.received.length} notices parsed, ${badNotices} bad${problems.size > 0 ? `: ${JSON.stringify(Object.fromEntries([...problems].slice(0, 8)))}` : ""}`)
    rec.check("every notice carries the original byte for byte", attachmentMismatches === 0, `${attachmentMismatches} of ${smtp.received.length} differ`)
    rec.check("every quarantined message has its notice", [...quarantinedShas].every((sha) => noticed.has(sha)), `${quarantinedShas.size} quarantined, ${noticed.size} noticed`)
    rec.note(`quarantine reasons: ${JSON.stringify(l.reasons)}; longest retrieval-to-classification ${(l.maxClassifyMs / 1000).toFixed(1)} s`)
    if (l.acceptedWithControlChars > 0) {
      rec.note(`${l.acceptedWithControlChars} MessageAccepted event(s) carry CR, LF or NUL in subject/from/to/cc/messageId (decoded encoded-words): harmless in the log, but whoever copies these fields into headers must sanitise them`)
    }
    const stderr = daemons.allStderr()
    const restarts = stderr.match(/failed; restarting it/g) ?? []
    const firstDefect = /failed; restarting it[^"]*" cause="([^"\\]{0,200})/.exec(stderr)?.[1]
    rec.check("no message killed the mailbox (no supervisor restart after a defect)", restarts.length === 0,
      restarts.length === 0 ? "" : `${restarts.length} restart(s); first cause: ${firstDefect}`)
    const warnings = (stderr.match(/level=WARN/g) ?? []).length
    rec.note(`${warnings} warning line(s) in the daemon's log`)
    registerArtifacts(ctx, daemons)
    return rec.finish(l, [daemons])
  } finally {
    closeReaders()
    await daemons.killAll()
    await smtp.stop()
    await dovecot.destroy()
  }
}
