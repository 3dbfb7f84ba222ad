#!/usr/bin/env node
// The compiled CLI (npm ci runs the build through `prepare`).
import "../dist/main.js"
