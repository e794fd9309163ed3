// The expose/connect bridge end to end: a third-party stdio MCP server from npm
// (server-everything) exposed on a channel by `mod.ts expose`, reached through
// `mod.ts connect` by an MCP SDK Client and by the MCP Inspector CLI, via a relay process.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import process from "node:process";
import {
  type Proc,
  ROOT,
  runtimeCommand,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { impersonate } from "./_impostor.ts";

const EVERYTHING = path.join(
  ROOT,
  "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
);
const INSPECTOR = path.join(
  ROOT,
  "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
);
/** Node runs the third-party programs whatever runtime runs the test. */
const NODE = fs.existsSync(path.join(ROOT, "node_modules/.bin/node"))
  ? path.join(ROOT, "node_modules/.bin/node")
  : "node";

const procs: Proc[] = [];
const clients: Client[] = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  // SIGTERM: `expose` ends its sessions and stops their child processes before exiting.
  await Promise.all(procs.map((p) => p.kill("SIGTERM")));
});

let relay: Promise<string> | undefined;
function relayUrl(): Promise<string> {
  relay ??= (async () => {
    const r = await startRelayProcess(["--data-dir", await tempDir()]);
    procs.push(r.proc);
    return r.url;
  })();
  return relay;
}

/** Starts `mod.ts expose CHANNEL -- command…`; resolves with its invite token and did. */
async function expose(
  channel: string,
  command: string[],
): Promise<{ proc: Proc; token: string; did: string }> {
  const proc = spawnScript("mod.ts", ["expose", channel, "--uses", "20", "--", ...command], {
    SKYTALE_RELAY: await relayUrl(),
    SKYTALE_DATA_DIR: await tempDir(),
    SKYTALE_IDENTITY: "exposer",
  });
  procs.push(proc);
  const did = (await proc.waitFor(/server did: (did:key:\S+)/))[1]!;
  const token = (await proc.waitFor(/invite token for "[^"]+": (skt_inv_\S+)/))[1]!;
  // the command line it prints for clients is the one they run
  const line = (await proc.waitFor(/clients run: (skytale connect .*)/))[1]!;
  assert.equal(line, `skytale connect ${channel} --server ${did} --invite ${token}`);
  await proc.waitFor(/serving "/);
  return { proc, token, did };
}

/** The environment of a `connect` process for `identity`. */
async function connectEnv(identity: string): Promise<Record<string, string>> {
  return {
    SKYTALE_RELAY: await relayUrl(),
    SKYTALE_DATA_DIR: await tempDir(),
    SKYTALE_IDENTITY: identity,
  };
}

/** An MCP SDK Client whose StdioClientTransport spawns `mod.ts connect`. */
async function connectClient(
  identity: string,
  channel: string,
  server: { token: string; did: string },
  extra: string[] = [],
): Promise<{ client: Client; stderr: () => string }> {
  const [cmd, pre] = runtimeCommand();
  const transport = new StdioClientTransport({
    command: cmd,
    args: [
      ...pre,
      path.join(ROOT, "mod.ts"),
      "connect",
      channel,
      "--server",
      server.did,
      "--invite",
      server.token,
      ...extra,
    ],
    env: await connectEnv(identity),
    cwd: ROOT,
    stderr: "pipe",
  });
  let err = "";
  transport.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const client = new Client({ name: `bridge-test-${identity}`, version: "1.0.0" });
  clients.push(client);
  try {
    await client.connect(transport, { timeout: 60_000 });
  } catch (e) {
    throw new Error(`connect failed: ${e}\nstderr:\n${err}`);
  }
  return { client, stderr: () => err };
}

function text(r: unknown): string {
  return ((r as { content: { text: string }[] }).content[0]!).text;
}

test("an MCP SDK client reaches server-everything, exposed on a channel, through `connect`", async () => {
  const ch = "acme/bridge/everything";
  const { proc, ...server } = await expose(ch, [NODE, EVERYTHING, "stdio"]);
  const { client } = await connectClient("sdk-client", ch, server);
  assert.equal(client.getServerVersion()?.name, "mcp-servers/everything");
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  assert.ok(names.includes("echo") && names.includes("get-sum"), names.join(", "));
  const echoed = await client.callTool({ name: "echo", arguments: { message: "over MLS" } });
  assert.equal(text(echoed), "Echo: over MLS");
  const sum = await client.callTool({ name: "get-sum", arguments: { a: 19, b: 23 } });
  assert.match(text(sum), /42/);
  await client.close();
  await proc.waitFor(/session of "sdk-client" ended/, 20_000);
});

test("two clients at once against one exposed server get their own sessions (a child each) and correct answers", async () => {
  const ch = "acme/bridge/two";
  const { proc, ...server } = await expose(ch, [NODE, EVERYTHING, "stdio"]);
  const [a, b] = await Promise.all([
    connectClient("client-a", ch, server),
    connectClient("client-b", ch, server),
  ]);
  const calls: Promise<string>[] = [];
  for (let i = 0; i < 4; i++) {
    calls.push(
      a.client.callTool({ name: "echo", arguments: { message: `a${i}` } }).then(text),
      b.client.callTool({ name: "echo", arguments: { message: `b${i}` } }).then(text),
    );
  }
  assert.deepEqual(
    await Promise.all(calls),
    [0, 1, 2, 3].flatMap((i) => [`Echo: a${i}`, `Echo: b${i}`]),
  );
  const pidA = (await proc.waitFor(/session of "client-a" started \(pid (\d+)\)/))[1];
  const pidB = (await proc.waitFor(/session of "client-b" started \(pid (\d+)\)/))[1];
  assert.notEqual(pidA, pidB);
  await Promise.all([a.client.close(), b.client.close()]);
});

test("the MCP Inspector CLI lists and calls server-everything's tools through `connect`", async () => {
  const ch = "acme/bridge/inspector";
  const { token, did } = await expose(ch, [NODE, EVERYTHING, "stdio"]);
  const env = await connectEnv("inspector");
  const dir = env.SKYTALE_DATA_DIR!;
  const [cmd, pre] = runtimeCommand();
  const inspect = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(NODE, [
        INSPECTOR,
        "--cli",
        ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
        ...args,
        "--",
        cmd,
        ...pre,
        path.join(ROOT, "mod.ts"),
        "connect",
        ch,
        "--server",
        did,
        "--invite",
        token,
      ], {
        cwd: ROOT,
        timeout: 90_000,
        env: { ...process.env, MCP_CATALOG_PATH: path.join(dir, "inspector-catalog.json") },
      }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      });
    });
  const list = await inspect(["--method", "tools/list"]);
  assert.equal(list.code, 0, list.stdout + list.stderr);
  const names = (JSON.parse(list.stdout).tools as { name: string }[]).map((t) => t.name);
  assert.ok(names.includes("echo"), names.join(", "));
  // a second `connect` process: the membership persisted, the invite is not needed again
  const call = await inspect([
    "--method",
    "tools/call",
    "--tool-name",
    "echo",
    "--tool-arg",
    "message=hello inspector",
  ]);
  assert.equal(call.code, 0, call.stdout + call.stderr);
  assert.equal(JSON.parse(call.stdout).content[0].text, "Echo: hello inspector");
});

