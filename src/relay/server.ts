/**
 * The relay: a runtime-agnostic handler ({@linkcode RelayServer}) that orders,
 * stores and forwards opaque MLS ciphertext, plus {@linkcode startRelay} to
 * serve it over WebSocket.
 *
 * Per connection it keeps the hello state, subscriptions and a publish token
 * bucket; frames of one connection are handled one at a time, in order. This
 * file holds the connection's life (hello, expiry, idle and malformed-frame
 * limits), the frame dispatch and the HTTP endpoints; the frame families live
 * beside it: `_channels.ts` (create, subscribe, publish), `_fanout.ts`
 * (delivery to subscribers), `_membership.ts` (prove, who may use a channel),
 * `_mailboxes.ts`, `_quotas.ts` (rates and organisation quotas) and
 * `_metrics.ts`. Options and limits are in `server_options.ts`.
 *
 * The relay never sees plaintext: payloads are opaque bytes, and nothing here
 * logs them.
 *
 * @module
 */
import { AuthError, type ErrorCode, SkytaleError, ValidationError } from "../errors.ts";
import { errorMessage } from "../_util.ts";
import { CommitGate } from "./_commits.ts";
import { serve, type WsConnection, type WsHandlers } from "../runtime/serve.ts";
import { normalizeOrigin, requestGate } from "./_doors.ts";
import type { RelayLog } from "./log/types.ts";
import { decodeFrame, encodeFrame, type Frame, type FrameOf, peekRequestId } from "./protocol.ts";
import {
  DEFAULT_LIMITS,
  jsonLog,
  PRE_HELLO_MAX_FRAME_BYTES,
  PRE_HELLO_MAX_FRAMES,
  type RelayLimits,
  type RelayLogger,
  type RelayServerOptions,
  type RelaySession,
} from "./server_options.ts";
import { type Conn, errorCode, newConn, type RelayContext, storageFull } from "./_conn.ts";
import { RelayMetrics } from "./_metrics.ts";
import { Quotas } from "./_quotas.ts";
import { FanOut } from "./_fanout.ts";
import { Membership } from "./_membership.ts";
import { Mailboxes } from "./_mailboxes.ts";
import { Channels } from "./_channels.ts";

export * from "./server_options.ts";

/** The relay's request handling, independent of how it is served. */
export class RelayServer {
  readonly #log: RelayLog;
  readonly #limits: RelayLimits;
  readonly #authenticate: RelayServerOptions["authenticate"];
  readonly #onRequest: RelayServerOptions["onRequest"];
  readonly #extraMetrics: RelayServerOptions["metrics"];
  readonly #now: () => number;
  readonly #logger: RelayLogger;
  readonly #conns = new Set<Conn>();
  readonly #metrics = new RelayMetrics();
  readonly #quotas: Quotas;
  readonly #fanOut: FanOut;
  readonly #mailboxes: Mailboxes;
  readonly #membership: Membership;
  readonly #channels: Channels;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #trimTimer: ReturnType<typeof setInterval> | undefined;
  #trimming = false;
  #closed = false;

