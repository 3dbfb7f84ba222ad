/**
 * The CPU a Dovecot instance of the test support (test/support/dovecot.ts) has used: user + sys
 * seconds of each of its live processes, plus what the processes it has reaped used (the master
 * reaps the `imap` / `pop3` session processes, whose CPU then moves into its cutime / cstime).
 * The difference of two readings is what the server spent between them, sessions that began
 * and ended in between included. (A session alive at the first reading and reaped by the second
 * counts whole: take the first reading while no client is logged in.)
 */
import { readdirSync, readFileSync } from "node:fs"
import { basename } from "node:path"
import type { Dovecot } from "../../test/support/dovecot.js"
import { cpuSecondsOf } from "./measure.js"

/** The instance's processes, by their process titles; each one's CPU with its reaped children's. */
export const dovecotProcessCpu = (dovecot: Dovecot): Map<number, number> => {
  const prefix = `dovecot-${basename(dovecot.dir)}`
  const result = new Map<number, number>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "latin1")
      if (cmdline.startsWith(prefix) || cmdline.includes(`${dovecot.dir}/dovecot.conf`)) result.set(Number(entry), cpuSecondsOf(Number(entry), { reapedChildren: true }))
    } catch {
      // gone
    }
  }
  return result
}

/** CPU seconds the instance used between two readings of `dovecotProcessCpu` (processes gone by the second are in their parent's). */
export const dovecotCpuBetween = (before: Map<number, number>, after: Map<number, number>): number => {
  let seconds = 0
  for (const [pid, now] of after) seconds += now - (before.get(pid) ?? 0)
  return seconds
}
