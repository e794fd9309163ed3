/**
 * Boxes sealed to one party with HPKE (RFC 9180, base mode, single shot):
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, the HPKE of the
 * default MLS ciphersuite, run by the same provider.
 *
 * A box for an agent is sealed to the X25519 form of its Ed25519 identity
 * key, so knowing an agent's `did:key` is enough to seal to it; only the
 * holder of the identity key opens it (through
 * `SkytaleChannelManager.openSealed`, which keeps the key inside the
 * manager). A box for a short-lived party is sealed to a fresh X25519 key
 * made by {@linkcode newBoxKey}. Box layout: `enc` (32 bytes) then the
 * ciphertext (with its 16-byte tag).
 *
 * The Ed25519 key is used for signing (MLS) and, converted, for this key
 * agreement: the conversion is the birational map libsodium and `age` use,
 * and HPKE's `info` separates every use made here.
 *
 * A box costs an X25519 key agreement (about 0.5–1 ms under Deno), so a
 * party that sends many messages to one peer seals a random session key in
 * one box and encrypts each message with it ({@linkcode sealWithKey}, about
 * 10 µs), with a nonce it never repeats under that key.
 *
 * @module
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import {
  type CiphersuiteImpl,
  type CryptoProvider,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
} from "ts-mls";
import { CryptoError, ValidationError } from "./errors.ts";
import { didPublicKey, type IdentityKey } from "./identity.ts";
import { fastCryptoProvider } from "./mls/provider.ts";

/** Length of the HPKE `enc` (an X25519 public key) at the start of a box. */
export const ENC_BYTES = 32;
/** Bytes a box adds to its plaintext: `enc` and the AEAD tag. */
export const BOX_OVERHEAD = ENC_BYTES + 16;

type Hpke = CiphersuiteImpl["hpke"];
type PrivateKey = Awaited<ReturnType<Hpke["importPrivateKey"]>>;
type PublicKey = Awaited<ReturnType<Hpke["importPublicKey"]>>;

let hpkeP: Promise<Hpke> | undefined;

/** The HPKE suite (X25519, HKDF-SHA256, AES-128-GCM), built once. */
function hpke(): Promise<Hpke> {
  hpkeP ??= getCiphersuiteImpl(
    getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"),
    fastCryptoProvider as unknown as CryptoProvider,
  ).then((cs) => cs.hpke);
  return hpkeP;
}

/** A private key that opens boxes, as the HPKE suite holds it. */
export type BoxPrivateKey = PrivateKey;
/** A public key to seal boxes to, as the HPKE suite holds it. */
export type BoxPublicKey = PublicKey;

/**
 * The X25519 public key that boxes for a `did:key` are sealed to.
 *
 * @param did The agent's `did:key:z6Mk…`.
 * @returns The raw 32-byte X25519 key.
 * @throws {ValidationError} `invalid_argument` if it is not an Ed25519 `did:key`.
 */
export function didBoxKey(did: string): Uint8Array {
  try {
    return ed25519.utils.toMontgomery(didPublicKey(did));
  } catch (e) {
    if (e instanceof ValidationError) throw e;
    throw new ValidationError("invalid_argument", `"${did.slice(0, 80)}" is not a usable key`, {
      cause: e,
    });
  }
}

/** The 32-byte seed of an Ed25519 private key, raw or PKCS#8 (RFC 8410). */
function ed25519Seed(signKey: Uint8Array): Uint8Array {
  if (signKey.length === 32) return signKey;
  if (signKey.length === 64) return signKey.subarray(0, 32); // seed || public key
  // PKCS#8: SEQUENCE { 0, { id-Ed25519 }, OCTET STRING { OCTET STRING (32) } }
  const prefix = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04];
  if (signKey.length === 48 && prefix.every((b, i) => signKey[i] === b)) {
    return signKey.subarray(16);
  }
  throw new ValidationError("invalid_argument", "The identity key is not an Ed25519 key");
}

/**
 * The private key that opens boxes sealed to an identity's did.
 *
 * @param key The agent's identity key.
 * @returns The key, ready for {@linkcode openBox}.
 */
export async function identityBoxKey(key: IdentityKey): Promise<BoxPrivateKey> {
  const secret = ed25519.utils.toMontgomerySecret(ed25519Seed(key.signKey));
  return await (await hpke()).importPrivateKey(secret);
}

/**
 * A fresh X25519 key pair for boxes to a short-lived party (e.g. one session).
 *
 * @returns The private key and the raw public key to hand out.
 */
