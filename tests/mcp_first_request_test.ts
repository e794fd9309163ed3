// The server's tools and prompts are registered on its first request after `initialize`
// (src/mcp/_first_request.ts): what a client sees is as if they had been there from the start.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { Client, InMemoryTransport, type JSONRPCMessage } from "../src/mcp/_sdk.ts";
import { createMcpServer } from "../src/mcp/server.ts";

/** A manager that is never used for more than its identity: nothing listens at its relay. */
function idleManager(): SkytaleChannelManager {
  return new SkytaleChannelManager({
    identity: "alice",
    store: new MemoryStore(),
    endpoint: "ws://127.0.0.1:1",
  });
}

test("initialize declares every capability; the first lists have every tool and prompt and no list_changed is sent", async () => {
  await using manager = idleManager();
  await using server = createMcpServer(manager);
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(b);
  const client = new Client({ name: "t", version: "0" });
  const notes: string[] = [];
  client.fallbackNotificationHandler = (n) => {
    notes.push(n.method);
    return Promise.resolve();
  };
  await client.connect(a);
  assert.deepEqual(client.getServerCapabilities(), {
    tools: { listChanged: true },
    logging: {},
    prompts: { listChanged: true },
    completions: {},
    resources: { listChanged: true, subscribe: true },
  });
  const [{ tools }, { prompts }] = await Promise.all([client.listTools(), client.listPrompts()]);
  assert.equal(tools.length, 19);
  assert.equal(prompts.length, 3);
  const { completion } = await client.complete({
    ref: { type: "ref/prompt", name: "skytale_hand_off_work" },
    argument: { name: "channel", value: "" },
  });
  assert.deepEqual(completion.values, []);
  assert.deepEqual(notes.filter((m) => m.endsWith("list_changed")), []);
  await client.close();
});

test("requests a transport held from before the server connected wait for the tools too", async () => {
  await using manager = idleManager();
  await using server = createMcpServer(manager);
  const [a, b] = InMemoryTransport.createLinkedPair();
  const answers = new Map<number, JSONRPCMessage>();
  a.onmessage = (m) => {
    if ("id" in m && typeof m.id === "number") answers.set(m.id, m);
  };
  await a.start();
  // Sent before the server connects: InMemoryTransport holds them and hands them over in start().
  const send = (id: number, method: string, params: Record<string, unknown> = {}) =>
    a.send({ jsonrpc: "2.0", id, method, params });
  await send(1, "initialize", {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "t", version: "0" },
  });
  await send(2, "tools/list");
  await send(3, "tools/call", { name: "skytale_whoami", arguments: { extra: 1 } });
  await server.connect(b);
  const deadline = Date.now() + 30_000;
  while (answers.size < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const list = answers.get(2) as { result?: { tools?: unknown[] } } | undefined;
  assert.equal(list?.result?.tools?.length, 19, JSON.stringify(list));
  const call = answers.get(3) as { result?: { isError?: boolean } } | undefined;
  assert.ok(call?.result, JSON.stringify(call)); // the tool exists: an answer, not "not found"
  await a.close();
});
