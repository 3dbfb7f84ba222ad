/**
 * Scenario 1, the kill loop: seed a mailbox, then SIGKILL the daemon at seeded random moments
 * and restart it each time, until the mailbox is drained. Kills come either after a random
 * delay from the start (start-up, replay, connection, any step) or right after a random amount
 * of progress in one kind of event (retrieved, terminal, removed), so they land inside every
 * step of the protocol. Then: every message has exactly one terminal event, the INBOX is
 * empty, and every stored blob is the message's bytes as the server serves them.
 */
import { smtpQuarantine } from "../../test/support/cli.js"
import { startDovecot } from "../../test/support/dovecot.js"
import {
  bareLfMessage,
  dotLinesMessage,
  eightBitNoEncoding,
  latin1Message,
  multipartWithAttachment,
  plainMessage
} from "../../test/support/messages.js"
import { startSmtpServer } from "../../test/support/smtpServer.js"
import { sleep, type TortureContext, waitUntil } from "../../test/torture/lib/context.js"
import { Daemons } from "../../test/torture/lib/daemon.js"
import { expectedSet, type Protocol } from "../../test/torture/lib/expected.js"
import { closeReaders, countByType, terminalCount } from "../../test/torture/lib/ledger.js"
import { type Prng, prng } from "../../test/torture/lib/prng.js"
import { Recorder, type ScenarioResult } from "../../test/torture/lib/report.js"
import {
  fullLedger,
  imapBox,
  noticeAccounting,
  registerArtifacts,
  serverCount,
  writeTortureConfig
} from "../../test/torture/lib/scenario.js"

export interface KillLoopOptions {
  readonly protocol: Protocol
  readonly messages: number
  readonly minKills: number
  /** Whole scenario, ms. */
  readonly timeLimitMs: number
}

/** A mixed, deterministic corpus: every shape, some quarantines, some exact duplicates. */
export const killLoopCorpus = (rng: Prng, n: number): Array<Buffer> => {
  const out: Array<Buffer> = []
  for (let i = 0; i < n; i++) {
    const roll = rng.next()
    const id = 100_000 + i
    if (roll < 0.02 && out.length > 0) out.push(out[rng.int(0, out.length - 1)]!)
    else if (roll < 0.06) out.push(plainMessage(id, { subject: `[pcemail quarantine test message] kill loop ${i}` }))
    else if (roll < 0.09) out.push(plainMessage(id, { subject: `Out of office ${i}`, headers: { "Auto-Submitted": "auto-replied" } }))
    else if (roll < 0.45) out.push(plainMessage(id, { bodyBytes: rng.int(200, 30_000) }))
    else if (roll < 0.65) out.push(multipartWithAttachment(id, rng.int(100, 60_000)))
    else if (roll < 0.75) out.push(latin1Message(id))
    else if (roll < 0.85) out.push(eightBitNoEncoding(id))
    else if (roll < 0.93) out.push(bareLfMessage(id))
    else out.push(dotLinesMessage(id))
  }
  return out
}

