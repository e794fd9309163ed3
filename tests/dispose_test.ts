// `await using` on what the package hands out: managers, MCP servers, channel servings and
// transports are closed when their block ends.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, SkytaleChannelManager, startTestRelay } from "../mod.ts";
import { createMcpServer } from "../mcp.ts";
import { serveChannel, SkytaleTransport } from "../transport.ts";
import { Client } from "../src/mcp/_sdk.ts";

const CH = "acme/dispose/mcp";

test("a manager is closed when its await using block ends", async () => {
  await using relay = await startTestRelay();
  let outside: SkytaleChannelManager;
  {
    await using alice = new SkytaleChannelManager({
      identity: "alice",
      endpoint: relay.url,
      store: new MemoryStore(),
    });
    outside = alice;
    await alice.create(CH);
  }
  await assert.rejects(outside.channels(), { code: "closed" });
});

test("an MCP server, a channel serving and a transport are closed when their blocks end", async () => {
  await using relay = await startTestRelay();
  await using alice = new SkytaleChannelManager({
    identity: "alice",
    endpoint: relay.url,
    store: new MemoryStore(),
  });
  await using bob = new SkytaleChannelManager({
    identity: "bob",
    endpoint: relay.url,
    store: new MemoryStore(),
  });
  await alice.create(CH);
  await bob.join(CH, await alice.addMember(CH, await bob.keyPackage()));
  const servers: { isConnected(): boolean }[] = [];
  let ended = 0;
  {
    await using serving = await serveChannel(alice, CH, () => {
      const server = createMcpServer(alice);
      servers.push(server);
      return server;
    }, { onSession: (e) => void (e.type === "end" && ended++) });
    let closed = 0;
    {
      await using transport = new SkytaleTransport(bob, CH, {
        serverDid: (await alice.whoami()).did,
      });
      const client = new Client({ name: "bob", version: "1.0.0" });
      await client.connect(transport);
      transport.onclose = ((prev) => () => {
        closed++;
        prev?.();
      })(transport.onclose);
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === "skytale_send"));
      assert.equal(serving.sessions().length, 1);
    }
    assert.equal(closed, 1, "the transport closed");
  }
  assert.equal(ended, 1, "the serving ended its session");
  assert.equal(servers.length, 1);
  assert.equal(servers[0]!.isConnected(), false, "the session's server closed");
  let transportClosed = false;
  {
    await using server = createMcpServer(alice);
    await server.connect({
      start: () => Promise.resolve(),
      close: () => Promise.resolve(void (transportClosed = true)),
    });
    assert.equal(server.isConnected(), true);
  }
  assert.equal(transportClosed, true, "the server closed its transport");
});
