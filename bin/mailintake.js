#!/usr/bin/env node
// The bundled CLI, dist/bundle/mailintake.cjs (npm ci runs the build through `prepare`;
// scripts/bundle.ts says why a bundle), compiled with the V8 code cache the build wrote beside
// it: V8 then neither parses 3.6 MB of source nor compiles the start-up's functions again
// (`--version` 0.65 → 0.25–0.31 s here, on every run and every command). A cache V8 rejects
// (another Node, other V8 flags, a rebuilt bundle) costs only that time: the source is
// compiled as usual.
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { Script } from "node:vm"

const bundle = fileURLToPath(new URL("../dist/bundle/mailintake.cjs", import.meta.url))
const codeCache = `${bundle}.v8cache`
// CommonJS's own function wrapper: the bundle sees require, module and __filename as under require().
const source = `(function (exports, require, module, __filename, __dirname) { ${readFileSync(bundle, "utf8")}\n})`
const script = new Script(source, {
  filename: bundle,
  cachedData: existsSync(codeCache) ? readFileSync(codeCache) : undefined
})
// Set by the build (scripts/bundle.ts `writeCodeCache`): once this start-up is done, keep what
// V8 compiled for it.
if (process.env.MAILINTAKE_WRITE_CODE_CACHE === "1") {
  process.on("exit", () => writeFileSync(codeCache, script.createCachedData()))
}
const module = { exports: {} }
script.runInThisContext().call(module.exports, module.exports, createRequire(bundle), module, bundle, dirname(bundle))
