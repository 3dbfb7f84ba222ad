/**
 * A scripted POP3 server on node:net for what Dovecot will not do on request: a server without
 * STLS or UIDL, one that stalls, injects bytes after STLS, or drops the line at QUIT. It speaks
 * just enough RFC 1939 for the client, and records every command line it receives.
 */
import { Buffer } from "node:buffer"
import * as net from "node:net"
import { Effect } from "effect"

export interface FakeConnection {
  readonly write: (text: string | Buffer) => void
  readonly socket: net.Socket
}

export interface FakeOptions {
  /** `null`: accept the connection and never say anything. */
  readonly greeting?: string | null
  /** CAPA lines; `undefined`: CAPA is answered with -ERR. */
  readonly capabilities?: ReadonlyArray<string>
  readonly uidl?: boolean
  readonly messages?: ReadonlyArray<Buffer>
  readonly password?: string
  /**
   * Called first for every command line; return true when it answered (or chose not to), to
   * skip the default behaviour.
   */
  readonly override?: (line: string, connection: FakeConnection) => boolean
}

export interface FakeServer {
  readonly port: number
  /** Every line received, across connections, in order. */
  readonly received: Array<string>
  /** Message numbers deleted by a QUIT (the UPDATE state, RFC 1939 §6). */
  readonly expunged: Array<number>
}

const stuff = (message: Buffer): Buffer =>
  Buffer.from(message.toString("latin1").replace(/(^|\r\n)\./g, "$1.."), "latin1")

export const fakePop3Server = (options: FakeOptions = {}) =>
  Effect.acquireRelease(
    Effect.async<{ server: net.Server; sockets: Set<net.Socket>; handle: FakeServer }>((resume) => {
      const received: Array<string> = []
      const expunged: Array<number> = []
      const messages = options.messages ?? []
      const sockets = new Set<net.Socket>()
      const server = net.createServer((socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => {})
        const connection: FakeConnection = { socket, write: (text) => socket.write(text) }
        const deleted = new Set<number>()
        let buffered = ""
        let inAuth = false
        if (options.greeting !== null) socket.write(`${options.greeting ?? "+OK fake POP3 ready"}\r\n`)
        socket.on("data", (chunk: Buffer) => {
          buffered += chunk.toString("latin1")
          let end: number
          while ((end = buffered.indexOf("\r\n")) !== -1) {
            const line = buffered.slice(0, end)
            buffered = buffered.slice(end + 2)
            received.push(line)
            if (options.override?.(line, connection)) continue
            const [verb = "", arg] = line.split(" ")
            const number = Number(arg)
            const exists = Number.isInteger(number) && number >= 1 && number <= messages.length && !deleted.has(number)
            if (inAuth) {
              inAuth = false
              const [, user, pass] = Buffer.from(line, "base64").toString("utf8").split("\u0000")
              socket.write(user !== undefined && pass === options.password ? "+OK logged in\r\n" : "-ERR [AUTH] bad\r\n")
              continue
            }
            switch (verb.toUpperCase()) {
              case "CAPA":
                socket.write(options.capabilities === undefined ? "-ERR no CAPA\r\n" : `+OK\r\n${options.capabilities.map((c) => `${c}\r\n`).join("")}.\r\n`)
                break
              case "USER":
                socket.write("+OK\r\n")
                break
              case "PASS":
                socket.write(line.slice(5) === options.password ? "+OK logged in\r\n" : "-ERR [AUTH] bad password\r\n")
                break
              case "AUTH":
                if (arg === "PLAIN" && line.split(" ")[2] === undefined) {
                  inAuth = true
                  socket.write("+ \r\n")
                } else if (arg === "PLAIN") {
                  const [, user, pass] = Buffer.from(line.split(" ")[2]!, "base64").toString("utf8").split("\u0000")
                  socket.write(user !== undefined && pass === options.password ? "+OK logged in\r\n" : "-ERR [AUTH] bad\r\n")
                } else socket.write("-ERR unsupported mechanism\r\n")
                break
              case "STAT":
                socket.write(`+OK ${messages.length - deleted.size} 0\r\n`)
                break
              case "LIST":
                socket.write(
                  `+OK\r\n${messages.map((m, i) => (deleted.has(i + 1) ? "" : `${i + 1} ${m.length}\r\n`)).join("")}.\r\n`
                )
                break
              case "UIDL":
                socket.write(
                  options.uidl === false
                    ? "-ERR UIDL not supported\r\n"
                    : `+OK\r\n${messages.map((_, i) => (deleted.has(i + 1) ? "" : `${i + 1} uid-${i + 1}\r\n`)).join("")}.\r\n`
                )
                break
              case "RETR":
                if (!exists) socket.write("-ERR no such message\r\n")
                else socket.write(Buffer.concat([Buffer.from("+OK\r\n"), stuff(messages[number - 1]!), Buffer.from(".\r\n")]))
                break
              case "DELE":
                if (!exists) socket.write("-ERR no such message\r\n")
                else {
                  deleted.add(number)
                  socket.write("+OK deleted\r\n")
                }
                break
              case "RSET":
                deleted.clear()
                socket.write("+OK\r\n")
                break
              case "NOOP":
                socket.write("+OK\r\n")
                break
              case "QUIT":
                expunged.push(...[...deleted].sort((a, b) => a - b))
                socket.end("+OK bye\r\n")
                break
              default:
                socket.write("-ERR unknown command\r\n")
            }
          }
        })
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          server,
          sockets,
          handle: { port: (server.address() as net.AddressInfo).port, received, expunged }
        })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of sockets) socket.destroy()
      })
  ).pipe(Effect.map(({ handle }) => handle))
