/**
 * Scenario 2, network faults: a fault-injecting proxy (test/torture/lib/chaosProxy.ts) between
 * the daemon and Dovecot (plain IMAP or POP3, so that the proxy sees the commands) and another
 * between the daemon and the SMTP quarantine destination. Each case injects its fault a bounded
 * number of times (seeded), then heals; the daemon must time out, reconnect with its backoff,
 * and drain the mailbox with nothing lost and nothing duplicated.
 */
import { startDovecot, type Dovecot } from "../../test/support/dovecot.js"
import { largeMessage, plainMessage } from "../../test/support/messages.js"
import { startSmtpServer, type SmtpServerHandle } from "../../test/support/smtpServer.js"
import { startChaosProxy, type ChaosProxy } from "../../test/torture/lib/chaosProxy.js"
import { sleep, type TortureContext } from "../../test/torture/lib/context.js"
import { Daemons } from "../../test/torture/lib/daemon.js"
import { expectedSet, type Protocol } from "../../test/torture/lib/expected.js"
import { closeReaders, countByType, type Ledger, terminalCount } from "../../test/torture/lib/ledger.js"
import { type Prng, prng } from "../../test/torture/lib/prng.js"
import { Recorder, type ScenarioResult } from "../../test/torture/lib/report.js"
import { fullLedger, imapBox, noticeAccounting, registerArtifacts, waitDrained, writeTortureConfig } from "../../test/torture/lib/scenario.js"
import { killLoopCorpus } from "./killLoop.js"

export type NetCaseName = "cut-mid-command" | "cut-mid-literal" | "cut-mid-data" | "latency" | "black-hole" | "pop3-cuts"

export interface NetworkOptions {
  readonly cases: ReadonlyArray<NetCaseName>
  /** Messages per case (the big-message case uses a tenth of it, min 8). */
  readonly messages: number
  /** How many faults each case injects before it heals. */
  readonly faults: number
  readonly timeLimitMs: number
}

interface Shared {
  readonly ctx: TortureContext
  readonly dovecot: Dovecot
  readonly smtp: SmtpServerHandle
  readonly options: NetworkOptions
}

interface CaseRun {
  readonly rec: Recorder
  readonly rng: Prng
  readonly imap: ChaosProxy
  readonly smtpProxy: ChaosProxy
  readonly daemons: Daemons
  readonly database: string
  /** The latest counts of events, refreshed every tick. */
  counts: () => Map<string, number>
  /** Seeds the case's late messages (once). */
  seedLate: () => void
  /** What the mailbox still holds on the server. */
  server: () => Promise<Array<Buffer>>
}

interface BlackHoleState {
  phase?: number
  at?: number
  failuresAt?: number
  removedAt?: number
  greetSilenceMs?: number | undefined
  removedDuringSmtpOutage?: number
  smtpOutageMs?: number
  freezeFailures?: number
}

const TIMEOUTS = { connectTimeoutSeconds: 3, commandTimeoutSeconds: 3 }

