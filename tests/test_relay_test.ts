import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, SkytaleChannelManager, startTestRelay } from "../mod.ts";

const CH = "acme/test/relay";

test("startTestRelay() serves two managers on a free port and stops when closed", async () => {
  const relay = await startTestRelay();
  assert.match(relay.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(relay.port > 0);
  const opts = { endpoint: relay.url, store: new MemoryStore() };
  const alice = new SkytaleChannelManager({ identity: "alice", ...opts });
  const bob = new SkytaleChannelManager({
    identity: "bob",
    endpoint: relay.url,
    store: new MemoryStore(),
  });
  try {
    await alice.create(CH);
    await bob.join(CH, await alice.addMember(CH, await bob.keyPackage()));
    await alice.send(CH, "hello");
    const got = await bob.receive(CH, { timeout: 10 });
    assert.deepEqual(got.map((m) => m.text), ["hello"]);
  } finally {
    await alice.close();
    await bob.close();
    await relay.close();
  }
  await relay.close(); // idempotent
  await assert.rejects(fetch(`http://127.0.0.1:${relay.port}/healthz`));
});

test("startTestRelay() is stopped when its await using block ends", async () => {
  let port: number;
  {
    await using relay = await startTestRelay();
    port = relay.port;
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text(), "ok");
  }
  await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
});
