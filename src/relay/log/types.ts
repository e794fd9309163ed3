/**
 * The storage contract of a relay: per-channel ordered logs with epochs, and
 * mailboxes of opaque blobs. Backends: memory (tests) and SQLite (durable).
 *
 * @module
 */
import type { EntryKind } from "../protocol.ts";

export type { EntryKind } from "../protocol.ts";

/** One stored entry of a channel log. */
export interface LogEntry {
  /** Per-channel sequence number, 1-based and gapless. */
  seq: number;
  /** The epoch the entry was published at. */
  epoch: number;
  /** What the opaque payload is. */
  kind: EntryKind;
  /** The 16-byte publish id chosen by the sender. */
  id: Uint8Array;
  /** When the relay appended it, in milliseconds since the Unix epoch. */
  time: number;
  /** The opaque (MLS ciphertext) payload. */
  payload: Uint8Array;
}

/** What `append` is given. */
export interface AppendInput {
  /** The 16-byte publish id; a second append with the same id returns the first result. */
  id: Uint8Array;
  /** The entry kind. */
  kind: EntryKind;
  /** The epoch the entry was built on. */
  epoch: number;
  /** The opaque payload. */
  payload: Uint8Array;
  /** The append time in milliseconds since the Unix epoch. */
  time: number;
}

/**
 * The result of `append`. On success `epoch` is the epoch after the entry:
 * for a commit the new epoch (its epoch + 1), otherwise the entry's own epoch.
 * On failure `epoch` is the channel's current epoch (0 for an unknown channel).
 */
export type AppendResult =
  | { ok: true; seq: number; epoch: number }
  | { ok: false; code: "stale_epoch" | "unknown_channel"; epoch: number };

/** One mailbox item. */
export interface MailboxEntry {
  /** The 16-byte id chosen by the sender. */
  id: Uint8Array;
  /** The opaque blob. */
  payload: Uint8Array;
  /**
   * Set by `mailboxTake`: names the lease this take holds on the item, for
   * {@linkcode RelayLog.mailboxRelease}. Opaque; its form is the log's own.
   */
  lease?: string;
}

/**
 * How much one `mailboxTake` may return: items are added oldest first while
 * the sum of their payload lengths plus `perItemBytes` each stays at or under
 * `maxBytes`. The first item is always returned, however large, so a take
 * never stalls on one item. What is not returned stays unleased.
 */
export interface MailboxPage {
  /** The budget, in bytes. */
  maxBytes: number;
  /** What each item costs besides its payload (its framing). */
  perItemBytes: number;
}

/**
 * Whether one more item of `payloadBytes` still fits a page that already
 * holds `count` items of `used` bytes (always for the first item).
 *
 * @param page The page limit, if any.
 * @param count Items already in the page.
 * @param used Bytes they take, framing included.
 * @param payloadBytes The next item's payload length.
 * @returns Whether to add it.
 */
export function fitsPage(
  page: MailboxPage | undefined,
  count: number,
  used: number,
  payloadBytes: number,
): boolean {
  return page === undefined || count === 0 ||
    used + payloadBytes + page.perItemBytes <= page.maxBytes;
}

/** A lease that `mailboxTake` handed out, as given back to {@linkcode RelayLog.mailboxRelease}. */
export interface MailboxLease {
  /** The item's 16-byte id. */
  id: Uint8Array;
  /** The `lease` of the taken {@linkcode MailboxEntry}. */
  lease: string;
}

/**
 * How long a mailbox take leases its items when nobody says otherwise, in ms:
 * unacked items are handed out again after it.
 */
export const DEFAULT_MAILBOX_LEASE_MS = 30_000;

/**
 * How long a channel keeps its entries. Retention deletes `application` and
 * `proposal` entries only: `commit` entries are kept for as long as the
 * channel exists, because every member needs every commit to follow the
 * channel's epochs. A member that was away longer than the retention thus
 * misses the messages trimmed meanwhile but still resumes and decrypts what
 * came after. Seqs are never renumbered; trimming leaves gaps that readers
 * skip.
 */
export interface Retention {
  /** Keep the newest N seqs of a channel: entries with seq <= head - N are trimmed. */
  maxCount?: number;
  /** Trim entries older than this, in ms (applied by {@linkcode RelayLog.trim}). */
  maxAgeMs?: number;
}

