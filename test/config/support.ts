/**
 * Configuration files for the config tests, and parseConfig run the way the CLI runs it: every
 * test states the problems a person would read, with their paths.
 */
import { Effect, Either } from "effect"
import { expect } from "vitest"
import { type ConfigInvalid, type LoadedConfig, parseConfig } from "../../src/config/loadConfig.js"
import type { ConfigProblem, Plan } from "../../src/domain/plan.js"

/** Where the configuration is said to live when no test file is written; secrets files resolve from here. */
export const VIRTUAL_PATH = "/nonexistent/mailintake/mailintake.json"

export const smtpQuarantine = {
  type: "SMTP",
  mailbox: "quarantine@example.com",
  smtp: { host: "smtp.example.com", sender: "mailintake@example.com" }
}

export const imapMailbox = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  host: "imap.example.com",
  user: id,
  password: "imap-password",
  ...extra
})

export const graphMailbox = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  tenant: "contoso",
  clientId: "client-id",
  clientSecret: "graph-secret",
  user: `${id}@example.com`,
  ...extra
})

export const configuration = (extra: Record<string, unknown> = {}) => ({
  name: "support",
  usageType: "Production",
  integrationType: "IMAP",
  mailboxes: [imapMailbox("support-inbox")],
  ...extra
})

/** A valid file with one IMAP configuration quarantining by SMTP through the defaults. */
export const configFile = (
  configurations: ReadonlyArray<unknown> = [configuration()],
  extra: Record<string, unknown> = {}
) => ({
  server: { usageType: "Production" },
  defaults: { quarantine: smtpQuarantine },
  configurations,
  ...extra
})

export interface ParseOptions {
  readonly env?: NodeJS.ProcessEnv
  readonly path?: string
}

export const parse = (config: unknown, options: ParseOptions = {}): Promise<Either.Either<LoadedConfig, ConfigInvalid>> =>
  Effect.runPromise(Effect.either(parseConfig(
    options.path ?? VIRTUAL_PATH,
    typeof config === "string" ? config : JSON.stringify(config, null, 2),
    { env: options.env ?? {} }
  )))

/** The problems of a file that must be refused. */
export const problemsOf = async (config: unknown, options: ParseOptions = {}): Promise<ReadonlyArray<ConfigProblem>> => {
  const result = await parse(config, options)
  if (Either.isRight(result)) throw new Error(`expected the configuration to be refused:\n${JSON.stringify(config, null, 2)}`)
  expect(result.left.file).toBe(options.path ?? VIRTUAL_PATH)
  return result.left.problems
}

/** The plan of a file that must be accepted. */
export const planOf = async (config: unknown, options: ParseOptions = {}): Promise<Plan> => {
  const result = await parse(config, options)
  if (Either.isLeft(result)) throw new Error(`expected a valid configuration, got:\n${result.left.message}`)
  return result.right.plan
}
