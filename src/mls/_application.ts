/**
 * Application messages: encrypting them (padded to a size bucket), decrypting
 * them (current epoch or a retained earlier one), and the sender's ratchet
 * generation, which a member moves forward after a crash.
 *
 * @module
 */
import {
  type ClientState,
  createApplicationMessage,
  encodeMlsMessage,
  type PrivateMessage,
  zeroOutUint8Array,
} from "ts-mls";
import { deriveTreeSecret } from "ts-mls/crypto/kdf.js";
import { unprotectPrivateMessage } from "ts-mls/messageProtection.js";
import { errorMessage } from "../_util.ts";
import { CryptoError, ValidationError } from "../errors.ts";
import { memberAt } from "./_rules.ts";
import { paddedContentLength } from "./_padding.ts";
import { type Group, wrapGroup } from "./group.ts";
import type { Suite } from "./_suite.ts";
import type { ProcessResult } from "./types.ts";

/**
 * Encrypts an application message. The secrets it used are erased from `state`.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @param plaintext The data to send.
 * @param options `pad`: the size buckets; `aad`: the MLS authenticated data.
 * @returns The private message (MLSMessage bytes) and the next group.
 * @throws {ValidationError} `invalid_argument` if this member cannot send (e.g. removed).
 */
export async function encrypt(
  suite: Suite,
  state: ClientState,
  plaintext: Uint8Array,
  options: { pad?: (length: number) => number; aad?: Uint8Array },
): Promise<{ message: Uint8Array; newGroup: Group }> {
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
    r = await createApplicationMessage(state, plaintext, suite.cs, aad);
  } catch (e) {
    throw new ValidationError("invalid_argument", `Cannot encrypt: ${errorMessage(e)}`, {
      cause: e,
    });
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
 * An application message, as ts-mls' `processPrivateMessage` handles it
 * (current epoch, or a retained earlier one), but keeping the sender's leaf
 * index that `unprotectPrivateMessage` verified the signature with, so the
 * sender data is decrypted once rather than twice.
 *
 * @param suite The engine's suite.
 * @param state The group's state.
 * @param pm The private message, of content type application.
 * @returns The sender, the data and the group after it.
 * @throws {CryptoError} `invalid_message` if it cannot be decrypted or verified.
 */
export async function processApplication(
  suite: Suite,
  state: ClientState,
  pm: PrivateMessage,
): Promise<ProcessResult> {
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
      suite.config.keyRetentionConfig,
      suite.cs,
    );
  } catch (e) {
    throw new CryptoError("invalid_message", `${at}: ${errorMessage(e)}`, { cause: e });
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

/**
 * The application generation this member's next message will use.
 *
 * @param state The group's state.
 * @returns The generation in the current epoch.
 */
export function sendGeneration(state: ClientState): number {
  return state.secretTree[state.privatePath.leafIndex * 2]?.application.generation ?? 0;
}

/**
 * Moves this member's application ratchet forward to `generation` (never back).
 *
 * @param suite The engine's suite.
 * @param g The group.
 * @param s The group's state.
 * @param generation The first generation still free.
 * @returns The group with the ratchet moved (`g` itself if it is there already).
 */
export async function skipSendGeneration(
  suite: Suite,
  g: Group,
  s: ClientState,
  generation: number,
): Promise<Group> {
  const i = s.privatePath.leafIndex * 2;
  const node = s.secretTree[i];
  if (node === undefined || generation <= node.application.generation) return g;
  const { kdf } = suite.cs;
  let secret = node.application.secret;
  for (let gen = node.application.generation; gen < generation; gen++) {
    const next = await deriveTreeSecret(secret, "secret", gen, kdf.size, kdf);
    if (secret !== node.application.secret) zeroOutUint8Array(secret);
    secret = next;
  }
  const secretTree = s.secretTree.slice();
  secretTree[i] = { ...node, application: { secret, generation, unusedGenerations: {} } };
  return wrapGroup({ ...s, secretTree });
}
