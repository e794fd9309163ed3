// The MCP Inspector in CLI mode, a client we do not write, lists our tools and calls them
// against a server process it spawns (under the runtime running this test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import process from "node:process";
import { freePort, nodeBin, ROOT, runtimeCommand, tempDir } from "./_helpers.ts";

const INSPECTOR = path.join(
  ROOT,
  "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
);

/** Node runs the Inspector whatever runtime runs the test (the pinned one when installed). */

function inspect(
  env: Record<string, string>,
  catalog: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, pre] = runtimeCommand();
  const envArgs = Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  const argv = [
    INSPECTOR,
    "--cli",
    ...envArgs,
    ...args,
    "--",
    cmd,
    ...pre,
    path.join(ROOT, "mod.ts"),
  ];
  return new Promise((resolve) => {
    execFile(nodeBin(), argv, {
      cwd: ROOT,
      timeout: 90_000,
      env: { ...process.env, MCP_CATALOG_PATH: catalog },
    }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test("the MCP Inspector CLI lists all tools, creates a channel and lists it", async () => {
  const dir = await tempDir("skytale-inspector-");
  const env = {
    SKYTALE_IDENTITY: "inspector-agent",
    SKYTALE_DATA_DIR: dir,
    SKYTALE_HOME: dir,
    SKYTALE_LOCAL_PORT: String(await freePort()),
  };
  const catalog = path.join(dir, "inspector-catalog.json");

  const list = await inspect(env, catalog, ["--method", "tools/list", "--strict"]);
  assert.equal(list.code, 0, list.stderr);
  const names = (JSON.parse(list.stdout).tools as { name: string }[]).map((t) => t.name);
  assert.deepEqual(names.sort(), [
    "skytale_add_member",
    "skytale_audit",
    "skytale_channels",
    "skytale_context_get",
    "skytale_context_list",
    "skytale_context_set",
    "skytale_create_channel",
    "skytale_handoff",
    "skytale_invite",
    "skytale_join_channel",
    "skytale_join_with_token",
    "skytale_key_package",
    "skytale_leave",
    "skytale_members",
    "skytale_receive",
    "skytale_remove_member",
    "skytale_send",
    "skytale_wait",
    "skytale_whoami",
  ]);

  const create = await inspect(env, catalog, [
    "--method",
    "tools/call",
    "--tool-name",
    "skytale_create_channel",
    "--tool-arg",
    "channel=acme/inspect/cli",
  ]);
  assert.equal(create.code, 0, create.stdout + create.stderr);
  const created = JSON.parse(create.stdout);
  assert.notEqual(created.isError, true, create.stdout);
  assert.match(created.content[0].text, /Created channel "acme\/inspect\/cli"/);

  // a new server process (same identity and data dir) still has it
  const channels = await inspect(env, catalog, [
    "--method",
    "tools/call",
    "--tool-name",
    "skytale_channels",
  ]);
  assert.equal(channels.code, 0, channels.stdout + channels.stderr);
  const listed = JSON.parse(channels.stdout);
  assert.deepEqual(listed.structuredContent.channels.map((c: { channel: string }) => c.channel), [
    "acme/inspect/cli",
  ]);
  assert.match(listed.content[0].text, /acme\/inspect\/cli \(epoch 0; members: inspector-agent\)/);
});
