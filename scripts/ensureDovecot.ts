/**
 * Makes sure Dovecot (IMAP + POP3) is installed, for the demo and the integration tests, which
 * run a private, throw-away Dovecot of their own (test/support/dovecot.ts).
 *
 * When `dovecot` is not found, it is installed from the distribution's packages (Debian/Ubuntu):
 *
 *   apt-get update
 *   DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
 *     dovecot-core dovecot-imapd dovecot-pop3d
 *
 * That takes root. Nothing is started: Debian's packages would start a system Dovecot where
 * init scripts are allowed to run, but the harness never uses it (it has its own config, ports
 * and directories).
 *
 * Use it as a module (`await ensureDovecot()`) or run it: `tsx scripts/ensureDovecot.ts`
 * (exit code 0 when Dovecot is there or was installed, 1 otherwise).
 */
import { spawn } from "node:child_process"
import { accessSync, constants } from "node:fs"
import { delimiter, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const PACKAGES = ["dovecot-core", "dovecot-imapd", "dovecot-pop3d"] as const

/** Where sbin programs live when PATH (e.g. a non-login shell or sudo's secure_path) omits them. */
const SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"] as const

export class EnsureDovecotError extends Error {
  override readonly name = "EnsureDovecotError"
}

const log = (line: string): void => {
  process.stderr.write(`[ensureDovecot] ${line}\n`)
}

const isExecutable = (file: string): boolean => {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** The full path of `program` on PATH, or undefined. */
export const which = (program: string, path: string = process.env.PATH ?? ""): string | undefined => {
  for (const dir of path.split(delimiter)) {
    if (dir === "") continue
    const candidate = join(dir, program)
    if (isExecutable(candidate)) return candidate
  }
  return undefined
}

/**
 * Finds `dovecot`: on PATH, or in an sbin directory PATH leaves out. In the second case the
 * directory is added to this process's PATH, so that children (the test harness spawns plain
 * `dovecot`) find it too.
 */
export const findDovecot = (): string | undefined => {
  const onPath = which("dovecot")
  if (onPath !== undefined) return onPath
  for (const dir of SBIN_DIRS) {
    const candidate = join(dir, "dovecot")
    if (isExecutable(candidate)) {
      process.env.PATH = [process.env.PATH ?? "", dir].filter(Boolean).join(delimiter)
      log(`found ${candidate} (not on PATH; added ${dir} to PATH)`)
      return candidate
    }
  }
  return undefined
}

/** Runs a command with the terminal as its output, printing it first. */
const run = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<void> => {
  const shown = [...Object.entries(env).map(([k, v]) => `${k}=${v}`), command, ...args].join(" ")
  log(`$ ${shown}`)
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      // stdout of apt goes to stderr: stdout of a script that uses this module stays its own.
      stdio: ["ignore", process.stderr, process.stderr]
    })
    child.once("error", (error) => reject(new EnsureDovecotError(`cannot run ${command}: ${error.message}`)))
    child.once("exit", (code, signal) => {
      if (code === 0) resolvePromise()
      else reject(new EnsureDovecotError(`"${shown}" failed (${signal ?? `exit code ${code}`})`))
    })
  })
}

const manualInstall = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES.join(" ")}`

/**
 * Resolves once `dovecot` can be run: at once when it is installed, after installing it with
 * apt-get otherwise. Rejects with an `EnsureDovecotError` that says what to do when it cannot
 * install it (not root, no apt-get, apt-get failed).
 */
export const ensureDovecot = async (): Promise<void> => {
  const found = findDovecot()
  if (found !== undefined) {
    log(`dovecot is installed: ${found}`)
    return
  }

  log("dovecot is not installed (not on PATH, nor in /usr/sbin or /sbin)")
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new EnsureDovecotError(
      "dovecot is not installed, and installing it takes root. Run this again as root " +
        `(e.g. sudo npm run demo), or install it yourself first:\n  sudo sh -c '${manualInstall}'`
    )
  }
  if (which("apt-get") === undefined) {
    throw new EnsureDovecotError(
      "dovecot is not installed and apt-get was not found (this installer knows Debian and Ubuntu only). " +
        "Install Dovecot 2.3 (with IMAP and POP3) with your system's package manager, so that `dovecot` is on PATH."
    )
  }

  log(`installing ${PACKAGES.join(", ")} with apt-get (about a minute)`)
  const started = Date.now()
  await run("apt-get", ["update"])
  await run("apt-get", ["install", "-y", "--no-install-recommends", ...PACKAGES], { DEBIAN_FRONTEND: "noninteractive" })

  const installed = findDovecot()
  if (installed === undefined) {
    throw new EnsureDovecotError(`apt-get installed ${PACKAGES.join(", ")}, but dovecot is still not found on PATH or in ${SBIN_DIRS.join(", ")}`)
  }
  // The harness makes a self-signed certificate with openssl; dovecot-core depends on it.
  if (which("openssl") === undefined) {
    throw new EnsureDovecotError("openssl is not on PATH (the Dovecot harness needs it for a self-signed certificate)")
  }
  log(`installed ${installed} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

// Run directly: `tsx scripts/ensureDovecot.ts`.
const invokedDirectly = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)
if (invokedDirectly) {
  ensureDovecot().then(
    () => process.exit(0),
    (error: unknown) => {
      log(error instanceof EnsureDovecotError ? error.message : `failed: ${error instanceof Error ? error.stack : String(error)}`)
      process.exit(1)
    }
  )
}
