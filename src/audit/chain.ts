/**
 * The audit chain's format, keys and verification: Web Crypto only, so an
 * auditor (the CLI, a browser) can check a log with nothing but the audit key.
 *
 * - **Keys.** One 32-byte audit key per channel (an MLS exporter secret,
 *   label `skytale audit`, of the epoch where auditing started). HKDF-SHA-256
 *   splits it into an AES-256-GCM key (`info` `skytale audit entry v1`) and a
 *   mailbox take key (`skytale audit mailbox v1`); the chain lives in the relay
 *   mailbox that take key owns (`aud:` + hex SHA-256 of it).
 * - **Items.** Each stored item is `0x01 | nonce(12) | AES-GCM(entry JSON)`,
 *   the associated data binding it to its channel. An entry is
 *   `{ w: writer did, i, prev, epoch, event }`; `prev` is the hex SHA-256 of
 *   the writer's item `i - 1` as stored (64 zeros for `i = 0`).
 * - **Chains per writer.** Every auditing member appends its own chain to the
 *   one mailbox; a verifier groups items by writer and checks each chain:
 *   an item it cannot decrypt (altered, or not under this key), a missing
 *   index (deleted), an index out of order (reordered) or a `prev` that does
 *   not match (replaced) is a problem at the item's position in relay order.
 *
 * @module
 */
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { sha256Hex } from "../_util.ts";

/** A decrypted entry as a writer stores it: checked, since any holder of the audit key can write. */
const ENTRY = z.object({
  w: z.string(),
  i: z.number().int().nonnegative(),
  prev: z.string(),
  epoch: z.number().int().nonnegative(),
  event: z.looseObject({
    type: z.string(),
    time: z.string(),
    seq: z.number().int().nonnegative().optional(),
  }),
});

/** The MLS exporter label the audit key is derived with. */
export const AUDIT_LABEL = "skytale audit";
/** The mailbox address prefix of audit logs. */
export const AUDIT_PREFIX = "aud:";
/** What an exported audit key starts with. */
export const AUDIT_KEY_PREFIX = "skt_audit_";
const VERSION = 1;
const ZERO = "0".repeat(64);
const enc = new TextEncoder();

/** One thing a member saw, as the audit log keeps it. */
export interface AuditEvent {
  /** `created`, `joined`, `commit`, `message`, `removed`. */
  type: string;
  /** The relay's seq of the entry that brought it, when there is one. */
  seq?: number;
  /** When the relay stored it (or when it happened here), ISO-8601. */
  time: string;
  /** More fields per type: `sender`, `size`, `sha256`, `tag`, `added`, `removed`, `members`. */
  [field: string]: unknown;
}

/** A decrypted chain entry. */
export interface AuditEntry {
  /** The writer's did. */
  writer: string;
  /** Its index in the writer's chain, from 0. */
  i: number;
  /** Hex SHA-256 of the writer's previous item. */
  prev: string;
  /** The MLS epoch the writer was at. */
  epoch: number;
  /** What happened. */
  event: AuditEvent;
}

/** The keys one audit key gives. */
export interface AuditKeys {
  /** AES-256-GCM, for entries. */
  aes: CryptoKey;
  /** The take key of the audit mailbox. */
  takeKey: Uint8Array;
  /** The audit mailbox's address. */
  address: string;
}

/** A fault found by {@linkcode verifyChain}. */
export interface AuditProblem {
  /** The item's position in relay order, from 1. */
  position: number;
  /** The writer, when the item could be read. */
  writer?: string;
  /** What is wrong. */
  reason: string;
}

/** The result of {@linkcode verifyChain}. */
export interface AuditReport {
  /** True when every item decrypts and every writer's chain is unbroken. */
  ok: boolean;
  /** The first problem's position, if any. */
  firstBad?: number;
  /** Every problem, in relay order. */
  problems: AuditProblem[];
  /** The entries that could be read, in relay order, with their positions. */
  entries: (AuditEntry & { position: number })[];
  /** Per writer: how many entries and the hash of its last item (compare with the writer's own head). */
  heads: Record<string, { entries: number; head: string }>;
}