// A stdio MCP server that exits (code 3) when a tool is called.
const CRASHER = `
const rl = require("readline").createInterface({ input: process.stdin });
const out = (x) => process.stdout.write(JSON.stringify(x) + "\\n");
rl.on("line", (l) => {
  const m = JSON.parse(l);
  if (m.method === "initialize") out({ jsonrpc: "2.0", id: m.id, result: {
    protocolVersion: m.params.protocolVersion, capabilities: { tools: {} },
    serverInfo: { name: "crasher", version: "1.0.0" } } });
  else if (m.method === "tools/list") out({ jsonrpc: "2.0", id: m.id, result: {
    tools: [{ name: "crash", inputSchema: { type: "object" } }] } });
  else if (m.method === "tools/call") process.exit(3);
});`;

test("a child that exits surfaces as a JSON-RPC error to the client, and later requests fail fast", async () => {
  const ch = "acme/bridge/crash";
  const { proc, ...server } = await expose(ch, [NODE, "-e", CRASHER]);
  const { client } = await connectClient("crash-client", ch, server);
  assert.deepEqual((await client.listTools()).tools.map((t) => t.name), ["crash"]);
  const t0 = Date.now();
  await assert.rejects(
    client.callTool({ name: "crash" }, undefined, { timeout: 30_000 }),
    (e: Error & { code?: number }) => {
      assert.equal(e.code, -32000, e.message);
      assert.match(e.message, /exited with code 3/);
      return true;
    },
  );
  assert.ok(Date.now() - t0 < 20_000, "the error came long before the client's timeout");
  await proc.waitFor(/session of "crash-client" ended/, 20_000);
  const t1 = Date.now();
  await assert.rejects(
    client.listTools(undefined, { timeout: 30_000 }),
    (e: Error & { code?: number }) => {
      assert.equal(e.code, -32000, e.message);
      assert.match(e.message, /session on "acme\/bridge\/crash" ended/);
      return true;
    },
  );
  assert.ok(Date.now() - t1 < 5_000, "a request after the session ended is answered at once");
});

test("`connect` refuses to start without the server's did", async () => {
  const proc = spawnScript("mod.ts", ["connect", "acme/bridge/nodid", "--invite", "skt_inv_x"], {
    SKYTALE_RELAY: await relayUrl(),
    SKYTALE_DATA_DIR: await tempDir(),
  });
  procs.push(proc);
  assert.notEqual(await proc.exited, 0);
  assert.match(proc.stderr(), /Missing --server DID/);
});

test("through `connect`, a member answering first is ignored and reads no tool argument or result", async () => {
  const ch = "acme/bridge/impostor";
  const { proc, ...server } = await expose(ch, [NODE, EVERYTHING, "stdio"]);
  const mallory = new SkytaleChannelManager({
    identity: "mallory",
    endpoint: await relayUrl(),
    dataDir: await tempDir(),
  });
  try {
    await mallory.joinWithToken(ch, server.token);
    const { seen } = await impersonate(mallory, ch, server.did);
    const { client, stderr } = await connectClient("victim", ch, server);
    assert.equal(client.getServerVersion()?.name, "mcp-servers/everything");
    const marker = `marker-${crypto.randomUUID()}`;
    const echoed = await client.callTool({ name: "echo", arguments: { message: marker } });
    assert.equal(text(echoed), `Echo: ${marker}`);
    assert.ok((await client.listTools()).tools.length > 2);
    await client.close();
    await proc.waitFor(/session of "victim" ended/, 20_000);
    assert.match(stderr(), /ignored MCP frames on "acme\/bridge\/impostor" from "mallory"/);
    assert.ok(seen.length >= 4, `mallory saw ${seen.length} frames`);
    const all = Buffer.concat(seen);
    assert.equal(all.includes(marker), false, "mallory read the tool call");
    assert.equal(all.includes("tools/call"), false, "mallory read a JSON-RPC method");
  } finally {
    await mallory.close();
  }
});
