// Cold start of the stdio MCP server: what loads before it answers `initialize`, and that
// `initialize` and `tools/list` wait on no relay (docs/DECISIONS.md, "Cold start"). Speed itself
// is measured by `deno task bench mcp`, not here.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import { spawnSync } from "node:child_process";
import path from "node:path";
import process from "node:process";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";
import { freePort, nodeBin, ROOT, runtimeCommand, tempDir } from "./_helpers.ts";
import { staticGraph } from "./_graph.ts";

/** What `deno run -A cli.ts` loads before the stdio server answers `initialize`. */
const BEFORE_INITIALIZE = [
  "cli.ts",
  "src/cli/main.ts",
  "src/runtime/env.ts",
  "src/cli/mcp.ts",
  "src/mcp/stdio.ts",
];

test("the stdio server's start-up loads no MLS engine, file layer, relay server, SQLite, NATS, jose or SDK client", () => {
  const graph = staticGraph(BEFORE_INITIALIZE);
  assert.ok(graph.has("src/mcp/resources.ts"), "the walker follows the stdio server");
  // The channel manager itself loads on the first tool call (src/mcp/_lazy_manager.ts).
  assert.ok(!graph.has("src/channel/manager.ts"), "the SDK loads on first use");
  const deferred = [...graph].filter((m) =>
    /^(ts-mls|jose|@nats-io\/|node:sqlite$|@noble\/curves)/.test(m) ||
    /^node:fs(\/promises)?$/.test(m) || // Deno's file layer alone takes ~15 ms to load
    /^src\/(mls\/engine|seal|relay\/(server|auth|local|log\/(sqlite|nats|memory)|_group|_nats))\.ts$/
      .test(m) ||
    /^@modelcontextprotocol\/sdk\/(client|server\/(streamableHttp|webStandard)|inMemory)/.test(m)
  );
  assert.deepEqual(deferred, [], "these should be reached by dynamic import, on first use");
});

test("the stdio server registers its tools and prompts after initialize: no zod schema of ours before", () => {
  const graph = staticGraph(BEFORE_INITIALIZE);
  assert.ok(graph.has("src/mcp/server.ts"), "the walker follows the stdio server");
  // Loaded by the first request after initialize (src/mcp/_first_request.ts). zod itself is
  // loaded by the SDK; what is deferred is our schemas, the tool families and their registration.
  const deferred = [...graph].filter((m) =>
    m === "zod" ||
    /^src\/mcp\/(_catalog|tools|prompts|context_tools|audit_tools|tools\/_args)\.ts$/.test(m)
  );
  assert.deepEqual(deferred, [], "these should load on the first request after initialize");
});

test("the static graph walker sees every kind of static import and skips type-only ones", () => {
  const graph = staticGraph(["src/relay/local.ts"]);
  assert.ok(graph.has("src/relay/local_auth.ts")); // import { a, b } from
  assert.ok(!graph.has("src/relay/server.ts"), "import type and import() are not followed");
  assert.ok(staticGraph(["mod.ts"]).has("src/store/memory.ts")); // export { … } from
});

/** Runs `node cli.ts help` with SKYTALE_HOME and TMPDIR in `dir`; returns the files in `cache`. */
function cachedUnder(dir: string, cache: string): number {
  // Not NODE_COMPILE_CACHE, which would turn it on by itself in a place of its own.
  const { NODE_COMPILE_CACHE: _, ...env } = process.env;
  const run = spawnSync(nodeBin(), [path.join(ROOT, "cli.ts"), "help"], {
    cwd: ROOT,
    env: { ...env, SKYTALE_HOME: path.join(dir, "home"), TMPDIR: dir, TMP: dir, TEMP: dir },
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.equal(run.status, 0, run.stderr);
  return fs.existsSync(cache) ? fs.readdirSync(cache, { recursive: true }).length : 0;
}

test("under Node, the command line keeps its modules compiled in a private cache of SKYTALE_HOME", async () => {
  const dir = await tempDir();
  const cache = path.join(dir, "home", "cache", "node-compile-cache");
  assert.ok(cachedUnder(dir, cache) > 1, `nothing was kept in ${cache}`);
  assert.equal(fs.statSync(cache).mode & 0o777, 0o700);
  // Never Node's default, the temp folder that every local user shares.
  assert.ok(!fs.existsSync(path.join(dir, "node-compile-cache")));
});

test("a compile cache folder that others can write is not used: Node would run the code planted there", async () => {
  const dir = await tempDir();
  const cache = path.join(dir, "home", "cache", "node-compile-cache");
  fs.mkdirSync(cache, { recursive: true });
  fs.chmodSync(cache, 0o777);
  assert.equal(cachedUnder(dir, cache), 0, "the cache was written to a folder others can change");
});

const open: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.all(open.map((c) => c.close().catch(() => {})));
});

/** Spawns `cli.ts` (the default command) with `env` and connects an SDK client. */
async function startServer(
  env: Record<string, string>,
): Promise<{ client: Client; log: () => string }> {
  const [cmd, pre] = runtimeCommand();
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("SKYTALE_")) clean[k] = v;
  }
  const transport = new StdioClientTransport({
    command: cmd,
    args: [...pre, path.join(ROOT, "cli.ts")],
    cwd: ROOT,
    env: { ...clean, ...env },
    stderr: "pipe",
  });
  let log = "";
  transport.stderr?.on("data", (d: unknown) => (log += String(d)));
  const client = new Client({ name: "skytale-cold-start-test", version: "0.0.0" });
  open.push(client);
  await client.connect(transport, { timeout: 60_000 });
  return { client, log: () => log };
}

test("initialize and tools/list are answered while the relay is unreachable", async () => {
  const dir = await tempDir();
  const port = await freePort(); // bound, then closed: nothing listens there
  const { client } = await startServer({
    SKYTALE_RELAY: `ws://127.0.0.1:${port}`,
    SKYTALE_DATA_DIR: dir,
    SKYTALE_HOME: dir,
    SKYTALE_IDENTITY: "cold",
  });
  assert.equal(client.getServerVersion()?.name, "skytale");
  const { tools } = await client.listTools(undefined, { timeout: 60_000 });
  assert.ok(tools.some((t) => t.name === "skytale_send"));
  // A tool that needs no relay still works; one that does answers (with an error) rather than hang.
  const me = await client.callTool({ name: "skytale_whoami", arguments: {} }, undefined, {
    timeout: 90_000,
  });
  assert.equal(me.isError, undefined, JSON.stringify(me.content));
  await client.close();
});

test("initialize and tools/list neither host nor connect to the embedded relay", async () => {
  const home = await tempDir();
  const port = await freePort();
  const { client, log } = await startServer({
    SKYTALE_DATA_DIR: home,
    SKYTALE_HOME: home,
    SKYTALE_LOCAL_PORT: String(port),
    SKYTALE_IDENTITY: "cold",
  });
  await client.listTools(undefined, { timeout: 60_000 });
  const listening = await new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
  assert.equal(listening, false, "nothing should host the relay before a tool needs it");
  assert.doesNotMatch(log(), /hosting the local relay/);
  assert.ok(!fs.existsSync(path.join(home, "relay")), "no relay log is opened");
  assert.ok(!fs.existsSync(path.join(home, "cold")), "no identity state is opened");
  await client.close();
});
