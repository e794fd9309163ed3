/**
 * A {@linkcode RelayLog} on NATS JetStream, so several relay processes share
 * one channel space (`skytale relay --store nats://host:4222`).
 *
 * Layout (prefix `skytale`, stream names upper-cased):
 *
 * - **One stream per channel**, `SKYTALE_CH_<h>` on subject `skytale.ch.<h>`,
 *   where `<h>` is the first 32 hex digits of SHA-256(channel name); the name
 *   itself is the stream's description. Stream seq 1 is a creation marker
 *   (published with msg id `create`, so concurrent creates make one), and the
 *   entry with channel seq N is stream seq N + 1. Headers carry the entry:
 *   `Sky-Seq`, `Sky-Epoch` (the entry's), `Sky-Chan-Epoch` (the channel's after
 *   it), `Sky-Kind`, `Sky-Time`, `Sky-Id`.
 * - **Ordering**: every append is published with `Nats-Expected-Last-Sequence`
 *   = the stream's last seq as this relay last saw it. If another relay
 *   appended meanwhile, JetStream refuses it; the relay re-reads the last
 *   entry and tries again — and a commit whose epoch is no longer the
 *   channel's gets `stale_epoch`. So across every relay each epoch has exactly
 *   one commit and seqs stay gapless.
 * - **Idempotence**: the publish id is the JetStream msg id, which JetStream
 *   de-duplicates within the stream's duplicate window (2 minutes by default);
 *   beyond it, the stream `SKYTALE_IDS` (subject `skytale.id.<h>.<id>`, one
 *   message per subject) maps every publish id to its seq, written before the
 *   publish is acked. A retry is looked up there first; the window covers the
 *   moment between an append and its id record (a relay dying in between).
 * - **Fan-out**: each relay subscribes (core NATS) to the subjects of the
 *   channels its clients follow; a message from another relay wakes the
 *   relay's subscribers, which read what they miss from the stream.
 * - **Mailboxes**: stream `SKYTALE_MB`, one message per item and a claim
 *   subject per item whose last message is its lease (`_nats_mailbox.ts`).
 * - **Retention**: deletes non-commit entries (JetStream message deletes, so
 *   stream seqs never move): by count within each append (before it is acked),
 *   by age in {@linkcode NatsLog.trim} (`_nats_trim.ts`). Readers skip the
 *   gaps; the head and epoch survive the newest entries being deleted by age
 *   (the stream keeps its last seq, commits are never deleted).
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { InterruptedError, RelayError, StateError, ValidationError } from "../../errors.ts";
import { errorMessage, withTimeout } from "../../_util.ts";
import {
  directGet,
  ensureStream,
  isNotFound,
  isWrongLast,
  openJetStream,
  retryTransient,
} from "../_nats.ts";
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
import { SerialQueue } from "../_serial.ts";
import { StreamWatch } from "./_nats_watch.ts";
import { NatsMailboxes } from "./_nats_mailbox.ts";
import { entryHeaders, entryOf, nameHash } from "./_nats_layout.ts";
import { NatsRetention } from "./_nats_trim.ts";

/** Options of {@linkcode NatsLog.open}. */
export interface NatsLogOptions {
  /** Subject and stream name prefix (default `skytale`). */
  prefix?: string;
  /** JetStream's msg-id de-duplication window, in ms (default 120000). */
  duplicateWindowMs?: number;
  /** Stream replicas in a NATS cluster (default 1). */
  replicas?: number;
  /** Use memory storage instead of files (tests). */
  memoryStorage?: boolean;
  /** Retention (default: keep everything). Give every relay of a cluster the same. */
  retention?: Retention;
}

interface _State {
  /** Channel head (= stream last seq - 1). */
  head: number;
  /** Channel epoch after the head. */
  epoch: number;
}

