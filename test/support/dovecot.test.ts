import * as fs from "node:fs";
import * as net from "node:net";
import { ImapFlow } from "imapflow";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDovecot, type Dovecot } from "./dovecot.js";
import { dotLinesMessage, latin1Message, multipartWithAttachment } from "./messages.js";

const USER = "test@example.test";
const PASSWORD = "secret";

function imapClient(dovecot: Dovecot): ImapFlow {
  return new ImapFlow({
    host: dovecot.host,
    port: dovecot.imapsPort,
    secure: true,
    // Trust the instance's self-signed cert rather than disabling verification.
    tls: { ca: fs.readFileSync(dovecot.caFile) },
    auth: { user: USER, pass: PASSWORD },
    logger: false,
  });
}

/** Raw bytes of every message in INBOX, in UID order. */
async function fetchInbox(dovecot: Dovecot): Promise<Array<Buffer>> {
  const client = imapClient(dovecot);
  await client.connect();
  try {
    const lock = await client.getMailboxLock("INBOX");
    try {
      const sources: Array<Buffer> = [];
      for await (const msg of client.fetch("1:*", { uid: true, source: true })) {
        sources.push(msg.source!);
      }
      return sources;
    } finally {
      lock.release();
    }
  } finally {
    await client.logout();
  }
}

/**
 * Sends POP3 commands one at a time on a plain TCP socket and returns every
 * single-line response, greeting first.
 */
function pop3Session(port: number, commands: ReadonlyArray<string>): Promise<Array<string>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const responses: Array<string> = [];
    const pending = [...commands];
    let buffered = "";
    socket.setTimeout(5_000, () => socket.destroy(new Error(`POP3 timeout after ${JSON.stringify(responses)}`)));
    socket.on("error", reject);
    socket.on("close", () => resolve(responses));
    socket.on("data", (chunk) => {
      buffered += chunk.toString("latin1");
      let eol: number;
      while ((eol = buffered.indexOf("\r\n")) >= 0) {
        responses.push(buffered.slice(0, eol));
        buffered = buffered.slice(eol + 2);
        const next = pending.shift();
        if (next !== undefined) socket.write(`${next}\r\n`);
        else socket.end();
      }
    });
  });
}

describe("test/support/dovecot", () => {
  let dovecot: Dovecot;
  const seeded = [multipartWithAttachment(1, 2048), latin1Message(2), dotLinesMessage(3)];

  beforeAll(async () => {
    dovecot = await startDovecot({ name: "harness-test" });
    await dovecot.seed(USER, seeded);
  }, 30_000);

  afterAll(async () => {
    const dir = dovecot?.dir;
    await dovecot?.destroy();
    if (dir) expect(fs.existsSync(dir)).toBe(false);
  });

  it("seeds a Maildir that the harness itself can read back", async () => {
    expect(await dovecot.count(USER)).toBe(3);
    expect(await dovecot.list(USER)).toEqual(seeded);
    expect(await dovecot.count(USER, "Archive")).toBe(0);
  });

  it("serves the seeded messages byte for byte over IMAPS, in seed order", async () => {
    expect(await fetchInbox(dovecot)).toEqual(seeded);
  });

  it("accepts POP3 logins over plain TCP", async () => {
    const responses = await pop3Session(dovecot.pop3Port, [`USER ${USER}`, `PASS ${PASSWORD}`, "STAT", "QUIT"]);
    expect(responses[0]).toMatch(/^\+OK/);
    expect(responses[1]).toMatch(/^\+OK/);
    expect(responses[2]).toMatch(/^\+OK/);
    expect(responses[3]).toMatch(/^\+OK 3 \d+$/);
  });

  // Dovecot still answers a failure on its next 500 ms auth timer tick, but
  // neither auth_failure_delay (2 s) nor the per-IP auth penalty applies.
  it("rejects a wrong password without the 2 s failure delay or a per-IP penalty", async () => {
    const started = Date.now();
    for (let attempt = 0; attempt < 2; attempt++) {
      const responses = await pop3Session(dovecot.pop3Port, [`USER ${USER}`, "PASS wrong", "QUIT"]);
      expect(responses[2]).toMatch(/^-ERR/);
    }
    // Dovecot answers failures on its next 500 ms auth timer tick.
    expect(Date.now() - started).toBeLessThan(2_000);
    // With the anvil auth penalty on, this login would now wait 4 s.
    const loginStarted = Date.now();
    const responses = await pop3Session(dovecot.pop3Port, [`USER ${USER}`, `PASS ${PASSWORD}`, "QUIT"]);
    expect(responses[2]).toMatch(/^\+OK/);
    expect(Date.now() - loginStarted).toBeLessThan(3_000);
  });

  it("picks up users added at run time, and seeds other folders", async () => {
    await dovecot.addUser("other@example.test", "pw2");
    await dovecot.seed("other@example.test", ["Subject: x\r\n\r\nin a folder\r\n"], "Archive");
    expect(dovecot.users.map((u) => u.user)).toEqual([USER, "other@example.test"]);
    const client = new ImapFlow({
      host: dovecot.host,
      port: dovecot.imapsPort,
      secure: true,
      tls: { ca: fs.readFileSync(dovecot.caFile) },
      auth: { user: "other@example.test", pass: "pw2" },
      logger: false,
    });
    await client.connect();
    try {
      expect(await client.status("Archive", { messages: true })).toMatchObject({ messages: 1 });
    } finally {
      await client.logout();
    }
    expect(await dovecot.count("other@example.test", "Archive")).toBe(1);
  });

  it("stops and starts again on the same ports with the same mail", async () => {
    await dovecot.stop();
    await dovecot.stop(); // idempotent
    await expect(fetchInbox(dovecot)).rejects.toThrow();
    await dovecot.start();
    expect(await fetchInbox(dovecot)).toEqual(seeded);
    const responses = await pop3Session(dovecot.pop3Port, [`USER ${USER}`, `PASS ${PASSWORD}`, "STAT", "QUIT"]);
    expect(responses[3]).toMatch(/^\+OK 3 /);
  }, 30_000);
});
