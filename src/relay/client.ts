/**
 * The relay client: requests matched to answers by request id, subscriptions
 * delivered strictly in seq order, and reconnection that loses nothing. After
 * a reconnect it says hello again, re-subscribes every channel from the last
 * delivered seq + 1 and re-sends every unanswered request (publishes keep their
 * id, so the relay does not append them twice). The connection itself is
 * `_connection.ts`, the subscriptions' queues `_subscriptions.ts`, opening
 * sockets `connect.ts`.
 *
 * @module
 */
import { ProtocolError, skytaleError, ValidationError } from "../errors.ts";
import { randomBytes } from "../_util.ts";
import { type RelayClientOptions, RelayConnection } from "./_connection.ts";
import { deliverTo, newSub, stopSub, type Sub } from "./_subscriptions.ts";
import type { AppendResult, EntryKind, LogEntry } from "./log/types.ts";
import {
  ID_BYTES,
  type MailboxItem,
  MAX_ACK_IDS,
  type SubscribeFrom,
  TAKE_KEY_BYTES,
} from "./protocol.ts";

export { connectWebSocket, failoverConnector } from "./connect.ts";
export type { MailboxItem } from "./protocol.ts";

export type { RelayClientOptions } from "./_connection.ts";

/** The result of a publish: the relay's append result (ack: seq and epoch; nack: why, current epoch). */
export type PublishResult = AppendResult;

/** What to publish. */
export interface PublishInput {
  /** 16 random bytes; re-publishing the same id returns the first result. */
  id: Uint8Array;
  /** The entry kind. */
  kind: EntryKind;
  /** The epoch the payload was built on. */
  epoch: number;
  /** The opaque payload. */
  payload: Uint8Array;
}

/** The most take pages one `mailboxLease` collects (a mailbox filled as fast as it is read ends). */
const MAX_TAKE_PAGES = 256;

/**
 * A connection to a relay that survives reconnects.
 *
 * @example
 * ```ts ignore
 * const client = new RelayClient({ connect: () => connectWebSocket("ws://127.0.0.1:5000") });
 * await client.create("acme/research/results");
 * await client.subscribe("acme/research/results", { seq: 1 }, (e) => console.log(e.seq));
 * await client.close();
 * ```
 */
export class RelayClient {
  readonly #conn: RelayConnection;
  readonly #subs = new Map<string, Sub>();
  /** Subscriptions by the request id of their unanswered subscribe. */
  readonly #subReqs = new Map<number, Sub>();
  #closing: Promise<void> | undefined;
  /** The relay does not know `mailboxAck`: one from before leases, whose takes delete. */
  #noAcks = false;

