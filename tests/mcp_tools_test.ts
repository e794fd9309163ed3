// The MCP layer over a real channel manager and a real relay: tool results,
// deadlines and error mapping, the HTTP serving (sessions, DNS-rebinding
// protection) and the mcp command's arguments. The relay runs in-process here,
// except where a test suspends a relay process (SIGSTOP) to make the manager's
// calls really hang; the end-to-end behaviour over stdio is in mcp_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import process from "node:process";
import { UsageError } from "../src/errors.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { startRelay } from "../src/relay/server.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import { Client, InMemoryTransport, StreamableHTTPClientTransport } from "../src/mcp/_sdk.ts";
import { createMcpServer, type SkytaleMcpServer } from "../src/mcp/server.ts";
import { serveHttp } from "../src/mcp/http.ts";
import { errorResult, ToolNames } from "../src/mcp/tools.ts";
import { ContextToolNames } from "../src/mcp/context_tools.ts";
import { AUDIT_TOOL } from "../src/mcp/audit_tools.ts";
import { parseHostPort, parseMcpArgs } from "../src/cli/mcp.ts";
import { startRelayProcess } from "./_helpers.ts";

const CHANNEL = "acme/tools/test";
const TOKEN = "mcp-tools-test-token-0123456789";

/** An in-process relay on 127.0.0.1 and managers on it, all closed by `close`. */
async function world() {
  const relay = await startRelay({ hostname: "127.0.0.1", port: 0, log: new MemoryLog() });
  const managers: SkytaleChannelManager[] = [];
  const clients: Client[] = [];
  return {
    url: relay.url,
    manager(identity: string, store = new MemoryStore()): SkytaleChannelManager {
      const m = new SkytaleChannelManager({ identity, store, endpoint: relay.url });
      managers.push(m);
      return m;
    },
    async connect(
      manager: SkytaleChannelManager,
      opts: { toolTimeoutSeconds?: number; receiveGraceSeconds?: number } = {},
    ): Promise<Client> {
      const c = await connect(manager, opts);
      clients.push(c);
      return c;
    },
    async close(): Promise<void> {
      for (const c of clients) await c.close();
      for (const m of managers) await m.close();
      await relay.close();
    },
  };
}

async function connect(
  manager: SkytaleChannelManager,
  opts: { toolTimeoutSeconds?: number; receiveGraceSeconds?: number } = {},
): Promise<Client> {
  const server: SkytaleMcpServer = createMcpServer(manager, opts);
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(b);
  const client = new Client({ name: "t", version: "0" });
  await client.connect(a);
  return client;
}

function textOf(r: Record<string, unknown>): string {
  return (r.content as { text?: string }[]).map((c) => c.text ?? "").join("\n");
}

test("the server lists exactly the nineteen tools (fourteen, four of the shared context, and the audit log) with their argument names", async () => {
  const w = await world();
  try {
    const client = await w.connect(w.manager("alice"));
    const { tools } = await client.listTools();
    const got = Object.fromEntries(
      tools.map((t) => [t.name, Object.keys(t.inputSchema.properties ?? {}).sort()]),
    );
    assert.deepEqual(got, {
      skytale_create_channel: ["channel", "ciphersuite"],
      skytale_key_package: ["ciphersuite"],
      skytale_add_member: ["channel", "key_package_hex"],
      skytale_join_channel: ["channel", "welcome_hex"],
      skytale_send: ["channel", "message"],
      skytale_receive: ["after_seq", "channel", "max", "peek", "timeout"],
      skytale_channels: [],
      skytale_invite: ["channel"],
      skytale_join_with_token: ["channel", "token"],
      skytale_members: ["channel"],
      skytale_remove_member: ["channel", "identity"],
      skytale_leave: ["channel"],
      skytale_whoami: [],
      skytale_wait: ["channels", "timeout"],
      skytale_context_set: ["channel", "key", "ttl", "type", "value", "visible_to"],
      skytale_context_get: ["channel", "key"],
      skytale_context_list: ["channel", "prefix", "type"],
      skytale_handoff: ["channel", "task", "to", "tried"],
      skytale_audit: ["channel", "limit"],
    });
    assert.deepEqual(
      [...Object.values(ToolNames), ...Object.values(ContextToolNames), AUDIT_TOOL].sort(),
      Object.keys(got).sort(),
    );
    for (const t of tools) assert.ok((t.description ?? "").length > 80, `${t.name} is described`);
    const receive = tools.find((t) => t.name === "skytale_receive")!;
    assert.deepEqual(receive.inputSchema.required, ["channel"]);
    const create = tools.find((t) => t.name === "skytale_create_channel")!;
    assert.match(create.description ?? "", /this agent \(alice\)/);
  } finally {
    await w.close();
  }
});

