/**
 * A seeded, deterministic generator of malformed and adversarial messages: truncated MIME,
 * missing or wrong boundaries, deep nesting, header floods, unknown charsets, broken
 * encodings, NUL bytes, huge lines and attachments, and header-injection attempts aimed at
 * whatever a quarantine notice might copy from the message (subject, addresses, Message-ID,
 * file names, encoded words that decode to CR LF).
 *
 * `hostileCorpus(rng, n, { heavy })` returns n messages; with `heavy`, the few big ones are in
 * (10 MB line, 20 MB base64 attachment, 100,000 headers, 1,000-deep nesting, one over the
 * size limit); without, smaller versions of them.
 */
import type { Prng } from "./prng.js"

export interface Hostile {
  readonly kind: string
  readonly bytes: Buffer
}

const CRLF = "\r\n"
const QUARANTINE_SUBJECT = "[pcemail quarantine test message]"
export const INJECTED_HEADER = "X-Torture-Injected"
export const INJECTED_ADDRESS = "evil@attacker.test"

const b64 = (text: string | Buffer) => Buffer.from(text).toString("base64")
const join = (lines: ReadonlyArray<string>) => lines.join(CRLF)
const msg = (headers: ReadonlyArray<string>, body: string | Buffer): Buffer =>
  Buffer.concat([Buffer.from(join(headers) + CRLF + CRLF, "latin1"), typeof body === "string" ? Buffer.from(body, "latin1") : body])

const ident = (n: number, kind: string) => [
  `Message-ID: <hostile-${n}-${kind}@torture.test>`,
  `Date: Mon, 01 Jan 2024 00:00:00 +0000`
]

const randomBytes = (rng: Prng, n: number): Buffer => {
  const out = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(rng.next() * 256)
  return out
}

const words = (rng: Prng, n: number) =>
  Array.from({ length: n }, () => rng.pick(["lorem", "ipsum", "dolor", "sit", "amet", "caf\u00e9", "\u65e5\u672c", "na\u00efve", "---", "=3D", "=?", "?="])).join(" ")

/** The injection payloads: each tries to smuggle a header or a recipient. */
const injections = (n: number): Array<string> => {
  const line = `${INJECTED_HEADER}: ${n}`
  const bcc = `Bcc: ${INJECTED_ADDRESS}`
  return [
    `=?utf-8?B?${b64(`hello\r\n${line}\r\n${bcc}`)}?=`,
    `=?utf-8?Q?hello=0D=0A${line.replace(/ /g, "_").replace(/:/g, "=3A")}=0D=0A?=`,
    `=?iso-8859-1?B?${b64(`x\n${line}\n`)}?=`,
    `=?utf-8?B?${b64(`x\r${line}`)}?=`,
    `=?utf-8?B?${b64(`x\u2028${line}\u2029${bcc}`)}?=`,
    `=?utf-8?B?${b64(`x\u0000${line}`)}?=`,
    `x%0D%0A${line}`,
    `x\\r\\n${line}`,
    `=?utf-8?Q?=E2=80=A8${line.replace(/ /g, "_")}?=`
  ]
}

type Gen = (rng: Prng, n: number, heavy: boolean) => Hostile

const multipartBody = (boundary: string, parts: ReadonlyArray<string>, close = true) =>
  [...parts.map((p) => `--${boundary}${CRLF}${p}`), close ? `--${boundary}--${CRLF}` : ""].join(CRLF)

const textPart = (text: string, extra: ReadonlyArray<string> = []) => join(["Content-Type: text/plain; charset=utf-8", ...extra, "", text])

