/**
 * The client-side persistence contract: what a {@linkcode Store} keeps so a
 * restarted process loses nothing it had acknowledged. `mod.ts` exports these
 * record types only for whoever implements a custom `Store`; applications
 * see `Message` and `ChannelSummary` (`src/channel/types.ts`) instead.
 *
 * @module
 */

/** A decrypted message waiting for `receive()`. */
export interface StoredMessage {
  /** The sender's identity, from its MLS credential. */
  sender: string;
  /** The sender's did (absent in records written before identities were keys). */
  senderId?: string | undefined;
  /** The relay's sequence number of the message. */
  seq: number;
  /** When the relay stored it, as an ISO-8601 string. */
  time: string;
  /** The text. */
  text: string;
}

/** A commit published but not yet known to be applied (survives a crash). */
export interface PendingCommit {
  /** The publish id, hex. */
  id: string;
  /** The epoch the commit was built on. */
  epoch: number;
  /** The commit message bytes. */
  commit: Uint8Array;
  /** The encoded group state to adopt once the relay has sequenced the commit. */
  group: Uint8Array;
  /** For a commit that adds a member: the Welcome to remember once it is sequenced. */
  welcome?: RememberedWelcome | undefined;
}

/** A Welcome this member made, kept so a repeated `addMember` can return it again. */
export interface RememberedWelcome {
  /** SHA-256 of the key package it admits, hex. */
  keyPackage: string;
  /** The identity it admits. */
  identity: string;
  /** The Welcome. */
  welcome: Uint8Array;
}

/** Everything kept for one channel. */
export interface ChannelRecord {
  /** The channel name. */
  channel: string;
  /** The encoded MLS group state. */
  group: Uint8Array;
  /** The last relay seq processed (0 = none yet). */
  cursor: number;
  /** Messages decrypted but not yet handed out by `receive()`. */
  buffer: StoredMessage[];
  /** A commit in flight, if any. */
  pending?: PendingCommit | undefined;
  /** False once this member was removed or left. */
  active: boolean;
  /** The channel's MLS ciphersuite, when not the manager's default. */
  suite?: string | undefined;
  /** What the journal held when this record was written: generations reserved for sending. */
  reserved?: { epoch: number; gen: number } | undefined;
  /** Chat messages up to this seq were handed out already… */
  delivered?: number | undefined;
  /** …but for these, still in the buffer (a filtered consumer took messages after them). */
  held?: number[] | undefined;
  /** Entries up to this seq were handed to tag handlers already. */
  tapped?: number | undefined;
  /** Member name → the did first seen for it in this channel (known-hosts style pinning). */
  pins?: Record<string, string> | undefined;
  /**
   * Publish ids (hex) of this member's own entries not yet read back from the
   * relay: MLS cannot decrypt a message for its own sender, so these are
   * recognised and skipped, also after a restart.
   */
  sent?: string[] | undefined;
  /**
   * The Welcomes of this member's last sequenced adds (newest last, a few):
   * an `addMember` repeated with the same key package, e.g. after a crash
   * lost the first answer, returns the same Welcome instead of failing.
   */
  welcomes?: RememberedWelcome[] | undefined;
  /**
   * Set when the record was read from its backup copy: the lost newer copy may
   * have sent messages with keys this state would use again, so this member
   * must move to a new epoch (a key update) before it sends in this one.
   * Cleared by the next epoch change.
   */
  recovered?: boolean | undefined;
}

/** A key package whose private part waits for a Welcome. */
export interface KeyPackageRecord {
  /** The KeyPackageRef, hex. */
  ref: string;
  /** The public key package message. */
  keyPackage: Uint8Array;
  /** The private part (engine encoding). */
  privateKey: Uint8Array;
  /** Creation time, ms since the epoch. */
  created: number;
}

/**
 * A small record appended to a channel's journal between snapshots of its
 * record, so that a message costs a few bytes on disk instead of a rewrite of
 * the whole group state (see `docs/DECISIONS.md`, "Durability per burst").
 */
export interface JournalEntry {
  /** Application generations below `gen` at `epoch` may have been used by this member's sends. */
  reserve?: { epoch: number; gen: number } | undefined;
  /** Chat messages up to this seq were handed to the application (`receive()`)… */
  delivered?: number | undefined;
  /**
   * …but for these seqs, still buffered (the last entry that carries `delivered`
   * says which; none listed means none).
   */
  held?: number[] | undefined;
  /** Entries up to this seq were handed to tag handlers (the MCP transport). */
  tapped?: number | undefined;
}

/** Durable storage for one identity. */
export interface Store {
  /** Claims the state for this process (a store on disk refuses a second live process). */
  open?(): Promise<void>;
  /** Releases what `open()` claimed. */
  close?(): Promise<void>;
  /** Every stored channel. */
  loadChannels(): Promise<ChannelRecord[]>;
  /**
   * Writes one channel's record atomically. `durable: false` may skip flushing
   * to disk (still atomic against a process crash): for state the relay can
   * replay, never for state that must survive a power loss (advanced send ratchets).
   */
  saveChannel(record: ChannelRecord, options?: { durable?: boolean }): Promise<void>;
  /** Removes a channel's record (and its journal). */
  deleteChannel(channel: string): Promise<void>;
  /**
   * Appends to a channel's journal. `durable: true` resolves once it is on
   * disk; otherwise it survives a process crash but maybe not a power loss.
   */
  appendJournal(
    channel: string,
    entry: JournalEntry,
    options?: { durable?: boolean },
  ): Promise<void>;
  /** A channel's journal since it was last cleared, oldest first (a torn last entry is dropped). */
  loadJournal(channel: string): Promise<JournalEntry[]>;
  /** Empties a channel's journal, once a durable record covers everything in it. */
  clearJournal(channel: string): Promise<void>;
  /** Every pending key package. */
  loadKeyPackages(): Promise<KeyPackageRecord[]>;
  /** Stores a key package's private part until it is used. */
  saveKeyPackage(record: KeyPackageRecord): Promise<void>;
  /** Deletes a used key package (a key package is never used twice). */
  deleteKeyPackage(ref: string): Promise<void>;
  /** Reads a small named blob (settings, invites). */
  loadBlob(name: string): Promise<Uint8Array | undefined>;
  /** Writes a small named blob atomically. */
  saveBlob(name: string, data: Uint8Array): Promise<void>;
}
