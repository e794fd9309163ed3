/**
 * The relay's view of a channel's public MLS state (RFC 9750 §5: a delivery
 * service that validates handshake messages). Commits travel as MLS
 * PublicMessages; the relay keeps each channel's ratchet tree (public keys
 * only), group context and last confirmation tag, and sequences a commit only
 * if it is for the current epoch, signed by the leaf of a current member, and
 * follows the members' rules (`checkCommit`). Junk, a non-member's commit or a
 * commit that breaks the rules is refused at the door, so it can never take an
 * epoch number that members would have to skip. The relay holds no secret: it
 * cannot check the confirmation tag or the encrypted path secrets, so a member
 * that crafts a correctly signed commit with corrupt path secrets can still
 * split the group (the insider limit of RFC 9420 §16.12).
 *
 * @module
 */
import {
  type CiphersuiteImpl,
  type CiphersuiteName,
  emptyPskIndex,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  type Proposal,
  type RatchetTree,
} from "ts-mls";
import {
  applyProposals,
  nextEpochContext,
  throwIfDefined,
  validateLeafNodeCredentialAndKeyUniqueness,
  validateLeafNodeUpdateOrCommit,
} from "ts-mls/clientState.js";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import {
  type FramedContentAuthDataCommit,
  type FramedContentCommit,
  verifyFramedContentSignature,
} from "ts-mls/framedContent.js";
import type { GroupContext } from "ts-mls/groupContext.js";
import { ratchetTreeFromExtension, verifyGroupInfoSignature } from "ts-mls/groupInfo.js";
import { treeHashRoot } from "ts-mls/treeHash.js";
import { applyUpdatePath } from "ts-mls/updatePath.js";
import { checkCommit, memberAt, rosterOf } from "../mls/_rules.ts";
import { decodeWhole } from "../mls/_codec.ts";
import { bytesEqual, errorMessage } from "../_util.ts";

/** The public state of one channel at one epoch. */
export interface PublicState {
  readonly groupContext: GroupContext;
  readonly tree: RatchetTree;
  readonly confirmationTag: Uint8Array;
}

const suites = new Map<string, Promise<CiphersuiteImpl>>();

function suite(name: string): Promise<CiphersuiteImpl> {
  let cs = suites.get(name);
  if (cs === undefined) {
    cs = getCiphersuiteImpl(getCiphersuiteFromName(name as CiphersuiteName));
    suites.set(name, cs);
  }
  return cs;
}

/** A member's commit to this group at this epoch, as {@linkcode GroupObserver.check} reads it. */
interface _Commit {
  content: FramedContentCommit;
  auth: FramedContentAuthDataCommit;
  sender: number;
  /** The committer's signature key. */
  signer: Uint8Array;
  byValue: { proposal: Proposal; senderLeafIndex: number }[];
}

/** Why the relay refused a handshake message. */
export class Refusal {
  /** What was wrong, for the nack and the log. */
  readonly reason: string;
  /**
   * @param reason What was wrong.
   */
  constructor(reason: string) {
    this.reason = reason;
  }
}

/** A channel's public MLS state, advanced by the commits the relay sequences. */
export class GroupObserver {
  #s: PublicState;
  #cs: CiphersuiteImpl;

  private constructor(s: PublicState, cs: CiphersuiteImpl) {
    this.#s = s;
    this.#cs = cs;
  }

  /**
   * Starts from the creator's GroupInfo at epoch 0 (with the ratchet tree).
   *
   * @param channel The channel: the group id must be its UTF-8 bytes.
   * @param bytes The MLSMessage-encoded GroupInfo.
   * @returns The observer, or a refusal saying what was wrong.
   */
  static async genesis(channel: string, bytes: Uint8Array): Promise<GroupObserver | Refusal> {
    const msg = decodeWhole(bytes);
    if (msg?.wireformat !== "mls_group_info") return new Refusal("not an MLS GroupInfo");
    const gi = msg.groupInfo;
    const ctx = gi.groupContext;
    if (!bytesEqual(ctx.groupId, new TextEncoder().encode(channel))) {
      return new Refusal("its group id is not the channel name");
    }
    if (ctx.epoch !== 0n) return new Refusal(`it is for epoch ${ctx.epoch}, not 0`);
    let cs: CiphersuiteImpl;
    try {
      cs = await suite(ctx.cipherSuite);
    } catch {
      return new Refusal(`unknown ciphersuite "${String(ctx.cipherSuite).slice(0, 80)}"`);
    }
    const tree = ratchetTreeFromExtension(gi);
    if (tree === undefined) return new Refusal("it carries no ratchet tree");
    const roster = rosterOf(tree);
    const creator = memberAt(tree, gi.signer);
    if (roster.length !== 1 || creator === undefined) {
      return new Refusal("a new channel has exactly one member, its signer");
    }
    try {
      if (!bytesEqual(await treeHashRoot(tree, cs.hash), ctx.treeHash)) {
        return new Refusal("its tree does not match its tree hash");
      }
      const leaf = tree[gi.signer * 2];
      if (leaf?.nodeType !== "leaf") return new Refusal("its signer has no leaf");
      if (!await verifyGroupInfoSignature(gi, leaf.leaf.signaturePublicKey, cs.signature)) {
        return new Refusal("its signature does not verify");
      }
    } catch (e) {
      return new Refusal(errorMessage(e));
    }
    return new GroupObserver({ groupContext: ctx, tree, confirmationTag: gi.confirmationTag }, cs);
  }

