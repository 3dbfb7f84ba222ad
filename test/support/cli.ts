/**
 * Runs the real `mailintake` executable (bin/mailintake.js over the compiled dist/) the way an
 * operator does, and writes configuration files for it.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export const BIN = resolve(import.meta.dirname, "../../bin/mailintake.js")

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: Buffer
  readonly stderr: string
}

export const tempDir = (label: string): string => mkdtempSync(join(tmpdir(), `mailintake-${label}-`))

export const writeConfig = (dir: string, config: unknown, name = "mailintake.json"): string => {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(config, null, 2))
  return path
}

/** Starts the CLI; the caller decides when it ends. */
export const spawnCli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): ChildProcess & { output: { stdout: Array<Buffer>; stderr: Array<Buffer> } } => {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, MAILINTAKE_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  }) as ChildProcess & { output: { stdout: Array<Buffer>; stderr: Array<Buffer> } }
  child.output = { stdout: [], stderr: [] }
  child.stdout!.on("data", (chunk: Buffer) => child.output.stdout.push(chunk))
  child.stderr!.on("data", (chunk: Buffer) => child.output.stderr.push(chunk))
  return child
}

export const waitForExit = (child: ReturnType<typeof spawnCli>): Promise<CliResult> =>
  new Promise((resolve) => {
    const done = (code: number | null, signal: NodeJS.Signals | null) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(child.output.stdout),
        stderr: Buffer.concat(child.output.stderr).toString("utf8")
      })
    if (child.exitCode !== null || child.signalCode !== null) done(child.exitCode, child.signalCode)
    else child.once("close", done)
  })

/** Runs the CLI to the end. */
export const runCli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
  waitForExit(spawnCli(args, env))

export const eventsJson = async (config: string, ...extra: Array<string>) => {
  const result = await runCli(["events", "--config", config, "--json", ...extra])
  if (result.code !== 0) throw new Error(`events failed (${result.code}): ${result.stderr}`)
  return result.stdout
    .toString("utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as { position: number; mailbox: string; type: string; at: string; data: Record<string, any> })
}

/** An IMAP mailbox of the test Dovecot, trusting its self-signed certificate through caFile. */
export const imapMailbox = (
  dovecot: { host: string; imapsPort: number; caFile: string },
  id: string,
  user: string,
  password: unknown,
  extra: Record<string, unknown> = {}
) => ({
  id,
  host: dovecot.host,
  port: dovecot.imapsPort,
  tls: "implicit",
  caFile: dovecot.caFile,
  user,
  password,
  connectTimeoutSeconds: 5,
  commandTimeoutSeconds: 60,
  ...extra
})

export const smtpQuarantine = (smtp: { host: string; port: number }, mailbox = "quarantine@example.test") => ({
  type: "SMTP",
  mailbox,
  smtp: { host: smtp.host, port: smtp.port, ssl: false, user: "", password: "", sender: "mailintake@example.test" }
})
