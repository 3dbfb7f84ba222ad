/**
 * `npm run demo`: mailintake end to end on this machine, with nothing to set up.
 *
 * 1. Makes sure Dovecot is installed (scripts/ensureDovecot.ts; installs it with apt-get as root).
 * 2. Starts a private Dovecot (IMAP over implicit TLS, self-signed certificate) and a local SMTP
 *    server standing in for the quarantine mailbox — the test harnesses of test/support/.
 * 3. Puts one message of every kind into the INBOX of test@example.test: normal ones (plain,
 *    multipart with an attachment, Latin-1, bare LF line ends, mailing list), an Exchange
 *    out-of-office, a vacation reply, a delivery-status bounce, a PCEmail quarantine test
 *    message, one over the size limit, and a duplicate.
 * 4. Writes .demo/mailintake.json and runs the real daemon once:
 *    `node bin/mailintake.js run --once --config .demo/mailintake.json`.
 * 5. Prints `status`, `events`, what is left in the INBOX, what the quarantine received, and
 *    checks every message ended where it should. Exit code 0 only when everything did.
 *
 * The event log stays in .demo/mailintake.db for you to explore (.demo/ is wiped at each run).
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readdirSync, statSync } from "node:fs"
import * as fsp from "node:fs/promises"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { simpleParser } from "mailparser"
import { startDovecot, type Dovecot } from "../test/support/dovecot.js"
import { startSmtpServer, type SmtpServerHandle } from "../test/support/smtpServer.js"
import { ensureDovecot } from "./ensureDovecot.js"

// ---------------------------------------------------------------------------------------------
// Where things are
// ---------------------------------------------------------------------------------------------

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const BIN = join(REPO, "bin", "mailintake.js")
const DEMO_DIR = join(REPO, ".demo")
const CONFIG = join(DEMO_DIR, "mailintake.json")
/** As the user types them, from the repository root. */
const CONFIG_ARG = relative(REPO, CONFIG)
const CLI = `node bin/mailintake.js`

const USER = "test@example.test"
const PASSWORD = "secret"
const PASSWORD_ENV = "DEMO_PASSWORD"
const MAILBOX_ID = "support-inbox"
const QUARANTINE_MAILBOX = "quarantine@example.test"
const MAX_MESSAGE_BYTES = 100_000
/** The daemon should need a second or two; anything near this is a hang. */
const RUN_TIMEOUT_MS = 60_000

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

const bold = (text: string) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text)
const heading = (title: string) => console.log(`\n${bold(`=== ${title} ${"=".repeat(Math.max(3, 72 - title.length))}`)}`)
const indent = (text: string, prefix = "  ") =>
  text.replace(/\n$/, "").split("\n").map((line) => `${prefix}${line}`).join("\n")

const problems: Array<string> = []
const problem = (text: string) => {
  problems.push(text)
  console.log(`  !! ${text}`)
}

// ---------------------------------------------------------------------------------------------
// The messages
// ---------------------------------------------------------------------------------------------

type Outcome =
  | { readonly _tag: "Accepted" }
  | { readonly _tag: "Quarantined"; readonly reason: string }
  | { readonly _tag: "DuplicateSkipped" }

interface DemoMessage {
  readonly kind: string
  readonly raw: Buffer
  readonly expected: Outcome
}

const accepted: Outcome = { _tag: "Accepted" }
const quarantined = (reason: string): Outcome => ({ _tag: "Quarantined", reason })
const showOutcome = (outcome: Outcome | undefined): string =>
  outcome === undefined
    ? "(nothing)"
    : outcome._tag === "Quarantined"
    ? `quarantined: ${outcome.reason}`
    : outcome._tag === "Accepted"
    ? "accepted"
    : "duplicate, skipped"

const CRLF = "\r\n"

/** Header lines, a blank line and the body, every line ending in `eol`. Body strings are UTF-8 unless Buffers. */
const compose = (headers: ReadonlyArray<string>, body: string | Buffer, eol = CRLF): Buffer => {
  const head = Buffer.from(headers.join(eol) + eol + eol, "utf8")
  const text = typeof body === "string" ? Buffer.from(body.replace(/\r?\n/g, eol), "utf8") : body
  return Buffer.concat([head, text])
}

/** What the receiving MTA puts on top of every delivered message. */
const delivered = (envelopeFrom: string, date: string, id: string): Array<string> => [
  `Return-Path: <${envelopeFrom}>`,
  `Delivered-To: ${USER}`,
  `Received: from mx1.example.test (mx1.example.test [192.0.2.10])`,
  `\tby mail.example.test (Postfix) with ESMTPS id ${id}`,
  `\tfor <${USER}>; ${date}`
]

/** base64 in 76-character lines (RFC 2045 §6.8), CRLF line ends. */
const base64Lines = (data: Buffer): string => (data.toString("base64").match(/.{1,76}/g) ?? []).join(CRLF)