const GENERATORS: Record<string, { readonly weight: number; readonly gen: Gen }> = {
  truncated: {
    weight: 10,
    gen: (rng, n) => {
      const boundary = `b${n}`
      const full = msg([
        ...ident(n, "truncated"), "From: a@b.test", "To: c@d.test", `Subject: truncated ${n}`, "MIME-Version: 1.0",
        `Content-Type: multipart/mixed; boundary="${boundary}"`
      ], multipartBody(boundary, [textPart(words(rng, 50)), join(["Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64", "", b64(randomBytes(rng, 3000)).replace(/.{76}/g, "$&\r\n")])]))
      return { kind: "truncated", bytes: full.subarray(0, rng.int(1, full.length - 1)) }
    }
  },
  "missing-boundary": {
    weight: 6,
    gen: (rng, n) => ({
      kind: "missing-boundary",
      bytes: msg([...ident(n, "nobound"), "From: a@b.test", `Subject: no boundary ${n}`, "MIME-Version: 1.0", rng.pick([
        "Content-Type: multipart/mixed",
        "Content-Type: multipart/mixed; boundary=",
        'Content-Type: multipart/mixed; boundary=""',
        "Content-Type: multipart/alternative; boundary"
      ])], multipartBody("zzz", [textPart(words(rng, 20))]))
    })
  },
  "wrong-boundary": {
    weight: 6,
    gen: (rng, n) => ({
      kind: "wrong-boundary",
      bytes: msg([...ident(n, "wrongbound"), "From: a@b.test", `Subject: wrong boundary ${n}`, "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="declared-${n}"`],
        multipartBody(rng.pick([`used-${n}`, `declared-${n}x`, `declared`, `DECLARED-${n}`]), [textPart(words(rng, 20)), textPart(words(rng, 20))], rng.chance(0.5)))
    })
  },
  nested: {
    weight: 3,
    gen: (rng, n, heavy) => {
      const depth = heavy && n % 50 === 0 ? 1_000 : rng.int(2, heavy ? 300 : 100)
      let body = textPart(`innermost ${n}`)
      let contentType = "text/plain"
      for (let d = 0; d < depth; d++) {
        const boundary = `n${n}d${d}`
        body = join([`Content-Type: multipart/mixed; boundary="${boundary}"`, "", multipartBody(boundary, [body], rng.chance(0.9))])
        contentType = `multipart/mixed; boundary="${boundary}"`
      }
      // The outermost part's own headers become the message's.
      const inner = body.slice(body.indexOf(CRLF + CRLF) + 4)
      return { kind: `nested-${depth >= 1000 ? "1000" : "deep"}`, bytes: msg([...ident(n, "nested"), "From: a@b.test", `Subject: nested ${depth}`, "MIME-Version: 1.0", `Content-Type: ${contentType}`], inner) }
    }
  },
  "nested-rfc822": {
    weight: 2,
    gen: (rng, n) => {
      const depth = rng.int(2, 200)
      let inner = msg(["Subject: innermost"], "x")
      for (let d = 0; d < depth; d++) inner = msg([`Subject: level ${d}`, "Content-Type: message/rfc822"], inner)
      return { kind: "nested-rfc822", bytes: msg([...ident(n, "rfc822"), "From: a@b.test", "MIME-Version: 1.0", "Content-Type: message/rfc822"], inner) }
    }
  },
  "many-headers": {
    weight: 3,
    gen: (rng, n, heavy) => {
      const count = heavy && n % 40 === 0 ? 100_000 : rng.int(500, heavy ? 20_000 : 5_000)
      const headers = Array.from({ length: count }, (_, i) => `X-Flood-${i % 7}: ${i}`)
      return { kind: count >= 100_000 ? "headers-100k" : "many-headers", bytes: msg([...ident(n, "flood"), "From: a@b.test", `Subject: ${count} headers`, ...headers], "body") }
    }
  },
  "long-header": {
    weight: 2,
    gen: (rng, n) => ({
      kind: "long-header",
      bytes: msg([...ident(n, "longhdr"), "From: a@b.test", `Subject: ${"folded ".repeat(rng.int(1_000, 30_000)).replace(/(.{70})/g, "$1\r\n ")}`], "body")
    })
  },
  "unknown-charset": {
    weight: 8,
    gen: (rng, n) => {
      const charset = rng.pick([`x-unknown-${n}`, "utf-7", "iso-2022-jp", "utf-16", "x-mac-klingon", '"', "utf-8''", "\u00e9", "ebcdic-cp-us", "gb18030"])
      return {
        kind: "unknown-charset",
        bytes: msg([...ident(n, "charset"), "From: a@b.test", `Subject: =?${charset}?B?${b64(randomBytes(rng, 20))}?=`, "MIME-Version: 1.0", `Content-Type: text/plain; charset=${charset}`, "Content-Transfer-Encoding: 8bit"], randomBytes(rng, rng.int(10, 2_000)))
      }
    }
  },
  "broken-encoding": {
    weight: 10,
    gen: (rng, n) => {
      const variant = rng.int(0, 5)
      const bodies: Array<[string, string]> = [
        ["base64", "!!!!not base64 at all!!!!\r\n====\r\nQUJD=RA==\r\n" + b64(randomBytes(rng, 200)).slice(3)],
        ["quoted-printable", "=ZZ=\r\n=0=1=\r\nsoft break at end="],
        ["x-uuencode", "begin 644 x\r\n#86)C\r\nend"],
        ["bogus-encoding", words(rng, 30)],
        ["base64", "=".repeat(5_000)],
        ["7bit", randomBytes(rng, 500).toString("latin1")]
      ]
      const [cte, body] = bodies[variant]!
      return {
        kind: "broken-encoding",
        bytes: msg([...ident(n, "enc"), "From: =?utf-8?B?####?= <a@b.test>", `Subject: =?utf-8?Q?broken=ZZ=?= =?utf-8?B?${"%%%"}?= =?utf-8?X?what?=`, "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", `Content-Transfer-Encoding: ${cte}`], body)
      }
    }
  },
  nul: {
    weight: 6,
    gen: (rng, n) => ({
      kind: "nul",
      bytes: Buffer.concat([
        Buffer.from(`Message-ID: <hostile-${n}-nul@torture.test>\r\nFrom: a\u0000b@c.test\r\nSubject: nul\u0000byte ${n}\r\n`, "latin1"),
        Buffer.from(`X-Nul: \u0000\u0000\r\nContent-Type: multipart/mixed; boundary="a\u0000b"\r\n\r\n--a\u0000b\r\n\r\n`, "latin1"),
        randomBytes(rng, 100).fill(0, 0, 50),
        Buffer.from("\r\n--a\u0000b--\r\n", "latin1")
      ])
    })
  },
  "long-line": {
    weight: 1,
    gen: (rng, n, heavy) => {
      const size = heavy && n % 100 === 1 ? 10 * 1024 * 1024 : rng.int(10_000, heavy ? 1024 * 1024 : 200_000)
      return { kind: size >= 10 * 1024 * 1024 ? "line-10MB" : "long-line", bytes: msg([...ident(n, "longline"), "From: a@b.test", "Subject: long line"], Buffer.alloc(size, 0x61 + (n % 26))) }
    }
  },
  attachment: {
    weight: 1,
    gen: (rng, n, heavy) => {
      const size = heavy && n % 100 === 2 ? 15 * 1024 * 1024 : rng.int(100_000, heavy ? 2 * 1024 * 1024 : 300_000)
      const boundary = `att${n}`
      return {
        kind: size >= 15 * 1024 * 1024 ? "base64-20MB" : "attachment",
        bytes: msg([...ident(n, "att"), "From: a@b.test", "Subject: attachment", "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="${boundary}"`],
          multipartBody(boundary, [textPart("see attachment"), join([`Content-Type: application/octet-stream; name="${"../".repeat(20)}etc/passwd\r\n${INJECTED_HEADER}: file"`, "Content-Transfer-Encoding: base64", `Content-Disposition: attachment; filename*0*=utf-8''%0D%0A${INJECTED_HEADER}; filename*1="x.bin"`, "", b64(randomBytes(rng, size)).replace(/.{76}/g, "$&\r\n")])]))
      }
    }
  },
  injection: {
    weight: 14,
    gen: (rng, n) => {
      const payload = rng.pick(injections(n))
      // Quarantined (test subject, auto-reply or bounce) so the payloads reach the notice composer.
      const why = rng.int(0, 2)
      const headers = [
        ...ident(n, "inject").map((h) => (rng.chance(0.2) ? h.replace(">", `${payload}>`) : h)),
        `From: "${payload}" <${rng.chance(0.5) ? "a@b.test" : `a@b.test\r\n${INJECTED_HEADER}: from`}>`,
        `To: ${payload} <c@d.test>, =?utf-8?B?${b64(`x@y.test\r\nBcc: ${INJECTED_ADDRESS}`)}?=`,
        `Reply-To: ${payload}`,
        `Subject: ${why === 0 ? QUARANTINE_SUBJECT : "Re:"} ${payload}`,
        ...(why === 1 ? [`Auto-Submitted: auto-replied ${payload}`] : []),
        ...(why === 2 ? [`Content-Type: multipart/report; report-type=delivery-status; boundary="r${n}"`] : ["Content-Type: text/plain; charset=utf-8"]),
        "MIME-Version: 1.0"
      ]
      const body = why === 2
        ? multipartBody(`r${n}`, [textPart(`bounce ${payload}`), join(["Content-Type: message/delivery-status", "", `Final-Recipient: rfc822; ${payload}`, "Action: failed", "Status: 5.0.0"])])
        : `body ${payload}\r\n`
      return { kind: "injection", bytes: msg(headers, body) }
    }
  },
  garbage: {
    weight: 4,
    gen: (rng) => ({ kind: "garbage", bytes: randomBytes(rng, rng.int(0, 4_000)) })
  },
  "odd-headers": {
    weight: 6,
    gen: (rng, n) => ({
      kind: "odd-headers",
      bytes: msg([
        ...ident(n, "odd"),
        rng.pick(["no colon here", ": empty name", "X-\u00e9\u00e8: eight-bit name", " leading continuation", "Subject:", "From:", "From: <<<@@@>>>", `To: ${Array.from({ length: rng.int(100, 3_000) }, (_, i) => `r${i}@x.test`).join(", ")}`, "Date: not a date at all", "Date: Mon, 99 Foo 99999 99:99:99 +9999", "Message-ID:", "Message-ID: <>", "Message-ID: <a@b> <c@d>"]),
        "Subject: odd headers"
      ], rng.pick(["\r\n", "\n", "\r", "body\rwith\rbare\rCR", "body\nwith\nbare\nLF", ""]))
    })
  },
  "mixed-line-endings": {
    weight: 4,
    gen: (rng, n) => ({
      kind: "mixed-line-endings",
      bytes: Buffer.from(`Message-ID: <hostile-${n}-eol@torture.test>\nFrom: a@b.test\r\nSubject: eol\r\r\n\n${words(rng, 40).replace(/ /g, () => rng.pick([" ", "\r", "\n", "\r\n", "\n\r"]))}`, "utf8")
    })
  },
  "wide-multipart": {
    weight: 1,
    gen: (rng, n, heavy) => {
      const parts = rng.int(100, heavy ? 5_000 : 1_000)
      const boundary = `w${n}`
      return { kind: "wide-multipart", bytes: msg([...ident(n, "wide"), "From: a@b.test", "Subject: wide", "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="${boundary}"`], multipartBody(boundary, Array.from({ length: parts }, (_, i) => textPart(`part ${i}`, [`Content-Disposition: attachment; filename="p${i}.txt"`])))) }
    }
  },
  "rfc2231": {
    weight: 3,
    gen: (rng, n) => ({
      kind: "rfc2231",
      bytes: msg([...ident(n, "2231"), "From: a@b.test", "Subject: params", "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary*0="a"; boundary*999="b"; boundary*1*=x-bogus''%ZZ`], join([
        `Content-Type: application/x; name*0*=utf-8'en'%0D%0A; name*2="x"; name*99999999999="y"`,
        `Content-Disposition: attachment; filename*=${"%41".repeat(rng.int(10, 5_000))}`,
        "", "data"
      ]))
    })
  }
}

const KINDS = Object.keys(GENERATORS)
const TOTAL_WEIGHT = KINDS.reduce((sum, kind) => sum + GENERATORS[kind]!.weight, 0)

const pickKind = (rng: Prng): string => {
  let roll = rng.next() * TOTAL_WEIGHT
  for (const kind of KINDS) {
    roll -= GENERATORS[kind]!.weight
    if (roll < 0) return kind
  }
  return KINDS[KINDS.length - 1]!
}

export interface HostileOptions {
  /** The big ones: 10 MB line, 15 MB of base64, 100,000 headers, 1,000-deep nesting, one over the limit. */
  readonly heavy: boolean
  /** A message over the size limit is added when this is set (bytes of the limit). */
  readonly overLimit?: number
}

export const hostileCorpus = (rng: Prng, n: number, options: HostileOptions): Array<Hostile> => {
  const out: Array<Hostile> = []
  // The extremes first, at fixed positions, so that even a short run has them.
  const fixed: Array<Gen> = [
    (r, i) => GENERATORS.nested!.gen(r, options.heavy ? 0 : i, options.heavy),
    (r, i) => GENERATORS["many-headers"]!.gen(r, options.heavy ? 40 : i, options.heavy),
    (r, i) => GENERATORS["long-line"]!.gen(r, options.heavy ? 101 : i, options.heavy),
    (r, i) => GENERATORS.attachment!.gen(r, options.heavy ? 102 : i, options.heavy)
  ]
  for (const gen of fixed) out.push(gen(rng, out.length, options.heavy))
  if (options.overLimit !== undefined) {
    out.push({ kind: "over-limit", bytes: msg([...ident(out.length, "big"), "From: a@b.test", `Subject: ${QUARANTINE_SUBJECT} too big`], Buffer.alloc(options.overLimit + 1024, 0x62)) })
  }
  while (out.length < n) {
    const i = out.length
    // A few exact duplicates of earlier (small) messages.
    if (rng.chance(0.01)) {
      const earlier = out[rng.int(0, out.length - 1)]!
      if (earlier.bytes.length < 100_000) {
        out.push({ kind: `duplicate-of-${earlier.kind}`, bytes: earlier.bytes })
        continue
      }
    }
    const kind = pickKind(rng)
    // The heavy variants only at their fixed slots: elsewhere every generator stays light.
    out.push(GENERATORS[kind]!.gen(rng, i, false))
  }
  return out
}
