// The SDK's entry points as libraries (mod.ts, transport.ts without their `import.meta.main`
// part) load in a browser tab: their static import graph holds no Node built-in and no server
// code; files, SQLite, the embedded relay and node:crypto are reached by `await import()` only
// (docs/DECISIONS.md, "The SDK in a browser").
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { staticGraph } from "./_graph.ts";
import { ROOT } from "./_helpers.ts";

/** Modules a browser cannot load, or that only a relay, a CLI or an MCP server needs. */
const NOT_IN_SDK = [
  /^node:/,
  /^(jose|ws|@nats-io\/|@modelcontextprotocol\/)/,
  /^src\/cli\//,
  /^src\/relay\/(server|auth|auth_keys|auth_nats|local|local_auth|_nats|_group|_commits|_doors)\.ts$/,
  /^src\/relay\/log\//,
  /^src\/runtime\/(fs|home|sqlite|http|serve|process|stdio|args|native_crypto)\.ts$/,
  /^src\/mcp\/(server|stdio|http|tools|_sdk|_sdk_server|prompts|resources|claude_channel|context_tools)\.ts$/,
];

for (const entry of ["mod.ts", "transport.ts"]) {
  test(`${entry}'s static import graph holds no Node built-in and no server code`, () => {
    const graph = staticGraph([entry]);
    assert.ok(graph.size > 3, "the walker follows the entry point");
    const found = [...graph].filter((m) => NOT_IN_SDK.some((re) => re.test(m)));
    assert.deepEqual(found, [], "these should be reached by dynamic import, where they exist");
  });
}

// What the SDK loads on first use of a relay (`await import()` from the channel manager): the
// relay client, the codec and the client half of auth must load in a browser tab too.
const SDK_RELAY_CLIENT = [
  "src/relay/client.ts",
  "src/relay/auth_client.ts",
  "src/relay/protocol.ts",
];

test("the SDK's relay client and the client half of auth hold no Node built-in and no server code", () => {
  const graph = staticGraph(SDK_RELAY_CLIENT);
  assert.ok(graph.has("src/relay/_jwt.ts"), "the walker follows the client half");
  const found = [...graph].filter((m) => NOT_IN_SDK.some((re) => re.test(m)));
  assert.deepEqual(found, [], "the client half must not reach these statically");
});

test("the manager reaches the token client by the browser-safe module, not the relay's auth", () => {
  const dir = path.join(ROOT, "src/channel");
  const sdk = fs.readdirSync(dir).filter((f) => f.endsWith(".ts"))
    .map((f) => fs.readFileSync(path.join(dir, f), "utf8")).join("\n");
  assert.match(sdk, /import\("\.\.\/relay\/auth_client\.ts"\)/);
  assert.doesNotMatch(sdk, /import\("\.\.\/relay\/auth\.ts"\)/);
});

test("the walker would see a Node built-in or a server module if one were imported", () => {
  const cli = staticGraph(["src/cli/relay.ts"]);
  assert.ok([...cli].some((m) => NOT_IN_SDK.some((re) => re.test(m)) && m.startsWith("node:")));
  assert.ok(staticGraph(["src/runtime/home.ts"]).has("node:os"));
  assert.ok(staticGraph(["mod.ts"]).has("src/channel/manager.ts"));
  assert.ok(staticGraph(["transport.ts"]).has("src/mcp/transport.ts"));
});
