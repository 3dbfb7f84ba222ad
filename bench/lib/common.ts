/**
 * Shared plumbing for the benchmarks: options, tables, result files, the machine's state,
 * Debian tools, and a private build of the daemon.
 */
import Database from "better-sqlite3"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { buildInto, linkPackages } from "../../scripts/bundle.js"
import { findDovecot } from "../../scripts/ensureDovecot.js"

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..")
export const RESULTS_DIR = join(REPO, "bench", "results")

// ---------------------------------------------------------------------------------------------
// Options: `--name=value`, `--name value`, `--flag`, or the environment variable BENCH_NAME.
// ---------------------------------------------------------------------------------------------

export const option = (name: string, fallback: string): string => {
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === `--${name}`) {
      const next = argv[i + 1]
      return next === undefined || next.startsWith("--") ? "true" : next
    }
    if (arg.startsWith(`--${name}=`)) return arg.slice(name.length + 3)
  }
  const env = process.env[`BENCH_${name.toUpperCase().replace(/-/g, "_")}`]
  return env ?? fallback
}

export const numberOption = (name: string, fallback: number): number => {
  const value = Number(option(name, String(fallback)))
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a non-negative number`)
  return value
}

export const flag = (name: string): boolean => ["true", "1", "yes"].includes(option(name, "false").toLowerCase())

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

export const log = (line: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`)
}

export type Cell = string | number | null | undefined

const show = (cell: Cell): string =>
  cell === null || cell === undefined ? "-" : typeof cell === "number" ? formatNumber(cell) : cell

export const formatNumber = (n: number): string => {
  if (!Number.isFinite(n)) return String(n)
  if (Number.isInteger(n)) return n.toLocaleString("en-US")
  const abs = Math.abs(n)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** A Markdown table (pastes into bench/README.md as it is). */
export const table = (title: string, headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<Cell>>): string => {
  const cells = rows.map((row) => row.map(show))
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((row) => (row[i] ?? "").length)))
  const numeric = headers.map((_, i) => rows.every((row) => typeof row[i] === "number" || row[i] === null || row[i] === undefined))
  const line = (values: ReadonlyArray<string>) =>
    `| ${values.map((v, i) => (numeric[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!))).join(" | ")} |`
  const separator = `|${widths.map((w, i) => (numeric[i] ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`
  return [`\n### ${title}\n`, line(headers), separator, ...cells.map(line)].join("\n") + "\n"
}

export const stamp = (): string => new Date().toISOString().replace(/[:.]/g, "-").replace(/Z$/, "")

/** Writes bench/results/<name>-<timestamp>.json and returns its path. */
export const writeResults = (name: string, data: unknown): string => {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const file = join(RESULTS_DIR, `${name}-${stamp()}.json`)
  writeFileSync(file, JSON.stringify(data, null, 2) + "\n")
  return relative(REPO, file)
}

/** What the figures depend on: the machine and how busy it was. */
export const machine = () => {
  const load = os.loadavg()
  const meminfo = readFileSync("/proc/meminfo", "utf8")
  const available = /MemAvailable:\s+(\d+)/.exec(meminfo)?.[1]
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    memoryAvailableGiB: available === undefined ? null : Math.round((Number(available) / 2 ** 20) * 10) / 10,
    loadAverage: load.map((l) => Math.round(l * 100) / 100),
    node: process.version,
    kernel: os.release(),
    /** Other work on the machine when the benchmark started: load average above zero is theirs. */
    processesRunning: countRunnable(),
    ...sourceVersion()
  }
}

/** The commit measured, and whether src/ or migrations/ differed from it (read-only git). */
export const sourceVersion = (): { commit: string | null; sourceModified: boolean | null } => {
  const env = { ...process.env, GIT_OPTIONAL_LOCKS: "0" }
  const head = spawnSync("git", ["rev-parse", "HEAD"], { cwd: REPO, encoding: "utf8", env })
  if (head.status !== 0) return { commit: null, sourceModified: null }
  const diff = spawnSync("git", ["diff", "--quiet", "HEAD", "--", "src", "migrations"], { cwd: REPO, env })
  return { commit: head.stdout.trim(), sourceModified: diff.status === null ? null : diff.status !== 0 }
}

const countRunnable = (): number | null => {
  const match = /procs_running (\d+)/.exec(readFileSync("/proc/stat", "utf8"))
  return match ? Number(match[1]) : null
}

export const mb = (bytes: number): number => bytes / (1024 * 1024)

export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

export const which = (program: string): string | undefined => {
  const result = spawnSync("sh", ["-c", `command -v ${program}`], { encoding: "utf8" })
  const path = result.stdout.trim()
  return result.status === 0 && path !== "" ? path : undefined
}

/**
 * Installs Debian packages when one of their programs (a name on PATH, or an absolute path) is missing (as root, like the demo does
 * for Dovecot). Nothing is started by the packages in this image.
 */
