import { test } from "node:test";
import assert from "node:assert/strict";
import { SqliteLog } from "../src/relay/log/sqlite.ts";
import { CHECKPOINT_APPENDS } from "../src/relay/log/_checkpointer.ts";
import { eventually, rid, tempDir } from "./_helpers.ts";

test("a file log's WAL is checkpointed by a worker thread, not inside the relay's commits", async () => {
  const file = `${await tempDir()}/relay.db`;
  const log = await SqliteLog.open(file);
  await log.create("c");
  const payload = new Uint8Array(1024).fill(7);
  const n = 3 * CHECKPOINT_APPENDS;
  try {
    for (let i = 0; i < n; i++) {
      if (i % CHECKPOINT_APPENDS === 0 && i > 0) {
        // One at a time: the next is asked for only once the last is done.
        await eventually(() => log.checkpoints() >= i / CHECKPOINT_APPENDS, 20_000, "a checkpoint");
      }
      const e = { kind: "application" as const, epoch: 0, id: rid(), time: 1, payload };
      assert.ok((await log.append("c", e)).ok);
    }
    await eventually(() => log.checkpoints() >= 3, 20_000, "checkpoints by the worker thread");
  } finally {
    await log.close();
  }
  await log.close(); // a second close is the same close
  // Nothing was lost between the two connections: every entry is there, in order.
  const again = await SqliteLog.open(file);
  try {
    assert.deepEqual(await again.info("c"), { epoch: 0, head: n });
    const all = await again.read("c", 1, n + 1);
    assert.deepEqual(all.map((e) => e.seq), Array.from({ length: n }, (_, i) => i + 1));
  } finally {
    await again.close();
  }
});

test("a log that stores few entries never starts the checkpoint thread", async () => {
  const log = await SqliteLog.open(`${await tempDir()}/relay.db`);
  await log.create("c");
  const payload = new Uint8Array(16);
  for (let i = 0; i < CHECKPOINT_APPENDS - 1; i++) {
    await log.append("c", { kind: "application", epoch: 0, id: rid(), time: 1, payload });
  }
  assert.equal(log.checkpoints(), 0);
  await log.close();
});