test("skytale_receive waits 5 seconds by default and formats messages from another member", async () => {
  const w = await world();
  try {
    const alice = w.manager("alice");
    const bob = w.manager("bob");
    await alice.create(CHANNEL);
    await bob.join(CHANNEL, await alice.addMember(CHANNEL, await bob.keyPackage()));
    const client = await w.connect(alice);

    // Nothing buffered: no timeout argument means the manager waits the default 5 s.
    const t0 = Date.now();
    const empty = await client.callTool({
      name: "skytale_receive",
      arguments: { channel: CHANNEL },
    });
    const waited = Date.now() - t0;
    assert.ok(waited >= 4_800 && waited < 9_000, `waited ${waited} ms`);
    assert.equal(empty.isError, undefined);
    assert.equal(
      textOf(empty),
      `No new messages on "${CHANNEL}" (waited 5 s). Call skytale_receive again to keep listening.`,
    );
    assert.deepEqual(empty.structuredContent, { channel: CHANNEL, messages: [] });

    const { seq } = await bob.send(CHANNEL, "hi");
    const r = await client.callTool({ name: "skytale_receive", arguments: { channel: CHANNEL } });
    const sc = r.structuredContent as { messages: { time: string }[] };
    const time = sc.messages[0]?.time ?? "";
    assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(textOf(r), `1 message on "${CHANNEL}":\n[${time}] bob: hi`);
    assert.deepEqual(r.structuredContent, {
      channel: CHANNEL,
      messages: [{ sender: "bob", sender_id: (await bob.whoami()).did, seq, time, text: "hi" }],
    });
    // The sender id is bob's identity key, the same one skytale_whoami reports to bob's side.
    assert.match((await bob.whoami()).did, /^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$/);
  } finally {
    await w.close();
  }
});

test("a tool whose manager call hangs answers a timeout error within its deadline", async () => {
  // A relay process that stops answering (SIGSTOP) makes the manager's calls hang:
  // a send on a live channel waits for the publish ack; a restarted manager
  // waits to resubscribe its stored channels before receive can look at them.
  // (process.kill, not child.kill: Deno's child.kill sends nothing after a first signal.)
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const manager = (identity: string, store: MemoryStore) =>
    new SkytaleChannelManager({ identity, store, endpoint: url });
  const alice = manager("alice", new MemoryStore());
  const bobStore = new MemoryStore();
  const bobBefore = manager("bob", bobStore);
  const bob = manager("bob", bobStore);
  const opts = { toolTimeoutSeconds: 0.3, receiveGraceSeconds: 0.2 };
  const clients: Client[] = [];
  let stopped = false;
  try {
    await alice.create(CHANNEL);
    await bobBefore.create("acme/tools/bob");
    await bobBefore.close();
    clients.push(await connect(alice, opts), await connect(bob, opts));
    const [live, restarted] = clients as [Client, Client];
    process.kill(proc.child.pid!, "SIGSTOP");
    stopped = true;

    const t0 = Date.now();
    const r = await live.callTool({
      name: "skytale_send",
      arguments: { channel: CHANNEL, message: "x" },
    });
    const sendMs = Date.now() - t0;
    assert.equal(r.isError, true);
    assert.match(textOf(r), /^Timed out after 0\.3 s running skytale_send\. .*SKYTALE_RELAY/);
    assert.match(textOf(r), /\(error code: timeout\)$/);
    assert.ok(sendMs >= 250 && sendMs < 3_000, `send answered after ${sendMs} ms`);

    const t1 = Date.now();
    const r2 = await restarted.callTool({
      name: "skytale_receive",
      arguments: { channel: "acme/tools/bob", timeout: 0.2 },
    });
    const receiveMs = Date.now() - t1;
    assert.equal(r2.isError, true);
    assert.match(textOf(r2), /^Timed out after 0\.4 s running skytale_receive\./);
    assert.match(textOf(r2), /\(error code: timeout\)$/);
    assert.ok(receiveMs >= 350 && receiveMs < 3_000, `receive answered after ${receiveMs} ms`);
  } finally {
    if (stopped) process.kill(proc.child.pid!, "SIGCONT");
    for (const c of clients) await c.close();
    await alice.close();
    await bobBefore.close();
    await bob.close();
    await proc.kill();
  }
});

