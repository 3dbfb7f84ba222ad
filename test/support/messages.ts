/**
 * Deterministic test messages: the same arguments always give the same bytes,
 * so tests can compare what a server returns with what was seeded.
 *
 * Every message has From, To, Subject, Date, MIME-Version and a unique
 * Message-ID `<test-${kind}-${i}@example.test>`. Line endings are CRLF unless
 * a generator says otherwise.
 */

export type MessageKind = "plain" | "multipart" | "latin1" | "eightbit" | "barelf" | "large" | "dots";

export interface PlainMessageOptions {
  readonly subject?: string;
  /** Body text (lines joined with CRLF). Default: a short deterministic text. */
  readonly body?: string;
  readonly from?: string;
  readonly to?: string;
  /** Extra header fields, appended after the standard ones. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Pads the body with deterministic text lines until it is at least this many bytes. */
  readonly bodyBytes?: number;
}

const CRLF = "\r\n";
const DEFAULT_FROM = "Sender <sender@example.test>";
const DEFAULT_TO = "test@example.test";
/** 2024-01-01T00:00:00Z; message i is dated i minutes later. */
const BASE_DATE_MS = Date.UTC(2024, 0, 1);

export const messageId = (kind: MessageKind, i: number): string => `<test-${kind}-${i}@example.test>`;

/** RFC 5322 date, e.g. "Mon, 01 Jan 2024 00:01:00 +0000". */
function rfc5322Date(i: number): string {
  return new Date(BASE_DATE_MS + i * 60_000).toUTCString().replace(/GMT$/, "+0000");
}

interface HeaderParams {
  readonly kind: MessageKind;
  readonly i: number;
  readonly subject: string;
  readonly from?: string;
  readonly to?: string;
  readonly extra?: Readonly<Record<string, string>>;
}

/** The header block (without the empty separator line), as lines. */
function headerLines(p: HeaderParams): Array<string> {
  const lines = [
    `From: ${p.from ?? DEFAULT_FROM}`,
    `To: ${p.to ?? DEFAULT_TO}`,
    `Subject: ${p.subject}`,
    `Date: ${rfc5322Date(p.i)}`,
    `Message-ID: ${messageId(p.kind, p.i)}`,
    "MIME-Version: 1.0",
  ];
  for (const [name, value] of Object.entries(p.extra ?? {})) lines.push(`${name}: ${value}`);
  return lines;
}

/** Joins header lines, a blank line and body lines with CRLF; the message ends with CRLF. */
function crlfMessage(headers: ReadonlyArray<string>, bodyLines: ReadonlyArray<string>): Buffer {
  return Buffer.from([...headers, "", ...bodyLines].join(CRLF) + CRLF, "utf8");
}

/**
 * Deterministic pseudo-random bytes (mulberry32), fast enough for 10 MB.
 * Not crypto: only needs to be incompressible-looking and reproducible.
 */
export function pseudoRandomBytes(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let state = (seed ^ 0x9e3779b9) >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  let offset = 0;
  for (; offset + 4 <= length; offset += 4) out.writeUInt32LE(next(), offset);
  if (offset < length) {
    const last = next();
    for (let k = 0; offset < length; k++, offset++) out[offset] = (last >>> (8 * k)) & 0xff;
  }
  return out;
}

/** Base64 in 76-character lines (RFC 2045), as lines without terminators. */
function base64Lines(data: Uint8Array): Array<string> {
  const b64 = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
  const lines: Array<string> = [];
  for (let k = 0; k < b64.length; k += 76) lines.push(b64.slice(k, k + 76));
  return lines;
}

/** Deterministic filler text lines totalling at least `bytes` bytes (with CRLFs). */
function fillerLines(i: number, bytes: number): Array<string> {
  const lines: Array<string> = [];
  let size = 0;
  for (let n = 0; size < bytes; n++) {
    const line = `Line ${n} of message ${i}: the quick brown fox jumps over the lazy dog.`;
    lines.push(line);
    size += line.length + 2;
  }
  return lines;
}

/** A 7-bit text/plain message. */
export function plainMessage(i: number, opts: PlainMessageOptions = {}): Buffer {
  const body = (opts.body ?? `Hello, this is plain test message number ${i}.${CRLF}Regards,${CRLF}The test suite`).split(/\r?\n/);
  if (opts.bodyBytes !== undefined) {
    const size = body.reduce((n, l) => n + l.length + 2, 0);
    body.push(...fillerLines(i, opts.bodyBytes - size));
  }
  return crlfMessage(
    headerLines({
      kind: "plain",
      i,
      subject: opts.subject ?? `Plain message ${i}`,
      ...(opts.from !== undefined ? { from: opts.from } : {}),
      ...(opts.to !== undefined ? { to: opts.to } : {}),
      extra: { "Content-Type": "text/plain; charset=us-ascii", "Content-Transfer-Encoding": "7bit", ...opts.headers },
    }),
    body,
  );
}

