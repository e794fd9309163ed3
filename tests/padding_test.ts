// Padding: what the relay stores for a message is one of the size buckets, whatever its length.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { openSqlite } from "../src/runtime/sqlite.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { eventually, type Proc, startRelayProcess, tempDir } from "./_helpers.ts";

const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

/** Sizes of a channel's stored application entries, in seq order (only `seqs`, if given). */
function storedSizes(db: string, channel: string, seqs?: number[]): number[] {
  const d = openSqlite(db);
  try {
    return (d.prepare(
      "SELECT e.seq AS seq, length(e.payload) AS n FROM entries e JOIN channels c ON c.cid = e.cid WHERE c.name = ? AND e.kind = 0 ORDER BY e.seq",
    ).all(channel) as { seq: number; n: number }[])
      .filter((r) => !seqs || seqs.includes(Number(r.seq)))
      .map((r) => Number(r.n));
  } finally {
    d.close();
  }
}

test("the relay stores messages of 1, 100, 300 and 5,000 bytes at exactly their bucket sizes", async () => {
  const dir = await tempDir();
  const relay = await startRelayProcess(["--data-dir", dir]);
  procs.push(relay.proc);
  const make = (identity: string, padding?: readonly number[] | false) => {
    const m = new SkytaleChannelManager({
      identity,
      endpoint: relay.url,
      store: new MemoryStore(),
      ...(padding !== undefined ? { padding } : {}),
    });
    managers.push(m);
    return m;
  };
  const ch = "acme/pad/default";
  const alice = make("alice");
  const bob = make("bob");
  await alice.create(ch);
  await bob.join(ch, await alice.addMember(ch, await bob.keyPackage()));
  const texts = [1, 100, 300, 5000].map((n) => "x".repeat(n));
  const seqs: number[] = [];
  for (const t of texts) seqs.push((await alice.send(ch, t)).seq);
  const got = [];
  while (got.length < 4) got.push(...await bob.receive(ch, { timeout: 5 }));
  assert.deepEqual(got.map((m) => m.text.length), [1, 100, 300, 5000]);
  const db = path.join(dir, "relay.db");
  // Only alice's four (the channel also carries a shared-context sync request after the join).
  await eventually(() => storedSizes(db, ch, seqs).length === 4, 5000, "4 stored messages");
  assert.deepEqual(storedSizes(db, ch, seqs), [256, 256, 512, 8192]);

  // Buckets are configurable; `false` leaves lengths visible (the relay sees them differ).
  const ch2 = "acme/pad/custom";
  const carol = make("carol", [1024]);
  await carol.create(ch2);
  const seqs2 = [(await carol.send(ch2, "a")).seq, (await carol.send(ch2, "b".repeat(1500))).seq];
  const ch3 = "acme/pad/off";
  const dave = make("dave", false);
  await dave.create(ch3);
  const seqs3 = [
    (await dave.send(ch3, "c".repeat(400))).seq,
    (await dave.send(ch3, "d".repeat(600))).seq,
  ];
  await eventually(() => storedSizes(db, ch3, seqs3).length === 2, 5000, "2 stored messages");
  assert.deepEqual(storedSizes(db, ch2, seqs2), [1024, 2048]);
  const off = storedSizes(db, ch3, seqs3);
  assert.notEqual(off[0], off[1]);
  assert.throws(() => make("erin", [512, 256]), /increasing/);
});
