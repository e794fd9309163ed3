/**
 * A fast ts-mls crypto provider. It produces the same bytes as ts-mls'
 * default provider (the interop vectors and mixed-provider groups in the tests
 * prove it) but avoids its per-call costs:
 *
 * - Ed25519 signs and verifies synchronously with `node:crypto` where the
 *   runtime has it (Deno, Node, Bun; keys prepared once and cached), else
 *   through WebCrypto with imported keys cached (bounded, least recently used
 *   first out), instead of an import on every call;
 * - HKDF, HMAC and hashes of small inputs run synchronously (SHA-256 with our
 *   own allocation-free code in `_sha256.ts`, about 3× faster than
 *   `@noble/hashes` for the short HMACs of the secret tree; other hashes with
 *   `@noble/hashes`) instead of through async WebCrypto (a fresh `importKey`
 *   per HMAC);
 * - AES-GCM runs synchronously with `node:crypto` (native, no key schedule or
 *   GHASH tables built in JavaScript for MLS' single-use message keys), except
 *   on Deno above {@linkcode AEAD_NATIVE_MAX}, where it is composed of Deno's
 *   much faster native AES-ECB and GMAC (`_gcm.ts`); without `node:crypto`,
 *   `@noble/ciphers` below {@linkcode AEAD_NOBLE_MAX} and WebCrypto above.
 *
 * HPKE (commits, Welcome) and everything of other signature schemes stay with
 * ts-mls' default implementation.
 *
 * @module
 */
import { type Ciphersuite, type CiphersuiteImpl, defaultCryptoProvider } from "ts-mls";
import type { MlsCryptoProvider } from "./types.ts";
import { CryptoError as MlsCryptoError } from "ts-mls/mlsError.js";
import { gcm } from "@noble/ciphers/aes.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import type { CHash } from "@noble/hashes/utils.js";
import { KeyCache, SyncKeyCache } from "./_keyCache.ts";
import { hmacSha256, sha256 as jsSha256 } from "./_sha256.ts";
import { gcmOpen, gcmSeal } from "./_gcm.ts";
import { ed25519Pkcs8 } from "./_pkcs8.ts";
import type { NativeCrypto, NativeEd25519Key } from "../runtime/native_crypto.ts";
import { runtime } from "../runtime/env.ts";
import { timingSafeEqual } from "../_util.ts";

/**
 * Largest plaintext/ciphertext (bytes) that AES-GCM encrypts with `node:crypto`'s
 * AES-GCM per runtime; larger ones are composed of its AES-ECB and GMAC
 * (`_gcm.ts`), or go to WebCrypto where those are missing. Measured on a
 * 2-core x86-64 machine (fresh key, 40-byte AAD, best of 6 runs): Deno 2.9's
 * AES-GCM costs about 4 µs + 5.5 µs/KiB (10 µs at 1 KiB, 26 µs at 4 KiB,
 * 90–96 µs at 16 KiB, 175–186 µs at 32 KiB), the composition about 12 µs +
 * 2.8 µs/KiB (18, 27–29, 59–64 and 103–108 µs), WebCrypto import + encrypt
 * about 18 µs + 2–7 µs/KiB plus a thread hop; Node 26 (4 µs at 1 KiB, 12 µs at
 * 16 KiB) and Bun 1.4 (2 µs, 4.5 µs) stay ahead of both at every size.
 */
export const AEAD_NATIVE_MAX = { deno: 4096, node: Infinity, bun: Infinity } as const;
/** The type of {@linkcode AEAD_NATIVE_MAX}. */
export type AEAD_NATIVE_MAX = typeof AEAD_NATIVE_MAX;

/**
 * Largest plaintext/ciphertext (bytes) that AES-GCM encrypts with
 * `@noble/ciphers`; larger ones go to WebCrypto. Measured per runtime on a
 * 2-core x86-64 machine (encrypt, fresh key, 40-byte AAD):
 * Deno 2.9 / Node 26: noble 15 µs (16 B), 30 µs (1 KiB), 75 µs (4 KiB) against
 * WebCrypto import + encrypt ≈ 50–55 µs flat up to 4 KiB; Bun 1.4 (JavaScriptCore):
 * noble 20 µs (16 B), 80 µs (1 KiB) against WebCrypto 30–45 µs.
 */
export const AEAD_NOBLE_MAX = { v8: 2048, jsc: 96 } as const;
/** The type of {@linkcode AEAD_NOBLE_MAX}. */
export type AEAD_NOBLE_MAX = typeof AEAD_NOBLE_MAX;

