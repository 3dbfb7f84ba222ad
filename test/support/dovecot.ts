/**
 * Test harness: a private, throw-away Dovecot (IMAP + POP3, plain and TLS) per
 * call to `startDovecot()`.
 *
 * Every instance gets its own temp dir (config, users file, self-signed cert,
 * mail, logs, sockets), its own four loopback ports and its own
 * `instance_name`, so instances can run side by side in parallel test files.
 * Dovecot runs in the foreground (`dovecot -F`) as a child of this process.
 *
 * Mailboxes can be seeded and inspected directly on disk (Maildir), which is
 * far faster than going through IMAP APPEND or `doveadm save` and lets tests
 * check the server's state independently of the code under test.
 *
 * See /work/shared/NOTES.md for the measured facts this is built on.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export interface DovecotUser {
  readonly user: string;
  readonly password: string;
}

export interface StartDovecotOptions {
  /** Accounts to create. Default: `test@example.test` / `secret`. */
  readonly users?: ReadonlyArray<DovecotUser>;
  /** Label used in the temp dir name and the Dovecot instance_name. */
  readonly name?: string;
}

export interface Dovecot {
  /** The instance's temp dir (config, users, cert, mail/, run/, logs). */
  readonly dir: string;
  readonly host: "127.0.0.1";
  readonly imapPort: number;
  readonly imapsPort: number;
  readonly pop3Port: number;
  readonly pop3sPort: number;
  /** PEM of the self-signed server certificate: trust it as a CA in TLS options. */
  readonly caFile: string;
  /** Dovecot's log file (errors, warnings, auth failures). */
  readonly logFile: string;
  /** Current accounts, including those added with `addUser`. */
  readonly users: ReadonlyArray<DovecotUser>;
  /**
   * Adds an account. Resolves once Dovecot is sure to see it, which takes up
   * to a second (add several at once with Promise.all to wait only once).
   */
  addUser(user: string, password: string): Promise<void>;
  /**
   * Puts messages straight into the user's Maildir, in order (UIDs follow
   * the order given). `folder` defaults to INBOX; any other folder is the
   * Maildir++ directory `Maildir/.<folder>/`, created when missing.
   */
  seed(user: string, messages: ReadonlyArray<Uint8Array | string>, folder?: string): Promise<void>;
  /** Raw bytes of the messages now in the folder (Maildir new/ + cur/), sorted by file name. */
  list(user: string, folder?: string): Promise<Array<Buffer>>;
  /** Number of messages now in the folder. */
  count(user: string, folder?: string): Promise<number>;
  /**
   * SIGTERM, then wait until the master and all its processes are gone
   * (about 1.1 s: the master sleeps 1 s for its log process before exiting).
   * Safe to call when already stopped.
   */
  stop(): Promise<void>;
  /** Starts again after `stop()`: same dir, ports, users and mail. */
  start(): Promise<void>;
  /** `stop()` and remove the temp dir. */
  destroy(): Promise<void>;
}

/** Dovecot did not come up; the message has the tail of its stderr and log. */
export class DovecotStartError extends Error {
  override readonly name = "DovecotStartError";
}

const HOST = "127.0.0.1" as const;
const DEFAULT_USERS: ReadonlyArray<DovecotUser> = [{ user: "test@example.test", password: "secret" }];

/** Dovecot refuses uid 0 for mail processes; mail is delivered as `mail` (8:8). */
const MAIL_UID = 8;
const MAIL_GID = 8;

const STARTUP_TIMEOUT_MS = 10_000;
/** Login processes kept running per login service: one per core, as Dovecot's docs advise. */
const LOGIN_PROCESSES = Math.max(1, Math.min(4, os.availableParallelism()));
const STOP_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------
// Process bookkeeping: never leave a Dovecot behind.
// ---------------------------------------------------------------------------

/** Dovecot master processes started by this module and not yet seen exiting. */
const running = new Set<ChildProcess>();

