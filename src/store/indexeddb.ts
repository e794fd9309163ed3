/**
 * A {@linkcode Store} in a browser's IndexedDB, so an agent in a tab keeps its
 * identity key, channels, key packages and delivery state across reloads.
 *
 * Layout: one database per identity, `skytale/<identity>` (two identities in
 * one origin never share records), with four object stores: `channels` (keyed
 * by channel name), `keypackages` (by ref), `blobs` (by name) and `journal`
 * (auto-numbered entries, indexed by channel, so a channel's journal reads back
 * in append order). Records are kept as structured clones: their `Uint8Array`
 * fields are stored as they are, not as hex.
 *
 * Durability: every write is one transaction and resolves on its `complete`
 * event, so a write that resolved survives the tab being closed or reloaded,
 * and writes land in the order they were made (IndexedDB runs transactions
 * over the same store in creation order). A write the {@linkcode Store}
 * contract calls durable uses `durability: "strict"` (flushed to disk before
 * `complete`); the others `"relaxed"` (whole and ordered, maybe lost with the
 * machine's power). Each journal append is its own transaction.
 *
 * One holder: `open()` takes the Web Lock named like the database
 * (`navigator.locks`), so a second tab, worker or store object of the same
 * identity in the same origin gets `in_use` instead of forking the MLS state.
 * The lock goes with `close()` or with the tab; `open()` waits up to a second
 * for it, the time a reloaded or closing page takes to let go. Where Web Locks
 * are missing (no secure context, an old browser) nothing is checked.
 *
 * @module
 */
import { StateError, ValidationError } from "../errors.ts";
import type { ChannelRecord, JournalEntry, KeyPackageRecord, Store } from "./types.ts";

const VERSION = 1;
/** How long `open()` waits for a holder that is going away (a reloading or closing tab). */
const LOCK_WAIT_MS = 1_000;
const CHANNELS = "channels";
const KEY_PACKAGES = "keypackages";
const BLOBS = "blobs";
const JOURNAL = "journal";
const BY_CHANNEL = "channel";

/** A journal entry as stored: which channel it belongs to, and the entry. */
interface JournalRow {
  channel: string;
  entry: JournalEntry;
}

/**
 * Keeps one identity's state in IndexedDB, in the database
 * `skytale/<identity>`. Give it to a manager of the same identity.
 *
 * @example
 * ```ts ignore
 * import { IndexedDbStore, SkytaleChannelManager } from "@skytale/mcp";
 *
 * // In a page served from https:// or http://127.0.0.1 (a secure context).
 * const agent = new SkytaleChannelManager({
 *   identity: "alice",
 *   endpoint: "wss://relay.example.com",
 *   store: new IndexedDbStore("alice"),
 * });
 * // After a reload, the same code resumes: same did, same channels, nothing delivered twice.
 * console.log((await agent.whoami()).did);
 * ```
 */
export class IndexedDbStore implements Store {
  #name: string;
  #db: Promise<IDBDatabase> | undefined;
  #unlock: (() => Promise<void>) | undefined;

  /**
   * Creates a store for one identity (nothing is opened until first use).
   *
   * @param identity The identity whose state this is: the manager's `identity`.
   * @throws {ValidationError} `invalid_argument` where there is no IndexedDB (not a browser).
   */
  constructor(identity: string) {
    if (typeof identity !== "string" || identity === "") {
      throw new ValidationError("invalid_argument", "IndexedDbStore needs an identity");
    }
    if (typeof globalThis.indexedDB === "undefined") {
      throw new ValidationError(
        "invalid_argument",
        "IndexedDbStore needs IndexedDB, which this runtime lacks: use it in a browser, and FileStore or MemoryStore elsewhere",
      );
    }
    this.#name = `skytale/${identity}`;
  }

  /** The IndexedDB database (and Web Lock) name: `skytale/<identity>`. */
  get database(): string {
    return this.#name;
  }

