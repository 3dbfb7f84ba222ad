/**
 * Tiny fake IMAP and POP3 servers on node:net for the STARTTLS downgrade checks. They speak just
 * enough of the protocol to let a client log in, never offer TLS (or offer STARTTLS/STLS and
 * then refuse it), and record every byte they receive, so a test can tell whether a password
 * (or any login command at all) crossed the wire in clear.
 */
import { createServer, type Server, type Socket } from "node:net"

export interface FakeServer {
  readonly port: number
  /** Everything every client sent, in order. */
  readonly received: () => Buffer
  /** Command lines received (first word upper-cased, e.g. "LOGIN", "AUTHENTICATE", "USER", "PASS"). */
  readonly commands: () => Array<string>
  readonly connections: () => number
  close(): Promise<void>
}

export interface FakeOptions {
  /** Advertise STARTTLS (IMAP) / STLS (POP3), then answer the command with a refusal. */
  readonly advertiseThenRefuse?: boolean
}

const listen = async (handler: (socket: Socket, record: (chunk: Buffer) => void, command: (verb: string) => void) => void): Promise<FakeServer> => {
  const chunks: Array<Buffer> = []
  const verbs: Array<string> = []
  const sockets = new Set<Socket>()
  let connections = 0
  const server: Server = createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    socket.on("error", () => socket.destroy())
    handler(socket, (chunk) => chunks.push(chunk), (verb) => verbs.push(verb))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as { port: number }).port,
    received: () => Buffer.concat(chunks),
    commands: () => verbs.slice(),
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

/** Splits a byte stream into CRLF (or LF) terminated lines. */
const lines = (socket: Socket, record: (chunk: Buffer) => void, onLine: (line: string) => void) => {
  let pending = ""
  socket.on("data", (chunk: Buffer) => {
    record(chunk)
    pending += chunk.toString("latin1")
    for (let at = pending.indexOf("\n"); at >= 0; at = pending.indexOf("\n")) {
      const line = pending.slice(0, at).replace(/\r$/, "")
      pending = pending.slice(at + 1)
      onLine(line)
    }
  })
}

export const startFakeImap = (options: FakeOptions = {}): Promise<FakeServer> =>
  listen((socket, record, command) => {
    const caps = `IMAP4rev1 AUTH=PLAIN UIDPLUS MOVE${options.advertiseThenRefuse === true ? " STARTTLS" : ""}`
    socket.write(`* OK [CAPABILITY ${caps}] fake IMAP ready\r\n`)
    let continuation: string | undefined
    lines(socket, record, (line) => {
      if (continuation !== undefined) {
        // The SASL response to AUTHENTICATE: accept it, as a careless server would.
        socket.write(`${continuation} OK [CAPABILITY ${caps}] logged in\r\n`)
        continuation = undefined
        return
      }
      const match = /^(\S+) (\S+)/.exec(line)
      if (match === null) return
      const [, tag, verb] = match
      const upper = verb!.toUpperCase()
      command(upper)
      switch (upper) {
        case "CAPABILITY":
          socket.write(`* CAPABILITY ${caps}\r\n${tag} OK done\r\n`)
          break
        case "STARTTLS":
          socket.write(options.advertiseThenRefuse === true ? `${tag} NO [UNAVAILABLE] TLS is not available right now\r\n` : `${tag} BAD STARTTLS not supported\r\n`)
          break
        case "AUTHENTICATE":
          if (/^\S+ AUTHENTICATE \S+ \S+/.test(line)) socket.write(`${tag} OK [CAPABILITY ${caps}] logged in\r\n`)
          else {
            continuation = tag
            socket.write("+ \r\n")
          }
          break
        case "LOGIN":
          socket.write(`${tag} OK [CAPABILITY ${caps}] logged in\r\n`)
          break
        case "LOGOUT":
          socket.write(`* BYE bye\r\n${tag} OK done\r\n`)
          socket.end()
          break
        case "ID":
          socket.write(`* ID NIL\r\n${tag} OK done\r\n`)
          break
        default:
          socket.write(`${tag} OK done\r\n`)
      }
    })
  })

export const startFakePop3 = (options: FakeOptions = {}): Promise<FakeServer> =>
  listen((socket, record, command) => {
    socket.write("+OK fake POP3 ready\r\n")
    let sasl = false
    lines(socket, record, (line) => {
      if (sasl) {
        sasl = false
        socket.write("+OK logged in\r\n")
        return
      }
      const verb = (/^(\S+)/.exec(line)?.[1] ?? "").toUpperCase()
      command(verb)
      switch (verb) {
        case "CAPA":
          socket.write(`+OK\r\nUSER\r\nSASL PLAIN\r\nUIDL\r\n${options.advertiseThenRefuse === true ? "STLS\r\n" : ""}.\r\n`)
          break
        case "STLS":
          socket.write("-ERR TLS is not available right now\r\n")
          break
        case "AUTH":
          if (/^AUTH \S+ \S+/i.test(line)) socket.write("+OK logged in\r\n")
          else {
            sasl = true
            socket.write("+ \r\n")
          }
          break
        case "STAT":
          socket.write("+OK 0 0\r\n")
          break
        case "LIST":
        case "UIDL":
          socket.write("+OK\r\n.\r\n")
          break
        case "QUIT":
          socket.write("+OK bye\r\n")
          socket.end()
          break
        default:
          socket.write("+OK\r\n")
      }
    })
  })

/** Every form a password takes on the wire: as is, base64, and inside SASL PLAIN. */
export const passwordForms = (password: string, user: string): Array<string> => [
  password,
  Buffer.from(password).toString("base64"),
  Buffer.from(`\u0000${user}\u0000${password}`).toString("base64"),
  Buffer.from(`${user}\u0000${user}\u0000${password}`).toString("base64")
]