  /**
   * Creates it.
   *
   * @param opts The log, limits and hooks.
   */
  constructor(opts: RelayServerOptions) {
    this.#log = opts.log;
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#authenticate = opts.authenticate;
    this.#onRequest = opts.onRequest;
    this.#extraMetrics = opts.metrics;
    this.#now = opts.now ?? Date.now;
    this.#logger = opts.logger ?? jsonLog;
    const ctx = this.#context();
    const gate = new CommitGate(opts.log);
    this.#quotas = new Quotas(ctx);
    this.#fanOut = new FanOut(ctx, opts.batchMs ?? 0);
    this.#mailboxes = new Mailboxes(ctx, this.#quotas, opts.mailboxLeaseMs);
    this.#membership = new Membership(ctx, gate);
    this.#channels = new Channels({
      ctx,
      gate,
      fanOut: this.#fanOut,
      quotas: this.#quotas,
      membership: this.#membership,
      failed: (c, f, e) => this.#failed(c, f, e),
    });
    if (this.#log.trim) {
      this.#trimTimer = setInterval(() => void this.#trim(), opts.trimIntervalMs ?? 1000);
    }
    const tick = Math.max(1000, Math.min(15_000, this.#limits.idleTimeoutMs / 4));
    this.#idleTimer = setInterval(() => this.#closeIdle(), tick);
  }

  /** What the frame families share: the log, limits, clock, logger, counters, and how to answer. */
  #context(): RelayContext {
    return {
      log: this.#log,
      limits: this.#limits,
      now: this.#now,
      logger: this.#logger,
      metrics: this.#metrics.counters,
      observeAppend: (seconds) => this.#metrics.observeAppend(seconds),
      send: (c, f) => this.#send(c, f),
      error: (c, reqId, code, message) => this.#error(c, reqId, code, message),
      limitError: (c, reqId, what, message) => this.#limitError(c, reqId, what, message),
    };
  }

  async #trim(): Promise<void> {
    if (this.#trimming || this.#closed) return;
    this.#trimming = true;
    try {
      this.#metrics.counters.trimmed += await this.#log.trim?.(this.#now()) ?? 0;
    } catch (e) {
      this.#logger("error", "retention trim failed", { error: String(e) });
    } finally {
      this.#trimming = false;
    }
  }

  /** The limits in force. */
  get limits(): Readonly<RelayLimits> {
    return this.#limits;
  }

  /**
   * Answers a plain HTTP request: `GET /healthz` → `ok` (503 when the log says its storage is unusable), `GET /metrics` →
   * Prometheus text, the rest to the `onRequest` hook or 404.
   *
   * @param req The request.
   * @param remote The peer address, when known.
   * @returns The response.
   */
  async handleRequest(req: Request, remote = ""): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && path === "/healthz") {
      try {
        await this.#log.health?.();
      } catch (e) {
        return new Response(`unavailable: ${errorMessage(e)}\n`, {
          status: 503,
          headers: { "content-type": "text/plain" },
        });
      }
      return new Response("ok", { headers: { "content-type": "text/plain" } });
    }
    if (req.method === "GET" && path === "/metrics") {
      return new Response(this.metricsText(), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    const r = await this.#onRequest?.(req, remote);
    return r ?? new Response("not found", { status: 404 });
  }

  /**
   * The relay's counters in Prometheus text format.
   *
   * @returns The exposition text.
   */
  metricsText(): string {
    const text = this.#metrics.text({
      connections: this.#conns.size,
      channels: this.#fanOut.channels,
      subscriptions: this.#fanOut.subscriptions,
    });
    return text + (this.#extraMetrics?.() ?? "");
  }

  /**
   * Adopts a new WebSocket connection.
   *
   * @param ws The connection.
   * @returns Its message and close handlers.
   */
  openConnection(ws: WsConnection): WsHandlers {
    const c = newConn(ws, this.#now(), this.#limits.publishBurst);
    if (this.#closed) {
      ws.close(1001, "relay closing");
      return { message() {}, close() {} };
    }
    this.#conns.add(c);
    c.helloTimer = setTimeout(() => {
      if (c.session !== undefined || c.closed) return;
      this.#logger("warn", "no hello in time", {
        remote: c.ws.remote,
        helloTimeoutMs: this.#limits.helloTimeoutMs,
      });
      c.ws.close(1008, "no hello in time");
      this.#onClose(c);
    }, this.#limits.helloTimeoutMs);
    return {
      message: (data) => this.#onMessage(c, data),
      close: () => this.#onClose(c),
    };
  }

  /** Closes every connection and stops the idle timer (the log stays open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fanOut.close();
    clearInterval(this.#idleTimer);
    clearInterval(this.#trimTimer);
    this.#idleTimer = undefined;
    const chains = [...this.#conns].flatMap((c) => [c.chain, c.acks]);
    for (const c of [...this.#conns]) {
      c.ws.close(1001, "relay closing");
      this.#onClose(c);
    }
    await Promise.allSettled(chains);
    // Requests that were running end in #onClose too: release their leases before the log closes.
    await this.#mailboxes.settled();
  }

  #closeIdle(): void {
    const cutoff = this.#now() - this.#limits.idleTimeoutMs;
    for (const c of this.#conns) {
      if (c.lastSeen < cutoff) {
        c.ws.close(1001, "idle");
        this.#onClose(c);
      }
    }
  }

  #onClose(c: Conn): void {
    if (c.closed) return;
    c.closed = true;
    clearTimeout(c.expiry);
    clearTimeout(c.helloTimer);
    this.#conns.delete(c);
    if (c.org) c.org.conns--;
    c.org = undefined;
    for (const s of c.subs.values()) this.#fanOut.drop(s);
    c.subs.clear();
    // Whatever this connection took and did not ack goes back to its mailbox now, not only
    // when the lease lapses.
    this.#mailboxes.releaseAll(c);
  }

  #send(c: Conn, f: Frame): void {
    if (c.closed) return;
    const b = encodeFrame(f);
    this.#metrics.counters.framesOut++;
    this.#metrics.counters.bytesOut += b.length;
    c.ws.send(b);
  }

  #limitError(c: Conn, reqId: number, what: string, message: string): void {
    this.#metrics.counters.limitBreaches++;
    const org = c.session?.org;
    this.#logger("warn", "limit exceeded", {
      limit: what,
      remote: c.ws.remote,
      ...(org !== undefined ? { org } : {}),
    });
    this.#error(c, reqId, "limit", message);
  }

  #error(c: Conn, reqId: number, code: ErrorCode, message: string): void {
    this.#send(c, { type: "error", reqId, code, message });
  }

  #onMessage(c: Conn, data: Uint8Array): void {
    if (c.closed) return;
    c.lastSeen = this.#now();
    const m = this.#metrics.counters;
    m.framesIn++;
    m.bytesIn += data.length;
    if (c.session === undefined && !this.#preHello(c, data.length)) return;
    let frame: Frame;
    try {
      if (data.length > this.#limits.maxFrameBytes) {
        throw new ValidationError(
          "too_large",
          `Frame of ${data.length} bytes is over the limit of ${this.#limits.maxFrameBytes} bytes`,
        );
      }
      frame = decodeFrame(data, this.#limits.maxFrameBytes);
    } catch (e) {
      m.frameErrors++;
      c.errors++;
      const reqId = peekRequestId(data);
      const tooMany = c.errors >= this.#limits.maxProtocolErrors;
      // Answered in turn with the frames before it, so answers keep request order.
      c.chain = c.chain.then(() => {
        this.#error(c, reqId, errorCode(e), (e as Error).message);
        if (tooMany) {
          c.ws.close(1002, "too many malformed frames");
          this.#onClose(c);
        }
      });
      return;
    }
    c.chain = c.chain.then(() => this.#handle(c, frame)).catch((e) => this.#failed(c, frame, e));
  }

  /** Answers a frame whose handling threw. */
  #failed(c: Conn, frame: Frame, e: unknown): void {
    const reqId = "reqId" in frame ? frame.reqId : 0;
    if (e instanceof SkytaleError) {
      this.#error(c, reqId, e.code, e.message);
    } else if (storageFull(e)) {
      this.#logger("error", "storage refused a write", { frame: frame.type, error: String(e) });
      this.#error(
        c,
        reqId,
        "relay_unavailable",
        `The relay cannot store "${frame.type}": its disk is full or read-only; nothing was stored`,
      );
    } else {
      this.#logger("error", "internal error", { frame: frame.type, error: String(e) });
      this.#error(c, reqId, "relay_error", `The relay failed to handle "${frame.type}"`);
    }
  }

  /**
   * Counts a frame against the budget of a connection that has not said
   * hello yet; closes the connection and returns `false` when it is spent.
   */
  #preHello(c: Conn, bytes: number): boolean {
    c.preHelloFrames++;
    const what = bytes > PRE_HELLO_MAX_FRAME_BYTES
      ? `a ${bytes}-byte frame (at most ${PRE_HELLO_MAX_FRAME_BYTES} before hello)`
      : c.preHelloFrames > PRE_HELLO_MAX_FRAMES
      ? `more than ${PRE_HELLO_MAX_FRAMES} frames before hello`
      : undefined;
    if (what === undefined) return true;
    this.#metrics.counters.limitBreaches++;
    this.#logger("warn", "closed a connection before hello", { remote: c.ws.remote, what });
    c.ws.close(bytes > PRE_HELLO_MAX_FRAME_BYTES ? 1009 : 1008, "hello first");
    this.#onClose(c);
    return false;
  }

  async #handle(c: Conn, f: Frame): Promise<void> {
    if (c.closed || this.#closed) return;
    if (f.type === "hello") return await this.#hello(c, f);
    if (f.type === "ping") return this.#send(c, { type: "pong", reqId: f.reqId });
    if (f.type === "pong") return;
    const reqId = "reqId" in f ? f.reqId : 0;
    if (c.session === undefined) {
      c.errors++;
      return this.#error(c, reqId, "protocol", `Expected "hello" before "${f.type}"`);
    }
    const exp = c.session.expiresAt;
    if (exp !== undefined && exp <= this.#now()) return this.#authFailed(c, reqId, "Token expired");
    switch (f.type) {
      case "create":
        return await this.#channels.create(c, f);
      case "subscribe":
        return await this.#channels.subscribe(c, f);
      case "unsubscribe":
        return this.#channels.unsubscribe(c, f);
      case "publish":
        return await this.#channels.publish(c, f);
      case "mailboxPut":
        return await this.#mailboxes.put(c, f);
      case "mailboxTake":
        return await this.#mailboxes.take(c, f);
      case "mailboxAck":
        return await this.#mailboxes.ack(c, f);
      case "prove":
        return await this.#membership.prove(c, f);
      default:
        c.errors++;
        return this.#error(c, reqId, "protocol", `Unexpected "${f.type}" frame from a client`);
    }
  }

  /** The session a hello's token yields, or `undefined` (answered) when it is refused. */
  async #session(c: Conn, f: FrameOf<"hello">): Promise<RelaySession | undefined> {
    try {
      const session = this.#authenticate
        ? await this.#authenticate(f.token, { nonce: c.nonce })
        : {};
      if (session.incomplete && c.session !== undefined) {
        throw new AuthError("This connection is authenticated already");
      }
      if (c.session !== undefined && session.org !== c.session.org) {
        // A renewal may extend the session, never move it to another org.
        throw new AuthError(
          `A new hello may not change the organisation from "${c.session.org ?? ""}" to "${
            session.org ?? ""
          }"`,
        );
      }
      return session;
    } catch (e) {
      this.#authFailed(c, f.reqId, e instanceof SkytaleError ? e.message : "Authentication failed");
      return undefined;
    }
  }

  async #hello(c: Conn, f: FrameOf<"hello">): Promise<void> {
    const session = await this.#session(c, f);
    if (session === undefined || c.closed) return;
    const helloOk = () =>
      this.#send(c, {
        type: "helloOk",
        reqId: f.reqId,
        maxFrameBytes: this.#limits.maxFrameBytes,
        nonce: c.nonce,
        ...(session.proof ? { proof: session.proof } : {}),
      });
    // A handshake step: the connection stays unauthenticated until it is completed.
    if (session.incomplete) return helloOk();
    if (session.org !== undefined && c.org === undefined && !this.#joinOrg(c, f, session.org)) {
      return;
    }
    c.session = session;
    clearTimeout(c.helloTimer);
    clearTimeout(c.expiry);
    c.expiry = undefined;
    if (session.expiresAt !== undefined) {
      const ms = session.expiresAt - this.#now();
      if (ms <= 0) return this.#authFailed(c, f.reqId, "Token expired");
      // setTimeout holds at most 2^31-1 ms; longer sessions are re-checked then.
      c.expiry = setTimeout(() => {
        if (c.session === session) {
          this.#authFailed(c, 0, "Token expired: send hello with a fresh token before expiry");
        }
      }, Math.min(ms, 0x7fff_ffff));
    }
    helloOk();
  }

  /** Counts the connection against its org's quota; closes it (and returns false) when full. */
  #joinOrg(c: Conn, f: FrameOf<"hello">, name: string): boolean {
    const org = this.#quotas.org(name);
    if (org.conns >= this.#limits.maxConnectionsPerOrg) {
      this.#limitError(
        c,
        f.reqId,
        "connections_per_org",
        `Organisation "${name}" already has ${org.conns} connections to this relay, ` +
          `the limit (--max-connections-per-org)`,
      );
      c.ws.close(1008, "connection limit of the organisation");
      this.#onClose(c);
      return false;
    }
    org.conns++;
    c.org = org;
    return true;
  }

  #authFailed(c: Conn, reqId: number, message: string): void {
    this.#metrics.counters.authFailures++;
    this.#logger("warn", "authentication failed", { remote: c.ws.remote, reason: message });
    this.#error(c, reqId, "auth", message);
    c.ws.close(1008, "authentication failed");
    this.#onClose(c);
  }
}

