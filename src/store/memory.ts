/**
 * A {@linkcode Store} in memory, for tests and ephemeral agents.
 *
 * @module
 */
import type { ChannelRecord, JournalEntry, KeyPackageRecord, Store } from "./types.ts";

/** Keeps every record in memory (deep-copied on the way in and out). */
export class MemoryStore implements Store {
  #channels = new Map<string, ChannelRecord>();
  #keyPackages = new Map<string, KeyPackageRecord>();
  #blobs = new Map<string, Uint8Array>();
  #journals = new Map<string, JournalEntry[]>();

  /**
   * Loads every stored channel.
   *
   * @returns Every stored channel.
   */
  loadChannels(): Promise<ChannelRecord[]> {
    return Promise.resolve([...this.#channels.values()].map((r) => structuredClone(r)));
  }
  /**
   * Writes one channel record.
   *
   * @param record The record to keep.
   */
  saveChannel(record: ChannelRecord): Promise<void> {
    this.#channels.set(record.channel, structuredClone(record));
    return Promise.resolve();
  }
  /**
   * Removes a channel record.
   *
   * @param channel The channel to forget.
   */
  deleteChannel(channel: string): Promise<void> {
    this.#channels.delete(channel);
    this.#journals.delete(channel);
    return Promise.resolve();
  }
  /**
   * Appends to a channel's journal.
   *
   * @param channel The channel.
   * @param entry What to append.
   */
  appendJournal(channel: string, entry: JournalEntry): Promise<void> {
    const j = this.#journals.get(channel) ?? [];
    j.push(structuredClone(entry));
    this.#journals.set(channel, j);
    return Promise.resolve();
  }
  /**
   * Reads a channel's journal.
   *
   * @param channel The channel.
   * @returns Its entries, oldest first.
   */
  loadJournal(channel: string): Promise<JournalEntry[]> {
    return Promise.resolve(structuredClone(this.#journals.get(channel) ?? []));
  }
  /**
   * Empties a channel's journal.
   *
   * @param channel The channel.
   */
  clearJournal(channel: string): Promise<void> {
    this.#journals.delete(channel);
    return Promise.resolve();
  }
  /**
   * Loads every pending key package.
   *
   * @returns Every pending key package.
   */
  loadKeyPackages(): Promise<KeyPackageRecord[]> {
    return Promise.resolve([...this.#keyPackages.values()].map((r) => structuredClone(r)));
  }
  /**
   * Keeps a key package until a Welcome uses it.
   *
   * @param record The key package to keep.
   */
  saveKeyPackage(record: KeyPackageRecord): Promise<void> {
    this.#keyPackages.set(record.ref, structuredClone(record));
    return Promise.resolve();
  }
  /**
   * Deletes a used key package.
   *
   * @param ref The key package to forget.
   */
  deleteKeyPackage(ref: string): Promise<void> {
    this.#keyPackages.delete(ref);
    return Promise.resolve();
  }
  /**
   * Reads a named blob.
   *
   * @param name The blob's name.
   * @returns Its bytes, if stored.
   */
  loadBlob(name: string): Promise<Uint8Array | undefined> {
    const b = this.#blobs.get(name);
    return Promise.resolve(b && b.slice());
  }
  /**
   * Writes a named blob.
   *
   * @param name The blob's name.
   * @param data Its bytes.
   */
  saveBlob(name: string, data: Uint8Array): Promise<void> {
    this.#blobs.set(name, data.slice());
    return Promise.resolve();
  }
}
