/**
 * Agent identity: an Ed25519 key whose `did:key` is the agent's stable id.
 * The key is the MLS signature key of every leaf the agent holds, so the
 * credential's display name is bound to the did by the leaf's own signature:
 * names are labels, dids are authority.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { ValidationError } from "./errors.ts";

/** An agent's identity key pair, in the form ts-mls' Ed25519 signer takes. */
export interface IdentityKey {
  /** The raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** The private key, PKCS#8. */
  readonly signKey: Uint8Array;
}

/** What a member of a channel is: a display name bound to a key. */
export interface Member {
  /** The display name from the MLS credential (a label, not unique across channels). */
  name: string;
  /** The stable id: `did:key:z6Mk…` of the member's Ed25519 identity key. */
  did: string;
  /** A short fingerprint of the key for humans to compare, e.g. `3f2a 9c41 07be 55d1`. */
  fingerprint: string;
}

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/** The multicodec prefix of an Ed25519 public key (0xed, varint). */
const ED25519_PUB = [0xed, 0x01] as const;
const DID_KEY = "did:key:z";

function base58(bytes: Uint8Array): string {
  const digits: number[] = [];
  for (const byte of bytes) {
    let carry = byte;
    for (let i = 0; i < digits.length; i++) {
      carry += digits[i]! << 8;
      digits[i] = carry % 58;
      carry = (carry / 58) | 0;
    }
    while (carry > 0) {
      digits.push(carry % 58);
      carry = (carry / 58) | 0;
    }
  }
  let out = "";
  for (const byte of bytes) {
    if (byte !== 0) break;
    out += "1";
  }
  for (let i = digits.length - 1; i >= 0; i--) out += B58[digits[i]!];
  return out;
}

function unbase58(s: string): Uint8Array | undefined {
  const bytes: number[] = [];
  for (const ch of s) {
    let carry = B58.indexOf(ch);
    if (carry < 0) return undefined;
    for (let i = 0; i < bytes.length; i++) {
      carry += bytes[i]! * 58;
      bytes[i] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) {
      bytes.push(carry & 0xff);
      carry >>= 8;
    }
  }
  for (const ch of s) {
    if (ch !== "1") break;
    bytes.push(0);
  }
  return Uint8Array.from(bytes.reverse());
}

/**
 * The `did:key` of an Ed25519 public key.
 *
 * @param publicKey The raw 32-byte key.
 * @returns `did:key:z6Mk…`.
 * @throws {ValidationError} `invalid_argument` if the key is not 32 bytes.
 */
export function didKey(publicKey: Uint8Array): string {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    throw new ValidationError("invalid_argument", "An Ed25519 public key is 32 bytes");
  }
  return DID_KEY + base58(Uint8Array.of(...ED25519_PUB, ...publicKey));
}

/**
 * The Ed25519 public key of a `did:key`.
 *
 * @param did `did:key:z6Mk…`.
 * @returns The raw 32-byte key.
 * @throws {ValidationError} `invalid_argument` if it is not an Ed25519 `did:key`.
 */
export function didPublicKey(did: string): Uint8Array {
  const bytes = typeof did === "string" && did.startsWith(DID_KEY)
    ? unbase58(did.slice(DID_KEY.length))
    : undefined;
  if (
    bytes === undefined || bytes.length !== 34 || bytes[0] !== ED25519_PUB[0] ||
    bytes[1] !== ED25519_PUB[1]
  ) {
    throw new ValidationError(
      "invalid_argument",
      `Expected an Ed25519 did:key ("did:key:z6Mk…"), got "${String(did).slice(0, 80)}"`,
    );
  }
  return bytes.slice(2);
}

/**
 * A short fingerprint of a key for humans to compare out of band.
 *
 * @param publicKey The raw key.
 * @returns 16 hex digits of its SHA-256 in groups of four.
 */
export function fingerprint(publicKey: Uint8Array): string {
  const h = sha256(publicKey).subarray(0, 8).toHex();
  return h.match(/.{4}/g)!.join(" ");
}

/**
 * Describes a member from its name and key.
 *
 * @param name The display name.
 * @param publicKey The raw public signature key (Ed25519 gives a `did:key`).
 * @returns The member's name, did and fingerprint.
 */
export function memberOf(name: string, publicKey: Uint8Array): Member {
  // Leaves of suites that do not sign with Ed25519 have no did:key; they get a
  // stable id from the key's digest instead.
  const did = publicKey.length === 32
    ? didKey(publicKey)
    : `urn:skytale:key:${sha256(publicKey).toHex()}`;
  return { name, did, fingerprint: fingerprint(publicKey) };
}

/**
 * Signs bytes with an identity key (WebCrypto Ed25519).
 *
 * @param key The key.
 * @param data What to sign.
 * @returns The 64-byte signature.
 */
export async function signWith(key: IdentityKey, data: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "pkcs8",
    key.signKey as BufferSource,
    "Ed25519",
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("Ed25519", k, data as BufferSource));
}

/** The version byte of an encoded identity key. */
const KEY_VERSION = 1;

/**
 * Serialises an identity key for storage (it holds the private key).
 *
 * @param key The key.
 * @returns Versioned bytes for {@linkcode decodeIdentityKey}.
 */
export function encodeIdentityKey(key: IdentityKey): Uint8Array {
  return Uint8Array.of(KEY_VERSION, ...key.publicKey, ...key.signKey);
}

/**
 * Restores an identity key from {@linkcode encodeIdentityKey} bytes.
 *
 * @param b The bytes.
 * @returns The key, or `undefined` if the bytes are not one.
 */
export function decodeIdentityKey(b: Uint8Array): IdentityKey | undefined {
  if (b.length < 34 || b[0] !== KEY_VERSION) return undefined;
  return { publicKey: b.slice(1, 33), signKey: b.slice(33) };
}
