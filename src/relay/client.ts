/**
 * The relay client: requests matched to answers by request id, subscriptions
 * delivered strictly in seq order, and reconnection that loses nothing. After
 * a reconnect it says hello again, re-subscribes every channel from the last
 * delivered seq + 1 and re-sends every unanswered request (publishes keep their
 * id, so the relay does not append them twice).
 *
 * @module
 */
import {
  AuthError,
  InterruptedError,
  ProtocolError,
  RelayError,
  skytaleError,
  ValidationError,
} from "../errors.ts";
import { logLine } from "../runtime/env.ts";
import { clientWebSocket } from "../runtime/websocket.ts";
import type { EntryKind, LogEntry } from "./log/types.ts";
import {
  ABSOLUTE_MAX_FRAME_BYTES,
  decodeFrame,
  encodeFrame,
  type Frame,
  type FrameOf,
  ID_BYTES,
  type MailboxItem,
  MAX_ACK_IDS,
  type SubscribeFrom,
  TAKE_KEY_BYTES,
} from "./protocol.ts";

export type { MailboxItem } from "./protocol.ts";

/** Options of {@linkcode RelayClient}. */
export interface RelayClientOptions {
  /** Opens a WebSocket to the relay (open, or about to open); called again on every reconnect. */
  connect: () => Promise<WebSocket>;
  /** Supplies the hello token, asked on every (re)connect. */
  token?: () => Promise<string | undefined>;
  /**
   * Replaces the single hello of every (re)connect with a handshake (the
   * embedded local relay's mutual proof of the user's secret, see
   * `local_auth.ts`): given `hello`, which sends one hello with a token and
   * resolves with the relay's `helloOk`, it resolves with the last `helloOk`
   * once the connection is authenticated, or throws (an `AuthError` stops
   * reconnecting and fails the waiting requests). `token` is then not used.
   */
  greet?: (hello: (token: string) => Promise<FrameOf<"helloOk">>) => Promise<FrameOf<"helloOk">>;
  /**
   * Signs a connection's challenge with the agent's identity key, on every
   * (re)connect to a relay that asks (`PROVE_CONTEXT` then the nonce, Ed25519),
   * so the relay lets it read and publish the channels it is a member of.
   */
  prove?: (nonce: Uint8Array) => Promise<{ publicKey: Uint8Array; signature: Uint8Array }>;
  /** How long a request may wait for its answer, reconnects included, in ms (default 15000). */
  requestTimeoutMs?: number;
  /** How often to ping an idle relay; a missed pong forces a reconnect (default 15000 ms). */
  pingIntervalMs?: number;
  /** The first reconnect delay in ms (default 100); it doubles per failure. */
  backoffInitialMs?: number;
  /** The longest reconnect delay in ms (default 5000). */
  backoffMaxMs?: number;
  /** Told about errors thrown by `onEntry` handlers and unsolicited relay errors (default: logged). */
  onError?: (e: unknown) => void;
}

/** The result of a publish. */
export type PublishResult =
  | { ok: true; seq: number; epoch: number }
  | { ok: false; code: "stale_epoch" | "unknown_channel"; epoch: number };

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