test("a Skytale error becomes its message, a hint and its code", async () => {
  const w = await world();
  try {
    const alice = w.manager("alice");
    const client = await w.connect(alice);
    const call = (name: string, args: Record<string, unknown>) =>
      client.callTool({ name, arguments: args });

    assert.equal((await call("skytale_create_channel", { channel: CHANNEL })).isError, undefined);
    const exists = await call("skytale_create_channel", { channel: CHANNEL });
    assert.equal(exists.isError, true);
    assert.match(
      textOf(exists),
      /^Channel "acme\/tools\/test" already exists here\. Pick another name.*\(error code: channel_exists\)$/,
    );

    const unknown = await call("skytale_members", { channel: "acme/tools/nowhere" });
    assert.equal(unknown.isError, true);
    assert.match(
      textOf(unknown),
      /^Unknown channel "acme\/tools\/nowhere": create it or join it first\. Call skytale_channels .*\(error code: unknown_channel\)$/,
    );

    // Hex digits only (the schema lets it through) but an odd count: the manager refuses it.
    const oddHex = await call("skytale_add_member", { channel: CHANNEL, key_package_hex: "abc" });
    assert.equal(oddHex.isError, true);
    assert.match(
      textOf(oddHex),
      /^Key package is not valid hex: .*"abc" \(3 characters\)\. Pass the hex string exactly .*\(error code: invalid_hex\)$/,
    );

    // Valid hex that is no key package: the MLS engine refuses it.
    const notKp = await call("skytale_add_member", { channel: CHANNEL, key_package_hex: "abcd" });
    assert.equal(notKp.isError, true);
    assert.match(textOf(notKp), /Check you passed the right hex.*\(error code: invalid_message\)$/);

    // A bad channel name is refused by the tool's schema before the manager sees it ...
    const badName = await call("skytale_members", { channel: "no-slashes" });
    assert.equal(badName.isError, true);
    assert.match(textOf(badName), /channel must be a name of the form "org\/namespace\/service"/);
    // ... and by the manager itself, whose error maps the same way.
    const thrown = await alice.create("not/a").catch((e: unknown) => e);
    const mapped = errorResult("skytale_create_channel", thrown);
    assert.equal(mapped.isError, true);
    assert.match(
      textOf(mapped),
      /^Invalid channel name "not\/a": .*\. Pass a name of the form "org\/namespace\/service".*\(error code: invalid_channel\)$/,
    );

    // The channel was created once and is still there.
    const list = await call("skytale_channels", {});
    assert.match(
      textOf(list),
      /^alice is in 1 channel:\n- acme\/tools\/test \(epoch 0; members: alice\)$/,
    );
  } finally {
    await w.close();
  }
});

test("an error that is not a Skytale error is reported as a bug in the server", () => {
  const r = errorResult("skytale_channels", new TypeError("boom"));
  assert.equal(r.isError, true);
  assert.match(
    textOf(r),
    /^skytale_channels failed unexpectedly: boom\. This is a bug in the Skytale MCP server/,
  );
  assert.doesNotMatch(textOf(r), /error code/);
  const r2 = errorResult("skytale_send", "a string");
  assert.match(textOf(r2), /^skytale_send failed unexpectedly: a string\. This is a bug/);
});

