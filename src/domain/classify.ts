/**
 * Classification of a retrieved message: normal, or quarantined with the rule
 * that matched. The rules are one ordered table; the first row that matches
 * decides. Pure and total: any input, however hostile, gives a verdict.
 */
import {
  addressLocalParts,
  decodeHeaderText,
  findPartContentType,
  type MessageHeaders,
  parseHeaderBlock,
  parseStructuredValue,
  stripComments
} from "./headers.js"
import type { QuarantineReason } from "./QuarantineReason.js"

export interface ClassifyOptions {
  /** Quarantine mailing-list mail (List-Id, List-Unsubscribe, Precedence: list) instead of accepting it. */
  readonly quarantineListMail: boolean
}

export type Verdict =
  | { readonly _tag: "Normal" }
  | {
    readonly _tag: "Quarantine"
    readonly reason: QuarantineReason
    /** The `id` of the rule that matched. */
    readonly rule: string
    /** The header (or part) and value that matched, one line, safe to log. */
    readonly detail: string
  }

export interface Rule {
  readonly id: string
  readonly reason: QuarantineReason
  /** The document the rule follows: an RFC section, or the de-facto practice it recognises. */
  readonly source: string
  /** The rule runs only when this option is on. */
  readonly optIn?: keyof ClassifyOptions
  /** The detail when the message matches, undefined otherwise. */
  readonly test: (headers: MessageHeaders, body: Uint8Array) => string | undefined
}

/** The PCEmail quarantine-test marker, compared case-insensitively, brackets included. */
const QUARANTINE_TEST_MARKER = "[pcemail quarantine test message]"
const MAX_DETAIL_VALUE_CHARS = 200
const MAX_DETAIL_CHARS = 500

/** Collapses folding white space so a folded or tab-separated marker still matches. */
const collapseBlanks = (text: string): string => text.replace(/[ \t\r\n]+/g, " ")

/** Keeps the first `max` characters, without splitting a surrogate pair, marking the cut with "…". */
const truncate = (text: string, max: number): string => {
  if (text.length <= max) return text
  const end = /[\uD800-\uDBFF]/.test(text[max - 1] ?? "") ? max - 1 : max
  return `${text.slice(0, end)}…`
}

/**
 * One line of printable text: details end up in notices and logs, so control
 * characters (CR and LF above all), line separators and invisible format
 * characters (bidi overrides) are removed. Cut before cleaning so the cost stays
 * bounded on a megabyte-long value.
 */
const printable = (text: string, max: number): string =>
  truncate(
    text
      .slice(0, max * 4)
      .replace(/\p{Cf}/gu, "")
      .replace(/[\p{Cc}\u2028\u2029\s]+/gu, " ")
      .trim(),
    max
  )

/** `Name: value` for a detail, the value decoded and shortened. */
const show = (name: string, value: string): string =>
  `${name}: ${printable(decodeHeaderText(value), MAX_DETAIL_VALUE_CHARS)}`

/** The first value of `names` whose main token (comments and parameters ignored) is in `tokens`. */
const firstWithToken = (
  headers: MessageHeaders,
  names: ReadonlyArray<string>,
  tokens: ReadonlySet<string>
): string | undefined => {
  for (const name of names) {
    for (const value of headers.getAll(name)) {
      if (tokens.has(parseStructuredValue(value).value)) return show(name, value)
    }
  }
  return undefined
}

/** The first of `names` present, shown with its value. */
const firstPresent = (headers: MessageHeaders, names: ReadonlyArray<string>): string | undefined => {
  for (const name of names) {
    const value = headers.get(name)
    if (value !== undefined) return show(name, value)
  }
  return undefined
}

const AUTO_PRECEDENCE = new Set(["auto_reply", "bulk", "junk"])
const EXCHANGE_SUPPRESS_OOF = new Set(["all", "oof", "autoreply"])
const BOUNCE_SENDERS = new Set(["mailer-daemon", "postmaster"])
/** RFC 3464 §2.1 and its internationalised form, RFC 6533 §6.2. */
const DELIVERY_STATUS_TYPES = new Set(["message/delivery-status", "message/global-delivery-status"])
/** RFC 6522 §3 report-type values of a delivery report (RFC 3464 §2, RFC 6533 §6). */
const DELIVERY_REPORT_TYPES = new Set(["delivery-status", "global-delivery-status"])

