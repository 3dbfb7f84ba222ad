/**
 * One row of the torture table per (sub-)scenario, plus the named checks behind it. A row
 * passes when lost, duplicated, crashes and hangs are all 0 and every check holds.
 */
import type { Daemons } from "./daemon.js"
import type { Ledger } from "./ledger.js"

export interface Check {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
}

export interface ScenarioResult {
  readonly scenario: string
  readonly messagesIn: number
  readonly accepted: number
  readonly quarantined: number
  readonly duplicateSkipped: number
  readonly lost: number
  readonly duplicated: number
  readonly crashes: number
  readonly hangs: number
  readonly peakRssMiB: number
  readonly seconds: number
  readonly checks: ReadonlyArray<Check>
  readonly notes: ReadonlyArray<string>
  readonly crashDetails: ReadonlyArray<string>
  readonly seed: number
}

export const passed = (result: ScenarioResult): boolean =>
  result.lost === 0 && result.duplicated === 0 && result.crashes === 0 && result.hangs === 0 && result.checks.every((c) => c.ok)

/** Collects checks and notes while a scenario runs. */
export class Recorder {
  readonly checks: Array<Check> = []
  readonly notes: Array<string> = []
  hangs = 0
  readonly started = Date.now()

  constructor(readonly scenario: string, readonly seed: number, private readonly log: (line: string) => void) {}

  check(name: string, ok: boolean, detail = ""): boolean {
    this.checks.push({ name, ok, detail })
    this.log(`${this.scenario}: ${ok ? "ok  " : "FAIL"} ${name}${detail ? ` (${detail})` : ""}`)
    return ok
  }

  note(text: string): void {
    this.notes.push(text)
    this.log(`${this.scenario}: note: ${text}`)
  }

  hang(what: string): void {
    this.hangs++
    this.check(`no hang: ${what}`, false, "did not finish within its time limit")
  }

  finish(ledger: Ledger | undefined, daemons: ReadonlyArray<Daemons>, extra: Partial<Pick<ScenarioResult, "messagesIn" | "accepted" | "quarantined">> = {}): ScenarioResult {
    const crashDetails = daemons.flatMap((d) => d.crashes)
    if (ledger !== undefined) {
      if (ledger.lostLabels.length > 0) this.note(`lost (first 10): ${ledger.lostLabels.join("; ")}`)
      if (ledger.duplicatedLabels.length > 0) this.note(`duplicated (first 10): ${ledger.duplicatedLabels.join("; ")}`)
      if (ledger.unknownLabels.length > 0) this.note(`unknown bytes (first 10): ${ledger.unknownLabels.join("; ")}`)
    }
    for (const crash of crashDetails) this.note(`crash: ${crash}`)
    return {
      scenario: this.scenario,
      messagesIn: extra.messagesIn ?? ledger?.messagesIn ?? 0,
      accepted: extra.accepted ?? ledger?.accepted ?? 0,
      quarantined: extra.quarantined ?? ledger?.quarantined ?? 0,
      duplicateSkipped: ledger?.duplicateSkipped ?? 0,
      lost: ledger?.lost ?? 0,
      duplicated: ledger?.duplicated ?? 0,
      crashes: crashDetails.length,
      hangs: this.hangs,
      peakRssMiB: Math.round(Math.max(0, ...daemons.map((d) => d.peakRssMiB)) * 10) / 10,
      seconds: Math.round((Date.now() - this.started) / 100) / 10,
      checks: this.checks,
      notes: this.notes,
      crashDetails,
      seed: this.seed
    }
  }
}

const COLUMNS = [
  "scenario", "in", "accepted", "quarantined", "dup-skipped", "lost", "duplicated", "crashes", "hangs", "peak RSS MiB", "time s", "checks", "result"
] as const

export const tableRows = (results: ReadonlyArray<ScenarioResult>): Array<Array<string>> =>
  results.map((r) => [
    r.scenario,
    String(r.messagesIn),
    String(r.accepted),
    String(r.quarantined),
    String(r.duplicateSkipped),
    String(r.lost),
    String(r.duplicated),
    String(r.crashes),
    String(r.hangs),
    r.peakRssMiB.toFixed(0),
    r.seconds.toFixed(1),
    `${r.checks.filter((c) => c.ok).length}/${r.checks.length}`,
    passed(r) ? "PASS" : "FAIL"
  ])

/** A plain-text table (and a Markdown one, for reports). */
export const formatTable = (results: ReadonlyArray<ScenarioResult>, markdown = false): string => {
  const rows = [COLUMNS.slice() as Array<string>, ...tableRows(results)]
  if (markdown) {
    const line = (cells: Array<string>) => `| ${cells.join(" | ")} |`
    return [line(rows[0]!), line(rows[0]!.map(() => "---")), ...rows.slice(1).map(line)].join("\n")
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  return rows
    .map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "))
    .join("\n")
}
