/**
 * Key packages and joining: making an identity's key packages, reading those
 * of others (a new member's, for an Add), and joining a group from a Welcome
 * with one of one's own.
 *
 * @module
 */
import {
  type ClientState,
  defaultCapabilities,
  defaultLifetime,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage as tsGenerateKeyPackage,
  generateKeyPackageWithKey,
  joinGroup,
  type KeyPackage,
} from "ts-mls";
import { makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { errorMessage, timingSafeEqual } from "../_util.ts";
import { CryptoError, StateError, ValidationError } from "../errors.ts";
import type { IdentityKey, Member } from "../identity.ts";
import { leafOf, memberOfLeaf } from "./_rules.ts";
import {
  decodeKeyPackageBytes,
  decodePrivateKeyPackage,
  decodeWhole,
  encodePrivateKeyPackage,
} from "./_codec.ts";
import { type Group, wrapGroup } from "./group.ts";
import type { Suite } from "./_suite.ts";
import type { KeyPackageBundle } from "./types.ts";

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/**
 * An identity as a basic credential may carry it.
 *
 * @param identity The value.
 * @returns The identity.
 * @throws {ValidationError} `invalid_argument` if it is no string of 1 to 255 characters.
 */
export function checkIdentity(identity: unknown): string {
  if (typeof identity !== "string" || identity.length === 0 || identity.length > 255) {
    throw new ValidationError(
      "invalid_argument",
      `Identity must be a non-empty string of at most 255 characters, got ${
        typeof identity === "string" ? `"${identity.slice(0, 80)}"` : typeof identity
      }`,
    );
  }
  return identity;
}

/**
 * A fresh key package (public and private halves, as ts-mls makes them).
 *
 * @param suite The engine's suite.
 * @param identity The name for the basic credential.
 * @param key The identity key to sign with (a fresh signature key when left out).
 * @returns ts-mls' key package pair.
 */
export function generateKeyPackage(
  suite: Suite,
  identity: string,
  key: IdentityKey | undefined,
): ReturnType<typeof tsGenerateKeyPackage> {
  checkIdentity(identity);
  const credential = { credentialType: "basic" as const, identity: utf8.encode(identity) };
  return key === undefined
    ? tsGenerateKeyPackage(credential, defaultCapabilities(), defaultLifetime, [], suite.cs)
    : generateKeyPackageWithKey(
      credential,
      defaultCapabilities(),
      defaultLifetime,
      [],
      { signKey: key.signKey, publicKey: key.publicKey },
      suite.cs,
    );
}

/**
 * A fresh key package as it is shared and stored.
 *
 * @param suite The engine's suite.
 * @param identity The name for the basic credential.
 * @param key The identity key to sign with (a fresh signature key when left out).
 * @returns The public key package (MLSMessage bytes), its private half and its ref.
 */
export async function newKeyPackage(
  suite: Suite,
  identity: string,
  key: IdentityKey | undefined,
): Promise<KeyPackageBundle> {
  const { publicPackage, privatePackage } = await generateKeyPackage(suite, identity, key);
  const keyPackage = encodeMlsMessage({
    version: "mls10",
    wireformat: "mls_key_package",
    keyPackage: publicPackage,
  });
  const ref = (await makeKeyPackageRef(publicPackage, suite.cs.hash)).toHex();
  return { keyPackage, privateKey: encodePrivateKeyPackage(privatePackage), ref };
}

/**
 * Who a key package is for, without using it.
 *
 * @param keyPackage A key package, bare or wrapped in an MLSMessage.
 * @returns Its credential's name and the did of its signature key.
 * @throws {CryptoError} `invalid_message` if it is not a key package with a basic credential.
 */
export function keyPackageMember(keyPackage: Uint8Array): Member {
  const kp = decodeKeyPackageBytes(keyPackage);
  const m = kp === undefined ? undefined : memberOfLeaf(kp.leafNode);
  if (m === undefined) {
    throw new CryptoError(
      "invalid_message",
      "Expected an MLS KeyPackage with a basic credential naming its member",
    );
  }
  return m;
}

/**
 * A new member's key package, checked for an Add to a group.
 *
 * @param state The group's state.
 * @param keyPackage The key package, bare or wrapped in an MLSMessage.
 * @returns The decoded key package and the identity it names.
 * @throws {CryptoError} `invalid_message` if it is no key package of the group's suite
 *   with a basic credential.
 * @throws {ValidationError} `invalid_argument` if the identity is already a member.
 */
export function newMember(
  state: ClientState,
  keyPackage: Uint8Array,
): { kp: KeyPackage; identity: string } {
  const kp = decodeKeyPackageBytes(keyPackage);
  if (kp === undefined) {
    throw new CryptoError(
      "invalid_message",
      "Expected an MLS KeyPackage (bare, or wrapped in an MLSMessage)",
    );
  }
  if (kp.cipherSuite !== state.groupContext.cipherSuite) {
    throw new CryptoError(
      "invalid_message",
      `Key package uses ciphersuite "${kp.cipherSuite}", the group "${state.groupContext.cipherSuite}"`,
    );
  }
  const identity = basicIdentity(kp);
  if (leafOf(state.ratchetTree, identity) !== undefined) {
    throw new ValidationError("invalid_argument", `"${identity}" is already a member`);
  }
  return { kp, identity };
}

/** The identity a key package's credential names; a basic credential with UTF-8 only. */
function basicIdentity(kp: KeyPackage): string {
  const cred = kp.leafNode.credential;
  let cause: unknown = "not a basic credential";
  if (cred.credentialType === "basic") {
    try {
      return checkIdentity(utf8Strict.decode(cred.identity));
    } catch (e) {
      cause = e;
    }
  }
  throw new CryptoError(
    "invalid_message",
    "Key package credential is not a basic credential with a UTF-8 identity",
    { cause },
  );
}

/**
 * Joins a group from a Welcome (which carries the ratchet tree).
 *
 * @param suite The engine's suite.
 * @param welcome The MLSMessage-encoded Welcome.
 * @param candidates This identity's unused key packages.
 * @returns The group and the ref of the key package that was used.
 * @throws {CryptoError} `invalid_message` if the bytes are not a usable Welcome,
 *   `welcome_mismatch` if it is for none of the candidates.
 * @throws {StateError} `state_corrupt` if a candidate is unreadable.
 */
export async function join(
  suite: Suite,
  welcome: Uint8Array,
  candidates: { keyPackage: Uint8Array; privateKey: Uint8Array; ref: string }[],
): Promise<{ group: Group; ref: string }> {
  const msg = decodeWhole(welcome);
  if (msg === undefined || msg.wireformat !== "mls_welcome") {
    throw new CryptoError("invalid_message", "Expected an MLS Welcome message");
  }
  const w = msg.welcome;
  if (w.cipherSuite !== suite.name) {
    throw new CryptoError(
      "invalid_message",
      `Welcome uses ciphersuite "${w.cipherSuite}", this engine "${suite.name}"`,
    );
  }
  for (const c of candidates) {
    const kpMsg = decodeWhole(c.keyPackage);
    const priv = c.privateKey instanceof Uint8Array
      ? decodePrivateKeyPackage(c.privateKey)
      : undefined;
    if (kpMsg === undefined || kpMsg.wireformat !== "mls_key_package" || priv === undefined) {
      throw new StateError(
        "state_corrupt",
        `Stored key package "${String(c.ref).slice(0, 80)}" is unreadable`,
      );
    }
    if (kpMsg.keyPackage.cipherSuite !== suite.name) continue;
    const ref = await makeKeyPackageRef(kpMsg.keyPackage, suite.cs.hash);
    if (!w.secrets.some((s) => timingSafeEqual(s.newMember, ref))) continue;
    let state: ClientState;
    try {
      state = await joinGroup(
        w,
        kpMsg.keyPackage,
        priv,
        emptyPskIndex,
        suite.cs,
        undefined,
        undefined,
        suite.config,
      );
    } catch (e) {
      throw new CryptoError("invalid_message", `Cannot join from Welcome: ${errorMessage(e)}`, {
        cause: e,
      });
    }
    return { group: wrapGroup(state), ref: ref.toHex() };
  }
  throw new CryptoError(
    "welcome_mismatch",
    "Welcome is not addressed to any key package of this identity",
  );
}
