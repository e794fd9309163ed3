/**
 * The MLS engine (RFC 9420) over ts-mls: key packages, groups, commits,
 * Welcome, application messages and the group state codec. State is
 * immutable: every operation takes a {@linkcode Group} and returns a new one.
 *
 * This file is the engine's API; the work is done in the modules beside it:
 * `_keyPackages.ts` (key packages, joining), `_commits.ts` (commits and the
 * leave proposal), `_application.ts` (application messages), `_process.ts`
 * (incoming messages), `_rules.ts` (what a commit may do), `_codec.ts`
 * (byte formats), `provider.ts` (the crypto).
 *
 * @module
 */
import {
  type CiphersuiteImpl,
  type CiphersuiteName,
  ciphersuites,
  type CryptoProvider,
  encodeMlsMessage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  mlsExporter,
} from "ts-mls";
import { createGroupInfoWithRatchetTree } from "ts-mls/createCommit.js";
import { createGroup } from "ts-mls";
import { errorMessage } from "../_util.ts";
import { StateError, ValidationError } from "../errors.ts";
import type { IdentityKey, Member } from "../identity.ts";
import { identityOfLeaf, rosterOf } from "./_rules.ts";
import { decodeGroupEnvelope, decodeWhole, encodeGroupEnvelope } from "./_codec.ts";
import { fastCryptoProvider } from "./provider.ts";
import { makeSuite, stateOf, type Suite } from "./_suite.ts";
import { type Group, wrapGroup } from "./group.ts";
import type { KeyPackageBundle, MlsEngineOptions, ProcessResult } from "./types.ts";
import { generateKeyPackage, join, keyPackageMember, newKeyPackage } from "./_keyPackages.ts";
import { commitAdd, commitRemove, commitUpdate, proposeLeave } from "./_commits.ts";
import { encrypt, sendGeneration, skipSendGeneration } from "./_application.ts";
import { processMessage } from "./_process.ts";

export { Group } from "./group.ts";
export type {
  KeyPackageBundle,
  MlsCryptoProvider,
  MlsEngineOptions,
  ProcessResult,
} from "./types.ts";

/** The ciphersuite used when none is named. */
export const DEFAULT_SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

/**
 * Creates, joins and drives MLS groups for one ciphersuite.
 *
 * @example
 * ```ts
 * import { MlsEngine } from "./engine.ts";
 * const mls = await MlsEngine.create();
 * const bob = await mls.newKeyPackage("bob");
 * const g = await mls.createGroup(new TextEncoder().encode("acme/a/b"), "alice");
 * const { welcome, newGroup } = await mls.commitAdd(g, bob.keyPackage);
 * const { group } = await mls.join(welcome, [bob]);
 * const { message } = await mls.encrypt(newGroup, new TextEncoder().encode("hi"));
 * const r = await mls.process(group, message); // { kind: "application", sender: "alice", … }
 * ```
 */
export class MlsEngine {
  /** The ciphersuite name, e.g. `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`. */
  readonly suite: string;
  #suite: Suite;

  private constructor(suite: string, cs: CiphersuiteImpl) {
    this.suite = suite;
    this.#suite = makeSuite(suite, cs);
  }

  /**
   * The ciphersuite a Welcome is for, without joining.
   *
   * @param welcome The MLSMessage-encoded Welcome.
   * @returns The suite's name, or `undefined` if the bytes are not a Welcome.
   */
  static welcomeSuite(welcome: Uint8Array): string | undefined {
    const msg = decodeWhole(welcome);
    return msg?.wireformat === "mls_welcome" ? msg.welcome.cipherSuite : undefined;
  }

  /**
   * Makes an engine for a ciphersuite.
   *
   * @param suite The ciphersuite name; {@linkcode DEFAULT_SUITE} when left out.
   * @param options The crypto provider to use.
   * @returns The engine.
   * @throws {ValidationError} `invalid_argument` if the suite is unknown or unavailable.
   */
  static async create(suite?: string, options: MlsEngineOptions = {}): Promise<MlsEngine> {
    const name = suite ?? DEFAULT_SUITE;
    if (typeof name !== "string" || !Object.hasOwn(ciphersuites, name)) {
      throw new ValidationError(
        "invalid_argument",
        `Unknown MLS ciphersuite "${String(name).slice(0, 80)}"`,
      );
    }
    let cs: CiphersuiteImpl;
    try {
      const desc = getCiphersuiteFromName(name as CiphersuiteName);
      cs = await getCiphersuiteImpl(
        desc,
        (options.provider ?? fastCryptoProvider) as unknown as CryptoProvider,
      );
    } catch (e) {
      throw new ValidationError(
        "invalid_argument",
        `MLS ciphersuite "${name}" is not available: ${errorMessage(e)}`,
        { cause: e },
      );
    }
    return new MlsEngine(name, cs);
  }

