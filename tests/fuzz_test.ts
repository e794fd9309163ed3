// Quick run of the fuzzers of `deno task faults` (faults/fuzz.ts): the frame
// decoder, the MLS message paths and every MCP tool's arguments with random,
// truncated and bit-flipped input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fuzz } from "../faults/fuzz.ts";

test("fuzzed frames, MLS messages and MCP tool arguments end in a clear error, never a crash, hang or state change", async () => {
  const o = await fuzz({ frames: 2000, mls: 150, mcp: 600, seed: 21 });
  const failed = o.figures.filter((f) => !f.ok).map((f) => `${f.name}: ${f.value}`);
  assert.deepEqual(failed, [], o.notes.join("\n"));
});
