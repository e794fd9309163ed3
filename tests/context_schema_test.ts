// The shared context's parsing of what other members send (src/context/_schema.ts): ctx
// messages, snapshots and the store blob are checked with zod schemas; a bad version is dropped
// alone, a bad message is a ProtocolError that says what was wrong, and nothing else escapes.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseSaved, parseSnapshot, parseWire } from "../src/context/_schema.ts";
import { ProtocolError } from "../src/errors.ts";

const enc = new TextEncoder();
const bytes = (x: unknown) => enc.encode(typeof x === "string" ? x : JSON.stringify(x));
const version = (over: Record<string, unknown> = {}) => ({
  k: "plan",
  y: "note",
  h: { t: 1_700_000_000_000, c: 0, n: "did:key:zA" },
  a: "did:key:zA",
  an: "alice",
  v: { step: 1 },
  ...over,
});

test("a put keeps its well-formed versions and drops each malformed one alone", () => {
  const good = version();
  const w = parseWire(bytes({
    v: 1,
    op: "put",
    e: [
      good,
      version({ k: "" }),
      version({ k: "a\u0001b" }),
      version({ y: "gossip" }),
      version({ h: { t: 2 ** 53, c: 0, n: "x" } }),
      version({ h: { t: 1, c: -1, n: "x" } }),
      version({ h: { t: 1, c: 0, n: "x".repeat(129) } }),
      version({ a: 7 }),
      version({ s: { "did:key:zB": 5 } }),
      version({ x: "soon" }),
      version({ to: ["b"] }),
      version({ d: true }),
      null,
      "junk",
    ],
  }));
  assert.deepEqual(w, { v: 1, op: "put", e: [good] });
});

test("a version's fields of a later format are kept, so snapshots pass them on", () => {
  const v = version({ later: { z: 1 }, d: 1, x: 5, s: { "did:key:zB": "Ym94" }, to: "did:key:zB" });
  assert.deepEqual(parseSnapshot(bytes([v])), [v]);
});

test("sync and snap messages parse; an operation not known here is ignored", () => {
  assert.deepEqual(parseWire(bytes({ v: 1, op: "sync", id: "ab" })), {
    v: 1,
    op: "sync",
    id: "ab",
  });
  const snap = { v: 1, op: "snap", id: "ab", to: "did:key:zB", box: "Ym94" };
  assert.deepEqual(parseWire(bytes(snap)), snap);
  assert.equal(parseWire(bytes({ v: 1, op: "gossip", anything: [1] })), undefined);
});

test("a malformed message is a ProtocolError naming what was wrong", () => {
  const cases: [unknown, RegExp][] = [
    ["{not json", /context message is not JSON/],
    [{ v: 2, op: "put", e: [] }, /Not a version 1 context message \(v: /],
    [[1, 2], /Not a version 1 context message/],
    [{ v: 1, op: "put" }, /Malformed context "put" message \(e: /],
    [{ v: 1, op: "put", e: {} }, /Malformed context "put" message \(e: /],
    [{ v: 1, op: "sync", id: 5 }, /Malformed context "sync" message \(id: /],
    [{ v: 1, op: "snap", id: "a", to: "b" }, /Malformed context "snap" message \(box: /],
  ];
  for (const [input, message] of cases) {
    assert.throws(() => parseWire(bytes(input)), (e: unknown) => {
      assert.ok(e instanceof ProtocolError, String(e));
      assert.equal(e.code, "protocol");
      assert.match(e.message, message);
      return true;
    });
  }
  assert.throws(() => parseSnapshot(bytes({ e: [] })), ProtocolError);
  assert.throws(() => parseSnapshot(bytes("[")), ProtocolError);
});

test("random and truncated bytes give a message, undefined or a ProtocolError, never a crash", () => {
  const valid = JSON.stringify({ v: 1, op: "put", e: [version()] });
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc.nat(valid.length).map((n) => enc.encode(valid.slice(0, n))),
        fc.json().map((j) => enc.encode(j)),
      ),
      (b) => {
        try {
          parseWire(b);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
        try {
          parseSnapshot(b);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
        parseSaved(b); // reports, never throws
      },
    ),
    { numRuns: 500 },
  );
});

test("the store blob: its good versions load, a bad clock is left out, junk is unreadable", () => {
  const good = version();
  const r = parseSaved(bytes({
    v: 1,
    entries: [good, version({ k: "" })],
    outbox: [good],
    clock: { t: "late", c: 0 },
  }));
  assert.deepEqual(r, { entries: [good], outbox: [good] });
  assert.deepEqual(parseSaved(bytes({ v: 1, entries: [], outbox: [], clock: { t: 5, c: 1 } })), {
    entries: [],
    outbox: [],
    clock: { t: 5, c: 1 },
  });
  assert.ok("unreadable" in parseSaved(bytes("{")));
  assert.ok("unreadable" in parseSaved(bytes({ entries: "all" })));
  assert.ok("unreadable" in parseSaved(bytes(null)));
});
