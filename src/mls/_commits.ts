/**
 * Changing a group's membership and keys: commits that add members, remove
 * one or re-key oneself (each also committing members' pending leave
 * proposals), and the proposal to leave. The group passed in stays valid
 * until the caller adopts the new one, which it does once the relay accepts
 * the commit.
 *
 * @module
 */
import {
  type ClientState,
  createCommit,
  createProposal,
  encodeMlsMessage,
  type Proposal,
  zeroOutUint8Array,
} from "ts-mls";
import { errorMessage } from "../_util.ts";
import { CryptoError, SkytaleError, ValidationError } from "../errors.ts";
import { leafOf } from "./_rules.ts";
import { newMember } from "./_keyPackages.ts";
import { type Group, wrapGroup } from "./group.ts";
import type { Suite } from "./_suite.ts";

/** A commit and the group it leads to. */
export interface Committed {
  /** The commit (MLSMessage bytes). */
  commit: Uint8Array;
  /** The group at the next epoch. */
  newGroup: Group;
}

/**
 * Commits the addition of members (one Add proposal each) with one Welcome for all.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @param keyPackages The new members' key packages (at least one).
 * @returns The commit and Welcome (MLSMessage bytes), the next group and the added identities.
 * @throws {CryptoError} `invalid_message` if some bytes are not a valid key package.
 * @throws {ValidationError} `invalid_argument` if an identity is already a member or repeated.
 */
export async function commitAdd(
  suite: Suite,
  state: ClientState,
  keyPackages: Uint8Array[],
): Promise<Committed & { welcome: Uint8Array; identities: string[] }> {
  if (!Array.isArray(keyPackages) || keyPackages.length === 0) {
    throw new ValidationError("invalid_argument", "Expected at least one key package");
  }
  const identities: string[] = [];
  const proposals: Proposal[] = [];
  for (const keyPackage of keyPackages) {
    const { kp, identity } = newMember(state, keyPackage);
    if (identities.includes(identity)) {
      throw new ValidationError("invalid_argument", `"${identity}" is added twice`);
    }
    identities.push(identity);
    proposals.push({ proposalType: "add", add: { keyPackage: kp } });
  }
  const r = await commit(suite, state, proposals, "add");
  if (r.welcome === undefined) {
    throw new CryptoError("invalid_message", "Cannot add key package: ts-mls made no Welcome");
  }
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

/**
 * Commits the removal of a member.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @param identity The member to remove (not oneself).
 * @returns The commit and the next group.
 * @throws {ValidationError} `unknown_member` if the identity is not a member,
 *   `invalid_argument` if it is this member.
 */
export async function commitRemove(
  suite: Suite,
  state: ClientState,
  identity: string,
): Promise<Committed> {
  const leaf = leafOf(state.ratchetTree, identity);
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
  const r = await commit(
    suite,
    state,
    [{ proposalType: "remove", remove: { removed: leaf } }],
    "remove",
  );
  return { commit: encodeMlsMessage(r.commit), newGroup: wrapGroup(r.newState) };
}

/**
 * Commits a fresh path for this member, with the proposals still pending.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @returns The commit and the next group.
 */
export async function commitUpdate(suite: Suite, state: ClientState): Promise<Committed> {
  const r = await commit(suite, state, [], "update");
  return { commit: encodeMlsMessage(r.commit), newGroup: wrapGroup(r.newState) };
}

/**
 * Proposes removing oneself. The secrets it used are erased from `state`.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @returns The proposal (MLSMessage bytes, a private message) and the group with it pending.
 * @throws {ValidationError} `invalid_argument` if this member cannot send (e.g. removed).
 */
export async function proposeLeave(
  suite: Suite,
  state: ClientState,
): Promise<{ proposal: Uint8Array; newGroup: Group }> {
  let r: Awaited<ReturnType<typeof createProposal>>;
  try {
    r = await createProposal(
      state,
      false,
      { proposalType: "remove", remove: { removed: state.privatePath.leafIndex } },
      suite.cs,
    );
  } catch (e) {
    throw new ValidationError("invalid_argument", `Cannot propose leaving: ${errorMessage(e)}`, {
      cause: e,
    });
  }
  const proposal = encodeMlsMessage(r.message);
  r.consumed.forEach(zeroOutUint8Array);
  return { proposal, newGroup: wrapGroup(r.newState) };
}

/** A commit of `proposals` and of every leave proposal pending, as a public message. */
async function commit(
  suite: Suite,
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
      { state: { ...state, unappliedProposals: {} }, cipherSuite: suite.cs },
      { extraProposals: all, ratchetTreeExtension: true, wireAsPublicMessage: true },
    );
  } catch (e) {
    if (e instanceof SkytaleError) throw e;
    if (what === "add") {
      throw new CryptoError("invalid_message", `Cannot add key package: ${errorMessage(e)}`, {
        cause: e,
      });
    }
    throw new ValidationError("invalid_argument", `Cannot commit (${what}): ${errorMessage(e)}`, {
      cause: e,
    });
  }
}