export const ensureDebian = (packages: ReadonlyArray<string>, programs: ReadonlyArray<string>): void => {
  const missing = programs.filter((p) => (p.startsWith("/") ? !existsSync(p) : which(p) === undefined && findInSbin(p) === undefined))
  if (missing.length === 0) return
  if (process.getuid?.() !== 0) {
    throw new Error(`${missing.join(", ")} not installed; run as root or: apt-get install -y ${packages.join(" ")}`)
  }
  log(`installing ${packages.join(", ")} with apt-get (missing: ${missing.join(", ")})`)
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  const update = spawnSync("apt-get", ["update"], { stdio: ["ignore", process.stderr, process.stderr], env })
  if (update.status !== 0) throw new Error("apt-get update failed")
  const install = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...packages], {
    stdio: ["ignore", process.stderr, process.stderr],
    env
  })
  if (install.status !== 0) throw new Error(`apt-get install ${packages.join(" ")} failed`)
}

const findInSbin = (program: string): string | undefined => {
  for (const dir of ["/usr/local/sbin", "/usr/sbin", "/sbin"]) {
    try {
      if (readdirSync(dir).includes(program)) return join(dir, program)
    } catch {
      // no such dir
    }
  }
  return undefined
}

export const ensureDovecotInstalled = async (): Promise<void> => {
  const { ensureDovecot } = await import("../../scripts/ensureDovecot.js")
  await ensureDovecot()
  if (findDovecot() === undefined) throw new Error("dovecot not found after install")
}

export const version = (command: string, args: ReadonlyArray<string>): string => {
  const result = spawnSync(command, args, { encoding: "utf8" })
  return `${result.stdout}${result.stderr}`.split("\n").find((l) => l.trim() !== "")?.trim() ?? "unknown"
}

/** Creates a system user (no login) for tools that refuse to run as root; returns uid/gid. */
export const ensureUser = (name: string): { uid: number; gid: number; home: string } => {
  const lookup = () => spawnSync("id", ["-u", name], { encoding: "utf8" })
  if (lookup().status !== 0) {
    const created = spawnSync("useradd", ["--system", "--create-home", "--home-dir", `/var/lib/${name}`, "--shell", "/usr/sbin/nologin", name], {
      encoding: "utf8"
    })
    if (created.status !== 0) throw new Error(`useradd ${name} failed: ${created.stderr}`)
  }
  const uid = Number(spawnSync("id", ["-u", name], { encoding: "utf8" }).stdout.trim())
  const gid = Number(spawnSync("id", ["-g", name], { encoding: "utf8" }).stdout.trim())
  const home = spawnSync("getent", ["passwd", name], { encoding: "utf8" }).stdout.split(":")[5] ?? `/var/lib/${name}`
  return { uid, gid, home }
}

// ---------------------------------------------------------------------------------------------
// A private build of the daemon
// ---------------------------------------------------------------------------------------------

export interface Build {
  readonly dir: string
  /** node + this file runs the CLI (bin/mailintake.js of the snapshot). */
  readonly bin: string
  /** Compiled bench helpers (bare clients), by base name: `bareImap` → .../bench/bareImap.js */
  readonly benchScript: (name: string) => string
  readonly cleanup: () => void
}

const transpile = (from: string, to: string): void => {
  const out = ts.transpileModule(readFileSync(from, "utf8"), {
    fileName: from,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      isolatedModules: true,
      esModuleInterop: true,
      sourceMap: false
    }
  })
  mkdirSync(dirname(to), { recursive: true })
  writeFileSync(to, out.outputText)
}

/**
 * Bundles src/ (scripts/bundle.ts, as `npm run build` does) into a private directory with its
 * own bin/ and migrations/, so a benchmark measures one consistent build of the daemon even
 * while others rebuild dist/ or edit src/. `--use-dist` runs the repository's bin/ instead
 * (after `npm run build`).
 */
export const buildDaemon = (benchHelpers: ReadonlyArray<string> = []): Build => {
  const useDist = flag("use-dist")
  const dir = mkdtempSync(join(os.tmpdir(), "mailintake-bench-build-"))
  // Outside the repository: nothing of it shows in `git status`.
  let bin = join(REPO, "bin", "mailintake.js")
  if (useDist) {
    log("building dist/ with npm run build (--use-dist)")
    const built = spawnSync("npm", ["run", "build"], { cwd: REPO, stdio: ["ignore", process.stderr, process.stderr] })
    if (built.status !== 0) throw new Error("npm run build failed")
    linkPackages(dir)
  } else {
    const started = Date.now()
    bin = buildInto(dir)
    log(`bundled src/ into ${relative(REPO, dir)} in ${Date.now() - started} ms`)
  }
  for (const name of benchHelpers) transpile(join(REPO, "bench", `${name}.ts`), join(dir, "bench", `${name}.js`))
  return {
    dir,
    bin,
    benchScript: (name) => join(dir, "bench", `${name}.js`),
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
}

/** A scratch directory that mail programs running as other users can traverse. */
export const scratchDir = (label: string): string => {
  const dir = mkdtempSync(join(os.tmpdir(), `mailintake-bench-${label}-`))
  spawnSync("chmod", ["755", dir])
  return dir
}


/** How many events of each type a daemon's event log holds (read-only, beside a running daemon). */
export const eventCounts = (database: string): Record<string, number> => {
  const db = new Database(database, { readonly: true })
  try {
    const rows = db.prepare("SELECT type, COUNT(*) AS n FROM events GROUP BY type").all() as Array<{ type: string; n: number }>
    return Object.fromEntries(rows.map((row) => [row.type, row.n]))
  } finally {
    db.close()
  }
}
