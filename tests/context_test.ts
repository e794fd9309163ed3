// Shared context (src/context/): a replicated key-value document per channel, over a real relay
// process with its SQLite log, and real file stores.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { eventually, freePort, type Proc, startRelayProcess, tempDir } from "./_helpers.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import type { ContextEvent } from "../src/context/context.ts";

const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

async function relay(port?: number, dir?: string) {
  const relayDir = dir ?? await tempDir();
  const r = await startRelayProcess([
    "--data-dir",
    relayDir,
    ...(port ? ["--port", String(port)] : []),
  ]);
  procs.push(r.proc);
  return { ...r, relayDir };
}

function member(url: string, identity: string, dataDir: string): SkytaleChannelManager {
  const m = new SkytaleChannelManager({ identity, endpoint: url, dataDir });
  managers.push(m);
  return m;
}

async function add(a: SkytaleChannelManager, b: SkytaleChannelManager, channel: string) {
  await b.join(channel, await a.addMember(channel, await b.keyPackage()));
}

/** Both members' context has the same value at `key`, and it is `want` if given. */
async function converged(ms: SkytaleChannelManager[], channel: string, key: string) {
  let seen: unknown[] = [];
  await eventually(
    async () => {
      seen = await Promise.all(ms.map(async (m) => (await m.context(channel).get(key))?.value));
      return seen[0] !== undefined &&
        seen.every((v) => JSON.stringify(v) === JSON.stringify(seen[0]));
    },
    20_000,
    `convergence of "${key}" (seen ${JSON.stringify(seen)})`,
  );
  return seen[0];
}

