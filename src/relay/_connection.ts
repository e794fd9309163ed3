/**
 * One relay connection that survives reconnects: it opens the socket, says
 * hello (or runs the `greet` handshake), proves membership when asked,
 * matches answers to requests by request id, re-sends unanswered requests
 * after a reconnect (publishes keep their id, so the relay does not append
 * them twice), pings an idle relay, and renews a JWT before it expires.
 * Subscriptions are the client's (`client.ts`): it is told through
 * {@linkcode ConnectionHooks}.
 *
 * @module
 */
import { AuthError, InterruptedError, ProtocolError, RelayError, skytaleError } from "../errors.ts";
import { backoff, errorMessage, sleep, withTimeout } from "../_util.ts";
import { logLine } from "../runtime/env.ts";
import { jwtTimes } from "./_jwt.ts";
import { closeSocket } from "./connect.ts";
import {
  ABSOLUTE_MAX_FRAME_BYTES,
  decodeFrame,
  encodeFrame,
  type Frame,
  type FrameOf,
} from "./protocol.ts";

/** Options of `RelayClient`. */
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

/** What the connection tells the subscriptions, and asks them. */
export interface ConnectionHooks {
  /** Whether any subscription wants the connection kept up. */
  subscribed(): boolean;
  /** Called once a (re)connect is greeted, before unanswered requests are re-sent. */
  resume(): void;
  /** A `subscribed` answer, before the request it answers settles. */
  onSubscribed(f: FrameOf<"subscribed">): void;
  /** A delivered entry. */
  deliver(f: FrameOf<"deliver">): void;
}

interface _Pending {
  reqId: number;
  encode: () => Uint8Array<ArrayBuffer>;
  resend: boolean;
  resolve: (f: Frame) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** A reconnecting, greeted relay connection with request/response matching. */
export class RelayConnection {
  readonly #connect: () => Promise<WebSocket>;
  readonly #token: (() => Promise<string | undefined>) | undefined;
  readonly #prove: RelayClientOptions["prove"];
  readonly #greetWith: RelayClientOptions["greet"];
  readonly #requestTimeoutMs: number;
  readonly #pingIntervalMs: number;
  readonly #backoffInitialMs: number;
  readonly #backoffMaxMs: number;
  readonly #hooks: ConnectionHooks;
  /** Told about errors nobody awaits (handlers, unsolicited relay errors, renewals). */
  readonly onError: (e: unknown) => void;

  #ws: WebSocket | undefined;
  #ready = false;
  #connecting: Promise<void> | undefined;
  #lastError: unknown;
  #attempt = 0;
  #nextReqId = 1;
  #pending = new Map<number, _Pending>();
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #renewTimer: ReturnType<typeof setTimeout> | undefined;
  /** Aborted by {@linkcode close}: ends a reconnect backoff at once. */
  readonly #stop = new AbortController();
  #closed = false;

  /**
   * Creates it; nothing connects until the first request.
   *
   * @param opts How to connect, the token source and timing.
   * @param hooks The subscriptions' side.
   */
  constructor(opts: RelayClientOptions, hooks: ConnectionHooks) {
    this.#connect = opts.connect;
    this.#token = opts.token;
    this.#prove = opts.prove;
    this.#greetWith = opts.greet;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? 15_000;
    this.#pingIntervalMs = opts.pingIntervalMs ?? 15_000;
    this.#backoffInitialMs = opts.backoffInitialMs ?? 100;
    this.#backoffMaxMs = opts.backoffMaxMs ?? 5_000;
    this.#hooks = hooks;
    this.onError = opts.onError ?? ((e) => logLine(`skytale relay client: ${errorMessage(e)}`));
  }

  /** Whether a connection is open and greeted. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Whether {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Stops reconnecting, fails pending requests with `closed` and closes the socket.
   *
   * @returns When the socket is closed and no connect attempt runs.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    this.#stopPing();
    clearTimeout(this.#renewTimer);
    for (const p of [...this.#pending.values()]) {
      this.#settle(p.reqId)?.reject(new InterruptedError("closed", "The relay client is closed"));
    }
    const ws = this.#ws;
    this.#ws = undefined;
    this.#ready = false;
    if (ws) await closeSocket(ws);
    await this.#connecting?.catch(() => {});
  }

  /** Throws `closed` once {@linkcode close} was called. */
  checkOpen(): void {
    if (this.#closed) throw new InterruptedError("closed", "The relay client is closed");
  }

  #newReqId(): number {
    const reqId = this.#nextReqId;
    this.#nextReqId = reqId >= 0xffff_fffe ? 1 : reqId + 1;
    return reqId;
  }

