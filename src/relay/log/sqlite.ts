/**
 * A durable {@linkcode RelayLog} in one SQLite file (WAL mode), the embedded
 * relay's default.
 *
 * Group commit: appends are queued and written together, one transaction per
 * turn of the event loop (every append that arrived from any connection while
 * the previous turn ran), and each append's promise settles only after that
 * transaction committed — an ack still means stored. Within a transaction the
 * appends are applied in call order, one by one, with exactly the checks of a
 * lone append (idempotent ids, the commit epoch check, gapless seqs).
 *
 * Durability: `synchronous=NORMAL` under WAL, so a committed append survives a
 * crash of the process (what the embedded relay must survive); an OS crash or
 * power loss may lose the last few appends. Pass `synchronous: "full"` for an
 * fsync per transaction (per batch of appends).
 *
 * @module
 */
import { InterruptedError, SkytaleError, StateError } from "../../errors.ts";
import { randomBytes } from "../../_util.ts";
import { ensureDir } from "../../runtime/fs.ts";
import { afterIo } from "../../runtime/tick.ts";
import { BACKSTOP_PAGES, Checkpointer } from "./_checkpointer.ts";
import { openSqlite, type SqlDatabase } from "../../runtime/sqlite.ts";
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
import { kindCode, kindOf, PageBudget } from "./_shared.ts";
import {
  migrate,
  prepareStatements,
  rowBytes,
  rowNumber,
  type Statements,
} from "./_sqlite_schema.ts";

const PURGE_EVERY_MS = 60_000;

/** A random lease id: 48 bits, so it is a safe integer and never 0. */
function _leaseId(): number {
  const b = randomBytes(6);
  let n = 0;
  for (const x of b) n = n * 256 + x;
  return n || 1;
}

/** A channel's row as a batch reads and changes it. */
interface _ChannelRow {
  cid: number;
  epoch: number;
  head: number;
  /** Whether the batch appended to it (its row is written at the end). */
  dirty: boolean;
}

/** An append waiting for the next transaction. */
interface _Pending {
  channel: string;
  e: AppendInput;
  resolve: (r: AppendResult) => void;
  reject: (e: unknown) => void;
}

/** Options of {@linkcode SqliteLog.open}. */
export interface SqliteLogOptions {
  /** `normal` (default): durable across process crashes; `full`: fsync every transaction. */
  synchronous?: "normal" | "full";
  /** Retention (default: keep everything). */
  retention?: Retention;
}

/** A relay log in a SQLite file. */
export class SqliteLog implements RelayLog {
  #db: SqlDatabase;
  #st: Statements;
  /** Appends are queued in call order and written in that order: see {@linkcode RelayLog.sequencesOnCall}. */
  readonly sequencesOnCall = true;
  #closed = false;
  #closing: Promise<void> = Promise.resolve();
  /** Appends waiting for the next transaction, in call order. */
  #queue: _Pending[] = [];
  #batches = 0;
  #batched = 0;
  #lastPurge = 0;
  #retention: Retention;
  /** cid → every seq up to this one has been considered for count trimming. */
  #trimmed = new Map<number, number>();
  /** Checkpoints the WAL off the event loop (a file log only). */
  #checkpointer: Checkpointer | undefined;

  private constructor(db: SqlDatabase, retention: Retention, checkpointer?: Checkpointer) {
    this.#db = db;
    this.#retention = retention;
    this.#st = prepareStatements(db);
    this.#checkpointer = checkpointer;
  }