/** RFC 8098 §3: the report-type of a message disposition notification (a read receipt). */
const DISPOSITION_REPORT_TYPES = new Set(["disposition-notification"])

/** The Content-Type when the message is a multipart/report (RFC 6522 §3) of one of `reportTypes`. */
const topLevelReport = (headers: MessageHeaders, reportTypes: ReadonlySet<string>): string | undefined => {
  const contentType = headers.get("content-type")
  if (contentType === undefined) return undefined
  const { params, value } = parseStructuredValue(contentType)
  const reportType = params.get("report-type")?.toLowerCase()
  return value === "multipart/report" && reportType !== undefined && reportTypes.has(reportType)
    ? show("Content-Type", contentType)
    : undefined
}

/**
 * The rules, in the order they are tried:
 * quarantine test, strong bounce evidence, auto-responses, the null return path, list mail.
 */
export const rules: ReadonlyArray<Rule> = [
  {
    id: "quarantine-test-subject",
    reason: "quarantine-test",
    source: "PCEmail settings: subject contains [pcemail quarantine test message]",
    test: (headers) => {
      for (const subject of headers.getAll("subject")) {
        const text = decodeHeaderText(subject)
        // The raw value too: decoding reads only the first 64 KB.
        if (
          collapseBlanks(text).toLowerCase().includes(QUARANTINE_TEST_MARKER) ||
          collapseBlanks(subject).toLowerCase().includes(QUARANTINE_TEST_MARKER)
        ) return show("Subject", subject)
      }
      return undefined
    }
  },

  // Bounces come before auto-responses: a DSN usually also carries Auto-Submitted: auto-replied.
  {
    id: "bounce-multipart-report",
    reason: "bounce",
    source: "RFC 6522 §3, RFC 3464 §2",
    test: (headers) => topLevelReport(headers, DELIVERY_REPORT_TYPES)
  },
  {
    id: "bounce-delivery-status-part",
    reason: "bounce",
    source: "RFC 3464 §2.1",
    test: (headers, body) => {
      const contentType = headers.get("content-type")
      if (contentType === undefined) return undefined
      const mediaType = parseStructuredValue(contentType).value
      if (DELIVERY_STATUS_TYPES.has(mediaType)) return show("Content-Type", contentType)
      // RFC 2045 §5.2: without a multipart Content-Type the body is one text part; nothing to scan.
      if (!mediaType.startsWith("multipart/")) return undefined
      const found = findPartContentType(body, (type) => DELIVERY_STATUS_TYPES.has(type))
      return found === undefined ? undefined : `MIME part Content-Type: ${found}`
    }
  },
  {
    id: "bounce-mailer-daemon-from",
    reason: "bounce",
    source: "de-facto: MTA notices from MAILER-DAEMON or postmaster (RFC 5321 §4.5.1)",
    test: (headers) => {
      for (const from of headers.getAll("from")) {
        if (addressLocalParts(from).some((local) => BOUNCE_SENDERS.has(local))) return show("From", from)
      }
      return undefined
    }
  },
  {
    id: "bounce-x-failed-recipients",
    reason: "bounce",
    source: "de-facto: Exim",
    test: (headers) => firstPresent(headers, ["X-Failed-Recipients"])
  },

  {
    id: "auto-submitted",
    reason: "auto-response",
    source: "RFC 3834 §5",
    test: (headers) => {
      for (const value of headers.getAll("auto-submitted")) {
        // RFC 3834 §5: "no" means not automatic; every other keyword, extensions included, means automatic.
        // An empty value is not a keyword at all and is read as absent.
        const keyword = parseStructuredValue(value).value
        if (keyword !== "" && keyword !== "no") return show("Auto-Submitted", value)
      }
      return undefined
    }
  },
  {
    id: "x-autoreply",
    reason: "auto-response",
    source: "de-facto: X-Autoreply family of autoresponders",
    test: (headers) =>
      firstPresent(headers, ["X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-AutoReply-From", "X-Mail-Autoreply"])
  },
  {
    id: "precedence-auto",
    reason: "auto-response",
    source: "de-facto: Precedence auto_reply / bulk / junk (sendmail, vacation)",
    test: (headers) => firstWithToken(headers, ["Precedence", "X-Precedence"], AUTO_PRECEDENCE)
  },
  {
    id: "x-autogenerated-reply",
    reason: "auto-response",
    source: "de-facto: X-Autogenerated",
    test: (headers) => firstWithToken(headers, ["X-Autogenerated"], new Set(["reply"]))
  },
  {
    id: "exchange-oof",
    reason: "auto-response",
    source: "de-facto: Microsoft Exchange ([MS-OXCMAIL] X-Auto-Response-Suppress)",
    test: (headers) => {
      // An OOF reply carries both; X-Auto-Response-Suppress alone is only a request not to be answered.
      const loop = headers.get("x-ms-exchange-inbox-rules-loop")
      if (loop === undefined) return undefined
      for (const value of headers.getAll("x-auto-response-suppress")) {
        const flags = stripComments(value).split(",").map((flag) => flag.trim().toLowerCase())
        if (flags.some((flag) => EXCHANGE_SUPPRESS_OOF.has(flag))) {
          return `${show("X-Auto-Response-Suppress", value)} with ${show("X-MS-Exchange-Inbox-Rules-Loop", loop)}`
        }
      }
      return undefined
    }
  },

  {
    id: "read-receipt",
    reason: "auto-response",
    source: "RFC 8098 §3 (a message disposition notification is sent automatically; RFC 3834 §2)",
    // A read receipt answers a message an agent already has: as a ticket it is noise, like an
    // out-of-office reply. Only the top-level report counts; a receipt forwarded by a person
    // is ordinary mail.
    test: (headers) => topLevelReport(headers, DISPOSITION_REPORT_TYPES)
  },

  // After the auto-response rows: a null reverse-path is used by every automatic
  // message, not only by bounces (RFC 5321 §4.5.5; RFC 3834 §3.3 and RFC 5230 §5.1
  // ask autoresponders for it too), so it names the reason only when nothing more
  // specific did.
  {
    id: "bounce-null-return-path",
    reason: "bounce",
    source: "RFC 5321 §4.5.5",
    test: (headers) => {
      // RFC 5321 §4.4: the delivering server adds Return-Path at the top; the first one is the envelope sender.
      const returnPath = headers.get("return-path")
      return returnPath !== undefined && stripComments(returnPath).replace(/\s+/g, "") === "<>"
        ? show("Return-Path", returnPath)
        : undefined
    }
  },

  {
    id: "list-id",
    reason: "list-mail",
    source: "RFC 2919 §3",
    optIn: "quarantineListMail",
    test: (headers) => firstPresent(headers, ["List-Id"])
  },
  {
    id: "list-unsubscribe",
    reason: "list-mail",
    source: "RFC 2369 §3.2",
    optIn: "quarantineListMail",
    test: (headers) => firstPresent(headers, ["List-Unsubscribe"])
  },
  {
    id: "precedence-list",
    reason: "list-mail",
    source: "de-facto: Precedence: list (mailing list managers)",
    optIn: "quarantineListMail",
    test: (headers) => firstWithToken(headers, ["Precedence", "X-Precedence"], new Set(["list"]))
  }
]