export const killLoop = async (ctx: TortureContext, options: KillLoopOptions): Promise<ScenarioResult> => {
  const name = `kill loop (${options.protocol.toUpperCase()})`
  const rng = prng(ctx.seed).fork(`kill-loop-${options.protocol}`)
  const rec = new Recorder(name, rng.seed, ctx.log)
  const user = "kill@example.test"
  const password = ctx.secret(`kill-${options.protocol}`, user)
  const dovecot = await startDovecot({ name: `torture-kill-${options.protocol}`, users: [{ user, password }] })
  const smtp = await startSmtpServer()
  const dir = ctx.dir(`kill-${options.protocol}`)
  const daemons = new Daemons(ctx.bin, dir)
  try {
    const corpus = killLoopCorpus(rng, options.messages)
    await dovecot.seed(user, corpus)
    const expected = expectedSet(corpus, options.protocol)
    const box = { id: `kill-${options.protocol}`, user }
    const port = options.protocol === "imap" ? dovecot.imapsPort : dovecot.pop3sPort
    const { config, database } = writeTortureConfig(ctx, dir, {
      integrationType: options.protocol === "imap" ? "IMAP" : "POP3",
      mailboxes: [imapBox({ host: dovecot.host, port, caFile: dovecot.caFile }, box.id, user, password)],
      quarantine: smtpQuarantine(smtp)
    })

    /** The server is empty, every message has its terminal event and its removal is logged. */
    const drainedCheap = async () => {
      const counts = countByType(database)
      return terminalCount(counts) >= expected.total && (counts.get("MessageRemoved") ?? 0) >= expected.total &&
        (await serverCount(dovecot, [user])) === 0
    }
    const deadline = Date.now() + options.timeLimitMs
    let kills = 0
    let killsWithWorkLeft = 0
    let run = 0
    const moments: Record<string, number> = {}
    const maxStep = Math.max(2, Math.round(options.messages / (options.minKills * 2)))
    let finished = false
    while (Date.now() < deadline) {
      run++
      const daemon = daemons.start(["run", "--config", config], { label: `run-${run}` })
      if (killsWithWorkLeft >= options.minKills || (kills > 0 && (await drainedCheap()))) {
        const ok = await waitUntil(async () => !daemon.running || (await drainedCheap()), deadline - Date.now(), 200)
        if (!daemon.running) {
          rec.note(`the daemon stopped by itself during the final drain`)
          continue
        }
        if (!ok) rec.hang(`draining after ${kills} kills`)
        const stopped = await daemon.stop()
        if (!stopped.inTime) rec.hang("stopping on SIGTERM")
        finished = ok
        break
      }
      // Progress comes in batches (100 messages per FETCH and per commit): when little work is
      // left for the kills still to come, kill after a short random time instead, counted from
      // the moment the daemon is up (replay, connect, the in-flight messages, the next batch).
      const killsLeft = options.minKills - killsWithWorkLeft
      const remaining = expected.total - terminalCount(countByType(database))
      // Waiting for progress when little is left waits for the end: the last batch's removal or
      // decisions finish the mailbox at once.
      const mode = remaining < killsLeft * 150 || rng.next() < 0.35 ? "time" : "progress"
      const ready = await waitUntil(() => !daemon.running || /running \d+ mailbox/.test(daemon.stderr()), 60_000, 20)
      if (!ready) rec.hang(`start-up of run ${run}`)
      // Every run is killed by this time after start-up at the latest (POP3 removes everything at
      // the QUIT that ends a poll: waiting for its MessageRemoved would let it drain the mailbox).
      const latest = Date.now() + rng.int(300, 6_000)
      let moment: string
      if (mode === "time") {
        // Short when little is left: a daemon that drains a thousand messages a second would
        // otherwise finish before the kills it is owed. Half a millisecond per message left.
        const delay = rng.int(0, remaining < killsLeft * 150 ? Math.max(20, Math.min(400, Math.round(remaining / 2))) : 1_500)
        moment = "at a random time after start-up"
        await Promise.race([sleep(delay), daemon.exited])
      } else {
        // POP3 removes a whole poll's messages at its QUIT: waiting for MessageRemoved there is
        // waiting for the mailbox to be drained.
        const kind = rng.pick(options.protocol === "pop3" ? ["MessageRetrieved", "terminal"] as const : ["MessageRetrieved", "terminal", "MessageRemoved"] as const)
        const current = () => {
          const counts = countByType(database)
          return kind === "terminal" ? terminalCount(counts) : counts.get(kind) ?? 0
        }
        const target = current() + rng.int(1, maxStep)
        moment = `after progress in ${kind}`
        await waitUntil(async () => !daemon.running || current() >= target || Date.now() >= latest || (await drainedCheap()), 90_000, 20)
        if (current() < target) moment = `at a random time, waiting for progress in ${kind}`
        const jitter = rng.int(0, 40)
        if (jitter > 0) await sleep(jitter)
      }
      const workLeft = !(await drainedCheap())
      ctx.log(`${name}: run ${run}: SIGKILL ${moment}${workLeft ? "" : " (nothing left to do)"}`)
      daemon.kill("SIGKILL")
      await daemon.exited
      kills++
      if (workLeft) {
        killsWithWorkLeft++
        moments[moment] = (moments[moment] ?? 0) + 1
      }
    }
    if (!finished && rec.hangs === 0) rec.hang(`the kill loop within ${options.timeLimitMs} ms`)

    const l = await fullLedger(dovecot, [box], database, expected, true)
    const notices = noticeAccounting(smtp.received, l)
    rec.check(`at least ${options.minKills} SIGKILLs while work remained`, killsWithWorkLeft >= options.minKills, `${killsWithWorkLeft} of ${kills} kills; ${JSON.stringify(moments)}`)
    rec.check("INBOX empty", l.stillOnServer === 0, `${l.stillOnServer} left`)
    rec.check("every retrieved message's bytes are a seeded message as served", l.unknown === 0, `${l.unknown} unknown`)
    rec.check("every stored blob is intact (sha256 of content = its name)", l.blobMismatches === 0, `${l.blobMismatches} mismatched of ${l.retrievedEvents}`)
    rec.check("every quarantined message reached the SMTP server", notices.missing === 0, `${notices.notices} notices, ${notices.missing} missing`)
    rec.check("nothing waits for quarantine at the end", l.quarantinePending === 0, `${l.quarantinePending} pending`)
    rec.check("MessageRemoved for every message", l.removedNotLogged === 0, `${l.removedEvents} MessageRemoved`)
    if (notices.resent > 0) rec.note(`${notices.resent} quarantine notice(s) sent again after a kill between the SMTP 250 and its event (same Message-ID, so the destination can drop them)`)
    rec.note(`${run} daemon runs, ${kills} SIGKILLs; ${l.retrievedEvents} MessageRetrieved for ${expected.total} messages`)
    registerArtifacts(ctx, daemons)
    return rec.finish(l, [daemons])
  } finally {
    closeReaders()
    await daemons.killAll()
    await smtp.stop()
    await dovecot.destroy()
  }
}