/** Options of {@linkcode startRelay}. */
export interface StartRelayOptions extends RelayServerOptions {
  /** The interface to listen on, e.g. `127.0.0.1`. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** Serve `wss://` (and HTTPS) with this PEM certificate chain and key. */
  tls?: { cert: string; key: string };
  /**
   * Origins (`scheme://host[:port]`) whose web pages may use the relay. A
   * request or upgrade that carries any other `Origin` is refused with 403;
   * one without `Origin` (not a browser) passes. Default: none.
   */
  allowOrigins?: readonly string[];
  /**
   * `Host` names accepted besides the default (`name` for any port, or
   * `name:port`), e.g. the name a reverse proxy forwards. On a loopback
   * address only loopback names with the relay's port are accepted by
   * default; on any other address any name is, unless this is given (then
   * only these and loopback names).
   */
  allowHosts?: readonly string[];
}

/** A running relay. */
export interface Relay {
  /** The port it listens on. */
  readonly port: number;
  /** Its WebSocket URL, e.g. `ws://127.0.0.1:5000` (`wss://` with TLS). */
  readonly url: string;
  /** The handler (for metrics and limits). */
  readonly server: RelayServer;
  /** Stops serving, closes connections and the log (idempotent). */
  close(): Promise<void>;
}

/**
 * Starts a relay listening on HTTP + WebSocket. The relay owns `log`: it is
 * closed when the relay closes, and when starting fails.
 *
 * @example
 * ```ts ignore
 * import { startRelay } from "./server.ts";
 * import { MemoryLog } from "./log/memory.ts";
 * const relay = await startRelay({ hostname: "127.0.0.1", port: 0, log: new MemoryLog() });
 * await relay.close();
 * ```
 *
 * @param opts Where to listen, the log, limits and hooks.
 * @returns The running relay.
 * @throws {import("../runtime/serve.ts").AddressInUseError} if the port is taken (`code` `EADDRINUSE`).
 */
