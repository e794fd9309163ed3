/**
 * Incoming messages of a group: which group, epoch and content type they
 * are, then an application message is decrypted (`_application.ts`), a
 * proposal stored, a commit applied. Every member checks a commit against the
 * channel's rules (`_rules.ts`) before it changes anything, and checks the
 * roster it produced after.
 *
 * @module
 */
import {
  type ClientState,
  emptyPskIndex,
  type IncomingMessageCallback,
  type MlsPrivateMessage,
  type MlsPublicMessage,
  processPrivateMessage,
  processPublicMessage,
  zeroOutUint8Array,
} from "ts-mls";
import { errorMessage, timingSafeEqual } from "../_util.ts";
import { CryptoError } from "../errors.ts";
import { checkCommit, memberAt, rosterOf } from "./_rules.ts";
import { decodeWhole } from "./_codec.ts";
import { processApplication } from "./_application.ts";
import { wrapGroup } from "./group.ts";
import type { Suite } from "./_suite.ts";
import type { ProcessResult } from "./types.ts";

/** The content types of MLS messages. */
type ContentType = "application" | "commit" | "proposal";

/**
 * Processes a message of the group. On failure `state` is untouched.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @param message The MLSMessage-encoded private or public message.
 * @param kind The content type the relay entry declared it as, if any.
 * @returns What the message was, with the group after it.
 * @throws {CryptoError} `invalid_message` if it cannot be decoded, decrypted or verified,
 *   `refused` if it breaks the channel's rules.
 */
export async function processMessage(
  suite: Suite,
  state: ClientState,
  message: Uint8Array,
  kind: ContentType | undefined,
): Promise<ProcessResult> {
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
  if (!timingSafeEqual(groupId, state.groupContext.groupId)) {
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
    return await processApplication(suite, state, pm);
  }
  const at =
    `Cannot process ${contentType} at epoch ${epoch} (group is at ${state.groupContext.epoch})`;
  return await processHandshake(suite, state, msg, contentType, at);
}

/** What a member's review of an incoming proposal or commit found. */
interface Review {
  /** Accepts or rejects for ts-mls, recording what it saw. */
  callback: IncomingMessageCallback;
  /** The leaf that proposed, for a proposal. */
  proposalSender?: number | undefined;
  /** Why it was refused, if it was. */
  refused?: string;
  /** The roster (`name\0did`) a commit must produce. */
  expect?: Set<string>;
}

/** The rules a member applies to a proposal (only one's own leave) or a commit (`checkCommit`). */
function review(state: ClientState): Review {
  const r: Review = {
    callback: (incoming) => {
      if (incoming.kind === "proposal") {
        r.proposalSender = incoming.proposal.senderLeafIndex;
        const p = incoming.proposal.proposal;
        if (p.proposalType !== "remove" || p.remove.removed !== r.proposalSender) {
          r.refused = "only a member's own leave may be proposed";
        }
      } else {
        const c = checkCommit(state.ratchetTree, incoming.senderLeafIndex, incoming.proposals);
        if ("refused" in c) r.refused = c.refused;
        else r.expect = c.expect;
      }
      return r.refused === undefined ? "accept" : "reject";
    },
  };
  return r;
}

/**
 * A proposal (stored) or a commit (applied), either as a public or a private
 * message; `at` starts the messages of its errors.
 */
async function processHandshake(
  suite: Suite,
  state: ClientState,
  msg: MlsPublicMessage | MlsPrivateMessage,
  contentType: Exclude<ContentType, "application">,
  at: string,
): Promise<ProcessResult> {
  const seen = review(state);
  let r: { newState: ClientState; consumed: Uint8Array[]; kind?: string };
  try {
    r = msg.wireformat === "mls_public_message"
      ? await processPublicMessage(state, msg.publicMessage, emptyPskIndex, suite.cs, seen.callback)
      : await processPrivateMessage(
        state,
        msg.privateMessage,
        emptyPskIndex,
        suite.cs,
        seen.callback,
      );
  } catch (e) {
    throw new CryptoError("invalid_message", `${at}: ${errorMessage(e)}`, { cause: e });
  }
  if (seen.refused !== undefined) {
    throw new CryptoError("refused", `${at}: refused, ${seen.refused}`);
  }
  if (r.kind === "applicationMessage") {
    throw new CryptoError("invalid_message", "Application data in a non-application message");
  }
  if (contentType === "proposal") {
    const sender = seen.proposalSender === undefined
      ? undefined
      : memberAt(state.ratchetTree, seen.proposalSender);
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
    const expect = seen.expect;
    if (expect === undefined || got.length !== expect.size || got.some((m) => !expect.has(m))) {
      throw new CryptoError("refused", `${at}: refused, its path renames or re-keys a member`);
    }
  }
  r.consumed.forEach(zeroOutUint8Array);
  return { kind: "commit", newGroup: wrapGroup(r.newState), removed };
}
