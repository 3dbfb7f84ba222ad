/**
 * Reads, decodes and checks the configuration file. Every problem is reported at once, each
 * with the path of the field to fix; secrets are resolved from the environment or from files
 * and held as `Redacted`.
 */
import { Data, Effect, Either, Layer, ParseResult, Schema } from "effect"
import { readFileSync } from "node:fs"
import { dirname, isAbsolute, resolve } from "node:path"
import { ConfigFile, type SecretSpec, SecretStore, UsageType } from "../domain/config.js"
import { type ConfigProblem, type Plan, plan } from "../domain/plan.js"
import { formatIssues } from "./formatIssues.js"

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

/** Secrets from the environment and from files (relative to the configuration file). */
export const secretStoreLayer = (baseDirectory: string, env: NodeJS.ProcessEnv = process.env, lenient = false) =>
  Layer.succeed(SecretStore, {
    resolve: (spec: SecretSpec) =>
      Effect.suspend((): Effect.Effect<string, string> => {
        if (typeof spec === "string") return Effect.succeed(spec)
        if ("env" in spec) {
          const value = env[spec.env]
          return value === undefined
            ? Effect.fail(`environment variable ${spec.env} is not set`)
            : Effect.succeed(value)
        }
        const path = isAbsolute(spec.file) ? spec.file : resolve(baseDirectory, spec.file)
        return Effect.try({
          try: () => readFileSync(path, "utf8").replace(/\r?\n$/, ""),
          catch: (cause) => `cannot read secret file ${path}: ${(cause as NodeJS.ErrnoException).code ?? cause}`
        })
      }).pipe((effect) => (lenient ? Effect.orElseSucceed(effect, () => "") : effect))
  })

export interface LoadedConfig {
  readonly path: string
  readonly text: string
  readonly file: ConfigFile
  readonly plan: Plan
}

const USAGE_TYPE_ENV = "MAILINTAKE_USAGE_TYPE"

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
      catch: (cause) => invalid([{ path: "", message: `not valid JSON: ${(cause as Error).message}` }])
    })
    const baseDirectory = dirname(resolve(path))
    const decoded = yield* Schema.decodeUnknown(ConfigFile, { errors: "all", onExcessProperty: "error" })(json).pipe(
      Effect.provide(secretStoreLayer(baseDirectory, env, options.secrets === "lenient")),
      Effect.either
    )
    if (Either.isLeft(decoded)) {
      const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      return yield* invalid(formatIssues(issues.map((issue) => ({
        path: formatPath(issue.path),
        rawPath: issue.path,
        message: issue.message,
        tag: issue._tag
      }))))
    }
    const file = decoded.right
    let serverUsageType = file.server.usageType
    const override = env[USAGE_TYPE_ENV]
    if (override !== undefined) {
      if (!Schema.is(UsageType)(override)) {
        return yield* invalid([{
          path: USAGE_TYPE_ENV,
          message: `"${override}" is not a usage type (Production, Test, Development, Training or empty)`
        }])
      }
      serverUsageType = override
    }
    const result = plan(file, { serverUsageType })
    if (result.problems.length > 0) return yield* invalid(result.problems)
    const database = isAbsolute(file.database) ? file.database : resolve(baseDirectory, file.database)
    return { path, text, file, plan: { ...result.plan, database } }
  })

export const loadConfig = (path: string, options: LoadOptions = {}) =>
  Effect.try({
    try: () => readFileSync(path, "utf8"),
    catch: (cause) =>
      new ConfigInvalid({
        file: path,
        problems: [{ path: "", message: `cannot read the file: ${(cause as NodeJS.ErrnoException).code ?? cause}` }]
      })
  }).pipe(Effect.flatMap((text) => parseConfig(path, text, options)))
