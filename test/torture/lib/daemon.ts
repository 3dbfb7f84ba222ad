/**
 * Runs the real daemon (`node bin/mailintake.js ...`) for the torture suite and tells, for each
 * process, whether it ended the way we made it end:
 * - a crash is an exit we did not cause: any exit of `run` (the daemon) that was not our
 *   SIGKILL/SIGTERM, a non-zero exit after our SIGTERM, a `run --once` that ended other than
 *   with 0 or 1, or any process whose stderr shows an uncaught exception or a fatal V8 error;
 * - peak RSS is the kernel's high-water mark (VmHWM) sampled from /proc every 100 ms.
 * stdout and stderr go straight to files (the daemon writes to them even while being killed).
 */
import { spawn, type ChildProcess } from "node:child_process"
import { closeSync, openSync, readFileSync } from "node:fs"
import { join } from "node:path"

export interface DaemonExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface DaemonProcess {
  readonly pid: number
  readonly label: string
  readonly stdoutFile: string
  readonly stderrFile: string
  readonly exited: Promise<DaemonExit>
  readonly running: boolean
  /** Sends a signal that we take responsibility for (not counted as a crash). */
  kill(signal: "SIGKILL" | "SIGTERM"): void
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with whether it stopped in time. */
  stop(graceMs?: number): Promise<{ readonly exit: DaemonExit; readonly inTime: boolean }>
  stderr(): string
}

export interface DaemonRecord {
  readonly label: string
  readonly args: ReadonlyArray<string>
  readonly once: boolean
  sent: NodeJS.Signals | undefined
  exit: DaemonExit | undefined
  peakRssKiB: number
  crash: string | undefined
  readonly stdoutFile: string
  readonly stderrFile: string
}

const FATAL = /triggerUncaughtException|FATAL ERROR|JavaScript heap out of memory|Maximum call stack size exceeded|Segmentation fault|Unhandled promise rejection|UnhandledPromiseRejection/

const readVmHwmKiB = (pid: number): number => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "latin1")
    const match = /^VmHWM:\s+(\d+) kB/m.exec(status)
    return match === null ? 0 : Number(match[1])
  } catch {
    return 0
  }
}

/** Every daemon process of one scenario: spawns them, and sums up crashes and peak memory. */
export class Daemons {
  readonly records: Array<DaemonRecord> = []
  private counter = 0
  private readonly live = new Map<ChildProcess, DaemonRecord>()

  constructor(
    private readonly bin: string,
    private readonly logDir: string,
    private readonly baseEnv: NodeJS.ProcessEnv = {}
  ) {}

