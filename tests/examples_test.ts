// Every program in examples/ runs as a process of the runtime that runs this test and ends by
// itself, with status 0, well within a bound: an example that leaves the embedded relay (or
// anything else) running would hang here.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { freePort, reaping, ROOT, spawnScript, tempDir } from "./_helpers.ts";

const BOUND_MS = 30_000;
const examples = fs.readdirSync(path.join(ROOT, "examples"))
  .filter((f) => f.endsWith(".ts") && !f.startsWith("_"))
  .sort();

test("examples/ holds the two-agent SDK program and MCP over a channel", () => {
  assert.ok(examples.includes("two_agents.ts"));
  assert.ok(examples.includes("mcp_over_channel.ts"));
});

for (const file of examples) {
  test(`examples/${file} exits by itself with status 0 within ${BOUND_MS / 1000} s`, async () => {
    const home = await tempDir("skytale-example-");
    try {
      await reaping(async () => {
        // A private embedded relay: its own SKYTALE_HOME and port, no SKYTALE_RELAY.
        const proc = spawnScript(`examples/${file}`, [], {
          SKYTALE_HOME: home,
          SKYTALE_DATA_DIR: "",
          SKYTALE_LOCAL_PORT: String(await freePort()),
          SKYTALE_RELAY: "",
          SKYTALE_API_KEY: "",
        });
        proc.child.stdin?.end();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const code = await Promise.race([
          proc.exited,
          new Promise<"timeout">((resolve) =>
            timer = setTimeout(() => resolve("timeout"), BOUND_MS)
          ),
        ]);
        clearTimeout(timer);
        assert.equal(
          code,
          0,
          `examples/${file} ${code === "timeout" ? "did not exit" : `exited with ${code}`}\n` +
            `stdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`,
        );
        assert.notEqual(proc.stdout(), "", "it printed its result");
      });
    } finally {
      await fsp.rm(home, { recursive: true, force: true });
    }
  });
}