export async function startRelay(opts: StartRelayOptions): Promise<Relay> {
  let server: RelayServer;
  const allowOrigins: string[] = [];
  try {
    for (const o of opts.allowOrigins ?? []) {
      const origin = normalizeOrigin(o);
      if (origin === undefined) {
        throw new ValidationError(
          "invalid_argument",
          `An allowed origin must be scheme://host[:port], got "${o}"`,
        );
      }
      allowOrigins.push(origin);
    }
    server = new RelayServer(opts);
  } catch (e) {
    await opts.log.close();
    throw e;
  }
  let http: Awaited<ReturnType<typeof serve>> | undefined;
  const logger = opts.logger ?? jsonLog;
  const gate = requestGate({
    hostname: opts.hostname,
    port: () => http?.port ?? (opts.port || undefined),
    tls: opts.tls !== undefined,
    allowOrigins,
    ...(opts.allowHosts ? { allowHosts: opts.allowHosts } : {}),
    onRefuse: (reason, fields) => logger("warn", "refused a request", { reason, ...fields }),
  });
  try {
    http = await serve({
      hostname: opts.hostname,
      port: opts.port,
      maxMessageBytes: server.limits.maxFrameBytes * 2 + 1024,
      ...(opts.tls ? { tls: opts.tls } : {}),
      onRequest: (req, remote) => gate(req) ?? server.handleRequest(req, remote),
      onUpgrade: gate,
      onSocket: (conn) => server.openConnection(conn),
    });
  } catch (e) {
    await server.close();
    await opts.log.close();
    throw e;
  }
  const host = opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname;
  let closing: Promise<void> | undefined;
  return {
    port: http.port,
    url: `${opts.tls ? "wss" : "ws"}://${host}:${http.port}`,
    server,
    close() {
      closing ??= (async () => {
        await server.close();
        await http.close();
        await opts.log.close();
      })();
      return closing;
    },
  };
}
