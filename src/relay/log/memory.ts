/**
 * An in-memory {@linkcode RelayLog}, for tests and throwaway relays.
 *
 * @module
 */
import { InterruptedError } from "../../errors.ts";
import {
  type AppendInput,
  type AppendResult,
  DEFAULT_MAILBOX_LEASE_MS,
  type LogEntry,
  type MailboxEntry,
  type MailboxLease,
  type MailboxPage,
  type RelayLog,
  type Retention,
} from "./types.ts";
import { PageBudget } from "./_shared.ts";

interface _Channel {
  epoch: number;
  /** Index seq - 1; a trimmed entry leaves `undefined`. */
  entries: (LogEntry | undefined)[];
  /** Every seq up to this one has been considered for trimming. */
  trimmed: number;
  byId: Map<string, { seq: number; epoch: number }>;
  /** epoch → first seq of that epoch (epoch 0 starts at 1). */
  epochStarts: Map<number, number>;
}

interface _Item {
  key: string;
  id: Uint8Array;
  payload: Uint8Array;
  expiresAt: number;
  /** Leased until then (0: never leased, or released). */
  leaseUntil: number;
  /** Which take holds the lease. */
  lease: string;
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
  #leases = 0;
  #closed = false;
  #retention: Retention;

  /**
   * Creates an empty log.
   *
   * @param opts Retention (default: keep everything).
   */
  constructor(opts: { retention?: Retention } = {}) {
    this.#retention = opts.retention ?? {};
  }

  #trimUpTo(c: _Channel, cutoff: (e: LogEntry) => boolean, upTo: number): number {
    let n = 0;
    let seq = c.trimmed + 1;
    for (; seq <= upTo; seq++) {
      const e = c.entries[seq - 1];
      if (e === undefined) continue;
      if (!cutoff(e)) break;
      if (e.kind !== "commit" && e.kind !== "genesis") {
        c.entries[seq - 1] = undefined;
        c.byId.delete(_key(e.id));
        n++;
      }
    }
    c.trimmed = seq - 1;
    return n;
  }

  /**
   * Applies age retention.
   *
   * @param now Now, ms since the Unix epoch.
   * @returns How many entries were deleted.
   */
  trim(now: number): Promise<number> {
    this.#check();
    const age = this.#retention.maxAgeMs;
    if (age === undefined) return Promise.resolve(0);
    let n = 0;
    for (const c of this.#channels.values()) {
      n += this.#trimUpTo(c, (e) => e.time < now - age, c.entries.length);
    }
    return Promise.resolve(n);
  }

  #check(): void {
    if (this.#closed) throw new InterruptedError("closed", "The relay log is closed");
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
      trimmed: 0,
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
    const max = this.#retention.maxCount;
    if (max !== undefined && seq - max > c.trimmed) this.#trimUpTo(c, () => true, seq - max);
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
    const out: LogEntry[] = [];
    for (let i = Math.max(1, fromSeq) - 1; i < c.entries.length && out.length < limit; i++) {
      const e = c.entries[i];
      if (e) out.push(e);
    }
    return Promise.resolve(out);
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
      box.push({
        key,
        id: id.slice(),
        payload: payload.slice(),
        expiresAt,
        leaseUntil: 0,
        lease: "",
      });
    }
    return Promise.resolve();
  }

  /**
   * Leases and returns the unexpired, unleased blobs of an address.
   *
   * @param address The mailbox address.
   * @param now Now, ms since the Unix epoch.
   * @param leaseMs How long the lease lasts.
   * @returns The items, oldest first.
   */
  mailboxTake(
    address: string,
    now: number,
    leaseMs: number = DEFAULT_MAILBOX_LEASE_MS,
    page?: MailboxPage,
  ): Promise<MailboxEntry[]> {
    this.#check();
    const box = (this.#mailboxes.get(address) ?? []).filter((i) => i.expiresAt > now);
    if (box.length === 0) this.#mailboxes.delete(address);
    else this.#mailboxes.set(address, box);
    const lease = String(++this.#leases);
    const out: MailboxEntry[] = [];
    const budget = new PageBudget(page);
    for (const i of box) {
      if (i.leaseUntil > now) continue;
      if (!budget.fits(i.payload.length)) break;
      budget.add(i.payload.length);
      i.leaseUntil = now + leaseMs;
      i.lease = lease;
      out.push({ id: i.id, payload: i.payload, lease });
    }
    return Promise.resolve(out);
  }

  /**
   * Deletes items for good.
   *
   * @param address The mailbox address.
   * @param ids The item ids.
   * @returns How many were deleted.
   */
  mailboxAck(address: string, ids: readonly Uint8Array[]): Promise<number> {
    this.#check();
    const box = this.#mailboxes.get(address);
    if (!box) return Promise.resolve(0);
    const keys = new Set(ids.map(_key));
    const rest = box.filter((i) => !keys.has(i.key));
    if (rest.length === 0) this.#mailboxes.delete(address);
    else this.#mailboxes.set(address, rest);
    return Promise.resolve(box.length - rest.length);
  }

  /**
   * Ends leases early, unless another take holds the item since.
   *
   * @param address The mailbox address.
   * @param leases The items and their leases.
   */
  mailboxRelease(address: string, leases: readonly MailboxLease[]): Promise<void> {
    this.#check();
    const box = this.#mailboxes.get(address) ?? [];
    for (const l of leases) {
      const key = _key(l.id);
      const i = box.find((x) => x.key === key);
      if (i && i.lease === l.lease) i.leaseUntil = 0;
    }
    return Promise.resolve();
  }

  /** Drops everything. */
  close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    this.#mailboxes.clear();
    return Promise.resolve();
  }
}
