/**
 * A fault-injecting TCP proxy on 127.0.0.1 for the torture suite, richer than
 * test/support/faultProxy.ts: per-connection hooks on the bytes of each direction (forward
 * all, part, or none, then cut), added latency, black-holing of new connections (accepted,
 * never answered) and freezing of open ones (bytes swallowed both ways).
 */
import { connect, createServer, type Server, type Socket } from "node:net"

export interface Conn {
  readonly id: number
  /** Free per-connection state for the hooks. */
  readonly state: Record<string, unknown>
  /** Client bytes forwarded so far, and server bytes forwarded so far. */
  up: number
  down: number
  /** The last few KB the client sent (latin1), for matching commands. */
  clientTail: string
  serverTail: string
}

/** What to do with a chunk: forward `forward` bytes of it (all by default), then cut or not. */
export interface Verdict {
  readonly forward?: number
  readonly cut?: boolean
}

export interface Hooks {
  onClient?(chunk: Buffer, conn: Conn): Verdict | undefined
  onServer?(chunk: Buffer, conn: Conn): Verdict | undefined
}

export interface ChaosStats {
  connections: number
  cuts: number
  blackHoled: number
  frozenChunks: number
  /** The start of the first few chunks swallowed by a freeze, with their direction. */
  frozenSamples: Array<string>
}

export interface ChaosProxy {
  readonly port: number
  readonly stats: ChaosStats
  hooks: Hooks
  /** Delay added to every chunk, each direction (order kept). */
  latencyMs: number
  /** New connections are accepted and never answered nor forwarded. */
  blackHoleNew: boolean
  /** Open and new connections: bytes are swallowed both ways, nothing is closed. */
  frozen: boolean
  /** Cuts every open connection now. */
  cutAll(): void
  close(): Promise<void>
}

const TAIL = 4096

export const startChaosProxy = async (target: { host: string; port: number }): Promise<ChaosProxy> => {
  const sockets = new Set<Socket>()
  const open = new Set<() => void>()
  let ids = 0
  const stats: ChaosStats = { connections: 0, cuts: 0, blackHoled: 0, frozenChunks: 0, frozenSamples: [] }

  const proxy: ChaosProxy = {
    port: 0,
    stats,
    hooks: {},
    latencyMs: 0,
    blackHoleNew: false,
    frozen: false,
    cutAll: () => {
      for (const cut of [...open]) cut()
    },
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }

  const server: Server = createServer((client) => {
    stats.connections++
    sockets.add(client)
    client.on("close", () => sockets.delete(client))
    client.on("error", () => client.destroy())
    if (proxy.blackHoleNew) {
      stats.blackHoled++
      // Accept and say nothing; read and drop whatever comes.
      client.on("data", () => {})
      return
    }
    const upstream = connect(target.port, target.host)
    sockets.add(upstream)
    upstream.on("close", () => sockets.delete(upstream))
    const conn: Conn = { id: ++ids, state: {}, up: 0, down: 0, clientTail: "", serverTail: "" }
    let dead = false
    /** A verdict said cut: nothing more passes, in either direction, while the cut is carried out. */
    let cutting = false
    const cut = () => {
      if (dead) return
      dead = true
      open.delete(cut)
      client.destroy()
      upstream.destroy()
    }
    open.add(cut)
    // Per direction, chunks leave in order, each no earlier than its arrival + latency.
    const lanes = { up: Promise.resolve(), down: Promise.resolve() }
    const lastAt = { up: 0, down: 0 }
    const pass = (direction: "up" | "down", chunk: Buffer) => {
      if (dead || cutting) return
      if (proxy.frozen) {
        stats.frozenChunks++
        if (stats.frozenSamples.length < 3) stats.frozenSamples.push(`${direction === "up" ? "client" : "server"}: ${chunk.subarray(0, 60).toString("latin1").trim()}`)
        return
      }
      const hook = direction === "up" ? proxy.hooks.onClient : proxy.hooks.onServer
      const verdict = hook?.(chunk, conn)
      const n = Math.max(0, Math.min(chunk.length, verdict?.forward ?? chunk.length))
      const part = n === chunk.length ? chunk : chunk.subarray(0, n)
      if (verdict?.cut === true) cutting = true
      if (direction === "up") {
        conn.up += n
        conn.clientTail = (conn.clientTail + part.toString("latin1")).slice(-TAIL)
      } else {
        conn.down += n
        conn.serverTail = (conn.serverTail + part.toString("latin1")).slice(-TAIL)
      }
      const to = direction === "up" ? upstream : client
      const deliver = () => {
        if (dead) return
        if (part.length > 0) to.write(part)
        if (verdict?.cut === true) {
          stats.cuts++
          // Let the partial bytes leave before the cut.
          setImmediate(cut)
        }
      }
      if (proxy.latencyMs <= 0 && lastAt[direction] <= Date.now()) {
        deliver()
        return
      }
      const at = Math.max(Date.now() + proxy.latencyMs, lastAt[direction])
      lastAt[direction] = at
      lanes[direction] = lanes[direction].then(() =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            deliver()
            resolve()
          }, Math.max(0, at - Date.now()))
        )
      )
    }
    client.on("data", (chunk: Buffer) => pass("up", chunk))
    upstream.on("data", (chunk: Buffer) => pass("down", chunk))
    client.on("close", cut)
    upstream.on("close", cut)
    upstream.on("error", cut)
    client.on("error", cut)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  ;(proxy as { port: number }).port = (server.address() as { port: number }).port
  return proxy
}
