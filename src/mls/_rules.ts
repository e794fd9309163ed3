/**
 * The rules every member (and the relay, for commits it sequences) applies to
 * a commit before it changes anything: who may commit, what a commit may do,
 * and that names stay unique and bound to their keys.
 *
 * @module
 */
import type { KeyPackage, Proposal, RatchetTree } from "ts-mls";
import { type Member, memberOf } from "../identity.ts";

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** How many signature keys keep their computed did and fingerprint. */
const KEY_ID_CACHE_SIZE = 4096;

type LeafLike = Pick<KeyPackage["leafNode"], "credential" | "signaturePublicKey">;

/**
 * Members by leaf node object: trees are immutable and share their leaves
 * from epoch to epoch, and a 1,000-member roster is read several times per
 * commit (the did is a base58 encoding, the fingerprint a hash).
 */
const byLeaf = new WeakMap<LeafLike, Member | null>();
/** Did and fingerprint by signature key (hex), for leaves decoded afresh. */
const byKey = new Map<string, { did: string; fingerprint: string }>();

function cachedMemberOf(name: string, key: Uint8Array): Member {
  const id = key.toHex();
  let ids = byKey.get(id);
  if (ids !== undefined) {
    byKey.delete(id);
  } else {
    const m = memberOf(name, key);
    ids = { did: m.did, fingerprint: m.fingerprint };
    if (byKey.size >= KEY_ID_CACHE_SIZE) byKey.delete(byKey.keys().next().value!);
  }
  byKey.set(id, ids);
  return { name, did: ids.did, fingerprint: ids.fingerprint };
}

/**
 * The name at a leaf (what {@linkcode memberAt} would name, without its did
 * and fingerprint).
 *
 * @param tree The ratchet tree.
 * @param leafIndex The leaf.
 * @returns Its basic credential's name, if it has one.
 */
export function identityOfLeaf(tree: RatchetTree, leafIndex: number): string | undefined {
  const node = tree[leafIndex * 2];
  if (node?.nodeType !== "leaf") return undefined;
  return nameOf(node.leaf.credential);
}

/** Longest name read without a `TextDecoder` when it is all ASCII. */
const ASCII_FAST_MAX = 255;

/**
 * A basic credential's name: its identity, strict UTF-8. Names are read for
 * every leaf of a roster, and a `TextDecoder` call costs a few µs on Deno (an
 * op per call: 6 ms for a 1,000-member roster), so ASCII names (UTF-8 and
 * ASCII agree on them, and they carry no byte-order mark) are read directly.
 *
 * @param cred The credential.
 * @returns The name, or `undefined` for another credential type or invalid UTF-8.
 */
export function nameOf(cred: KeyPackage["leafNode"]["credential"]): string | undefined {
  if (cred.credentialType !== "basic") return undefined;
  const b = cred.identity;
  if (b.length <= ASCII_FAST_MAX) {
    let s = "";
    let i = 0;
    for (; i < b.length && b[i]! < 0x80; i++) s += String.fromCharCode(b[i]!);
    if (i === b.length) return s;
  }
  try {
    return utf8Strict.decode(b);
  } catch {
    return undefined;
  }
}

/**
 * The member at a leaf.
 *
 * @param tree The ratchet tree.
 * @param leafIndex The leaf.
 * @returns Its credential's name bound to the did of its signature key, if it is a member.
 */
export function memberAt(tree: RatchetTree, leafIndex: number): Member | undefined {
  const node = tree[leafIndex * 2];
  return node?.nodeType === "leaf" ? memberOfLeaf(node.leaf) : undefined;
}

/**
 * The member a leaf node names.
 *
 * @param leaf A leaf node (of a tree or a key package).
 * @returns Its credential's name bound to the did of its signature key, if it has a basic credential.
 */
export function memberOfLeaf(leaf: LeafLike): Member | undefined {
  let m = byLeaf.get(leaf);
  if (m === undefined) {
    const name = nameOf(leaf.credential);
    m = name === undefined ? null : cachedMemberOf(name, leaf.signaturePublicKey);
    byLeaf.set(leaf, m);
  }
  return m === null ? undefined : { ...m };
}

/**
 * The leaf of a member.
 *
 * @param tree The ratchet tree.
 * @param identity The member's name.
 * @returns Its leaf index, or `undefined` if no leaf has that name.
 */
export function leafOf(tree: RatchetTree, identity: string): number | undefined {
  for (let i = 0; i * 2 < tree.length; i++) {
    if (identityOfLeaf(tree, i) === identity) return i;
  }
  return undefined;
}

export function rosterOf(tree: RatchetTree): Member[] {
  const out: Member[] = [];
  for (let i = 0; i * 2 < tree.length; i++) {
    const m = memberAt(tree, i);
    if (m !== undefined) out.push(m);
  }
  return out;
}

/**
 * What a commit may do, checked by every member before it is applied: its
 * sender is a member; it only adds (key packages with a valid name that no
 * other member of the resulting group has), removes members that exist, and
 * commits members' own leave proposals. Anything else (update, PSK, reinit,
 * external init, extensions) is refused. Returns why it is refused, or
 * `undefined`. `expect` receives the roster the commit must produce, checked
 * once the commit is applied (a committer's path may not rename or re-key it).
 */
export function checkCommit(
  tree: RatchetTree,
  sender: number | undefined,
  proposals: { proposal: Proposal; senderLeafIndex: number | undefined }[],
): { refused: string } | { expect: Set<string> } {
  const committer = sender === undefined ? undefined : memberAt(tree, sender);
  if (committer === undefined) return { refused: "the committer is not a member" };
  const removed = new Set<number>();
  const added: Member[] = [];
  for (const { proposal: p, senderLeafIndex } of proposals) {
    if (p.proposalType === "remove") {
      const gone = memberAt(tree, p.remove.removed);
      if (gone === undefined) return { refused: `it removes leaf ${p.remove.removed}, no member` };
      if (senderLeafIndex !== sender && senderLeafIndex !== p.remove.removed) {
        return { refused: "it commits a removal proposed by someone else than the leaver" };
      }
      removed.add(p.remove.removed);
    } else if (p.proposalType === "add") {
      const leaf = p.add.keyPackage.leafNode;
      const name = nameOf(leaf.credential);
      if (name === undefined || !validIdentity(name)) {
        return { refused: "it adds a key package without a valid name" };
      }
      added.push(cachedMemberOf(name, leaf.signaturePublicKey));
    } else {
      return { refused: `it carries a "${String(p.proposalType)}" proposal` };
    }
  }
  const roster: Member[] = [];
  for (let i = 0; i * 2 < tree.length; i++) {
    const m = memberAt(tree, i);
    if (m !== undefined && !removed.has(i)) roster.push(m);
  }
  roster.push(...added);
  const names = new Set<string>();
  for (const m of roster) {
    if (names.has(m.name)) return { refused: `it would make two members named "${m.name}"` };
    names.add(m.name);
  }
  return { expect: new Set(roster.map((m) => `${m.name}\0${m.did}`)) };
}

function validIdentity(name: string): boolean {
  return name.length > 0 && name.length <= 255;
}
