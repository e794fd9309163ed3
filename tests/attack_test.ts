// The attack scenario of `deno task faults` (faults/attacks.ts): replay,
// forgery, reading outside membership, unsolicited Welcomes, a leaked key
// package, and secrets at the relay or on the wire.
import { test } from "node:test";
import assert from "node:assert/strict";
import { attacks } from "../faults/attacks.ts";
import { reaping } from "./_helpers.ts";

test("replays, forgeries, removed/left members, joiners, unsolicited Welcomes and leaked key packages are all refused, and no secret reaches the relay", async () => {
  const o = await reaping(attacks);
  const failed = o.figures.filter((f) => !f.ok).map((f) => `${f.name}: ${f.value}`);
  assert.deepEqual(failed, [], o.notes.join("\n"));
});
