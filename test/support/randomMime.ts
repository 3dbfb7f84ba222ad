/**
 * Random MIME messages built to sit on the edges of what a parser takes apart: boundary
 * look-alikes, missing delimiters, odd dispositions, padding in the middle of base64, charsets,
 * format=flowed, embedded messages, HTML outside alternatives, LF-only lines. Deterministic for
 * a seed (test/torture/lib/prng.ts).
 */
import { prng, type Prng } from "../torture/lib/prng.js"

export { prng }

const pick = <A>(r: Prng, items: ReadonlyArray<A>): A => items[r.int(0, items.length - 1)]!

const WORDS = ["support", "ticket", "Grüße", "café", "naïve", "hello", "=?not-a-word?=", "--", "a=b", "ünïcödé", "x", "\t", " "]
const text = (r: Prng, lines: number) =>
  Array.from({ length: lines }, () => Array.from({ length: r.int(0, 12) }, () => pick(r, WORDS)).join(" ")).join("\n")

const base64Lines = (bytes: Buffer, r: Prng) => {
  const encoded = bytes.toString("base64")
  const width = pick(r, [76, 64, 72, 4, 1000, 10, 57])
  const lines = encoded.match(new RegExp(`.{1,${width}}`, "g")) ?? [""]
  switch (r.int(0, 9)) {
    case 0: // padding in the middle: every line padded on its own
      return lines.map((line) => Buffer.from(line, "base64").toString("base64")).join("\n")
    case 1: // junk characters between the lines
      return lines.join("\n!*\n")
    case 2: // spaces at line ends
      return lines.join("  \n")
    default:
      return lines.join("\n")
  }
}

const qp = (value: string) =>
  Buffer.from(value, "utf8").toString("latin1").replace(/[=\u0080-\u00ff]/g, (c) => `=${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`)
    .replace(/(.{60})/g, "$1=\n")

interface Leaf {
  readonly headers: Array<string>
  readonly body: string
}

const leaf = (r: Prng): Leaf => {
  const kind = r.int(0, 9)
  const disposition = pick(r, ["", "", "", "Content-Disposition: inline", "Content-Disposition: attachment", "Content-Disposition: attachment; filename=\"report.pdf\"", "Content-Disposition: weird", "Content-Disposition: inline; filename=note.txt", "Content-Disposition: attachment; filename*=utf-8''na%C3%AFve.txt"])
  const words = text(r, r.int(0, 30))
  if (kind <= 4) {
    const charset = pick(r, ["", "; charset=utf-8", "; charset=\"us-ascii\"", "; charset=iso-8859-1", "; charset=windows-1252", "; charset=koi8-r", "; charset=utf-8; format=flowed", "; charset=UTF-8; format=flowed; delsp=yes", "; charset=bogus-charset"])
    const encoding = pick(r, ["", "7bit", "8bit", "quoted-printable", "base64", "binary", "x-unknown"])
    const raw = charset.includes("8859") || charset.includes("1252") ? Buffer.from(words, "latin1") : Buffer.from(words, "utf8")
    const body = encoding === "base64" ? base64Lines(raw, r) : encoding === "quoted-printable" ? qp(words) : raw.toString("latin1")
    return {
      headers: [
        r.chance(0.9) ? `Content-Type: text/plain${charset}` : "",
        encoding === "" ? "" : `Content-Transfer-Encoding: ${encoding}`,
        disposition
      ].filter(Boolean),
      body
    }
  }
  if (kind <= 6) {
    const html = `<html><body><p>${words.replace(/\n/g, "<br>")}</p></body></html>`
    const encoding = pick(r, ["", "quoted-printable", "base64"])
    return {
      headers: ["Content-Type: text/html; charset=utf-8", encoding === "" ? "" : `Content-Transfer-Encoding: ${encoding}`, disposition].filter(Boolean),
      body: encoding === "base64" ? base64Lines(Buffer.from(html), r) : encoding === "quoted-printable" ? qp(html) : html
    }
  }
  const bytes = Buffer.from(Array.from({ length: r.int(0, 3000) }, () => r.int(0, 255)))
  const type = pick(r, ["application/pdf; name=\"a.pdf\"", "image/png", "application/octet-stream; name=\"photo.jpg\"", "application/octet-stream", "message/delivery-status", "message/rfc822", "text/calendar", "", "application/zip; name==?utf-8?B?w6l0w6kuemlw?="])
  const encoding = pick(r, ["base64", "base64", "quoted-printable", "7bit", ""])
  return {
    headers: [type === "" ? "Content-Type:" : `Content-Type: ${type}`, encoding === "" ? "" : `Content-Transfer-Encoding: ${encoding}`, disposition].filter(Boolean),
    body: encoding === "base64" ? base64Lines(bytes, r) : encoding === "quoted-printable" ? qp(bytes.toString("latin1")) : text(r, 3)
  }
}

