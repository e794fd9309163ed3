// HPKE boxes (src/seal.ts): the RFC 9180 vector, and boxes sealed to a did opened with the
// identity key behind it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { didKey } from "../src/identity.ts";
import { MlsEngine } from "../src/mls/engine.ts";
import { didBoxKey, identityBoxKey, newBoxKey, openBox, sealBox } from "../src/seal.ts";
import { fromHex } from "../src/validate.ts";

const te = new TextEncoder();

test("openBox() opens RFC 9180 A.1.1 (X25519, HKDF-SHA256, AES-128-GCM, base mode, seq 0)", async () => {
  const h = (s: string) => fromHex(s, "vector");
  const { getCiphersuiteFromName, getCiphersuiteImpl } = await import("ts-mls");
  const { fastCryptoProvider } = await import("../src/mls/provider.ts");
  const cs = await getCiphersuiteImpl(
    getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"),
    fastCryptoProvider as never,
  );
  const skR = await cs.hpke.importPrivateKey(
    h("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"),
  );
  const enc = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431";
  const ct =
    "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a";
  const pt = await openBox(
    skR,
    h(enc + ct),
    h("4f6465206f6e2061204772656369616e2055726e"),
    h("436f756e742d30"),
  );
  assert.equal(pt.toHex(), "4265617574792069732074727574682c20747275746820626561757479");
});

test("a box sealed to a did opens only with that identity key, and only with its info and aad", async () => {
  const engine = await MlsEngine.create();
  const alice = await engine.newIdentityKey();
  const bob = await engine.newIdentityKey();
  const info = te.encode("test");
  const aad = te.encode("bound");
  const box = await sealBox(didBoxKey(didKey(alice.publicKey)), te.encode("for alice"), info, aad);
  const opened = await openBox(await identityBoxKey(alice), box, info, aad);
  assert.equal(new TextDecoder().decode(opened), "for alice");
  const refused = (e: Error & { code?: string }) => e.code === "invalid_message";
  await assert.rejects(openBox(await identityBoxKey(bob), box, info, aad), refused);
  await assert.rejects(openBox(await identityBoxKey(alice), box, te.encode("x"), aad), refused);
  await assert.rejects(openBox(await identityBoxKey(alice), box, info, te.encode("x")), refused);
  await assert.rejects(
    openBox(await identityBoxKey(alice), box.subarray(0, 40), info, aad),
    refused,
  );
  assert.throws(() => didBoxKey("did:web:example.com"), /Expected an Ed25519 did:key/);
  // a session key works the same way
  const session = await newBoxKey();
  const box2 = await sealBox(session.publicKey, te.encode("for the session"), info, aad);
  assert.equal(
    new TextDecoder().decode(await openBox(session.privateKey, box2, info, aad)),
    "for the session",
  );
});
