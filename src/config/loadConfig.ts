/**
 * Reads, decodes and checks the configuration file. Every problem is reported at once, each
 * with the path of the field to fix; secrets are resolved from the environment or from files
 * and held as `Redacted`.
 */
import { Data, Effect, Either, Layer, ParseResult, Schema } from "effect"
import { readFileSync } from "node:fs"
import { dirname, isAbsolute, resolve } from "node:path"
import {
  ConfigFile,
  ConfigFileOutline,
  Configuration,
  GraphMailbox,
  type SecretSpec,
  SecretStore,
  ServerMailbox,
  UsageType
} from "../domain/config.js"
import {
  type ConfigProblem,
  type ConfigurationPart,
  configurationParts,
  type MailboxPart,
  type Plan,
  type MailboxPlan,
  plan,
  planParts,
  rawMailboxId
} from "../domain/plan.js"
import { formatIssues, type RawIssue } from "./formatIssues.js"

export class ConfigInvalid extends Data.TaggedError("ConfigInvalid")<{
  readonly file: string
  readonly problems: ReadonlyArray<ConfigProblem>
}> {
  override get message() {
    return `${this.file}: ${this.problems.length} problem(s)\n${formatProblems(this.problems)}`
  }
}

export const formatProblems = (problems: ReadonlyArray<ConfigProblem>): string =>
  problems.map((problem) => `  ${problem.path || "(file)"}: ${problem.message}`).join("\n")

