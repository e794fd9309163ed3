// The shared-context MCP tools: MCP clients (in memory) on two agents' servers, a real relay process.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { eventually, type Proc, startRelayProcess, tempDir } from "./_helpers.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { Client, InMemoryTransport } from "../src/mcp/_sdk.ts";
import { createMcpServer } from "../src/mcp/server.ts";

const CH = "acme/ctx/tools";
const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

async function agent(url: string, identity: string) {
  const m = new SkytaleChannelManager({ identity, endpoint: url, dataDir: await tempDir() });
  managers.push(m);
  const [a, b] = InMemoryTransport.createLinkedPair();
  await createMcpServer(m).connect(b);
  const client = new Client({ name: identity, version: "0" });
  await client.connect(a);
  clients.push(client);
  const call = async (name: string, args: Record<string, unknown>) => {
    const r = await client.callTool({ name, arguments: args });
    const text = (r.content as { text?: string }[]).map((c) => c.text ?? "").join("\n");
    return { text, isError: r.isError === true, s: r.structuredContent as Record<string, unknown> };
  };
  return { m, call };
}

test("context tools write, read and list; a handoff shows in the recipient's skytale_context_list", async () => {
  const relay = await startRelayProcess(["--data-dir", await tempDir()]);
  procs.push(relay.proc);
  const alice = await agent(relay.url, "alice");
  const bob = await agent(relay.url, "bob");
  await alice.m.create(CH);
  await bob.m.join(CH, await alice.m.addMember(CH, await bob.m.keyPackage()));

  const set = await alice.call("skytale_context_set", {
    channel: CH,
    key: "plan",
    value: { step: 1 },
    type: "decision",
  });
  assert.equal(set.isError, false, set.text);
  assert.equal(set.s.sent, true);
  await eventually(async () =>
    !(await bob.call("skytale_context_get", { channel: CH, key: "plan" }))
      .text.startsWith("No entry")
  );
  const got = await bob.call("skytale_context_get", { channel: CH, key: "plan" });
  assert.match(got.text, /plan \[decision\] by alice .*: \{"step":1\}/);
  assert.deepEqual((got.s.entry as { value: unknown }).value, { step: 1 });

  const secret = await alice.call("skytale_context_set", {
    channel: CH,
    key: "mine",
    value: "only me",
    visible_to: ["alice"],
  });
  assert.equal(secret.isError, false, secret.text);

  const h = await alice.call("skytale_handoff", {
    channel: CH,
    to: "bob",
    task: "write the summary",
    tried: ["summarising it myself"],
  });
  assert.equal(h.isError, false, h.text);
  await eventually(async () =>
    (await bob.call("skytale_context_list", { channel: CH, type: "handoff" })).text
      .includes("write the summary")
  );
  const list = await bob.call("skytale_context_list", { channel: CH });
  const keys = (list.s.entries as { key: string }[]).map((e) => e.key);
  assert.equal(keys.length, 2, list.text); // plan and the handoff; not alice's private entry
  assert.ok(keys.includes("plan"));
  assert.match(list.text, /handoff\/[0-9a-f]+ \[handoff\] by alice/);

  const bad = await alice.call("skytale_context_set", { channel: CH, key: "x", value: 1, ttl: -1 });
  assert.equal(bad.isError, true);
  const unknown = await alice.call("skytale_handoff", { channel: CH, to: "zed", task: "t" });
  assert.equal(unknown.isError, true);
  assert.match(unknown.text, /"zed" is not a member/);
  const nochan = await alice.call("skytale_context_list", { channel: "acme/none/here" });
  assert.equal(nochan.isError, true);
  assert.match(nochan.text, /Unknown channel/);
});
