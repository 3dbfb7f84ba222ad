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

/** Fields holding a secret: their values, and anything written inside them, are never echoed. */
const SECRET_FIELDS: ReadonlySet<PropertyKey> = new Set(["password", "clientSecret"])

const isSecret = (rawPath: ReadonlyArray<PropertyKey>): boolean => rawPath.some((key) => SECRET_FIELDS.has(key))

/**
 * A configuration is a union discriminated by `integrationType`. Should a member whose literal
 * does not match report that literal, the report says nothing when the value is a valid type.
 */
const isDiscriminatorNoise = (issue: RawIssue, actual: string): boolean => {
  if (issue.rawPath.at(-1) !== "integrationType") return false
  try {
    return Schema.is(IntegrationType)(JSON.parse(actual))
  } catch {
    return false
  }
}

/** Schema's description of a type, as a person would say it. */
const describeExpected = (expected: string): string =>
  expected.startsWith("{ readonly") || expected.startsWith("Struct") ? "an object"
  : expected.startsWith("ReadonlyArray<") ? "an array"
  : expected

/** Schema's JSON rendering of the value found: objects are not repeated, long strings are cut. */
const describeActual = (actual: string): string => {
  if (actual.startsWith("{")) return "an object"
  if (actual.startsWith("[")) return "an array"
  return actual.length > 42 ? `${actual.slice(0, 40)}…"` : actual
}

/** "did you mean" for a value that is close to one of the literals expected ("production"). */
const suggestLiteral = (expected: ReadonlyArray<string>, actual: string): string => {
  const literals = expected.map(stringLiteral).filter((item): item is string => item !== undefined)
  const value = stringLiteral(actual)
  const suggestion = value === undefined ? undefined : closest(value, literals)
  return suggestion === undefined ? "" : ` (did you mean "${suggestion}"?)`
}

const stringLiteral = (json: string): string | undefined => {
  try {
    const value: unknown = JSON.parse(json)
    return typeof value === "string" ? value : undefined
  } catch {
    return undefined
  }
}

const isAtOrBelow = (path: string, ancestor: string): boolean =>
  ancestor === "" ? path !== "" : path === ancestor || path.startsWith(`${ancestor}.`) || path.startsWith(`${ancestor}[`)

/**
 * Schema reports a value that fits no alternative of a union once per alternative ("Expected
 * "delete", actual …", "Expected undefined, actual …" for an optional field): those are merged
 * into one "expected one of" line, and dropped when a more precise issue at the same field or
 * inside it (a refinement, an unknown field) already says what is wrong.
 */
export const formatIssues = (issues: ReadonlyArray<RawIssue>): Array<ConfigProblem> => {
  const entries: Array<
    | { readonly _tag: "Message"; readonly path: string; readonly message: string }
    | { readonly _tag: "Mismatch"; readonly path: string; readonly secret: boolean; readonly expected: Array<string>; readonly actual: string }
  > = []
  const mismatches = new Map<string, { expected: Array<string> }>()
  for (const issue of issues) {
    const mismatch = issue.tag === "Type" ? MISMATCH.exec(issue.message) : null
    if (mismatch !== null) {
      const [, expected, actual] = mismatch as unknown as [string, string, string]
      if (isDiscriminatorNoise(issue, actual)) continue
      // A union of literals arrives as one alternative ("\"Graph\" | \"EWS\""), or one per member.
      const described = expected.split(" | ").filter((item) => item !== "undefined").map(describeExpected)
      const group = mismatches.get(issue.path)
      if (group !== undefined) {
        for (const item of described) if (!group.expected.includes(item)) group.expected.push(item)
        continue
      }
      const entry = { _tag: "Mismatch" as const, path: issue.path, secret: isSecret(issue.rawPath), expected: described, actual }
      mismatches.set(issue.path, entry)
      entries.push(entry)
      continue
    }
    let message = issue.message
    if (issue.tag === "Missing") message = "is required"
    if (issue.tag === "Unexpected") {
      const field = String(issue.rawPath.at(-1) ?? "")
      const expected = EXPECTED.exec(issue.message)?.[1]
      const candidates = expected === undefined ? [] : [...expected.matchAll(/"([^"]+)"/g)].map((match) => match[1]!)
      const suggestion = closest(field, candidates)
      message = `unknown field "${field}"${suggestion === undefined ? "" : ` (did you mean "${suggestion}"?)`}`
    }
    entries.push({ _tag: "Message", path: issue.path, message })
  }

  const precise = entries.filter((entry) => entry._tag === "Message").map((entry) => entry.path)
  const seen = new Set<string>()
  const problems: Array<ConfigProblem> = []
  for (const entry of entries) {
    let message: string
    if (entry._tag === "Message") message = entry.message
    else {
      if (precise.some((path) => isAtOrBelow(path, entry.path))) continue
      if (entry.secret) message = 'must be a string, { "env": "NAME" } or { "file": "path" }'
      else {
        const expected = entry.expected.length === 0
          ? "another value"
          : entry.expected.length === 1 ? entry.expected[0]! : `one of ${entry.expected.join(", ")}`
        message = `expected ${expected}, got ${describeActual(entry.actual)}${suggestLiteral(entry.expected, entry.actual)}`
      }
    }
    const key = `${entry.path}\u0000${message}`
    if (seen.has(key)) continue
    seen.add(key)
    problems.push({ path: entry.path, message })
  }
  return problems
}
