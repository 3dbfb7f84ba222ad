/**
 * Runs one contender as a child process and measures it the same way for every tool:
 * - wall time, from spawn to exit (process start-up included, for every contender alike);
 * - CPU seconds (user + sys) and the largest single-process peak RSS from GNU time
 *   (`/usr/bin/time`: the wait4 rusage of the child and of every descendant it waited for);
 * - the peak RSS of the whole process tree, summed, sampled from /proc every 50 ms
 *   (an MDA per message or a forking tool counts in full).
 */
import { spawn, spawnSync } from "node:child_process"
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ensureDebian } from "./common.js"

export interface Measured {
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
  readonly wallSeconds: number
  readonly userSeconds: number | null
  readonly sysSeconds: number | null
  readonly cpuSeconds: number | null
  /** Largest peak RSS of any one process (GNU time's %M), MiB. */
  readonly maxRssMiB: number | null
  /** Largest sum of the RSS of the whole tree at one sample, MiB. */
  readonly treePeakRssMiB: number
  readonly timedOut: boolean
}

export interface RunSpec {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
  /** Run as this user (setpriv; for tools that refuse root). */
  readonly asUser?: { readonly uid: number; readonly gid: number }
  readonly stdoutFile: string
  readonly stderrFile: string
  /** Every run is bounded: killed (whole process group) after this. */
  readonly timeoutMs: number
}

const TIME = "/usr/bin/time"

/** GNU time (Debian package `time`), installed when missing. */
export const ensureGnuTime = (): void => ensureDebian(["time"], [TIME])

const readStatus = (pid: number): string | undefined => {
  try {
    return readFileSync(`/proc/${pid}/status`, "latin1")
  } catch {
    return undefined
  }
}

const kib = (status: string, field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0)

/** The pids of a process and all its descendants (via /proc/<pid>/task/<tid>/children). */
export const treePids = (root: number): Array<number> => {
  const seen: Array<number> = []
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.shift()!
    seen.push(pid)
    let tasks: Array<string>
    try {
      tasks = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue
    }
    for (const tid of tasks) {
      try {
        for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, "latin1").trim().split(/\s+/)) {
          if (child !== "") queue.push(Number(child))
        }
      } catch {
        // gone
      }
    }
  }
  return seen
}

/** Sum of VmRSS of a tree, KiB. */
export const treeRssKiB = (root: number): number =>
  treePids(root).reduce((sum, pid) => {
    const status = readStatus(pid)
    return sum + (status === undefined ? 0 : kib(status, "VmRSS"))
  }, 0)

export const rssKiB = (pid: number): number => {
  const status = readStatus(pid)
  return status === undefined ? 0 : kib(status, "VmRSS")
}

export const hwmKiB = (pid: number): number => {
  const status = readStatus(pid)
  return status === undefined ? 0 : kib(status, "VmHWM")
}

const CLOCK_TICKS = (() => {
  const result = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" })
  const value = Number(result.stdout.trim())
  return Number.isFinite(value) && value > 0 ? value : 100
})()

/**
 * user + sys CPU seconds a live process has used so far: itself, and with `reapedChildren` also
 * the children it has waited for (cutime + cstime).
 */
export const cpuSecondsOf = (pid: number, options: { readonly reapedChildren?: boolean } = {}): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  // Fields after the command name (which may contain spaces) in parentheses: utime, stime,
  // cutime, cstime are fields 14–17 of the whole line.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const own = Number(fields[11]) + Number(fields[12])
  return (options.reapedChildren === true ? own + Number(fields[13]) + Number(fields[14]) : own) / CLOCK_TICKS
}

export const measure = (spec: RunSpec): Promise<Measured> =>
  new Promise((resolve, reject) => {
    ensureGnuTime()
    const timeFile = join(tmpdir(), `mailintake-bench-time-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`)
    const argv = [
      "-o", timeFile, "-f", "%e %U %S %M",
      ...(spec.asUser === undefined ? [] : ["setpriv", `--reuid=${spec.asUser.uid}`, `--regid=${spec.asUser.gid}`, "--init-groups", "--"]),
      spec.command,
      ...spec.args
    ]
    const out = openSync(spec.stdoutFile, "w")
    const err = openSync(spec.stderrFile, "w")
    const started = performance.now()
    const child = spawn(TIME, argv, {
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", out, err],
      detached: true
    })
    closeSync(out)
    closeSync(err)
    let peak = 0
    const sample = () => {
      if (child.pid !== undefined) peak = Math.max(peak, treeRssKiB(child.pid))
    }
    const sampler = setInterval(sample, 50)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // gone
      }
    }, spec.timeoutMs)
    child.once("error", (error) => {
      clearInterval(sampler)
      clearTimeout(timer)
      reject(error)
    })
    child.once("exit", (code, signal) => {
      const wallSeconds = (performance.now() - started) / 1000
      clearInterval(sampler)
      clearTimeout(timer)
      let user: number | null = null
      let sys: number | null = null
      let maxRss: number | null = null
      try {
        const lines = readFileSync(timeFile, "utf8").trim().split("\n")
        const [, u, s, m] = lines.at(-1)!.trim().split(/\s+/).map(Number)
        user = u ?? null
        sys = s ?? null
        maxRss = m === undefined ? null : m / 1024
        rmSync(timeFile, { force: true })
      } catch {
        // killed before time wrote its line
      }
      // GNU time exits with the command's status.
      resolve({
        exitCode: code,
        signal,
        wallSeconds,
        userSeconds: user,
        sysSeconds: sys,
        cpuSeconds: user === null || sys === null ? null : user + sys,
        maxRssMiB: maxRss,
        treePeakRssMiB: Math.max(peak / 1024, maxRss ?? 0),
        timedOut
      })
    })
  })
