/**
 * Synchronous native crypto from `node:crypto` (which Deno, Node and Bun all
 * provide), so MLS code never imports `node:*` itself. Every call runs on the
 * calling thread: no promise, no hop through WebCrypto's thread pool, which
 * on Node costs more than the operation itself for one small message.
 *
 * {@linkcode nativeCrypto} is `undefined` where `node:crypto` lacks what is
 * needed (callers then use WebCrypto or pure JavaScript).
 *
 * @module
 */
import * as nc from "node:crypto";
import { ed25519Pkcs8 } from "../mls/_pkcs8.ts";

export { ed25519Pkcs8 };

/** An Ed25519 key prepared once for repeated signing or verification. */
export type NativeEd25519Key = nc.KeyObject;

/** AES-GCM (16-byte tags) and Ed25519, synchronous. */
export interface NativeCrypto {
  /**
   * Whether AES-GCM takes keys of this length here (Deno's `node:crypto` has
   * no AES-192-GCM).
   *
   * @param keyLength The key length in bytes.
   * @returns Whether {@linkcode NativeCrypto.aesGcmEncrypt} and `aesGcmDecrypt` accept such keys.
   */
  aesGcmSupports(keyLength: number): boolean;
  /**
   * AES-GCM encryption.
   *
   * @param key 16, 24 or 32 bytes (AES-128, -192, -256), as {@linkcode NativeCrypto.aesGcmSupports} allows.
   * @param nonce The nonce (12 bytes in MLS).
   * @param aad Additional authenticated data, if any.
   * @param plaintext The plaintext.
   * @returns The ciphertext followed by its 16-byte tag.
   */
  aesGcmEncrypt(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array | undefined,
    plaintext: Uint8Array,
  ): Uint8Array;
  /**
   * AES-GCM decryption.
   *
   * @param key 16, 24 or 32 bytes.
   * @param nonce The nonce.
   * @param aad Additional authenticated data, if any.
   * @param ciphertext The ciphertext followed by its 16-byte tag.
   * @returns The plaintext; throws if the input is shorter than a tag or the tag does not match.
   */
  aesGcmDecrypt(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array | undefined,
    ciphertext: Uint8Array,
  ): Uint8Array;
  /**
   * Whether AES-ECB (and GMAC) take keys of this length here.
   *
   * @param keyLength The key length in bytes.
   * @returns Whether {@linkcode NativeCrypto.aesEcbEncrypt} and `aesGmac` accept such keys.
   */
  aesEcbSupports(keyLength: number): boolean;
  /**
   * AES-ECB encryption of whole blocks, no padding (for `src/mls/_gcm.ts`).
   *
   * @param key 16, 24 or 32 bytes, as {@linkcode NativeCrypto.aesEcbSupports} allows.
   * @param blocks A multiple of 16 bytes.
   * @returns The encrypted blocks, in a fresh buffer.
   */
  aesEcbEncrypt(key: Uint8Array, blocks: Uint8Array): Uint8Array;
  /**
   * GMAC: AES-GCM's tag over associated data only (empty plaintext).
   *
   * @param key 16, 24 or 32 bytes, as {@linkcode NativeCrypto.aesEcbSupports} allows.
   * @param nonce The nonce (12 bytes in MLS).
   * @param aad The associated data.
   * @returns The 16-byte tag.
   */
  aesGmac(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array): Uint8Array;
  /**
   * Prepares an Ed25519 private key.
   *
   * @param key A PKCS#8 DER private key, or a raw 32-byte seed.
   * @returns The prepared key; throws if the bytes are no Ed25519 private key.
   */
  ed25519PrivateKey(key: Uint8Array): NativeEd25519Key;
  /**
   * Prepares an Ed25519 public key.
   *
   * @param key The raw 32-byte public key.
   * @returns The prepared key; throws if the bytes are no Ed25519 public key.
   */
  ed25519PublicKey(key: Uint8Array): NativeEd25519Key;
  /**
   * Ed25519 signature (RFC 8032, pure).
   *
   * @param key A key from {@linkcode NativeCrypto.ed25519PrivateKey}.
   * @param message The message.
   * @returns The 64-byte signature.
   */
  ed25519Sign(key: NativeEd25519Key, message: Uint8Array): Uint8Array;
  /**
   * Ed25519 verification.
   *
   * @param key A key from {@linkcode NativeCrypto.ed25519PublicKey}.
   * @param message The message.
   * @param signature The signature.
   * @returns Whether the signature is valid; `false` (never a throw) for malformed signatures.
   */
  ed25519Verify(key: NativeEd25519Key, message: Uint8Array, signature: Uint8Array): boolean;
}

const TAG = 16;