test("the HTTP server keeps sessions apart and refuses foreign Host and Origin headers", async () => {
  const w = await world();
  const alice = w.manager("alice");
  await alice.create(CHANNEL);
  const http = await serveHttp(alice, { host: "127.0.0.1", port: 0, token: TOKEN });
  try {
    const a = new Client({ name: "a", version: "0" });
    const b = new Client({ name: "b", version: "0" });
    const requestInit = { headers: { authorization: `Bearer ${TOKEN}` } };
    const ta = new StreamableHTTPClientTransport(new URL(http.url), { requestInit });
    const tb = new StreamableHTTPClientTransport(new URL(http.url), { requestInit });
    await a.connect(ta);
    await b.connect(tb);
    assert.notEqual(ta.sessionId, tb.sessionId);
    assert.equal(http.sessions, 2);
    const r = await a.callTool({
      name: "skytale_send",
      arguments: { channel: CHANNEL, message: "m" },
    });
    // Seq 1 is the channel's genesis (its public state for the relay); the first message is 2.
    assert.equal(textOf(r), `Sent to "${CHANNEL}" (seq 2).`);
    await ta.terminateSession();
    await a.close();
    assert.equal((await b.listTools()).tools.length, 19);
    const r2 = await b.callTool({
      name: "skytale_send",
      arguments: { channel: CHANNEL, message: "n" },
    });
    assert.equal(textOf(r2), `Sent to "${CHANNEL}" (seq 3).`);
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
      authorization: `Bearer ${TOKEN}`,
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
    await w.close();
  }
});

test("the HTTP server refuses a Host header that is not allowed (DNS rebinding)", async () => {
  const w = await world();
  const http = await serveHttp(w.manager("alice"), { host: "127.0.0.1", port: 0, token: TOKEN });
  try {
    const post = (host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request({
          host: "127.0.0.1",
          port: http.port,
          path: "/mcp",
          method: "POST",
          headers: { host, "content-type": "application/json" },
        }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.setTimeout(10_000, () => req.destroy(new Error("no answer in 10 s")));
        req.on("error", reject);
        req.end("{}");
      });
    const evil = await post("evil.example:80");
    assert.equal(evil.status, 403);
    assert.match(evil.body, /Host header \\?"evil\.example:80\\?" is not allowed/);
    const local = await post(`127.0.0.1:${http.port}`);
    assert.notEqual(local.status, 403);
  } finally {
    await http.close();
    await w.close();
  }
});

test("serveHttp refuses to start without a token, and without one on a non-loopback address", async () => {
  const w = await world();
  const m = w.manager("alice");
  try {
    await assert.rejects(serveHttp(m, { host: "127.0.0.1", port: 0 }), /needs a token/);
    await assert.rejects(
      serveHttp(m, { host: "0.0.0.0", port: 0, noAuth: true }),
      /refused on "0\.0\.0\.0"/,
    );
    await assert.rejects(serveHttp(m, { port: 0, token: "short" }), /at least 16/);
  } finally {
    await w.close();
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
  assert.deepEqual(parseMcpArgs(["--claude-channel"]), {
    allowHosts: [],
    allowOrigins: [],
    help: false,
    claudeChannel: true,
  });
  assert.deepEqual(parseMcpArgs(["--claude-channel-allow", "alice, did:key:z6Mkx"]), {
    allowHosts: [],
    allowOrigins: [],
    help: false,
    claudeChannel: true,
    claudeChannelAllow: ["alice", "did:key:z6Mkx"],
  });
  assert.throws(
    () => parseMcpArgs(["--claude-channel", "--http", "127.0.0.1:1"]),
    /stdio server/,
  );
  assert.throws(() => parseMcpArgs(["--http", "3000"]), /use HOST:PORT/);
  assert.throws(() => parseMcpArgs(["--http", "h:99999"]), /use HOST:PORT/);
  assert.throws(() => parseMcpArgs(["--verbose"]), /Unknown option "--verbose"/);
  assert.deepEqual(
    parseMcpArgs([
      "--http",
      "127.0.0.1:0",
      "--token",
      "t".repeat(16),
      "--max-sessions",
      "3",
      "--session-idle",
      "15m",
    ]),
    {
      http: { host: "127.0.0.1", port: 0 },
      allowHosts: [],
      allowOrigins: [],
      token: "t".repeat(16),
      maxSessions: 3,
      sessionIdleSeconds: 900,
      help: false,
    },
  );
  assert.throws(() => parseMcpArgs(["--token", "t".repeat(16)]), /need --http/);
  assert.throws(
    () => parseMcpArgs(["--http", "127.0.0.1:0", "--no-auth", "--token", "t".repeat(16)]),
    /exclude each other/,
  );
  assert.throws(() => parseMcpArgs(["--http", "127.0.0.1:0", "--max-sessions", "0"]), /1 to/);
  assert.throws(
    () => parseMcpArgs(["--http", "127.0.0.1:0", "--session-idle", "soon"]),
    /duration/,
  );
});
