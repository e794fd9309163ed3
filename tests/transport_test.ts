// SkytaleTransport end to end: an SDK Client in this process, an SDK McpServer per session in
// another process (tests/fixtures/mcp_peer.ts, serveChannel), a relay process between them.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { type Proc, spawnScript, startRelayProcess, tempDir } from "./_helpers.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import {
  Client,
  CreateMessageRequestSchema,
  LoggingMessageNotificationSchema,
  type Transport,
} from "../src/mcp/_sdk.ts";
import { type JsonRpcMessage, SkytaleTransport } from "../src/mcp/transport.ts";
import { impersonate } from "./_impostor.ts";

const CHANNEL = "acme/tools/mcp-rpc";
const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

let shared:
  | Promise<{ url: string; relayDir: string; peer: Proc; token: string; did: string }>
  | undefined;
/** One relay process and one serving process for the whole file. */
function setup() {
  shared ??= (async () => {
    const relayDir = await tempDir();
    const relay = await startRelayProcess(["--data-dir", relayDir]);
    procs.push(relay.proc);
    const peer = spawnScript("tests/fixtures/mcp_peer.ts", [CHANNEL], {
      SKYTALE_RELAY: relay.url,
      SKYTALE_DATA_DIR: await tempDir(),
      SKYTALE_IDENTITY: "toolserver",
    });
    procs.push(peer);
    const token = (await peer.waitFor(/invite: (skt_inv_\S+)/))[1]!;
    const did = (await peer.waitFor(/serving \S+ as \S+ (did:key:\S+)/))[1]!;
    return { url: relay.url, relayDir, peer, token, did };
  })();
  return shared;
}

async function member(identity: string, dataDir?: string): Promise<SkytaleChannelManager> {
  const { url, token } = await setup();
  const mgr = new SkytaleChannelManager({
    identity,
    endpoint: url,
    dataDir: dataDir ?? await tempDir(),
  });
  managers.push(mgr);
  await mgr.joinWithToken(CHANNEL, token);
  return mgr;
}

async function connectClient(
  mgr: SkytaleChannelManager,
  options: { server?: string; serverDid?: string } = {},
) {
  if (options.server === undefined) options.serverDid ??= (await setup()).did;
  const client = new Client({ name: `client-${mgr.identity}`, version: "1.0.0" }, {
    capabilities: { sampling: {} },
  });
  const logs: string[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    logs.push(String(n.params.data));
  });
  client.setRequestHandler(CreateMessageRequestSchema, (req) => {
    const first = req.params.messages[0]!.content;
    const asked = "text" in first ? first.text : "";
    return {
      role: "assistant" as const,
      model: "test-model",
      content: { type: "text" as const, text: `${mgr.identity} says 42 to ${asked}` },
    };
  });
  const transport = new SkytaleTransport(mgr, CHANNEL, options);
  assert.equal(
    transport.sessionId,
    undefined,
    "a fresh session has no id yet, so the client initializes",
  );
  await client.connect(transport);
  assert.ok(transport.sessionId);
  return { client, transport, logs };
}

function text(r: unknown): string {
  return ((r as { content: { text: string }[] }).content[0]!).text;
}