test("two members writing one key at once converge on one value", async () => {
  const { url } = await relay();
  const ch = "acme/ctx/race";
  const a = member(url, "alice", await tempDir());
  const b = member(url, "bob", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  for (let i = 0; i < 3; i++) {
    await Promise.all([
      a.context(ch).set("plan", { by: "alice", i }),
      b.context(ch).set("plan", { by: "bob", i }),
    ]);
  }
  assert.ok(await a.context(ch).synced());
  assert.ok(await b.context(ch).synced());
  const v = await converged([a, b], ch, "plan") as { by: string; i: number };
  assert.equal(v.i, 2);
  // Both agree on who wrote the winning version, too.
  const [ea, eb] = [await a.context(ch).get("plan"), await b.context(ch).get("plan")];
  assert.deepEqual(ea, eb);
});

test("a member that writes while the relay is away converges once it is back, and state survives a restart", async () => {
  const port = await freePort();
  const first = await relay(port);
  const ch = "acme/ctx/partition";
  const aDir = await tempDir();
  const a = member(first.url, "alice", aDir);
  const b = member(first.url, "bob", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  await a.context(ch).set("status", "online");
  await converged([a, b], ch, "status");
  await first.proc.kill("SIGTERM");
  // Partitioned: both write the same key, and each one of its own.
  await b.context(ch).set("status", "bob offline");
  await new Promise((r) => setTimeout(r, 5));
  await a.context(ch).set("status", "alice offline");
  await a.context(ch).set("only-alice", 1);
  await b.context(ch).set("only-bob", 2);
  assert.equal((await b.context(ch).get("status"))?.value, "bob offline");
  await relay(port, first.relayDir);
  assert.ok(await a.context(ch).synced(60_000), "alice's writes reached the relay");
  assert.ok(await b.context(ch).synced(60_000), "bob's writes reached the relay");
  assert.equal(await converged([a, b], ch, "status"), "alice offline");
  assert.equal(await converged([a, b], ch, "only-alice"), 1);
  assert.equal(await converged([a, b], ch, "only-bob"), 2);
  // A restart reads the document back from the store.
  await a.close();
  const a2 = member(first.url, "alice", aDir);
  assert.equal((await a2.context(ch).get("status"))?.value, "alice offline");
  assert.equal((await a2.context(ch).list()).length, 3);
});

test("a late joiner gets the current context, sealed to it, but no earlier chat", async () => {
  const { url } = await relay();
  const ch = "acme/ctx/late";
  const a = member(url, "alice", await tempDir());
  const b = member(url, "bob", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  await a.send(ch, "before carol: secret plans");
  await a.context(ch).set("goal", "ship v1", { type: "decision" });
  await a.context(ch).set("goal", "ship v2", { type: "decision" }); // history carol must not see
  await b.context(ch).set("draft", "x");
  await b.context(ch).delete("draft");
  assert.ok(await b.context(ch).synced());
  await converged([a, b], ch, "goal");
  const c = member(url, "carol", await tempDir());
  const events: ContextEvent[] = [];
  await add(a, c, ch);
  c.context(ch).subscribe((e) => events.push(e));
  await eventually(async () => (await c.context(ch).get("goal"))?.value === "ship v2");
  const goal = await c.context(ch).get("goal");
  assert.equal(goal?.type, "decision");
  assert.equal(goal?.author.name, "alice");
  assert.equal(await c.context(ch).get("draft"), undefined);
  assert.deepEqual((await c.context(ch).list()).map((e) => e.key), ["goal"]);
  assert.ok(!events.some((e) => JSON.stringify(e).includes("ship v1")), "no history");
  assert.deepEqual(await c.receive(ch, { timeout: 0.5 }), []);
  await a.send(ch, "after carol");
  assert.deepEqual((await c.receive(ch, { timeout: 10 })).map((m) => m.text), ["after carol"]);
});

test("an entry visible to one member is unreadable for another and never plaintext at the relay", async () => {
  const { url, relayDir } = await relay();
  const ch = "acme/ctx/private";
  const a = member(url, "alice", await tempDir());
  const b = member(url, "bob", await tempDir());
  const c = member(url, "carol", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  await add(a, c, ch);
  const marker = `launch-code-${crypto.randomUUID()}`;
  await a.context(ch).set("secret", { code: marker }, { visibleTo: ["bob"], type: "artifact" });
  await a.context(ch).set("public", "everyone");
  assert.ok(await a.context(ch).synced());
  await converged([a, b, c], ch, "public");
  assert.deepEqual((await b.context(ch).get("secret"))?.value, { code: marker });
  assert.deepEqual((await a.context(ch).get("secret"))?.value, { code: marker });
  assert.deepEqual(
    (await b.context(ch).get("secret"))?.visibleTo?.sort(),
    [(await a.whoami()).did, (await b.whoami()).did].sort(),
  );
  assert.equal(await c.context(ch).get("secret"), undefined);
  assert.deepEqual((await c.context(ch).list()).map((e) => e.key), ["public"]);
  // Nothing of it in the relay's files (the log and its WAL).
  for (const f of fs.readdirSync(relayDir)) {
    const bytes = fs.readFileSync(path.join(relayDir, f));
    assert.equal(bytes.includes(marker), false, `${f} holds the plaintext`);
    assert.equal(bytes.includes("everyone"), false, `${f} holds a context value`);
  }
  // Naming a non-member is refused.
  await assert.rejects(
    a.context(ch).set("x", 1, { visibleTo: ["mallory"] }),
    /"mallory" is not a member/,
  );
});

test("entries with a TTL disappear from get and list when they expire", async () => {
  const { url } = await relay();
  const ch = "acme/ctx/ttl";
  const a = member(url, "alice", await tempDir());
  const b = member(url, "bob", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  await a.context(ch).set("lease", "held", { ttl: 1.5 });
  await a.context(ch).set("keep", "kept");
  await converged([a, b], ch, "lease");
  assert.ok((await b.context(ch).get("lease"))?.expires);
  await eventually(async () => (await b.context(ch).get("lease")) === undefined, 5000);
  assert.equal(await a.context(ch).get("lease"), undefined);
  assert.deepEqual((await b.context(ch).list()).map((e) => e.key), ["keep"]);
});

test("a handoff reaches its recipient as an event and shows in its list", async () => {
  const { url } = await relay();
  const ch = "acme/ctx/handoff";
  const a = member(url, "alice", await tempDir());
  const b = member(url, "bob", await tempDir());
  await a.create(ch);
  await add(a, b, ch);
  const got: ContextEvent[] = [];
  b.context(ch).subscribe((e) => {
    if (e.kind === "handoff") got.push(e);
  });
  const sent = await a.context(ch).handoff("bob", "finish the report", {
    tried: ["asked carol"],
  });
  assert.equal(sent.type, "handoff");
  await eventually(() => got.length === 1, 20_000, "the handoff event");
  const e = got[0]!.entry!;
  assert.equal(e.to, (await b.whoami()).did);
  assert.deepEqual(e.value, {
    task: "finish the report",
    tried: ["asked carol"],
    from: { name: "alice", did: (await a.whoami()).did },
    to: { name: "bob", did: (await b.whoami()).did },
    status: "open",
  });
  const listed = await b.context(ch).list({ type: "handoff" });
  assert.deepEqual(listed.map((x) => x.key), [sent.key]);
  await assert.rejects(a.context(ch).handoff("nobody", "x"), /"nobody" is not a member/);
});
