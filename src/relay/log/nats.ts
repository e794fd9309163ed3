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
 * - **Mailboxes**: stream `SKYTALE_MB`, subject `skytale.mb.<h(address)>`, msg
 *   id `<h>.<item id>`, expiry in a header. Each item (stream seq S) has a
 *   claim subject `skytale.mb.<h>.c.<S>` whose last message is its lease:
 *   header `Sky-Lease-Until` (ms since the Unix epoch; 0 = released).
 *   `mailboxTake` reads the subject and takes each item whose claim subject
 *   is empty or holds a lapsed lease by publishing a new claim with expected
 *   last subject sequence = the claim it read (0 for none): of relays taking
 *   at once exactly one wins, so an item is never handed out twice while
 *   leased. `mailboxRelease` publishes a lapsed claim the same way, so it
 *   fails harmlessly once another take holds the item. `mailboxAck` deletes
 *   the item, then purges its claim subject (in that order: a take never
 *   finds a claimable acked item). Expired items are deleted by takes; the
 *   rest age out with the stream's 30-day limit. Leases compare each relay's
 *   clock with the claimant's, so relay clocks should agree to well within a
 *   lease.
 *
 * - **Retention**: deletes non-commit entries (JetStream message deletes, so
 *   stream seqs never move): by count within each append (before it is acked),
 *   by age in {@linkcode NatsLog.trim}. Each relay walks a channel from where
 *   its last walk stopped; deletes are idempotent, so relays sharing a
 *   channel may walk it at once. Readers skip the gaps; the head and epoch
 *   survive the newest entries being deleted by age (the stream keeps its
 *   last seq, commits are never deleted).
 *
 * @module
 */
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import {
  type Consumer,
  type ConsumerMessages,
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { InterruptedError, RelayError, StateError, ValidationError } from "../../errors.ts";
import {
  connectNats,
  directGet,
  directScan,
  ensureStream,
  isNotFound,
  isTransient,
  isWrongLast,
  noJetStream,
} from "../_nats.ts";
import { fromHex } from "../../validate.ts";
import type { EntryKind } from "../protocol.ts";
import {
  type AppendInput,
  type AppendResult,
  DEFAULT_MAILBOX_LEASE_MS,
  fitsPage,
  type LogEntry,
  type MailboxEntry,
  type MailboxLease,
  type MailboxPage,
  type RelayLog,
  type Retention,
} from "./types.ts";

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

const KINDS: readonly EntryKind[] = ["application", "commit", "proposal", "genesis"];
/** How long a watch's pull lasts; heartbeats come twice as often. */
const WATCH_PULL_MS = 4000;
/** How long an append is tried again while NATS fails in a passing way. */
const TRANSIENT_RETRY_MS = 8000;

async function _hash(s: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s));
  return new Uint8Array(d).toHex().slice(0, 32);
}