/** Runs one case: set-up, the daemon, the case's fault schedule, the drain, the books. */
const runCase = async (
  shared: Shared,
  label: string,
  spec: {
    readonly protocol: Protocol
    readonly corpus: (rng: Prng) => Array<Buffer>
    /** Arms the fault before the daemon starts. */
    readonly arm: (run: CaseRun) => void
    /** Called every 250 ms while draining: phase changes. */
    readonly tick?: (run: CaseRun, elapsedMs: number) => void | Promise<void>
    readonly verify: (run: CaseRun, l: Ledger, stderr: string) => void
    readonly mailbox?: Record<string, unknown>
    /** Messages seeded while the case runs (by its tick, through seedLate). */
    readonly late?: (rng: Prng) => Array<Buffer>
  }
): Promise<ScenarioResult> => {
  const { ctx, dovecot, smtp } = shared
  const rng = prng(ctx.seed).fork(`net-${label}`)
  const rec = new Recorder(`net: ${label}`, rng.seed, ctx.log)
  // Dovecot lower-cases user names (auth_username_format %Lu).
  const user = `${label.toLowerCase().replace(/[^a-z0-9]/g, "")}@example.test`
  const password = ctx.secret(`net-${label}`, user)
  await dovecot.addUser(user, password)
  const corpus = spec.corpus(rng)
  const late = spec.late?.(rng) ?? []
  await dovecot.seed(user, corpus)
  const expected = expectedSet([...corpus, ...late], spec.protocol)
  const imap = await startChaosProxy({ host: dovecot.host, port: spec.protocol === "imap" ? dovecot.imapPort : dovecot.pop3Port })
  const smtpProxy = await startChaosProxy({ host: smtp.host, port: smtp.port })
  const dir = ctx.dir(`net-${label}`)
  const daemons = new Daemons(ctx.bin, dir)
  const box = { id: `net-${label.replace(/[^a-z0-9-]/gi, "")}`, user }
  const receivedBefore = smtp.received.length
  try {
    const { config, database } = writeTortureConfig(ctx, dir, {
      integrationType: spec.protocol === "imap" ? "IMAP" : "POP3",
      mailboxes: [imapBox({ host: "127.0.0.1", port: imap.port }, box.id, user, password, { ...TIMEOUTS, ...spec.mailbox })],
      quarantine: {
        type: "SMTP",
        mailbox: `quarantine-${box.id}@example.test`,
        smtp: { host: "127.0.0.1", port: smtpProxy.port, ssl: false, user: "", password: "", sender: "mailintake@example.test" }
      }
    })
    let counts = new Map<string, number>()
    let seeding: Promise<void> | undefined
    const run: CaseRun = {
      rec, rng, imap, smtpProxy, daemons, database,
      counts: () => counts,
      seedLate: () => {
        seeding ??= dovecot.seed(user, late)
      },
      server: () => dovecot.list(user)
    }
    spec.arm(run)
    const daemon = daemons.start(["run", "--config", config], { label: "run" })
    const started = Date.now()
    let stopTicking = false
    const ticker = (async () => {
      while (!stopTicking) {
        counts = countByType(database)
        await spec.tick?.(run, Date.now() - started)
        await sleep(250)
      }
    })()
    const ok = await waitDrained({ dovecot, boxes: [box], database, expected, timeoutMs: shared.options.timeLimitMs, abort: () => !daemon.running })
    stopTicking = true
    await ticker
    await seeding
    if (!daemon.running) rec.note("the daemon exited during the drain")
    else if (!ok) rec.hang(`draining (limit ${shared.options.timeLimitMs / 1000} s, or 150 s without progress)`)
    // Let the in-flight quarantine retries land before the books are closed.
    const stopped = await daemon.stop()
    if (!stopped.inTime) rec.hang("stopping on SIGTERM")
    const l = await fullLedger(dovecot, [box], database, expected, true)
    const notices = noticeAccounting(smtp.received.slice(receivedBefore), l)
    rec.check("INBOX empty", l.stillOnServer === 0, `${l.stillOnServer} left`)
    rec.check("retrieved bytes are the seeded ones", l.unknown === 0 && l.blobMismatches === 0, `${l.unknown} unknown, ${l.blobMismatches} bad blobs`)
    rec.check("every quarantined message reached the SMTP server", notices.missing === 0, `${notices.notices} notices, ${notices.missing} missing`)
    rec.check("no notice arrived truncated", notices.truncated === 0, `${notices.truncated} truncated`)
    if (notices.resent > 0) rec.note(`${notices.resent} notice(s) re-sent (same Message-ID): the SMTP server had the whole message but its 250 was lost`)
    spec.verify(run, l, daemons.allStderr())
    rec.note(`proxy: IMAP/POP3 ${JSON.stringify(imap.stats)}, SMTP ${JSON.stringify(smtpProxy.stats)}; ${l.connectionFailures.length} MailboxConnectionFailed, ${l.quarantineFailedEvents} QuarantineFailed, ${terminalCount(countByType(database))} terminal events`)
    registerArtifacts(ctx, daemons)
    return rec.finish(l, [daemons])
  } finally {
    await daemons.killAll()
    await imap.close()
    await smtpProxy.close()
  }
}