  /**
   * Opens (creating if needed) the log file and its directory.
   *
   * @param path The database file, or `:memory:`.
   * @param opts Durability options.
   * @returns The open log.
   * @throws {RelayError} `state_corrupt` if the file is not a relay log of a known version.
   */
  static async open(path: string, opts: SqliteLogOptions = {}): Promise<SqliteLog> {
    if (path !== ":memory:") {
      const dir = path.replace(/[\\/][^\\/]*$/, "");
      // Made 0700 if new; an existing directory is the caller's to restrict (the relay does).
      if (dir !== path && dir !== "") await ensureDir(dir, { restrict: false });
    }
    const db = openSqlite(path);
    const synchronous = opts.synchronous === "full" ? "FULL" : "NORMAL";
    const file = path !== ":memory:" && !path.startsWith("file:");
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${synchronous}`);
      // The checkpoints are the worker's (_checkpointer.ts); this connection's are a backstop.
      if (file) db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
      migrate(db, path);
    } catch (e) {
      db.close();
      if (e instanceof SkytaleError) throw e;
      throw new StateError("state_corrupt", `Cannot open relay log "${path}"`, { cause: e });
    }
    return new SqliteLog(
      db,
      opts.retention ?? {},
      file ? new Checkpointer(path, synchronous) : undefined,
    );
  }

  #check(): void {
    if (this.#closed) throw new InterruptedError("closed", "The relay log is closed");
  }

  #tx<T>(fn: () => T): T {
    this.#st.begin.run();
    let result: T;
    try {
      result = fn();
    } catch (e) {
      this.#st.rollback.run();
      throw e;
    }
    try {
      this.#st.commit.run();
    } catch (e) {
      // A failed COMMIT (disk full, say) can leave the transaction open: end it, store nothing.
      try {
        this.#st.rollback.run();
      } catch { /* SQLite already rolled it back */ }
      throw e;
    }
    return result;
  }

  #channel(name: string): { cid: number; epoch: number; head: number } | undefined {
    const r = this.#st.channel.get(name);
    return r && { cid: rowNumber(r.cid), epoch: rowNumber(r.epoch), head: rowNumber(r.head) };
  }

  /**
   * Creates a channel at epoch 0.
   *
   * @param channel The channel name.
   * @returns `false` if it already existed.
   */
  create(channel: string): Promise<boolean> {
    this.#check();
    return Promise.resolve(this.#st.createChannel.run(channel).changes === 1);
  }

  /**
   * Reads a channel's epoch and head.
   *
   * @param channel The channel name.
   * @returns Its epoch and head, or `undefined`.
   */
  info(channel: string): Promise<{ epoch: number; head: number } | undefined> {
    this.#check();
    const c = this.#channel(channel);
    return Promise.resolve(c && { epoch: c.epoch, head: c.head });
  }

  /**
   * Appends an entry (epoch-checked for commits, idempotent by id). The
   * entry is queued and written, with every other append queued meanwhile, in
   * one transaction once the I/O that is ready now has been handled
   * ({@linkcode afterIo}); the promise settles after that transaction commits.
   * Its place among them is fixed by the order of the calls.
   *
   * @param channel The channel name.
   * @param e The entry.
   * @returns The result, once it is stored.
   */
  append(channel: string, e: AppendInput): Promise<AppendResult> {
    this.#check();
    return new Promise((resolve, reject) => {
      this.#queue.push({ channel, e, resolve, reject });
      if (this.#queue.length === 1) afterIo(() => this.#flush());
    });
  }

  /**
   * Writes the queued appends in one transaction, then settles them in queue
   * order. If the transaction fails, nothing of it is stored, and each append
   * is tried again alone, so one bad entry fails alone.
   */
  #flush(): void {
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    if (this.#closed) {
      const err = new InterruptedError("closed", "The relay log is closed");
      for (const a of batch) a.reject(err);
      return;
    }
    this.#batches++;
    this.#batched += batch.length;
    let results: AppendResult[];
    const trims = new Map<number, number>();
    try {
      results = this.#tx(() => {
        const channels = new Map<string, _ChannelRow | undefined>();
        const out = batch.map((a) => this.#appendOne(a.channel, a.e, channels, trims));
        for (const c of channels.values()) {
          if (c?.dirty) this.#st.updateChannel.run(c.head, c.epoch, c.cid);
        }
        return out;
      });
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      for (const a of batch) {
        const one = new Map<number, number>();
        try {
          const r = this.#tx(() => {
            const channels = new Map<string, _ChannelRow | undefined>();
            const r = this.#appendOne(a.channel, a.e, channels, one);
            const c = channels.get(a.channel);
            if (c?.dirty) this.#st.updateChannel.run(c.head, c.epoch, c.cid);
            return r;
          });
          for (const [cid, upTo] of one) this.#trimmed.set(cid, upTo);
          a.resolve(r);
        } catch (e) {
          a.reject(e);
        }
      }
      return;
    }
    for (const [cid, upTo] of trims) this.#trimmed.set(cid, upTo);
    this.#checkpointer?.appended(batch.length);
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
  }

  /**
   * One append inside the batch's transaction. `channels` holds the rows the
   * batch read and changed (written once, at the end); `trims` the count
   * trimming done in it (kept only if it commits).
   */
  #appendOne(
    channel: string,
    e: AppendInput,
    channels: Map<string, _ChannelRow | undefined>,
    trims: Map<number, number>,
  ): AppendResult {
    let c = channels.get(channel);
    if (c === undefined && !channels.has(channel)) {
      const row = this.#channel(channel);
      c = row && { ...row, dirty: false };
      channels.set(channel, c);
    }
    if (!c) return { ok: false, code: "unknown_channel", epoch: 0 };
    const prior = this.#st.entryById.get(c.cid, e.id);
    if (prior) {
      const pe = rowNumber(prior.epoch);
      return { ok: true, seq: rowNumber(prior.seq), epoch: prior.kind === 1 ? pe + 1 : pe };
    }
    const isCommit = e.kind === "commit";
    if (isCommit && e.epoch !== c.epoch) {
      return { ok: false, code: "stale_epoch", epoch: c.epoch };
    }
    const seq = c.head + 1;
    this.#st.insertEntry.run(c.cid, seq, e.epoch, kindCode(e.kind), e.id, e.time, e.payload);
    c.head = seq;
    if (isCommit) {
      c.epoch = e.epoch + 1;
      this.#st.insertEpoch.run(c.cid, c.epoch, seq + 1);
    }
    c.dirty = true;
    const max = this.#retention.maxCount;
    const done = trims.get(c.cid) ?? this.#trimmed.get(c.cid) ?? 0;
    if (max !== undefined && seq - max > done) {
      this.#st.trimCount.run(c.cid, done, seq - max);
      trims.set(c.cid, seq - max);
    }
    return { ok: true, seq, epoch: isCommit ? c.epoch : e.epoch };
  }

  /**
   * How appends were batched since the log was opened (for tests and
   * benchmarks).
   *
   * @returns Transactions written and the appends they held.
   */
  batchStats(): { batches: number; appends: number } {
    return { batches: this.#batches, appends: this.#batched };
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
    const c = this.#channel(channel);
    if (!c) return Promise.resolve([]);
    const rows = this.#st.read.all(c.cid, Math.max(1, fromSeq), Math.max(0, limit));
    return Promise.resolve(rows.map((r) => ({
      seq: rowNumber(r.seq),
      epoch: rowNumber(r.epoch),
      kind: kindOf(rowNumber(r.kind)),
      id: rowBytes(r.id),
      time: rowNumber(r.time),
      payload: rowBytes(r.payload),
    })));
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
    const c = this.#channel(channel);
    if (!c) return Promise.resolve(1);
    if (epoch === 0) return Promise.resolve(1);
    const r = this.#st.epochStart.get(c.cid, epoch);
    return Promise.resolve(r ? rowNumber(r.first_seq) : c.head + 1);
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
    const now = Date.now();
    if (now - this.#lastPurge > PURGE_EVERY_MS) {
      this.#lastPurge = now;
      this.#st.mailboxPurge.run(now);
    }
    this.#st.mailboxPut.run(address, id, payload, expiresAt);
    return Promise.resolve();
  }

  /**
   * Leases and returns the unexpired, unleased blobs of an address (and
   * deletes its expired ones).
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
    return Promise.resolve(this.#tx(() => {
      const rows = this.#st.mailboxSelect.all(address);
      if (rows.some((r) => rowNumber(r.expires_at) <= now)) {
        this.#st.mailboxDeleteExpired.run(address, now);
      }
      const lease = _leaseId();
      const out: MailboxEntry[] = [];
      const budget = new PageBudget(page);
      for (const r of rows) {
        if (rowNumber(r.expires_at) <= now || rowNumber(r.lease_until) > now) continue;
        const size = rowNumber(r.size);
        if (!budget.fits(size)) break;
        budget.add(size);
        const payload = rowBytes(this.#st.mailboxPayload.all(rowNumber(r.n))[0]!.payload);
        this.#st.mailboxLease.run(now + leaseMs, lease, rowNumber(r.n));
        out.push({ id: rowBytes(r.id), payload, lease: String(lease) });
      }
      return out;
    }));
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
    if (ids.length === 0) return Promise.resolve(0);
    return Promise.resolve(this.#tx(() => {
      let n = 0;
      for (const id of ids) n += this.#st.mailboxAck.run(address, id).changes;
      return n;
    }));
  }

  /**
   * Ends leases early, unless another take holds the item since.
   *
   * @param address The mailbox address.
   * @param leases The items and their leases.
   */
  mailboxRelease(address: string, leases: readonly MailboxLease[]): Promise<void> {
    this.#check();
    if (leases.length === 0) return Promise.resolve();
    this.#tx(() => {
      for (const l of leases) {
        const lease = Number(l.lease);
        if (Number.isSafeInteger(lease)) this.#st.mailboxRelease.run(address, l.id, lease);
      }
    });
    return Promise.resolve();
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
    return Promise.resolve(this.#st.trimAge.run(now - age).changes);
  }

  /** Writes the appends queued so far, then closes the database file (idempotent). */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#flush();
      this.#closed = true;
      // The worker's connection first: closing the last one checkpoints and removes the WAL.
      const worker = this.#checkpointer?.close() ?? Promise.resolve();
      this.#closing = worker.then(() => this.#db.close());
    }
    return this.#closing;
  }

  /**
   * How many WAL checkpoints the worker thread has made (for tests and benchmarks).
   *
   * @returns The count.
   */
  checkpoints(): number {
    return this.#checkpointer?.checkpoints ?? 0;
  }
}
