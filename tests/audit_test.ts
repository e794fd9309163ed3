// The encrypted, verifiable audit log (src/audit/): members with `audit: true` append what they
// see to hash chains in a relay mailbox; an auditor with only the exported key reads and checks
// them. A real relay process with its SQLite file, real file stores, and the real CLI.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { eventually, type Proc, spawnScript, startRelayProcess, tempDir } from "./_helpers.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { decodeAuditKey, readAuditLog } from "../src/audit/chain.ts";
import { connectWebSocket, RelayClient } from "../src/relay/client.ts";
import { openSqlite } from "../src/runtime/sqlite.ts";
import { Client, InMemoryTransport } from "../src/mcp/_sdk.ts";
import { createMcpServer } from "../src/mcp/server.ts";
import { SKIP as NATS_SKIP, startNats } from "./_nats.ts";

const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

async function relay(dir?: string) {
  const relayDir = dir ?? await tempDir();
  const r = await startRelayProcess(["--data-dir", relayDir]);
  procs.push(r.proc);
  return { ...r, relayDir };
}

function member(url: string, identity: string, dataDir: string, audit = true) {
  const m = new SkytaleChannelManager({ identity, endpoint: url, dataDir, audit });
  managers.push(m);
  return m;
}

async function add(a: SkytaleChannelManager, b: SkytaleChannelManager, channel: string) {
  await b.join(channel, await a.addMember(channel, await b.keyPackage()));
}

/** Reads the log as an outsider: a bare relay connection that proves no member key. */
async function audit(url: string, channel: string, key: string) {
  const client = new RelayClient({ connect: () => connectWebSocket(url, 2000), onError: () => {} });
  try {
    return await readAuditLog(client, channel, decodeAuditKey(key));
  } finally {
    await client.close();
  }
}

async function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawnScript("mod.ts", ["audit", ...args]);
  procs.push(p);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

test("an auditor holding only the exported key verifies and reads the log without being a member", async () => {
  const { url } = await relay();
  const ch = "acme/audit/intact";
  const a = member(url, "alice", await tempDir());
  const b = member(url, "bob", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  await a.send(ch, "hello");
  await b.send(ch, "hi alice");
  await b.receive(ch, { timeout: 10 });
  await a.rotateKeys(ch);
  // A later joiner, epochs after auditing started, gets the same key through the shared context.
  const c = member(url, "carol", await tempDir());
  await add(a, c, ch);
  await c.send(ch, "carol here");
  await a.removeMember(ch, "bob");
  const key = await a.exportAuditKey(ch);
  assert.match(key, /^skt_audit_[0-9a-f]{64}$/);
  assert.equal(await c.exportAuditKey(ch), key);
  assert.equal(await b.exportAuditKey(ch).catch(() => key), key);
  const [da, db, dc] = await Promise.all([a.whoami(), b.whoami(), c.whoami()]);
  // The members' own view, read back from the relay, once each has seen bob's removal.
  for (const m of [a, b, c]) {
    await eventually(
      async () => {
        const r = await m.auditReport(ch);
        assert.equal(r.ok, true, JSON.stringify(r.problems));
        return r.entries.some((e) =>
          e.writer === (m === a ? da : m === b ? db : dc).did &&
          (e.event.type === "removed" ||
            (e.event.type === "commit" && (e.event.removed as string[]).includes(db.did)))
        );
      },
      20_000,
      `${m.identity} logging bob's removal`,
    );
  }
  const r = await audit(url, ch, key);
  assert.equal(r.ok, true, JSON.stringify(r.problems));
  assert.deepEqual(Object.keys(r.heads).sort(), [da.did, db.did, dc.did].sort());
  const mine = r.entries.filter((e) => e.writer === da.did).map((e) => e.event);
  assert.equal(mine[0]!.type, "created");
  const msgs = mine.filter((e) => e.type === "message" && e.tag === "chat");
  assert.deepEqual(
    msgs.map((e) => [e.sender, e.size, e.sha256]),
    [
      [da.did, 5, sha("hello")],
      [db.did, 8, sha("hi alice")],
      [dc.did, 10, sha("carol here")],
    ],
  );
  const commits = mine.filter((e) => e.type === "commit");
  assert.deepEqual(commits.map((e) => [e.added, e.removed, e.rotation]), [
    [[db.did], [], false],
    [[], [], true],
    [[dc.did], [], false],
    [[], [db.did], false],
  ]);
  assert.ok(r.entries.filter((e) => e.writer === dc.did).some((e) => e.event.type === "joined"));
  assert.ok(r.entries.filter((e) => e.writer === db.did).some((e) => e.event.type === "removed"));

  // The CLI, as an auditor would run it.
  const v = await cli(["verify", ch, "--key", key, "--relay", url]);
  assert.equal(v.code, 0, v.err);
  assert.match(v.err, /verifies: \d+ entries from 3 writer/);
  const x = await cli(["export", ch, "--key", key, "--relay", url, "--format", "jsonl"]);
  assert.equal(x.code, 0, x.err);
  const lines = x.out.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, r.entries.length);
  assert.ok(lines.some((l) => l.sha256 === sha("carol here")));
  // A wrong key reads nothing: another mailbox, and nothing it could decrypt.
  const wrong = await audit(url, ch, "skt_audit_" + "11".repeat(32));
  assert.equal(wrong.entries.length, 0);
});