/**
 * Largest input (bytes) hashed or MACed with `@noble/hashes`; larger ones go
 * to WebCrypto (noble SHA-256 ≈ 4.3 µs/KiB, WebCrypto ≈ 30 µs + 0.7 µs/KiB).
 */
export const HASH_NOBLE_MAX = 8192;

/** How many signing and how many verification keys stay imported. */
export const SIGNATURE_KEY_CACHE_SIZE = 1024;

const subtle = globalThis.crypto.subtle;

/** JavaScriptCore (Bun) has a slower noble AES than V8 (Deno, Node). */
function aeadNobleMax(): number {
  return runtime === "bun" ? AEAD_NOBLE_MAX.jsc : AEAD_NOBLE_MAX.v8;
}

/** Largest AES-GCM input for `node:crypto` on this runtime (-1: none). */
function aeadNativeMax(native: NativeCrypto | undefined): number {
  if (native === undefined) return -1;
  return AEAD_NATIVE_MAX[runtime];
}

type NobleHash = CHash;

function nobleHash(h: Ciphersuite["hash"]): NobleHash {
  switch (h) {
    case "SHA-256":
      return sha256;
    case "SHA-384":
      return sha384;
    case "SHA-512":
      return sha512;
  }
}

/** A view WebCrypto accepts under every runtime's typings (no SharedArrayBuffer). */
function bs(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b as Uint8Array<ArrayBuffer>;
}

function makeHash(alg: Ciphersuite["hash"]): CiphersuiteImpl["hash"] {
  const h = nobleHash(alg);
  const own = alg === "SHA-256";
  const mac = async (key: Uint8Array, data: Uint8Array): Promise<Uint8Array> => {
    if (data.length <= HASH_NOBLE_MAX) return own ? hmacSha256(key, data) : hmac(h, key, data);
    const k = await subtle.importKey("raw", bs(key), { name: "HMAC", hash: alg }, false, [
      "sign",
    ]);
    return new Uint8Array(await subtle.sign("HMAC", k, bs(data)));
  };
  return {
    async digest(data) {
      if (data.length <= HASH_NOBLE_MAX) return own ? jsSha256(data) : h(data);
      return new Uint8Array(await subtle.digest(alg, bs(data)));
    },
    mac,
    async verifyMac(key, tag, data) {
      return timingSafeEqual(tag, await mac(key, data));
    },
  };
}

function makeKdf(alg: Ciphersuite["hash"]): CiphersuiteImpl["kdf"] {
  const h = nobleHash(alg);
  if (alg === "SHA-256") {
    return {
      // deno-lint-ignore require-await
      async extract(salt, ikm) {
        return hmacSha256(salt, ikm);
      },
      // deno-lint-ignore require-await
      async expand(prk, info, len) {
        return expandSha256(prk, info, len);
      },
      size: 32,
    };
  }
  return {
    // deno-lint-ignore require-await
    async extract(salt, ikm) {
      return extract(h, ikm, salt);
    },
    // deno-lint-ignore require-await
    async expand(prk, info, len) {
      return len <= h.outputLen && len > 0
        ? expandOneBlock(h, prk, info, len)
        : expand(h, prk, info, len);
    },
    size: h.outputLen,
  };
}

/**
 * HKDF-Expand (RFC 5869) with HMAC-SHA256: T(i) = HMAC(prk, T(i-1) || info || i).
 * Most MLS derivations need one block (at most 32 bytes).
 */
function expandSha256(prk: Uint8Array, info: Uint8Array, len: number): Uint8Array {
  if (!Number.isInteger(len) || len < 0 || len > 255 * 32) {
    throw new RangeError(`Invalid HKDF output length "${len}"`);
  }
  if (len === 32) return hmacSha256(prk, info, ONE);
  const out = new Uint8Array(len);
  const counter = new Uint8Array(1);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 0, off = 0; off < len; i++, off += 32) {
    counter[0] = i + 1;
    const next = hmacSha256(prk, t, info, counter);
    t.fill(0);
    t = next;
    out.set(len - off >= 32 ? t : t.subarray(0, len - off), off);
  }
  t.fill(0);
  return out;
}

const ONE = new Uint8Array([1]);

/**
 * HKDF-Expand for outputs of at most one hash block: T(1) = HMAC(prk, info || 0x01),
 * computed without the generic multi-block machinery (about twice as fast
 * for MLS' many 12 to 64-byte derivations).
 */
