/**
 * Bundles the CLI and its two worker scripts (the parser's and SQLite's) into one file each
 * under `dist/bundle/`, which is what `bin/mailintake.js` runs. Loading Effect,
 * @effect/platform-node and the mail libraries as hundreds of separate ES modules cost 2–3 s of
 * CPU at every start (most of a `run --once` on a small mailbox); one bundled file loads in a
 * fraction of that.
 *
 * `tsx scripts/bundle.ts [outDir]` (`npm run build` runs it after tsc) (default: dist/bundle of this repository). Also imported by
 * the benchmarks, which build a private copy of the daemon the same way.
 *
 * Stays outside the bundle: better-sqlite3 (a native addon) and pino (imapflow's logger, whose
 * transports locate worker files relative to their own sources).
 */
import { buildSync } from "esbuild"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const repository = resolve(dirname(fileURLToPath(import.meta.url)), "..")

const entries = {
  mailintake: ["src", "main.ts"],
  parserWorker: ["src", "processing", "parserWorker.ts"],
  sqliteWorker: ["src", "eventlog", "sqliteThread", "sqliteWorker.ts"]
} as const

/**
 * Writes `mailintake.js`, `parserWorker.js` and `sqliteWorker.js` (or only the `only` ones) into
 * `outDir`. The bundle finds `migrations/` two directories up (`<root>/dist/bundle/` →
 * `<root>/migrations/`), like the tsc output does, and the workers next to itself.
 */
export const bundle = (
  outDir: string = join(repository, "dist", "bundle"),
  root: string = repository,
  only: ReadonlyArray<keyof typeof entries> = Object.keys(entries) as Array<keyof typeof entries>
): void => {
  buildSync({
    entryPoints: Object.fromEntries(only.map((name) => [name, join(root, ...entries[name])])),
    outdir: outDir,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: true,
    // Without whitespace and comments: V8 keeps the whole source text on the heap, and one
    // non-ASCII character in a comment makes all of it two bytes a character (12 MB instead of
    // 4). Names are kept, so stack traces still read. Measured: 110 → 88 MB RSS at start.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    external: ["better-sqlite3", "pino"],
    // CommonJS dependencies call require() for Node's built-ins; an ES module has none.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: "warning"
  })
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  bundle(process.argv[2] ? resolve(process.argv[2]) : undefined)
}
