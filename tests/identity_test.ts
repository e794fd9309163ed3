import { test } from "node:test";
import assert from "node:assert/strict";
import { createCommit, createProposal, encodeMlsMessage, generateKeyPackage } from "ts-mls";
import { defaultCapabilities, defaultLifetime, getCiphersuiteImpl } from "ts-mls";
import { getCiphersuiteFromName } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { type Group, MlsEngine } from "../src/mls/engine.ts";
import { decodeGroupEnvelope } from "../src/mls/_codec.ts";
import { didKey, didPublicKey, fingerprint } from "../src/identity.ts";
import { SkytaleError } from "../src/errors.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { MemoryStore } from "../src/store/memory.ts";

const enc = new TextEncoder();
const mls = await MlsEngine.create();
const cs = await getCiphersuiteImpl(getCiphersuiteFromName(mls.suite as never));

function code(c: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof SkytaleError, `expected a SkytaleError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

/** The raw ts-mls state behind a Group: what an attacker holding its own state can use. */
function stateOf(g: Group) {
  return decodeGroupEnvelope(mls.encodeGroup(g), defaultClientConfig)!;
}

async function group3() {
  const ka = await mls.newIdentityKey();
  const kb = await mls.newIdentityKey();
  const kc = await mls.newIdentityKey();
  const a0 = await mls.createGroup(enc.encode("acme/id/test"), "alice", ka);
  const bKp = await mls.newKeyPackage("bob", kb);
  const cKp = await mls.newKeyPackage("carol", kc);
  const add = await mls.commitAddMany(a0, [bKp.keyPackage, cKp.keyPackage]);
  const { group: b } = await mls.join(add.welcome, [bKp]);
  const { group: c } = await mls.join(add.welcome, [cKp]);
  return { a: add.newGroup, b, c, ka, kb, kc };
}

test("a did:key round-trips to its Ed25519 key, and fingerprints are short and stable", async () => {
  const k = await mls.newIdentityKey();
  const did = didKey(k.publicKey);
  assert.match(did, /^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$/);
  assert.deepEqual(didPublicKey(did), k.publicKey);
  assert.match(fingerprint(k.publicKey), /^[0-9a-f]{4}( [0-9a-f]{4}){3}$/);
  assert.equal(fingerprint(k.publicKey), fingerprint(k.publicKey.slice()));
  // All-zero key: leading zero bytes survive base58.
  assert.deepEqual(didPublicKey(didKey(new Uint8Array(32))), new Uint8Array(32));
  assert.throws(() => didPublicKey("did:key:zQ3s"), code("invalid_argument"));
  assert.throws(() => didPublicKey("alice"), code("invalid_argument"));
});

test("a leaf's name is bound to the did of the agent's identity key in every group", async () => {
  const { a, b, ka, kb } = await group3();
  const roster = mls.roster(a);
  assert.deepEqual(roster.map((m) => m.name), ["alice", "bob", "carol"]);
  assert.equal(roster[0]!.did, didKey(ka.publicKey));
  assert.equal(roster[1]!.did, didKey(kb.publicKey));
  const m = await mls.encrypt(b, enc.encode("hi"));
  const r = await mls.process(a, m.message);
  assert.ok(r.kind === "application");
  assert.equal(r.sender, "bob");
  assert.equal(r.senderId, didKey(kb.publicKey));
});

test('a member\'s crafted commit adding a second "alice" with another key is refused by the others', async () => {
  const { a, b, c } = await group3();
  // Bob crafts the commit with ts-mls directly, bypassing his own engine's checks.
  const fake = await generateKeyPackage(
    { credentialType: "basic", identity: enc.encode("alice") },
    defaultCapabilities(),
    defaultLifetime,
    [],
    cs,
  );
  const crafted = await createCommit({ state: stateOf(b), cipherSuite: cs }, {
    extraProposals: [{ proposalType: "add", add: { keyPackage: fake.publicPackage } }],
    ratchetTreeExtension: true,
  });
  const bytes = encodeMlsMessage(crafted.commit);
  await assert.rejects(mls.process(a, bytes), (e) => {
    code("refused")(e);
    assert.match((e as Error).message, /two members named "alice"/);
    return true;
  });
  await assert.rejects(mls.process(c, bytes, "commit"), code("refused"));
  // Nothing changed: the next valid commit (a removal of bob) still applies everywhere.
  const rm = await mls.commitRemove(a, "bob");
  const c2 = await mls.process(c, rm.commit, "commit");
  assert.equal(c2.kind, "commit");
  assert.deepEqual(mls.members(c2.newGroup), ["alice", "carol"]);
});

test("a proposal other than a member's own leave is refused", async () => {
  const { a, b } = await group3();
  const p = await createProposal(
    stateOf(b),
    false,
    { proposalType: "remove", remove: { removed: 0 } },
    cs,
  );
  await assert.rejects(
    mls.process(a, encodeMlsMessage(p.message), "proposal"),
    (e) => code("refused")(e) && /own leave/.test((e as Error).message),
  );
});

test("an entry whose declared kind is not its MLS content type is refused", async () => {
  const { a, b } = await group3();
  const m = await mls.encrypt(b, enc.encode("not a commit"));
  await assert.rejects(
    mls.process(a, m.message, "commit"),
    (e) => code("invalid_message")(e) && /declared as commit/.test((e as Error).message),
  );
  const r = await mls.process(a, m.message, "application");
  assert.equal(r.kind, "application");
});

test("a bare KeyPackage (as OpenMLS serialises it) is accepted as well as a wrapped one", async () => {
  const { a } = await group3();
  const kd = await mls.newIdentityKey();
  const dave = await mls.newKeyPackage("dave", kd);
  // MLSMessage header: version (2 bytes) + wire format (2 bytes), then the KeyPackage.
  const bare = dave.keyPackage.subarray(4);
  const add = await mls.commitAdd(a, bare);
  assert.equal(add.identity, "dave");
  const { group } = await mls.join(add.welcome, [dave]);
  assert.deepEqual(mls.members(group), ["alice", "bob", "carol", "dave"]);
});

test("a manager keeps one identity key: the same did across restarts, distinct per identity", async () => {
  const store = new MemoryStore();
  const m1 = new SkytaleChannelManager({ identity: "did:web:example.org:agent", store });
  // Identities accept DID forms (":" is legal).
  const k1 = await m1.keyPackage().then(() => m1.whoami());
  await m1.close();
  const m2 = new SkytaleChannelManager({ identity: "did:web:example.org:agent", store });
  const k2 = await m2.keyPackage().then(() => m2.whoami());
  await m2.close();
  assert.equal(k1.name, "did:web:example.org:agent");
  assert.equal(k1.did, k2.did);
  assert.equal(k1.fingerprint, k2.fingerprint);
  const other = new SkytaleChannelManager({ identity: "x", store: new MemoryStore() });
  const k3 = await other.keyPackage().then(() => other.whoami());
  await other.close();
  assert.notEqual(k3.did, k1.did);
});
