/**
 * Issue 8, quick security checks: an untrusted certificate is refused by default, and
 * `tls: "starttls"` against servers (fake, on node:net) that do not offer STARTTLS / STLS is
 * refused without a login command or the password ever crossing the wire.
 */
import { describe, it } from "vitest"
import { starttlsDowngrade, tlsDefault } from "../../bench/torture/security.js"
import { expectPassed, testContext } from "./support.js"

describe("torture: TLS", () => {
  it("Dovecot's self-signed certificate without a caFile is refused (kind tls); with it, accepted", async () => {
    expectPassed(await tlsDefault(testContext(501), { full: false }))
  }, 90_000)

  it("starttls against IMAP and POP3 servers that do not offer it: refused, password never sent", async () => {
    expectPassed(await starttlsDowngrade(testContext(502), { full: false }))
  }, 90_000)
})