/** A relay log on NATS JetStream, shared by every relay connected to the same NATS. */
export class NatsLog implements RelayLog {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #p: string;
  readonly #P: string;
  readonly #opts: NatsLogOptions;
  readonly #state = new Map<string, _State>();
  readonly #serial = new SerialQueue();
  readonly #mailboxes: NatsMailboxes;
  readonly #hashes = new Map<string, string>();
  readonly #retention: NatsRetention;
  #closed = false;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, opts: NatsLogOptions) {
    this.#nc = nc;
    this.#jsm = jsm;
    this.#js = jetstream(nc);
    this.#p = opts.prefix ?? "skytale";
    this.#P = this.#p.toUpperCase();
    this.#opts = opts;
    this.#mailboxes = new NatsMailboxes(this.#js, jsm, this.#p, this.#serial);
    this.#retention = new NatsRetention({
      jsm,
      prefix: this.#p,
      retention: opts.retention,
      serial: this.#serial,
      next: (h, seq) => this.#next(h, seq),
      closed: () => this.#closed,
    });
  }

  /**
   * Connects to NATS and makes sure the shared streams exist.
   *
   * @param servers NATS URL(s), e.g. `nats://127.0.0.1:4222` (comma-separated for a cluster).
   * @param opts Prefix, de-duplication window, replicas.
   * @returns The log.
   * @throws {RelayError} `relay_unavailable` if NATS cannot be reached or has no JetStream.
   */
  static async open(servers: string, opts: NatsLogOptions = {}): Promise<NatsLog> {
    return await openJetStream(servers, "skytale-relay", async (nc, jsm) => {
      const log = new NatsLog(nc, jsm, opts);
      await log.#ensureStream(`${log.#P}_IDS`, `${log.#p}.id.>`, { max_msgs_per_subject: 1 });
      await log.#ensureStream(`${log.#P}_MB`, `${log.#p}.mb.>`, {
        max_age: 30 * 86400 * 1e9,
      });
      return log;
    });
  }

  #base(): Record<string, unknown> {
    return {
      storage: this.#opts.memoryStorage ? "memory" : "file",
      num_replicas: this.#opts.replicas ?? 1,
      allow_direct: true,
      duplicate_window: (this.#opts.duplicateWindowMs ?? 120_000) * 1e6,
    };
  }

  #ensureStream(name: string, subject: string, extra: Record<string, unknown> = {}) {
    return ensureStream(this.#jsm, { name, subjects: [subject], ...this.#base(), ...extra });
  }

  #check(): void {
    if (this.#closed) throw new InterruptedError("closed", "The relay log is closed");
  }

  async #h(channel: string): Promise<string> {
    let h = this.#hashes.get(channel);
    if (!h) this.#hashes.set(channel, h = await nameHash(channel));
    return h;
  }

  #stream(h: string): string {
    return `${this.#P}_CH_${h}`;
  }

  #subject(h: string): string {
    return `${this.#p}.ch.${h}`;
  }

  #get(stream: string, seq: number): Promise<StoredMsg | null> {
    return directGet(this.#jsm, stream, { seq });
  }

  /**
   * Reads the channel's head and epoch; `undefined` if unknown. The head is
   * the stream's last seq (kept when age retention deletes the newest entries),
   * the epoch that of the last stored entry: every entry deleted after it is a
   * non-commit, which leaves the epoch as it was.
   */
  async #fetchState(channel: string): Promise<_State | undefined> {
    const h = await this.#h(channel);
    let last: number;
    try {
      // Also: a direct get on a missing stream has no responder and only times out.
      last = (await this.#jsm.streams.info(this.#stream(h))).state.last_seq;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    if (last === 0) return undefined; // created, the marker not yet published
    let m = await directGet(this.#jsm, this.#stream(h), { last_by_subj: this.#subject(h) });
    // nats-server 2.9 answers "not found" for the last message of a subject once the newest one
    // was deleted (age retention): find the last stored one by a binary search instead.
    if (!m) m = await this.#lastStored(h, last);
    const e = m && entryOf(m.header, m.data);
    const epoch = e ? Number(m!.header.get("Sky-Chan-Epoch")) : 0;
    const st: _State = { head: e && e.seq >= last - 1 ? e.seq : last - 1, epoch };
    this.#state.set(channel, st);
    return st;
  }

  /** The last stored message at or before stream seq `last`, or `null`. */
  async #lastStored(h: string, last: number): Promise<StoredMsg | null> {
    let lo = 0; // a stored message at or after lo + 1 exists…
    let hi = last; // …and none after hi
    let found: StoredMsg | null = null;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      const m = await this.#next(h, mid);
      if (m) {
        found = m;
        lo = m.seq;
      } else {
        hi = mid - 1;
      }
    }
    return found; // lo only ever moves to a message found, so this is the one at lo
  }

  /** The first stored message at or after a stream seq, or `null`. */
  #next(h: string, streamSeq: number): Promise<StoredMsg | null> {
    return directGet(this.#jsm, this.#stream(h), {
      next_by_subj: this.#subject(h),
      seq: streamSeq,
    });
  }

  /**
   * Creates a channel (its stream and creation marker).
   *
   * @param channel The channel name.
   * @returns `false` if it already existed.
   */
  async create(channel: string): Promise<boolean> {
    this.#check();
    const h = await this.#h(channel);
    const name = this.#stream(h);
    try {
      const info = await this.#jsm.streams.info(name);
      if (info.state.messages > 0 || info.state.last_seq > 0) return false;
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await this.#ensureStream(name, this.#subject(h), { description: channel });
    }
    // A stream another relay has just added may not listen yet ("no responders"): try again.
    const ack = await this.#retrying(
      `creation of "${channel}"`,
      () => this.#js.publish(this.#subject(h), new Uint8Array(0), { msgID: "create" }),
    );
    return !ack.duplicate;
  }

  /**
   * Reads a channel's epoch and head.
   *
   * @param channel The channel name.
   * @returns Its epoch and head, or `undefined`.
   */
  async info(channel: string): Promise<{ epoch: number; head: number } | undefined> {
    this.#check();
    const st = await this.#fetchState(channel);
    return st && { epoch: st.epoch, head: st.head };
  }

  async #idLookup(h: string, idHex: string): Promise<number | undefined> {
    const m = await directGet(this.#jsm, `${this.#P}_IDS`, {
      last_by_subj: `${this.#p}.id.${h}.${idHex}`,
    });
    return m ? Number(new TextDecoder().decode(m.data)) : undefined;
  }

  /** The result of an append repeated with the id of the entry at `seq`. */
  async #prior(h: string, seq: number, input: AppendInput): Promise<AppendResult> {
    const m = await this.#get(this.#stream(h), seq + 1);
    const e = m && entryOf(m.header, m.data);
    if (e) return { ok: true, seq, epoch: e.kind === "commit" ? e.epoch + 1 : e.epoch };
    // Retention deletes non-commits only: the repeated request still names the epoch.
    if (input.kind !== "commit") return { ok: true, seq, epoch: input.epoch };
    throw new StateError("state_corrupt", `Commit ${seq} is missing from its stream`);
  }

  /**
   * Appends an entry: epoch-checked for commits across every relay, idempotent by id.
   *
   * @param channel The channel name.
   * @param e The entry.
   * @returns The result.
   */
  append(channel: string, e: AppendInput): Promise<AppendResult> {
    this.#check();
    // The whole append is idempotent (publish id = msg id, plus the id index), so a try cut
    // short by NATS (a stream electing its leader after a node died) is simply made again.
    return this.#serial.run(
      channel,
      () => this.#retrying(`append to "${channel}"`, () => this.#append(channel, e)),
    );
  }

  #retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return retryTransient(what, fn, () => this.#closed);
  }

  async #append(channel: string, e: AppendInput): Promise<AppendResult> {
    const h = await this.#h(channel);
    const idHex = e.id.toHex();
    const known = await this.#idLookup(h, idHex);
    if (known !== undefined) return await this.#prior(h, known, e);
    const isCommit = e.kind === "commit";
    let st = this.#state.get(channel) ?? await this.#fetchState(channel);
    for (let attempt = 0; attempt < 100; attempt++) {
      if (!st) return { ok: false, code: "unknown_channel", epoch: 0 };
      if (isCommit && e.epoch !== st.epoch) {
        // The cached epoch may be behind another relay's commit: look before refusing.
        st = await this.#fetchState(channel);
        if (!st) return { ok: false, code: "unknown_channel", epoch: 0 };
        if (e.epoch !== st.epoch) return { ok: false, code: "stale_epoch", epoch: st.epoch };
      }
      const seq = st.head + 1;
      const chanEpoch = isCommit ? e.epoch + 1 : st.epoch;
      const hd = entryHeaders(e, seq, chanEpoch);
      let ack;
      try {
        ack = await this.#js.publish(this.#subject(h), e.payload, {
          msgID: idHex,
          expect: { lastSequence: st.head + 1 },
          headers: hd,
        });
      } catch (err) {
        if (!isWrongLast(err)) throw err;
        st = await this.#fetchState(channel);
        continue;
      }
      let result: AppendResult;
      if (ack.duplicate) {
        result = await this.#prior(h, ack.seq - 1, e);
      } else {
        this.#state.set(channel, { head: seq, epoch: chanEpoch });
        result = { ok: true, seq, epoch: isCommit ? chanEpoch : e.epoch };
      }
      await this.#js.publish(
        `${this.#p}.id.${h}.${idHex}`,
        new TextEncoder().encode(String(result.ok ? result.seq : 0)),
      );
      const max = this.#opts.retention?.maxCount;
      if (max !== undefined && !ack.duplicate && seq > max) {
        // Before the ack, as SQLite does: a reader after it sees the newest N only. A failed
        // trim fails nothing; the next walk takes it up.
        await this.#retention.countTrim(h, () => (this.#state.get(channel)?.head ?? 0) - max)
          .catch(() => {});
      }
      return result;
    }
    throw new RelayError("relay_error", `Too much contention appending to "${channel}"`);
  }

  /**
   * Reads entries from a seq on.
   *
   * @param channel The channel name.
   * @param fromSeq The first seq wanted.
   * @param limit The most entries returned.
   * @returns The entries.
   */
  async read(channel: string, fromSeq: number, limit: number): Promise<LogEntry[]> {
    this.#check();
    const from = Math.max(1, fromSeq);
    let st = this.#state.get(channel);
    if (!st || st.head < from) st = await this.#fetchState(channel);
    if (!st || limit <= 0) return [];
    const h = await this.#h(channel);
    const stream = this.#stream(h);
    const out: LogEntry[] = [];
    const batch = async (first: number, last: number) => {
      const msgs = await Promise.all(
        Array.from({ length: last - first + 1 }, (_, i) => this.#get(stream, first + i + 1)),
      );
      for (const m of msgs) {
        const e = m && entryOf(m.header, m.data);
        if (e) out.push(e);
      }
    };
    if (from > st.head) return out;
    const to = Math.min(st.head, from + limit - 1);
    await batch(from, to);
    if (out.length === 0 && to < st.head) {
      // Retention deleted the whole range: jump to the next stored entry (maybe past the head
      // this relay knows of) and read a batch from there.
      const next = await this.#next(h, to + 2);
      const e = next && entryOf(next.header, next.data);
      if (e) {
        out.push(e);
        if (e.seq < st.head) await batch(e.seq + 1, Math.min(st.head, e.seq + limit - 1));
      }
    }
    return out;
  }

  /**
   * Finds where an epoch starts: a binary search over `Sky-Chan-Epoch`, which
   * never decreases, probing the first stored entry at or after each seq so
   * gaps left by retention do not mislead it (the commit that opened the
   * epoch is never deleted).
   *
   * @param channel The channel name.
   * @param epoch The epoch.
   * @returns Its first seq.
   */
  async firstSeqOfEpoch(channel: string, epoch: number): Promise<number> {
    this.#check();
    if (epoch === 0) return 1;
    const st = await this.#fetchState(channel);
    if (!st) return 1;
    if (st.epoch < epoch) return st.head + 1;
    const h = await this.#h(channel);
    const probe = async (seq: number) => {
      const m = await this.#next(h, seq + 1);
      const e = m && entryOf(m.header, m.data);
      return e && { e, chanEpoch: Number(m!.header.get("Sky-Chan-Epoch")) };
    };
    let lo = 1;
    let hi = st.head;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const p = await probe(mid);
      if (!p || p.chanEpoch >= epoch) hi = mid;
      else lo = mid + 1;
    }
    const p = await probe(lo);
    if (!p) return st.head + 1;
    return p.e.kind === "commit" && p.chanEpoch === epoch ? p.e.seq + 1 : p.e.seq;
  }

  /**
   * Calls `onAppend`, in seq order, for each entry any relay appends to a
   * channel from now on.
   *
   * This is an ordered (pull) consumer on the channel's stream, so it hands on
   * only what JetStream stored. A plain NATS subscription on the subject would
   * also receive publishes that the CAS refused or JetStream de-duplicated, and
   * the relay would fan out a payload at a seq that holds another entry. The
   * consumer starts after the stream's last message as read here, so nothing
   * appended after this call resolves is missed. If the consumer falls behind
   * or NATS reconnects, the library recreates it from the last seq it
   * delivered; if it goes silent (no message or heartbeat for 1.5 pulls: an
   * ordered consumer has one replica, lost with its NATS node) or stays
   * behind the stream over two checks 8 s apart, this replaces it the same
   * way. (The check is one direct get per quiet watched channel every 8 s.)
   *
   * @param channel The channel name.
   * @param onAppend Called with each entry.
   * @returns A function that stops watching.
   * @throws {RelayError} `unknown_channel` if the channel does not exist.
   */
  async watch(channel: string, onAppend: (e: LogEntry) => void): Promise<() => void> {
    this.#check();
    const h = await this.#h(channel);
    const stream = this.#stream(h);
    let last: number;
    try {
      last = (await this.#jsm.streams.info(stream)).state.last_seq;
    } catch (e) {
      if (isNotFound(e)) {
        throw new ValidationError("unknown_channel", `Unknown channel "${channel}"`);
      }
      throw e;
    }
    const watch = await StreamWatch.start({
      js: this.#js,
      jsm: this.#jsm,
      stream,
      subject: this.#subject(h),
      namePrefix: `${this.#P}_W_`,
      after: last,
      closed: () => this.#closed,
      onMessage: (m) => {
        const e = entryOf(m.headers, m.data);
        if (!e) return; // the creation marker
        const st = this.#state.get(channel);
        if (st && e.seq > st.head) {
          st.head = e.seq;
          st.epoch = Number(m.headers?.get("Sky-Chan-Epoch"));
        }
        onAppend(e);
      },
    });
    return () => watch.stop();
  }

  /**
   * Applies retention to every channel: by age (and by count, for channels
   * other relays appended to). Since a pass walks every channel stream, it
   * runs once per tenth of the age limit, and at least once a minute.
   *
   * @param now Now, ms since the Unix epoch.
   * @returns How many entries this relay deleted.
   */
  trim(now: number): Promise<number> {
    this.#check();
    return this.#retention.pass(now);
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
    return this.#mailboxes.put(address, id, payload, expiresAt);
  }

  /**
   * Leases and returns the unexpired blobs of an address that no lease holds,
   * across every relay, and deletes its expired ones.
   *
   * @param address The mailbox address.
   * @param now Now, ms since the Unix epoch.
   * @param leaseMs How long the lease lasts.
   * @param page How many fit one answer.
   * @returns The items, oldest first.
   */
  mailboxTake(
    address: string,
    now: number,
    leaseMs: number = DEFAULT_MAILBOX_LEASE_MS,
    page?: MailboxPage,
  ): Promise<MailboxEntry[]> {
    this.#check();
    return this.#mailboxes.take(address, now, leaseMs, page);
  }

  /**
   * Deletes items for good, on every relay.
   *
   * @param address The mailbox address.
   * @param ids The item ids.
   * @returns How many were deleted.
   */
  mailboxAck(address: string, ids: readonly Uint8Array[]): Promise<number> {
    this.#check();
    if (ids.length === 0) return Promise.resolve(0);
    return this.#mailboxes.ack(address, ids);
  }

  /**
   * Ends leases early, unless another take holds the item since or it was acked.
   *
   * @param address The mailbox address.
   * @param leases The items and their leases.
   */
  mailboxRelease(address: string, leases: readonly MailboxLease[]): Promise<void> {
    this.#check();
    if (leases.length === 0) return Promise.resolve();
    return this.#mailboxes.release(address, leases);
  }

  /**
   * Checks that NATS answers a ping within 2 s (it does not while the
   * connection is down and reconnecting).
   *
   * @throws {RelayError} `relay_unavailable` if it does not.
   */
  async health(): Promise<void> {
    this.#check();
    try {
      await withTimeout(this.#nc.rtt(), 2000, () => new Error("no answer to a ping within 2 s"));
    } catch (e) {
      throw new RelayError("relay_unavailable", `NATS is not reachable: ${errorMessage(e)}`, {
        cause: e,
      });
    }
  }

  /** Closes the NATS connection (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}
