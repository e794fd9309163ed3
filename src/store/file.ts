/**
 * A {@linkcode Store} on disk: one file per record under the identity's
 * directory, written atomically (temp file, fsync, rename) with owner-only
 * permissions, the previous good version kept as `.bak`.
 *
 * @module
 */
import { StateError } from "../errors.ts";
import { logLine } from "../runtime/env.ts";
import { decodeRecord, encodeRecord } from "./codec.ts";
import type { ChannelRecord, JournalEntry, KeyPackageRecord, Store } from "./types.ts";

const enc = new TextEncoder();

type Fs = typeof import("../runtime/fs.ts");
let fsModule: Promise<Fs> | undefined;

/**
 * The file layer (`node:fs`), loaded on first use: this module is part of the
 * SDK's static graph, which also loads in a browser, where no FileStore is used.
 */
function files(): Promise<Fs> {
  fsModule ??= import("../runtime/fs.ts");
  return fsModule;
}

/** Stores one identity's state under `dir`. */
export class FileStore implements Store {
  #dir: string;
  #ready: Promise<void> | undefined;
  /** Each channel's journal, kept open between appends. */
  #journals = new Map<string, import("../runtime/fs.ts").Appender>();

  /**
   * Creates a store over a directory.
   *
   * @param dir The identity's directory (created 0700 on first write).
   */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /**
   * Claims the identity's state for this process with a lock file holding its
   * pid: two live processes on one identity would fork its MLS state and reuse
   * keys. A lock left by a process that died is taken over. What the
   * directory already holds is made owner-only (files 0600, directories
   * 0700), whatever mode an older version or a copy left it with.
   *
   * @throws {StateError} `in_use` while another live process holds it.
   */
  async open(): Promise<void> {
    const fs = await files();
    await fs.ensureDir(this.#dir);
    await fs.restrictTree(this.#dir);
    const holder = await fs.acquireLockFile(fs.joinPath(this.#dir, "lock"));
    if (holder !== undefined) {
      throw new StateError(
        "in_use",
        `The state in "${this.#dir}" is in use by another running process${
          holder > 0 ? ` (pid ${holder})` : ""
        }: stop it, or use another identity or data directory`,
      );
    }
  }

  /** Releases the lock taken by {@linkcode FileStore.open}. */
  async close(): Promise<void> {
    const fs = await files();
    const journals = [...this.#journals.values()];
    this.#journals.clear();
    await Promise.all(journals.map((j) => j.close()));
    await fs.releaseLockFile(fs.joinPath(this.#dir, "lock"));
  }

  /** The directory this store writes to. */
  get dir(): string {
    return this.#dir;
  }

  #ensure(): Promise<void> {
    this.#ready ??= (async () => {
      const fs = await files();
      for (const sub of ["channels", "keypackages", "blobs"]) {
        await fs.ensureDir(fs.joinPath(this.#dir, sub));
      }
    })();
    return this.#ready;
  }

  async #write(sub: string, name: string, value: unknown, sync = true): Promise<void> {
    const fs = await files();
    await this.#ensure();
    await fs.writeFileAtomic(fs.joinPath(this.#dir, sub, name), await encodeRecord(value), {
      backup: true,
      sync,
    });
  }

  async #read<T>(
    sub: string,
    name: string,
    onRecovered?: () => void,
  ): Promise<T | undefined> {
    const fs = await files();
    const file = fs.joinPath(this.#dir, sub, name);
    const main = await fs.readFileIfExists(file);
    let firstError: unknown;
    if (main !== undefined) {
      try {
        return await decodeRecord<T>(main, file);
      } catch (e) {
        firstError = e;
      }
    }
    const bak = await fs.readFileIfExists(file + ".bak");
    if (bak === undefined) {
      if (firstError) throw firstError;
      return undefined;
    }
    try {
      const value = await decodeRecord<T>(bak, file + ".bak");
      onRecovered?.();
      logLine(
        `skytale: ${
          firstError instanceof Error ? firstError.message : `"${file}" is missing`
        }; recovered the previous good copy from "${file}.bak"`,
      );
      return value;
    } catch (e) {
      throw firstError ??
        new StateError("state_corrupt", `Stored state "${file}" and its backup are corrupt`, {
          cause: e,
        });
    }
  }

  async #names(sub: string): Promise<string[]> {
    const fs = await files();
    const names = new Set<string>();
    for (const n of await fs.listDir(fs.joinPath(this.#dir, sub))) {
      if (n.startsWith(".")) continue;
      if (n.endsWith(".json")) names.add(n);
      else if (n.endsWith(".json.bak")) names.add(n.slice(0, -4));
    }
    return [...names].sort();
  }

  async #remove(sub: string, name: string): Promise<void> {
    const fs = await files();
    const file = fs.joinPath(this.#dir, sub, name);
    await fs.removeFile(file);
    await fs.removeFile(file + ".bak");
  }

  /**
   * Loads every stored channel.
   *
   * @returns Every stored channel.
   */
  async loadChannels(): Promise<ChannelRecord[]> {
    const out: ChannelRecord[] = [];
    for (const n of await this.#names("channels")) {
      let recovered = false;
      const r = await this.#read<ChannelRecord>("channels", n, () => recovered = true);
      if (r && recovered) r.recovered = true;
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Writes one channel record.
   *
   * @param record The record to write.
   * @param options `durable: false` skips the fsyncs (still atomic against a crash).
   */
  async saveChannel(record: ChannelRecord, options: { durable?: boolean } = {}): Promise<void> {
    await this.#write("channels", channelFile(record.channel), record, options.durable ?? true);
  }

  /**
   * Removes a channel record.
   *
   * @param channel The channel whose record is removed.
   */
  async deleteChannel(channel: string): Promise<void> {
    const fs = await files();
    await this.#remove("channels", channelFile(channel));
    await this.#closeJournal(channel);
    await fs.removeFile(this.#journalFile(fs, channel));
  }

  #journalFile(fs: Fs, channel: string): string {
    return fs.joinPath(this.#dir, "channels", `${enc.encode(channel).toHex()}.journal`);
  }

  /**
   * Appends one line to a channel's journal (`channels/<hex>.journal`).
   *
   * @param channel The channel.
   * @param entry What to append.
   * @param options `durable: true` flushes it to disk before resolving.
   */
  async appendJournal(
    channel: string,
    entry: JournalEntry,
    options: { durable?: boolean } = {},
  ): Promise<void> {
    const fs = await files();
    await this.#ensure();
    const line = enc.encode(JSON.stringify(entry) + "\n");
    let journal = this.#journals.get(channel);
    if (journal === undefined) {
      journal = new fs.Appender(this.#journalFile(fs, channel));
      this.#journals.set(channel, journal);
    }
    await journal.append(line, options.durable ?? false);
  }

  async #closeJournal(channel: string): Promise<void> {
    const journal = this.#journals.get(channel);
    this.#journals.delete(channel);
    await journal?.close();
  }

  /**
   * Reads a channel's journal; a line torn by a crash (the last one) is dropped.
   *
   * @param channel The channel.
   * @returns Its entries, oldest first.
   */
  async loadJournal(channel: string): Promise<JournalEntry[]> {
    const fs = await files();
    const bytes = await fs.readFileIfExists(this.#journalFile(fs, channel));
    if (bytes === undefined) return [];
    const out: JournalEntry[] = [];
    for (const line of new TextDecoder().decode(bytes).split("\n")) {
      if (line === "") continue;
      try {
        const e = JSON.parse(line) as JournalEntry;
        if (e !== null && typeof e === "object") out.push(e);
      } catch {
        // A torn append: everything before it is whole.
      }
    }
    return out;
  }

  /**
   * Empties a channel's journal.
   *
   * @param channel The channel.
   */
  async clearJournal(channel: string): Promise<void> {
    const fs = await files();
    await this.#closeJournal(channel);
    await fs.removeFile(this.#journalFile(fs, channel));
  }

  /**
   * Loads every pending key package.
   *
   * @returns Every pending key package.
   */
  async loadKeyPackages(): Promise<KeyPackageRecord[]> {
    const out: KeyPackageRecord[] = [];
    for (const n of await this.#names("keypackages")) {
      const r = await this.#read<KeyPackageRecord>("keypackages", n);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Keeps a key package until a Welcome uses it.
   *
   * @param record The key package to keep.
   */
  async saveKeyPackage(record: KeyPackageRecord): Promise<void> {
    await this.#write("keypackages", `${record.ref}.json`, record);
  }

  /**
   * Deletes a used key package.
   *
   * @param ref The key package to delete.
   */
  async deleteKeyPackage(ref: string): Promise<void> {
    await this.#remove("keypackages", `${ref}.json`);
  }

  /**
   * Reads a named blob.
   *
   * @param name The blob's name.
   * @returns Its bytes, if stored.
   */
  async loadBlob(name: string): Promise<Uint8Array | undefined> {
    const r = await this.#read<{ data: Uint8Array }>("blobs", `${blobFile(name)}.json`);
    return r?.data;
  }

  /**
   * Writes a named blob.
   *
   * @param name The blob's name.
   * @param data Its bytes.
   */
  async saveBlob(name: string, data: Uint8Array): Promise<void> {
    await this.#write("blobs", `${blobFile(name)}.json`, { data });
  }
}

function channelFile(channel: string): string {
  return `${enc.encode(channel).toHex()}.json`;
}

function blobFile(name: string): string {
  return enc.encode(name).toHex();
}