test("an SDK Client and an McpServer in separate processes talk over SkytaleTransport through a relay process", async () => {
  const { relayDir } = await setup();
  const alice = await member("alice");
  const { client, transport, logs } = await connectClient(alice);
  try {
    assert.equal(client.getServerVersion()?.name, "peer");
    assert.equal(transport.server, "toolserver");
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ["add", "ask", "inbox", "whoami"]);
    assert.equal(text(await client.callTool({ name: "add", arguments: { a: 2, b: 40 } })), "42");

    // a server→client notification and a server→client request inside one tool call
    const secret = "zebra-secret-argument-4711";
    const asked = await client.callTool({ name: "ask", arguments: { question: secret } });
    assert.equal(text(asked), `sampled: alice says 42 to ${secret}`);
    assert.deepEqual(logs, [`asking: ${secret}`]);

    // the session is keyed by the sender's MLS identity and this transport's session id
    assert.equal(
      text(await client.callTool({ name: "whoami" })),
      `alice ${transport.sessionId}`,
    );

    // The relay stored all of that, but only as ciphertext.
    const files = fs.readdirSync(relayDir).filter((f) => f.startsWith("relay.db"));
    assert.ok(files.includes("relay.db"), `relay files: ${files.join(", ")}`);
    const stored = Buffer.concat(files.map((f) => fs.readFileSync(path.join(relayDir, f))));
    assert.ok(stored.includes(CHANNEL), "the log holds the channel's entries");
    assert.equal(stored.includes(secret), false, "a tool argument is in the relay log");
    assert.equal(stored.includes("tools/call"), false, "a JSON-RPC method is in the relay log");
  } finally {
    await client.close();
  }
});

test("two clients at once get their own sessions and correct answers; a member that leaves ends its session", async () => {
  const { peer } = await setup();
  const [bob, carol] = await Promise.all([member("bob"), member("carol")]);
  const [b, c] = await Promise.all([connectClient(bob), connectClient(carol)]);
  const calls = [];
  for (let i = 0; i < 5; i++) {
    calls.push(
      b.client.callTool({ name: "add", arguments: { a: i, b: 100 } }).then(text),
      c.client.callTool({ name: "add", arguments: { a: i, b: 200 } }).then(text),
    );
  }
  const answers = await Promise.all(calls);
  assert.deepEqual(answers, [0, 1, 2, 3, 4].flatMap((i) => [String(i + 100), String(i + 200)]));
  const [bw, cw] = await Promise.all([
    b.client.callTool({ name: "whoami" }).then(text),
    c.client.callTool({ name: "whoami" }).then(text),
  ]);
  assert.equal(bw, `bob ${b.transport.sessionId}`);
  assert.equal(cw, `carol ${c.transport.sessionId}`);
  const inbox = JSON.parse(text(await c.client.callTool({ name: "inbox" })));
  assert.ok(inbox.sessions.includes("bob") && inbox.sessions.includes("carol"), inbox.sessions);

  // bob leaves the channel: the server ends bob's session, carol's goes on
  let closed = 0;
  b.transport.onclose = () => closed++;
  await bob.leave(CHANNEL);
  await peer.waitFor(/session end bob \("bob" left the channel\)/, 20_000);
  assert.equal(text(await c.client.callTool({ name: "add", arguments: { a: 1, b: 1 } })), "2");
  await c.client.close();
  await peer.waitFor(/session end carol \(the client ended it/, 20_000);
  await b.transport.close();
  assert.equal(closed, 1);
});

test("chat messages on the channel never reach MCP, and MCP traffic never reaches chat", async () => {
  const dave = await member("dave");
  // A chat message that looks exactly like an MCP frame.
  const lookalike = JSON.stringify({
    v: 1,
    dir: "c",
    sid: "forged",
    msg: { jsonrpc: "2.0", id: 1, method: "tools/list" },
  });
  await dave.send(CHANNEL, lookalike);
  const { client } = await connectClient(dave);
  try {
    const inbox = JSON.parse(text(await client.callTool({ name: "inbox" })));
    assert.deepEqual(inbox.chat, [`dave: ${lookalike}`]);
    assert.deepEqual(inbox.sessions.filter((s: string) => s === "dave"), ["dave"]);
    // all that MCP traffic left nothing in dave's chat buffer
    assert.deepEqual(await dave.receive(CHANNEL, { timeout: 0.5 }), []);
  } finally {
    await client.close();
  }
});

test("SkytaleTransport keeps the Transport contract: start twice throws, close is idempotent and fires onclose once", async () => {
  const erin = await member("erin");
  const transport: Transport = new SkytaleTransport(erin, CHANNEL, { server: "toolserver" });
  let closes = 0;
  transport.onclose = () => closes++;
  const got: JsonRpcMessage[] = [];
  transport.onmessage = (m) => got.push(m);
  await transport.start();
  await assert.rejects(transport.start(), /already started/);
  await transport.send({
    jsonrpc: "2.0",
    id: 7,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "raw", version: "1" },
    },
  });
  const end = Date.now() + 20_000;
  while (got.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.equal(got[0]?.id, 7);
  await Promise.all([transport.close(), transport.close()]);
  await transport.close();
  assert.equal(closes, 1);
  await assert.rejects(
    transport.send({ jsonrpc: "2.0", method: "notifications/initialized" }),
    /closed/,
  );
});

