// Plain MLS payloads: a chat message's application data is its UTF-8 text, so a plain RFC 9420
// peer reads it as-is; other layers' tags travel in the MLS authenticated data.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { openTagged, tagData, Tags } from "../src/channel/envelope.ts";
import { signWith } from "../src/identity.ts";
import { MlsEngine } from "../src/mls/engine.ts";
import type { LogEntry } from "../src/relay/log/types.ts";
import { PROVE_CONTEXT } from "../src/relay/protocol.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { eventually, type Proc, relayClient, startRelayProcess, tempDir } from "./_helpers.ts";

const procs: Proc[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});
const enc = new TextEncoder();
const dec = new TextDecoder();

test("layer tags: chat is plain, others ride in the authenticated data, the first format still reads", () => {
  assert.deepEqual(tagData(Tags.chat), new Uint8Array(0));
  assert.deepEqual(openTagged(new Uint8Array(0), enc.encode("hello")), {
    tag: "chat",
    body: enc.encode("hello"),
  });
  const aad = tagData(Tags.mcp);
  assert.deepEqual([...aad], [2, 3, ...enc.encode("mcp")]);
  assert.deepEqual(openTagged(aad, enc.encode("{}")), { tag: "mcp", body: enc.encode("{}") });
  // Stored logs of the first format: 01 | len | tag | body inside the application data.
  const old = (tag: string, body: string) =>
    Uint8Array.of(1, tag.length, ...enc.encode(tag), ...enc.encode(body));
  assert.deepEqual(openTagged(new Uint8Array(0), old("chat", "hi")), {
    tag: "chat",
    body: enc.encode("hi"),
  });
  assert.deepEqual(openTagged(new Uint8Array(0), old("mcp", "{}")), {
    tag: "mcp",
    body: enc.encode("{}"),
  });
  assert.throws(() => openTagged(Uint8Array.of(9, 9), enc.encode("x")), /not a layer tag/);
});

test("a plain MLS member (no Skytale envelope) reads a Skytale chat message as its UTF-8 text", async () => {
  const relay = await startRelayProcess(["--data-dir", await tempDir()]);
  procs.push(relay.proc);
  const ch = "acme/plain/mls";
  const alice = new SkytaleChannelManager({
    identity: "alice",
    endpoint: relay.url,
    store: new MemoryStore(),
  });
  // Bob is a bare MLS client: our engine only, no manager and no envelope.
  const mls = await MlsEngine.create();
  const key = await mls.newIdentityKey();
  const kp = await mls.newKeyPackage("bob", key);
  const raw = relayClient(relay.url, {
    prove: async (nonce: Uint8Array) => ({
      publicKey: key.publicKey,
      signature: await signWith(key, new Uint8Array([...PROVE_CONTEXT, ...nonce])),
    }),
  });
  try {
    await alice.create(ch);
    const welcome = await alice.addMember(ch, kp.keyPackage.toHex());
    let { group } = await mls.join(Uint8Array.fromHex(welcome), [kp]);
    await alice.send(ch, "hello, plain MLS");
    const seen: LogEntry[] = [];
    await raw.subscribe(ch, { epoch: mls.epoch(group) }, (e) => {
      seen.push(e);
    });
    await eventually(() => seen.some((e) => e.kind === "application"), 5000, "the message");
    const e = seen.find((x) => x.kind === "application")!;
    const r = await mls.process(group, e.payload, "application");
    assert.ok(r.kind === "application");
    group = r.newGroup;
    assert.equal(dec.decode(r.data), "hello, plain MLS");
    assert.equal(r.aad.length, 0);
    assert.equal(r.sender, "alice");
  } finally {
    await raw.close();
    await alice.close();
  }
});
