// The MCP layer alone: tool results, deadlines and error mapping, the HTTP serving
// (sessions, DNS-rebinding protection) and the mcp command's arguments. The channel
// manager is replaced by a stub here only to provoke what a real one rarely does
// (hang, throw a non-Skytale error); the end-to-end behaviour is in mcp_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { SkytaleError, UsageError } from "../src/errors.ts";
import { Client, InMemoryTransport, StreamableHTTPClientTransport } from "../src/mcp/_sdk.ts";
import { createMcpServer } from "../src/mcp/server.ts";
import { serveHttp } from "../src/mcp/http.ts";
import { type ChannelManagerLike, ToolNames } from "../src/mcp/tools.ts";
import { parseHostPort, parseMcpArgs } from "../src/cli/mcp.ts";

function stub(over: Partial<ChannelManagerLike> = {}): ChannelManagerLike {
  const nope = () => Promise.reject(new SkytaleError("unknown_channel", 'Unknown channel "x/y/z"'));
  return {
    identity: "alice",
    create: () => Promise.resolve(),
    keyPackage: () => Promise.resolve("abcd"),
    addMember: nope,
    join: nope,
    send: () => Promise.resolve({ seq: 7 }),
    receive: () => Promise.resolve([]),
    channels: () => Promise.resolve([]),
    members: () => Promise.resolve(["alice"]),
    removeMember: nope,
    leave: nope,
    invite: () => Promise.resolve("skt_inv_abc"),
    joinWithToken: nope,
    ...over,
  };
}

async function connect(
  manager: ChannelManagerLike,
  opts: { toolTimeoutSeconds?: number; receiveGraceSeconds?: number } = {},
): Promise<Client> {
  const server = createMcpServer(manager, opts);
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(b);
  const client = new Client({ name: "t", version: "0" });
  await client.connect(a);
  return client;
}

function textOf(r: Record<string, unknown>): string {
  return (r.content as { text?: string }[]).map((c) => c.text ?? "").join("\n");
}

test("the server lists exactly the twelve tools with their argument names", async () => {
  const client = await connect(stub());
  const { tools } = await client.listTools();
  const got = Object.fromEntries(
    tools.map((t) => [t.name, Object.keys(t.inputSchema.properties ?? {}).sort()]),
  );
  assert.deepEqual(got, {
    skytale_create_channel: ["channel"],
    skytale_key_package: [],
    skytale_add_member: ["channel", "key_package_hex"],
    skytale_join_channel: ["channel", "welcome_hex"],
    skytale_send: ["channel", "message"],
    skytale_receive: ["channel", "timeout"],
    skytale_channels: [],
    skytale_invite: ["channel"],
    skytale_join_with_token: ["channel", "token"],
    skytale_members: ["channel"],
    skytale_remove_member: ["channel", "identity"],
    skytale_leave: ["channel"],
  });
  assert.deepEqual(Object.values(ToolNames).sort(), Object.keys(got).sort());
  for (const t of tools) assert.ok((t.description ?? "").length > 80, `${t.name} is described`);
  const receive = tools.find((t) => t.name === "skytale_receive")!;
  assert.deepEqual(receive.inputSchema.required, ["channel"]);
  await client.close();
});

test("skytale_receive passes a default timeout of 5 seconds and formats messages", async () => {
  let seen: number | undefined;
  const client = await connect(stub({
    receive: (_c, o) => {
      seen = o.timeout;
      return Promise.resolve([{
        sender: "bob",
        seq: 3,
        time: "2026-01-01T00:00:00.000Z",
        text: "hi",
      }]);
    },
  }));
  const r = await client.callTool({ name: "skytale_receive", arguments: { channel: "a/b/c" } });
  assert.equal(seen, 5);
  assert.equal(textOf(r), '1 message on "a/b/c":\n[2026-01-01T00:00:00.000Z] bob: hi');
  assert.deepEqual(r.structuredContent, {
    channel: "a/b/c",
    messages: [{ sender: "bob", seq: 3, time: "2026-01-01T00:00:00.000Z", text: "hi" }],
  });
  await client.close();
});

test("a tool whose manager call hangs answers a timeout error within its deadline", async () => {
  const hang = () => new Promise<never>(() => {});
  const client = await connect(stub({ send: hang, receive: hang }), {
    toolTimeoutSeconds: 0.3,
    receiveGraceSeconds: 0.2,
  });
  const t0 = Date.now();
  const r = await client.callTool({
    name: "skytale_send",
    arguments: { channel: "a/b/c", message: "x" },
  });
  assert.equal(r.isError, true);
  assert.match(textOf(r), /Timed out after 0\.3 s running skytale_send\. .*SKYTALE_RELAY/);
  const r2 = await client.callTool({
    name: "skytale_receive",
    arguments: { channel: "a/b/c", timeout: 0.2 },
  });
  assert.equal(r2.isError, true);
  assert.match(textOf(r2), /\(error code: timeout\)/);
  assert.ok(Date.now() - t0 < 5_000);
  await client.close();
});

