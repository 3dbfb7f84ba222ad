/**
 * V8's full garbage collection, on demand, for the few places that handle a large message.
 *
 * Pieces of a message that passed through a stream (network reads, decoded attachment parts)
 * are Buffers outside the JS heap; V8 counts them only loosely and collects them once tens of
 * megabytes have piled up. While a 50 MB message streams by, that pile was as large as the
 * message itself. Collecting every few megabytes of a large message keeps it small; small
 * messages never call this.
 *
 * `gc` is exposed to a context of our own (`--expose-gc` applies to contexts created after it
 * is set), so no command-line flag is needed; it collects the calling thread's heap only.
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"

/** How many bytes of a large message may pass between two collections. */
export const COLLECT_EVERY_BYTES = 4 * 1024 * 1024

let gc: (() => void) | undefined

export const collectGarbage = (): void => {
  if (gc === undefined) {
    setFlagsFromString("--expose-gc")
    gc = runInNewContext("gc") as () => void
  }
  gc()
}

/** A counter that collects garbage each time another `COLLECT_EVERY_BYTES` have passed. */
export const collectEvery = (bytes: number = COLLECT_EVERY_BYTES) => {
  let since = 0
  return (passed: number): void => {
    since += passed
    if (since < bytes) return
    since = 0
    collectGarbage()
  }
}
