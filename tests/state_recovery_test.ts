// Regression test (faults/state_corrupt.ts): a member whose channel file is
// truncated, bit-flipped or deleted recovers the previous good copy (.bak) and
// says so; when that copy predates messages it had already sent, it must not
// send with the same keys again (it used to: the receiver dropped the message
// with "Desired gen in the past", i.e. a reused key and nonce). With both
// copies corrupt the manager refuses with state_corrupt and leaves the files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { stateCorrupt } from "../faults/state_corrupt.ts";

test("a member recovered from an older .bak rekeys before sending, so no key or nonce is reused", async () => {
  const o = await stateCorrupt({ rounds: 3 });
  const failed = o.figures.filter((f) => !f.ok).map((f) => `${f.name}: ${f.value}`);
  assert.deepEqual(failed, [], o.notes.join("\n"));
});
