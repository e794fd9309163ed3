import { test } from "node:test";
import assert from "node:assert/strict";
import { type Group, MlsEngine } from "../src/mls/engine.ts";
import { SkytaleError } from "../src/errors.ts";
import { bytesEqual } from "../src/_util.ts";
import { nameOf } from "../src/mls/_rules.ts";
import { decodeMlsMessage, encodeMlsMessage, nobleCryptoProvider } from "ts-mls";

const enc = new TextEncoder();
const dec = new TextDecoder();
const mls = await MlsEngine.create();

function code(c: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof SkytaleError, `expected a SkytaleError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    return true;
  };
}

function flipLast(b: Uint8Array): Uint8Array {
  const c = b.slice();
  c[c.length - 1]! ^= 0x01;
  return c;
}

async function send(from: Group, text: string): Promise<{ message: Uint8Array; newGroup: Group }> {
  return await mls.encrypt(from, enc.encode(text));
}

async function receive(
  at: Group,
  message: Uint8Array,
): Promise<{ sender: string; text: string; newGroup: Group }> {
  const r = await mls.process(at, message);
  assert.equal(r.kind, "application");
  if (r.kind !== "application") throw new Error("unreachable");
  return { sender: r.sender, text: dec.decode(r.data), newGroup: r.newGroup };
}

async function applyCommit(at: Group, commit: Uint8Array): Promise<Group> {
  const r = await mls.process(at, commit);
  assert.equal(r.kind, "commit");
  if (r.kind !== "commit") throw new Error("unreachable");
  assert.equal(r.removed, false);
  return r.newGroup;
}

/** alice creates a group and adds bob; both groups at epoch 1. */
async function pair(): Promise<{ alice: Group; bob: Group }> {
  const bobKp = await mls.newKeyPackage("bob");
  const alice0 = await mls.createGroup(enc.encode("acme/test/pair"), "alice");
  const add = await mls.commitAdd(alice0, bobKp.keyPackage);
  const { group: bob } = await mls.join(add.welcome, [bobKp]);
  return { alice: add.newGroup, bob };
}

/** pair() plus carol, added by alice; bob has processed the commit. */
async function trio(): Promise<{ alice: Group; bob: Group; carol: Group }> {
  const p = await pair();
  const carolKp = await mls.newKeyPackage("carol");
  const add = await mls.commitAdd(p.alice, carolKp.keyPackage);
  const bob = await applyCommit(p.bob, add.commit);
  const { group: carol } = await mls.join(add.welcome, [carolKp]);
  return { alice: add.newGroup, bob, carol };
}

test("create() uses the X25519/AES-128-GCM/Ed25519 suite by default and refuses unknown names", async () => {
  assert.equal(mls.suite, "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519");
  for (const bad of ["MLS_nope", "toString", ""]) {
    await assert.rejects(MlsEngine.create(bad), code("invalid_argument"));
  }
});

test("a member added by key package joins from the Welcome alone and both sides exchange messages", async () => {
  const bobKp = await mls.newKeyPackage("bob");
  assert.match(bobKp.ref, /^[0-9a-f]{64}$/);
  const gid = enc.encode("acme/test/two");
  const alice0 = await mls.createGroup(gid, "alice");
  assert.equal(mls.epoch(alice0), 0);
  assert.deepEqual(mls.members(alice0), ["alice"]);

  const add = await mls.commitAdd(alice0, bobKp.keyPackage);
  assert.equal(add.identity, "bob");
  assert.equal(mls.epoch(add.newGroup), 1);
  const other = await mls.newKeyPackage("bob");
  const joined = await mls.join(add.welcome, [other, bobKp]);
  assert.equal(joined.ref, bobKp.ref);
  let bob = joined.group;
  let alice = add.newGroup;
  assert.equal(mls.epoch(bob), 1);
  assert.deepEqual(mls.members(bob), ["alice", "bob"]);
  assert.deepEqual(mls.groupId(bob), gid);

  const m1 = await send(alice, "hello bob");
  alice = m1.newGroup;
  const r1 = await receive(bob, m1.message);
  bob = r1.newGroup;
  assert.deepEqual([r1.sender, r1.text], ["alice", "hello bob"]);

  const m2 = await send(bob, "hello alice");
  bob = m2.newGroup;
  const r2 = await receive(alice, m2.message);
  assert.deepEqual([r2.sender, r2.text], ["bob", "hello alice"]);
});

test("three members all read each other with the right sender", async () => {
  let { alice, bob, carol } = await trio();
  for (const g of [alice, bob, carol]) {
    assert.deepEqual(mls.members(g), ["alice", "bob", "carol"]);
    assert.equal(mls.epoch(g), 2);
  }
  const fromCarol = await send(carol, "hi from carol");
  carol = fromCarol.newGroup;
  const a = await receive(alice, fromCarol.message);
  const b = await receive(bob, fromCarol.message);
  alice = a.newGroup;
  bob = b.newGroup;
  assert.deepEqual([a.sender, a.text, b.sender, b.text], [
    "carol",
    "hi from carol",
    "carol",
    "hi from carol",
  ]);
  const fromBob = await send(bob, "hi from bob");
  assert.equal((await receive(alice, fromBob.message)).sender, "bob");
  assert.equal((await receive(carol, fromBob.message)).sender, "bob");
});

test("a later joiner cannot decrypt messages sent before it joined", async () => {
  let { alice, bob } = await pair();
  const early = await send(alice, "before carol");
  alice = early.newGroup;
  bob = (await receive(bob, early.message)).newGroup;

  const carolKp = await mls.newKeyPackage("carol");
  const add = await mls.commitAdd(alice, carolKp.keyPackage);
  const { group: carol } = await mls.join(add.welcome, [carolKp]);
  await assert.rejects(mls.process(carol, early.message), code("invalid_message"));

  const late = await send(add.newGroup, "after carol");
  assert.equal((await receive(carol, late.message)).text, "after carol");
});

test("a removed member learns it was removed and cannot decrypt afterwards", async () => {
  const t = await trio();
  await assert.rejects(mls.commitRemove(t.alice, "dave"), code("unknown_member"));
  const rm = await mls.commitRemove(t.alice, "bob");
  assert.deepEqual(mls.members(rm.newGroup), ["alice", "carol"]);
  assert.equal(mls.epoch(rm.newGroup), 3);

  const atBob = await mls.process(t.bob, rm.commit);
  assert.equal(atBob.kind, "commit");
  assert.equal(atBob.kind === "commit" && atBob.removed, true);
  const carol = await applyCommit(t.carol, rm.commit);
  assert.deepEqual(mls.members(carol), ["alice", "carol"]);

  const after = await send(rm.newGroup, "bob is gone");
  assert.equal((await receive(carol, after.message)).text, "bob is gone");
  await assert.rejects(mls.process(atBob.newGroup, after.message), code("invalid_message"));
  await assert.rejects(mls.process(t.bob, after.message), code("invalid_message"));
});

test("commitUpdate() rotates keys: epochs advance, messages flow and exporter secrets change", async () => {
  let { alice, bob } = await pair();
  const before = await mls.exporter(alice, "skytale test", 32);
  for (let i = 0; i < 3; i++) {
    const u = i % 2 === 0 ? await mls.commitUpdate(bob) : await mls.commitUpdate(alice);
    if (i % 2 === 0) {
      bob = u.newGroup;
      alice = await applyCommit(alice, u.commit);
    } else {
      alice = u.newGroup;
      bob = await applyCommit(bob, u.commit);
    }
    assert.equal(mls.epoch(alice), 2 + i);
    assert.equal(mls.epoch(bob), 2 + i);
    const m = await send(alice, `epoch ${2 + i}`);
    alice = m.newGroup;
    const r = await receive(bob, m.message);
    bob = r.newGroup;
    assert.deepEqual([r.sender, r.text], ["alice", `epoch ${2 + i}`]);
  }
  const afterA = await mls.exporter(alice, "skytale test", 32);
  assert.deepEqual(afterA, await mls.exporter(bob, "skytale test", 32));
  assert.notDeepEqual(afterA, before);
});

test("a message sent just before a commit still decrypts after it, with its sender", async () => {
  let { alice, bob } = await pair();
  const late = await send(bob, "sent at epoch 1");
  bob = late.newGroup;
  const u = await mls.commitUpdate(alice);
  alice = u.newGroup;
  bob = await applyCommit(bob, u.commit);
  assert.equal(mls.epoch(alice), 2);
  const r = await receive(mls.decodeGroup(mls.encodeGroup(alice)), late.message);
  assert.deepEqual([r.sender, r.text], ["bob", "sent at epoch 1"]);
  // A commit of the old epoch (here alice's own, echoed back) is refused.
  await assert.rejects(mls.process(alice, u.commit), code("invalid_message"));
});

test("a member leaves by proposal, and another member's commitPending() completes it", async () => {
  let { alice, bob, carol } = await trio();
  const leave = await mls.proposeLeave(bob);
  bob = leave.newGroup;

  const p = await mls.process(alice, leave.proposal);
  assert.equal(p.kind, "proposal");
  assert.equal(p.kind === "proposal" && p.sender, "bob");
  alice = p.newGroup;
  const pc = await mls.process(carol, leave.proposal);
  assert.equal(pc.kind, "proposal");
  carol = pc.newGroup;
  assert.equal(mls.epoch(alice), 2);

  const c = await mls.commitPending(alice);
  alice = c.newGroup;
  assert.deepEqual(mls.members(alice), ["alice", "carol"]);
  assert.equal(mls.epoch(alice), 3);

  const atBob = await mls.process(bob, c.commit);
  assert.equal(atBob.kind === "commit" && atBob.removed, true);
  carol = await applyCommit(carol, c.commit);
  assert.deepEqual(mls.members(carol), ["alice", "carol"]);

  const m = await send(carol, "bye bob");
  assert.deepEqual((await receive(alice, m.message)).sender, "carol");
  await assert.rejects(mls.process(atBob.newGroup, m.message), code("invalid_message"));
});

test("a group survives encodeGroup()/decodeGroup() mid-conversation", async () => {
  let { alice, bob } = await pair();
  const m1 = await send(alice, "one");
  alice = m1.newGroup;
  bob = (await receive(bob, m1.message)).newGroup;
  const m2 = await send(alice, "two");
  alice = m2.newGroup;

  // Alice too, in a fresh engine, to prove the state carries everything.
  const other = await MlsEngine.create();
  const bytes = mls.encodeGroup(bob);
  assert.ok(bytes instanceof Uint8Array && bytes[0] === 1);
  bob = mls.decodeGroup(bytes);
  alice = other.decodeGroup(other.encodeGroup(alice));
  assert.deepEqual(mls.encodeGroup(bob), bytes);
  assert.equal(mls.epoch(bob), 1);
  assert.deepEqual(mls.members(bob), ["alice", "bob"]);

  const r2 = await receive(bob, m2.message);
  bob = r2.newGroup;
  assert.deepEqual([r2.sender, r2.text], ["alice", "two"]);

  const u = await mls.commitUpdate(mls.decodeGroup(mls.encodeGroup(bob)));
  bob = mls.decodeGroup(mls.encodeGroup(u.newGroup));
  alice = await applyCommit(alice, u.commit);
  const m3 = await send(bob, "three");
  assert.deepEqual((await receive(alice, m3.message)).text, "three");
  assert.deepEqual(await other.exporter(alice, "x", 16), await mls.exporter(bob, "x", 16));

  const carolKp = await mls.newKeyPackage("carol");
  const add = await mls.commitAdd(mls.decodeGroup(mls.encodeGroup(alice)), carolKp.keyPackage);
  const { group: carol } = await mls.join(add.welcome, [carolKp]);
  const m4 = await send(mls.decodeGroup(mls.encodeGroup(carol)), "four");
  assert.equal((await receive(add.newGroup, m4.message)).sender, "carol");
});

test("decodeGroup() refuses unreadable bytes with state_corrupt", async () => {
  const { bob } = await pair();
  const bytes = mls.encodeGroup(bob);
  const bad = [
    new Uint8Array(),
    new Uint8Array([1]),
    new Uint8Array([2, ...bytes.subarray(1)]),
    bytes.subarray(0, bytes.length - 1),
    new Uint8Array([...bytes, 0]),
    crypto.getRandomValues(new Uint8Array(300)),
  ];
  for (const b of bad) assert.throws(() => mls.decodeGroup(b), code("state_corrupt"));
});

test("join() names welcome_mismatch when the Welcome is for another key package", async () => {
  const bobKp = await mls.newKeyPackage("bob");
  const carolKp = await mls.newKeyPackage("carol");
  const alice = await mls.createGroup(enc.encode("acme/test/mismatch"), "alice");
  const add = await mls.commitAdd(alice, bobKp.keyPackage);
  await assert.rejects(mls.join(add.welcome, [carolKp]), code("welcome_mismatch"));
  await assert.rejects(mls.join(add.welcome, []), code("welcome_mismatch"));
  await assert.rejects(
    mls.join(add.welcome, [{ ...bobKp, privateKey: new Uint8Array([9, 9]) }]),
    code("state_corrupt"),
  );
});

test("join(), commitAdd() and process() refuse garbage, truncated and bit-flipped input with invalid_message", async () => {
  const bobKp = await mls.newKeyPackage("bob");
  const alice0 = await mls.createGroup(enc.encode("acme/test/garbage"), "alice");
  const add = await mls.commitAdd(alice0, bobKp.keyPackage);
  const { group: bob } = await mls.join(add.welcome, [bobKp]);
  const msg = await send(add.newGroup, "payload");
  const proposal = (await mls.proposeLeave(add.newGroup)).proposal;

  const garbage = [
    new Uint8Array(),
    new Uint8Array([0]),
    crypto.getRandomValues(new Uint8Array(64)),
    crypto.getRandomValues(new Uint8Array(2048)),
  ];
  const variants = (good: Uint8Array) => [
    ...garbage,
    good.subarray(0, good.length - 1),
    good.subarray(0, good.length >> 1),
    new Uint8Array([...good, 0]),
    flipLast(good),
  ];

  for (const bad of [...variants(add.welcome), msg.message, bobKp.keyPackage]) {
    await assert.rejects(mls.join(bad, [bobKp]), code("invalid_message"));
  }
  for (const bad of [...variants(bobKp.keyPackage), add.welcome, msg.message]) {
    await assert.rejects(mls.commitAdd(alice0, bad), code("invalid_message"));
  }
  for (const good of [msg.message, add.commit, proposal]) {
    for (const bad of variants(good)) {
      await assert.rejects(mls.process(bob, bad), code("invalid_message"));
    }
  }
  for (const bad of [add.welcome, bobKp.keyPackage]) {
    await assert.rejects(mls.process(bob, bad), code("invalid_message"));
  }
  // The group is untouched by all that: the genuine message still decrypts.
  assert.equal((await receive(bob, msg.message)).text, "payload");
});

test("process() refuses a message of another group or a future epoch with invalid_message", async () => {
  const one = await pair();
  const two = await pair();
  const m = await send(two.alice, "not for you");
  await assert.rejects(mls.process(one.bob, m.message), code("invalid_message"));

  const u1 = await mls.commitUpdate(one.alice);
  const u2 = await mls.commitUpdate(u1.newGroup);
  await assert.rejects(mls.process(one.bob, u2.commit), code("invalid_message"));
  const future = await send(u2.newGroup, "from epoch 3");
  await assert.rejects(mls.process(one.bob, future.message), code("invalid_message"));
});

test("commitAdd() refuses an identity that is already a member", async () => {
  const { alice } = await pair();
  const again = await mls.newKeyPackage("bob");
  await assert.rejects(mls.commitAdd(alice, again.keyPackage), code("invalid_argument"));
  const self = await mls.newKeyPackage("alice");
  await assert.rejects(mls.commitAdd(alice, self.keyPackage), code("invalid_argument"));
});

test("exporter() gives every member the same secret for a label, and different ones per label", async () => {
  const { alice, bob, carol } = await trio();
  const a = await mls.exporter(alice, "skytale invite", 32);
  assert.equal(a.length, 32);
  assert.deepEqual(await mls.exporter(bob, "skytale invite", 32), a);
  assert.deepEqual(await mls.exporter(carol, "skytale invite", 32), a);
  assert.notDeepEqual(await mls.exporter(alice, "other", 32), a);
  assert.equal((await mls.exporter(alice, "skytale invite", 64)).length, 64);
});

test("create() takes an injected crypto provider whose members interoperate with the default one", async () => {
  const noble = await MlsEngine.create(undefined, { provider: nobleCryptoProvider });
  assert.equal(noble.suite, mls.suite);
  const bobKp = await noble.newKeyPackage("bob");
  const alice0 = await mls.createGroup(enc.encode("acme/test/noble"), "alice");
  const add = await mls.commitAdd(alice0, bobKp.keyPackage);
  const { group: bob } = await noble.join(add.welcome, [bobKp]);
  const m = await noble.encrypt(bob, enc.encode("via noble"));
  assert.deepEqual((await receive(add.newGroup, m.message)).sender, "bob");
});

test("create() selects another available suite by name", async () => {
  const p256 = await MlsEngine.create("MLS_128_DHKEMP256_AES128GCM_SHA256_P256");
  const bobKp = await p256.newKeyPackage("bob");
  const alice0 = await p256.createGroup(enc.encode("acme/test/p256"), "alice");
  const add = await p256.commitAdd(alice0, bobKp.keyPackage);
  const { group: bob } = await p256.join(add.welcome, [bobKp]);
  const m = await p256.encrypt(add.newGroup, enc.encode("p256"));
  const r = await p256.process(bob, m.message);
  assert.equal(r.kind === "application" && r.sender, "alice");
  // A default-suite engine refuses the other suite's objects.
  await assert.rejects(
    mls.commitAdd(await mls.createGroup(enc.encode("g"), "x"), bobKp.keyPackage),
    code("invalid_message"),
  );
  assert.throws(() => mls.decodeGroup(p256.encodeGroup(bob)), code("state_corrupt"));
  await assert.rejects(mls.encrypt(bob, enc.encode("x")), code("invalid_argument"));
});

test("skipSendGeneration() moves a sender past generations it may have used; receivers follow the jump", async () => {
  const a0 = await mls.createGroup(enc.encode("acme/test/skip"), "alice");
  const bobKp = await mls.newKeyPackage("bob");
  const add = await mls.commitAdd(a0, bobKp.keyPackage);
  let { group: bob } = await mls.join(add.welcome, [bobKp]);
  let alice = add.newGroup;
  const m1 = await send(alice, "one");
  alice = m1.newGroup;
  assert.equal(mls.sendGeneration(alice), 1);
  bob = (await receive(bob, m1.message)).newGroup;
  // A crash lost alice's state after she reserved generations up to 65: she never uses them.
  alice = await mls.skipSendGeneration(alice, 65);
  assert.equal(mls.sendGeneration(alice), 65);
  assert.equal(await mls.skipSendGeneration(alice, 10), alice, "never back");
  const m2 = await send(alice, "after the jump");
  const r = await receive(bob, m2.message);
  assert.equal(r.text, "after the jump");
});

test("a commit's group is adopted from its saved copy: the state built in memory shares secrets with the group it came from", async () => {
  // The manager saves a commit's group when it builds it and, once the relay sequences the
  // commit, adopts the decoded copy. Adopting the built object instead lost the old epoch's
  // retained keys: ts-mls zeroes used secrets in place, in arrays the two states share, so a
  // message of the old epoch sequenced after the commit could not be decrypted (caught by the
  // member-SIGKILL fault scenario under Bun).
  const a0 = await mls.createGroup(enc.encode("acme/test/adopt"), "alice");
  const bobKp = await mls.newKeyPackage("bob");
  const add = await mls.commitAdd(a0, bobKp.keyPackage);
  let alice = add.newGroup;
  let bob = (await mls.join(add.welcome, [bobKp])).group;
  const update = await mls.commitUpdate(bob); // bob's commit, in flight
  const saved = mls.encodeGroup(update.newGroup);
  const m1 = await send(alice, "before the commit is sequenced");
  alice = m1.newGroup;
  const m2 = await send(alice, "sequenced after the commit");
  bob = (await receive(bob, m1.message)).newGroup; // bob keeps receiving meanwhile
  const late = await receive(mls.decodeGroup(saved), m2.message);
  assert.equal(late.text, "sequenced after the commit");
  await assert.rejects(
    mls.process(update.newGroup, m2.message),
    code("invalid_message"),
    "the built object's old-epoch keys were wiped; if ts-mls stops sharing them, this may change",
  );
});

test("a commit in a non-canonical encoding is refused, though ts-mls decodes it to the signed commit", async () => {
  // ts-mls verifies signatures over the re-encoded structure and reads an optional field's presence
  // byte leniently, so flipping that byte left a signed commit valid: a relay could alter the bytes
  // every member stores and hashes, unnoticed (found by `deno task faults --only fuzz`).
  const a0 = await mls.createGroup(enc.encode("acme/test/canonical"), "alice");
  const bobKp = await mls.newKeyPackage("bob");
  const add = await mls.commitAdd(a0, bobKp.keyPackage);
  const bob = (await mls.join(add.welcome, [bobKp])).group;
  const carolKp = await mls.newKeyPackage("carol");
  const { commit } = await mls.commitAdd(add.newGroup, carolKp.keyPackage);
  const saved = mls.encodeGroup(bob);
  let variants = 0;
  for (let i = 0; i < commit.length; i++) {
    for (const v of [2, 8, 255]) {
      const m = commit.slice();
      if (m[i] === v) continue;
      m[i] = v;
      let decoded: ReturnType<typeof decodeMlsMessage>;
      try {
        decoded = decodeMlsMessage(m, 0);
      } catch {
        continue;
      }
      if (decoded === undefined || decoded[1] !== m.length) continue;
      const again = encodeMlsMessage(decoded[0]);
      if (!bytesEqual(again, commit)) continue;
      variants++;
      await assert.rejects(mls.process(mls.decodeGroup(saved), m), code("invalid_message"));
    }
  }
  assert.ok(variants > 0, "the add commit (no path) has a presence byte to play with");
  const r = await mls.process(mls.decodeGroup(saved), commit);
  assert.equal(r.kind, "commit", "the canonical bytes are still accepted");
});

test("a credential's name reads as strict UTF-8 whether or not it is all ASCII", () => {
  const basic = (identity: Uint8Array) => ({ credentialType: "basic" as const, identity });
  const utf8 = new TextEncoder();
  for (const name of ["alice", "", "a".repeat(255), "a".repeat(256), "zoë", "名前", "a\u0000b"]) {
    assert.equal(nameOf(basic(utf8.encode(name))), name);
  }
  const bom = Uint8Array.of(0xef, 0xbb, 0xbf, ...utf8.encode("alice"));
  assert.equal(nameOf(basic(bom)), "alice", "as TextDecoder reads it: the byte-order mark dropped");
  assert.equal(nameOf(basic(Uint8Array.of(0x61, 0xff))), undefined, "invalid UTF-8");
  assert.equal(nameOf(basic(Uint8Array.of(0xc3))), undefined, "a truncated sequence");
  const x509 = { credentialType: "x509" as const, certificates: [] };
  assert.equal(nameOf(x509 as unknown as Parameters<typeof nameOf>[0]), undefined);
});