test("verify names the first bad position after a stored entry is deleted, reordered or edited", async () => {
  const first = await relay();
  const ch = "acme/audit/tamper";
  const a = member(first.url, "alice", await tempDir());
  const b = member(first.url, "bob", await tempDir(), false); // one writer: one chain
  await a.create(ch);
  await add(a, b, ch);
  for (let i = 0; i < 4; i++) await b.send(ch, `message ${i}`);
  await a.receive(ch, { timeout: 10, max: 4 });
  const key = await a.exportAuditKey(ch);
  const intact = await a.auditReport(ch);
  assert.equal(intact.ok, true, JSON.stringify(intact.problems));
  assert.ok(intact.entries.length >= 6, `only ${intact.entries.length} entries`);
  await Promise.all([a.close(), b.close()]);
  await first.proc.kill("SIGTERM");

  const cases: [string, (rows: { n: number; payload: Uint8Array }[], db: Db) => void, number][] = [
    ["deleted", (rows, db) => db.prepare("DELETE FROM mailbox WHERE n = ?").run(rows[3]!.n), 4],
    ["reordered", (rows, db) => {
      const st = db.prepare("UPDATE mailbox SET payload = ? WHERE n = ?");
      st.run(rows[3]!.payload, rows[2]!.n);
      st.run(rows[2]!.payload, rows[3]!.n);
    }, 3],
    ["edited", (rows, db) => {
      const p = rows[4]!.payload.slice();
      p[p.length - 20]! ^= 1;
      db.prepare("UPDATE mailbox SET payload = ? WHERE n = ?").run(p, rows[4]!.n);
    }, 5],
  ];
  for (const [what, tamper, firstBad] of cases) {
    const dir = await tempDir();
    for (const f of fs.readdirSync(first.relayDir)) {
      if (f.startsWith("relay.db")) {
        fs.copyFileSync(path.join(first.relayDir, f), path.join(dir, f));
      }
    }
    const db = openSqlite(path.join(dir, "relay.db"));
    const rows = db.prepare(
      "SELECT n, payload FROM mailbox WHERE address LIKE 'aud:%' ORDER BY n",
    ).all() as { n: number; payload: Uint8Array }[];
    assert.equal(rows.length, intact.entries.length);
    tamper(rows, db);
    db.close();
    const { url } = await relay(dir);
    const r = await audit(url, ch, key);
    assert.equal(r.ok, false, `${what}: verified`);
    assert.equal(r.firstBad, firstBad, `${what}: ${JSON.stringify(r.problems)}`);
    const v = await cli(["verify", ch, "--key", key, "--relay", url]);
    assert.equal(v.code, 1, `${what}: ${v.err}`);
    assert.match(v.err, new RegExp(`first bad entry at position ${firstBad}\\b`));
  }
});

