/**
 * What every torture scenario gets: the daemon to run, a scratch directory, a logger, the
 * seed, and a registry of secrets and artifacts (logs, databases, command output) that the
 * security scenario scans at the end for any form of any secret.
 */
import { randomBytes } from "node:crypto"
import { mkdirSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export interface TortureContext {
  /** The scratch directory of the whole run (every scenario's logs and databases). */
  readonly root: string
  /** node + this file runs the CLI. */
  readonly bin: string
  readonly seed: number
  readonly log: (line: string) => void
  /** A new scratch directory (mode 755, so Dovecot's users can traverse it). */
  readonly dir: (label: string) => string
  /** A random password, remembered for the secrets scan (with its user, for the SASL forms). */
  readonly secret: (label: string, user?: string) => string
  readonly secrets: Array<{ readonly label: string; readonly value: string; readonly user?: string }>
  /** Files the secrets scan reads (logs, databases and their WAL, command output). */
  readonly artifacts: Array<string>
  /** Directories with databases: every events.db* in them is scanned. */
  readonly databaseDirs: Array<string>
}

export const REPO_BIN = resolve(import.meta.dirname, "../../../bin/mailintake.js")

export const makeContext = (options: { readonly bin?: string; readonly seed: number; readonly log?: (line: string) => void; readonly root?: string }): TortureContext => {
  const root = options.root ?? mkdtempSync(join(tmpdir(), "mailintake-torture-"))
  let n = 0
  const secrets: TortureContext["secrets"] = []
  return {
    root,
    bin: options.bin ?? REPO_BIN,
    seed: options.seed,
    log: options.log ?? (() => {}),
    dir: (label) => {
      const dir = join(root, `${String(++n).padStart(2, "0")}-${label.replace(/[^A-Za-z0-9_-]/g, "-")}`)
      mkdirSync(dir, { recursive: true, mode: 0o755 })
      return dir
    },
    secret: (label, user) => {
      const value = `tt-${label.replace(/[^A-Za-z0-9]/g, "").slice(0, 8)}-${randomBytes(9).toString("hex")}`
      secrets.push(user === undefined ? { label, value } : { label, value, user })
      return value
    },
    secrets,
    artifacts: [],
    databaseDirs: []
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passed; says which. */
export const waitUntil = async (check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await sleep(everyMs)
  }
}