  /**
   * Claims the identity's state for this store object with a Web Lock (waiting
   * up to a second for a holder that is going away), and opens the database.
   * Claiming again while it holds the lock does nothing.
   *
   * @throws {StateError} `in_use` while another tab, worker or store object holds it.
   */
  async open(): Promise<void> {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (locks && !this.#unlock) {
      let release!: () => void;
      const held = new Promise<void>((resolve) => release = resolve);
      let done!: Promise<void>;
      const got = await new Promise<boolean>((resolve, reject) => {
        // Not `ifAvailable`: a page that is reloaded asks while the old page's lock is being
        // released (the browser drops it when the old document goes), so a short wait is allowed.
        done = locks.request(this.#name, { signal: AbortSignal.timeout(LOCK_WAIT_MS) }, () => {
          resolve(true);
          return held;
        });
        done.catch((e) => {
          const waited = e instanceof DOMException &&
            (e.name === "TimeoutError" || e.name === "AbortError");
          if (waited) resolve(false);
          else reject(e);
        });
      });
      if (!got) {
        throw new StateError(
          "in_use",
          `The state in IndexedDB "${this.#name}" is in use by another tab, worker or store of this origin: close it, or use another identity`,
        );
      }
      this.#unlock = async () => {
        release();
        await done;
      };
    }
    await this.#open();
  }

  /** Closes the database and releases the lock taken by {@linkcode IndexedDbStore.open}. */
  async close(): Promise<void> {
    const db = this.#db;
    this.#db = undefined;
    // close() lets transactions already made finish; the next use opens the database again.
    if (db) (await db.catch(() => undefined))?.close();
    const unlock = this.#unlock;
    this.#unlock = undefined;
    await unlock?.();
  }

  #open(): Promise<IDBDatabase> {
    if (this.#db) return this.#db;
    const opening = new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(this.#name, VERSION);
      req.onupgradeneeded = (ev) => {
        const db = req.result;
        if (ev.oldVersion < 1) {
          db.createObjectStore(CHANNELS, { keyPath: "channel" });
          db.createObjectStore(KEY_PACKAGES, { keyPath: "ref" });
          db.createObjectStore(BLOBS);
          db.createObjectStore(JOURNAL, { autoIncrement: true })
            .createIndex(BY_CHANNEL, "channel");
        }
      };
      req.onsuccess = () => {
        const db = req.result;
        // Another tab upgrading the schema, or the browser clearing site data: let go, reopen later.
        const forget = () => {
          if (this.#db === opening) this.#db = undefined;
          db.close();
        };
        db.onversionchange = forget;
        db.onclose = forget;
        resolve(db);
      };
      req.onerror = () => reject(req.error);
      req.onblocked = () =>
        reject(
          new StateError(
            "in_use",
            `IndexedDB "${this.#name}" is held open by an older version of this page in another tab: close it`,
          ),
        );
    });
    this.#db = opening;
    opening.catch(() => {
      if (this.#db === opening) this.#db = undefined;
    });
    return opening;
  }

  /**
   * Runs one transaction; resolves on its `complete` event with what `body` left.
   */
  async #tx<T>(
    stores: string[],
    mode: IDBTransactionMode,
    body: (tx: IDBTransaction) => () => T,
    durable = true,
  ): Promise<T> {
    const db = await this.#open();
    const tx = db.transaction(stores, mode, { durability: durable ? "strict" : "relaxed" });
    const result = body(tx);
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new DOMException("Transaction aborted", "AbortError"));
    });
    return result();
  }

  /**
   * Loads every stored channel.
   *
   * @returns Every stored channel, by name.
   * @throws {StateError} `state_corrupt` naming a record that is not a channel record.
   */
  async loadChannels(): Promise<ChannelRecord[]> {
    const rows = await this.#tx([CHANNELS], "readonly", (tx) => {
      const req = tx.objectStore(CHANNELS).getAll();
      return () => req.result as unknown[];
    });
    return rows.map((r) => checkChannel(r, this.#name));
  }

  /**
   * Writes one channel record in one transaction.
   *
   * @param record The record to write.
   * @param options `durable: false` skips the flush to disk (still atomic and ordered).
   */
  async saveChannel(record: ChannelRecord, options: { durable?: boolean } = {}): Promise<void> {
    const value = own(record);
    await this.#tx([CHANNELS], "readwrite", (tx) => {
      tx.objectStore(CHANNELS).put(value);
      return () => undefined;
    }, options.durable ?? true);
  }

  /**
   * Removes a channel record and its journal, in one transaction.
   *
   * @param channel The channel whose record is removed.
   */
  async deleteChannel(channel: string): Promise<void> {
    await this.#tx([CHANNELS, JOURNAL], "readwrite", (tx) => {
      tx.objectStore(CHANNELS).delete(channel);
      deleteJournal(tx, channel);
      return () => undefined;
    });
  }

  /**
   * Appends one entry to a channel's journal, in its own transaction.
   *
   * @param channel The channel.
   * @param entry What to append.
   * @param options `durable: true` resolves once the entry is flushed to disk.
   */
  async appendJournal(
    channel: string,
    entry: JournalEntry,
    options: { durable?: boolean } = {},
  ): Promise<void> {
    const row: JournalRow = { channel, entry: own(entry) };
    await this.#tx([JOURNAL], "readwrite", (tx) => {
      tx.objectStore(JOURNAL).add(row);
      return () => undefined;
    }, options.durable ?? false);
  }

  /**
   * Reads a channel's journal.
   *
   * @param channel The channel.
   * @returns Its entries, oldest first.
   * @throws {StateError} `state_corrupt` naming an entry that is not a journal entry.
   */
  async loadJournal(channel: string): Promise<JournalEntry[]> {
    const rows = await this.#tx([JOURNAL], "readonly", (tx) => {
      // An index lists equal keys by primary key: the auto numbers, i.e. append order.
      const req = tx.objectStore(JOURNAL).index(BY_CHANNEL).getAll(channel);
      return () => req.result as unknown[];
    });
    return rows.map((row) => {
      const entry = (row as Partial<JournalRow> | null)?.entry;
      if (!isObject(row) || !isObject(entry)) {
        throw new StateError(
          "state_corrupt",
          `Journal of channel "${channel}" in IndexedDB "${this.#name}" holds an entry that is not an object`,
        );
      }
      return entry;
    });
  }

  /**
   * Empties a channel's journal in one transaction.
   *
   * @param channel The channel.
   */
  async clearJournal(channel: string): Promise<void> {
    await this.#tx([JOURNAL], "readwrite", (tx) => {
      deleteJournal(tx, channel);
      return () => undefined;
    });
  }

  /**
   * Loads every pending key package.
   *
   * @returns Every pending key package.
   * @throws {StateError} `state_corrupt` naming a record that is not a key package record.
   */
  async loadKeyPackages(): Promise<KeyPackageRecord[]> {
    const rows = await this.#tx([KEY_PACKAGES], "readonly", (tx) => {
      const req = tx.objectStore(KEY_PACKAGES).getAll();
      return () => req.result as unknown[];
    });
    return rows.map((r) => checkKeyPackage(r, this.#name));
  }

  /**
   * Keeps a key package until a Welcome uses it.
   *
   * @param record The key package to keep.
   */
  async saveKeyPackage(record: KeyPackageRecord): Promise<void> {
    const value = own(record);
    await this.#tx([KEY_PACKAGES], "readwrite", (tx) => {
      tx.objectStore(KEY_PACKAGES).put(value);
      return () => undefined;
    });
  }

  /**
   * Deletes a used key package.
   *
   * @param ref The key package to delete.
   */
  async deleteKeyPackage(ref: string): Promise<void> {
    await this.#tx([KEY_PACKAGES], "readwrite", (tx) => {
      tx.objectStore(KEY_PACKAGES).delete(ref);
      return () => undefined;
    });
  }

  /**
   * Reads a named blob.
   *
   * @param name The blob's name.
   * @returns Its bytes, if stored.
   * @throws {StateError} `state_corrupt` if what is stored under the name is not bytes.
   */
  async loadBlob(name: string): Promise<Uint8Array | undefined> {
    const value = await this.#tx([BLOBS], "readonly", (tx) => {
      const req = tx.objectStore(BLOBS).get(name);
      return () => req.result as unknown;
    });
    if (value === undefined || value instanceof Uint8Array) return value;
    throw new StateError(
      "state_corrupt",
      `Stored blob "${name}" in IndexedDB "${this.#name}" is not bytes`,
    );
  }

  /**
   * Writes a named blob in one transaction.
   *
   * @param name The blob's name.
   * @param data Its bytes.
   */
  async saveBlob(name: string, data: Uint8Array): Promise<void> {
    const value = data.slice();
    await this.#tx([BLOBS], "readwrite", (tx) => {
      tx.objectStore(BLOBS).put(value, name);
      return () => undefined;
    });
  }
}

