/**
 * A private build of the daemon for a torture run: src/ bundled (scripts/bundle.ts, as
 * `npm run build` does) into a temporary directory with its own bin/ and migrations/,
 * so that the whole run exercises one consistent build even while others edit src/ or rebuild
 * dist/. `--use-dist` runs the repository's bin/ (after `npm run build`) instead.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { buildInto } from "../../scripts/bundle.js"

export const REPO = resolve(import.meta.dirname, "../..")

export interface Build {
  readonly bin: string
  readonly description: string
  readonly cleanup: () => void
}

export const privateBuild = (): Build => {
  const dir = mkdtempSync(join(tmpdir(), "mailintake-torture-build-"))
  const bin = buildInto(dir)
  return { bin, description: `src/ bundled into ${dir}`, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export const repoBuild = (): Build => ({ bin: join(REPO, "bin", "mailintake.js"), description: "the repository's bin/ and dist/", cleanup: () => {} })