const normal: Verdict = { _tag: "Normal" }

/** An error's message without trusting it: a hostile object may throw from its own toString. */
const describe = (error: unknown): string => {
  try {
    return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  } catch {
    return "unprintable error"
  }
}

/**
 * Classifies the raw RFC 5322 bytes of a message. Reads the header section and,
 * only for the delivery-status part rule, scans the body; never throws. A
 * failure inside a rule is a bug, reported as a `processing-error` quarantine so
 * the message cannot block its mailbox.
 */
export const classify = (raw: Uint8Array, options: ClassifyOptions): Verdict => {
  try {
    const headers = parseHeaderBlock(raw)
    const body = raw.subarray(headers.bodyOffset)
    for (const rule of rules) {
      if (rule.optIn !== undefined && !options[rule.optIn]) continue
      const detail = rule.test(headers, body)
      if (detail !== undefined) {
        return { _tag: "Quarantine", reason: rule.reason, rule: rule.id, detail: printable(detail, MAX_DETAIL_CHARS) }
      }
    }
    return normal
  } catch (error) {
    return {
      _tag: "Quarantine",
      reason: "processing-error",
      rule: "classify-failed",
      detail: printable(`classification failed: ${describe(error)}`, MAX_DETAIL_CHARS)
    }
  }
}
