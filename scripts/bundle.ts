/**
 * Bundles the CLI and its two worker scripts (the parser's and SQLite's) into one file each
 * under `dist/bundle/`, which is what `bin/mailintake.js` runs. Loading Effect,
 * @effect/platform-node and the mail libraries as hundreds of separate ES modules cost 2–3 s of
 * CPU at every start (most of a `run --once` on a small mailbox); one bundled file loads in a
 * fraction of that.
 *
 * `tsx scripts/bundle.ts [outDir]` (`npm run build` runs it after tsc; default: dist/bundle of this
 * repository, with the code cache `bin/compileBundle.js` reads). Also imported by
 * the benchmarks, which build a private copy of the daemon the same way.
 *
 * Stays outside the bundle: better-sqlite3 (a native addon) and pino (imapflow's logger, whose
 * transports locate worker files relative to their own sources).
 */
import { type BuildOptions, buildSync } from "esbuild"
import { spawnSync } from "node:child_process"
import { cpSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const repository = resolve(dirname(fileURLToPath(import.meta.url)), "..")

const entries = {
  mailintake: ["src", "main.ts"],
  parserWorker: ["src", "processing", "parserWorker.ts"],
  sqliteWorker: ["src", "eventlog", "sqliteThread", "sqliteWorker.ts"]
} as const

/** What the three builds share. */
const common: BuildOptions = {
  bundle: true,
  platform: "node",
  target: "node20",
  sourcemap: true,
  // Without whitespace and comments: V8 keeps the whole source text on the heap, and one
  // non-ASCII character in a comment makes all of it two bytes a character (12 MB instead of
  // 4). Names are kept, so stack traces still read. Measured: 110 → 88 MB RSS at start.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: "none",
  external: ["better-sqlite3", "pino"],
  logLevel: "warning"
}

/**
 * Writes `mailintake.cjs`, `parserWorker.js` and `sqliteWorker.js` (or only the `only` ones) into
 * `outDir`. The bundle finds `migrations/` two directories up (`<root>/dist/bundle/` →
 * `<root>/migrations/`), like the tsc output does, and the workers next to itself.
 *
 * The CLI is CommonJS: `bin/compileBundle.js` compiles it as a script with a V8 code cache, which
 * Node 20 offers for scripts only (an ES module's cache needs `--experimental-vm-modules`).
 * `import.meta.url` becomes the bundle's file URL. The workers stay ES modules.
 */
export const bundle = (
  outDir: string = join(repository, "dist", "bundle"),
  root: string = repository,
  only: ReadonlyArray<keyof typeof entries> = Object.keys(entries) as Array<keyof typeof entries>
): void => {
  if (only.includes("mailintake")) {
    // A cache of the previous bundle would be rejected anyway; writeCodeCache makes the new one.
    rmSync(join(outDir, "mailintake.cjs.v8cache"), { force: true })
    buildSync({
      ...common,
      entryPoints: { mailintake: join(root, ...entries.mailintake) },
      outdir: outDir,
      outExtension: { ".js": ".cjs" },
      format: "cjs",
      define: { "import.meta.url": "__bundleUrl" },
      banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" }
    })
  }
  const workers = only.filter((name) => name !== "mailintake")
  if (workers.length === 0) return
  buildSync({
    ...common,
    entryPoints: Object.fromEntries(workers.map((name) => [name, join(root, ...entries[name])])),
    outdir: outDir,
    format: "esm",
    // CommonJS dependencies call require() for Node's built-ins; an ES module has none.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" }
  })
}

/**
 * Writes the V8 code cache of the bundle that the executable `bin` runs
 * (`dist/bundle/mailintake.cjs.v8cache` beside its bin/) by running `bin --help` once: the cache
 * then holds the start-up's compiled functions too.
 */
export const writeCodeCache = (bin: string = join(repository, "bin", "mailintake.js")): void => {
  const run = spawnSync(process.execPath, [bin, "--help"], {
    env: { ...process.env, MAILINTAKE_WRITE_CODE_CACHE: "1" },
    stdio: ["ignore", "ignore", "pipe"],
    encoding: "utf8"
  })
  if (run.status !== 0) throw new Error(`${bin} --help failed (${run.status ?? run.signal}): ${run.stderr}`)
}

/** Makes `dir` a package of ES modules that finds the project's packages through a node_modules link. */
export const linkPackages = (dir: string): void => {
  symlinkSync(join(repository, "node_modules"), join(dir, "node_modules"), "dir")
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }))
}

/**
 * A self-contained build of the daemon in `dir` (which exists): bin/, dist/bundle/ with its code
 * cache and migrations/, finding the project's packages through a node_modules link. The
 * benchmarks run one, so that a run measures one consistent build while others edit src/ or
 * rebuild dist/. Returns the path of its bin/mailintake.js.
 */
export const buildInto = (dir: string): string => {
  linkPackages(dir)
  bundle(join(dir, "dist", "bundle"))
  cpSync(join(repository, "migrations"), join(dir, "migrations"), { recursive: true })
  cpSync(join(repository, "bin"), join(dir, "bin"), { recursive: true })
  const bin = join(dir, "bin", "mailintake.js")
  writeCodeCache(bin)
  return bin
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const outDir = process.argv[2] ? resolve(process.argv[2]) : undefined
  bundle(outDir)
  // The repository's bin/ runs the default dist/bundle only.
  if (outDir === undefined) writeCodeCache()
}