/** Failure kinds (the part before the first ':' of MailboxConnectionFailed.error). */
const failureKinds = (l: Ledger): Record<string, number> => {
  const kinds: Record<string, number> = {}
  for (const failure of l.connectionFailures) {
    const kind = /^(\w+):/.exec(failure.error)?.[1] ?? "?"
    kinds[kind] = (kinds[kind] ?? 0) + 1
  }
  return kinds
}

const quarantineHeavyCorpus = (rng: Prng, n: number, bodyBytes: number): Array<Buffer> =>
  Array.from({ length: n }, (_, i) =>
    i % 3 === 0
      ? plainMessage(300_000 + i, { subject: `[pcemail quarantine test message] net ${i}`, bodyBytes: rng.int(bodyBytes / 2, bodyBytes) })
      : plainMessage(300_000 + i, { bodyBytes: rng.int(500, 5_000) }))

/** Commands after login (ID and CAPABILITY come before it). */
const isImapCommand = (text: string): boolean => /^\S+ (UID |NOOP|FETCH|SELECT|EXAMINE|STATUS|LOGOUT|ENABLE)/i.test(text)

const cases: Record<NetCaseName, (shared: Shared) => Promise<ScenarioResult>> = {
  "cut-mid-command": (shared) =>
    runCase(shared, "cut mid-command (IMAP)", {
      protocol: "imap",
      corpus: (rng) => killLoopCorpus(rng, shared.options.messages),
      arm: ({ imap, rng }) => {
        let budget = shared.options.faults
        const seen: Record<string, number> = {}
        imap.hooks = {
          onClient: (chunk, conn) => {
            const text = chunk.toString("latin1")
            if (budget <= 0 || !isImapCommand(text) || !rng.chance(/^\S+ UID /i.test(text) ? 0.5 : 0.1)) return undefined
            budget--
            const verb = /^\S+ ((?:UID )?\S+)/.exec(text)?.[1] ?? "?"
            // Half the command, or all of it and cut before the answer (the server may have acted).
            const whole = rng.chance(0.5)
            const key = `${verb} ${whole ? "sent, answer cut" : "cut half-way"}`
            seen[key] = (seen[key] ?? 0) + 1
            conn.state.cut = true
            return { forward: whole ? chunk.length : Math.floor(chunk.length / 2), cut: true }
          }
        }
        ;(imap.hooks as { seen?: unknown }).seen = seen
      },
      verify: ({ rec, imap }, l) => {
        rec.check("faults injected", imap.stats.cuts >= Math.min(shared.options.faults, 1), `${imap.stats.cuts} cuts: ${JSON.stringify((imap.hooks as { seen?: unknown }).seen)}`)
        rec.check("the daemon reconnected after the cuts", l.connectedEvents >= 2, `${l.connectedEvents} MailboxConnected`)
      }
    }),

  "cut-mid-literal": (shared) =>
    runCase(shared, "cut mid-literal (IMAP FETCH)", {
      protocol: "imap",
      corpus: (rng) => {
        const n = Math.max(8, Math.round(shared.options.messages / 10))
        return Array.from({ length: n }, (_, i) =>
          i % 2 === 0 ? largeMessage(200_000 + i, rng.int(1, 3) * 1024 * 1024) : plainMessage(200_000 + i, { bodyBytes: rng.int(1_000, 20_000) }))
      },
      arm: ({ imap, rng }) => {
        let budget = shared.options.faults
        const where: Array<number> = []
        imap.hooks = {
          onClient: (chunk, conn) => {
            if (budget > 0 && /UID FETCH .*BODY\.PEEK\[\]/i.test(chunk.toString("latin1"))) {
              budget--
              // Somewhere inside the response, most likely inside a big literal.
              conn.state.cutAt = conn.down + rng.int(4_096, 6 * 1024 * 1024)
            }
            return undefined
          },
          onServer: (chunk, conn) => {
            const at = conn.state.cutAt as number | undefined
            if (at === undefined || conn.down + chunk.length < at) return undefined
            conn.state.cutAt = undefined
            where.push(at - conn.down)
            return { forward: at - conn.down, cut: true }
          }
        }
        ;(imap.hooks as { where?: unknown }).where = where
      },
      verify: ({ rec, imap }, l) => {
        rec.check("cut inside FETCH responses", imap.stats.cuts >= 1, `${imap.stats.cuts} cuts`)
        rec.check("the daemon reconnected after the cuts", l.connectedEvents >= 2, `${l.connectedEvents} MailboxConnected`)
      }
    }),

  "cut-mid-data": (shared) =>
    runCase(shared, "cut mid-DATA (SMTP)", {
      protocol: "imap",
      corpus: (rng) => quarantineHeavyCorpus(rng, Math.max(9, Math.round(shared.options.messages / 5)), 200_000),
      arm: ({ smtpProxy, rng }) => {
        let budget = shared.options.faults
        let lostReplies = 1
        smtpProxy.hooks = {
          onClient: (chunk, conn) => {
            const text = chunk.toString("latin1")
            if (conn.state.inData === true) {
              const left = conn.state.cutAfter as number | undefined
              if (text.includes("\r\n.\r\n")) conn.state.inData = false
              if (left === undefined) return undefined
              if (left < chunk.length) {
                conn.state.cutAfter = undefined
                return { forward: left, cut: true }
              }
              conn.state.cutAfter = left - chunk.length
              return undefined
            }
            if (/^DATA\r\n/im.test(text)) {
              conn.state.inData = true
              if (budget > 0) {
                budget--
                conn.state.cutAfter = rng.int(10, 90_000)
              } else if (lostReplies > 0) {
                // The whole message goes through, but its 250 never comes back: the server has it.
                lostReplies--
                conn.state.dropReply = true
              }
            }
            return undefined
          },
          onServer: (chunk, conn) => {
            if (conn.state.dropReply === true && conn.state.inData === false && /^250 /m.test(chunk.toString("latin1"))) {
              conn.state.dropReply = false
              return { forward: 0, cut: true }
            }
            return undefined
          }
        }
      },
      verify: ({ rec, smtpProxy }, l) => {
        rec.check("cuts inside DATA", smtpProxy.stats.cuts >= 1, `${smtpProxy.stats.cuts} cuts`)
        rec.check("the failed forwards were recorded and retried", l.quarantineFailedEvents >= 1, `${l.quarantineFailedEvents} QuarantineFailed`)
      }
    }),

  latency: (shared) =>
    runCase(shared, "latency (IMAP+SMTP)", {
      protocol: "imap",
      corpus: (rng) => quarantineHeavyCorpus(rng, Math.max(30, Math.round(shared.options.messages / 3)), 20_000),
      arm: ({ imap, smtpProxy }) => {
        // Longer than the command timeout (3 s): commands must time out.
        imap.latencyMs = 4_000
        smtpProxy.latencyMs = 150
      },
      tick: ({ imap, counts }, elapsed) => {
        const failures = counts().get("MailboxConnectionFailed") ?? 0
        // Then a slow but workable link: 40 ms each way per chunk.
        if (imap.latencyMs > 1_000 && (failures >= 2 || elapsed > 30_000)) imap.latencyMs = 40
      },
      verify: ({ rec }, l) => {
        const kinds = failureKinds(l)
        rec.check("timeouts fired while the latency exceeded the command timeout", (kinds.timeout ?? 0) >= 1, JSON.stringify(kinds))
      }
    }),

  "black-hole": (shared) =>
    runCase(shared, "black-hole (IMAP+SMTP)", {
      protocol: "imap",
      corpus: (rng) => quarantineHeavyCorpus(rng, Math.max(30, Math.round(shared.options.messages / 3)), 5_000),
      late: (rng) => quarantineHeavyCorpus(rng, 12, 5_000).map((m) => Buffer.from(m.toString("latin1").replace(/net (\d+)/, "late $1").replace(/<test-plain-/, "<late-plain-"), "latin1")),
      arm: (run) => {
        run.imap.blackHoleNew = true
        run.rec.note("phase 1: IMAP accepts connections and never answers (not even a greeting)")
      },
      tick: async (run, elapsed) => {
        const { imap, smtpProxy, rec, counts } = run
        const s = run as unknown as BlackHoleState
        const phase = s.phase ?? 1
        const failures = counts().get("MailboxConnectionFailed") ?? 0
        const removed = counts().get("MessageRemoved") ?? 0
        const since = elapsed - (s.at ?? 0)
        const next = (n: number, text: string) => {
          s.phase = n
          s.at = elapsed
          s.failuresAt = failures
          s.removedAt = removed
          rec.note(`phase ${n} at ${(elapsed / 1000).toFixed(1)} s: ${text}`)
        }
        if (phase === 1 && failures >= 4) {
          imap.blackHoleNew = false
          // The greeting, then silence: LOGIN is never answered.
          imap.hooks = { onServer: (_chunk, conn) => (conn.down === 0 ? undefined : { forward: 0 }) }
          next(2, "IMAP greets, then never answers")
        } else if (phase === 2 && (failures > (s.failuresAt ?? 0) || since > 25_000)) {
          s.greetSilenceMs = failures > (s.failuresAt ?? 0) ? since : undefined
          imap.hooks = {}
          imap.cutAll()
          next(3, `IMAP healed (${s.greetSilenceMs === undefined ? "the silent login was still pending after 25 s: cut it" : `the silent login failed after ${(since / 1000).toFixed(1)} s`})`)
        } else if (phase === 3 && (counts().get("MessageAccepted") ?? 0) >= 5) {
          imap.frozen = true
          next(4, "IMAP frozen mid-session")
        } else if (phase === 4 && since > 8_000) {
          s.freezeFailures = failures - (s.failuresAt ?? 0)
          imap.frozen = false
          // A command that never timed out (see the check) would hold the session for minutes: cut it.
          if (s.freezeFailures === 0) imap.cutAll()
          smtpProxy.blackHoleNew = true
          run.seedLate()
          next(5, `IMAP healed (${s.freezeFailures} failure(s) during the freeze); SMTP accepts and never answers; new messages arrive`)
        } else if (phase === 5 && since > 45_000) {
          // Late normal (not quarantine-test) messages that left the server during the outage.
          const left = (await run.server()).filter((m) => /<late-plain-/.test(m.toString("latin1")) && !/quarantine test/.test(m.toString("latin1"))).length
          s.removedDuringSmtpOutage = 8 - left
          s.smtpOutageMs = since
          smtpProxy.blackHoleNew = false
          next(6, `everything healed (new normal messages removed during the 45 s SMTP outage: ${s.removedDuringSmtpOutage} of 8)`)
        }
      },
      verify: (run, l) => {
        const { rec } = run
        const s = run as unknown as BlackHoleState
        const kinds = failureKinds(l)
        rec.check("timeouts fired", (kinds.timeout ?? 0) >= 1, JSON.stringify(kinds))
        rec.check("all phases ran", s.phase === 6, `last phase ${s.phase}`)
        // Backoff: attempt n waits 0.8–1.2 × min(1.5^(n-1), 10) × 1 s, and the next failure comes no sooner.
        const failures = l.connectionFailures
        let badDelay = 0
        let tooSoon = 0
        for (let i = 0; i < failures.length; i++) {
          const f = failures[i]!
          const nominal = Math.min(1.5 ** (f.attempt - 1), 10)
          if (f.retryInSeconds < nominal * 0.8 - 0.01 || f.retryInSeconds > nominal * 1.2 + 0.01) badDelay++
          const after = failures[i + 1]
          if (after !== undefined && after.attempt === f.attempt + 1 && Date.parse(after.at) - Date.parse(f.at) < f.retryInSeconds * 1000 - 50) tooSoon++
        }
        rec.check("reconnect delays follow the backoff (x1.5 per attempt, ±20 %, cap 10x)", badDelay === 0 && tooSoon === 0,
          `attempts ${failures.map((f) => f.attempt).join(",")}; delays ${failures.map((f) => f.retryInSeconds.toFixed(1)).join(",")} s; ${badDelay} out of range, ${tooSoon} retried too soon`)
        rec.check("a server that greets and never answers LOGIN fails the connection within connect + command timeout (+10 s)",
          s.greetSilenceMs !== undefined && s.greetSilenceMs <= (3 + 3 + 10) * 1000,
          s.greetSilenceMs === undefined ? "still waiting after 25 s (imapflow's connect() is bounded only by its 5-minute socket timeout)" : `${(s.greetSilenceMs / 1000).toFixed(1)} s`)
        rec.check("a connection frozen mid-session times out", (s.freezeFailures ?? 0) >= 1,
          `${s.freezeFailures ?? 0} failure(s) during the 8 s freeze; swallowed: ${JSON.stringify(run.imap.stats.frozenSamples)}`)
        rec.check("normal messages keep flowing while the quarantine destination black-holes", (s.removedDuringSmtpOutage ?? 0) > 0,
          `${s.removedDuringSmtpOutage ?? 0} of 8 new normal message(s) removed during ${((s.smtpOutageMs ?? 0) / 1000).toFixed(0)} s of SMTP outage (${l.quarantineFailedEvents} QuarantineFailed in all)`)
      }
    }),

  "pop3-cuts": (shared) =>
    runCase(shared, "cuts mid-RETR and mid-command (POP3)", {
      protocol: "pop3",
      corpus: (rng) => [
        ...killLoopCorpus(rng, shared.options.messages),
        ...Array.from({ length: 4 }, (_, i) => largeMessage(210_000 + i, 2 * 1024 * 1024))
      ],
      arm: ({ imap, rng }) => {
        let budget = shared.options.faults
        imap.hooks = {
          onClient: (chunk, conn) => {
            const text = chunk.toString("latin1")
            if (budget <= 0 || !/^(RETR|DELE|QUIT|UIDL|LIST|STAT)/i.test(text) || !rng.chance(0.08)) return undefined
            budget--
            if (/^RETR/i.test(text) && rng.chance(0.6)) {
              conn.state.cutAt = conn.down + rng.int(10, 200_000)
              return undefined
            }
            return { forward: rng.chance(0.5) ? chunk.length : Math.floor(chunk.length / 2), cut: true }
          },
          onServer: (chunk, conn) => {
            const at = conn.state.cutAt as number | undefined
            if (at === undefined || conn.down + chunk.length < at) return undefined
            conn.state.cutAt = undefined
            return { forward: at - conn.down, cut: true }
          }
        }
      },
      verify: ({ rec, imap }) => {
        rec.check("faults injected", imap.stats.cuts >= 1, `${imap.stats.cuts} cuts`)
      }
    })
}

export const networkFaults = async (ctx: TortureContext, options: NetworkOptions): Promise<Array<ScenarioResult>> => {
  const dovecot = await startDovecot({ name: "torture-net", users: [{ user: "nobody@example.test", password: ctx.secret("net-nobody") }] })
  const smtp = await startSmtpServer()
  const shared: Shared = { ctx, dovecot, smtp, options }
  const results: Array<ScenarioResult> = []
  try {
    for (const name of options.cases) results.push(await cases[name](shared))
    return results
  } finally {
    closeReaders()
    await smtp.stop()
    await dovecot.destroy()
  }
}