/** A multipart (or, at depth, a leaf) as lines; with the odd broken delimiter now and then. */
const part = (r: Prng, depth: number): Leaf => {
  if (depth >= 3 || r.chance(0.45)) return leaf(r)
  const boundary = pick(r, ["b1", "----=_Part_12_34", "x", "==boundary==", "b1 (comment)", "b\u00e9"]) + depth
  const subtype = pick(r, ["mixed", "alternative", "related", "mixed"])
  const children = Array.from({ length: r.int(0, 4) }, () => part(r, depth + 1))
  const lines: Array<string> = []
  if (r.chance(0.3)) lines.push("This is a multi-part message in MIME format.", `--${boundary}-not-a-delimiter`)
  for (const child of children) {
    lines.push(r.chance(0.05) ? `--${boundary}   ` : `--${boundary}`)
    if (r.chance(0.03)) lines.push(`--${boundary}`)
    lines.push(...child.headers, "", child.body)
    if (r.chance(0.1)) lines.push("", "")
  }
  if (!r.chance(0.08)) lines.push(`--${boundary}--`)
  if (r.chance(0.3)) lines.push("epilogue", `--${boundary}`)
  const quoted = r.chance(0.5) ? `"${boundary}"` : boundary
  return { headers: [`Content-Type: multipart/${subtype}; boundary=${quoted}`], body: lines.join("\n") }
}

const FROMS = ["Ann <ann@example.test>", "\"Example, Bob\" <bob@example.test>", "=?UTF-8?B?w6l0w6k=?= <ete@example.test>", "undisclosed-recipients:;", "carl@xn--bcher-kva.example", "<broken", ""]

/** Message number `i` drawn from `r`. */
export const randomMessage = (r: Prng, i: number): Buffer => {
  const body = part(r, 0)
  const headers = [
    `From: ${pick(r, FROMS)}`,
    `To: ${pick(r, FROMS)}`,
    r.chance(0.3) ? `To: Team: dora@example.test, eve@example.test;` : "",
    r.chance(0.5) ? `Cc: ${pick(r, FROMS)}` : "",
    `Subject: ${pick(r, ["Plain", "=?UTF-8?Q?caf=C3=A9?= order", "=?ISO-8859-1?B?Y2Fm6Q==?=", "Re: [#1234]\n  folded subject", ""])} ${i}`,
    r.chance(0.8) ? `Date: ${pick(r, ["Tue, 1 Apr 2025 10:00:00 +0000", "yesterday", "Mon, 31 Mar 2025 23:59:59 -0800 (PST)"])}` : "",
    r.chance(0.9) ? `Message-ID: <random-${i}@example.test>` : "",
    "MIME-Version: 1.0",
    ...body.headers
  ].filter(Boolean)
  const joined = [...headers, "", body.body, ""].join("\n")
  return Buffer.from(r.chance(0.8) ? joined.replace(/\n/g, "\r\n") : joined, "latin1")
}