test("a Skytale error becomes its message, a hint and its code; anything else says it is a bug", async () => {
  const client = await connect(stub({
    create: () =>
      Promise.reject(new SkytaleError("channel_exists", 'Channel "a/b/c" already exists')),
    channels: () => Promise.reject(new TypeError("boom")),
  }));
  const r = await client.callTool({
    name: "skytale_create_channel",
    arguments: { channel: "a/b/c" },
  });
  assert.equal(r.isError, true);
  assert.match(
    textOf(r),
    /^Channel "a\/b\/c" already exists\. Pick another name.*\(error code: channel_exists\)$/,
  );
  const r2 = await client.callTool({ name: "skytale_channels", arguments: {} });
  assert.equal(r2.isError, true);
  assert.match(textOf(r2), /skytale_channels failed unexpectedly: boom\. This is a bug/);
  await client.close();
});

test("the HTTP server keeps sessions apart and refuses foreign Host and Origin headers", async () => {
  const http = await serveHttp(stub(), { host: "127.0.0.1", port: 0 });
  try {
    const a = new Client({ name: "a", version: "0" });
    const b = new Client({ name: "b", version: "0" });
    const ta = new StreamableHTTPClientTransport(new URL(http.url));
    const tb = new StreamableHTTPClientTransport(new URL(http.url));
    await a.connect(ta);
    await b.connect(tb);
    assert.notEqual(ta.sessionId, tb.sessionId);
    assert.equal(http.sessions, 2);
    const r = await a.callTool({
      name: "skytale_send",
      arguments: { channel: "a/b/c", message: "m" },
    });
    assert.equal(textOf(r), 'Sent to "a/b/c" (seq 7).');
    await ta.terminateSession();
    await a.close();
    assert.equal((await b.listTools()).tools.length, 12);
    await b.close();

    const init = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "x", version: "0" },
      },
    });
    const headers = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    };
    const evilOrigin = await fetch(http.url, {
      method: "POST",
      headers: { ...headers, origin: "http://evil.example" },
      body: init,
    });
    assert.equal(evilOrigin.status, 403);
    assert.match(
      (await evilOrigin.json()).error.message,
      /Origin "http:\/\/evil\.example" is not allowed/,
    );
    const unknown = await fetch(http.url, {
      method: "POST",
      headers: { ...headers, "mcp-session-id": "no-such-session" },
      body: init,
    });
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
    const noSession = await fetch(http.url, {
      method: "POST",
      headers,
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    assert.equal(noSession.status, 400);
    await noSession.body?.cancel();
    const elsewhere = await fetch(new URL("/other", http.url));
    assert.equal(elsewhere.status, 404);
    await elsewhere.body?.cancel();
  } finally {
    await http.close();
  }
});

test("the HTTP server refuses a Host header that is not allowed (DNS rebinding)", async () => {
  const http = await serveHttp(stub(), { host: "127.0.0.1", port: 0 });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({
        host: "127.0.0.1",
        port: http.port,
        path: "/mcp",
        method: "POST",
        headers: { host: "evil.example:80", "content-type": "application/json" },
      }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end("{}");
    });
    assert.equal(status, 403);
  } finally {
    await http.close();
  }
});

test("mcp command arguments: --http HOST:PORT, allowed hosts and origins, bad input", () => {
  assert.deepEqual(parseMcpArgs([]), { allowHosts: [], allowOrigins: [], help: false });
  assert.deepEqual(
    parseMcpArgs([
      "--http",
      "127.0.0.1:3000",
      "--allow-host",
      "box.lan",
      "--allow-origin=http://box.lan",
    ]),
    {
      http: { host: "127.0.0.1", port: 3000 },
      allowHosts: ["box.lan"],
      allowOrigins: ["http://box.lan"],
      help: false,
    },
  );
  assert.deepEqual(parseHostPort("[::1]:0"), { host: "[::1]", port: 0 });
  assert.throws(() => parseMcpArgs(["--http"]), UsageError);
  assert.throws(() => parseMcpArgs(["--http", "3000"]), /use HOST:PORT/);
  assert.throws(() => parseMcpArgs(["--http", "h:99999"]), /use HOST:PORT/);
  assert.throws(() => parseMcpArgs(["--verbose"]), /Unknown option "--verbose"/);
});
