/**
 * An in-memory {@linkcode RelayLog}, for tests and throwaway relays.
 *
 * @module
 */
import { RelayError } from "../../errors.ts";
import type { AppendInput, AppendResult, LogEntry, MailboxEntry, RelayLog } from "./types.ts";

interface _Channel {
  epoch: number;
  entries: LogEntry[];
  byId: Map<string, { seq: number; epoch: number }>;
  /** epoch → first seq of that epoch (epoch 0 starts at 1). */
  epochStarts: Map<number, number>;
}

interface _Item extends MailboxEntry {
  key: string;
  expiresAt: number;
}

function _key(id: Uint8Array): string {
  let s = "";
  for (const b of id) s += b.toString(16).padStart(2, "0");
  return s;
}

/** A relay log that lives in memory and is lost with the process. */
export class MemoryLog implements RelayLog {
  #channels = new Map<string, _Channel>();
  #mailboxes = new Map<string, _Item[]>();
  #closed = false;

  #check(): void {
    if (this.#closed) throw new RelayError("closed", "The relay log is closed");
  }

  /**
   * Creates a channel at epoch 0.
   *
   * @param channel The channel name.
   * @returns `false` if it already existed.
   */
  create(channel: string): Promise<boolean> {
    this.#check();
    if (this.#channels.has(channel)) return Promise.resolve(false);
    this.#channels.set(channel, {
      epoch: 0,
      entries: [],
      byId: new Map(),
      epochStarts: new Map([[0, 1]]),
    });
    return Promise.resolve(true);
  }

  /**
   * Reads a channel's epoch and head.
   *
   * @param channel The channel name.
   * @returns Its epoch and head, or `undefined`.
   */
  info(channel: string): Promise<{ epoch: number; head: number } | undefined> {
    this.#check();
    const c = this.#channels.get(channel);
    return Promise.resolve(c && { epoch: c.epoch, head: c.entries.length });
  }

  /**
   * Appends an entry (epoch-checked for commits, idempotent by id).
   *
   * @param channel The channel name.
   * @param e The entry.
   * @returns The result.
   */
  append(channel: string, e: AppendInput): Promise<AppendResult> {
    this.#check();
    const c = this.#channels.get(channel);
    if (!c) return Promise.resolve({ ok: false, code: "unknown_channel", epoch: 0 });
    const key = _key(e.id);
    const prior = c.byId.get(key);
    if (prior) return Promise.resolve({ ok: true, ...prior });
    if (e.kind === "commit" && e.epoch !== c.epoch) {
      return Promise.resolve({ ok: false, code: "stale_epoch", epoch: c.epoch });
    }
    const seq = c.entries.length + 1;
    c.entries.push({
      seq,
      epoch: e.epoch,
      kind: e.kind,
      id: e.id.slice(),
      time: e.time,
      payload: e.payload.slice(),
    });
    let epoch = e.epoch;
    if (e.kind === "commit") {
      c.epoch = epoch = e.epoch + 1;
      c.epochStarts.set(c.epoch, seq + 1);
    }
    c.byId.set(key, { seq, epoch });
    return Promise.resolve({ ok: true, seq, epoch });
  }

  /**
   * Reads entries from a seq on.
   *
   * @param channel The channel name.
   * @param fromSeq The first seq wanted.
   * @param limit The most entries returned.
   * @returns The entries.
   */
  read(channel: string, fromSeq: number, limit: number): Promise<LogEntry[]> {
    this.#check();
    const c = this.#channels.get(channel);
    if (!c) return Promise.resolve([]);
    const start = Math.max(1, fromSeq) - 1;
    return Promise.resolve(c.entries.slice(start, start + Math.max(0, limit)));
  }

  /**
   * Finds where an epoch starts.
   *
   * @param channel The channel name.
   * @param epoch The epoch.
   * @returns Its first seq.
   */
  firstSeqOfEpoch(channel: string, epoch: number): Promise<number> {
    this.#check();
    const c = this.#channels.get(channel);
    if (!c) return Promise.resolve(1);
    return Promise.resolve(c.epochStarts.get(epoch) ?? c.entries.length + 1);
  }

  /**
   * Queues a blob for an address.
   *
   * @param address The mailbox address.
   * @param id The item id.
   * @param payload The blob.
   * @param expiresAt Expiry, ms since the Unix epoch.
   */
  mailboxPut(
    address: string,
    id: Uint8Array,
    payload: Uint8Array,
    expiresAt: number,
  ): Promise<void> {
    this.#check();
    const key = _key(id);
    let box = this.#mailboxes.get(address);
    if (!box) this.#mailboxes.set(address, box = []);
    if (!box.some((i) => i.key === key)) {
      box.push({ key, id: id.slice(), payload: payload.slice(), expiresAt });
    }
    return Promise.resolve();
  }

  /**
   * Removes and returns the unexpired blobs of an address.
   *
   * @param address The mailbox address.
   * @param now Now, ms since the Unix epoch.
   * @returns The unexpired items.
   */
  mailboxTake(address: string, now: number): Promise<MailboxEntry[]> {
    this.#check();
    const box = this.#mailboxes.get(address) ?? [];
    this.#mailboxes.delete(address);
    return Promise.resolve(
      box.filter((i) => i.expiresAt > now).map((i) => ({ id: i.id, payload: i.payload })),
    );
  }

  /** Drops everything. */
  close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    this.#mailboxes.clear();
    return Promise.resolve();
  }
}
