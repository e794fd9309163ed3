// One error class per failure family (issue 16): each code belongs to exactly one family, the
// family's class accepts only its own codes (checked by the type checker), `skytaleError` maps a
// code read off the wire to its class, and nothing in src/ throws the bare base class.
import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import * as sdk from "../mod.ts";

test("every code maps to one family class, and skytaleError builds it", () => {
  for (const code of Object.values(sdk.ErrorCodes)) {
    const family = sdk.ErrorFamilies[code];
    const e = sdk.skytaleError(code, `a ${code}`);
    assert.equal(e.code, code);
    assert.equal(e.name, family, code);
    const cls = (sdk as unknown as Record<string, unknown>)[family];
    assert.equal(typeof cls, "function", `${family} is exported`);
    assert.ok(e instanceof (cls as typeof sdk.SkytaleError), `${code} is a ${family}`);
    assert.ok(e instanceof sdk.SkytaleError);
  }
  const unknown = sdk.skytaleError("no_such_code", "from a newer relay");
  assert.ok(unknown instanceof sdk.RelayError);
  assert.equal(unknown.code, "relay_error");
});

test("src/ throws family classes, never the bare SkytaleError", async () => {
  const root = path.join(import.meta.dirname!, "..", "src");
  const offenders: string[] = [];
  for (const f of await fsp.readdir(root, { recursive: true })) {
    if (!f.endsWith(".ts") || f === "errors.ts") continue;
    const text = await fsp.readFile(path.join(root, f), "utf8");
    if (/new SkytaleError\(/.test(text)) offenders.push(f);
  }
  assert.deepEqual(offenders, []);
});