function aesName<M extends "gcm" | "ecb">(key: Uint8Array, mode: M): `aes-${128 | 192 | 256}-${M}` {
  switch (key.length) {
    case 16:
      return `aes-128-${mode}`;
    case 24:
      return `aes-192-${mode}`;
    case 32:
      return `aes-256-${mode}`;
  }
  throw new RangeError(`Invalid AES key length "${key.length}"`);
}

function gcmName(key: Uint8Array): `aes-${128 | 192 | 256}-gcm` {
  return aesName(key, "gcm");
}

/** Copies Buffers into one plain Uint8Array (not a view of a shared Buffer pool). */
function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** The AES half of {@linkcode NativeCrypto}, or `undefined` without AES-128-GCM. */
function makeAes(): Omit<NativeCrypto, `ed25519${string}`> | undefined {
  const supported = new Set<number>();
  const ecb = new Set<number>();
  for (const len of [16, 24, 32]) {
    try {
      nc.createCipheriv(gcmName(new Uint8Array(len)), new Uint8Array(len), new Uint8Array(12));
      supported.add(len);
      nc.createCipheriv(aesName(new Uint8Array(len), "ecb"), new Uint8Array(len), null);
      ecb.add(len);
    } catch {
      // not on this runtime
    }
  }
  if (!supported.has(16)) return undefined;
  return {
    aesGcmSupports(keyLength) {
      return supported.has(keyLength);
    },
    aesGcmEncrypt(key, nonce, aad, plaintext) {
      const c = nc.createCipheriv(gcmName(key), key, nonce, { authTagLength: TAG });
      if (aad !== undefined && aad.length > 0) c.setAAD(aad);
      const body = c.update(plaintext);
      const rest = c.final();
      const tag = c.getAuthTag();
      return concat([body, rest, tag], body.length + rest.length + TAG);
    },
    aesGcmDecrypt(key, nonce, aad, ciphertext) {
      if (ciphertext.length < TAG) throw new RangeError("Ciphertext shorter than its tag");
      const end = ciphertext.length - TAG;
      const d = nc.createDecipheriv(gcmName(key), key, nonce, { authTagLength: TAG });
      d.setAuthTag(ciphertext.subarray(end));
      if (aad !== undefined && aad.length > 0) d.setAAD(aad);
      const body = d.update(ciphertext.subarray(0, end));
      const rest = d.final(); // throws when the tag does not match
      return concat([body, rest], body.length + rest.length);
    },
    aesEcbSupports(keyLength) {
      return ecb.has(keyLength);
    },
    aesEcbEncrypt(key, blocks) {
      if (blocks.length % 16 !== 0) throw new RangeError("AES-ECB input is not whole blocks");
      const c = nc.createCipheriv(aesName(key, "ecb"), key, null);
      c.setAutoPadding(false);
      const body = c.update(blocks);
      const rest = c.final();
      return rest.length === 0 && body.length === blocks.length
        ? new Uint8Array(body.buffer, body.byteOffset, body.length)
        : concat([body, rest], body.length + rest.length);
    },
    aesGmac(key, nonce, aad) {
      const c = nc.createCipheriv(gcmName(key), key, nonce, { authTagLength: TAG });
      if (aad.length > 0) c.setAAD(aad);
      c.final();
      return concat([c.getAuthTag()], TAG);
    },
  };
}

function make(): NativeCrypto | undefined {
  if (
    typeof nc.createCipheriv !== "function" || typeof nc.createDecipheriv !== "function" ||
    typeof nc.sign !== "function" || typeof nc.verify !== "function" ||
    typeof nc.createPrivateKey !== "function" || typeof nc.createPublicKey !== "function"
  ) return undefined;
  const aes = makeAes();
  if (aes === undefined) return undefined;
  return {
    ...aes,
    ed25519PrivateKey(key) {
      const der = ed25519Pkcs8(key);
      const k = nc.createPrivateKey({ key: der as Buffer, format: "der", type: "pkcs8" });
      if (k.asymmetricKeyType !== "ed25519") throw new TypeError("Not an Ed25519 private key");
      return k;
    },
    ed25519PublicKey(key) {
      if (key.length !== 32) {
        throw new RangeError(`Invalid Ed25519 public key length "${key.length}"`);
      }
      let x = "";
      for (let i = 0; i < key.length; i++) x += String.fromCharCode(key[i]!);
      const jwk = {
        kty: "OKP",
        crv: "Ed25519",
        x: btoa(x).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
      };
      return nc.createPublicKey({ key: jwk, format: "jwk" });
    },
    ed25519Sign(key, message) {
      const s = nc.sign(null, message, key);
      return concat([s], s.length);
    },
    ed25519Verify(key, message, signature) {
      if (signature.length !== 64) return false;
      try {
        return nc.verify(null, message, key, signature);
      } catch {
        return false;
      }
    },
  };
}

/** Synchronous native AES-GCM and Ed25519, or `undefined` where the runtime lacks them. */
export const nativeCrypto: NativeCrypto | undefined = make();
