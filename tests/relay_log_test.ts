import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { MemoryLog } from "../src/relay/log/memory.ts";
import { SqliteLog } from "../src/relay/log/sqlite.ts";
import type { MailboxEntry, RelayLog } from "../src/relay/log/types.ts";
import { openSqlite } from "../src/runtime/sqlite.ts";
import { tempDir } from "./_helpers.ts";

const id = (n: number) => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(12, n);
  return b;
};
const p = (s: string) => new TextEncoder().encode(s);
const CH = "acme/tools/log";
/** What a take returned, without the leases (whose form is each log's own). */
const items = (es: MailboxEntry[]) => es.map(({ id, payload }) => ({ id, payload }));
const texts = (es: MailboxEntry[]) => es.map((e) => new TextDecoder().decode(e.payload));

interface Backend {
  name: string;
  open: () => Promise<
    { log: RelayLog; reopen?: () => Promise<RelayLog>; cleanup: () => Promise<void> }
  >;
}

const backends: Backend[] = [
  {
    name: "memory",
    open: () => Promise.resolve({ log: new MemoryLog(), cleanup: () => Promise.resolve() }),
  },
  {
    name: "sqlite",
    async open() {
      const dir = await tempDir();
      const file = path.join(dir, "sub", "relay.db");
      return {
        log: await SqliteLog.open(file),
        reopen: () => SqliteLog.open(file),
        cleanup: () => fsp.rm(dir, { recursive: true, force: true }),
      };
    },
  },
];