test("the seed's shape: write() and read() on a SkytaleTransport without an SDK client", async () => {
  const frank = await member("frank");
  const transport = new SkytaleTransport(frank, CHANNEL, { serverDid: (await setup()).did });
  await transport.write({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "seed", version: "1" },
    },
  });
  const init = await transport.read({ timeout: 20 });
  assert.equal(init.id, 1);
  assert.equal((init.result as { serverInfo: { name: string } }).serverInfo.name, "peer");
  await transport.write({ jsonrpc: "2.0", method: "notifications/initialized" });
  await transport.write({ jsonrpc: "2.0", method: "tools/list", id: 2 });
  const response = await transport.read({ timeout: 20 });
  assert.equal(response.id, 2);
  assert.equal((response.result as { tools: unknown[] }).tools.length, 4);
  await assert.rejects(transport.read({ timeout: 0.2 }), /No MCP message/);
  await transport.close();
  await assert.rejects(transport.read(), /closed/);
});

test("a member that answers first, or replays the server's frames, is ignored: the client talks only to the server's did", async () => {
  const { did } = await setup();
  const mallory = await impersonate(await member("mallory"), CHANNEL, did);
  const grace = await member("grace");
  const { client, transport } = await connectClient(grace, { serverDid: did });
  try {
    assert.equal(client.getServerVersion()?.name, "peer");
    const { tools } = await client.listTools();
    assert.equal(tools.length, 4);
    for (let i = 0; i < 3; i++) {
      const r = await client.callTool({ name: "add", arguments: { a: i, b: 40 } });
      assert.equal(text(r), String(i + 40));
    }
    assert.equal(
      text(await client.callTool({ name: "whoami" })),
      `grace ${transport.sessionId}`,
    );
    assert.equal(transport.serverDid, did);
  } finally {
    mallory.stop();
    await client.close();
  }
});

test("a third member reads none of another client's tool arguments or results; the relay stores none", async () => {
  const { relayDir } = await setup();
  const eveDir = await tempDir();
  const eve = await member("eve", eveDir);
  const tapped: Uint8Array[] = [];
  await eve.onTagged(CHANNEL, "mcp", (d) => tapped.push(d.data));
  const heidi = await member("heidi");
  const { client } = await connectClient(heidi);
  const marker = `marker-${crypto.randomUUID()}`;
  try {
    const asked = await client.callTool({ name: "ask", arguments: { question: marker } });
    assert.equal(text(asked), `sampled: heidi says 42 to ${marker}`);
  } finally {
    await client.close();
  }
  // eve was there all along: it got every frame of heidi's session, as ciphertext
  assert.ok(tapped.length >= 4, `eve saw ${tapped.length} MCP frames`);
  const files = (dir: string): Buffer[] =>
    fs.readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => fs.readFileSync(path.join(e.parentPath, e.name)));
  const search: [string, Buffer][] = [
    ["eve's MCP taps", Buffer.concat(tapped)],
    ["eve's data dir", Buffer.concat(files(eveDir))],
    ["the relay's files", Buffer.concat(files(relayDir))],
  ];
  for (const [where, bytes] of search) {
    assert.equal(bytes.includes(marker), false, `the marker is in ${where}`);
    assert.equal(bytes.includes("tools/call"), false, `a JSON-RPC method is in ${where}`);
  }
});