function expandOneBlock(h: NobleHash, prk: Uint8Array, info: Uint8Array, len: number): Uint8Array {
  const bl = h.blockLen;
  const pad = new Uint8Array(bl);
  pad.set(prk.length > bl ? h(prk) : prk);
  for (let i = 0; i < bl; i++) pad[i]! ^= 0x36;
  const inner = h.create().update(pad).update(info).update(ONE).digest();
  for (let i = 0; i < bl; i++) pad[i]! ^= 0x36 ^ 0x5c;
  const out = h.create().update(pad).update(inner).digest();
  pad.fill(0);
  inner.fill(0);
  if (len === out.length) return out;
  const r = out.slice(0, len);
  out.fill(0);
  return r;
}

const EMPTY = new Uint8Array(0);

type Aead = Pick<CiphersuiteImpl["hpke"], "encryptAead" | "decryptAead">;

function makeAesGcm(native: NativeCrypto | undefined): Aead {
  const nativeMax = aeadNativeMax(native);
  const nobleMax = aeadNobleMax();
  const params = (nonce: Uint8Array, aad: Uint8Array | undefined): AesGcmParams =>
    aad === undefined || aad.length === 0
      ? { name: "AES-GCM", iv: bs(nonce) }
      : { name: "AES-GCM", iv: bs(nonce), additionalData: bs(aad) };
  return {
    async encryptAead(key, nonce, aad, plaintext) {
      if (plaintext.length <= nativeMax && native!.aesGcmSupports(key.length)) {
        return native!.aesGcmEncrypt(key, nonce, aad, plaintext);
      }
      if (native?.aesEcbSupports(key.length)) {
        return gcmSeal(native, key, nonce, aad ?? EMPTY, plaintext);
      }
      if (plaintext.length <= nobleMax) return gcm(key, nonce, aad).encrypt(plaintext);
      const k = await subtle.importKey("raw", bs(key), "AES-GCM", false, ["encrypt"]);
      return new Uint8Array(await subtle.encrypt(params(nonce, aad), k, bs(plaintext)));
    },
    async decryptAead(key, nonce, aad, ciphertext) {
      try {
        if (ciphertext.length <= nativeMax && native!.aesGcmSupports(key.length)) {
          return native!.aesGcmDecrypt(key, nonce, aad, ciphertext);
        }
        if (native?.aesEcbSupports(key.length)) {
          return gcmOpen(native, key, nonce, aad ?? EMPTY, ciphertext);
        }
        if (ciphertext.length <= nobleMax) return gcm(key, nonce, aad).decrypt(ciphertext);
        const k = await subtle.importKey("raw", bs(key), "AES-GCM", false, ["decrypt"]);
        return new Uint8Array(await subtle.decrypt(params(nonce, aad), k, bs(ciphertext)));
      } catch (e) {
        // The error ts-mls' default provider throws for a failed decryption.
        throw new MlsCryptoError(`${e}`);
      }
    },
  };
}

function makeChaCha(): Aead {
  return {
    // deno-lint-ignore require-await
    async encryptAead(key, nonce, aad, plaintext) {
      return chacha20poly1305(key, nonce, aad).encrypt(plaintext);
    },
    // deno-lint-ignore require-await
    async decryptAead(key, nonce, aad, ciphertext) {
      try {
        return chacha20poly1305(key, nonce, aad).decrypt(ciphertext);
      } catch (e) {
        throw new MlsCryptoError(`${e}`);
      }
    },
  };
}

function makeEd25519(): CiphersuiteImpl["signature"] {
  // Private keys are cached under a digest of their bytes, so no copy of the
  // secret lives on as a string; public keys under their hex.
  const signKeys = new KeyCache(SIGNATURE_KEY_CACHE_SIZE, (k) => sha256(k));
  const verifyKeys = new KeyCache(SIGNATURE_KEY_CACHE_SIZE, (k) => k);
  return {
    async sign(signKey, message) {
      const key = await signKeys.get(
        signKey,
        () => subtle.importKey("pkcs8", bs(ed25519Pkcs8(signKey)), "Ed25519", false, ["sign"]),
      );
      return new Uint8Array(await subtle.sign("Ed25519", key, bs(message)));
    },
    async verify(publicKey, message, signature) {
      let key: CryptoKey;
      try {
        key = await verifyKeys.get(
          publicKey,
          () => subtle.importKey("raw", bs(publicKey), "Ed25519", false, ["verify"]),
        );
      } catch {
        return false;
      }
      return await subtle.verify("Ed25519", key, bs(signature), bs(message));
    },
    async keygen() {
      const pair = await subtle.generateKey("Ed25519", true, ["sign", "verify"]) as CryptoKeyPair;
      const publicKey = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
      // PKCS#8, as ts-mls' default provider makes them: stored state stays
      // readable by either provider.
      const signKey = new Uint8Array(await subtle.exportKey("pkcs8", pair.privateKey));
      return { publicKey, signKey };
    },
  };
}