/** A relay's storage. Implementations serialise their own writes. */
export interface RelayLog {
  /**
   * Whether `append` fixes an entry's place among a channel's entries when it
   * is called, not when it settles: appends called one after another (without
   * waiting) are sequenced in call order. The relay then starts a
   * connection's next frame as soon as a publish is handed to the log, and
   * acks in order as the appends settle, so one connection can have many
   * publishes in one write. Optional: unset, the relay waits for each publish
   * of a connection to settle before the next.
   */
  readonly sequencesOnCall?: boolean;
  /**
   * Creates a channel at epoch 0 with no entries.
   *
   * @param channel The channel name.
   * @returns `false` if it already existed.
   */
  create(channel: string): Promise<boolean>;
  /**
   * Reads a channel's epoch and head.
   *
   * @param channel The channel name.
   * @returns The channel's epoch and head seq (0 when empty), or `undefined` if unknown.
   */
  info(channel: string): Promise<{ epoch: number; head: number } | undefined>;
  /**
   * Appends an entry. A commit is accepted only at the channel's epoch and then
   * advances it; other kinds are stored with their epoch whatever it is.
   * Idempotent by `id`: a repeated id returns the original result and stores nothing.
   *
   * @param channel The channel name.
   * @param e The entry.
   * @returns The assigned seq and epoch, or why it was refused.
   */
  append(channel: string, e: AppendInput): Promise<AppendResult>;
  /**
   * Reads entries from a seq on.
   *
   * @param channel The channel name.
   * @param fromSeq The first seq wanted.
   * @param limit The most entries returned.
   * @returns Entries with seq >= `fromSeq`, in seq order (empty for an unknown channel);
   *   seqs trimmed by retention are skipped.
   */
  read(channel: string, fromSeq: number, limit: number): Promise<LogEntry[]>;
  /**
   * The seq where an epoch starts: 1 for epoch 0, otherwise the seq after the
   * commit that created it. For an epoch not reached yet, the seq after the head.
   *
   * @param channel The channel name.
   * @param epoch The epoch.
   * @returns A seq (1 for an unknown channel).
   */
  firstSeqOfEpoch(channel: string, epoch: number): Promise<number>;
  /**
   * Queues a blob for an address; a repeated id for the same address is ignored.
   *
   * @param address The mailbox address.
   * @param id The 16-byte item id.
   * @param payload The opaque blob.
   * @param expiresAt When it expires, in milliseconds since the Unix epoch.
   */
  mailboxPut(
    address: string,
    id: Uint8Array,
    payload: Uint8Array,
    expiresAt: number,
  ): Promise<void>;
  /**
   * Returns the unexpired items of an address that no lease holds, oldest
   * first, and leases them until `now + leaseMs`: until then no other take
   * returns them. They are deleted only by {@linkcode mailboxAck}; an item
   * whose lease lapses (or is released) is handed out again. Across every
   * process sharing the storage, one lease of an item is held at a time.
   *
   * @param address The mailbox address.
   * @param now The current time in milliseconds since the Unix epoch.
   * @param leaseMs How long the lease lasts (default {@linkcode DEFAULT_MAILBOX_LEASE_MS}).
   * @param page At most this much (oldest first; see {@linkcode MailboxPage}); default: all.
   * @returns The items, each with its `lease`.
   */
  mailboxTake(
    address: string,
    now: number,
    leaseMs?: number,
    page?: MailboxPage,
  ): Promise<MailboxEntry[]>;
  /**
   * Deletes items of an address for good, leased or not. Ids that are unknown
   * or already deleted are skipped.
   *
   * @param address The mailbox address.
   * @param ids The 16-byte item ids.
   * @returns How many items were deleted.
   */
  mailboxAck(address: string, ids: readonly Uint8Array[]): Promise<number>;
  /**
   * Ends leases early (their taker is gone), so the next take returns the
   * items. A lease that already lapsed, was taken over by another take or
   * whose item was acked is left alone.
   *
   * @param address The mailbox address.
   * @param leases The items and the leases `mailboxTake` returned for them.
   */
  mailboxRelease(address: string, leases: readonly MailboxLease[]): Promise<void>;
  /**
   * Applies age retention: deletes the non-commit entries older than the
   * configured age (count retention is applied on append). Optional: a log
   * without retention need not implement it.
   *
   * @param now The current time in milliseconds since the Unix epoch.
   * @returns How many entries were deleted.
   */
  trim?(now: number): Promise<number>;
  /**
   * Follows appends made by any process sharing this storage (a relay cluster).
   * Optional: a log only one relay writes to need not implement it. Delivery
   * is best effort; a relay fills gaps by reading the log.
   *
   * @param channel The channel name.
   * @param onAppend Called with each entry appended from now on.
   * @returns Once watching, a function that stops it.
   */
  watch?(channel: string, onAppend: (e: LogEntry) => void): Promise<() => void>;
  /**
   * Checks that the storage can serve requests now (`GET /healthz`).
   * Optional: a log in this process's own files need not implement it.
   *
   * @throws {RelayError} `relay_unavailable`, saying what is wrong.
   */
  health?(): Promise<void>;
  /** Releases the storage; further calls fail. */
  close(): Promise<void>;
}