interface _Pending {
  reqId: number;
  encode: () => Uint8Array<ArrayBuffer>;
  resend: boolean;
  resolve: (f: Frame) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

class _Queue<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(v: T): void {
    this.#items.push(v);
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const v = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return v;
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

interface _Sub {
  channel: string;
  from: SubscribeFrom;
  onEntry: (e: LogEntry) => void | Promise<void>;
  /** Set by {@linkcode RelayClient.subscribeBatch}: called with every entry queued so far. */
  onBatch: ((es: LogEntry[]) => void | Promise<void>) | undefined;
  /** The next seq expected from the relay; undefined until the first `subscribed`. */
  next: number | undefined;
  queue: _Queue<LogEntry>;
  running: boolean;
  active: boolean;
  /** The request id of an unanswered subscribe for this channel. */
  pendingReq: number | undefined;
}

/** The most take pages one `mailboxLease` collects (a mailbox filled as fast as it is read ends). */
const MAX_TAKE_PAGES = 256;

function _describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Opens a WebSocket and waits until it is open.
 *
 * @param url The relay URL, e.g. `ws://127.0.0.1:5000`.
 * @param timeoutMs How long to wait, in ms.
 * @returns The open socket (binary type `arraybuffer`).
 * @throws {RelayError} `relay_unavailable` if it cannot connect in time.
 */
export async function connectWebSocket(url: string, timeoutMs = 5000): Promise<WebSocket> {
  const Impl = await clientWebSocket();
  return await new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new Impl(url);
    } catch (e) {
      reject(new RelayError("relay_unavailable", `Cannot connect to relay "${url}"`, { cause: e }));
      return;
    }
    ws.binaryType = "arraybuffer";
    const done = (err?: RelayError) => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      if (err) {
        try {
          ws.close();
        } catch { /* never opened */ }
        reject(err);
      } else resolve(ws);
    };
    const timer = setTimeout(
      () =>
        done(
          new RelayError(
            "relay_unavailable",
            `Timed out after ${timeoutMs} ms connecting to relay "${url}"`,
          ),
        ),
      timeoutMs,
    );
    ws.onopen = () => done();
    ws.onerror = () =>
      done(new RelayError("relay_unavailable", `Cannot connect to relay "${url}"`));
    ws.onclose = () =>
      done(new RelayError("relay_unavailable", `Relay "${url}" closed the connection`));
  });
}

/**
 * A `connect` function for {@linkcode RelayClient} over several relays that
 * share one channel space (a cluster): it connects to the last relay that
 * worked, and when that one cannot be reached, to the next in the list.
 *
 * @param urls WebSocket URLs of the relays.
 * @param timeoutMs How long one connection attempt may take, in ms.
 * @returns The connect function.
 * @throws {ValidationError} `invalid_argument` if `urls` is empty.
 */
export function failoverConnector(urls: string[], timeoutMs = 5000): () => Promise<WebSocket> {
  if (urls.length === 0) throw new ValidationError("invalid_argument", "No relay URL given");
  let current = 0;
  return async () => {
    let last: unknown;
    for (let n = 0; n < urls.length; n++) {
      const i = (current + n) % urls.length;
      try {
        const ws = await connectWebSocket(urls[i]!, timeoutMs);
        current = i;
        return ws;
      } catch (e) {
        last = e;
      }
    }
    throw last;
  };
}