/** Ed25519 through synchronous `node:crypto`, prepared keys cached. */
function makeNativeEd25519(
  native: NativeCrypto,
  keygen: CiphersuiteImpl["signature"]["keygen"],
): CiphersuiteImpl["signature"] {
  const signKeys = new SyncKeyCache<NativeEd25519Key>(SIGNATURE_KEY_CACHE_SIZE, jsSha256);
  const verifyKeys = new SyncKeyCache<NativeEd25519Key>(SIGNATURE_KEY_CACHE_SIZE, (k) => k);
  return {
    // deno-lint-ignore require-await
    async sign(signKey, message) {
      const key = signKeys.get(signKey, () => native.ed25519PrivateKey(signKey));
      return native.ed25519Sign(key, message);
    },
    // deno-lint-ignore require-await
    async verify(publicKey, message, signature) {
      let key: NativeEd25519Key;
      try {
        key = verifyKeys.get(publicKey, () => native.ed25519PublicKey(publicKey));
      } catch {
        return false;
      }
      return native.ed25519Verify(key, message, signature);
    },
    keygen,
  };
}

let nativeP: Promise<NativeCrypto | undefined> | undefined;

/**
 * Synchronous `node:crypto`, loaded by dynamic import on first use (where it
 * exists): this module is in the SDK's static graph, which loads in a browser
 * too, and there the import fails and WebCrypto and noble do the work.
 */
function loadNativeCrypto(): Promise<NativeCrypto | undefined> {
  nativeP ??= import("../runtime/native_crypto.ts").then((m) => m.nativeCrypto, () => undefined);
  return nativeP;
}

async function makeImpl(cs: Ciphersuite): Promise<CiphersuiteImpl> {
  const base = await defaultCryptoProvider.getCiphersuiteImpl(cs);
  const native = await loadNativeCrypto();
  const aead = cs.hpke.aead === "CHACHA20POLY1305" ? makeChaCha() : makeAesGcm(native);
  let signature = base.signature;
  if (cs.signature === "Ed25519" && typeof subtle?.importKey === "function") {
    const web = makeEd25519();
    signature = native === undefined ? web : makeNativeEd25519(native, web.keygen);
  }
  return {
    name: cs.name,
    hash: makeHash(cs.hash),
    kdf: makeKdf(kdfHash(cs)),
    signature,
    hpke: { ...base.hpke, ...aead },
    rng: base.rng,
  };
}

function kdfHash(cs: Ciphersuite): Ciphersuite["hash"] {
  switch (cs.hpke.kdf) {
    case "HKDF-SHA256":
      return "SHA-256";
    case "HKDF-SHA384":
      return "SHA-384";
    case "HKDF-SHA512":
      return "SHA-512";
  }
}

const impls = new Map<string, Promise<CiphersuiteImpl>>();

function getImpl(cs: Ciphersuite): Promise<CiphersuiteImpl> {
  let p = impls.get(cs.name);
  if (p === undefined) {
    p = makeImpl(cs);
    impls.set(cs.name, p);
    p.catch(() => impls.delete(cs.name));
  }
  return p;
}

/**
 * The fast provider (the `MlsEngine` default), a ts-mls `CryptoProvider`. Implementations are
 * built once per ciphersuite and shared, so their key caches are too.
 *
 * @example
 * ```ts
 * import { MlsEngine } from "./engine.ts";
 * import { fastCryptoProvider } from "./provider.ts";
 * const mls = await MlsEngine.create(undefined, { provider: fastCryptoProvider });
 * ```
 */
export const fastCryptoProvider: MlsCryptoProvider = {
  getCiphersuiteImpl: getImpl as unknown as MlsCryptoProvider["getCiphersuiteImpl"],
};

/**
 * ts-mls' own default provider (its `defaultCryptoProvider`) (WebCrypto and `@hpke/core`, keys imported per
 * call), for comparison in benchmarks and interop tests.
 *
 * @example
 * ```ts
 * import { MlsEngine } from "./engine.ts";
 * import { tsMlsDefaultProvider } from "./provider.ts";
 * const slow = await MlsEngine.create(undefined, { provider: tsMlsDefaultProvider });
 * ```
 */
export const tsMlsDefaultProvider: MlsCryptoProvider = defaultCryptoProvider as MlsCryptoProvider;