  start(args: ReadonlyArray<string>, options: { readonly label?: string; readonly env?: NodeJS.ProcessEnv } = {}): DaemonProcess {
    const n = ++this.counter
    const label = options.label ?? `daemon-${n}`
    const stdoutFile = join(this.logDir, `${String(n).padStart(3, "0")}-${label}.stdout`)
    const stderrFile = join(this.logDir, `${String(n).padStart(3, "0")}-${label}.stderr`)
    const out = openSync(stdoutFile, "a")
    const err = openSync(stderrFile, "a")
    const child = spawn(process.execPath, [this.bin, ...args], {
      env: { ...process.env, MAILINTAKE_LOG_LEVEL: process.env.TORTURE_LOG_LEVEL ?? "info", ...this.baseEnv, ...options.env },
      stdio: ["ignore", out, err]
    })
    closeSync(out)
    closeSync(err)
    const record: DaemonRecord = {
      label,
      args,
      once: args.includes("--once") || args[0] !== "run",
      sent: undefined,
      exit: undefined,
      peakRssKiB: 0,
      crash: undefined,
      stdoutFile,
      stderrFile
    }
    this.records.push(record)
    this.live.set(child, record)
    const sample = () => {
      if (child.pid !== undefined) record.peakRssKiB = Math.max(record.peakRssKiB, readVmHwmKiB(child.pid))
    }
    const sampler = setInterval(sample, 100)
    sampler.unref()
    const exited = new Promise<DaemonExit>((resolve) => {
      child.once("exit", (code, signal) => {
        clearInterval(sampler)
        this.live.delete(child)
        const exit = { code, signal }
        record.exit = exit
        record.crash = crashOf(record, exit)
        resolve(exit)
      })
    })
    const kill = (signal: "SIGKILL" | "SIGTERM") => {
      if (child.exitCode !== null || child.signalCode !== null) return
      sample()
      record.sent = record.sent === "SIGKILL" ? "SIGKILL" : signal
      child.kill(signal)
    }
    return {
      pid: child.pid ?? -1,
      label,
      stdoutFile,
      stderrFile,
      exited,
      get running() {
        return child.exitCode === null && child.signalCode === null
      },
      kill,
      stop: async (graceMs = 20_000) => {
        kill("SIGTERM")
        const timer = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), graceMs).unref())
        const first = await Promise.race([exited, timer])
        if (first !== "late") return { exit: first, inTime: true }
        kill("SIGKILL")
        return { exit: await exited, inTime: false }
      },
      stderr: () => readFileSync(stderrFile, "utf8")
    }
  }

  /** Runs a command to its end (bounded): `events`, `status`, `run --once`. */
  async runToEnd(args: ReadonlyArray<string>, options: { readonly label?: string; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number } = {}) {
    const process_ = this.start(args, options)
    const timeoutMs = options.timeoutMs ?? 120_000
    const timer = new Promise<"late">((resolve) => setTimeout(() => resolve("late"), timeoutMs).unref())
    const first = await Promise.race([process_.exited, timer])
    let hung = false
    if (first === "late") {
      hung = true
      process_.kill("SIGKILL")
      await process_.exited
    }
    return {
      exit: await process_.exited,
      hung,
      stdout: readFileSync(process_.stdoutFile),
      stderr: readFileSync(process_.stderrFile, "utf8")
    }
  }

  /** Kills whatever still runs (a scenario that failed half-way). */
  async killAll(): Promise<void> {
    const waits: Array<Promise<unknown>> = []
    for (const [child, record] of this.live) {
      waits.push(new Promise((resolve) => child.once("exit", resolve)))
      record.sent = "SIGKILL"
      child.kill("SIGKILL")
    }
    await Promise.all(waits)
  }

  get crashes(): Array<string> {
    return this.records.flatMap((record) => (record.crash === undefined ? [] : [`${record.label}: ${record.crash}`]))
  }

  get peakRssMiB(): number {
    return Math.max(0, ...this.records.map((record) => record.peakRssKiB)) / 1024
  }

  /** All stderr of every process of this scenario, concatenated (for log checks). */
  allStderr(): string {
    return this.records.map((record) => safeRead(record.stderrFile)).join("\n")
  }

  get files(): Array<string> {
    return this.records.flatMap((record) => [record.stdoutFile, record.stderrFile])
  }
}

const safeRead = (file: string): string => {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

const crashOf = (record: DaemonRecord, exit: DaemonExit): string | undefined => {
  const stderr = safeRead(record.stderrFile)
  const fatal = FATAL.exec(stderr)
  if (fatal !== null) return `stderr shows a fatal error: ${fatal[0]}`
  if (exit.signal !== null) {
    return exit.signal === record.sent || (record.sent === "SIGKILL") ? undefined : `killed by ${exit.signal}, which we did not send`
  }
  if (record.once) return exit.code === 0 || exit.code === 1 ? undefined : `exited with ${exit.code}`
  if (record.sent === undefined) return `the daemon exited by itself with code ${exit.code}: ${lastLines(stderr)}`
  if (exit.code !== 0) return `exit code ${exit.code} after ${record.sent}: ${lastLines(stderr)}`
  return undefined
}

const lastLines = (text: string): string => text.trim().split("\n").slice(-3).join(" | ").slice(0, 600)
