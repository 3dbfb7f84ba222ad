/**
 * A fault-injecting TCP proxy on 127.0.0.1 (toxiproxy is not available here): forwards bytes
 * both ways and lets a test cut the connection when the client sends something.
 */
import { createServer, connect, type Socket } from "node:net"

export interface FaultProxy {
  readonly port: number
  /** Called with what the client sends; return true to cut the connection before it passes. */
  cutWhen(predicate: ((clientBytes: Buffer) => boolean) | undefined): void
  /** Called with what the server sends, as it passes. */
  watchServer(listener: ((serverBytes: Buffer) => void) | undefined): void
  readonly cuts: number
  close(): Promise<void>
}

export const startFaultProxy = async (target: { host: string; port: number }): Promise<FaultProxy> => {
  let predicate: ((clientBytes: Buffer) => boolean) | undefined
  let serverListener: ((serverBytes: Buffer) => void) | undefined
  let cuts = 0
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host)
    sockets.add(client).add(upstream)
    const cut = () => {
      cuts += 1
      client.destroy()
      upstream.destroy()
    }
    client.on("data", (chunk: Buffer) => {
      if (predicate?.(chunk)) return cut()
      upstream.write(chunk)
    })
    upstream.on("data", (chunk: Buffer) => {
      serverListener?.(chunk)
      client.write(chunk)
    })
    client.on("close", () => upstream.destroy())
    upstream.on("close", () => client.destroy())
    client.on("error", () => upstream.destroy())
    upstream.on("error", () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as { port: number }).port
  return {
    port,
    cutWhen: (next) => {
      predicate = next
    },
    watchServer: (next) => {
      serverListener = next
    },
    get cuts() {
      return cuts
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}