async function _hkdf(key: Uint8Array, info: string, bytes: number): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey("raw", key as BufferSource, "HKDF", false, [
    "deriveBits",
  ]);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(32), info: enc.encode(info) },
      k,
      bytes * 8,
    ),
  );
}

/**
 * Derives the entry key and the mailbox of an audit key.
 *
 * @example
 * ```ts
 * import { auditKeys } from "./chain.ts";
 * const keys = await auditKeys(new Uint8Array(32));
 * console.log(keys.address.startsWith("aud:")); // true
 * ```
 *
 * @param key The 32-byte audit key.
 * @returns The AES key, the take key and the address.
 * @throws {ValidationError} `invalid_argument` if the key is not 32 bytes.
 */
export async function auditKeys(key: Uint8Array): Promise<AuditKeys> {
  if (key.length !== 32) {
    throw new ValidationError("invalid_argument", `Audit key must be 32 bytes, got ${key.length}`);
  }
  const raw = await _hkdf(key, "skytale audit entry v1", 32);
  const aes = await crypto.subtle.importKey("raw", raw as BufferSource, "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  const takeKey = await _hkdf(key, "skytale audit mailbox v1", 32);
  return { aes, takeKey, address: AUDIT_PREFIX + await sha256Hex(takeKey) };
}

/**
 * Writes an audit key as text: `skt_audit_` + hex.
 *
 * @param key The 32-byte key.
 * @returns The text form.
 */
export function encodeAuditKey(key: Uint8Array): string {
  return AUDIT_KEY_PREFIX + key.toHex();
}

/**
 * Reads an audit key written by {@linkcode encodeAuditKey} (or bare hex).
 *
 * @param text The text form.
 * @returns The 32-byte key.
 * @throws {ValidationError} `invalid_argument` if it is not one.
 */
export function decodeAuditKey(text: string): Uint8Array {
  const hex = text.trim().replace(/^skt_audit_/, "");
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new ValidationError(
      "invalid_argument",
      `Audit key "${text.slice(0, 16)}…" is not one: expected skt_audit_ and 64 hex digits`,
    );
  }
  return Uint8Array.fromHex(hex);
}

function _aad(channel: string): Uint8Array {
  return enc.encode(`skytale audit v1\0${channel}`);
}

/**
 * Encrypts one entry into a stored item.
 *
 * @param keys The audit keys.
 * @param channel The channel (bound as associated data).
 * @param entry The entry.
 * @returns The item.
 */
export async function sealEntry(
  keys: AuditKeys,
  channel: string,
  entry: AuditEntry,
): Promise<Uint8Array> {
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const body = enc.encode(JSON.stringify({
    w: entry.writer,
    i: entry.i,
    prev: entry.prev,
    epoch: entry.epoch,
    event: entry.event,
  }));
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: _aad(channel) as BufferSource },
      keys.aes,
      body,
    ),
  );
  const out = new Uint8Array(1 + 12 + ct.length);
  out[0] = VERSION;
  out.set(nonce, 1);
  out.set(ct, 13);
  return out;
}

/**
 * Decrypts an item; `undefined` if it was altered or is not under this key.
 *
 * @param keys The audit keys.
 * @param channel The channel.
 * @param item The stored item.
 * @returns The entry, or `undefined`.
 */
export async function openEntry(
  keys: AuditKeys,
  channel: string,
  item: Uint8Array,
): Promise<AuditEntry | undefined> {
  if (item.length < 13 + 16 || item[0] !== VERSION) return undefined;
  try {
    const pt = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: item.subarray(1, 13) as BufferSource,
        additionalData: _aad(channel) as BufferSource,
      },
      keys.aes,
      item.subarray(13) as BufferSource,
    );
    const j = ENTRY.safeParse(JSON.parse(new TextDecoder().decode(pt)));
    if (!j.success) return undefined;
    return {
      writer: j.data.w,
      i: j.data.i,
      prev: j.data.prev,
      epoch: j.data.epoch,
      event: j.data.event as AuditEvent,
    };
  } catch {
    return undefined;
  }
}

