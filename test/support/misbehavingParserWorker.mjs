// A stand-in for the parser worker (src/processing/parserWorker.ts) that speaks its protocol but
// misbehaves on purpose: a batch holding "CRASH-ME" ends the thread, one holding "HANG-ME" blocks
// it forever; any other message is accepted with its first line as the subject.
import { parentPort } from "node:worker_threads"

parentPort.on("message", ({ id, raws }) => {
  const texts = raws.map((raw) => Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("latin1"))
  if (texts.some((text) => text.includes("CRASH-ME"))) process.exit(3)
  if (texts.some((text) => text.includes("HANG-ME"))) for (;;);
  parentPort.postMessage({ id, decisions: texts.map((text) => ({ _tag: "Accept", summary: { subject: text.split("\n")[0] } })) })
})