function multipart(kind: MessageKind, i: number, subject: string, attachment: Buffer, filename: string): Buffer {
  const boundary = `=_boundary_${kind}_${i}`;
  return crlfMessage(
    headerLines({ kind, i, subject, extra: { "Content-Type": `multipart/mixed; boundary="${boundary}"` } }),
    [
      "This is a multi-part message in MIME format.",
      `--${boundary}`,
      "Content-Type: text/plain; charset=us-ascii",
      "Content-Transfer-Encoding: 7bit",
      "",
      `Message ${i} carries an attachment of ${attachment.length} bytes.`,
      `--${boundary}`,
      `Content-Type: application/octet-stream; name="${filename}"`,
      "Content-Transfer-Encoding: base64",
      `Content-Disposition: attachment; filename="${filename}"`,
      "",
      ...base64Lines(attachment),
      `--${boundary}--`,
    ],
  );
}

/** multipart/mixed: a text part plus a base64 attachment of `attachmentBytes` pseudo-random bytes. */
export function multipartWithAttachment(i: number, attachmentBytes: number): Buffer {
  return multipart("multipart", i, `Multipart message ${i} with attachment`, pseudoRandomBytes(i, attachmentBytes), `data-${i}.bin`);
}

/**
 * A large multipart message whose base64 attachment alone is at least `bytes`
 * bytes long (the whole message is a few hundred bytes more). Default 10 MiB.
 */
export function largeMessage(i: number, bytes: number = 10 * 1024 * 1024): Buffer {
  // Base64 turns each 57 raw bytes into one 76-character line + CRLF = 78 bytes.
  const raw = Math.ceil(bytes / 78) * 57;
  return multipart("large", i, `Large message ${i}`, pseudoRandomBytes(0x1a46e + i, raw), `large-${i}.bin`);
}

/** text/plain in ISO-8859-1 with an 8-bit body (bytes such as 0xE9 'é'). */
export function latin1Message(i: number): Buffer {
  const headers = headerLines({
    kind: "latin1",
    i,
    subject: `Latin-1 message ${i}`,
    extra: { "Content-Type": "text/plain; charset=iso-8859-1", "Content-Transfer-Encoding": "8bit" },
  });
  const body = [`Caf\u00e9 cr\u00e8me \u00e0 la fran\u00e7aise, message ${i}.`, "Gr\u00fc\u00dfe aus K\u00f6ln, \u00a310 \u00bd price."];
  return Buffer.concat([Buffer.from(headers.join(CRLF) + CRLF + CRLF, "ascii"), Buffer.from(body.join(CRLF) + CRLF, "latin1")]);
}

/** UTF-8 8-bit body with no Content-Transfer-Encoding header at all (common in the wild). */
export function eightBitNoEncoding(i: number): Buffer {
  return crlfMessage(
    headerLines({ kind: "eightbit", i, subject: `8-bit message ${i}`, extra: { "Content-Type": "text/plain; charset=utf-8" } }),
    [`Gr\u00fc\u00dfe, na\u00efve caf\u00e9 \u2014 \u65e5\u672c\u8a9e \u2713 (message ${i})`, "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!"],
  );
}

/**
 * A message with LF-only line endings, as some MTAs and scripts write them.
 * Note: IMAP servers (Dovecot included) serve it with CRLF line endings.
 */
export function bareLfMessage(i: number): Buffer {
  const headers = headerLines({
    kind: "barelf",
    i,
    subject: `Bare LF message ${i}`,
    extra: { "Content-Type": "text/plain; charset=us-ascii" },
  });
  return Buffer.from([...headers, "", `This message ${i} uses bare LF line endings.`, "Second line."].join("\n") + "\n", "ascii");
}

/**
 * Body lines that start with "." and "..", and a line that is only "."
 * (the POP3/SMTP end-of-data marker), to catch broken dot-stuffing.
 */
export function dotLinesMessage(i: number): Buffer {
  return crlfMessage(
    headerLines({
      kind: "dots",
      i,
      subject: `Dot lines message ${i}`,
      extra: { "Content-Type": "text/plain; charset=us-ascii", "Content-Transfer-Encoding": "7bit" },
    }),
    [`Message ${i} has lines starting with dots:`, ".leading dot", "..two leading dots", ".", "..", "after the lone dot", "."],
  );
}

/** Index in `mixedMessages` of its one large message (when n >= 200). */
export const MIXED_LARGE_INDEX = 100;

/**
 * `n` small messages cycling over the kinds (plain, multipart, latin1,
 * eightbit, barelf, dots) with message number = index. When n >= 200, the
 * message at MIXED_LARGE_INDEX is instead a 10 MiB `largeMessage`.
 */
export function mixedMessages(n: number): Array<Buffer> {
  const small: ReadonlyArray<(i: number) => Buffer> = [
    (i) => plainMessage(i),
    (i) => multipartWithAttachment(i, 1024 + ((i * 37) % 4096)),
    latin1Message,
    eightBitNoEncoding,
    bareLfMessage,
    dotLinesMessage,
  ];
  const out: Array<Buffer> = [];
  for (let i = 0; i < n; i++) {
    out.push(n >= 200 && i === MIXED_LARGE_INDEX ? largeMessage(i) : small[i % small.length]!(i));
  }
  return out;
}
