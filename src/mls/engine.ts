/**
 * The MLS engine (RFC 9420) over ts-mls: key packages, groups, commits,
 * Welcome, application messages and the group state codec. State is
 * immutable: every operation takes a {@linkcode Group} and returns a new one.
 *
 * @module
 */
import {
  type CiphersuiteImpl,
  type CiphersuiteName,
  ciphersuites,
  type ClientConfig,
  type ClientState,
  createApplicationMessage,
  createCommit,
  createGroup,
  createProposal,
  type CryptoProvider,
  defaultAuthenticationService,
  defaultCapabilities,
  defaultKeyPackageEqualityConfig,
  defaultKeyRetentionConfig,
  defaultLifetime,
  defaultLifetimeConfig,
  defaultPaddingConfig,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type IncomingMessageCallback,
  joinGroup,
  type KeyPackage,
  mlsExporter,
  type PrivateMessage,
  processPrivateMessage,
  processPublicMessage,
  type Proposal,
  zeroOutUint8Array,
} from "ts-mls";
import { decodeKeyPackage, makeKeyPackageRef } from "ts-mls/keyPackage.js";
import { createGroupInfoWithRatchetTree } from "ts-mls/createCommit.js";
import { deriveTreeSecret } from "ts-mls/crypto/kdf.js";
import { unprotectPrivateMessage } from "ts-mls/messageProtection.js";
import { CryptoError, SkytaleError, StateError, ValidationError } from "../errors.ts";
import type { IdentityKey, Member } from "../identity.ts";
import { checkCommit, identityOfLeaf, memberAt, memberOfLeaf, rosterOf } from "./_rules.ts";
import {
  decodeGroupEnvelope,
  decodePrivateKeyPackage,
  decodeWhole,
  encodeGroupEnvelope,
  encodePrivateKeyPackage,
} from "./_codec.ts";
import { fastCryptoProvider } from "./provider.ts";

/** The ciphersuite used when none is named. */
export const DEFAULT_SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

/**
 * Where ciphersuite implementations come from: structurally a ts-mls
 * `CryptoProvider` (e.g. ts-mls' `nobleCryptoProvider`), typed loosely here so
 * ts-mls types stay out of the public API.
 */
export interface MlsCryptoProvider {
  /**
   * Builds one ciphersuite's implementation.
   *
   * @param suite A ts-mls `Ciphersuite` description (its `name` is the suite name).
   * @returns A ts-mls `CiphersuiteImpl`.
   */
  getCiphersuiteImpl(suite: { readonly name: string }): Promise<object>;
}

/** Options for {@linkcode MlsEngine.create}. */
export interface MlsEngineOptions {
  /**
   * The crypto provider; `fastCryptoProvider` from `./provider.ts` when left
   * out (`tsMlsDefaultProvider` there is ts-mls' own, for comparison).
   */
  provider?: MlsCryptoProvider;
}

/** A key package as produced by {@linkcode MlsEngine.newKeyPackage}. */
export interface KeyPackageBundle {
  /** The MLSMessage-encoded public key package (what is shared, as hex). */
  keyPackage: Uint8Array;
  /** Opaque private half; with `keyPackage` it lets {@linkcode MlsEngine.join} use it later. */
  privateKey: Uint8Array;
  /** The hex KeyPackageRef. */
  ref: string;
}

/** What {@linkcode MlsEngine.process} found in a message. */
export type ProcessResult =
  | {
    /** An application message. */
    kind: "application";
    /** The identity in the credential of the sending leaf. */
    sender: string;
    /** The did of the sending leaf's signature key. */
    senderId: string;
    /** The plaintext. */
    data: Uint8Array;
    /** The message's MLS authenticated data (signed, not encrypted; empty from most senders). */
    aad: Uint8Array;
    /** The group after the message. */
    newGroup: Group;
  }
  | {
    /** A commit, applied. */
    kind: "commit";
    /** The group at the next epoch. */
    newGroup: Group;
    /** Whether this member was removed by the commit (it is no longer in the group). */
    removed: boolean;
  }
  | {
    /** A proposal, stored until a commit covers it. */
    kind: "proposal";
    /** The group with the proposal pending. */
    newGroup: Group;
    /** The identity in the credential of the proposing leaf. */
    sender: string;
    /** The did of the proposing leaf's signature key. */
    senderId: string;
  };

let wrapGroup: (state: ClientState) => Group;
let groupState: (group: Group) => ClientState;

