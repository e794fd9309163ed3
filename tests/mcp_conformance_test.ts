// The official MCP conformance suite's server scenarios against `skytale mcp --http`.
// Failures we expect (scenarios that need the suite's own fixture tools, resources and
// prompts) are listed with a reason each in tests/conformance-baseline.yml; the suite
// fails on any other failure and on any baseline entry that starts passing. The suite
// sends no credentials, so the server runs with --no-auth (loopback only; the token is
// tested in mcp_http_test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import process from "node:process";
import { freePort, nodeBin, ROOT, spawnScript, tempDir } from "./_helpers.ts";

const SUITE = path.join(ROOT, "node_modules/@modelcontextprotocol/conformance/dist/index.js");
const BASELINE = path.join(ROOT, "tests/conformance-baseline.yml");

test("the MCP conformance server scenarios pass over --http, but for the baselined ones", async () => {
  const dir = await tempDir("skytale-conformance-");
  const server = spawnScript("mod.ts", ["mcp", "--http", "127.0.0.1:0", "--no-auth"], {
    SKYTALE_IDENTITY: "conformance",
    SKYTALE_DATA_DIR: dir,
    SKYTALE_HOME: dir,
    SKYTALE_LOCAL_PORT: String(await freePort()),
    SKYTALE_RELAY: "",
  });
  try {
    const m = await server.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+\/mcp)/);
    const url = m[1]!;
    const out = path.join(dir, "results");
    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        nodeBin(),
        [SUITE, "server", "--url", url, "--expected-failures", BASELINE, "-o", out],
        { cwd: dir, timeout: 180_000, maxBuffer: 16 * 1024 * 1024, env: process.env },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
    const summary = run.stdout.slice(run.stdout.lastIndexOf("=== SUMMARY ==="));
    assert.equal(run.code, 0, `${summary}\n${run.stderr}`);
    // the scenarios that exercise our server for real did run and pass
    for (
      const name of [
        "server-initialize",
        "ping",
        "tools-list",
        "logging-set-level",
        "dns-rebinding-protection",
        "resources-list",
        "resources-subscribe",
        "resources-unsubscribe",
        "prompts-list",
      ]
    ) {
      assert.match(summary, new RegExp(`✓ ${name}: \\d+ passed, 0 failed`), summary);
    }
  } finally {
    await server.kill();
  }
});