for (const b of backends) {
  const t = (name: string, fn: (log: RelayLog) => Promise<void>) =>
    test(`${b.name} log: ${name}`, async () => {
      const { log, cleanup } = await b.open();
      try {
        await fn(log);
      } finally {
        await log.close();
        await cleanup();
      }
    });

  t("create() is true once, then false; info() reports epoch 0 and head 0", async (log) => {
    assert.equal(await log.info(CH), undefined);
    assert.equal(await log.create(CH), true);
    assert.equal(await log.create(CH), false);
    assert.deepEqual(await log.info(CH), { epoch: 0, head: 0 });
  });

  t("append() numbers entries 1, 2, 3 and read() returns them in order", async (log) => {
    await log.create(CH);
    for (let i = 1; i <= 3; i++) {
      const r = await log.append(CH, {
        id: id(i),
        kind: "application",
        epoch: 0,
        payload: p(`m${i}`),
        time: 1000 + i,
      });
      assert.deepEqual(r, { ok: true, seq: i, epoch: 0 });
    }
    const all = await log.read(CH, 1, 100);
    assert.deepEqual(all.map((e) => e.seq), [1, 2, 3]);
    assert.deepEqual(all[1], {
      seq: 2,
      epoch: 0,
      kind: "application",
      id: id(2),
      time: 1002,
      payload: p("m2"),
    });
    assert.deepEqual((await log.read(CH, 2, 1)).map((e) => e.seq), [2]);
    assert.deepEqual(await log.read(CH, 4, 10), []);
    assert.deepEqual(await log.read("no/such/channel", 1, 10), []);
  });

  t("append() to an unknown channel is refused with unknown_channel", async (log) => {
    const r = await log.append(CH, {
      id: id(1),
      kind: "application",
      epoch: 0,
      payload: p("x"),
      time: 1,
    });
    assert.deepEqual(r, { ok: false, code: "unknown_channel", epoch: 0 });
  });

  t("a commit is accepted only at the channel epoch and advances it", async (log) => {
    await log.create(CH);
    assert.deepEqual(
      await log.append(CH, { id: id(1), kind: "commit", epoch: 0, payload: p("c0"), time: 1 }),
      { ok: true, seq: 1, epoch: 1 },
    );
    assert.deepEqual(
      await log.append(CH, { id: id(2), kind: "commit", epoch: 0, payload: p("c0'"), time: 2 }),
      { ok: false, code: "stale_epoch", epoch: 1 },
    );
    assert.deepEqual(
      await log.append(CH, { id: id(3), kind: "commit", epoch: 5, payload: p("c5"), time: 3 }),
      { ok: false, code: "stale_epoch", epoch: 1 },
    );
    assert.deepEqual(await log.info(CH), { epoch: 1, head: 1 });
    // Application entries keep whatever epoch they were sent at.
    assert.deepEqual(
      await log.append(CH, {
        id: id(4),
        kind: "application",
        epoch: 0,
        payload: p("late"),
        time: 4,
      }),
      { ok: true, seq: 2, epoch: 0 },
    );
    assert.equal((await log.read(CH, 2, 1))[0]!.epoch, 0);
    assert.deepEqual(await log.info(CH), { epoch: 1, head: 2 });
  });

  t("republishing an id returns the original seq and epoch and stores nothing", async (log) => {
    await log.create(CH);
    const first = await log.append(CH, {
      id: id(9),
      kind: "commit",
      epoch: 0,
      payload: p("c"),
      time: 1,
    });
    await log.append(CH, { id: id(10), kind: "application", epoch: 1, payload: p("a"), time: 2 });
    const again = await log.append(CH, {
      id: id(9),
      kind: "commit",
      epoch: 0,
      payload: p("c"),
      time: 3,
    });
    assert.deepEqual(again, first);
    assert.deepEqual(await log.info(CH), { epoch: 1, head: 2 });
    const appAgain = await log.append(CH, {
      id: id(10),
      kind: "application",
      epoch: 1,
      payload: p("a"),
      time: 4,
    });
    assert.deepEqual(appAgain, { ok: true, seq: 2, epoch: 1 });
  });

  t("firstSeqOfEpoch() points after the commit that opened the epoch", async (log) => {
    await log.create(CH);
    assert.equal(await log.firstSeqOfEpoch(CH, 0), 1);
    await log.append(CH, { id: id(1), kind: "application", epoch: 0, payload: p("a"), time: 1 });
    await log.append(CH, { id: id(2), kind: "commit", epoch: 0, payload: p("c"), time: 2 });
    await log.append(CH, { id: id(3), kind: "application", epoch: 1, payload: p("b"), time: 3 });
    await log.append(CH, { id: id(4), kind: "commit", epoch: 1, payload: p("c"), time: 4 });
    assert.equal(await log.firstSeqOfEpoch(CH, 0), 1);
    assert.equal(await log.firstSeqOfEpoch(CH, 1), 3);
    assert.equal(await log.firstSeqOfEpoch(CH, 2), 5);
    assert.equal(await log.firstSeqOfEpoch(CH, 7), 5);
  });

  t(
    "mailboxTake() returns unexpired items once, oldest first, ignoring repeated ids",
    async (log) => {
      await log.mailboxPut("kp:1", id(1), p("one"), 10_000);
      await log.mailboxPut("kp:1", id(2), p("two"), 10_000);
      await log.mailboxPut("kp:1", id(1), p("dup"), 10_000);
      await log.mailboxPut("kp:1", id(3), p("old"), 500);
      await log.mailboxPut("kp:2", id(4), p("other"), 10_000);
      assert.deepEqual(items(await log.mailboxTake("kp:1", 1000)), [
        { id: id(1), payload: p("one") },
        { id: id(2), payload: p("two") },
      ]);
      assert.deepEqual(await log.mailboxTake("kp:1", 1000), []);
      assert.equal((await log.mailboxTake("kp:2", 1000)).length, 1);
    },
  );

  t(
    "mailboxTake() with a page returns what fits, oldest first (at least one), and leaves the rest for the next take",
    async (log) => {
      for (const n of [1, 2, 3, 4]) {
        await log.mailboxPut("pg:1", id(n), new Uint8Array(40), 100_000);
      }
      await log.mailboxPut("pg:1", id(5), new Uint8Array(500), 100_000);
      await log.mailboxPut("pg:1", id(6), new Uint8Array(10), 100_000);
      const page = { maxBytes: 120, perItemBytes: 20 };
      const ids = (es: { id: Uint8Array }[]) => es.map((e) => e.id[15]);
      assert.deepEqual(ids(await log.mailboxTake("pg:1", 1000, 5000, page)), [1, 2]);
      assert.deepEqual(ids(await log.mailboxTake("pg:1", 1000, 5000, page)), [3, 4]);
      // An item larger than the page comes alone rather than never.
      assert.deepEqual(ids(await log.mailboxTake("pg:1", 1000, 5000, page)), [5]);
      assert.deepEqual(ids(await log.mailboxTake("pg:1", 1000, 5000, page)), [6]);
      assert.deepEqual(await log.mailboxTake("pg:1", 1000, 5000, page), []);
    },
  );

  t(
    "mailboxTake() leases: held items skip other takes, come back when the lease lapses, and are gone once acked",
    async (log) => {
      for (const n of [1, 2, 3]) await log.mailboxPut("inv:1", id(n), p(`m${n}`), 100_000);
      const first = await log.mailboxTake("inv:1", 1000, 5000);
      assert.deepEqual(texts(first), ["m1", "m2", "m3"]);
      assert.ok(first.every((e) => typeof e.lease === "string" && e.lease.length > 0));
      // Leased until 6000: no other take gets them, however often it asks.
      assert.deepEqual(await log.mailboxTake("inv:1", 1000, 5000), []);
      assert.deepEqual(await log.mailboxTake("inv:1", 5999, 5000), []);
      // An item put meanwhile is not held by that lease.
      await log.mailboxPut("inv:1", id(4), p("m4"), 100_000);
      assert.deepEqual(texts(await log.mailboxTake("inv:1", 2000, 5000)), ["m4"]);
      // The taker acks two of them (and an unknown id, and one twice): those are gone for good.
      assert.equal(await log.mailboxAck("inv:1", [id(1), id(3), id(99), id(3)]), 2);
      assert.equal(await log.mailboxAck("inv:1", [id(1)]), 0);
      assert.equal(await log.mailboxAck("inv:unknown", [id(1)]), 0);
      // The lease lapses: what was not acked is handed out again, oldest first, and leased anew.
      assert.deepEqual(texts(await log.mailboxTake("inv:1", 7001, 5000)), ["m2", "m4"]);
      assert.deepEqual(await log.mailboxTake("inv:1", 7001, 5000), []);
      assert.equal(await log.mailboxAck("inv:1", [id(2), id(4)]), 2);
      assert.deepEqual(await log.mailboxTake("inv:1", 1_000_000, 5000), []);
    },
  );

  t(
    "mailboxRelease() hands leased items back at once, but never a lease that was taken over or acked",
    async (log) => {
      for (const n of [1, 2, 3]) await log.mailboxPut("wel:1", id(n), p(`m${n}`), 100_000);
      const a = await log.mailboxTake("wel:1", 1000, 5000);
      await log.mailboxRelease("wel:1", a.map((e) => ({ id: e.id, lease: e.lease! })));
      const b = await log.mailboxTake("wel:1", 1000, 5000);
      assert.deepEqual(texts(b), ["m1", "m2", "m3"]);
      // `a`'s leases are stale now: releasing them again leaves `b`'s in place.
      await log.mailboxRelease("wel:1", a.map((e) => ({ id: e.id, lease: e.lease! })));
      assert.deepEqual(await log.mailboxTake("wel:1", 1000, 5000), []);
      // Releasing an acked item does not bring it back.
      await log.mailboxAck("wel:1", [id(2)]);
      await log.mailboxRelease("wel:1", b.map((e) => ({ id: e.id, lease: e.lease! })));
      assert.deepEqual(texts(await log.mailboxTake("wel:1", 1000, 5000)), ["m1", "m3"]);
      // Expired items are never handed out, leased or not.
      await log.mailboxPut("wel:2", id(5), p("short"), 3000);
      assert.equal((await log.mailboxTake("wel:2", 1000, 60_000)).length, 1);
      assert.deepEqual(await log.mailboxTake("wel:2", 3000, 5000), []);
      assert.deepEqual(await log.mailboxTake("wel:2", 70_000, 5000), []);
    },
  );

  t("two takes at once never hand out one item twice", async (log) => {
    for (let n = 0; n < 50; n++) await log.mailboxPut("kp:race", id(n), p(`m${n}`), 100_000);
    const takes = await Promise.all(
      Array.from({ length: 6 }, () => log.mailboxTake("kp:race", 1000, 5000)),
    );
    const got = takes.flatMap(texts).sort();
    assert.deepEqual(got, Array.from({ length: 50 }, (_, n) => `m${n}`).sort());
  });

  t("channels are independent", async (log) => {
    await log.create("a/b/one");
    await log.create("a/b/two");
    await log.append("a/b/one", { id: id(1), kind: "commit", epoch: 0, payload: p("x"), time: 1 });
    assert.deepEqual(
      await log.append("a/b/two", {
        id: id(1),
        kind: "commit",
        epoch: 0,
        payload: p("y"),
        time: 1,
      }),
      { ok: true, seq: 1, epoch: 1 },
    );
  });
}