export async function newBoxKey(): Promise<{ privateKey: BoxPrivateKey; publicKey: Uint8Array }> {
  const h = await hpke();
  const pair = await h.generateKeyPair();
  return { privateKey: pair.privateKey, publicKey: await h.exportPublicKey(pair.publicKey) };
}

/**
 * Prepares a raw X25519 public key for {@linkcode sealBox}.
 *
 * @param raw The 32-byte key.
 * @returns The key.
 * @throws {ValidationError} `invalid_argument` if it is not a key.
 */
export async function boxPublicKey(raw: Uint8Array): Promise<BoxPublicKey> {
  if (raw.length !== 32) {
    throw new ValidationError("invalid_argument", "An X25519 public key is 32 bytes");
  }
  try {
    return await (await hpke()).importPublicKey(raw);
  } catch (e) {
    throw new ValidationError("invalid_argument", "Not an X25519 public key", { cause: e });
  }
}

/**
 * Seals a plaintext to a public key.
 *
 * @param to The recipient's key (raw 32 bytes, or prepared by {@linkcode boxPublicKey}).
 * @param plaintext The plaintext.
 * @param info HPKE `info`: what the box is for.
 * @param aad Data the box is bound to without carrying it.
 * @returns `enc || ciphertext`.
 */
export async function sealBox(
  to: Uint8Array | BoxPublicKey,
  plaintext: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  const key = to instanceof Uint8Array ? await boxPublicKey(to) : to;
  const { enc, ct } = await (await hpke()).seal(key, plaintext, info, aad);
  const out = new Uint8Array(enc.length + ct.length);
  out.set(enc);
  out.set(ct, enc.length);
  return out;
}

/**
 * Opens a box.
 *
 * @param key The recipient's private key.
 * @param box `enc || ciphertext`.
 * @param info The HPKE `info` it was sealed with.
 * @param aad The data it was bound to.
 * @returns The plaintext.
 * @throws {CryptoError} `invalid_message` if it was not sealed to this key with this `info` and `aad`.
 */
export async function openBox(
  key: BoxPrivateKey,
  box: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  if (box.length < BOX_OVERHEAD) {
    throw new CryptoError("invalid_message", `A sealed box is at least ${BOX_OVERHEAD} bytes`);
  }
  try {
    return await (await hpke()).open(
      key,
      box.subarray(0, ENC_BYTES),
      box.subarray(ENC_BYTES),
      info,
      aad,
    );
  } catch (e) {
    throw new CryptoError("invalid_message", "Could not open a sealed box", { cause: e });
  }
}

/** Bytes of a session key for {@linkcode sealWithKey} (AES-128-GCM). */
export const SESSION_KEY_BYTES = 16;
/** Bytes of an AES-GCM nonce. */
export const NONCE_BYTES = 12;
/** Bytes {@linkcode sealWithKey} adds to its plaintext (the AEAD tag). */
export const TAG_BYTES = 16;

/**
 * A fresh random session key for {@linkcode sealWithKey}.
 *
 * @returns 16 random bytes.
 */
export function newSessionKey(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(SESSION_KEY_BYTES));
}

/**
 * Encrypts with a session key (AES-128-GCM, the AEAD of the HPKE suite, run by
 * the same provider: native and synchronous where the runtime has it). The
 * caller owns nonce uniqueness: never two plaintexts under one key and nonce.
 *
 * @param key A key from {@linkcode newSessionKey} (passed to the peer in a sealed box).
 * @param nonce 12 bytes, unique per key.
 * @param plaintext The plaintext.
 * @param aad Data the ciphertext is bound to without carrying it.
 * @returns The ciphertext with its 16-byte tag.
 */
export async function sealWithKey(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  return await (await hpke()).encryptAead(key, nonce, aad, plaintext);
}

/**
 * Decrypts what {@linkcode sealWithKey} made.
 *
 * @param key The session key.
 * @param nonce The nonce it was sealed with.
 * @param ciphertext The ciphertext with its tag.
 * @param aad The data it was bound to.
 * @returns The plaintext.
 * @throws {CryptoError} `invalid_message` if the key, nonce, aad or ciphertext do not match.
 */
export async function openWithKey(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  if (key.length !== SESSION_KEY_BYTES || ciphertext.length < TAG_BYTES) {
    throw new CryptoError("invalid_message", "Not a session-key ciphertext");
  }
  try {
    return await (await hpke()).decryptAead(key, nonce, aad, ciphertext);
  } catch (e) {
    throw new CryptoError("invalid_message", "Could not open a session-key ciphertext", {
      cause: e,
    });
  }
}