  /** The epoch the next commit must be built on. */
  get epoch(): number {
    return Number(this.#s.groupContext.epoch);
  }

  /**
   * Whether a signature key is a member's.
   *
   * @param publicKey A raw signature public key.
   * @returns True if a leaf of the current tree holds it.
   */
  isMember(publicKey: Uint8Array): boolean {
    for (let i = 0; i < this.#s.tree.length; i += 2) {
      const n = this.#s.tree[i];
      if (n?.nodeType === "leaf" && bytesEqual(n.leaf.signaturePublicKey, publicKey)) return true;
    }
    return false;
  }

  /**
   * Checks a commit against the current state and, if it is valid, advances to
   * the epoch it creates.
   *
   * @param bytes The MLSMessage-encoded commit.
   * @returns `undefined` once applied, or a refusal saying what was wrong.
   */
  async apply(bytes: Uint8Array): Promise<Refusal | undefined> {
    const next = await this.check(bytes);
    if (next instanceof Refusal) return next;
    this.adopt(next);
    return undefined;
  }

  /**
   * Moves to a state {@linkcode check} returned (once the log sequenced its commit).
   *
   * @param next The state after the commit.
   */
  adopt(next: PublicState): void {
    this.#s = next;
  }

  /**
   * Checks a commit against the current state without changing it.
   *
   * @param bytes The MLSMessage-encoded commit.
   * @returns The state the commit leads to, or a refusal saying what was wrong.
   */
  async check(bytes: Uint8Array): Promise<PublicState | Refusal> {
    const c = this.#commitOf(bytes);
    if (c instanceof Refusal) return c;
    const rules = checkCommit(this.#s.tree, c.sender, c.byValue);
    if ("refused" in rules) return new Refusal(rules.refused);
    try {
      return await this.#next(c, rules.expect);
    } catch (e) {
      return new Refusal(errorMessage(e));
    }
  }

  /** The commit a message carries, if it is one of a member of this group at this epoch. */
  #commitOf(bytes: Uint8Array): _Commit | Refusal {
    const msg = decodeWhole(bytes);
    if (msg?.wireformat !== "mls_public_message") {
      return new Refusal("a commit must be an MLS PublicMessage");
    }
    const { content, auth } = msg.publicMessage;
    const s = this.#s;
    if (content.contentType !== "commit" || auth.contentType !== "commit") {
      return new Refusal("the message is not a commit");
    }
    if (!bytesEqual(content.groupId, s.groupContext.groupId)) {
      return new Refusal("the commit is for another group");
    }
    if (content.epoch !== s.groupContext.epoch) {
      return new Refusal(
        `the commit is for epoch ${content.epoch}, the channel is at ${this.epoch}`,
      );
    }
    if (content.sender.senderType !== "member") return new Refusal("the committer is not a member");
    const sender = content.sender.leafIndex;
    const leaf = s.tree[sender * 2];
    if (leaf?.nodeType !== "leaf") return new Refusal("the committer is not a member");
    const byValue: _Commit["byValue"] = [];
    for (const p of content.commit.proposals) {
      if (p.proposalOrRefType !== "proposal") {
        return new Refusal("proposals must be committed by value");
      }
      byValue.push({ proposal: p.proposal, senderLeafIndex: sender });
    }
    return { content, auth, sender, signer: leaf.leaf.signaturePublicKey, byValue };
  }

  /**
   * The state a commit leads to: its signature verified, its proposals and path applied, and
   * the roster it yields the one `expect` names (throws what the MLS checks throw).
   */
  async #next(c: _Commit, expect: ReadonlySet<string>): Promise<PublicState | Refusal> {
    const { content, auth, sender } = c;
    const s = this.#s;
    const cs = this.#cs;
    const ok = await verifyFramedContentSignature(
      c.signer,
      "mls_public_message",
      content,
      auth,
      s.groupContext,
      cs.signature,
    );
    if (!ok) return new Refusal("the committer's signature does not verify");
    const view = {
      groupContext: s.groupContext,
      ratchetTree: s.tree,
      unappliedProposals: {},
      clientConfig: defaultClientConfig,
      // The relay holds no leaf; an index past the tree marks it as such.
      privatePath: { leafIndex: s.tree.length, privateKeys: {} },
    };
    const proposals = content.commit.proposals;
    const r = await applyProposals(
      view as never,
      proposals,
      sender as never,
      emptyPskIndex,
      false,
      cs,
    );
    if (r.additionalResult.kind !== "memberCommit") {
      return new Refusal("only member commits are accepted");
    }
    const path = content.commit.path;
    if (r.needsUpdatePath && path === undefined) return new Refusal("the commit needs a path");
    let tree = r.tree;
    if (path !== undefined) {
      throwIfDefined(
        await validateLeafNodeUpdateOrCommit(
          path.leafNode,
          sender,
          s.groupContext,
          defaultClientConfig.authService,
          cs.signature,
        ),
      );
      throwIfDefined(await validateLeafNodeCredentialAndKeyUniqueness(tree, path.leafNode, sender));
      tree = await applyUpdatePath(tree, sender as never, path, cs.hash);
    }
    const got = rosterOf(tree).map((m) => `${m.name}\0${m.did}`);
    if (got.length !== expect.size || got.some((m) => !expect.has(m))) {
      return new Refusal("its path renames or re-keys a member");
    }
    const ext = r.additionalResult.extensions.length > 0
      ? { ...s.groupContext, extensions: r.additionalResult.extensions }
      : s.groupContext;
    const groupContext = await nextEpochContext(
      ext,
      "mls_public_message",
      content,
      auth.signature,
      await treeHashRoot(tree, cs.hash),
      s.confirmationTag,
      cs.hash,
    );
    return { groupContext, tree, confirmationTag: auth.confirmationTag };
  }
}