  #settle(reqId: number): _Pending | undefined {
    const p = this.#pending.get(reqId);
    if (!p) return undefined;
    this.#pending.delete(reqId);
    clearTimeout(p.timer);
    return p;
  }

  /**
   * Sends a request and resolves with its answer (an `error` answer rejects).
   *
   * @param build Makes the frame for a request id; called at once, and again for a re-send.
   * @param resend Whether to re-send it after a reconnect (else a lost connection fails it).
   * @param timeoutMs How long it may wait, reconnects included.
   * @returns The answer.
   */
  request<T extends Frame["type"]>(
    build: (reqId: number) => Frame,
    resend = true,
    timeoutMs = this.#requestTimeoutMs,
  ): Promise<FrameOf<T>> {
    this.checkOpen();
    const reqId = this.#newReqId();
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
          const why = this.#lastError ? `: ${errorMessage(this.#lastError)}` : "";
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

  #ensureConnection(): Promise<void> {
    if (this.#ready || this.#closed) return Promise.resolve();
    this.#connecting ??= this.#connectLoop().finally(() => (this.#connecting = undefined));
    return this.#connecting;
  }

  #wanted(): boolean {
    return this.#hooks.subscribed() || this.#pending.size > 0;
  }

  async #connectLoop(): Promise<void> {
    while (!this.#closed && this.#wanted()) {
      let ws: WebSocket | undefined;
      try {
        ws = await this.#openSocket();
        if (this.#closed) {
          await closeSocket(ws);
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
        else if (ws) void closeSocket(ws);
        if (e instanceof AuthError) {
          for (const p of [...this.#pending.values()]) this.#settle(p.reqId)?.reject(e);
          return;
        }
      }
      this.#attempt++;
      const base = backoff(this.#attempt - 1, this.#backoffInitialMs, this.#backoffMaxMs);
      await sleep(base / 2 + Math.random() * base / 2, this.#stop.signal);
    }
  }

  async #openSocket(): Promise<WebSocket> {
    const opening = this.#connect();
    let ws: WebSocket;
    try {
      ws = await withTimeout(
        opening,
        Math.min(10_000, this.#requestTimeoutMs),
        () => new RelayError("relay_unavailable", "Timed out connecting to the relay"),
      );
    } catch (e) {
      // A connect that finishes after the timeout must not leak its socket.
      opening.then((late) => closeSocket(late), () => {});
      throw e;
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
    const reqId = this.#newReqId();
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
    const t = jwtTimes(token);
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
      this.onError(e);
      // A refused key stays refused; the relay ends the session at expiry. Otherwise retry soon.
      if (!(e instanceof AuthError) && this.#ws === ws) {
        this.#renewTimer = setTimeout(() => void this.#renew(ws, old), 1000);
      }
      return;
    }
    if (token === undefined || this.#ws !== ws || this.#closed) return;
    try {
      await this.request<"helloOk">((reqId) => ({ type: "hello", reqId, token }), false);
      if (this.#ws === ws) this.#scheduleRenewal(ws, token);
    } catch (e) {
      this.onError(e);
    }
  }

  #afterConnect(): void {
    this.#ready = true;
    const ws = this.#ws!;
    // Re-subscribe confirmed subscriptions from where delivery stopped.
    this.#hooks.resume();
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
    void closeSocket(ws);
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
      this.request<"pong">((reqId) => ({ type: "ping", reqId }), false, this.#pingIntervalMs)
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
      this.onError(new ProtocolError("The relay sent a text message"));
      return;
    }
    let f: Frame;
    try {
      f = decodeFrame(new Uint8Array(data), ABSOLUTE_MAX_FRAME_BYTES);
    } catch (e) {
      this.onError(e);
      return;
    }
    if (f.type === "deliver") return this.#hooks.deliver(f);
    if (f.type === "error" && f.reqId === 0) {
      this.onError(skytaleError(f.code, `The relay reported: ${f.message}`));
      return;
    }
    const p = this.#settle(f.reqId);
    if (!p) return;
    // The cursor is set before the request settles: deliveries may follow in the same task.
    if (f.type === "subscribed") this.#hooks.onSubscribed(f);
    if (f.type === "error") p.reject(skytaleError(f.code, f.message));
    else p.resolve(f);
  }
}
