import { test } from "node:test";
import assert from "node:assert/strict";
import { type CryptoProvider, getCiphersuiteFromName, getCiphersuiteImpl } from "ts-mls";
import { DEFAULT_SUITE, type Group, MlsEngine } from "../src/mls/engine.ts";
import { fastCryptoProvider, tsMlsDefaultProvider } from "../src/mls/provider.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();
const suite = getCiphersuiteFromName(DEFAULT_SUITE);

test("the fast provider computes the same bytes as ts-mls' default provider", async () => {
  const fast = await getCiphersuiteImpl(suite, fastCryptoProvider as unknown as CryptoProvider);
  const slow = await getCiphersuiteImpl(suite, tsMlsDefaultProvider as unknown as CryptoProvider);
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const info = crypto.getRandomValues(new Uint8Array(40));
  const salt = crypto.getRandomValues(new Uint8Array(32)); // @hpke/core wants hash-sized salts
  for (const len of [12, 16, 32, 64, 200]) {
    assert.deepEqual(
      await fast.kdf.expand(secret, info, len),
      await slow.kdf.expand(secret, info, len),
    );
  }
  assert.deepEqual(await fast.kdf.extract(salt, secret), await slow.kdf.extract(salt, secret));
  assert.deepEqual(
    await fast.kdf.extract(new Uint8Array(), secret),
    await slow.kdf.extract(new Uint8Array(), secret),
  );
  for (const size of [0, 100, 20000]) {
    const data = crypto.getRandomValues(new Uint8Array(size));
    assert.deepEqual(await fast.hash.digest(data), await slow.hash.digest(data));
    assert.deepEqual(await fast.hash.mac(secret, data), await slow.hash.mac(secret, data));
  }
  const key = crypto.getRandomValues(new Uint8Array(16));
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  for (const size of [0, 24, 1024, 3000, 16384]) {
    const pt = crypto.getRandomValues(new Uint8Array(size));
    for (const aad of [undefined, new Uint8Array(), info]) {
      const ct = await fast.hpke.encryptAead(key, nonce, aad, pt);
      assert.deepEqual(ct, await slow.hpke.encryptAead(key, nonce, aad, pt));
      assert.deepEqual(await slow.hpke.decryptAead(key, nonce, aad, ct), pt);
      assert.deepEqual(await fast.hpke.decryptAead(key, nonce, aad, ct), pt);
      const bad = ct.slice();
      bad[bad.length - 1]! ^= 1;
      await assert.rejects(fast.hpke.decryptAead(key, nonce, aad, bad));
    }
  }
  const { signKey, publicKey } = await fast.signature.keygen();
  const msg = crypto.getRandomValues(new Uint8Array(500));
  const sig = await fast.signature.sign(signKey, msg);
  assert.deepEqual(sig, await slow.signature.sign(signKey, msg), "Ed25519 is deterministic");
  assert.equal(await slow.signature.verify(publicKey, msg, sig), true);
  assert.equal(await fast.signature.verify(publicKey, msg, sig), true);
  assert.equal(await fast.signature.verify(publicKey, msg.subarray(1), sig), false);
  assert.equal(await fast.signature.verify(new Uint8Array(7), msg, sig), false, "bad key");
  // Raw 32-byte seeds (as in the interop vectors) sign like their PKCS#8 form.
  assert.deepEqual(await fast.signature.sign(signKey.slice(-32), msg), sig);
});

test("members with the fast and the default provider share one group, both ways", async () => {
  const fastMls = await MlsEngine.create();
  const slowMls = await MlsEngine.create(undefined, { provider: tsMlsDefaultProvider });
  const bobKp = await slowMls.newKeyPackage("bob");
  let alice: Group = await fastMls.createGroup(utf8.encode("acme/interop"), "alice");
  const added = await fastMls.commitAdd(alice, bobKp.keyPackage);
  alice = added.newGroup;
  let bob: Group = (await slowMls.join(added.welcome, [bobKp])).group;

  // A member added by the default-provider member, joining with the fast one.
  const carolKp = await fastMls.newKeyPackage("carol");
  const addCarol = await slowMls.commitAdd(bob, carolKp.keyPackage);
  bob = addCarol.newGroup;
  const a = await fastMls.process(alice, addCarol.commit);
  assert.equal(a.kind, "commit");
  alice = a.newGroup;
  let carol: Group = (await fastMls.join(addCarol.welcome, [carolKp])).group;

  for (const size of [5, 1024, 16384]) {
    const data = crypto.getRandomValues(new Uint8Array(size));
    const m1 = await fastMls.encrypt(alice, data);
    alice = m1.newGroup;
    const r1 = await slowMls.process(bob, m1.message);
    assert.ok(r1.kind === "application");
    assert.equal(r1.sender, "alice");
    assert.deepEqual(r1.data, data);
    bob = r1.newGroup;
    const r1c = await fastMls.process(carol, m1.message);
    assert.ok(r1c.kind === "application");
    carol = r1c.newGroup;

    const m2 = await slowMls.encrypt(bob, data);
    bob = m2.newGroup;
    const r2 = await fastMls.process(alice, m2.message);
    assert.ok(r2.kind === "application");
    assert.equal(r2.sender, "bob");
    assert.deepEqual(r2.data, data);
    alice = r2.newGroup;
    carol = (await fastMls.process(carol, m2.message)).newGroup;
  }

  // Key rotation by the fast member, then a message back from the default one.
  const upd = await fastMls.commitUpdate(alice);
  alice = upd.newGroup;
  bob = (await slowMls.process(bob, upd.commit)).newGroup;
  carol = (await fastMls.process(carol, upd.commit)).newGroup;
  assert.equal(fastMls.epoch(alice), slowMls.epoch(bob));
  assert.deepEqual(
    await fastMls.exporter(alice, "test", 32),
    await slowMls.exporter(bob, "test", 32),
  );
  const last = await slowMls.encrypt(bob, utf8.encode("after rotation"));
  const got = await fastMls.process(carol, last.message);
  assert.ok(got.kind === "application");
  assert.equal(text.decode(got.data), "after rotation");
});

test("state stored under one provider is usable under the other", async () => {
  const fastMls = await MlsEngine.create();
  const slowMls = await MlsEngine.create(undefined, { provider: tsMlsDefaultProvider });
  const bobKp = await fastMls.newKeyPackage("bob");
  const created = await slowMls.createGroup(utf8.encode("acme/stored"), "alice");
  const added = await slowMls.commitAdd(created, bobKp.keyPackage);
  const bob = (await fastMls.join(added.welcome, [bobKp])).group;
  // Alice's state, made and signed for by the default provider, now sends via the fast one.
  const alice = fastMls.decodeGroup(slowMls.encodeGroup(added.newGroup));
  const m = await fastMls.encrypt(alice, utf8.encode("hi"));
  const r = await slowMls.process(slowMls.decodeGroup(fastMls.encodeGroup(bob)), m.message);
  assert.ok(r.kind === "application");
  assert.equal(r.sender, "alice");
});
