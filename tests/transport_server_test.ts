// SkytaleTransport on the serving end, as Skytale documents it: an SDK McpServer connected with
// `server.connect(new SkytaleTransport(mgr, channel))` in another process (1:1) answers an SDK
// Client on a SkytaleTransport in this one, through a relay process.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { type Proc, spawnScript, startRelayProcess, tempDir } from "./_helpers.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { Client } from "../src/mcp/_sdk.ts";
import { SkytaleTransport } from "../src/mcp/transport.ts";

const CHANNEL = "acme/tools/direct";
const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

test("an McpServer connected to new SkytaleTransport(mgr, channel) answers a Client on the other end", async () => {
  const relay = await startRelayProcess(["--data-dir", await tempDir()]);
  procs.push(relay.proc);
  const peer = spawnScript("tests/fixtures/mcp_direct_server.ts", [CHANNEL], {
    SKYTALE_RELAY: relay.url,
    SKYTALE_DATA_DIR: await tempDir(),
    SKYTALE_IDENTITY: "direct-server",
  });
  procs.push(peer);
  const token = (await peer.waitFor(/invite: (skt_inv_\S+)/))[1]!;
  const did = (await peer.waitFor(/serving \S+ as \S+ (did:key:\S+)/))[1]!;

  const mgr = new SkytaleChannelManager({
    identity: "alice",
    endpoint: relay.url,
    dataDir: await tempDir(),
  });
  managers.push(mgr);
  await mgr.joinWithToken(CHANNEL, token);

  // A transport with neither a server did nor a name is a serving end: a client that forgot
  // the did gets a clear error at its first message instead of a hang.
  const forgot = new SkytaleTransport(mgr, CHANNEL);
  await assert.rejects(
    forgot.send({ jsonrpc: "2.0", id: 1, method: "ping" }),
    /No MCP client has opened a session/,
  );
  await forgot.close();

  const client = new Client({ name: "alice-client", version: "1.0.0" });
  const transport = new SkytaleTransport(mgr, CHANNEL, { serverDid: did });
  await client.connect(transport);
  assert.equal(client.getServerVersion()?.name, "direct");
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name), ["add"]);
  const r = await client.callTool({ name: "add", arguments: { a: 19, b: 23 } });
  assert.equal((r as { content: { text: string }[] }).content[0]!.text, "42");
  await client.close();
  // The serving end closes with the session.
  await peer.waitFor(/session closed: client "alice" ended the session/);
});