/** The lifetime and expiry of a JWT, read without verifying it; `undefined` if it is not one. */
function _jwtTimes(token: string): { lifetimeMs: number; expiresAt: number } | undefined {
  const part = token.split(".")[1];
  if (part === undefined) return undefined;
  try {
    const json = atob(part.replaceAll("-", "+").replaceAll("_", "/"));
    const c = JSON.parse(json) as { exp?: unknown; iat?: unknown };
    if (typeof c.exp !== "number") return undefined;
    const iat = typeof c.iat === "number" ? c.iat : c.exp - 3600;
    return { lifetimeMs: (c.exp - iat) * 1000, expiresAt: c.exp * 1000 };
  } catch {
    return undefined;
  }
}

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
  readonly #connect: () => Promise<WebSocket>;
  readonly #token: (() => Promise<string | undefined>) | undefined;
  readonly #prove: RelayClientOptions["prove"];
  readonly #greetWith: RelayClientOptions["greet"];
  readonly #requestTimeoutMs: number;
  readonly #pingIntervalMs: number;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #onError: (e: unknown) => void;

  #ws: WebSocket | undefined;
  #ready = false;
  #connecting: Promise<void> | undefined;
  #lastError: unknown;
  #attempt = 0;
  #nextReqId = 1;
  #pending = new Map<number, _Pending>();
  #subs = new Map<string, _Sub>();
  #subReqs = new Map<number, _Sub>();
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The relay does not know `mailboxAck`: one from before leases, whose takes delete. */
  #noAcks = false;

  /**
   * Creates it.
   *
   * @param opts How to connect, the token source and timing.
   */
  constructor(opts: RelayClientOptions) {
    this.#connect = opts.connect;
    this.#token = opts.token;
    this.#prove = opts.prove;
    this.#greetWith = opts.greet;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? 15_000;
    this.#pingIntervalMs = opts.pingIntervalMs ?? 15_000;
    this.#backoffInitialMs = opts.backoffInitialMs ?? 100;
    this.#backoffMaxMs = opts.backoffMaxMs ?? 5_000;
    this.#onError = opts.onError ?? ((e) => logLine(`skytale relay client: ${_describe(e)}`));
  }

  /** Whether a connection is open and greeted. */
  get connected(): boolean {
    return this.#ready;
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
    const f = await this.#request<"created">((reqId) => ({
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
    this.#checkOpen();
    if (this.#subs.has(channel)) {
      throw new ValidationError("invalid_argument", `Already subscribed to channel "${channel}"`);
    }
    const sub: _Sub = {
      channel,
      from,
      onEntry,
      onBatch,
      next: undefined,
      queue: new _Queue(),
      running: false,
      active: true,
      pendingReq: undefined,
    };
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
    sub.active = false;
    sub.queue.clear();
    if (this.#ready && !this.#closed) {
      await this.#request<"ok">((reqId) => ({ type: "unsubscribe", reqId, channel }), false);
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
    const f = await this.#request<"ack" | "nack">((reqId) => ({
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
    id: Uint8Array = crypto.getRandomValues(new Uint8Array(ID_BYTES)),
  ): Promise<void> {
    await this.#request<"ok">((reqId) => ({
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
      const f = await this.#request<"mailboxItems">((reqId) => ({
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
        await this.#request<"ok">((reqId) => ({
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
    await this.#request<"pong">((reqId) => ({ type: "ping", reqId }), false);
    return Date.now() - t;
  }

  /** Closes the connection and stops reconnecting; pending requests fail with `closed` (idempotent). */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      this.#wake?.();
      this.#stopPing();
      clearTimeout(this.#renewTimer);
      for (const p of [...this.#pending.values()]) {
        this.#settle(p.reqId)?.reject(new InterruptedError("closed", "The relay client is closed"));
      }
      for (const s of this.#subs.values()) {
        s.active = false;
        s.queue.clear();
      }
      this.#subs.clear();
      const ws = this.#ws;
      this.#ws = undefined;
      this.#ready = false;
      if (ws) await _closeSocket(ws);
      await this.#connecting?.catch(() => {});
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#closed) throw new InterruptedError("closed", "The relay client is closed");
  }

  #settle(reqId: number): _Pending | undefined {
    const p = this.#pending.get(reqId);
    if (!p) return undefined;
    this.#pending.delete(reqId);
    clearTimeout(p.timer);
    return p;
  }

  #request<T extends Frame["type"]>(
    build: (reqId: number) => Frame,
    resend = true,
    timeoutMs = this.#requestTimeoutMs,
  ): Promise<FrameOf<T>> {
    this.#checkOpen();
    const reqId = this.#nextReqId;
    this.#nextReqId = this.#nextReqId >= 0xffff_fffe ? 1 : this.#nextReqId + 1;
    return new Promise<FrameOf<T>>((resolve, reject) => {
      const p: _Pending = {
        reqId,
        encode: () => encodeFrame(build(reqId)),
        resend,
        resolve: resolve as (f: Frame) => void,
        reject,
        timer: undefined,
      };
      p.timer = setTimeout(() => {
        if (!this.#settle(reqId)) return;
        if (!this.#ready) {
          const why = this.#lastError ? `: ${_describe(this.#lastError)}` : "";
          reject(
            new RelayError(
              "relay_unavailable",
              `Cannot reach the relay within ${timeoutMs} ms${why}`,
            ),
          );
        } else {
          reject(
            new InterruptedError("timeout", `The relay did not answer within ${timeoutMs} ms`),
          );
        }
      }, timeoutMs);
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = p.encode();
      } catch (e) {
        clearTimeout(p.timer);
        reject(e);
        return;
      }
      this.#pending.set(reqId, p);
      if (this.#ready && this.#ws) this.#ws.send(bytes);
      else void this.#ensureConnection();
    });
  }

  #subscribeRequest(sub: _Sub): Promise<void> {
    let reqId = 0;
    const promise = this.#request<"subscribed">((id) => {
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
    // The cursor is set synchronously when `subscribed` arrives (see #onMessage): deliveries
    // may be dispatched in the same task, before any promise callback runs.
    return promise.then(() => {}, (e) => {
      this.#subReqs.delete(reqId);
      if (sub.pendingReq === reqId) sub.pendingReq = undefined;
      throw e;
    });
  }

  #ensureConnection(): Promise<void> {
    if (this.#ready || this.#closed) return Promise.resolve();
    this.#connecting ??= this.#connectLoop().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  #wanted(): boolean {
    return this.#subs.size > 0 || this.#pending.size > 0;
  }

  async #connectLoop(): Promise<void> {
    while (!this.#closed && this.#wanted()) {
      let ws: WebSocket | undefined;
      try {
        ws = await this.#openSocket();
        if (this.#closed) {
          await _closeSocket(ws);
          return;
        }
        await this.#greet(ws);
        if (this.#closed) return;
        this.#attempt = 0;
        this.#afterConnect();
        return;
      } catch (e) {
        this.#lastError = e;
        if (ws && this.#ws === ws) this.#dropSocket(ws);
        else if (ws) void _closeSocket(ws);
        if (e instanceof AuthError) {
          for (const p of [...this.#pending.values()]) this.#settle(p.reqId)?.reject(e);
          return;
        }
      }
      this.#attempt++;
      const base = Math.min(this.#backoffMaxMs, this.#backoffInitialMs * 2 ** (this.#attempt - 1));
      await this.#sleep(base / 2 + Math.random() * base / 2);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  async #openSocket(): Promise<WebSocket> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new RelayError("relay_unavailable", "Timed out connecting to the relay")),
        Math.min(10_000, this.#requestTimeoutMs),
      );
    });
    const opening = this.#connect();
    let ws: WebSocket;
    try {
      ws = await Promise.race([opening, timeout]);
    } catch (e) {
      // A connect that finishes after the timeout must not leak its socket.
      opening.then((late) => _closeSocket(late), () => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
    ws.binaryType = "arraybuffer";
    if (ws.readyState === WebSocket.CONNECTING) {
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () =>
          reject(new RelayError("relay_unavailable", "Cannot connect to the relay"));
        ws.onclose = () =>
          reject(new RelayError("relay_unavailable", "The relay closed the connection"));
      });
    }
    if (ws.readyState !== WebSocket.OPEN) {
      throw new RelayError("relay_unavailable", "The relay connection is not open");
    }
    this.#ws = ws;
    ws.onopen = null;
    ws.onerror = () => {};
    ws.onclose = () => this.#dropSocket(ws);
    ws.onmessage = (ev) => this.#onMessage(ev.data);
    return ws;
  }

  async #greet(ws: WebSocket): Promise<void> {
    const hello = async (token: string | undefined) => {
      if (this.#ws !== ws) {
        throw new RelayError("relay_unavailable", "The relay closed the connection");
      }
      const ok = await this.#handshake(
        ws,
        (reqId) => token === undefined ? { type: "hello", reqId } : { type: "hello", reqId, token },
        "hello",
      );
      if (ok.type !== "helloOk") {
        throw new ProtocolError(`The relay answered hello with "${ok.type}"`);
      }
      return ok;
    };
    let ok: FrameOf<"helloOk">;
    if (this.#greetWith) ok = await this.#greetWith(hello);
    else {
      const token = this.#token ? await this.#token() : undefined;
      ok = await hello(token);
      if (token !== undefined) this.#scheduleRenewal(ws, token);
    }
    // Membership: sign this connection's challenge with the identity key, before any
    // subscription is (re)sent, so a relay that validates the channel lets it through.
    if (ok.nonce !== undefined && this.#prove !== undefined) {
      const proof = await this.#prove(ok.nonce);
      if (this.#ws !== ws) {
        throw new RelayError("relay_unavailable", "The relay closed the connection");
      }
      await this.#handshake(ws, (reqId) => ({ type: "prove", reqId, ...proof }), "prove");
    }
  }

  /** One request on a connection that is not ready yet (hello, prove). */
  #handshake(ws: WebSocket, build: (reqId: number) => Frame, what: string): Promise<Frame> {
    const reqId = this.#nextReqId++;
    const answer = new Promise<Frame>((resolve, reject) => {
      const p: _Pending = {
        reqId,
        encode: () => new Uint8Array(0),
        resend: false,
        resolve,
        reject,
        timer: setTimeout(() => {
          if (this.#settle(reqId)) {
            reject(new InterruptedError("timeout", `The relay did not answer ${what} in time`));
          }
        }, Math.min(10_000, this.#requestTimeoutMs)),
      };
      this.#pending.set(reqId, p);
    });
    ws.send(encodeFrame(build(reqId)));
    return answer;
  }

  /**
   * A token that is a JWT is renewed on the open connection before it expires:
   * with a third of its lifetime left, a fresh token is asked for and sent in
   * a new `hello`, which extends the relay's session without a reconnect.
   */
  #scheduleRenewal(ws: WebSocket, token: string): void {
    clearTimeout(this.#renewTimer);
    const t = _jwtTimes(token);
    if (!t) return;
    const delay = Math.max(500, t.expiresAt - Date.now() - t.lifetimeMs / 3);
    this.#renewTimer = setTimeout(() => void this.#renew(ws, token), Math.min(delay, 0x7fff_ffff));
  }

  async #renew(ws: WebSocket, old: string): Promise<void> {
    if (this.#ws !== ws || this.#closed || !this.#token) return;
    let token: string | undefined;
    try {
      token = await this.#token();
    } catch (e) {
      this.#onError(e);
      // A refused key stays refused; the relay ends the session at expiry. Otherwise retry soon.
      if (!(e instanceof AuthError) && this.#ws === ws) {
        this.#renewTimer = setTimeout(() => void this.#renew(ws, old), 1000);
      }
      return;
    }
    if (token === undefined || this.#ws !== ws || this.#closed) return;
    try {
      await this.#request<"helloOk">((reqId) => ({ type: "hello", reqId, token }), false);
      if (this.#ws === ws) this.#scheduleRenewal(ws, token);
    } catch (e) {
      this.#onError(e);
    }
  }

  #afterConnect(): void {
    this.#ready = true;
    this.#noAcks = false; // maybe another relay of a cluster, or the same one upgraded
    const ws = this.#ws!;
    // Re-subscribe confirmed subscriptions from where delivery stopped.
    for (const sub of this.#subs.values()) {
      if (sub.pendingReq === undefined && sub.next !== undefined) {
        this.#subscribeRequest(sub).catch((e) => this.#onError(e));
      }
    }
    // Re-send everything unanswered, in request order (publishes keep their ids).
    const pend = [...this.#pending.values()].sort((a, b) => a.reqId - b.reqId);
    for (const p of pend) {
      if (this.#ws !== ws) break;
      ws.send(p.encode());
    }
    this.#startPing();
  }

  #dropSocket(ws: WebSocket): void {
    if (this.#ws !== ws) return;
    this.#ws = undefined;
    this.#ready = false;
    this.#stopPing();
    clearTimeout(this.#renewTimer);
    ws.onmessage = null;
    ws.onclose = null;
    void _closeSocket(ws);
    for (const p of [...this.#pending.values()]) {
      if (!p.resend) {
        this.#settle(p.reqId)?.reject(
          new RelayError("relay_unavailable", "The connection to the relay was lost"),
        );
      }
    }
    if (!this.#closed && this.#wanted()) void this.#ensureConnection();
  }

  #startPing(): void {
    this.#stopPing();
    this.#pingTimer = setInterval(() => {
      const ws = this.#ws;
      if (!ws || !this.#ready) return;
      this.#request<"pong">((reqId) => ({ type: "ping", reqId }), false, this.#pingIntervalMs)
        .catch(() => {
          if (this.#ws === ws && !this.#closed) this.#dropSocket(ws);
        });
    }, this.#pingIntervalMs);
  }

  #stopPing(): void {
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
  }

  #onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) {
      this.#onError(new ProtocolError("The relay sent a text message"));
      return;
    }
    let f: Frame;
    try {
      f = decodeFrame(new Uint8Array(data), ABSOLUTE_MAX_FRAME_BYTES);
    } catch (e) {
      this.#onError(e);
      return;
    }
    if (f.type === "deliver") return this.#onDeliver(f);
    if (f.type === "error" && f.reqId === 0) {
      this.#onError(skytaleError(f.code, `The relay reported: ${f.message}`));
      return;
    }
    const p = this.#settle(f.reqId);
    if (!p) return;
    if (f.type === "subscribed") {
      const sub = this.#subReqs.get(f.reqId);
      this.#subReqs.delete(f.reqId);
      if (sub) {
        if (sub.pendingReq === f.reqId) sub.pendingReq = undefined;
        sub.next ??= f.fromSeq;
      }
    }
    if (f.type === "error") p.reject(skytaleError(f.code, f.message));
    else p.resolve(f);
  }

  #onDeliver(f: FrameOf<"deliver">): void {
    const sub = this.#subs.get(f.channel);
    if (!sub || !sub.active || sub.next === undefined || f.seq < sub.next) return;
    if (f.seq > sub.next) {
      // The relay sends each channel in seq order; it skips only seqs its retention deleted.
      const range = `${sub.next}-${f.seq - 1}`;
      this.#onError(
        new RelayError(
          "limit",
          `Entries ${range} of channel "${f.channel}" were deleted by the relay's retention`,
        ),
      );
    }
    sub.next = f.seq + 1;
    sub.queue.push({
      seq: f.seq,
      epoch: f.epoch,
      kind: f.kind,
      id: f.id,
      time: f.time,
      payload: f.payload,
    });
    if (!sub.running) void this.#drain(sub);
  }

  async #drain(sub: _Sub): Promise<void> {
    sub.running = true;
    try {
      while (sub.active) {
        const e = sub.queue.shift();
        if (!e) break;
        try {
          if (sub.onBatch) {
            const es = [e];
            for (let x = sub.queue.shift(); x; x = sub.queue.shift()) es.push(x);
            await sub.onBatch(es);
          } else await sub.onEntry(e);
        } catch (err) {
          this.#onError(err);
        }
      }
    } finally {
      sub.running = false;
    }
  }
}

function _closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 1000);
    ws.addEventListener("close", () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      ws.close(1000);
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

function _checkTakeKey(key: Uint8Array): void {
  if (key.length !== TAKE_KEY_BYTES) {
    throw new ValidationError(
      "invalid_argument",
      `Mailbox take key must be ${TAKE_KEY_BYTES} bytes, got ${key.length}`,
    );
  }
}
