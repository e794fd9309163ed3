// The delivery API of SkytaleChannelManager beyond receive(): async iteration,
// AbortSignal on waits, "message" / "arrival" / "membership" listeners, wait()
// across channels, and receive's afterSeq / peek / max. One in-process relay;
// managers on memory stores, or on files where a restart is the point.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { SkytaleError } from "../src/errors.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { startRelay } from "../src/relay/server.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import { eventually, tempDir } from "./_helpers.ts";

const CH = "acme/stream/test";

async function world() {
  const relay = await startRelay({ hostname: "127.0.0.1", port: 0, log: new MemoryLog() });
  const managers: SkytaleChannelManager[] = [];
  const w = {
    manager(identity: string, opts: { dataDir?: string } = {}): SkytaleChannelManager {
      const m = new SkytaleChannelManager({
        identity,
        endpoint: relay.url,
        ...(opts.dataDir ? { dataDir: opts.dataDir } : { store: new MemoryStore() }),
      });
      managers.push(m);
      return m;
    },
    async pair(bobDir?: string) {
      const alice = w.manager("alice");
      const bob = w.manager("bob", bobDir ? { dataDir: bobDir } : {});
      await alice.create(CH);
      await bob.join(CH, await alice.addMember(CH, await bob.keyPackage()));
      return { alice, bob };
    },
    async close() {
      for (const m of managers) await m.close();
      await relay.close();
    },
  };
  return w;
}

test("receive() returns as soon as the first message arrives, not at the end of its timeout", async () => {
  const w = await world();
  try {
    const { alice, bob } = await w.pair();
    const t0 = Date.now();
    const got = bob.receive(CH, { timeout: 60 });
    await new Promise((r) => setTimeout(r, 200));
    await alice.send(CH, "now");
    const msgs = await got;
    assert.deepEqual(msgs.map((m) => m.text), ["now"]);
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  } finally {
    await w.close();
  }
});

test("an AbortSignal stops a waiting receive() and wait() with code aborted", async () => {
  const w = await world();
  try {
    const { bob } = await w.pair();
    const ac = new AbortController();
    const r = bob.receive(CH, { timeout: 60, signal: ac.signal });
    const v = bob.wait([CH], { timeout: 60, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    for (const p of [r, v]) {
      await assert.rejects(p, (e) => e instanceof SkytaleError && e.code === "aborted");
    }
    await assert.rejects(
      bob.receive(CH, { signal: AbortSignal.abort() }),
      (e) => e instanceof SkytaleError && e.code === "aborted",
    );
  } finally {
    await w.close();
  }
});

test("peek, afterSeq and max read without consuming, or consume only part", async () => {
  const w = await world();
  try {
    const { alice, bob } = await w.pair();
    const seqs = [];
    for (const t of ["one", "two", "three"]) seqs.push((await alice.send(CH, t)).seq);
    await eventually(async () => (await bob.receive(CH, { peek: true, timeout: 1 })).length === 3);
    assert.deepEqual((await bob.receive(CH, { peek: true })).map((m) => m.text), [
      "one",
      "two",
      "three",
    ]);
    assert.deepEqual((await bob.receive(CH, { max: 1 })).map((m) => m.text), ["one"]);
    assert.deepEqual(
      (await bob.receive(CH, { afterSeq: 0, timeout: 0 })).map((m) => m.text),
      ["one", "two", "three"],
    );
    assert.deepEqual(
      (await bob.receive(CH, { afterSeq: seqs[1]!, timeout: 0 })).map((m) => m.text),
      ["three"],
    );
    assert.deepEqual((await bob.history(CH, { max: 2 })).map((m) => m.text), ["two", "three"]);
    assert.deepEqual((await bob.receive(CH, { timeout: 0 })).map((m) => m.text), ["two", "three"]);
    assert.deepEqual(await bob.receive(CH, { timeout: 0 }), []);
    await assert.rejects(bob.receive(CH, { max: 0 }), /max must be a positive integer/);
    await assert.rejects(bob.receive(CH, { afterSeq: -1 }), /afterSeq must be/);
  } finally {
    await w.close();
  }
});

test("for await over messages() yields each message once; break puts the rest of a burst back", async () => {
  const w = await world();
  try {
    const { alice, bob } = await w.pair();
    for (const t of ["a", "b", "c"]) await alice.send(CH, t);
    await eventually(async () => (await bob.receive(CH, { peek: true, timeout: 1 })).length === 3);
    const seen: string[] = [];
    for await (const m of bob.messages(CH)) {
      seen.push(m.text);
      if (seen.length === 1) break;
    }
    assert.deepEqual(seen, ["a"]);
    // b and c were not yielded: they are still there, once
    assert.deepEqual((await bob.receive(CH, { timeout: 0 })).map((m) => m.text), ["b", "c"]);

    const ac = new AbortController();
    const loop = (async () => {
      const out: string[] = [];
      for await (const m of bob.messages(CH, { signal: ac.signal })) {
        out.push(m.text);
        if (out.length === 2) ac.abort();
      }
      return out;
    })();
    await alice.send(CH, "d");
    await alice.send(CH, "e");
    assert.deepEqual(await loop, ["d", "e"]);
    assert.deepEqual(await bob.receive(CH, { timeout: 0 }), []);
  } finally {
    await w.close();
  }
});

test('"message" listeners take messages once; a filter leaves the rest for receive(), across a restart', async () => {
  const w = await world();
  try {
    const dir = await tempDir("skytale-stream-");
    const { alice, bob } = await w.pair(dir);
    const carol = w.manager("carol");
    await carol.join(CH, await alice.addMember(CH, await carol.keyPackage()));
    const arrived: string[] = [];
    const offArrival = bob.on("arrival", (_c, ms) => arrived.push(...ms.map((m) => m.text)));
    const got: string[] = [];
    const off = bob.on("message", (m, channel) => {
      assert.equal(channel, CH);
      got.push(m.text);
    }, { channel: CH, filter: (m) => m.sender === "alice" });
    await carol.send(CH, "from carol");
    await alice.send(CH, "from alice");
    await eventually(() => got.length === 1 && arrived.length === 2);
    assert.deepEqual(got, ["from alice"]);
    off();
    offArrival();
    await alice.send(CH, "after off");
    await eventually(async () => (await bob.receive(CH, { peek: true, timeout: 1 })).length === 2);
    await bob.close();

    // carol's message stayed buffered below alice's delivered one, and survives a restart
    const bob2 = w.manager("bob", { dataDir: dir });
    assert.deepEqual((await bob2.receive(CH, { timeout: 5 })).map((m) => m.text), [
      "from carol",
      "after off",
    ]);
    assert.equal(got.length, 1);
  } finally {
    await w.close();
  }
});

test("wait() names the channel that has news; membership listeners see join and leave", async () => {
  const w = await world();
  try {
    const { alice, bob } = await w.pair();
    const other = "acme/stream/other";
    const changes: string[] = [];
    bob.on("membership", (c) => changes.push(`${c.change} ${c.channel}`));
    await alice.create(other);
    await bob.join(other, await alice.addMember(other, await bob.keyPackage()));
    assert.deepEqual(await bob.wait([CH, other], { timeout: 0 }), []);
    const waiting = bob.wait([CH, other], { timeout: 60 });
    await alice.send(other, "news");
    assert.deepEqual(await waiting, [other]);
    await bob.leave(other);
    assert.deepEqual(changes, [`joined ${other}`, `left ${other}`]);
  } finally {
    await w.close();
  }
});