/**
 * One member's view of one MLS group at one epoch. It is immutable and opaque:
 * every {@linkcode MlsEngine} operation takes a `Group` and returns a new one,
 * and {@linkcode MlsEngine.encodeGroup} turns it into bytes for persistence.
 * It holds secrets; `JSON.stringify` shows none of them.
 */
export class Group {
  #state: ClientState;

  private constructor(state: ClientState) {
    this.#state = state;
    Object.freeze(this);
  }

  static {
    wrapGroup = (state) => new Group(state);
    groupState = (group) => {
      if (typeof group !== "object" || group === null || !(#state in group)) {
        throw new ValidationError("invalid_argument", "Expected a Group from MlsEngine");
      }
      return group.#state;
    };
  }
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The size of an MLS variable-length integer (RFC 9420 §2.1.2). */
function vlen(n: number): number {
  return n < 64 ? 1 : n < 16384 ? 2 : 4;
}

/** Ed25519 signatures, the scheme of every suite agents use, are 64 bytes. */
const SIGNATURE_BYTES = 64;
/** AEAD tags (AES-GCM, ChaCha20-Poly1305) are 16 bytes. */
const TAG_BYTES = 16;

/**
 * How long the padded PrivateMessageContent of an application message must be
 * for the whole MLSMessage to have exactly the size `pad` picks: version,
 * wire format, group id, epoch, content type, authenticated data,
 * encrypted sender data (12 bytes + tag), and the ciphertext (content + tag).
 */
function paddedContentLength(
  state: ClientState,
  n: number,
  aad: number,
  pad: (length: number) => number,
): number {
  const gid = state.groupContext.groupId.length;
  const head = 2 + 2 + vlen(gid) + gid + 8 + 1 + vlen(aad) + aad + 1 + 12 + TAG_BYTES;
  const content = vlen(n) + n + vlen(SIGNATURE_BYTES) + SIGNATURE_BYTES;
  const total = (c: number) => head + vlen(c + TAG_BYTES) + c + TAG_BYTES;
  for (let size = pad(total(content)); size < 2 ** 30; size = pad(size + 1)) {
    for (const v of [1, 2, 4]) {
      const c = size - head - TAG_BYTES - v;
      if (c >= content && vlen(c + TAG_BYTES) === v) return c;
    }
  }
  return content;
}

/**
 * A key package as other implementations send it: wrapped in an MLSMessage
 * (RFC 9420 §6) or bare (OpenMLS' `tls_serialize` of a KeyPackage).
 */
function decodeKeyPackageBytes(bytes: Uint8Array): KeyPackage | undefined {
  const msg = decodeWhole(bytes);
  if (msg !== undefined) return msg.wireformat === "mls_key_package" ? msg.keyPackage : undefined;
  if (!(bytes instanceof Uint8Array)) return undefined;
  try {
    const r = decodeKeyPackage(bytes, 0);
    return r !== undefined && r[1] === bytes.length ? r[0] : undefined;
  } catch {
    return undefined;
  }
}

function leafOf(state: ClientState, identity: string): number | undefined {
  const tree = state.ratchetTree;
  for (let i = 0; i * 2 < tree.length; i++) {
    if (identityOfLeaf(tree, i) === identity) return i;
  }
  return undefined;
}

function checkIdentity(identity: unknown): string {
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
  #cs: CiphersuiteImpl;
  #config: ClientConfig;

  private constructor(suite: string, cs: CiphersuiteImpl) {
    this.suite = suite;
    this.#cs = cs;
    this.#config = {
      keyRetentionConfig: defaultKeyRetentionConfig,
      lifetimeConfig: defaultLifetimeConfig,
      keyPackageEqualityConfig: defaultKeyPackageEqualityConfig,
      paddingConfig: defaultPaddingConfig,
      authService: defaultAuthenticationService,
    };
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
        `MLS ciphersuite "${name}" is not available: ${reason(e)}`,
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
    const { publicPackage, privatePackage } = await this.#generateKeyPackage(identity, key);
    const keyPackage = encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_key_package",
      keyPackage: publicPackage,
    });
    const ref = toHex(await makeKeyPackageRef(publicPackage, this.#cs.hash));
    return { keyPackage, privateKey: encodePrivateKeyPackage(privatePackage), ref };
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
    const kp = await this.#generateKeyPackage(identity, key);
    const state = await createGroup(
      groupId.slice(),
      kp.publicPackage,
      kp.privatePackage,
      [],
      this.#cs,
      this.#config,
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
    const state = this.#state(g);
    if (!Array.isArray(keyPackages) || keyPackages.length === 0) {
      throw new ValidationError("invalid_argument", "Expected at least one key package");
    }
    const identities: string[] = [];
    const proposals: Proposal[] = [];
    for (const keyPackage of keyPackages) {
      const { kp, identity } = this.#newMember(state, keyPackage);
      if (identities.includes(identity)) {
        throw new ValidationError("invalid_argument", `"${identity}" is added twice`);
      }
      identities.push(identity);
      proposals.push({ proposalType: "add", add: { keyPackage: kp } });
    }
    const r = await this.#commit(state, proposals, "add");
    if (r.welcome === undefined) throw new Error("ts-mls returned no Welcome for an Add");
    const welcome = encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_welcome",
      welcome: r.welcome,
    });
    return {
      commit: encodeMlsMessage(r.commit),
      welcome,
      newGroup: wrapGroup(r.newState),
      identities,
    };
  }