export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`),
    ""
  )

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv
  /**
   * "lenient" lets a secret that cannot be resolved decode as empty: for the commands that only
   * read the event log (events, status, show), which need no password.
   */
  readonly secrets?: "required" | "lenient"
}

/**
 * Secrets from the environment and from files (relative to the configuration file). With
 * `unresolved`, a secret that cannot be resolved decodes as that value instead of failing.
 */
export const secretStoreLayer = (
  baseDirectory: string,
  env: NodeJS.ProcessEnv = process.env,
  lenient: boolean | { readonly unresolved: string } = false
) =>
  Layer.succeed(SecretStore, {
    resolve: (spec: SecretSpec) =>
      Effect.suspend((): Effect.Effect<string, string> => {
        if (typeof spec === "string") return Effect.succeed(spec)
        if (spec.env !== undefined) {
          const value = env[spec.env]
          return value === undefined
            ? Effect.fail(`environment variable ${spec.env} is not set`)
            : Effect.succeed(value)
        }
        const file = spec.file ?? ""
        const path = isAbsolute(file) ? file : resolve(baseDirectory, file)
        return Effect.try({
          try: () => readFileSync(path, "utf8").replace(/\r?\n$/, ""),
          catch: (cause) => `cannot read secret file ${path}: ${(cause as NodeJS.ErrnoException).code ?? cause}`
        })
      }).pipe((effect) =>
        lenient === false ? effect : Effect.orElseSucceed(effect, () => (lenient === true ? "" : lenient.unresolved))
      )
  })

export interface LoadedConfig {
  readonly path: string
  readonly text: string
  readonly file: ConfigFile
  readonly plan: Plan
}

const USAGE_TYPE_ENV = "MAILINTAKE_USAGE_TYPE"
const USAGE_TYPES = ["Production", "Test", "Development", "Training"] as const

/**
 * The server usage type: the file's, unless MAILINTAKE_USAGE_TYPE says otherwise. An empty
 * variable counts as unset (`MAILINTAKE_USAGE_TYPE=` in a compose file), since a blank server
 * usage type would stop every configuration; a blank server is written in the file.
 */
const serverUsageType = (
  file: { readonly server: { readonly usageType: UsageType } },
  env: NodeJS.ProcessEnv
): { readonly usageType: UsageType; readonly source: "file" | "environment"; readonly problem?: ConfigProblem } => {
  const override = env[USAGE_TYPE_ENV]
  if (override === undefined || override === "") return { usageType: file.server.usageType, source: "file" }
  if (Schema.is(UsageType)(override)) return { usageType: override, source: "environment" }
  const near = USAGE_TYPES.find((usageType) => usageType.toLowerCase() === override.trim().toLowerCase())
  return {
    usageType: file.server.usageType,
    source: "file",
    problem: {
      path: USAGE_TYPE_ENV,
      message: `"${override}" is not a usage type${near === undefined ? "" : ` (did you mean "${near}"?)`}: use Production, Test, Development or Training`
    }
  }
}

/**
 * Where JSON.parse stopped, as "line L, column C", and its reason without the excerpt of the text
 * that V8 quotes in some messages: the excerpt may be a password.
 */
export const describeJsonError = (text: string, error: Error): string => {
  const reason = error.message
    .replace(/, (\.\.\.)?".*$/s, "")
    .replace(/ (in JSON )?at position \d+.*$/s, "")
  const offset = syntaxErrorOffset(text)
  const before = text.slice(0, offset)
  const line = before.split("\n").length
  const column = offset - before.lastIndexOf("\n")
  return `not valid JSON at line ${line}, column ${column}: ${reason}`
}

/** The offset of the first JSON syntax error in `text` (its length when the text ends too soon). */
const syntaxErrorOffset = (text: string): number => {
  let i = 0
  const stop = (): never => {
    throw i
  }
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++
  }
  const expect = (char: string) => (text[i] === char ? i++ : stop())
  const string = () => {
    expect("\"")
    for (;;) {
      const char = text[i]
      if (char === undefined || char < " ") stop()
      if (char === "\"") return i++
      if (char !== "\\") i++
      else if (/^\\(["\\/bfnrt]|u[0-9a-fA-F]{4})/.test(text.slice(i, i + 6))) i += text[i + 1] === "u" ? 6 : 2
      else stop()
    }
  }
  const literal = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false|null/y
  const value = (): void => {
    space()
    const char = text[i]
    if (char === "{" || char === "[") {
      const close = char === "{" ? "}" : "]"
      i++
      space()
      if (text[i] === close) return void i++
      for (;;) {
        if (close === "}") {
          space()
          string()
          space()
          expect(":")
        }
        value()
        space()
        if (text[i] === ",") i++
        else return void expect(close)
      }
    }
    if (char === "\"") return void string()
    literal.lastIndex = i
    if (literal.exec(text) === null) stop()
    i = literal.lastIndex
  }
  try {
    value()
    space()
    return i < text.length ? i : text.length
  } catch (offset) {
    // Anything but an offset is the stack running out on absurd nesting: point at the start.
    return typeof offset === "number" ? offset : 0
  }
}

const decodeOptions = { errors: "all", onExcessProperty: "error" } as const

/** Decodes with every issue reported, each with its path. */
const decodeWithIssues = <A, I>(
  schema: Schema.Schema<A, I, SecretStore>,
  value: unknown
): Effect.Effect<Either.Either<A, ReadonlyArray<RawIssue>>, never, SecretStore> =>
  Schema.decodeUnknown(schema, decodeOptions)(value).pipe(
    Effect.mapError((error) =>
      ParseResult.ArrayFormatter.formatErrorSync(error).map((issue): RawIssue => ({
        path: formatPath(issue.path),
        rawPath: issue.path,
        message: issue.message,
        tag: issue._tag
      }))
    ),
    Effect.either
  )

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Removes the object field at `path`; false when there is none (an array element, a missing field). */
const prune = (value: unknown, path: ReadonlyArray<PropertyKey>): boolean => {
  let parent = value
  for (const key of path.slice(0, -1)) {
    if (typeof parent !== "object" || parent === null) return false
    parent = (parent as Record<PropertyKey, unknown>)[key]
  }
  const key = path.at(-1)
  if (!isRecord(parent) || typeof key !== "string" || !(key in parent)) return false
  delete parent[key]
  return true
}

/**
 * Decodes what is well-formed in `value`: each round removes the fields Schema reported and tries
 * again, so that a bad optional field falls back to its default. Undefined when a required part
 * is bad.
 */
const decodePruned = <A, I>(schema: Schema.Schema<A, I, SecretStore>, value: unknown) =>
  Effect.gen(function*() {
    const current = structuredClone(value)
    for (let round = 0; round < 8; round++) {
      const decoded = yield* decodeWithIssues(schema, current)
      if (Either.isRight(decoded)) return decoded.right
      // A union reports a bad field inside it also as a mismatch of the whole: keep the whole.
      const paths = decoded.left.map((issue) => issue.rawPath)
      const deepest = paths.filter((path) =>
        !paths.some((other) => other.length > path.length && path.every((key, i) => other[i] === key))
      )
      let pruned = false
      for (const path of deepest) pruned = prune(current, path) || pruned
      if (!pruned) return undefined
    }
    return undefined
  })

/**
 * The well-formed parts of a file that does not decode as a whole: its outline, each
 * configuration that decodes once its bad fields are left out, and of one that still does not,
 * the configuration without its mailboxes and each mailbox that decodes. Undefined when even the
 * outline is broken.
 */
const decodeParts = (json: unknown) =>
  Effect.gen(function*() {
    const outline = yield* decodePruned(ConfigFileOutline, json)
    if (outline === undefined) return undefined
    const configurations: Array<ConfigurationPart> = []
    const raws = isRecord(json) && Array.isArray(json.configurations) ? json.configurations : []
    for (const [index, raw] of raws.entries()) {
      const whole = yield* decodePruned(Configuration, raw)
      if (whole !== undefined) {
        configurations.push(...configurationParts([whole]).map((part) => ({ ...part, index })))
        continue
      }
      if (!isRecord(raw)) continue
      const configuration = yield* decodePruned(Configuration, { ...raw, mailboxes: [] })
      if (configuration === undefined) continue
      const mailboxes: Array<MailboxPart> = []
      for (const [m, rawMailbox] of (Array.isArray(raw.mailboxes) ? raw.mailboxes : []).entries()) {
        const mailbox: ServerMailbox | GraphMailbox | undefined = configuration.integrationType === "Graph"
          ? yield* decodePruned(GraphMailbox, rawMailbox)
          : configuration.integrationType === "IMAP" || configuration.integrationType === "POP3"
          ? yield* decodePruned(ServerMailbox, rawMailbox)
          : undefined
        mailboxes.push({ index: m, id: rawMailboxId(rawMailbox), mailbox })
      }
      configurations.push({ index, configuration, mailboxes })
    }
    return { file: outline, configurations }
  })

const isAtOrBelow = (path: string, ancestor: string): boolean =>
  ancestor === "" || path === ancestor || path.startsWith(`${ancestor}.`) || path.startsWith(`${ancestor}[`)

const distinct = (problems: ReadonlyArray<ConfigProblem>): Array<ConfigProblem> => {
  const seen = new Set<string>()
  return problems.filter((problem) => {
    const key = `${problem.path}\u0000${problem.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** The array indices along a path: `configurations[2].mailboxes[0].id` → [2, 0]. */
const positionOf = (path: string): Array<number> => [...path.matchAll(/\[(\d+)\]/g)].map((match) => Number(match[1]))

/**
 * Problems in the order of the file: those about the whole file first, then by configuration and,
 * within one, by mailbox; the order in which they were found otherwise.
 */
const inFileOrder = (problems: ReadonlyArray<ConfigProblem>): Array<ConfigProblem> =>
  problems
    .map((problem, found) => ({ problem, found, position: positionOf(problem.path) }))
    .sort((a, b) => {
      for (let i = 0; i < Math.min(a.position.length, b.position.length); i++) {
        if (a.position[i] !== b.position[i]) return a.position[i]! - b.position[i]!
      }
      return a.position.length - b.position.length || a.found - b.found
    })
    .map(({ problem }) => problem)

/** Decodes configuration text; `path` is used for relative paths and messages. */
export const parseConfig = (
  path: string,
  text: string,
  options: LoadOptions = {}
): Effect.Effect<LoadedConfig, ConfigInvalid> =>
  Effect.gen(function*() {
    const env = options.env ?? process.env
    const invalid = (problems: ReadonlyArray<ConfigProblem>) => new ConfigInvalid({ file: path, problems })
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (cause) => invalid([{ path: "", message: describeJsonError(text, cause as Error) }])
    })
    const baseDirectory = dirname(resolve(path))
    const secrets = secretStoreLayer(baseDirectory, env, options.secrets === "lenient")
    const decoded = yield* decodeWithIssues(ConfigFile, json).pipe(Effect.provide(secrets))
    if (Either.isLeft(decoded)) {
      // Report the rules spanning several fields of every well-formed part along with the field
      // errors, so that one run of check-config lists everything to fix. A secret that cannot be
      // resolved is already reported: it must not hide the other rules.
      const parts = yield* decodeParts(json).pipe(
        Effect.provide(secretStoreLayer(baseDirectory, env, { unresolved: "(unresolved)" }))
      )
      const server = parts === undefined ? undefined : serverUsageType(parts.file, env)
      const fieldProblems = formatIssues(decoded.left)
      // A rule about a field already reported (a quarantine type misspelt is also "no type") is noise.
      const planned = parts === undefined || server === undefined
        ? []
        : planParts({ ...parts.file, configurations: parts.configurations }, { serverUsageType: server.usageType })
          .problems.filter((problem) => !fieldProblems.some((field) => isAtOrBelow(problem.path, field.path)))
      return yield* invalid(inFileOrder(distinct([
        ...(server?.problem === undefined ? [] : [server.problem]),
        ...fieldProblems,
        ...planned
      ])))
    }
    const file = decoded.right
    const server = serverUsageType(file, env)
    const result = plan(file, { serverUsageType: server.usageType, serverUsageTypeSource: server.source })
    const problems = server.problem === undefined ? result.problems : [server.problem, ...result.problems]
    if (problems.length > 0) return yield* invalid(inFileOrder(problems))
    const database = isAbsolute(file.database) ? file.database : resolve(baseDirectory, file.database)
    return { path, text, file, plan: { ...result.plan, database, mailboxes: result.plan.mailboxes.map((mailbox) => withAbsolutePaths(mailbox, baseDirectory)) } }
  })

