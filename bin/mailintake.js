#!/usr/bin/env node
// The bundled CLI (npm ci runs the build through `prepare`), compiled with its V8 code cache:
// see compileBundle.js.
import { writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname } from "node:path"
import { bundlePath, codeCachePath, compileBundle } from "./compileBundle.js"

const script = compileBundle()
// Set by the build (scripts/bundle.ts `writeCodeCache`): once this start-up is done, keep what
// V8 compiled for it.
if (process.env.MAILINTAKE_WRITE_CODE_CACHE === "1") {
  process.on("exit", () => writeFileSync(codeCachePath, script.createCachedData()))
}
const module = { exports: {} }
script.runInThisContext().call(module.exports, module.exports, createRequire(bundlePath), module, bundlePath, dirname(bundlePath))