/** Deletes a channel's journal entries inside `tx` (the transaction waits for the cursor). */
function deleteJournal(tx: IDBTransaction, channel: string): void {
  const journal = tx.objectStore(JOURNAL);
  const req = journal.index(BY_CHANNEL).openKeyCursor(IDBKeyRange.only(channel));
  req.onsuccess = () => {
    const cursor = req.result;
    if (!cursor) return;
    journal.delete(cursor.primaryKey);
    cursor.continue();
  };
}

/**
 * A copy of a record whose byte arrays own their buffers: a structured clone
 * of a `subarray` view would store the whole underlying buffer.
 */
function own<T>(value: T): T {
  if (value instanceof Uint8Array) return value.slice() as T;
  if (Array.isArray(value)) return value.map(own) as T;
  if (isObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, own(v)])) as T;
  }
  return value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function corrupt(what: string, db: string, problem: string): StateError {
  return new StateError(
    "state_corrupt",
    `Stored ${what} in IndexedDB "${db}" is corrupt: ${problem}`,
  );
}

/** What the manager relies on in a channel record, checked as it is read. */
function checkChannel(r: unknown, db: string): ChannelRecord {
  if (!isObject(r) || typeof r.channel !== "string") {
    throw corrupt("channel record", db, "it has no channel name");
  }
  const what = `channel "${r.channel}"`;
  if (!(r.group instanceof Uint8Array)) throw corrupt(what, db, `"group" is not bytes`);
  if (!Number.isSafeInteger(r.cursor) || (r.cursor as number) < 0) {
    throw corrupt(what, db, `"cursor" is not a seq`);
  }
  if (!Array.isArray(r.buffer) || !r.buffer.every(isObject)) {
    throw corrupt(what, db, `"buffer" is not a list of messages`);
  }
  if (typeof r.active !== "boolean") throw corrupt(what, db, `"active" is not a boolean`);
  const p = r.pending;
  if (
    p !== undefined &&
    !(isObject(p) && p.commit instanceof Uint8Array && p.group instanceof Uint8Array)
  ) {
    throw corrupt(what, db, `"pending" is not a pending commit`);
  }
  return r as unknown as ChannelRecord;
}

/** What the manager relies on in a key package record, checked as it is read. */
function checkKeyPackage(r: unknown, db: string): KeyPackageRecord {
  if (!isObject(r) || typeof r.ref !== "string") {
    throw corrupt("key package", db, "it has no ref");
  }
  if (!(r.keyPackage instanceof Uint8Array) || !(r.privateKey instanceof Uint8Array)) {
    throw corrupt(`key package "${r.ref}"`, db, "its key package or private key is not bytes");
  }
  return r as unknown as KeyPackageRecord;
}
