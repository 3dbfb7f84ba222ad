#!/usr/bin/env node
// The bundled CLI (npm ci runs the build through `prepare`; scripts/bundle.ts says why a bundle).
import "../dist/bundle/mailintake.js"
