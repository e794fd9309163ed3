import { test } from "node:test";
import assert from "node:assert/strict";
import { fromHex, parseChannelName } from "../src/validate.ts";
import { SkytaleError } from "../src/errors.ts";

test("parseChannelName() splits org/namespace/service", () => {
  assert.deepEqual(parseChannelName("acme/research/results"), {
    org: "acme",
    namespace: "research",
    service: "results",
  });
});

test("parseChannelName() refuses names that are not three parts", () => {
  for (const bad of ["acme", "a/b", "a/b/c/d", "a//c", "a/b c/d", "", 7]) {
    assert.throws(() => parseChannelName(bad), (e: unknown) => {
      return e instanceof SkytaleError && e.code === "invalid_channel";
    });
  }
});

test("fromHex() refuses malformed hex with invalid_hex", () => {
  for (const bad of ["abc", "zz", "", "0x00"]) {
    assert.throws(() => fromHex(bad, "Key package"), (e: unknown) => {
      return e instanceof SkytaleError && e.code === "invalid_hex" &&
        e.message.startsWith("Key package");
    });
  }
  assert.deepEqual(fromHex(" 00ff ", "x"), new Uint8Array([0, 255]));
});
