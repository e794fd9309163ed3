import { test } from "node:test";
import assert from "node:assert/strict";
import { type CryptoProvider, getCiphersuiteFromName, getCiphersuiteImpl } from "ts-mls";
import { gcm } from "@noble/ciphers/aes.js";
import { nativeCrypto } from "../src/runtime/native_crypto.ts";
import { gcmOpen, gcmSeal } from "../src/mls/_gcm.ts";
import { SyncKeyCache } from "../src/mls/_keyCache.ts";
import { hmacSha256, sha256 as ownSha256 } from "../src/mls/_sha256.ts";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { DEFAULT_SUITE } from "../src/mls/engine.ts";
import { AEAD_NATIVE_MAX, fastCryptoProvider, tsMlsDefaultProvider } from "../src/mls/provider.ts";

const subtle = globalThis.crypto.subtle;

function unhex(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function random(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

async function webEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  pt: Uint8Array,
): Promise<Uint8Array> {
  const k = await subtle.importKey("raw", key as Uint8Array<ArrayBuffer>, "AES-GCM", false, [
    "encrypt",
  ]);
  const params = {
    name: "AES-GCM",
    iv: nonce as Uint8Array<ArrayBuffer>,
    additionalData: aad as Uint8Array<ArrayBuffer>,
  };
  return new Uint8Array(await subtle.encrypt(params, k, pt as Uint8Array<ArrayBuffer>));
}

const native = nativeCrypto;
const skip = native === undefined ? "node:crypto lacks AES-GCM or Ed25519 here" : false;

// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 1 to 4 (AES-128).
const K0 = "00000000000000000000000000000000";
const K1 = "feffe9928665731c6d6a8f9467308308";
const IV1 = "cafebabefacedbaddecaf888";
const P64 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
  "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const C64 = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e" +
  "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985";
const GCM_VECTORS = [
  {
    key: K0,
    iv: "000000000000000000000000",
    aad: "",
    pt: "",
    ct: "",
    tag: "58e2fccefa7e3061367f1d57a4e7455a",
  },
  {
    key: K0,
    iv: "000000000000000000000000",
    aad: "",
    pt: "00000000000000000000000000000000",
    ct: "0388dace60b6a392f328c2b971b2fe78",
    tag: "ab6e47d42cec13bdf53a67b21257bddf",
  },
  { key: K1, iv: IV1, aad: "", pt: P64, ct: C64, tag: "4d5c2af327cd64a62cf35abd2ba6fab4" },
  {
    key: K1,
    iv: IV1,
    aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
    pt: P64.slice(0, 120),
    ct: C64.slice(0, 120),
    tag: "5bc94fbc3221a5db94fae95ae7121a47",
  },
];

test("native AES-GCM matches the GCM specification's known answers", { skip }, () => {
  for (const v of GCM_VECTORS) {
    const key = unhex(v.key), iv = unhex(v.iv), pt = unhex(v.pt);
    const aad = v.aad === "" ? undefined : unhex(v.aad);
    const expected = unhex(v.ct + v.tag);
    const ct = native!.aesGcmEncrypt(key, iv, aad, pt);
    assert.equal(Object.getPrototypeOf(ct), Uint8Array.prototype, "a plain Uint8Array");
    assert.deepEqual(ct, expected);
    assert.deepEqual(native!.aesGcmDecrypt(key, iv, aad, ct), pt);
  }
});

test("native AES-GCM refuses a changed tag, ciphertext, AAD or a truncated input", { skip }, () => {
  const v = GCM_VECTORS[3]!;
  const key = unhex(v.key), iv = unhex(v.iv), aad = unhex(v.aad);
  const ct = unhex(v.ct + v.tag);
  for (const at of [0, ct.length - 17, ct.length - 16, ct.length - 1]) {
    const bad = ct.slice();
    bad[at]! ^= 0x80;
    assert.throws(() => native!.aesGcmDecrypt(key, iv, aad, bad), `byte ${at} flipped`);
  }
  const badAad = aad.slice();
  badAad[0]! ^= 1;
  assert.throws(() => native!.aesGcmDecrypt(key, iv, badAad, ct));
  assert.throws(() => native!.aesGcmDecrypt(key, iv, undefined, ct));
  assert.throws(() => native!.aesGcmDecrypt(key, iv, aad, ct.subarray(0, ct.length - 1)));
  assert.throws(() => native!.aesGcmDecrypt(key, iv, aad, ct.subarray(0, 15)));
  assert.throws(() => native!.aesGcmDecrypt(key, iv, aad, new Uint8Array()));
  assert.throws(() => native!.aesGcmEncrypt(new Uint8Array(15), iv, aad, ct), "bad key length");
});

test("native AES-GCM equals WebCrypto and noble for sizes 0 to 70000, all key sizes", {
  skip,
}, async () => {
  const sizes = [0, 1, 15, 16, 17, 100, 1023, 1024, 1025, 4096, 16384, 24575, 24576, 24577];
  sizes.push(65535, 65536, 65537, 70000);
  for (const keyLen of [16, 24, 32]) {
    if (!native!.aesGcmSupports(keyLen)) {
      assert.equal(keyLen, 24, "only AES-192 may be missing (Deno)");
      assert.throws(() => native!.aesGcmEncrypt(random(keyLen), random(12), undefined, random(5)));
      continue;
    }
    for (const size of sizes) {
      const key = random(keyLen), nonce = random(12), aad = random(size % 64);
      const pt = random(size);
      const ct = native!.aesGcmEncrypt(key, nonce, aad, pt);
      assert.equal(ct.length, size + 16);
      assert.deepEqual(ct, await webEncrypt(key, nonce, aad, pt), `${keyLen * 8}-bit, ${size} B`);
      if (size <= 4096) assert.deepEqual(ct, gcm(key, nonce, aad).encrypt(pt));
      assert.deepEqual(native!.aesGcmDecrypt(key, nonce, aad, ct), pt);
    }
  }
});

test("AES-GCM composed of native AES-ECB and GMAC matches the known answers", { skip }, () => {
  for (const v of GCM_VECTORS) {
    const key = unhex(v.key), iv = unhex(v.iv), pt = unhex(v.pt), aad = unhex(v.aad);
    const ct = gcmSeal(native!, key, iv, aad, pt);
    assert.deepEqual(ct, unhex(v.ct + v.tag));
    assert.deepEqual(gcmOpen(native!, key, iv, aad, ct), pt);
  }
});

test("composed AES-GCM equals native AES-GCM and WebCrypto at every length class", {
  skip,
}, async () => {
  const sizes = [0, 1, 15, 16, 17, 31, 32, 33, 100, 4095, 4096, 4097, 16384, 16500, 65537];
  for (const keyLen of [16, 24, 32]) {
    if (!native!.aesEcbSupports(keyLen)) {
      assert.equal(native!.aesGcmSupports(keyLen), false, "ECB wherever GCM is");
      continue;
    }
    for (const size of sizes) {
      for (const aadLen of [0, 1, 16, 40, 63]) {
        const key = random(keyLen), nonce = random(12), aad = random(aadLen), pt = random(size);
        const ct = gcmSeal(native!, key, nonce, aad, pt);
        const at = `${keyLen * 8}-bit, ${size} B, ${aadLen} B AAD`;
        assert.deepEqual(ct, native!.aesGcmEncrypt(key, nonce, aad, pt), at);
        if (aadLen === 40) assert.deepEqual(ct, await webEncrypt(key, nonce, aad, pt), at);
        assert.deepEqual(gcmOpen(native!, key, nonce, aad, ct), pt, at);
      }
    }
  }
});

test("composed AES-GCM refuses every changed byte, a changed AAD and a short input", {
  skip,
}, () => {
  const key = random(16), nonce = random(12), aad = random(40), pt = random(100);
  const ct = gcmSeal(native!, key, nonce, aad, pt);
  for (let at = 0; at < ct.length; at++) {
    const bad = ct.slice();
    bad[at]! ^= 1 << (at % 8);
    assert.throws(() => gcmOpen(native!, key, nonce, aad, bad), `byte ${at} changed`);
  }
  const badAad = aad.slice();
  badAad[39]! ^= 1;
  assert.throws(() => gcmOpen(native!, key, nonce, badAad, ct));
  assert.throws(() => gcmOpen(native!, key, nonce, aad.subarray(0, 39), ct));
  assert.throws(() => gcmOpen(native!, key, random(12), aad, ct), "another nonce");
  assert.throws(() => gcmOpen(native!, key, nonce, aad, ct.subarray(0, 15)));
  assert.throws(() => gcmSeal(native!, key, random(16), aad, pt), "a 16-byte nonce");
});

test("native Ed25519 signs like WebCrypto and verifies its signatures", { skip }, async () => {
  const pair = await subtle.generateKey("Ed25519", true, ["sign", "verify"]) as CryptoKeyPair;
  const pub = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  const pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", pair.privateKey));
  const sk = native!.ed25519PrivateKey(pkcs8);
  const seeded = native!.ed25519PrivateKey(pkcs8.slice(-32));
  const pk = native!.ed25519PublicKey(pub);
  for (const size of [0, 1, 100, 1200, 17000]) {
    const msg = random(size);
    const web = new Uint8Array(await subtle.sign("Ed25519", pair.privateKey, msg));
    const sig = native!.ed25519Sign(sk, msg);
    assert.equal(Object.getPrototypeOf(sig), Uint8Array.prototype, "a plain Uint8Array");
    assert.deepEqual(sig, web, `${size} B`);
    assert.deepEqual(native!.ed25519Sign(seeded, msg), web, "a raw seed signs alike");
    assert.equal(native!.ed25519Verify(pk, msg, web), true);
    assert.equal(await subtle.verify("Ed25519", pair.publicKey, sig, msg), true);
    const bad = sig.slice();
    bad[size % 64]! ^= 1;
    assert.equal(native!.ed25519Verify(pk, msg, bad), false);
    assert.equal(native!.ed25519Verify(pk, msg, sig.subarray(0, 63)), false, "short signature");
    assert.equal(native!.ed25519Verify(pk, msg, new Uint8Array(64)), false, "zero signature");
    if (size > 0) assert.equal(native!.ed25519Verify(pk, msg.subarray(1), sig), false);
  }
  assert.throws(() => native!.ed25519PublicKey(new Uint8Array(7)));
  assert.throws(() => native!.ed25519PrivateKey(new Uint8Array(7)));
});

test("the fast provider's AES-GCM equals the default provider's around every size threshold", async () => {
  const suite = getCiphersuiteFromName(DEFAULT_SUITE);
  const fast = await getCiphersuiteImpl(suite, fastCryptoProvider as unknown as CryptoProvider);
  const slow = await getCiphersuiteImpl(suite, tsMlsDefaultProvider as unknown as CryptoProvider);
  const key = random(16), nonce = random(12), aad = random(40);
  const t = AEAD_NATIVE_MAX.deno;
  for (const size of [0, 95, 96, 97, 2048, 2049, t - 16, t - 15, t, t + 1, t + 17, 16500, 70000]) {
    const pt = random(size);
    const ct = await fast.hpke.encryptAead(key, nonce, aad, pt);
    assert.deepEqual(ct, await slow.hpke.encryptAead(key, nonce, aad, pt), `${size} B`);
    assert.deepEqual(await fast.hpke.decryptAead(key, nonce, aad, ct), pt);
    const bad = ct.slice();
    bad[0]! ^= 1;
    await assert.rejects(fast.hpke.decryptAead(key, nonce, aad, bad));
  }
  await assert.rejects(fast.hpke.decryptAead(key, nonce, aad, new Uint8Array(5)));
  const { signKey, publicKey } = await fast.signature.keygen();
  const msg = random(300);
  const sig = await fast.signature.sign(signKey, msg);
  assert.equal(await slow.signature.verify(publicKey, msg, sig), true);
  assert.equal(await fast.signature.verify(publicKey, msg, sig.subarray(0, 10)), false);
  assert.equal(await fast.signature.verify(new Uint8Array(32).fill(0xff), msg, sig), false);
});

test("the prepared-key cache keeps the most recently used keys", () => {
  let loads = 0;
  const cache = new SyncKeyCache<string>(2, (k) => k);
  const get = (b: number) => cache.get(new Uint8Array([b]), () => `key ${b} ${++loads}`);
  assert.equal(get(1), "key 1 1");
  assert.equal(get(2), "key 2 2");
  assert.equal(get(1), "key 1 1", "a hit");
  assert.equal(get(3), "key 3 3", "evicts 2, the least recently used");
  assert.equal(cache.size, 2);
  assert.equal(get(1), "key 1 1");
  assert.equal(get(2), "key 2 4", "loaded again");
  assert.throws(() =>
    cache.get(new Uint8Array([9]), () => {
      throw new Error("no key");
    })
  );
  assert.equal(cache.size, 2, "a failed load caches nothing");
});

// RFC 4231 test cases 1, 2, 6 (key longer than a block) and 7.
const HMAC_VECTORS = [
  {
    key: "0b".repeat(20),
    data: "4869205468657265",
    mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
  },
  {
    key: "4a656665",
    data: "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
    mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
  },
  {
    key: "aa".repeat(131),
    data: "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a" +
      "65204b6579202d2048617368204b6579204669727374",
    mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
  },
  {
    key: "aa".repeat(131),
    data: "5468697320697320612074657374207573696e672061206c6172676572207468" +
      "616e20626c6f636b2d73697a65206b657920616e642061206c61726765722074" +
      "68616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565" +
      "647320746f20626520686173686564206265666f7265206265696e6720757365" +
      "642062792074686520484d414320616c676f726974686d2e",
    mac: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
  },
];

test("the own SHA-256 and HMAC-SHA256 match RFC 4231 and noble at every length to 300", () => {
  for (const v of HMAC_VECTORS) {
    assert.deepEqual(hmacSha256(unhex(v.key), unhex(v.data)), unhex(v.mac));
  }
  assert.deepEqual(
    ownSha256(new Uint8Array()),
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
  );
  const data = random(300);
  for (const keyLength of [0, 16, 32, 64, 65, 100]) {
    const key = random(keyLength);
    for (let n = 0; n <= data.length; n++) {
      const m = data.subarray(0, n);
      assert.deepEqual(ownSha256(m), nobleSha256(m));
      const cut = n >> 1;
      assert.deepEqual(
        hmacSha256(key, m.subarray(0, cut), m.subarray(cut)),
        hmac(nobleSha256, key, m),
      );
    }
  }
  const big = random(70000);
  assert.deepEqual(ownSha256(big), nobleSha256(big));
});