test("sqlite log: entries, epochs and mailboxes survive closing and reopening the file", async () => {
  const { log, reopen, cleanup } = await backends[1]!.open();
  try {
    await log.create(CH);
    await log.append(CH, { id: id(1), kind: "commit", epoch: 0, payload: p("c"), time: 1 });
    await log.append(CH, { id: id(2), kind: "application", epoch: 1, payload: p("a"), time: 2 });
    await log.mailboxPut("kp:x", id(3), p("w"), Date.now() + 60_000);
    await log.close();
    const again = await reopen!();
    try {
      assert.deepEqual(await again.info(CH), { epoch: 1, head: 2 });
      assert.equal(await again.firstSeqOfEpoch(CH, 1), 2);
      assert.deepEqual(
        await again.append(CH, { id: id(1), kind: "commit", epoch: 0, payload: p("c"), time: 9 }),
        { ok: true, seq: 1, epoch: 1 },
      );
      assert.deepEqual((await again.read(CH, 1, 10)).map((e) => e.payload), [p("c"), p("a")]);
      assert.deepEqual(items(await again.mailboxTake("kp:x", Date.now())), [{
        id: id(3),
        payload: p("w"),
      }]);
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});

test("sqlite log: leases and acks survive closing and reopening the file", async () => {
  const { log, reopen, cleanup } = await backends[1]!.open();
  try {
    for (const n of [1, 2, 3]) await log.mailboxPut("inv:s", id(n), p(`m${n}`), 100_000);
    assert.equal((await log.mailboxTake("inv:s", 1000, 5000)).length, 3);
    assert.equal(await log.mailboxAck("inv:s", [id(2)]), 1);
    await log.close();
    const again = await reopen!();
    try {
      // Still leased after the restart, until 6000; then the unacked two come back.
      assert.deepEqual(await again.mailboxTake("inv:s", 2000, 5000), []);
      assert.deepEqual(texts(await again.mailboxTake("inv:s", 6001, 5000)), ["m1", "m3"]);
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});

test("sqlite log: a relay.db written before leases opens with its mailbox items intact", async () => {
  const dir = await tempDir();
  const file = path.join(dir, "relay.db");
  try {
    // The schema-1 mailbox table as it was before leases, with two items queued.
    const old = openSqlite(file);
    old.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta (key, value) VALUES ('schema', '1');
      CREATE TABLE mailbox (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        address TEXT NOT NULL,
        id BLOB NOT NULL,
        payload BLOB NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX mailbox_id ON mailbox (address, id);
      CREATE INDEX mailbox_expiry ON mailbox (expires_at);
    `);
    const put = old.prepare(
      "INSERT INTO mailbox (address, id, payload, expires_at) VALUES (?, ?, ?, ?)",
    );
    put.run("inv:old", id(1), p("before"), 100_000);
    put.run("inv:old", id(2), p("upgrade"), 100_000);
    old.close();
    for (let round = 0; round < 2; round++) {
      // Opened twice: the second open finds the columns there and adds nothing.
      const log = await SqliteLog.open(file);
      try {
        if (round === 0) {
          assert.deepEqual(texts(await log.mailboxTake("inv:old", 1000, 5000)), [
            "before",
            "upgrade",
          ]);
          assert.equal(await log.mailboxAck("inv:old", [id(1)]), 1);
        } else {
          assert.deepEqual(await log.mailboxTake("inv:old", 2000, 5000), []);
          assert.deepEqual(texts(await log.mailboxTake("inv:old", 6001, 5000)), ["upgrade"]);
        }
      } finally {
        await log.close();
      }
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("sqlite log: calls after close() fail with closed", async () => {
  const { log, cleanup } = await backends[1]!.open();
  await log.close();
  await log.close();
  await assert.rejects(async () => await log.info(CH), { code: "closed" });
  await cleanup();
});
