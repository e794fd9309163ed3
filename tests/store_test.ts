import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { FileStore } from "../src/store/file.ts";
import { MemoryStore } from "../src/store/memory.ts";
import type { ChannelRecord, Store } from "../src/store/types.ts";
import { SkytaleError } from "../src/errors.ts";
import { tempDir } from "./_helpers.ts";

function record(cursor: number): ChannelRecord {
  return {
    channel: "acme/research/results",
    group: new Uint8Array([1, 2, 3, cursor]),
    cursor,
    buffer: [{ sender: "alice", seq: cursor, time: new Date(0).toISOString(), text: "hi" }],
    active: true,
  };
}

for (
  const [name, make] of [
    ["FileStore", async () => new FileStore(await tempDir())],
    ["MemoryStore", () => Promise.resolve(new MemoryStore())],
  ] as [string, () => Promise<Store>][]
) {
  test(`${name} round-trips channels, key packages and blobs`, async () => {
    const store = await make();
    await store.saveChannel(record(1));
    await store.saveChannel(record(2));
    const loaded = await store.loadChannels();
    assert.equal(loaded.length, 1);
    assert.deepEqual(loaded[0], record(2));
    await store.saveKeyPackage({
      ref: "ab",
      keyPackage: new Uint8Array([9]),
      privateKey: new Uint8Array([8]),
      created: 5,
    });
    assert.deepEqual((await store.loadKeyPackages())[0]?.privateKey, new Uint8Array([8]));
    await store.deleteKeyPackage("ab");
    assert.deepEqual(await store.loadKeyPackages(), []);
    await store.saveBlob("invites", new Uint8Array([7, 7]));
    assert.deepEqual(await store.loadBlob("invites"), new Uint8Array([7, 7]));
    await store.deleteChannel("acme/research/results");
    assert.deepEqual(await store.loadChannels(), []);
  });
}

test("FileStore writes owner-only files", async () => {
  const dir = await tempDir();
  const store = new FileStore(dir);
  await store.saveChannel(record(1));
  const files = await fsp.readdir(path.join(dir, "channels"));
  assert.equal(files.length, 1);
  const st = await fsp.stat(path.join(dir, "channels", files[0]!));
  assert.equal(st.mode & 0o077, 0);
  assert.equal((await fsp.stat(dir)).mode & 0o077, 0);
});

test("FileStore recovers the last good copy when the state file is truncated or flipped", async () => {
  const dir = await tempDir();
  const store = new FileStore(dir);
  await store.saveChannel(record(1));
  await store.saveChannel(record(2));
  const [file] = await fsp.readdir(path.join(dir, "channels")).then((f) =>
    f.filter((n) => n.endsWith(".json"))
  );
  const full = path.join(dir, "channels", file!);
  const bytes = await fsp.readFile(full);
  await fsp.writeFile(full, bytes.subarray(0, bytes.length >> 1));
  assert.deepEqual((await new FileStore(dir).loadChannels())[0], { ...record(1), recovered: true });
  const flipped = new Uint8Array(bytes);
  const i = flipped.indexOf("h".charCodeAt(0), flipped.length - 40);
  flipped[i] = "H".charCodeAt(0);
  await fsp.writeFile(full, flipped);
  assert.deepEqual((await new FileStore(dir).loadChannels())[0], { ...record(1), recovered: true });
});

test("FileStore refuses to load when the state and its backup are both corrupt", async () => {
  const dir = await tempDir();
  const store = new FileStore(dir);
  await store.saveChannel(record(1));
  await store.saveChannel(record(2));
  for (const f of await fsp.readdir(path.join(dir, "channels"))) {
    await fsp.writeFile(path.join(dir, "channels", f), '{"v":1,');
  }
  await assert.rejects(
    () => new FileStore(dir).loadChannels(),
    (e: unknown) => e instanceof SkytaleError && e.code === "state_corrupt",
  );
});
