// MCP frames, version 3 (src/mcp/_frame.ts): a session key is sealed once per session and
// opened once per receiver; each frame is bound to its header, channel and sender, and a
// counter that does not grow is a replay.
import { test } from "node:test";
import assert from "node:assert/strict";
import { newBoxKey } from "../src/seal.ts";
import { decodeFrame, FrameKeys, FrameSealer, legacyFrame } from "../src/mcp/_frame.ts";

const CH = "acme/tools/mcp";
const ALICE = "did:key:z6MkAlice";
const MALLORY = "did:key:z6MkMallory";
const SERVER = "did:key:z6MkServer";

async function pair() {
  const server = await newBoxKey();
  let opens = 0;
  const keys = new FrameKeys(async (box, info, aad) => {
    opens++;
    const { openBox } = await import("../src/seal.ts");
    return await openBox(server.privateKey, box, info, aad);
  });
  const sealer = await FrameSealer.create(
    { dir: "c", sid: "s1", to: SERVER },
    server.publicKey,
    CH,
    ALICE,
  );
  return { keys, sealer, opens: () => opens };
}

const msg = (id: number) => ({ msg: { jsonrpc: "2.0" as const, id, method: "ping" } });

test("frames of one session open in order with one key box opened, and carry their body", async () => {
  const { keys, sealer, opens } = await pair();
  for (let i = 0; i < 5; i++) {
    const f = decodeFrame(await sealer.seal(msg(i)))!;
    assert.equal(f.counter, i);
    assert.deepEqual(await keys.open(f, CH, ALICE), msg(i));
  }
  assert.equal(opens(), 1);
});

test("a replayed frame, an older counter, another sender, channel or a flipped byte do not open", async () => {
  const { keys, sealer } = await pair();
  const first = await sealer.seal(msg(1));
  const second = await sealer.seal(msg(2));
  // Another member re-sending Alice's frame as its own, or on another channel: not bound to it.
  assert.equal(await keys.open(decodeFrame(first)!, CH, MALLORY), undefined);
  assert.equal(await keys.open(decodeFrame(first)!, "acme/tools/other", ALICE), undefined);
  assert.ok(await keys.open(decodeFrame(second)!, CH, ALICE));
  assert.equal(await keys.open(decodeFrame(second)!, CH, ALICE), undefined, "replay");
  assert.equal(await keys.open(decodeFrame(first)!, CH, ALICE), undefined, "older counter");
  const third = await sealer.seal(msg(3));
  for (const at of [6, third.length - 20, third.length - 1]) {
    const bad = third.slice();
    bad[at]! ^= 1;
    const f = decodeFrame(bad);
    if (f) assert.equal(await keys.open(f, CH, ALICE), undefined, `byte ${at} flipped`);
  }
  assert.deepEqual(await keys.open(decodeFrame(third)!, CH, ALICE), msg(3));
});

test("a new key box (a restarted sender) starts a new counter; old frame versions are recognised", async () => {
  const { keys, sealer } = await pair();
  assert.ok(await keys.open(decodeFrame(await sealer.seal(msg(1)))!, CH, ALICE));
  assert.ok(await keys.open(decodeFrame(await sealer.seal(msg(2)))!, CH, ALICE));
  const server = await newBoxKey();
  const other = await FrameSealer.create(
    { dir: "c", sid: "s1", to: SERVER },
    server.publicKey,
    CH,
    ALICE,
  );
  // Sealed to another key: does not open, and the session's key is kept.
  assert.equal(await keys.open(decodeFrame(await other.seal(msg(3)))!, CH, ALICE), undefined);
  const v2 = decodeFrame(await sealer.seal(msg(4)))!;
  const bytes = new Uint8Array([2, ...v2.head.subarray(1), ...new Uint8Array(64)]);
  assert.deepEqual(legacyFrame(bytes), { version: 2, dir: "c", sid: "s1" });
  assert.equal(decodeFrame(bytes), undefined);
  const v1 = new TextEncoder().encode(JSON.stringify({ v: 1, dir: "s", sid: "x", msg: {} }));
  assert.deepEqual(legacyFrame(v1), { version: 1, dir: "s", sid: "x" });
});

test("a sealed frame whose message is not JSON-RPC 2.0 does not open; results and errors do", async () => {
  const { keys, sealer } = await pair();
  const bodies: unknown[] = [
    { jsonrpc: "1.0", id: 1, method: "ping" },
    { jsonrpc: "2.0", id: { a: 1 }, method: "ping" },
    { jsonrpc: "2.0", id: 1, method: 7 },
    { jsonrpc: "2.0", id: 1, result: "not an object" },
    { jsonrpc: "2.0", id: 1, error: { code: "x", message: "m" } },
    { jsonrpc: "2.0", id: null, method: "ping" }, // neither a request nor a notification
    { jsonrpc: "2.0", id: 1 }, // no method, result or error
    [{ jsonrpc: "2.0", id: 1, method: "ping" }], // a batch
    "ping",
  ];
  for (const b of bodies) {
    const f = decodeFrame(await sealer.seal({ msg: b as never }))!;
    assert.equal(await keys.open(f, CH, ALICE), undefined, JSON.stringify(b));
  }
  const good: unknown[] = [
    { jsonrpc: "2.0", id: 2, result: {} },
    { jsonrpc: "2.0", id: 3, error: { code: -32000, message: "ended" } },
    { jsonrpc: "2.0", method: "notifications/initialized" },
    { jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } },
    { jsonrpc: "2.0", id: "a", method: "tools/call", params: { name: "x" }, extra: 1 },
  ];
  for (const b of good) {
    const f = decodeFrame(await sealer.seal({ msg: b as never }))!;
    assert.deepEqual(await keys.open(f, CH, ALICE), { msg: b }, JSON.stringify(b));
  }
});