/** Deterministic bytes that do not compress (so the size limit is really hit), from a hash chain. */
const pseudoRandom = (length: number, seed: string): Buffer => {
  const out = Buffer.alloc(length)
  let block = createHash("sha256").update(seed).digest()
  for (let offset = 0; offset < length; offset += block.length) {
    block.copy(out, offset)
    block = createHash("sha256").update(block).digest()
  }
  return out
}

const MINIMAL_PDF = Buffer.from(
  [
    "%PDF-1.4",
    "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
    "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj",
    "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >> endobj",
    "4 0 obj << /Length 58 >> stream",
    "BT /F1 18 Tf 72 760 Td (Invoice INV-2024-0117: EUR 1,249.00) Tj ET",
    "endstream endobj",
    "trailer << /Root 1 0 R >>",
    "%%EOF",
    ""
  ].join("\n"),
  "latin1"
)

const buildMessages = (): Array<DemoMessage> => {
  const plain = compose(
    [
      ...delivered("anna.berger@customer.example", "Tue, 14 May 2024 09:12:05 +0200", "4VfL2k0Qm1z3"),
      `From: Anna Berger <anna.berger@customer.example>`,
      `To: Support <${USER}>`,
      `Subject: Order 10492 arrived damaged`,
      `Date: Tue, 14 May 2024 09:12:03 +0200`,
      `Message-ID: <CAF3b9m1-order10492@mail.customer.example>`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=utf-8`,
      `Content-Transfer-Encoding: 8bit`
    ],
    [
      "Hello,",
      "",
      "order 10492 arrived today, but the box was crushed and two of the six",
      "glasses are broken. Photos are available on request.",
      "Could you send replacements?",
      "",
      "Kind regards / Grüße",
      "Anna Berger",
      ""
    ].join(CRLF)
  )

  const multipartBoundary = "----=_Part_5531_1184306572.1715672101337"
  const multipart = compose(
    [
      ...delivered("billing@supplier.example", "Tue, 14 May 2024 09:35:02 +0200", "4VfLYW1rXbz5"),
      `From: "Supplier Billing" <billing@supplier.example>`,
      `To: ${USER}`,
      `Cc: accounts@example.test`,
      `Subject: Invoice INV-2024-0117`,
      `Date: Tue, 14 May 2024 09:35:01 +0200`,
      `Message-ID: <1184306572.5531.1715672101337@billing.supplier.example>`,
      `MIME-Version: 1.0`,
      `Content-Type: multipart/mixed;`,
      `\tboundary="${multipartBoundary}"`
    ],
    [
      "This is a multi-part message in MIME format.",
      "",
      `--${multipartBoundary}`,
      "Content-Type: text/plain; charset=us-ascii",
      "Content-Transfer-Encoding: 7bit",
      "",
      "Dear customer,",
      "",
      "please find attached invoice INV-2024-0117 for EUR 1,249.00, due 13 June 2024.",
      "",
      "Supplier Billing",
      "",
      `--${multipartBoundary}`,
      `Content-Type: application/pdf; name="INV-2024-0117.pdf"`,
      "Content-Transfer-Encoding: base64",
      `Content-Disposition: attachment; filename="INV-2024-0117.pdf"`,
      "",
      base64Lines(MINIMAL_PDF),
      "",
      `--${multipartBoundary}--`,
      ""
    ].join(CRLF)
  )

  // ISO-8859-1 header (RFC 2047 encoded word) and an 8-bit Latin-1 body.
  const latin1 = compose(
    [
      ...delivered("c.dubois@client.example", "Tue, 14 May 2024 10:02:11 +0200", "4VfM9d2nHcz7"),
      `From: =?ISO-8859-1?Q?Claire_Dub=F6is?= <c.dubois@client.example>`,
      `To: ${USER}`,
      `Subject: =?ISO-8859-1?Q?R=E9clamation_commande_n=B0_88213?=`,
      `Date: Tue, 14 May 2024 10:02:09 +0200`,
      `Message-ID: <20240514100209.88213@client.example>`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=ISO-8859-1`,
      `Content-Transfer-Encoding: 8bit`
    ],
    Buffer.from(
      [
        "Bonjour,",
        "",
        "j'ai reçu la commande n° 88213, mais l'article est défectueux : l'écran",
        "reste noir. Merci de me proposer un échange.",
        "",
        "Cordialement,",
        "Claire Dubois",
        ""
      ].join(CRLF),
      "latin1"
    )
  )

  // Written by a Unix tool and stored as is: every line ends in LF alone.
  const bareLf = compose(
    [
      ...delivered("ops@legacy.example", "Tue, 14 May 2024 10:15:40 +0200", "4VfMSx3pJdz9"),
      `From: ops@legacy.example (Legacy Ops)`,
      `To: ${USER}`,
      `Subject: Password reset link does not arrive`,
      `Date: Tue, 14 May 2024 10:15:38 +0200`,
      `Message-ID: <20240514081538.GA4242@legacy.example>`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=us-ascii`,
      `User-Agent: Mutt/1.10.1 (2018-07-13)`
    ],
    [
      "Hi,",
      "",
      "the password reset mail never reaches user jdoe (tried three times",
      "since Monday). Could you check the mail logs?",
      "",
      "-- ",
      "Legacy Ops",
      ""
    ].join("\n"),
    "\n"
  )

  // Mailing-list mail is accepted unless the configuration sets quarantineListMail.
  const listMail = compose(
    [
      ...delivered("announce-bounces@lists.vendor.example", "Tue, 14 May 2024 10:30:00 +0200", "4VfMnF4qKfz2"),
      `From: Vendor Announcements <announce@lists.vendor.example>`,
      `To: announce@lists.vendor.example`,
      `Subject: [vendor-announce] Scheduled maintenance on 18 May`,
      `Date: Tue, 14 May 2024 10:29:55 +0200`,
      `Message-ID: <maint-2024-05-18@lists.vendor.example>`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=us-ascii`,
      `List-Id: Vendor announcements <announce.lists.vendor.example>`,
      `List-Unsubscribe: <mailto:announce-leave@lists.vendor.example>, <https://lists.vendor.example/unsubscribe/announce>`,
      `List-Post: NO`,
      `Precedence: list`
    ],
    [
      "The customer portal will be unavailable on Saturday 18 May from 06:00 to",
      "08:00 UTC for scheduled maintenance.",
      "",
      "--",
      "You are subscribed to vendor-announce. Unsubscribe: https://lists.vendor.example/unsubscribe/announce",
      ""
    ].join(CRLF)
  )

  // The same bytes will be in the INBOX twice (a client that sent it twice, a server that delivered it twice).
  const duplicate = compose(
    [
      ...delivered("p.novak@customer.example", "Tue, 14 May 2024 10:41:12 +0200", "4VfN2R5sLgz4"),
      `From: Petr Novak <p.novak@customer.example>`,
      `To: ${USER}`,
      `Subject: Re: Ticket #5531 - still waiting for the refund`,
      `Date: Tue, 14 May 2024 10:41:10 +0200`,
      `Message-ID: <5531-reply-1715676070@customer.example>`,
      `In-Reply-To: <ticket-5531@example.test>`,
      `References: <ticket-5531@example.test>`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=utf-8`,
      `Content-Transfer-Encoding: 7bit`
    ],
    ["Hello,", "", "two weeks on, the refund for ticket #5531 has still not arrived.", "", "Petr Novak", ""].join(CRLF)
  )

  // Microsoft Exchange out-of-office: no Auto-Submitted, only Exchange's own headers.
  const exchangeOof = compose(
    [
      ...delivered("jonas.keller@partner.example", "Tue, 14 May 2024 10:50:03 +0200", "4VfNF06tMhz6"),
      `From: Jonas Keller <jonas.keller@partner.example>`,
      `To: Support <${USER}>`,
      `Subject: Automatic reply: Ticket #5542 - delivery schedule`,
      `Thread-Topic: Ticket #5542 - delivery schedule`,
      `Thread-Index: AQHapfGq3m1bJ8Xy0kSx7cT2V3z0Ag==`,
      `Date: Tue, 14 May 2024 08:50:01 +0000`,
      `Message-ID: <7f3c2a1e9b8d4c6fa0e1b2c3d4e5f6a7@PR3P192MB0811.EURP192.PROD.OUTLOOK.COM>`,
      `In-Reply-To: <ticket-5542@example.test>`,
      `Content-Language: en-US`,
      `X-MS-Has-Attach:`,
      `X-MS-Exchange-Inbox-Rules-Loop: jonas.keller@partner.example`,
      `X-MS-TNEF-Correlator:`,
      `X-Auto-Response-Suppress: All`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset="us-ascii"`,
      `Content-Transfer-Encoding: quoted-printable`
    ],
    [
      "Thank you for your message. I am out of the office until 21 May with no acce=",
      "ss to e-mail. For urgent matters please contact logistics@partner.example.",
      ""
    ].join(CRLF)
  )

  // A Sieve/vacation auto-reply (RFC 3834).
  const vacation = compose(
    [
      ...delivered("", "Tue, 14 May 2024 11:05:21 +0200", "4VfNZt7vNjz8"),
      `From: Maria Rossi <maria.rossi@retail.example>`,
      `To: ${USER}`,
      `Subject: Auto: Ticket #5547 - your return request`,
      `Date: Tue, 14 May 2024 11:05:20 +0200`,
      `Message-ID: <dovecot-sieve-1715677520-5547@retail.example>`,
      `In-Reply-To: <ticket-5547@example.test>`,
      `References: <ticket-5547@example.test>`,
      `Auto-Submitted: auto-replied (vacation)`,
      `Precedence: bulk`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=utf-8`,
      `Content-Transfer-Encoding: 8bit`
    ],
    ["I'm on holiday until 24 May and will read your message when I'm back.", "", "Maria", ""].join(CRLF)
  )

  // A Postfix non-delivery report (RFC 3464 / RFC 6522).
  const dsnBoundary = "4F1A82C0E3.1715678523/mx1.mail.example.net"
  const bounce = compose(
    [
      `Return-Path: <>`,
      `Delivered-To: ${USER}`,
      `Received: by mx1.mail.example.net (Postfix)`,
      `\tid 4F1A82C0E3; Tue, 14 May 2024 11:22:03 +0200 (CEST)`,
      `Date: Tue, 14 May 2024 11:22:03 +0200 (CEST)`,
      `From: MAILER-DAEMON@mx1.mail.example.net (Mail Delivery System)`,
      `Subject: Undelivered Mail Returned to Sender`,
      `To: ${USER}`,
      `Auto-Submitted: auto-replied`,
      `MIME-Version: 1.0`,
      `Content-Type: multipart/report; report-type=delivery-status;`,
      `\tboundary="${dsnBoundary}"`,
      `Content-Transfer-Encoding: 8bit`,
      `Message-Id: <20240514092203.4F1A82C0E3@mx1.mail.example.net>`
    ],
    [
      "This is a MIME-encapsulated message.",
      "",
      `--${dsnBoundary}`,
      "Content-Description: Notification",
      "Content-Type: text/plain; charset=us-ascii",
      "",
      "This is the mail system at host mx1.mail.example.net.",
      "",
      "I'm sorry to have to inform you that your message could not",
      "be delivered to one or more recipients. It's attached below.",
      "",
      "<no-such-user@partner.example>: host mail.partner.example[198.51.100.7] said:",
      "    550 5.1.1 <no-such-user@partner.example>: Recipient address rejected: User",
      "    unknown in virtual mailbox table (in reply to RCPT TO command)",
      "",
      `--${dsnBoundary}`,
      "Content-Description: Delivery report",
      "Content-Type: message/delivery-status",
      "",
      "Reporting-MTA: dns; mx1.mail.example.net",
      "X-Postfix-Queue-ID: 4F1A82C0E3",
      `X-Postfix-Sender: rfc822; ${USER}`,
      "Arrival-Date: Tue, 14 May 2024 11:22:01 +0200 (CEST)",
      "",
      "Final-Recipient: rfc822; no-such-user@partner.example",
      "Original-Recipient: rfc822;no-such-user@partner.example",
      "Action: failed",
      "Status: 5.1.1",
      "Remote-MTA: dns; mail.partner.example",
      "Diagnostic-Code: smtp; 550 5.1.1 <no-such-user@partner.example>: Recipient",
      "    address rejected: User unknown in virtual mailbox table",
      "",
      `--${dsnBoundary}`,
      "Content-Description: Undelivered Message Headers",
      "Content-Type: text/rfc822-headers",
      "",
      `Return-Path: <${USER}>`,
      `From: Support <${USER}>`,
      "To: no-such-user@partner.example",
      "Subject: Re: Ticket #5550 - your question",
      "Date: Tue, 14 May 2024 11:21:58 +0200",
      "Message-ID: <ticket-5550-reply@example.test>",
      "",
      `--${dsnBoundary}--`,
      ""
    ].join(CRLF)
  )

  // The settings screen's quarantine test: the subject carries the marker.
  const quarantineTest = compose(
    [
      ...delivered("admin@example.test", "Tue, 14 May 2024 11:30:00 +0200", "4VfNyH8wPkz1"),
      `From: Mail Admin <admin@example.test>`,
      `To: ${USER}`,
      `Subject: [PCEmail Quarantine Test Message] checking the quarantine route`,
      `Date: Tue, 14 May 2024 11:29:58 +0200`,
      `Message-ID: <quarantine-test-20240514@example.test>`,
      `MIME-Version: 1.0`,
      `Content-Type: text/plain; charset=us-ascii`
    ],
    ["This message should never reach an agent: it goes straight to quarantine.", ""].join(CRLF)
  )

  // About 200 KB: photos nobody compressed. Over the demo's maxMessageBytes of 100,000.
  const largeBoundary = "=_large_8d1f0c2b"
  const large = compose(
    [
      ...delivered("site.manager@builder.example", "Tue, 14 May 2024 11:41:30 +0200", "4VfPCk9xQmz3"),
      `From: Site Manager <site.manager@builder.example>`,
      `To: ${USER}`,
      `Subject: Photos of the installation at Lindenstrasse 12`,
      `Date: Tue, 14 May 2024 11:41:27 +0200`,
      `Message-ID: <photos-lindenstrasse-12@builder.example>`,
      `MIME-Version: 1.0`,
      `Content-Type: multipart/mixed; boundary="${largeBoundary}"`
    ],
    [
      `--${largeBoundary}`,
      "Content-Type: text/plain; charset=us-ascii",
      "",
      "Photos of today's installation attached.",
      "",
      `--${largeBoundary}`,
      `Content-Type: application/zip; name="site-photos.zip"`,
      "Content-Transfer-Encoding: base64",
      `Content-Disposition: attachment; filename="site-photos.zip"`,
      "",
      base64Lines(pseudoRandom(148_000, "site-photos.zip")),
      "",
      `--${largeBoundary}--`,
      ""
    ].join(CRLF)
  )

  return [
    { kind: "plain text (UTF-8)", raw: plain, expected: accepted },
    { kind: "multipart + PDF attachment", raw: multipart, expected: accepted },
    { kind: "Latin-1 (ISO-8859-1, 8bit)", raw: latin1, expected: accepted },
    { kind: "bare LF line endings", raw: bareLf, expected: accepted },
    { kind: "mailing list", raw: listMail, expected: accepted },
    { kind: "duplicate (1st copy)", raw: duplicate, expected: accepted },
    { kind: "Exchange out-of-office", raw: exchangeOof, expected: quarantined("auto-response") },
    { kind: "vacation auto-reply", raw: vacation, expected: quarantined("auto-response") },
    { kind: "DSN bounce (MAILER-DAEMON)", raw: bounce, expected: quarantined("bounce") },
    { kind: "PCEmail quarantine test", raw: quarantineTest, expected: quarantined("quarantine-test") },
    { kind: `too large (${Math.round(large.byteLength / 1024)} KB)`, raw: large, expected: quarantined("too-large") },
    { kind: "duplicate (2nd copy)", raw: duplicate, expected: { _tag: "DuplicateSkipped" } }
  ]
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly timedOut: boolean
}

/**
 * Runs a command to its end. `stream` copies its output to the terminal as it comes, each line
 * prefixed; otherwise it is only collected.
 */
const runCommand = (
  command: string,
  args: ReadonlyArray<string>,
  options: { env?: NodeJS.ProcessEnv; stream?: string; timeoutMs?: number } = {}
): Promise<Finished> =>
  new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      cwd: REPO,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    const relay = (sink: NodeJS.WriteStream) => {
      let pending = ""
      return {
        write: (chunk: Buffer) => {
          if (options.stream === undefined) return
          pending += chunk.toString("utf8")
          const lines = pending.split("\n")
          pending = lines.pop() ?? ""
          for (const line of lines) sink.write(`${options.stream}${line}\n`)
        },
        flush: () => {
          if (options.stream !== undefined && pending !== "") sink.write(`${options.stream}${pending}\n`)
          pending = ""
        }
      }
    }
    const out = relay(process.stdout)
    const err = relay(process.stderr)
    child.stdout.on("data", (chunk: Buffer) => {
      stdout.push(chunk)
      out.write(chunk)
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr.push(chunk)
      err.write(chunk)
    })
    let timedOut = false
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true
      child.kill("SIGTERM")
      setTimeout(() => child.kill("SIGKILL"), 5_000).unref()
    }, options.timeoutMs)
    child.once("error", (error) => {
      if (timer) clearTimeout(timer)
      reject(error)
    })
    child.once("close", (code, signal) => {
      if (timer) clearTimeout(timer)
      out.flush()
      err.flush()
      resolvePromise({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
        timedOut
      })
    })
  })

/** A mailintake command as the user would run it. */
const mailintake = (args: ReadonlyArray<string>, options: { env?: NodeJS.ProcessEnv; stream?: string; timeoutMs?: number } = {}) =>
  runCommand(process.execPath, [BIN, ...args], { timeoutMs: 30_000, ...options })

const describeExit = (result: Finished) =>
  result.timedOut ? "timed out" : result.signal !== null ? `killed by ${result.signal}` : `exit code ${result.code}`

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

const newestMtime = (dir: string): number => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs)
  }
  return newest
}

/** `npm ci` builds dist/ (the prepare script); rebuild when it is missing or older than src/. */
const ensureBuilt = async (): Promise<void> => {
  const entry = join(REPO, "dist", "main.js")
  const why = !existsSync(entry)
    ? "dist/ is missing"
    : newestMtime(join(REPO, "src")) > statSync(entry).mtimeMs
    ? "src/ changed since the last build"
    : undefined
  if (why === undefined) return
  console.log(`  ${why}: building (npm run build)`)
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const result = await runCommand(npm, ["run", "--silent", "build"], { stream: "  build| " })
  if (result.code !== 0) throw new Error(`npm run build failed (${describeExit(result)}); fix the build, then run the demo again`)
}

const writeConfig = async (dovecot: Dovecot, smtp: SmtpServerHandle): Promise<void> => {
  const config = {
    server: { usageType: "Production" },
    // Relative paths are resolved against the directory of this file: .demo/mailintake.db.
    database: "mailintake.db",
    defaults: {
      quarantine: {
        type: "SMTP",
        mailbox: QUARANTINE_MAILBOX,
        smtp: { host: smtp.host, port: smtp.port, ssl: false, user: "", password: "", sender: "mailintake@example.test" }
      }
    },
    configurations: [
      {
        name: "support",
        usageType: "Production",
        integrationType: "IMAP",
        pollingIntervalSeconds: 30,
        reconnectIntervalSeconds: 60,
        maxMessageBytes: MAX_MESSAGE_BYTES,
        quarantineListMail: false,
        mailboxes: [
          {
            id: MAILBOX_ID,
            host: dovecot.host,
            port: dovecot.imapsPort,
            tls: "implicit",
            caFile: dovecot.caFile,
            user: USER,
            password: { env: PASSWORD_ENV },
            folder: "INBOX",
            afterProcessing: "delete"
          }
        ]
      }
    ]
  }
  await fsp.writeFile(CONFIG, JSON.stringify(config, null, 2) + "\n")
}

interface JsonEvent {
  readonly position: number
  readonly mailbox: string
  readonly type: string
  readonly at: string
  readonly data: Record<string, unknown>
}

const readEvents = async (): Promise<Array<JsonEvent>> => {
  const result = await mailintake(["events", "--config", CONFIG_ARG, "--json"])
  if (result.code !== 0) throw new Error(`events --json failed (${describeExit(result)}): ${result.stderr}`)
  return result.stdout.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line) as JsonEvent)
}

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")
/** IMAP servers hand out messages with CR LF line ends (Dovecot turns a stored bare LF into CR LF). */
const toCrlf = (raw: Buffer) => Buffer.from(raw.toString("latin1").replace(/\r?\n/g, "\r\n"), "latin1")
const str = (value: unknown) => (typeof value === "string" ? value : "")

/** What happened to each message reference, from the event log. */
interface RefHistory {
  readonly ref: string
  sha256: string
  outcome?: Outcome
  quarantinedAt?: string
  quarantineFailures: number
  lastQuarantineError?: string
  removed?: string
}

const histories = (events: ReadonlyArray<JsonEvent>): Array<RefHistory> => {
  const byRef = new Map<string, RefHistory>()
  const get = (ref: string) => {
    let history = byRef.get(ref)
    if (history === undefined) {
      history = { ref, sha256: "", quarantineFailures: 0 }
      byRef.set(ref, history)
    }
    return history
  }
  for (const event of events) {
    const ref = str(event.data.ref)
    if (ref === "") continue
    const history = get(ref)
    switch (event.type) {
      case "MessageRetrieved":
        history.sha256 = str(event.data.sha256)
        break
      case "MessageAccepted":
        history.outcome = accepted
        break
      case "MessageQuarantineRequested":
        history.outcome = quarantined(str(event.data.reason))
        break
      case "MessageDuplicateSkipped":
        history.outcome = { _tag: "DuplicateSkipped" }
        break
      case "MessageQuarantined":
        history.quarantinedAt = str(event.data.destination)
        break
      case "QuarantineFailed":
        history.quarantineFailures++
        history.lastQuarantineError = str(event.data.error)
        break
      case "MessageRemoved":
        history.removed = str(event.data.how)
        break
    }
  }
  return [...byRef.values()]
}

const sameOutcome = (a: Outcome | undefined, b: Outcome) =>
  a !== undefined && a._tag === b._tag && (a._tag !== "Quarantined" || (b._tag === "Quarantined" && a.reason === b.reason))

const subjectOf = (raw: Buffer): string => {
  const match = /^Subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(raw.subarray(0, 16_384).toString("latin1"))
  return match ? match[1]!.replace(/\r?\n[ \t]+/g, " ").trim() : "(no subject)"
}

const pad = (text: string, width: number) => (text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width))

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const main = async (): Promise<void> => {
  const started = Date.now()
  let dovecot: Dovecot | undefined
  let smtp: SmtpServerHandle | undefined

  const cleanUp = async () => {
    const [d, s] = [dovecot, smtp]
    dovecot = undefined
    smtp = undefined
    await Promise.allSettled([d?.destroy(), s?.stop()])
  }
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: stopping Dovecot and the SMTP server`)
    void cleanUp().finally(() => process.exit(130))
  }
  process.once("SIGINT", onSignal)
  process.once("SIGTERM", onSignal)

  try {
    heading("1. Dovecot")
    await ensureDovecot()
    if (typeof process.getuid === "function" && process.getuid() !== 0) {
      throw new Error(
        "the demo starts a private Dovecot of its own, which must run as root (it hands its mail " +
          "files to the `mail` user): run it as root, e.g. `sudo npm run demo`"
      )
    }
    await ensureBuilt()

    heading("2. A private Dovecot and a quarantine SMTP server")
    await fsp.rm(DEMO_DIR, { recursive: true, force: true })
    await fsp.mkdir(DEMO_DIR, { recursive: true })
    ;[dovecot, smtp] = await Promise.all([startDovecot({ name: "mailintake-demo" }), startSmtpServer()])
    console.log(`  Dovecot ${dovecot.host}: IMAPS ${dovecot.imapsPort} (certificate ${dovecot.caFile}), user ${USER}`)
    console.log(`  quarantine SMTP server ${smtp.host}:${smtp.port} (records what it receives)`)

    heading("3. The INBOX of " + USER)
    const messages = buildMessages()
    await dovecot.seed(USER, messages.map((m) => m.raw))
    messages.forEach((m, i) =>
      console.log(`  ${String(i + 1).padStart(2)}. ${pad(m.kind, 28)} ${String(m.raw.byteLength).padStart(7)} B  ${pad(subjectOf(m.raw), 60)}`)
    )
    console.log(`  ${await dovecot.count(USER)} messages in the INBOX`)

    heading(`4. The configuration: ${CONFIG_ARG}`)
    await writeConfig(dovecot, smtp)
    console.log(indent(await fsp.readFile(CONFIG, "utf8")))
    const check = await mailintake(["check-config", "--config", CONFIG_ARG], { env: { [PASSWORD_ENV]: PASSWORD } })
    console.log(`\n  $ ${PASSWORD_ENV}=${PASSWORD} ${CLI} check-config --config ${CONFIG_ARG}   (${describeExit(check)})`)
    console.log(indent([check.stdout, check.stderr].filter((s) => s.trim() !== "").join("\n"), "    "))
    if (check.code !== 0) throw new Error(`check-config refused the demo configuration (${describeExit(check)})`)

    heading("5. The daemon, once")
    console.log(`  $ ${PASSWORD_ENV}=${PASSWORD} ${CLI} run --once --config ${CONFIG_ARG}\n`)
    const runStarted = Date.now()
    const run = await mailintake(["run", "--once", "--config", CONFIG_ARG], {
      env: { [PASSWORD_ENV]: PASSWORD },
      stream: "  daemon| ",
      timeoutMs: RUN_TIMEOUT_MS
    })
    console.log(`\n  the daemon finished in ${((Date.now() - runStarted) / 1000).toFixed(1)} s (${describeExit(run)})`)
    if (run.code !== 0) problem(`mailintake run --once ended with ${describeExit(run)}`)

    // Three readers of the log at once: each CLI start costs a second or more.
    const [status, eventsText, events] = await Promise.all([
      mailintake(["status", "--config", CONFIG_ARG]),
      mailintake(["events", "--config", CONFIG_ARG]),
      readEvents()
    ])

    heading(`6. ${CLI} status --config ${CONFIG_ARG}`)
    console.log(indent(status.stdout + status.stderr))
    if (status.code !== 0) problem(`status ended with ${describeExit(status)}`)

    heading(`7. ${CLI} events --config ${CONFIG_ARG}`)
    console.log(indent(eventsText.stdout + eventsText.stderr))
    if (eventsText.code !== 0) problem(`events ended with ${describeExit(eventsText)}`)

    heading("8. Left in the INBOX")
    const left = await dovecot.count(USER)
    console.log(`  ${left} message(s) left in the INBOX of ${USER}${left === 0 ? " (all processed and removed)" : ""}`)
    for (const raw of await dovecot.list(USER)) console.log(`    - ${subjectOf(raw)}`)
    if (left !== 0) problem(`${left} message(s) are still in the INBOX`)

    heading(`9. What the quarantine mailbox (${QUARANTINE_MAILBOX}) received`)
    // What the server serves is the seeded bytes, or their CR LF form when they had bare LFs.
    const seededBySha = new Map<string, DemoMessage & { index: number; asServed: string }>()
    messages.forEach((m, i) => {
      seededBySha.set(sha256(toCrlf(m.raw)), { ...m, index: i + 1, asServed: "as served by IMAP (CR LF)" })
      seededBySha.set(sha256(m.raw), { ...m, index: i + 1, asServed: "byte for byte as seeded" })
    })
    const forwardedShas: Array<string> = []
    if (smtp.received.length === 0) console.log("  nothing")
    for (const [i, received] of smtp.received.entries()) {
      const parsed = await simpleParser(received.raw)
      const reason = parsed.headers.get("x-mailintake-quarantine")
      const original = parsed.attachments.find((a) => a.contentType.toLowerCase() === "message/rfc822")
      const originalSha = original === undefined ? undefined : sha256(original.content)
      const seeded = originalSha === undefined ? undefined : seededBySha.get(originalSha)
      if (seeded !== undefined) forwardedShas.push(sha256(seeded.raw))
      console.log(`  ${i + 1}. X-Mailintake-Quarantine: ${typeof reason === "string" ? reason : "(missing)"}`)
      console.log(`     Subject: ${parsed.subject ?? "(none)"}`)
      console.log(`     envelope: ${received.from || "<>"} -> ${received.to.join(", ")}`)
      if (original === undefined) {
        console.log("     original: NOT attached")
        problem(`quarantine notice ${i + 1} has no message/rfc822 attachment`)
      } else if (seeded === undefined) {
        console.log(`     original: ${original.filename ?? "(no name)"}, ${original.size} B, sha256 ${originalSha} — NOT byte for byte any seeded message`)
        problem(`quarantine notice ${i + 1} carries an original that differs from every seeded message`)
      } else {
        console.log(`     original: #${seeded.index} "${subjectOf(seeded.raw)}", ${original.size} B, ${seeded.asServed}`)
        if (seeded.expected._tag === "Quarantined" && reason !== seeded.expected.reason) {
          problem(`quarantine notice ${i + 1} says ${String(reason)} for #${seeded.index}, expected ${seeded.expected.reason}`)
        }
      }
    }

    heading("10. Every message, what was expected and what mailintake did")
    const refs = histories(events)
    // Refs of one sha256 in the order they were retrieved; the seeded copies take them in order.
    const unclaimed = new Map<string, Array<RefHistory>>()
    const seededSha = new Map<string, string>()
    for (const m of messages) {
      seededSha.set(sha256(toCrlf(m.raw)), sha256(m.raw))
      seededSha.set(sha256(m.raw), sha256(m.raw))
    }
    for (const history of refs) {
      if (history.sha256 === "") continue
      const sha = seededSha.get(history.sha256) ?? history.sha256
      unclaimed.set(sha, [...(unclaimed.get(sha) ?? []), history])
    }
    // A duplicate pair: whichever copy came first is accepted, the other skipped.
    const byOutcomeFirst = (sha: string, expected: Outcome) => {
      const candidates = unclaimed.get(sha) ?? []
      const index = Math.max(0, candidates.findIndex((h) => sameOutcome(h.outcome, expected)))
      return candidates.splice(index, 1)[0]
    }
    console.log(`   #  ${pad("message", 28)} ${pad("expected", 28)} ${pad("mailintake did", 28)} removed`)
    for (const [i, message] of messages.entries()) {
      const sha = sha256(message.raw)
      const history = byOutcomeFirst(sha, message.expected)
      const ok = sameOutcome(history?.outcome, message.expected)
      const removed = history?.removed ?? "no"
      console.log(
        `  ${ok ? " " : "✗"}${String(i + 1).padStart(2)} ${pad(message.kind, 28)} ${pad(showOutcome(message.expected), 28)} ${pad(showOutcome(history?.outcome), 28)} ${removed}`
      )
      if (history === undefined) {
        problem(`#${i + 1} (${message.kind}) was never retrieved`)
        continue
      }
      if (!ok) problem(`#${i + 1} (${message.kind}): expected ${showOutcome(message.expected)}, got ${showOutcome(history.outcome)}`)
      if (history.removed === undefined) problem(`#${i + 1} (${message.kind}) was not removed from the server`)
      if (history.outcome?._tag === "Quarantined") {
        if (history.quarantinedAt === undefined) {
          problem(
            `#${i + 1} (${message.kind}) was not quarantined` +
              (history.quarantineFailures > 0 ? ` (${history.quarantineFailures} QuarantineFailed, last: ${history.lastQuarantineError})` : "")
          )
        }
        if (!forwardedShas.includes(sha)) problem(`#${i + 1} (${message.kind}) never reached the quarantine SMTP server`)
      }
    }
    const expectedForwards = messages.filter((m) => m.expected._tag === "Quarantined").length
    if (smtp.received.length !== expectedForwards) {
      problem(`the quarantine SMTP server received ${smtp.received.length} message(s), expected ${expectedForwards}`)
    }

    const firstAccepted = events.find((e) => e.type === "MessageAccepted")
    const showSha = firstAccepted === undefined ? "SHA256" : str(firstAccepted.data.sha256)

    heading("What happened")
    console.log(indent(
      [
        `mailintake logged on to ${USER} over IMAPS and, for each of the ${messages.length} messages, appended`,
        `MessageRetrieved (with the raw bytes) to the event log, then decided:`,
        `  - normal mail (plain, multipart, Latin-1, bare LF, mailing list) -> MessageAccepted, with a`,
        `    parsed summary and the body in CR LF line endings;`,
        `  - auto-replies, the bounce, the PCEmail quarantine test and the message over`,
        `    maxMessageBytes (${MAX_MESSAGE_BYTES.toLocaleString("en")} bytes) -> MessageQuarantineRequested, then`,
        `    MessageQuarantined once the SMTP server answered 250: a notice with the original attached;`,
        `  - the second copy of an accepted message -> MessageDuplicateSkipped;`,
        `and only then deleted it from the server (MessageRemoved). Run the daemon again and it`,
        `finds an empty INBOX and writes nothing. (Dovecot hands out the bare-LF message with CR LF`,
        `line ends already, as IMAP requires, so its sha256 differs from the file seeded.)`,
        ``,
        `The event log is ${relative(REPO, join(DEMO_DIR, "mailintake.db"))} (config ${CONFIG_ARG}). Try:`,
        `  ${CLI} events --config ${CONFIG_ARG} --json`,
        `  ${CLI} events --config ${CONFIG_ARG} --type MessageQuarantined`,
        `  ${CLI} status --config ${CONFIG_ARG} --json`,
        `  ${CLI} show ${showSha} --config ${CONFIG_ARG}`,
        `(Dovecot and the SMTP server are stopped now; events, status and show only read the log.)`
      ].join("\n")
    ))
  } finally {
    await cleanUp()
    process.off("SIGINT", onSignal)
    process.off("SIGTERM", onSignal)
  }

  heading(problems.length === 0 ? "Demo OK" : `Demo FAILED: ${problems.length} problem(s)`)
  for (const text of problems) console.log(`  - ${text}`)
  console.log(`  ${((Date.now() - started) / 1000).toFixed(1)} s; the database is ${join(DEMO_DIR, "mailintake.db")}`)
  if (problems.length > 0) process.exitCode = 1
}

// Exit explicitly: a timer left behind by a library (the Dovecot harness's stop() races a
// 10 s sleep) would otherwise keep the process alive after everything is done.
main().then(
  () => process.exit(),
  (error: unknown) => {
    console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`)
    if (error instanceof Error && !/^(the demo|npm run build|check-config)/.test(error.message)) console.error(error.stack)
    process.exit(1)
  }
)
