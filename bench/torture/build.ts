/**
 * A private build of the daemon for a torture run: src/ transpiled (each module on its own,
 * like tsc with isolatedModules) into a temporary directory with its own bin/ and migrations/,
 * so that the whole run exercises one consistent build even while others edit src/ or rebuild
 * dist/. `--use-dist` runs the repository's bin/ (after `npm run build`) instead.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative, resolve } from "node:path"
import ts from "typescript"

export const REPO = resolve(import.meta.dirname, "../..")

export interface Build {
  readonly bin: string
  readonly description: string
  readonly cleanup: () => void
}

const sources = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(dir, entry.name))
      : entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [join(dir, entry.name)] : []
  )

export const privateBuild = (): Build => {
  const dir = mkdtempSync(join(tmpdir(), "mailintake-torture-build-"))
  symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"), "dir")
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }))
  const src = join(REPO, "src")
  for (const file of sources(src)) {
    const out = ts.transpileModule(readFileSync(file, "utf8"), {
      fileName: file,
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, isolatedModules: true, esModuleInterop: true }
    })
    const target = join(dir, "dist", relative(src, file)).replace(/\.ts$/, ".js")
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, out.outputText)
  }
  cpSync(join(REPO, "migrations"), join(dir, "migrations"), { recursive: true })
  mkdirSync(join(dir, "bin"))
  const bin = join(dir, "bin", "mailintake.js")
  writeFileSync(bin, `import "../dist/main.js"\n`)
  return { bin, description: `src/ transpiled into ${dir}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export const repoBuild = (): Build => ({ bin: join(REPO, "bin", "mailintake.js"), description: "the repository's bin/ and dist/", cleanup: () => {} })