/** CA files, like every relative path in the file, are relative to the configuration file. */
const withAbsolutePaths = (mailbox: MailboxPlan, baseDirectory: string): MailboxPlan => {
  const absolute = (path: string | undefined) => (path === undefined || isAbsolute(path) ? path : resolve(baseDirectory, path))
  const connection: MailboxPlan["connection"] = mailbox.connection._tag === "Server"
    ? { ...mailbox.connection, settings: { ...mailbox.connection.settings, caFile: absolute(mailbox.connection.settings.caFile) } }
    : mailbox.connection
  const quarantine: MailboxPlan["quarantine"] = mailbox.quarantine.type === "SMTP"
    ? { ...mailbox.quarantine, smtp: { ...mailbox.quarantine.smtp, caFile: absolute(mailbox.quarantine.smtp.caFile) } }
    : mailbox.quarantine
  return { ...mailbox, connection, quarantine }
}

export const loadConfig = (path: string, options: LoadOptions = {}) =>
  Effect.try({
    try: () => readFileSync(path, "utf8"),
    catch: (cause) =>
      new ConfigInvalid({
        file: path,
        problems: [{ path: "", message: `cannot read the file: ${(cause as NodeJS.ErrnoException).code ?? cause}` }]
      })
  }).pipe(Effect.flatMap((text) => parseConfig(path, text, options)))