// A test that crashes or forgets destroy() must not leave Dovecot listening
// forever. Only synchronous work is possible in an 'exit' handler: send
// SIGTERM and let the master take its children down after we are gone.
process.on("exit", () => {
  for (const child of running) {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
});

/**
 * The 'exit' handler does not run when this process is SIGKILLed (e.g. a
 * test runner killing a hung worker). `setpriv --pdeathsig TERM` makes the
 * kernel send SIGTERM to Dovecot when its parent dies, whatever the cause;
 * setpriv execs Dovecot, so the child's pid is still the master's pid.
 */
const hasSetpriv: boolean = (() => {
  try {
    return spawnSync("setpriv", ["--help"], { stdio: "ignore" }).status === 0;
  } catch {
    return false;
  }
})();

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Finds `n` distinct free ports by holding n sockets bound to port 0 at once. */
async function freePorts(n: number): Promise<Array<number>> {
  const servers: Array<net.Server> = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, HOST, () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** True when nothing listens on the port any more (we can bind it ourselves). */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** Resolves true once the port answers with an IMAP/POP3 greeting ("* OK" / "+OK"). */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("data", (chunk) => done(/^(\* OK|\+OK)/.test(chunk.toString("latin1"))));
  });
}

/** mkdir -p, with every directory it creates set to mode 755 and, if asked, owned by mail. */
async function mkdirs(dir: string, owner?: { uid: number; gid: number }): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true });
  if (first === undefined) return; // already existed
  // Walk from the first created dir down to `dir`, fixing mode (umask) and owner.
  let current = first;
  const rest = path.relative(first, dir).split(path.sep).filter(Boolean);
  for (let i = 0; ; i++) {
    await fsp.chmod(current, 0o755);
    if (owner) await fsp.chown(current, owner.uid, owner.gid);
    if (i >= rest.length) break;
    current = path.join(current, rest[i]!);
  }
}

/**
 * Pids of the processes of one Dovecot instance other than the master.
 * Dovecot titles them "dovecot-<instance_name>/<service>" (Linux /proc).
 */
async function instanceProcesses(instanceName: string): Promise<Array<number>> {
  const prefix = `dovecot-${instanceName}/`;
  let entries: Array<string>;
  try {
    entries = await fsp.readdir("/proc");
  } catch {
    return []; // no procfs: nothing we can check
  }
  const pids: Array<number> = [];
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (e) => {
        try {
          const cmdline = await fsp.readFile(`/proc/${e}/cmdline`, "latin1");
          if (cmdline.startsWith(prefix)) pids.push(Number(e));
        } catch {
          // exited meanwhile
        }
      }),
  );
  return pids;
}

async function tail(file: string, bytes = 4_000): Promise<string> {
  try {
    const content = await fsp.readFile(file);
    return content.subarray(Math.max(0, content.length - bytes)).toString("utf8");
  } catch {
    return "";
  }
}

function usersFileLine({ user, password }: DovecotUser): string {
  // passwd-file fields are ':'-separated and one account per line.
  if (/[:\n\r]/.test(user) || /[:\n\r]/.test(password)) {
    throw new Error(`user and password must not contain ':' or line breaks: ${JSON.stringify(user)}`);
  }
  return `${user}:{PLAIN}${password}::::::\n`;
}

/**
 * Maildir unique names for seeded messages. Dovecot gives new files UIDs in
 * file-name order (its names start with the delivery time), so the names
 * carry a strictly increasing virtual clock: seconds (10 digits) and
 * zero-padded microseconds. Lexical order == numeric order == seed order,
 * which is also the order `list()` returns.
 */
let lastMicros = 0;
let sequence = 0;
function uniqueName(): string {
  lastMicros = Math.max(lastMicros + 1, Date.now() * 1000);
  const secs = Math.floor(lastMicros / 1_000_000);
  const micros = String(lastMicros % 1_000_000).padStart(6, "0");
  return `${secs}.M${micros}P${process.pid}Q${++sequence}.mailintake`;
}

/** Dovecot's virtual size: the size with every LF not preceded by CR counted as CR LF. */
function virtualSize(data: Uint8Array): number {
  let size = data.byteLength;
  for (let i = 0; i < data.length; i++) if (data[i] === 0x0a && (i === 0 || data[i - 1] !== 0x0d)) size++;
  return size;
}

function folderDir(maildir: string, folder: string): string {
  if (folder.toUpperCase() === "INBOX") return maildir;
  // Maildir++: every folder is a dot-directory directly under the Maildir
  // (the IMAP hierarchy separator is '.', so "a.b" is a child of "a").
  if (folder.includes("/") || folder.startsWith(".") || folder === "") {
    throw new Error(`unsupported folder name for Maildir++ seeding: ${JSON.stringify(folder)}`);
  }
  return path.join(maildir, `.${folder}`);
}

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

interface ConfigParams {
  readonly dir: string;
  readonly instanceName: string;
  readonly imapPort: number;
  readonly imapsPort: number;
  readonly pop3Port: number;
  readonly pop3sPort: number;
}