  /**
   * Generates a fresh key package for an identity.
   *
   * @param identity The identity to put in the basic credential.
   * @param key The agent's identity key, used as the leaf's signature key (a
   *   fresh one when left out).
   * @returns The public key package (MLSMessage bytes), its private half and its ref.
   */
  async newKeyPackage(identity: string, key?: IdentityKey): Promise<KeyPackageBundle> {
    return await newKeyPackage(this.#suite, identity, key);
  }

  /**
   * Creates a group with one member.
   *
   * @param groupId The MLS group id.
   * @param identity The creator's identity.
   * @param key The creator's identity key (a fresh signature key when left out).
   * @returns The group at epoch 0.
   */
  async createGroup(groupId: Uint8Array, identity: string, key?: IdentityKey): Promise<Group> {
    if (!(groupId instanceof Uint8Array) || groupId.length === 0) {
      throw new ValidationError("invalid_argument", "Group id must be non-empty bytes");
    }
    const kp = await generateKeyPackage(this.#suite, identity, key);
    const state = await createGroup(
      groupId.slice(),
      kp.publicPackage,
      kp.privatePackage,
      [],
      this.#suite.cs,
      this.#suite.config,
    );
    return wrapGroup(state);
  }

  /**
   * Commits the addition of a member. The Welcome carries the ratchet tree, so
   * it is all the new member needs. `g` stays valid: adopt `newGroup` only once
   * the commit is accepted.
   *
   * @param g The group.
   * @param keyPackage The new member's MLSMessage-encoded key package.
   * @returns The commit and Welcome (MLSMessage bytes), the next group and the added identity.
   * @throws {CryptoError} `invalid_message` if the bytes are not a valid key package.
   * @throws {ValidationError} `invalid_argument` if the identity is already a member.
   */
  async commitAdd(
    g: Group,
    keyPackage: Uint8Array,
  ): Promise<{ commit: Uint8Array; welcome: Uint8Array; newGroup: Group; identity: string }> {
    const r = await this.commitAddMany(g, [keyPackage]);
    return {
      commit: r.commit,
      welcome: r.welcome,
      newGroup: r.newGroup,
      identity: r.identities[0]!,
    };
  }

  /**
   * Commits the addition of several members in one commit (one Add proposal
   * each) with one Welcome for all of them. `g` stays valid: adopt `newGroup`
   * only once the commit is accepted.
   *
   * @param g The group.
   * @param keyPackages The new members' MLSMessage-encoded key packages (at least one).
   * @returns The commit and Welcome (MLSMessage bytes), the next group and the added identities.
   * @throws {CryptoError} `invalid_message` if some bytes are not a valid key package.
   * @throws {ValidationError} `invalid_argument` if an identity is already a member or repeated.
   */
  async commitAddMany(
    g: Group,
    keyPackages: Uint8Array[],
  ): Promise<{ commit: Uint8Array; welcome: Uint8Array; newGroup: Group; identities: string[] }> {
    return await commitAdd(this.#suite, stateOf(this.#suite, g), keyPackages);
  }

  /**
   * Commits the removal of a member. `g` stays valid until the commit is accepted.
   *
   * @param g The group.
   * @param identity The member to remove (not oneself: use {@linkcode proposeLeave}).
   * @returns The commit (MLSMessage bytes) and the next group.
   * @throws {ValidationError} `unknown_member` if the identity is not a member.
   */
  async commitRemove(g: Group, identity: string): Promise<{ commit: Uint8Array; newGroup: Group }> {
    return await commitRemove(this.#suite, stateOf(this.#suite, g), identity);
  }

  /**
   * Commits a fresh path for this member (key rotation), moving to the next epoch.
   * Proposals received and not yet committed are included.
   *
   * @param g The group.
   * @returns The commit (MLSMessage bytes) and the next group.
   */
  async commitUpdate(g: Group): Promise<{ commit: Uint8Array; newGroup: Group }> {
    return await commitUpdate(this.#suite, stateOf(this.#suite, g));
  }

  /**
   * Commits every proposal received and not yet committed (e.g. a member's
   * leave). With none pending it is the same as {@linkcode commitUpdate}.
   *
   * @param g The group.
   * @returns The commit (MLSMessage bytes) and the next group.
   */
  async commitPending(g: Group): Promise<{ commit: Uint8Array; newGroup: Group }> {
    return await this.commitUpdate(g);
  }

  /**
   * Proposes removing oneself; another member commits it with {@linkcode commitPending}.
   * The secrets it used are erased from `g`: continue with `newGroup` only.
   *
   * @param g The group.
   * @returns The proposal (MLSMessage bytes, a private message) and the group with it pending.
   * @throws {ValidationError} `invalid_argument` if this member cannot send (e.g. removed).
   */
  async proposeLeave(g: Group): Promise<{ proposal: Uint8Array; newGroup: Group }> {
    return await proposeLeave(this.#suite, stateOf(this.#suite, g));
  }

  /**
   * Joins a group from a Welcome (which carries the ratchet tree).
   *
   * @param welcome The MLSMessage-encoded Welcome.
   * @param candidates This identity's unused key packages, as from {@linkcode newKeyPackage}.
   * @returns The group and the ref of the key package that was used.
   * @throws {CryptoError} `invalid_message` if the bytes are not a usable Welcome,
   *   `welcome_mismatch` if it is for none of the candidates.
   * @throws {StateError} `state_corrupt` if a candidate is unreadable.
   */
  async join(
    welcome: Uint8Array,
    candidates: { keyPackage: Uint8Array; privateKey: Uint8Array; ref: string }[],
  ): Promise<{ group: Group; ref: string }> {
    return await join(this.#suite, welcome, candidates);
  }

  /**
   * Encrypts an application message. The secrets it used are erased from
   * `g`: continue with `newGroup` only.
   *
   * @param g The group.
   * @param plaintext The data to send.
   * @param options `pad`: the smallest allowed size at or above a length (the
   *   size buckets); the message (its whole MLSMessage encoding) is padded to
   *   exactly that size. Without it, ts-mls' default (pad small messages to 256 bytes of content).
   *   `aad`: the MLS authenticated data (signed with the message, not encrypted).
   * @returns The private message (MLSMessage bytes) and the next group.
   * @throws {ValidationError} `invalid_argument` if this member cannot send (e.g. removed).
   */
  async encrypt(
    g: Group,
    plaintext: Uint8Array,
    options: { pad?: (length: number) => number; aad?: Uint8Array } = {},
  ): Promise<{ message: Uint8Array; newGroup: Group }> {
    return await encrypt(this.#suite, stateOf(this.#suite, g), plaintext, options);
  }

  /**
   * Processes a private message of the group: decrypts an application message,
   * applies a commit or stores a proposal. On success the secrets it used are
   * erased from `g`: continue with `newGroup` only. On failure `g` is untouched.
   *
   * @param g The group.
   * @param message The MLSMessage-encoded private message.
   * @param kind The content type the message was declared as (a relay entry's kind), if any.
   * @returns What the message was, with the group after it.
   * @throws {CryptoError} `invalid_message` if it cannot be decoded, decrypted or verified.
   */
  async process(
    g: Group,
    message: Uint8Array,
    kind?: "application" | "commit" | "proposal",
  ): Promise<ProcessResult> {
    return await processMessage(this.#suite, stateOf(this.#suite, g), message, kind);
  }

  /**
   * Serialises a group for persistence (it contains secrets).
   *
   * @param g The group.
   * @returns Versioned bytes for {@linkcode decodeGroup}.
   */
  encodeGroup(g: Group): Uint8Array {
    return encodeGroupEnvelope(stateOf(this.#suite, g));
  }

  /**
   * How many received proposals wait to be committed.
   *
   * @param g The group.
   * @returns The number of pending proposals.
   */
  pendingProposals(g: Group): number {
    return Object.keys(stateOf(this.#suite, g).unappliedProposals).length;
  }

  /**
   * Restores a group from {@linkcode encodeGroup} bytes.
   *
   * @param b The bytes.
   * @returns The group.
   * @throws {StateError} `state_corrupt` if the bytes are not a group of this engine's suite.
   */
  decodeGroup(b: Uint8Array): Group {
    // Decode a copy: the state's secrets are views into the bytes decoded, and
    // processing a message zeroes the secrets it consumed, which must not reach `b`.
    const state = b instanceof Uint8Array
      ? decodeGroupEnvelope(b.slice(), this.#suite.config)
      : undefined;
    if (state === undefined) {
      throw new StateError("state_corrupt", "Stored MLS group state is unreadable");
    }
    if (state.groupContext.cipherSuite !== this.suite) {
      throw new StateError(
        "state_corrupt",
        `Stored MLS group uses ciphersuite "${state.groupContext.cipherSuite}", not "${this.suite}"`,
      );
    }
    if (state.ratchetTree[state.privatePath.leafIndex * 2]?.nodeType !== "leaf") {
      if (state.groupActiveState.kind !== "removedFromGroup") {
        throw new StateError("state_corrupt", "Stored MLS group state has no own leaf");
      }
    }
    return wrapGroup(state);
  }

  /**
   * The group's epoch.
   *
   * @param g The group.
   * @returns The epoch number (0 at creation).
   */
  epoch(g: Group): number {
    return Number(stateOf(this.#suite, g).groupContext.epoch);
  }

  /**
   * The group's members, in leaf order.
   *
   * @param g The group.
   * @returns Their identities.
   */
  members(g: Group): string[] {
    const tree = stateOf(this.#suite, g).ratchetTree;
    const out: string[] = [];
    for (let i = 0; i * 2 < tree.length; i++) {
      const id = identityOfLeaf(tree, i);
      if (id !== undefined) out.push(id);
    }
    return out;
  }

  /**
   * The MLS group id.
   *
   * @param g The group.
   * @returns A copy of the id bytes.
   */
  groupId(g: Group): Uint8Array {
    return stateOf(this.#suite, g).groupContext.groupId.slice();
  }

  /**
   * Derives a secret from the epoch's exporter secret (MLS-Exporter with an empty context).
   *
   * @param g The group.
   * @param label The exporter label.
   * @param length The number of bytes wanted.
   * @returns The same bytes for every member at the same epoch.
   * @throws {ValidationError} `invalid_argument` if the length is out of range.
   */
  async exporter(g: Group, label: string, length: number): Promise<Uint8Array> {
    const state = stateOf(this.#suite, g);
    const { cs } = this.#suite;
    if (!Number.isInteger(length) || length < 1 || length > 255 * cs.kdf.size) {
      throw new ValidationError("invalid_argument", `Invalid exporter length "${length}"`);
    }
    return await mlsExporter(state.keySchedule.exporterSecret, label, new Uint8Array(), length, cs);
  }

  /**
   * The group's public state signed by this member, for the relay to validate
   * later commits against: a GroupInfo with the ratchet tree (public keys only).
   *
   * @param g The group.
   * @returns The MLSMessage-encoded GroupInfo.
   */
  async groupInfo(g: Group): Promise<Uint8Array> {
    const state = stateOf(this.#suite, g);
    const gi = await createGroupInfoWithRatchetTree(
      state.groupContext,
      state.confirmationTag,
      state,
      state.ratchetTree,
      [],
      this.#suite.cs,
    );
    return encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo: gi });
  }

  /**
   * The application generation this member's next message will use.
   *
   * @param g The group.
   * @returns The generation in the current epoch.
   */
  sendGeneration(g: Group): number {
    return sendGeneration(stateOf(this.#suite, g));
  }

  /**
   * Moves this member's application ratchet forward to `generation` (never
   * back), so that no key or nonce below it is used again: what a member does
   * after a crash that lost its last sends' state. Receivers accept a jump of
   * up to 200 generations (ts-mls' `maximumForwardRatchetSteps`).
   *
   * @param g The group.
   * @param generation The first generation still free.
   * @returns The group with the ratchet moved.
   */
  async skipSendGeneration(g: Group, generation: number): Promise<Group> {
    return await skipSendGeneration(this.#suite, g, stateOf(this.#suite, g), generation);
  }

  /**
   * Who a key package is for, without using it.
   *
   * @param keyPackage A key package, bare or wrapped in an MLSMessage.
   * @returns Its credential's name and the did of its signature key.
   * @throws {CryptoError} `invalid_message` if it is not a key package with a basic credential.
   */
  keyPackageMember(keyPackage: Uint8Array): Member {
    return keyPackageMember(keyPackage);
  }

  /**
   * Generates an agent identity key (Ed25519, the suite's signature scheme).
   *
   * @returns The key pair.
   * @throws {ValidationError} `invalid_argument` if the suite does not sign with Ed25519.
   */
  async newIdentityKey(): Promise<IdentityKey> {
    if (!this.suite.endsWith("_Ed25519")) {
      throw new ValidationError(
        "invalid_argument",
        `Agent identities are Ed25519 keys; suite "${this.suite}" signs with another scheme`,
      );
    }
    return await this.#suite.cs.signature.keygen();
  }

  /**
   * The group's members with the dids their leaves are bound to, in leaf order.
   *
   * @param g The group.
   * @returns Name, did and fingerprint of each member.
   */
  roster(g: Group): Member[] {
    return rosterOf(stateOf(this.#suite, g).ratchetTree);
  }
}
