/**
 * The shared context's public types: entries, options, events, the
 * {@linkcode SharedContext} API, and what the context needs from its channel
 * manager ({@linkcode ContextHost}) and its store ({@linkcode BlobIo}).
 *
 * @module
 */
import type { Member } from "../identity.ts";

/** The layer tag of shared-context traffic. */
export const CONTEXT_TAG = "ctx";

/** Kinds of context entries. */
export const EntryTypes = {
  /** Free-form notes. */
  note: "note",
  /** A produced artifact (a file, a result, a link). */
  artifact: "artifact",
  /** A piece of work. */
  task: "task",
  /** A task handed from one member to another (see `handoff`). */
  handoff: "handoff",
  /** A decision taken. */
  decision: "decision",
} as const;

/** The kind of a context entry. */
export type EntryType = typeof EntryTypes[keyof typeof EntryTypes];

/** The largest JSON of one entry's value. */
export const MAX_VALUE_BYTES = 64 * 1024;

/** An entry as the API returns it. */
export interface ContextEntry {
  /** The key. */
  key: string;
  /** Its kind. */
  type: EntryType;
  /** The value (any JSON). */
  value: unknown;
  /** Who wrote this version: name and did. */
  author: { name: string; did: string };
  /** When it was written (the writer's clock), ISO-8601. */
  updated: string;
  /** When it expires, ISO-8601, if it has a TTL. */
  expires?: string;
  /** The dids it is readable by, if restricted. */
  visibleTo?: string[];
  /** For a handoff: the did of the member it is handed to. */
  to?: string;
}

/** Options of {@linkcode SharedContext.set}. */
export interface SetOptions {
  /** The entry's kind (default `note`). */
  type?: EntryType;
  /** Names or dids of the members who may read the value (the writer always can). */
  visibleTo?: string[];
  /** Seconds until the entry disappears. */
  ttl?: number;
}

/** What a subscriber of {@linkcode SharedContext.subscribe} is told. */
export interface ContextEvent {
  /** `set` or `delete` for any change, `handoff` when a task is handed to this member. */
  kind: "set" | "delete" | "handoff";
  /** The key. */
  key: string;
  /** The entry after the change (undefined after a delete or when not readable here). */
  entry?: ContextEntry | undefined;
  /** Whether another member made the change (false for this member's own writes). */
  remote: boolean;
}

/** A channel's shared context, as `SkytaleChannelManager.context(channel)` returns it. */
export interface SharedContext {
  /**
   * Reads an entry.
   *
   * @param key The key.
   * @returns The entry, or undefined if absent, deleted, expired or not readable by this member.
   */
  get(key: string): Promise<ContextEntry | undefined>;
  /**
   * Writes an entry; resolves once it is stored locally. It reaches the other
   * members as soon as the relay takes it (see {@linkcode SharedContext.synced}).
   *
   * @param key The key.
   * @param value Any JSON value.
   * @param options Type, visibility and TTL.
   * @returns The entry written.
   */
  set(key: string, value: unknown, options?: SetOptions): Promise<ContextEntry>;
  /**
   * Deletes an entry.
   *
   * @param key The key.
   * @returns True if there was a live entry.
   */
  delete(key: string): Promise<boolean>;
  /**
   * Lists the live entries readable by this member, by key.
   *
   * @param options Only entries of one `type`, or whose key starts with `prefix`.
   * @returns The entries.
   */
  list(options?: { type?: EntryType; prefix?: string }): Promise<ContextEntry[]>;
  /**
   * Hands a task to another member: a `handoff` entry naming it, which fires a
   * `handoff` event at the recipient.
   *
   * @param to The recipient's name or did.
   * @param task What to do.
   * @param options What was `tried` already; `visibleTo` to restrict it (the recipient is added); `ttl`.
   * @returns The entry.
   */
  handoff(
    to: string,
    task: string,
    options?: { tried?: string[]; visibleTo?: string[]; ttl?: number },
  ): Promise<ContextEntry>;
  /**
   * Calls `handler` for every change, local or remote.
   *
   * @param handler The handler.
   * @returns A function that unsubscribes.
   */
  subscribe(handler: (e: ContextEvent) => void): () => void;
  /**
   * Waits until every write of this member has been taken by the relay.
   *
   * @param timeoutMs How long to wait (default 30 s).
   * @returns True if nothing is left to send.
   */
  synced(timeoutMs?: number): Promise<boolean>;
}

/** What the context needs from its channel manager. */
export interface ContextHost {
  /** Sends bytes on a channel under a tag. */
  sendTagged(channel: string, tag: string, data: Uint8Array): Promise<{ seq: number }>;
  /** The channel's members. */
  roster(channel: string): Promise<Member[]>;
  /** This agent. */
  whoami(): Promise<Member>;
  /** Opens an HPKE box sealed to this agent's did. */
  openSealed(box: Uint8Array, info: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}

/** The data a tag handler receives. */
export interface ContextDelivery {
  /** The sender's name. */
  sender: string;
  /** The sender's did. */
  senderId: string;
  /** The relay's seq. */
  seq: number;
  /** The body. */
  data: Uint8Array;
}

/** Named blobs of the identity's store. */
export interface BlobIo {
  /** Reads a blob. */
  load(name: string): Promise<Uint8Array | undefined>;
  /** Writes a blob atomically. */
  save(name: string, data: Uint8Array): Promise<void>;
}