/**
 * Dovecot 2.3 config. Blocks must span several lines (`{ ... }` on one line
 * does not parse) and every listener must be declared, or it keeps its
 * default port (143/993/110/995) and collides with other instances.
 *
 * Sized for ~1000 concurrent logins (see the comments on each limit).
 */
function renderConfig(p: ConfigParams): string {
  const d = p.dir;
  return `# Generated by test/support/dovecot.ts
base_dir  = ${d}/run
state_dir = ${d}/state
log_path  = ${d}/dovecot.log
instance_name = ${p.instanceName}
protocols = imap pop3
listen = ${HOST}
disable_plaintext_auth = no
auth_mechanisms = plain login
# The default 2 s delay after a failed login would slow down tests of bad credentials.
auth_failure_delay = 0
# Logs the reason of failed logins, which is what one needs when a test fails.
auth_verbose = yes
# Dovecot refuses uid 0 for mail processes.
mail_uid = mail
mail_gid = mail
first_valid_uid = ${MAIL_UID}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${d}/users
}
userdb {
  driver = static
  args = home=${d}/mail/%u
}
mail_location = maildir:~/Maildir
ssl = yes
ssl_cert = <${d}/cert.pem
ssl_key  = <${d}/key.pem

# --- Limits for ~1000 concurrent logins -----------------------------------
# Login services in high-performance mode (service_count = 0): a few
# long-lived login processes each serve many connections. In the default
# high-security mode the master forks one login process per connection, one
# at a time: 1000 simultaneous IMAP logins took 27 s on 2 cores, against
# 7-11 s this way. (In both modes the login process stays in the path of a
# TLS session as its proxy.) Capacity: process_limit * client_limit.
service imap-login {
  inet_listener imap {
    port = ${p.imapPort}
  }
  inet_listener imaps {
    port = ${p.imapsPort}
    ssl = yes
  }
  service_count = 0
  process_min_avail = ${LOGIN_PROCESSES}
  process_limit = 16
  client_limit = 1024
}
service pop3-login {
  inet_listener pop3 {
    port = ${p.pop3Port}
  }
  inet_listener pop3s {
    port = ${p.pop3sPort}
    ssl = yes
  }
  service_count = 0
  process_min_avail = ${LOGIN_PROCESSES}
  process_limit = 16
  client_limit = 1024
}
# One imap/pop3 process per logged-in session; default_process_limit is
# only 100. (Dovecot 1.x's login_max_processes_count no longer exists.)
service imap {
  process_limit = 2048
}
service pop3 {
  process_limit = 2048
}
service anvil {
  # Without this socket anvil tracks no auth penalty. The penalty is not
  # auth_failure_delay: after one failed login, every later login from the
  # same IP (127.0.0.1: all of them) waits 2 s, then 4, 8, up to 15 s.
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
# Every imap/pop3 process keeps a connection to stats-writer. At the default
# client_limit of 1000, session 1001 on waits for a handshake timeout and the
# log fills with "service(stats): client_limit (1000) reached".
service stats {
  client_limit = 8192
}
# The default of 10 connections per user and IP would refuse the 11th
# concurrent session of the same test user from 127.0.0.1.
protocol imap {
  mail_max_userip_connections = 10000
}
protocol pop3 {
  mail_max_userip_connections = 10000
}
`;
}

// ---------------------------------------------------------------------------
// startDovecot
// ---------------------------------------------------------------------------