  #newMember(state: ClientState, keyPackage: Uint8Array): { kp: KeyPackage; identity: string } {
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
    const cred = kp.leafNode.credential;
    let identity: string;
    try {
      if (cred.credentialType !== "basic") throw new Error("not a basic credential");
      identity = checkIdentity(utf8Strict.decode(cred.identity));
    } catch (e) {
      throw new CryptoError(
        "invalid_message",
        "Key package credential is not a basic credential with a UTF-8 identity",
        { cause: e },
      );
    }
    if (leafOf(state, identity) !== undefined) {
      throw new ValidationError("invalid_argument", `"${identity}" is already a member`);
    }
    return { kp, identity };
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
    const state = this.#state(g);
    const leaf = leafOf(state, identity);
    if (leaf === undefined) {
      throw new ValidationError(
        "unknown_member",
        `"${String(identity).slice(0, 80)}" is not a member`,
      );
    }
    if (leaf === state.privatePath.leafIndex) {
      throw new ValidationError(
        "invalid_argument",
        `Cannot remove oneself ("${identity}") by commit: propose leaving instead`,
      );
    }
    const r = await this.#commit(
      state,
      [{ proposalType: "remove", remove: { removed: leaf } }],
      "remove",
    );
    return { commit: encodeMlsMessage(r.commit), newGroup: wrapGroup(r.newState) };
  }

  /**
   * Commits a fresh path for this member (key rotation), moving to the next epoch.
   * Proposals received and not yet committed are included.
   *
   * @param g The group.
   * @returns The commit (MLSMessage bytes) and the next group.
   */
  async commitUpdate(g: Group): Promise<{ commit: Uint8Array; newGroup: Group }> {
    const r = await this.#commit(this.#state(g), [], "update");
    return { commit: encodeMlsMessage(r.commit), newGroup: wrapGroup(r.newState) };
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
    const state = this.#state(g);
    let r: Awaited<ReturnType<typeof createProposal>>;
    try {
      r = await createProposal(
        state,
        false,
        { proposalType: "remove", remove: { removed: state.privatePath.leafIndex } },
        this.#cs,
      );
    } catch (e) {
      throw new ValidationError("invalid_argument", `Cannot propose leaving: ${reason(e)}`, {
        cause: e,
      });
    }
    const proposal = encodeMlsMessage(r.message);
    r.consumed.forEach(zeroOutUint8Array);
    return { proposal, newGroup: wrapGroup(r.newState) };
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
    const msg = decodeWhole(welcome);
    if (msg === undefined || msg.wireformat !== "mls_welcome") {
      throw new CryptoError("invalid_message", "Expected an MLS Welcome message");
    }
    const w = msg.welcome;
    if (w.cipherSuite !== this.suite) {
      throw new CryptoError(
        "invalid_message",
        `Welcome uses ciphersuite "${w.cipherSuite}", this engine "${this.suite}"`,
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
      if (kpMsg.keyPackage.cipherSuite !== this.suite) continue;
      const ref = await makeKeyPackageRef(kpMsg.keyPackage, this.#cs.hash);
      if (!w.secrets.some((s) => bytesEqual(s.newMember, ref))) continue;
      let state: ClientState;
      try {
        state = await joinGroup(
          w,
          kpMsg.keyPackage,
          priv,
          emptyPskIndex,
          this.#cs,
          undefined,
          undefined,
          this.#config,
        );
      } catch (e) {
        throw new CryptoError("invalid_message", `Cannot join from Welcome: ${reason(e)}`, {
          cause: e,
        });
      }
      return { group: wrapGroup(state), ref: toHex(ref) };
    }
    throw new CryptoError(
      "welcome_mismatch",
      "Welcome is not addressed to any key package of this identity",
    );
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
    let state = this.#state(g);
    if (!(plaintext instanceof Uint8Array)) {
      throw new ValidationError("invalid_argument", "Plaintext must be bytes");
    }
    const aad = options.aad ?? new Uint8Array(0);
    if (options.pad) {
      const padUntilLength = paddedContentLength(state, plaintext.length, aad.length, options.pad);
      state = {
        ...state,
        clientConfig: {
          ...state.clientConfig,
          paddingConfig: { kind: "padUntilLength", padUntilLength },
        },
      };
    }
    let r: Awaited<ReturnType<typeof createApplicationMessage>>;
    try {
      r = await createApplicationMessage(state, plaintext, this.#cs, aad);
    } catch (e) {
      throw new ValidationError("invalid_argument", `Cannot encrypt: ${reason(e)}`, { cause: e });
    }
    const message = encodeMlsMessage({
      version: "mls10",
      wireformat: "mls_private_message",
      privateMessage: r.privateMessage,
    });
    r.consumed.forEach(zeroOutUint8Array);
    return { message, newGroup: wrapGroup(r.newState) };
  }

  /**
   * Processes a private message of the group: decrypts an application message,
   * applies a commit or stores a proposal. On success the secrets it used are
   * erased from `g`: continue with `newGroup` only. On failure `g` is untouched.
   *
   * @param g The group.
   * @param message The MLSMessage-encoded private message.
   * @returns What the message was, with the group after it.
   * @throws {CryptoError} `invalid_message` if it cannot be decoded, decrypted or verified.
   */
  async process(
    g: Group,
    message: Uint8Array,
    kind?: "application" | "commit" | "proposal",
  ): Promise<ProcessResult> {
    const state = this.#state(g);
    const msg = decodeWhole(message);
    if (
      msg === undefined ||
      (msg.wireformat !== "mls_private_message" && msg.wireformat !== "mls_public_message")
    ) {
      throw new CryptoError("invalid_message", "Expected an MLS private or public message");
    }
    const pub = msg.wireformat === "mls_public_message" ? msg.publicMessage : undefined;
    const pm = msg.wireformat === "mls_private_message" ? msg.privateMessage : undefined;
    const groupId = pub?.content.groupId ?? pm!.groupId;
    const epoch = pub?.content.epoch ?? pm!.epoch;
    const contentType = pub?.content.contentType ?? pm!.contentType;
    if (!bytesEqual(groupId, state.groupContext.groupId)) {
      throw new CryptoError("invalid_message", "Message is for another group");
    }
    if (kind !== undefined && kind !== contentType) {
      throw new CryptoError(
        "invalid_message",
        `Entry declared as ${kind} carries an MLS ${contentType}`,
      );
    }
    if (contentType === "application") {
      if (pm === undefined) {
        throw new CryptoError("invalid_message", "Application data must be a private message");
      }
      return await this.#processApplication(state, pm);
    }
    let proposalSender: number | undefined;
    let refused: string | undefined;
    let expect: Set<string> | undefined;
    const callback = (incoming: Parameters<IncomingMessageCallback>[0]) => {
      if (incoming.kind === "proposal") {
        proposalSender = incoming.proposal.senderLeafIndex;
        const p = incoming.proposal.proposal;
        if (p.proposalType !== "remove" || p.remove.removed !== proposalSender) {
          refused = "only a member's own leave may be proposed";
        }
      } else {
        const c = checkCommit(state.ratchetTree, incoming.senderLeafIndex, incoming.proposals);
        if ("refused" in c) refused = c.refused;
        else expect = c.expect;
      }
      return refused === undefined ? "accept" : "reject";
    };
    const at =
      `Cannot process ${contentType} at epoch ${epoch} (group is at ${state.groupContext.epoch})`;
    let r: { newState: ClientState; consumed: Uint8Array[]; kind?: string };
    try {
      r = pub !== undefined
        ? await processPublicMessage(state, pub, emptyPskIndex, this.#cs, callback)
        : await processPrivateMessage(state, pm!, emptyPskIndex, this.#cs, callback);
    } catch (e) {
      throw new CryptoError("invalid_message", `${at}: ${reason(e)}`, { cause: e });
    }
    if (refused !== undefined) throw new CryptoError("refused", `${at}: refused, ${refused}`);
    if (r.kind === "applicationMessage") {
      throw new CryptoError("invalid_message", "Application data in a non-application message");
    }
    if (contentType === "proposal") {
      const sender = proposalSender === undefined
        ? undefined
        : memberAt(state.ratchetTree, proposalSender);
      if (sender === undefined) {
        throw new CryptoError("invalid_message", "Proposal sender is not a member");
      }
      r.consumed.forEach(zeroOutUint8Array);
      return {
        kind: "proposal",
        newGroup: wrapGroup(r.newState),
        sender: sender.name,
        senderId: sender.did,
      };
    }
    const removed = r.newState.groupActiveState.kind === "removedFromGroup";
    if (!removed) {
      const got = rosterOf(r.newState.ratchetTree).map((m) => `${m.name}\0${m.did}`);
      if (expect === undefined || got.length !== expect.size || got.some((m) => !expect!.has(m))) {
        throw new CryptoError("refused", `${at}: refused, its path renames or re-keys a member`);
      }
    }
    r.consumed.forEach(zeroOutUint8Array);
    return { kind: "commit", newGroup: wrapGroup(r.newState), removed };
  }

  /**
   * Serialises a group for persistence (it contains secrets).
   *
   * @param g The group.
   * @returns Versioned bytes for {@linkcode decodeGroup}.
   */
  encodeGroup(g: Group): Uint8Array {
    return encodeGroupEnvelope(this.#state(g));
  }

  /**
   * How many received proposals wait to be committed.
   *
   * @param g The group.
   * @returns The number of pending proposals.
   */
  pendingProposals(g: Group): number {
    return Object.keys(this.#state(g).unappliedProposals).length;
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
      ? decodeGroupEnvelope(b.slice(), this.#config)
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
    return Number(this.#state(g).groupContext.epoch);
  }

  /**
   * The group's members, in leaf order.
   *
   * @param g The group.
   * @returns Their identities.
   */
  members(g: Group): string[] {
    const tree = this.#state(g).ratchetTree;
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
    return this.#state(g).groupContext.groupId.slice();
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
    const state = this.#state(g);
    if (!Number.isInteger(length) || length < 1 || length > 255 * this.#cs.kdf.size) {
      throw new ValidationError("invalid_argument", `Invalid exporter length "${length}"`);
    }
    return await mlsExporter(
      state.keySchedule.exporterSecret,
      label,
      new Uint8Array(),
      length,
      this.#cs,
    );
  }

  /**
   * The group's public state signed by this member, for the relay to validate
   * later commits against: a GroupInfo with the ratchet tree (public keys only).
   *
   * @param g The group.
   * @returns The MLSMessage-encoded GroupInfo.
   */
  async groupInfo(g: Group): Promise<Uint8Array> {
    const state = this.#state(g);
    const gi = await createGroupInfoWithRatchetTree(
      state.groupContext,
      state.confirmationTag,
      state,
      state.ratchetTree,
      [],
      this.#cs,
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
    const s = this.#state(g);
    return s.secretTree[s.privatePath.leafIndex * 2]?.application.generation ?? 0;
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
    const s = this.#state(g);
    const i = s.privatePath.leafIndex * 2;
    const node = s.secretTree[i];
    if (node === undefined || generation <= node.application.generation) return g;
    let secret = node.application.secret;
    for (let gen = node.application.generation; gen < generation; gen++) {
      const next = await deriveTreeSecret(secret, "secret", gen, this.#cs.kdf.size, this.#cs.kdf);
      if (secret !== node.application.secret) zeroOutUint8Array(secret);
      secret = next;
    }
    const secretTree = s.secretTree.slice();
    secretTree[i] = { ...node, application: { secret, generation, unusedGenerations: {} } };
    return wrapGroup({ ...s, secretTree });
  }

  /**
   * Who a key package is for, without using it.
   *
   * @param keyPackage A key package, bare or wrapped in an MLSMessage.
   * @returns Its credential's name and the did of its signature key.
   * @throws {CryptoError} `invalid_message` if it is not a key package with a basic credential.
   */
  keyPackageMember(keyPackage: Uint8Array): Member {
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
    return await this.#cs.signature.keygen();
  }

  /**
   * The group's members with the dids their leaves are bound to, in leaf order.
   *
   * @param g The group.
   * @returns Name, did and fingerprint of each member.
   */
  roster(g: Group): Member[] {
    return rosterOf(this.#state(g).ratchetTree);
  }

  #generateKeyPackage(identity: string, key: IdentityKey | undefined) {
    checkIdentity(identity);
    const credential = { credentialType: "basic" as const, identity: utf8.encode(identity) };
    return key === undefined
      ? generateKeyPackage(credential, defaultCapabilities(), defaultLifetime, [], this.#cs)
      : generateKeyPackageWithKey(
        credential,
        defaultCapabilities(),
        defaultLifetime,
        [],
        { signKey: key.signKey, publicKey: key.publicKey },
        this.#cs,
      );
  }

  #state(g: Group): ClientState {
    const state = groupState(g);
    if (state.groupContext.cipherSuite !== this.suite) {
      throw new ValidationError(
        "invalid_argument",
        `Group uses ciphersuite "${state.groupContext.cipherSuite}", this engine "${this.suite}"`,
      );
    }
    return state;
  }

  async #commit(
    state: ClientState,
    proposals: Proposal[],
    what: "add" | "remove" | "update",
  ): Promise<Awaited<ReturnType<typeof createCommit>>> {
    // Members' leave proposals are committed as removals by value, so the
    // commit alone says what it does: the relay, which never sees private
    // proposals, validates it (see src/relay/_group.ts).
    const removing = new Set(
      proposals.flatMap((p) => p.proposalType === "remove" ? [p.remove.removed] : []),
    );
    const all = [...proposals];
    for (const { proposal } of Object.values(state.unappliedProposals)) {
      if (proposal.proposalType === "remove" && !removing.has(proposal.remove.removed)) {
        removing.add(proposal.remove.removed);
        all.push(proposal);
      }
    }
    try {
      // `consumed` is not erased here: until the relay accepts the commit the
      // caller keeps `state`, which still references those secrets.
      return await createCommit(
        { state: { ...state, unappliedProposals: {} }, cipherSuite: this.#cs },
        { extraProposals: all, ratchetTreeExtension: true, wireAsPublicMessage: true },
      );
    } catch (e) {
      if (e instanceof SkytaleError) throw e;
      if (what === "add") {
        throw new CryptoError("invalid_message", `Cannot add key package: ${reason(e)}`, {
          cause: e,
        });
      }
      throw new ValidationError("invalid_argument", `Cannot commit (${what}): ${reason(e)}`, {
        cause: e,
      });
    }
  }

  /**
   * An application message, as ts-mls' `processPrivateMessage` handles it
   * (current epoch, or a retained earlier one), but keeping the sender's leaf
   * index that `unprotectPrivateMessage` verified the signature with, so the
   * sender data is decrypted once rather than twice.
   */
  async #processApplication(state: ClientState, pm: PrivateMessage): Promise<ProcessResult> {
    const current = pm.epoch === state.groupContext.epoch;
    const rd = current
      ? {
        senderDataSecret: state.keySchedule.senderDataSecret,
        secretTree: state.secretTree,
        ratchetTree: state.ratchetTree,
        groupContext: state.groupContext,
      }
      : pm.epoch < state.groupContext.epoch
      ? state.historicalReceiverData.get(pm.epoch)
      : undefined;
    const at =
      `Cannot process message at epoch ${pm.epoch} (group is at ${state.groupContext.epoch})`;
    if (rd === undefined) {
      throw new CryptoError("invalid_message", `${at}: no keys for that epoch`);
    }
    let r: Awaited<ReturnType<typeof unprotectPrivateMessage>>;
    try {
      r = await unprotectPrivateMessage(
        rd.senderDataSecret,
        pm,
        rd.secretTree,
        rd.ratchetTree,
        rd.groupContext,
        this.#config.keyRetentionConfig,
        this.#cs,
      );
    } catch (e) {
      throw new CryptoError("invalid_message", `${at}: ${reason(e)}`, { cause: e });
    }
    const content = r.content.content;
    const sender = content.sender.senderType === "member"
      ? memberAt(rd.ratchetTree, content.sender.leafIndex)
      : undefined;
    if (content.contentType !== "application" || sender === undefined) {
      throw new CryptoError("invalid_message", "Application message sender is not a member");
    }
    let newState: ClientState;
    if (current) newState = { ...state, secretTree: r.tree };
    else {
      const historical = new Map(state.historicalReceiverData);
      historical.set(pm.epoch, {
        ...state.historicalReceiverData.get(pm.epoch)!,
        secretTree: r.tree,
      });
      newState = { ...state, historicalReceiverData: historical };
    }
    r.consumed.forEach(zeroOutUint8Array);
    return {
      kind: "application",
      sender: sender.name,
      senderId: sender.did,
      data: content.applicationData,
      aad: pm.authenticatedData,
      newGroup: wrapGroup(newState),
    };
  }
}