/** The entry a stored message holds (`undefined` for the creation marker). */
function _entry(h: MsgHdrs | undefined, data: Uint8Array): LogEntry | undefined {
  const seq = h?.get("Sky-Seq");
  if (!h || !seq) return undefined;
  return {
    seq: Number(seq),
    epoch: Number(h.get("Sky-Epoch")),
    kind: KINDS[Number(h.get("Sky-Kind"))] ?? "application",
    id: fromHex(h.get("Sky-Id"), "entry id"),
    time: Number(h.get("Sky-Time")),
    payload: data,
  };
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
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #hashes = new Map<string, string>();
  /** Stream → the stream seq where the next retention walk starts. */
  readonly #trimFrom = new Map<string, number>();
  #lastAgePass = -Infinity;
  #closed = false;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, opts: NatsLogOptions) {
    this.#nc = nc;
    this.#jsm = jsm;
    this.#js = jetstream(nc);
    this.#p = opts.prefix ?? "skytale";
    this.#P = this.#p.toUpperCase();
    this.#opts = opts;
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
    const { nc, jsm } = await connectNats(servers, "skytale-relay");
    try {
      const log = new NatsLog(nc, jsm, opts);
      await log.#ensureStream(`${log.#P}_IDS`, `${log.#p}.id.>`, { max_msgs_per_subject: 1 });
      await log.#ensureStream(`${log.#P}_MB`, `${log.#p}.mb.>`, {
        max_age: 30 * 86400 * 1e9,
      });
      return log;
    } catch (e) {
      await nc.close();
      throw noJetStream(servers, e);
    }
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
    if (!h) this.#hashes.set(channel, h = await _hash(channel));
    return h;
  }

  #stream(h: string): string {
    return `${this.#P}_CH_${h}`;
  }

  #subject(h: string): string {
    return `${this.#p}.ch.${h}`;
  }

  /** Runs `fn` after every earlier call for the same key (appends of one channel, in order). */
  #serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.#locks.set(key, tail);
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    });
    return next;
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
    const e = m && _entry(m.header, m.data);
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
    const e = m && _entry(m.header, m.data);
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
    return this.#serial(
      channel,
      () => this.#retrying(`append to "${channel}"`, () => this.#append(channel, e)),
    );
  }

  /**
   * Runs `fn` again while it fails in a passing way (see {@linkcode isTransient}), for up to
   * {@linkcode TRANSIENT_RETRY_MS}.
   */
  async #retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const end = Date.now() + TRANSIENT_RETRY_MS;
    for (let attempt = 0;; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!isTransient(e) || this.#closed) throw e;
        if (Date.now() >= end) {
          throw new RelayError("relay_unavailable", `NATS did not answer the ${what} in time`, {
            cause: e,
          });
        }
        await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** attempt)));
      }
    }
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
      const hd = natsHeaders();
      hd.set("Sky-Seq", String(seq));
      hd.set("Sky-Epoch", String(e.epoch));
      hd.set("Sky-Chan-Epoch", String(chanEpoch));
      hd.set("Sky-Kind", String(KINDS.indexOf(e.kind)));
      hd.set("Sky-Time", String(e.time));
      hd.set("Sky-Id", idHex);
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
        await this.#countTrim(channel, h, max).catch(() => {});
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
        const e = m && _entry(m.header, m.data);
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
      const e = next && _entry(next.header, next.data);
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
      const e = m && _entry(m.header, m.data);
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
    const stream = this.#stream(await this.#h(channel));
    let last: number;
    try {
      last = (await this.#jsm.streams.info(stream)).state.last_seq;
    } catch (e) {
      if (isNotFound(e)) {
        throw new ValidationError("unknown_channel", `Unknown channel "${channel}"`);
      }
      throw e;
    }
    // Stream seq of the last message handed on: a replacement consumer starts after it.
    let done = last;
    let stopped = false;
    let current: { msgs: ConsumerMessages; consumer: Consumer } | undefined;
    // When the consumer last showed life (a message or a heartbeat; a pending pull gets a
    // heartbeat every WATCH_PULL_MS / 2).
    let alive = Date.now();
    let replacing = false;
    // For the stall check: `done` as the last check found it behind the stream, if it was.
    let behindAt: number | undefined;
    let checking = false;
    let delivered = false; // anything handed on since the last stall check
    let tick = 0;
    const drop = (c: typeof current) => {
      void c?.msgs.close().then(() => c.consumer.delete()).catch(() => {});
    };
    const start = async (): Promise<void> => {
      const consumer = await this.#js.consumers.get(stream, {
        name_prefix: `${this.#P}_W_${crypto.randomUUID().replaceAll("-", "")}`,
        opt_start_seq: done + 1,
      });
      const msgs = await consumer.consume({
        expires: WATCH_PULL_MS,
        idle_heartbeat: WATCH_PULL_MS / 2,
        callback: (m) => {
          alive = Date.now();
          if (stopped || m.seq <= done) return; // a replaced consumer's last words
          done = m.seq;
          delivered = true;
          const e = _entry(m.headers, m.data);
          if (!e) return; // the creation marker
          const st = this.#state.get(channel);
          if (st && e.seq > st.head) {
            st.head = e.seq;
            st.epoch = Number(m.headers?.get("Sky-Chan-Epoch"));
          }
          onAppend(e);
        },
      });
      current = { msgs, consumer };
      alive = Date.now();
      void (async () => {
        for await (const st of msgs.status()) {
          if (st.type === "heartbeat") alive = Date.now();
        }
      })().catch(() => {});
    };
    // The library recovers from reconnects, but a consumer lost with its NATS node (ordered
    // consumers have one replica) or a pull ended by a leader change (409) can leave it
    // silent for good: replace a silent consumer, from where it stopped.
    const replace = async (): Promise<void> => {
      replacing = true;
      drop(current);
      current = undefined;
      try {
        for (let attempt = 0; !stopped && !this.#closed; attempt++) {
          try {
            return await start();
          } catch {
            await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
          }
        }
      } finally {
        replacing = false;
      }
    };
    await start();
    const subject = this.#subject(await this.#h(channel));
    const watchdog = setInterval(async () => {
      if (replacing || checking || stopped) return;
      if (Date.now() - alive > WATCH_PULL_MS * 1.5) return void replace();
      // Alive but stuck (a CI run after a NATS node died: no messages for 30 s although the
      // silence check above never fired): the stream has a message past `done` at two checks
      // in a row while `done` did not move.
      // Checked every 8 s, and only when nothing was handed on since the last check.
      if (++tick % 4 !== 0) return;
      if (delivered) {
        delivered = false;
        behindAt = undefined;
        return;
      }
      checking = true;
      try {
        const m = await directGet(this.#jsm, stream, { last_by_subj: subject });
        const behind = m !== null && m.seq > done;
        if (behind && behindAt === done) {
          behindAt = undefined;
          void replace();
        } else {
          behindAt = behind ? done : undefined;
        }
      } catch {
        // NATS unreachable: the library reconnects, the next check looks again
      } finally {
        checking = false;
      }
    }, WATCH_PULL_MS / 2);
    return () => {
      stopped = true;
      clearInterval(watchdog);
      drop(current);
    };
  }

  /** Trims a channel to its newest `max` seqs, after any walk already running on it. */
  #countTrim(channel: string, h: string, max: number): Promise<number> {
    return this.#serial(`trim:${h}`, async () => {
      if (this.#closed) return 0;
      return await this.#trimStream(h, (this.#state.get(channel)?.head ?? 0) - max, -Infinity);
    });
  }

  /**
   * Deletes a channel's non-commit entries with seq <= `upToSeq` or time before
   * `before`, walking from where the last walk stopped to the first entry it keeps.
   */
  async #trimStream(h: string, upToSeq: number, before: number): Promise<number> {
    const stream = this.#stream(h);
    let from = this.#trimFrom.get(stream) ?? 2; // stream seq 1 is the creation marker
    let n = 0;
    try {
      for (;;) {
        const m = await this.#next(h, from);
        if (!m) break;
        const e = _entry(m.header, m.data);
        if (e && e.kind !== "commit" && e.kind !== "genesis") {
          if (e.seq > upToSeq && e.time >= before) break;
          try {
            if (await this.#jsm.streams.deleteMessage(stream, m.seq, false)) n++;
          } catch (err) {
            if (!isNotFound(err)) throw err; // another relay deleted it first
          }
        }
        from = m.seq + 1;
      }
    } finally {
      this.#trimFrom.set(stream, from);
    }
    return n;
  }

  /**
   * Applies retention to every channel: by age (and by count, for channels
   * other relays appended to). Since a pass walks every channel stream, it
   * runs once per tenth of the age limit, and at least once a minute.
   *
   * @param now Now, ms since the Unix epoch.
   * @returns How many entries this relay deleted.
   */
  async trim(now: number): Promise<number> {
    this.#check();
    const { maxAgeMs, maxCount } = this.#opts.retention ?? {};
    if (maxAgeMs === undefined && maxCount === undefined) return 0;
    if (now - this.#lastAgePass < Math.min(60_000, (maxAgeMs ?? 600_000) / 10)) return 0;
    this.#lastAgePass = now;
    const prefix = `${this.#P}_CH_`;
    let n = 0;
    for await (const si of this.#jsm.streams.list(`${this.#p}.ch.>`)) {
      const name = si.config.name;
      if (!name.startsWith(prefix) || this.#closed) continue;
      const h = name.slice(prefix.length);
      const upTo = maxCount === undefined ? 0 : si.state.last_seq - 1 - maxCount;
      const before = maxAgeMs === undefined ? -Infinity : now - maxAgeMs;
      n += await this.#serial(`trim:${h}`, () => this.#trimStream(h, upTo, before));
    }
    return n;
  }

  /**
   * Queues a blob for an address.
   *
   * @param address The mailbox address.
   * @param id The item id.
   * @param payload The blob.
   * @param expiresAt Expiry, ms since the Unix epoch.
   */
  async mailboxPut(
    address: string,
    id: Uint8Array,
    payload: Uint8Array,
    expiresAt: number,
  ): Promise<void> {
    this.#check();
    const h = await _hash(address);
    const hd = natsHeaders();
    hd.set("Sky-Expires", String(expiresAt));
    hd.set("Sky-Id", id.toHex());
    await this.#js.publish(`${this.#p}.mb.${h}`, payload, {
      msgID: `${h}.${id.toHex()}`,
      headers: hd,
    });
  }

  /**
   * Leases and returns the unexpired blobs of an address that no lease holds,
   * across every relay, and deletes its expired ones.
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
    return this.#serial(`mb:${address}`, async () => {
      const subject = `${this.#p}.mb.${await _hash(address)}`;
      const out: MailboxEntry[] = [];
      const seen = new Set<string>();
      const expired: number[] = [];
      let used = 0;
      for await (const m of this.#items(subject)) {
        const idHex = m.header?.get("Sky-Id") ?? "";
        if (!(Number(m.header?.get("Sky-Expires")) > now)) {
          expired.push(m.seq);
          continue;
        }
        // A later copy of an id (a put repeated after the de-duplication window) waits for
        // the first, as a repeated put does in the other logs.
        if (seen.has(idHex)) continue;
        seen.add(idHex);
        // Full: the rest waits for the next take (expired ones after it are dropped then).
        if (!fitsPage(page, out.length, used, m.data.length)) break;
        const lease = await this.#lease(subject, m.seq, now, now + leaseMs);
        if (lease !== undefined) {
          used += m.data.length + (page?.perItemBytes ?? 0);
          out.push({ id: fromHex(idHex, "mailbox id"), payload: m.data, lease });
        }
      }
      for (const seq of expired) await this.#dropItem(subject, seq);
      return out;
    });
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
    return this.#serial(`mb:${address}`, async () => {
      const subject = `${this.#p}.mb.${await _hash(address)}`;
      const want = new Set(ids.map((id) => id.toHex()));
      let n = 0;
      for await (const m of this.#items(subject)) {
        if (!want.has(m.header?.get("Sky-Id") ?? "")) continue;
        if (await this.#dropItem(subject, m.seq)) n++;
      }
      return n;
    });
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
    return this.#serial(`mb:${address}`, async () => {
      const subject = `${this.#p}.mb.${await _hash(address)}`;
      for (const l of leases) {
        const m = /^(\d+)\.(\d+)$/.exec(l.lease);
        if (m) await this.#publishClaim(`${subject}.c.${m[1]}`, 0, Number(m[2]));
      }
    });
  }

  /** The item messages of a mailbox subject, oldest first. */
  #items(subject: string): AsyncGenerator<StoredMsg> {
    return directScan(this.#jsm, `${this.#P}_MB`, subject);
  }

  /**
   * Leases the item at stream seq `itemSeq` until `until`, unless a lease that
   * has not lapsed by `now` holds it.
   *
   * @returns The lease (`<item seq>.<claim seq>`), or `undefined` if another holds it.
   */
  async #lease(
    subject: string,
    itemSeq: number,
    now: number,
    until: number,
  ): Promise<string | undefined> {
    const claimSubject = `${subject}.c.${itemSeq}`;
    const last = await directGet(this.#jsm, `${this.#P}_MB`, { last_by_subj: claimSubject });
    // A claim without a lease header (an older relay's, whose take then purged the item)
    // counts as lapsed.
    if (Number(last?.header?.get("Sky-Lease-Until") ?? 0) > now) return undefined;
    const seq = await this.#publishClaim(claimSubject, until, last?.seq ?? 0);
    return seq === undefined ? undefined : `${itemSeq}.${seq}`;
  }

  /**
   * Publishes a claim (a lease until `until`; 0 releases) if the claim
   * subject's last message is still the one at `expectSeq` (0: none). Of
   * relays publishing after the same message exactly one succeeds, so two
   * relays taking one address at once never both hold an item.
   *
   * @returns The new claim's stream seq, or `undefined` if another claim came first.
   */
  async #publishClaim(
    claimSubject: string,
    until: number,
    expectSeq: number,
  ): Promise<number | undefined> {
    const hd = natsHeaders();
    hd.set("Sky-Lease-Until", String(until));
    try {
      const ack = await this.#js.publish(claimSubject, new Uint8Array(0), {
        headers: hd,
        expect: { lastSubjectSequence: expectSeq },
      });
      return ack.seq;
    } catch (e) {
      if (isWrongLast(e)) return undefined;
      throw e;
    }
  }

  /** Deletes an item message and then its claims; true if this call deleted the item. */
  async #dropItem(subject: string, itemSeq: number): Promise<boolean> {
    const stream = `${this.#P}_MB`;
    let deleted = false;
    try {
      deleted = await this.#jsm.streams.deleteMessage(stream, itemSeq, false);
    } catch (e) {
      if (!isNotFound(e)) throw e; // another relay deleted it first
    }
    await this.#jsm.streams.purge(stream, { filter: `${subject}.c.${itemSeq}` });
    return deleted;
  }

  /**
   * Checks that NATS answers a ping within 2 s (it does not while the
   * connection is down and reconnecting).
   *
   * @throws {RelayError} `relay_unavailable` if it does not.
   */
  async health(): Promise<void> {
    this.#check();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#nc.rtt(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no answer to a ping within 2 s")), 2000);
        }),
      ]);
    } catch (e) {
      throw new RelayError(
        "relay_unavailable",
        `NATS is not reachable: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the NATS connection (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}
