import { test } from "node:test";
import assert from "node:assert/strict";
import { MlsEngine } from "../src/mls/engine.ts";
import { GroupObserver, Refusal } from "../src/relay/_group.ts";

const enc = new TextEncoder();
const mls = await MlsEngine.create();
const CH = "acme/relay/group";

test("the relay's observer follows adds, removals, rotations and leaves, and refuses junk and stale commits", async () => {
  const [ka, kb, kc] = await Promise.all([1, 2, 3].map(() => mls.newIdentityKey()));
  let a = await mls.createGroup(enc.encode(CH), "alice", ka);
  const obs = await GroupObserver.genesis(CH, await mls.groupInfo(a));
  assert.ok(obs instanceof GroupObserver);
  assert.ok(obs.isMember(ka!.publicKey));
  assert.ok(!obs.isMember(kb!.publicKey));
  // Another channel's GroupInfo, or junk, is no genesis.
  assert.ok(
    await GroupObserver.genesis("acme/relay/other", await mls.groupInfo(a)) instanceof Refusal,
  );
  assert.ok(await GroupObserver.genesis(CH, new Uint8Array([1, 2, 3, 4])) instanceof Refusal);

  const bKp = await mls.newKeyPackage("bob", kb);
  const cKp = await mls.newKeyPackage("carol", kc);
  const add = await mls.commitAddMany(a, [bKp.keyPackage, cKp.keyPackage]);
  assert.equal(await obs.apply(new Uint8Array([0, 1, 0, 3])) instanceof Refusal, true);
  assert.equal(await obs.apply(add.commit), undefined);
  assert.equal(obs.epoch, 1);
  assert.ok(obs.isMember(kb!.publicKey) && obs.isMember(kc!.publicKey));
  // The same commit again is for an old epoch.
  const stale = await obs.apply(add.commit);
  assert.ok(stale instanceof Refusal && /epoch 0/.test(stale.reason), String(stale));
  a = add.newGroup;
  let { group: b } = await mls.join(add.welcome, [bKp]);

  const rot = await mls.commitUpdate(b);
  assert.equal(await obs.apply(rot.commit), undefined);
  b = rot.newGroup;
  a = (await mls.process(a, rot.commit)).newGroup;

  // Carol leaves by proposal; bob commits it (by value) and the relay follows.
  const { group: c0 } = await mls.join(add.welcome, [cKp]);
  const c = (await mls.process(c0, rot.commit)).newGroup;
  const leave = await mls.proposeLeave(c);
  b = (await mls.process(b, leave.proposal)).newGroup;
  const done = await mls.commitPending(b);
  assert.equal(await obs.apply(done.commit), undefined);
  assert.ok(!obs.isMember(kc!.publicKey));
  a = (await mls.process(a, done.commit)).newGroup;
  assert.deepEqual(mls.members(a), ["alice", "bob"]);

  const rm = await mls.commitRemove(a, "bob");
  assert.equal(await obs.apply(rm.commit), undefined);
  assert.ok(!obs.isMember(kb!.publicKey));
  assert.equal(obs.epoch, 4);
});
