/**
 * Summarises a V8 .cpuprofile (`node --cpu-prof`): self time by function and by package.
 */
import { existsSync, readFileSync } from "node:fs"
import { SourceMap } from "node:module"
import { fileURLToPath } from "node:url"

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
    readonly columnNumber: number
  }
  readonly children?: ReadonlyArray<number>
}

interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
  readonly startTime: number
  readonly endTime: number
}

export interface ProfileSummary {
  readonly totalMs: number
  readonly functions: ReadonlyArray<{ readonly name: string; readonly where: string; readonly selfMs: number; readonly percent: number }>
  readonly packages: ReadonlyArray<{ readonly name: string; readonly selfMs: number; readonly percent: number }>
}

/** Where a function lives: a package, a folder of the daemon, node's internals or V8. */
export const packageOf = (url: string, functionName: string): string => {
  if (url === "") {
    return ["(garbage collector)", "(idle)", "(program)", "(root)"].includes(functionName) ? functionName : "(native)"
  }
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (modules !== null) return modules[1]!
  const dist = /\/(?:dist|src)\/([^/]+)\//.exec(url)
  if (dist !== null) return `mailintake/${dist[1]}`
  if (url.startsWith("node:")) return "node (core)"
  return url.replace(/^file:\/\//, "")
}

/**
 * The daemon runs as a bundle (scripts/bundle.ts): a frame in it is mapped back, through the
 * bundle's source map, to the source file (and so the package) it came from.
 */
const sourceMapped = () => {
  const maps = new Map<string, SourceMap | undefined>()
  const mapOf = (url: string): SourceMap | undefined => {
    if (!maps.has(url)) {
      const file = url.startsWith("file://") ? fileURLToPath(url) : url
      maps.set(url, existsSync(`${file}.map`) ? new SourceMap(JSON.parse(readFileSync(`${file}.map`, "utf8"))) : undefined)
    }
    return maps.get(url)
  }
  return (frame: ProfileNode["callFrame"]): { url: string; lineNumber: number } => {
    const map = frame.url.endsWith(".js") ? mapOf(frame.url) : undefined
    const entry = map?.findEntry(frame.lineNumber, frame.columnNumber) as
      | { originalSource?: string; originalLine?: number }
      | undefined
    return entry?.originalSource !== undefined
      ? { url: entry.originalSource, lineNumber: entry.originalLine ?? 0 }
      : { url: frame.url, lineNumber: frame.lineNumber }
  }
}

export const summarize = (file: string, top = 20): ProfileSummary => {
  const original = sourceMapped()
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const functions = new Map<string, { name: string; where: string; micros: number }>()
  const packages = new Map<string, number>()
  for (const [id, micros] of self) {
    const node = byId.get(id)!
    const { functionName } = node.callFrame
    const { lineNumber, url } = original(node.callFrame)
    const name = functionName === "" ? "(anonymous)" : functionName
    const short = url.replace(/^file:\/\/.*?node_modules\//, "").replace(/^file:\/\/.*?\/(dist|src)\//, "$1/")
    const where = url === "" ? "" : `${short}:${lineNumber + 1}`
    const key = `${name} ${where}`
    const entry = functions.get(key) ?? { name, where, micros: 0 }
    entry.micros += micros
    functions.set(key, entry)
    const pkg = packageOf(url, functionName)
    packages.set(pkg, (packages.get(pkg) ?? 0) + micros)
  }
  const pct = (micros: number) => Math.round((micros / total) * 1000) / 10
  return {
    totalMs: Math.round(total / 1000),
    functions: [...functions.values()]
      .sort((a, b) => b.micros - a.micros)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, selfMs: Math.round(f.micros / 1000), percent: pct(f.micros) })),
    packages: [...packages.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, micros]) => ({ name, selfMs: Math.round(micros / 1000), percent: pct(micros) }))
  }
}
