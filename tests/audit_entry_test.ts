// An audit entry is written by whoever holds the audit key (any member that audits): one whose
// decrypted JSON is not an entry is refused as unreadable, not taken on trust.
import { test } from "node:test";
import assert from "node:assert/strict";
import { type AuditEntry, auditKeys, openEntry, sealEntry } from "../src/audit/chain.ts";

test("an audit entry of the wrong shape does not open; a well-formed one does", async () => {
  const keys = await auditKeys(crypto.getRandomValues(new Uint8Array(32)));
  const ch = "acme/audit/shape";
  const good: AuditEntry = {
    writer: "did:key:z6MkWriter",
    i: 0,
    prev: "00",
    epoch: 1,
    event: { type: "message", time: "2026-12-01T00:00:00.000Z", seq: 3, size: 10 },
  };
  assert.deepEqual(await openEntry(keys, ch, await sealEntry(keys, ch, good)), good);
  const bad: unknown[] = [
    { ...good, i: -1 },
    { ...good, i: 1.5 },
    { ...good, epoch: "1" },
    { ...good, writer: 7 },
    { ...good, event: { type: "message" } }, // no time
    { ...good, event: { ...good.event, seq: "3" } },
    { ...good, event: null },
  ];
  for (const b of bad) {
    const item = await sealEntry(keys, ch, b as AuditEntry);
    assert.equal(await openEntry(keys, ch, item), undefined, JSON.stringify(b));
  }
});