/**
 * The hash that the next entry's `prev` names.
 *
 * @param item A stored item (or `undefined` before the first).
 * @returns Hex SHA-256, or 64 zeros.
 */
export async function itemHash(item: Uint8Array | undefined): Promise<string> {
  return item === undefined ? ZERO : await sha256Hex(item);
}

/**
 * Checks a log: decrypts every item and follows each writer's chain. A
 * missing, reordered or altered item is reported at its position in relay
 * order (from 1). An item stored twice byte for byte (a put retried after a
 * lost answer) is skipped, not reported. A chain cut short at its end cannot
 * be told from one that ended there: compare `heads` with a writer's own.
 *
 * @param keys The audit keys.
 * @param channel The channel.
 * @param items The stored items, in relay order.
 * @returns The report.
 */
export async function verifyChain(
  keys: AuditKeys,
  channel: string,
  items: readonly Uint8Array[],
): Promise<AuditReport> {
  const problems: AuditProblem[] = [];
  const entries: AuditReport["entries"] = [];
  const seen = new Map<string, { max: number; hashes: Map<number, string>; entries: number }>();
  for (const [n, item] of items.entries()) {
    const position = n + 1;
    const e = await openEntry(keys, channel, item);
    if (!e) {
      problems.push({
        position,
        reason: "cannot be decrypted: altered, or not written under this key",
      });
      continue;
    }
    const hash = await itemHash(item);
    let w = seen.get(e.writer);
    if (!w) seen.set(e.writer, w = { max: -1, hashes: new Map(), entries: 0 });
    if (w.hashes.get(e.i) === hash) continue; // the same item stored twice
    const bad = (reason: string) => problems.push({ position, writer: e.writer, reason });
    if (e.i > w.max + 1) {
      bad(
        `entry ${e.i} of ${e.writer} follows entry ${w.max}: ${e.i - w.max - 1} missing before it`,
      );
    } else if (e.i <= w.max) {
      bad(`entry ${e.i} of ${e.writer} comes after entry ${w.max}: out of order or replaced`);
    } else if (e.prev !== (e.i === 0 ? ZERO : w.hashes.get(e.i - 1))) {
      bad(`entry ${e.i} of ${e.writer} does not link to the entry before it`);
    }
    if (!w.hashes.has(e.i)) w.hashes.set(e.i, hash);
    w.max = Math.max(w.max, e.i);
    w.entries++;
    entries.push({ ...e, position });
  }
  const heads: AuditReport["heads"] = {};
  for (const [id, w] of seen) heads[id] = { entries: w.entries, head: w.hashes.get(w.max) ?? ZERO };
  return {
    ok: problems.length === 0,
    ...(problems[0] ? { firstBad: problems[0].position } : {}),
    problems,
    entries,
    heads,
  };
}

/** What {@linkcode readAuditLog} needs of a relay client. */
export interface AuditReader {
  /** Leases a mailbox's items (they come back to later takes: nothing is acked). */
  mailboxLease(address: string, takeKey: Uint8Array): Promise<{ payload: Uint8Array }[]>;
}

/**
 * Reads a channel's audit log from the relay and verifies it. Reading leases
 * the items without acking them: they stay, and come back to the next reader
 * once this connection closes (or the lease lapses).
 *
 * @param relay A relay client (no membership needed).
 * @param channel The channel.
 * @param key The 32-byte audit key.
 * @returns The report.
 */
export async function readAuditLog(
  relay: AuditReader,
  channel: string,
  key: Uint8Array,
): Promise<AuditReport> {
  const keys = await auditKeys(key);
  const items = await relay.mailboxLease(keys.address, keys.takeKey);
  return await verifyChain(keys, channel, items.map((i) => i.payload));
}
