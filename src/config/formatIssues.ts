/**
 * Turns Schema's decode issues into the messages a person fixing the file wants: one line per
 * field, the alternatives of a union merged ("expected one of ..."), and a suggestion for an
 * unknown field ("did you mean pollingIntervalSeconds?").
 */
import { Schema } from "effect"
import { IntegrationType } from "../domain/config.js"
import type { ConfigProblem } from "../domain/plan.js"

export interface RawIssue {
  readonly path: string
  readonly rawPath: ReadonlyArray<PropertyKey>
  readonly message: string
  readonly tag: string
}

/** Levenshtein distance, small strings only. */
export const editDistance = (a: string, b: string): number => {
  const previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = previous[0]!
    previous[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = previous[j]!
      previous[j] = Math.min(previous[j]! + 1, previous[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1))
      diagonal = above
    }
  }
  return previous[b.length]!
}

export const closest = (word: string, candidates: ReadonlyArray<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined
}

const EXPECTED = /expected: (.*)$/s
const MISMATCH = /^Expected (.+), actual (.+)$/s

/**
 * A configuration is a union discriminated by `integrationType`: every member that does not
 * match reports its own literal. Those reports say nothing when the value is a valid type.
 */
const isDiscriminatorNoise = (issue: RawIssue, actual: string): boolean => {
  if (issue.rawPath.at(-1) !== "integrationType") return false
  try {
    return Schema.is(IntegrationType)(JSON.parse(actual))
  } catch {
    return false
  }
}

export const formatIssues = (issues: ReadonlyArray<RawIssue>): Array<ConfigProblem> => {
  const seen = new Set<string>()
  const problems: Array<ConfigProblem> = []
  const alternatives = new Map<string, { expected: Array<string>; actual: string; index: number }>()
  for (const issue of issues) {
    const mismatch = issue.tag === "Type" ? MISMATCH.exec(issue.message) : null
    if (mismatch !== null) {
      const [, expected, actual] = mismatch as unknown as [string, string, string]
      if (isDiscriminatorNoise(issue, actual)) continue
      const group = alternatives.get(issue.path)
      if (group !== undefined) {
        if (expected !== "undefined" && !group.expected.includes(expected)) group.expected.push(expected)
        continue
      }
      alternatives.set(issue.path, { expected: expected === "undefined" ? [] : [expected], actual, index: problems.length })
      problems.push({ path: issue.path, message: "" })
      continue
    }
    let message = issue.message
    if (issue.tag === "Unexpected") {
      const field = String(issue.rawPath.at(-1) ?? "")
      const expected = EXPECTED.exec(issue.message)?.[1]
      const candidates = expected === undefined ? [] : [...expected.matchAll(/"([^"]+)"/g)].map((match) => match[1]!)
      const suggestion = closest(field, candidates)
      message = `unknown field "${field}"${suggestion === undefined ? "" : ` (did you mean "${suggestion}"?)`}`
    }
    const key = `${issue.path}\u0000${message}`
    if (seen.has(key)) continue
    seen.add(key)
    problems.push({ path: issue.path, message })
  }
  for (const [path, group] of alternatives) {
    const expected = group.expected.length === 1 ? group.expected[0] : `one of ${group.expected.join(", ")}`
    problems[group.index] = { path, message: `expected ${expected}, got ${group.actual}` }
  }
  return problems
}