type Db = ReturnType<typeof openSqlite>;

test("skytale_audit gives a member the verified recent entries, and says what to do without auditing", async () => {
  const { url } = await relay();
  const ch = "acme/audit/tool";
  const a = member(url, "alice", await tempDir());
  const plain = member(url, "bob", await tempDir(), false);
  await a.create(ch);
  await add(a, plain, ch);
  await a.send(ch, "for the record");
  // Own messages are logged when read back from the relay, a moment after the send's ack.
  await eventually(
    async () =>
      (await a.auditReport(ch)).entries.some((e) => e.event.sha256 === sha("for the record")),
    20_000,
    "the message in the audit log",
  );
  const call = async (m: SkytaleChannelManager, args: Record<string, unknown>) => {
    const [x, y] = InMemoryTransport.createLinkedPair();
    await createMcpServer(m).connect(y);
    const client = new Client({ name: "t", version: "0" });
    await client.connect(x);
    try {
      const r = await client.callTool({ name: "skytale_audit", arguments: args });
      const text = (r.content as { text?: string }[]).map((c) => c.text ?? "").join("\n");
      return {
        text,
        isError: r.isError === true,
        s: r.structuredContent as Record<string, unknown>,
      };
    } finally {
      await client.close();
    }
  };
  const r = await call(a, { channel: ch, limit: 2 });
  assert.equal(r.isError, false, r.text);
  assert.match(r.text, /verifies: \d+ entries from 1 writer/);
  assert.equal(r.s.ok, true);
  assert.equal((r.s.entries as unknown[]).length, 2);
  assert.ok((r.s.total as number) >= 4, JSON.stringify(r.s));
  const all = await call(a, { channel: ch, limit: 500 });
  const entries = all.s.entries as { type: string; tag?: string; sha256?: string }[];
  assert.equal(entries.length, all.s.total);
  assert.ok(entries.some((e) => e.tag === "chat" && e.sha256 === sha("for the record")));
  const off = await call(plain, { channel: ch });
  assert.equal(off.isError, true);
  assert.match(off.text, /audit: true/);
  const bad = await call(a, { channel: "nope" });
  assert.equal(bad.isError, true);
});

test(
  "on a relay backed by NATS JetStream, the shared context converges and the audit log verifies",
  {
    skip: NATS_SKIP,
  },
  async () => {
    const nats = await startNats();
    try {
      const r = await startRelayProcess(["--store", nats.url]);
      procs.push(r.proc);
      const ch = "acme/audit/nats";
      const a = member(r.url, "alice", await tempDir());
      const b = member(r.url, "bob", await tempDir());
      await a.create(ch);
      await add(a, b, ch);
      await a.context(ch).set("plan", { step: 1 });
      await eventually(
        async () => ((await b.context(ch).get("plan"))?.value as { step?: number })?.step === 1,
        20_000,
        "bob seeing alice's context entry",
      );
      await a.send(ch, "over NATS");
      await b.receive(ch, { timeout: 10 });
      const key = await a.exportAuditKey(ch);
      const [da, db] = await Promise.all([a.whoami(), b.whoami()]);
      await eventually(
        async () => {
          const log = await audit(r.url, ch, key);
          return log.ok && Object.keys(log.heads).length === 2 &&
            log.entries.some((e) => e.writer === db.did && e.event.type === "message");
        },
        20_000,
        "both members' chains at the relay",
      );
      const log = await audit(r.url, ch, key);
      assert.equal(log.ok, true, JSON.stringify(log.problems));
      assert.deepEqual(Object.keys(log.heads).sort(), [da.did, db.did].sort());
    } finally {
      await nats.stop();
    }
  },
);