  /**
   * Creates it.
   *
   * @param opts How to connect, the token source and timing.
   */
  constructor(opts: RelayClientOptions) {
    this.#conn = new RelayConnection(opts, {
      subscribed: () => this.#subs.size > 0,
      resume: () => this.#resume(),
      onSubscribed: (f) => {
        const sub = this.#subReqs.get(f.reqId);
        this.#subReqs.delete(f.reqId);
        if (sub) {
          if (sub.pendingReq === f.reqId) sub.pendingReq = undefined;
          sub.next ??= f.fromSeq;
        }
      },
      deliver: (f) => deliverTo(this.#subs.get(f.channel), f, this.#conn.onError),
    });
  }

  /** Whether a connection is open and greeted. */
  get connected(): boolean {
    return this.#conn.ready;
  }

  /**
   * Creates a channel on the relay.
   *
   * @param channel The channel name.
   * @param genesis The creator's GroupInfo at epoch 0 (`MlsEngine.groupInfo`):
   *   with it, the relay validates every commit of the channel.
   * @returns `false` if it already existed.
   */
  async create(channel: string, genesis?: Uint8Array): Promise<boolean> {
    const f = await this.#conn.request<"created">((reqId) => ({
      type: "create",
      reqId,
      channel,
      ...(genesis ? { genesis } : {}),
    }));
    return f.created;
  }

  /**
   * Subscribes to a channel. `onEntry` is awaited for each entry in turn, in
   * seq order, each entry once, across reconnects.
   *
   * @param channel The channel name.
   * @param from Where to start: a seq, or the first entry of an epoch.
   * @param onEntry Called for each entry.
   * @param onBatch If given, called instead of `onEntry` with bursts (see {@linkcode subscribeBatch}).
   * @returns When the relay has confirmed the subscription.
   * @throws {ValidationError} `invalid_argument` if already subscribed to the channel.
   */
  async subscribe(
    channel: string,
    from: SubscribeFrom,
    onEntry: (e: LogEntry) => void | Promise<void>,
    onBatch?: (es: LogEntry[]) => void | Promise<void>,
  ): Promise<void> {
    this.#conn.checkOpen();
    if (this.#subs.has(channel)) {
      throw new ValidationError("invalid_argument", `Already subscribed to channel "${channel}"`);
    }
    const sub = newSub(channel, from, onEntry, onBatch);
    this.#subs.set(channel, sub);
    try {
      await this.#subscribeRequest(sub);
    } catch (e) {
      if (this.#subs.get(channel) === sub) {
        this.#subs.delete(channel);
        sub.active = false;
      }
      throw e;
    }
  }

  /**
   * Like {@linkcode subscribe}, but hands over entries in bursts: `onEntries`
   * gets every entry that arrived while the previous call ran (at least one),
   * in seq order, each entry once. A handler that persists per call thus
   * persists once per burst instead of once per entry.
   *
   * @param channel The channel name.
   * @param from Where to start: a seq, or the first entry of an epoch.
   * @param onEntries Called for each burst; the next call waits for it.
   * @returns When the relay has confirmed the subscription.
   * @throws {ValidationError} `invalid_argument` if already subscribed to the channel.
   */
  async subscribeBatch(
    channel: string,
    from: SubscribeFrom,
    onEntries: (es: LogEntry[]) => void | Promise<void>,
  ): Promise<void> {
    await this.subscribe(channel, from, (e) => onEntries([e]), onEntries);
  }

  /**
   * Stops a subscription; entries not yet handed to `onEntry` are dropped.
   *
   * @param channel The channel name.
   */
  async unsubscribe(channel: string): Promise<void> {
    const sub = this.#subs.get(channel);
    if (!sub) return;
    this.#subs.delete(channel);
    stopSub(sub);
    if (this.#conn.ready && !this.#conn.closed) {
      await this.#conn.request<"ok">((reqId) => ({ type: "unsubscribe", reqId, channel }), false);
    }
  }

  /**
   * Publishes an entry. Survives reconnects: an unanswered publish is re-sent
   * with the same id.
   *
   * @param channel The channel name.
   * @param p The entry.
   * @returns The ack (seq, epoch after it) or nack (why, current epoch).
   */
  async publish(channel: string, p: PublishInput): Promise<PublishResult> {
    if (p.id.length !== ID_BYTES) {
      throw new ValidationError(
        "invalid_argument",
        `Publish id must be ${ID_BYTES} bytes, got ${p.id.length}`,
      );
    }
    const f = await this.#conn.request<"ack" | "nack">((reqId) => ({
      type: "publish",
      reqId,
      channel,
      id: p.id,
      kind: p.kind,
      epoch: p.epoch,
      payload: p.payload,
    }));
    if (f.type === "ack") return { ok: true, seq: f.seq, epoch: f.epoch };
    const code = f.code === "stale_epoch" || f.code === "unknown_channel" ? f.code : undefined;
    if (!code) {
      throw skytaleError(f.code, `The relay refused the publish to "${channel}": ${f.code}`);
    }
    return { ok: false, code, epoch: f.epoch };
  }

  /**
   * Queues a blob in a mailbox.
   *
   * @param address The mailbox address.
   * @param payload The opaque blob.
   * @param ttlSeconds How long the relay keeps it.
   * @param id The item's 16-byte id (default: random); a put repeated with the same id is kept once.
   */
  async mailboxPut(
    address: string,
    payload: Uint8Array,
    ttlSeconds: number,
    id: Uint8Array = randomBytes(ID_BYTES),
  ): Promise<void> {
    await this.#conn.request<"ok">((reqId) => ({
      type: "mailboxPut",
      reqId,
      address,
      id,
      ttl: Math.max(1, Math.ceil(ttlSeconds)),
      payload,
    }));
  }

  /**
   * Takes the queued blobs of a mailbox and leases them: no other take gets
   * them until the relay's lease (30 s by default) lapses or this connection
   * closes. Call {@linkcode mailboxAck} once they are used (persisted, acted
   * on); whatever is not acked comes back to a later take. A take whose answer
   * is lost to a reconnect is sent again, and then finds its items again once
   * the relay has seen the old connection close.
   *
   * The relay answers a take with one page, as many items as fit its frame
   * limit; this takes again until a take comes back empty (at most
   * 256 pages; the rest waits for the next call).
   *
   * @param address The mailbox address.
   * @param takeKey The mailbox's take key (see `newMailbox` in `mailbox.ts`).
   * @returns The items (id and blob), oldest first.
   * @throws {RelayError} `auth` if the key does not own the address.
   */
  async mailboxLease(address: string, takeKey: Uint8Array): Promise<MailboxItem[]> {
    _checkTakeKey(takeKey);
    const out: MailboxItem[] = [];
    for (let page = 0; page < MAX_TAKE_PAGES; page++) {
      const f = await this.#conn.request<"mailboxItems">((reqId) => ({
        type: "mailboxTake",
        reqId,
        address,
        key: takeKey,
      }));
      if (f.items.length === 0) break;
      out.push(...f.items);
    }
    return out;
  }

  /**
   * Deletes taken items from a mailbox for good. Ids that are unknown or
   * already deleted are fine, so an ack may be repeated. Against a relay from
   * before leases (it answers "Unknown frame type"), whose takes delete what
   * they return, acks are skipped.
   *
   * @param address The mailbox address.
   * @param ids The ids of items from {@linkcode mailboxLease}.
   * @param takeKey The mailbox's take key.
   * @throws {ValidationError} `invalid_argument` if an id is not 16 bytes or the key not 32.
   * @throws {RelayError} `auth` if the key does not own the address.
   */
  async mailboxAck(
    address: string,
    ids: readonly Uint8Array[],
    takeKey: Uint8Array,
  ): Promise<void> {
    _checkTakeKey(takeKey);
    for (const id of ids) {
      if (id.length !== ID_BYTES) {
        throw new ValidationError(
          "invalid_argument",
          `Mailbox item id must be ${ID_BYTES} bytes, got ${id.length}`,
        );
      }
    }
    for (let i = 0; i < ids.length && !this.#noAcks; i += MAX_ACK_IDS) {
      const chunk = ids.slice(i, i + MAX_ACK_IDS);
      try {
        await this.#conn.request<"ok">((reqId) => ({
          type: "mailboxAck",
          reqId,
          address,
          ids: chunk,
          key: takeKey,
        }));
      } catch (e) {
        if (
          !(e instanceof ProtocolError &&
            /Unknown frame type/.test(e.message))
        ) {
          throw e;
        }
        this.#noAcks = true;
      }
    }
  }

  /**
   * Takes every queued blob of a mailbox and acks it at once: at most once,
   * so blobs are lost if the caller fails before using them. Use
   * {@linkcode mailboxLease} and {@linkcode mailboxAck} to keep them until used.
   *
   * @param address The mailbox address.
   * @param takeKey The mailbox's take key.
   * @returns The blobs, oldest first.
   */
  async mailboxTake(address: string, takeKey: Uint8Array): Promise<Uint8Array[]> {
    const items = await this.mailboxLease(address, takeKey);
    await this.mailboxAck(address, items.map((i) => i.id), takeKey);
    return items.map((i) => i.payload);
  }

  /**
   * Round-trips a ping.
   *
   * @returns The round-trip time in ms.
   */
  async ping(): Promise<number> {
    const t = Date.now();
    await this.#conn.request<"pong">((reqId) => ({ type: "ping", reqId }), false);
    return Date.now() - t;
  }

  /** Closes the connection and stops reconnecting; pending requests fail with `closed` (idempotent). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const closing = this.#conn.close();
      for (const s of this.#subs.values()) stopSub(s);
      this.#subs.clear();
      await closing;
    })();
    return this.#closing;
  }

  /** After a (re)connect: re-subscribes confirmed subscriptions from where delivery stopped. */
  #resume(): void {
    this.#noAcks = false; // maybe another relay of a cluster, or the same one upgraded
    for (const sub of this.#subs.values()) {
      if (sub.pendingReq === undefined && sub.next !== undefined) {
        this.#subscribeRequest(sub).catch((e) => this.#conn.onError(e));
      }
    }
  }

  #subscribeRequest(sub: Sub): Promise<void> {
    let reqId = 0;
    const promise = this.#conn.request<"subscribed">((id) => {
      reqId = id;
      return {
        type: "subscribe",
        reqId: id,
        channel: sub.channel,
        from: sub.next !== undefined ? { seq: sub.next } : sub.from,
      };
    });
    sub.pendingReq = reqId;
    this.#subReqs.set(reqId, sub);
    // The cursor is set synchronously when `subscribed` arrives (`onSubscribed`): deliveries
    // may be dispatched in the same task, before any promise callback runs.
    return promise.then(() => {}, (e) => {
      this.#subReqs.delete(reqId);
      if (sub.pendingReq === reqId) sub.pendingReq = undefined;
      throw e;
    });
  }
}

function _checkTakeKey(key: Uint8Array): void {
  if (key.length !== TAKE_KEY_BYTES) {
    throw new ValidationError(
      "invalid_argument",
      `Mailbox take key must be ${TAKE_KEY_BYTES} bytes, got ${key.length}`,
    );
  }
}