export async function startDovecot(options: StartDovecotOptions = {}): Promise<Dovecot> {
  const name = (options.name ?? "mailintake").replace(/[^A-Za-z0-9_-]/g, "-");
  const users: Array<DovecotUser> = [...(options.users ?? DEFAULT_USERS)];

  // mkdtemp creates 0700; Dovecot's unprivileged processes (dovecot, mail)
  // must traverse every parent dir, or logins fail with "Temporary
  // authentication failure".
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `${name}-dovecot-`));
  await fsp.chmod(dir, 0o755);

  const logFile = path.join(dir, "dovecot.log");
  const stderrFile = path.join(dir, "dovecot.stderr");
  const confFile = path.join(dir, "dovecot.conf");
  const usersFile = path.join(dir, "users");
  const caFile = path.join(dir, "cert.pem");
  const mailRoot = path.join(dir, "mail");

  try {
    await Promise.all([mkdirs(path.join(dir, "run")), mkdirs(path.join(dir, "state"))]);
    // Dovecot creates a user's home as `mail` on first login: mail/ must be theirs.
    await mkdirs(mailRoot, { uid: MAIL_UID, gid: MAIL_GID });

    const openssl = spawnSync(
      "openssl",
      [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout", path.join(dir, "key.pem"),
        "-out", caFile,
      ],
      { encoding: "utf8" },
    );
    if (openssl.status !== 0) {
      throw new Error(`openssl failed (${openssl.error?.message ?? `exit ${openssl.status}`}): ${openssl.stderr}`);
    }

    await fsp.writeFile(usersFile, users.map(usersFileLine).join(""), { mode: 0o644 });

    // Unique per instance, and it names the instance's processes (see instanceProcesses).
    const instanceName = path.basename(dir);
    const [imapPort, imapsPort, pop3Port, pop3sPort] = (await freePorts(4)) as [number, number, number, number];
    await fsp.writeFile(
      confFile,
      renderConfig({
        dir,
        instanceName,
        imapPort,
        imapsPort,
        pop3Port,
        pop3sPort,
      }),
    );
    const ports = [imapPort, imapsPort, pop3Port, pop3sPort];

    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();

    const spawnDovecot = (): void => {
      // stderr goes to a file rather than a pipe: nothing to drain, nothing
      // keeping the event loop alive, and it survives for error messages.
      // Dovecot writes config errors there before log_path is open.
      const errFd = fs.openSync(stderrFile, "a");
      try {
        const [cmd, args] = hasSetpriv
          ? ["setpriv", ["--pdeathsig", "TERM", "--", "dovecot", "-F", "-c", confFile]]
          : ["dovecot", ["-F", "-c", confFile]];
        const proc = spawn(cmd as string, args as Array<string>, { stdio: ["ignore", errFd, errFd] });
        running.add(proc);
        exited = new Promise<void>((resolve) => {
          proc.once("exit", () => {
            running.delete(proc);
            resolve();
          });
          // Spawn failure (e.g. ENOENT): no 'exit' follows.
          proc.once("error", () => {
            running.delete(proc);
            resolve();
          });
        });
        // Don't let a forgotten instance keep the test process alive; the
        // 'exit' handler above still stops it.
        proc.unref();
        child = proc;
      } finally {
        fs.closeSync(errFd);
      }
    };

    const isRunning = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null && running.has(child);

    const failure = async (reason: string): Promise<DovecotStartError> =>
      new DovecotStartError(
        `Dovecot (${dir}) failed to start: ${reason}\n--- ${stderrFile} ---\n${await tail(stderrFile)}\n--- ${logFile} ---\n${await tail(logFile)}`,
      );

    /** Waits until no process of this instance is left, SIGKILLing stragglers at the deadline. */
    const reapChildren = async (deadline: number): Promise<void> => {
      for (;;) {
        const pids = await instanceProcesses(instanceName);
        if (pids.length === 0) return;
        if (Date.now() > deadline) {
          for (const pid of pids) {
            try {
              process.kill(pid, "SIGKILL");
            } catch {
              // already gone
            }
          }
          return;
        }
        await sleep(50);
      }
    };

    const stop = async (): Promise<void> => {
      const proc = child;
      if (proc === undefined || !isRunning()) {
        await exited;
        return;
      }
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      proc.ref(); // keep the event loop alive while we wait for the exit
      try {
        proc.kill("SIGTERM");
        const timedOut = await Promise.race([exited.then(() => false), sleep(STOP_TIMEOUT_MS).then(() => true)]);
        if (timedOut) {
          proc.kill("SIGKILL");
          await exited;
        }
      } finally {
        proc.unref();
      }
      // The master can exit before its imap/pop3 processes do, and those may
      // still write to the Maildir (making rm -rf fail with ENOTEMPTY) or
      // race a restarted instance. Stopped means all of them are gone.
      await reapChildren(deadline);
    };

    const start = async (): Promise<void> => {
      if (isRunning()) return;
      const deadline = Date.now() + STARTUP_TIMEOUT_MS;
      // After a stop(), a lingering child of the old master may still hold a
      // listening socket for a moment; Dovecot would then fail to bind.
      while (!(await Promise.all(ports.map(portIsFree))).every(Boolean)) {
        if (Date.now() > deadline) throw await failure(`ports ${ports.join(", ")} still in use`);
        await sleep(50);
      }
      spawnDovecot();
      const proc = child!;
      let spawnError: Error | undefined;
      proc.once("error", (e) => (spawnError = e));
      while (true) {
        if (!isRunning()) {
          throw await failure(spawnError ? spawnError.message : `exited with code ${proc.exitCode ?? proc.signalCode}`);
        }
        // Both protocols: they are separate login services.
        if ((await greets(imapPort)) && (await greets(pop3Port))) return;
        if (Date.now() > deadline) {
          await stop();
          throw await failure(`no greeting on port ${imapPort} within ${STARTUP_TIMEOUT_MS} ms`);
        }
        await sleep(50);
      }
    };

    const maildirOf = (user: string, folder = "INBOX"): string => {
      if (user.includes("/") || user.startsWith(".")) throw new Error(`bad user name: ${user}`);
      return folderDir(path.join(mailRoot, user, "Maildir"), folder);
    };

    const messageFiles = async (user: string, folder?: string): Promise<Array<string>> => {
      const base = maildirOf(user, folder);
      const files: Array<{ name: string; file: string }> = [];
      for (const sub of ["new", "cur"]) {
        let names: Array<string>;
        try {
          names = await fsp.readdir(path.join(base, sub));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
          throw e;
        }
        for (const n of names) if (!n.startsWith(".")) files.push({ name: n, file: path.join(base, sub, n) });
      }
      files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return files.map((f) => f.file);
    };

    const seed = async (user: string, messages: ReadonlyArray<Uint8Array | string>, folder = "INBOX"): Promise<void> => {
      const owner = { uid: MAIL_UID, gid: MAIL_GID };
      const home = path.join(mailRoot, user);
      const maildir = path.join(home, "Maildir");
      const target = maildirOf(user, folder);
      await mkdirs(home, owner);
      for (const d of [maildir, target]) {
        for (const sub of ["cur", "new", "tmp"]) await mkdirs(path.join(d, sub), owner);
      }
      if (target !== maildir) {
        // Maildir++ marker file for subfolders (Dovecot doesn't need it; other tools do).
        const marker = path.join(target, "maildirfolder");
        if (!fs.existsSync(marker)) {
          await fsp.writeFile(marker, "");
          await fsp.chown(marker, MAIL_UID, MAIL_GID);
        }
      }

      // Names are taken up front, in order, so UIDs follow the order given
      // even though the writes below complete in any order.
      const jobs = messages.map((m) => ({ data: typeof m === "string" ? Buffer.from(m, "utf8") : m, name: uniqueName() }));
      const deliver = async ({ data, name }: { data: Uint8Array; name: string }) => {
        // Write to tmp/ and rename into cur/ so Dovecot never sees a partial
        // file. S=<size> gives Dovecot the size without a stat, and W=<size>
        // the size with CR LF line endings (what IMAP reports as RFC822.SIZE
        // and SEARCH LARGER compares) without reading the file, as Dovecot's
        // own delivery writes them; ":2," means no flags (unread).
        const tmp = path.join(target, "tmp", name);
        await fsp.writeFile(tmp, data, { mode: 0o600 });
        await fsp.chown(tmp, MAIL_UID, MAIL_GID);
        await fsp.rename(tmp, path.join(target, "cur", `${name},S=${data.byteLength},W=${virtualSize(data)}:2,`));
      };
      const concurrency = 32;
      for (let i = 0; i < jobs.length; i += concurrency) {
        await Promise.all(jobs.slice(i, i + concurrency).map(deliver));
      }
    };

    const handle: Dovecot = {
      dir,
      host: HOST,
      imapPort,
      imapsPort,
      pop3Port,
      pop3sPort,
      caFile,
      logFile,
      get users() {
        return users.slice();
      },
      addUser: async (user, password) => {
        const entry = { user, password };
        await fsp.appendFile(usersFile, usersFileLine(entry));
        users.push(entry);
        // Dovecot stats the passwd-file at most once per wall-clock second
        // (passwd_file_sync), so a login later in the same second as the
        // last lookup may not see the new user yet. Past the next second
        // boundary, the next lookup is sure to reread the file.
        await sleep(1_000 - (Date.now() % 1_000) + 20);
      },
      seed,
      list: async (user, folder) => Promise.all((await messageFiles(user, folder)).map((f) => fsp.readFile(f))),
      count: async (user, folder) => (await messageFiles(user, folder)).length,
      stop,
      start,
      destroy: async () => {
        await stop();
        await fsp.rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
      },
    };

    await start();
    return handle;
  } catch (e) {
    // Keep the dir only when it holds the logs that explain a startup failure.
    if (!(e instanceof DovecotStartError)) {
      await fsp.rm(dir, { recursive: true, force: true });
    }
    throw e;
  }
}
