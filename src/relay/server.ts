/**
 * The relay: a runtime-agnostic handler that orders, stores and forwards opaque
 * MLS ciphertext, plus {@linkcode startRelay} to serve it over WebSocket.
 *
 * Per connection it keeps the hello state, subscriptions and a publish token
 * bucket; frames of one connection are handled one at a time, in order. Each
 * subscription has a cursor (`next` seq): while it is behind it is fed from
 * the log in batches ("pumping"); once caught up it is "live" and new entries
 * are pushed as they are appended. A live subscriber that falls behind (a gap,
 * or a full send buffer) drops back to pumping, so nothing is missed, nothing
 * is sent twice, and a slow reader costs log reads rather than relay memory.
 *
 * The relay never sees plaintext: payloads are opaque bytes, and nothing here
 * logs them.
 *
 * @module
 */
import { AuthError, type ErrorCode, ErrorCodes, SkytaleError, ValidationError } from "../errors.ts";
import { CommitGate, Refusal } from "./_commits.ts";
import { probes, Stages } from "../_probe.ts";
import { env, logLine } from "../runtime/env.ts";
import { serve, type WsConnection, type WsHandlers } from "../runtime/serve.ts";
import { parseChannelName } from "../validate.ts";
import { ownsMailbox } from "./mailbox.ts";
import { normalizeOrigin, requestGate } from "./_doors.ts";
import {
  type AppendResult,
  DEFAULT_MAILBOX_LEASE_MS,
  type LogEntry,
  type MailboxLease,
  type RelayLog,
} from "./log/types.ts";
import {
  decodeFrame,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  type Frame,
  type FrameOf,
  ID_BYTES,
  MAX_ACK_IDS,
  MAX_NAME_BYTES,
  peekRequestId,
  PROVE_CONTEXT,
} from "./protocol.ts";

/** Severity of a relay log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Where a relay's log lines go. */
export type RelayLogger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/**
 * The default relay logger: one JSON object per line on stderr
 * (`{"time","level","msg",...fields}`); `debug` lines only when
 * `SKYTALE_LOG_LEVEL=debug`.
 *
 * @param level The severity.
 * @param msg The message.
 * @param fields Extra fields (never payloads).
 */
export function jsonLog(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  if (level === "debug" && env("SKYTALE_LOG_LEVEL") !== "debug") return;
  logLine(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}

/** Limits a relay enforces; breaking one is answered with an error frame. */
export interface RelayLimits {
  /** The largest frame accepted, in bytes (`too_large` above it). */
  maxFrameBytes: number;
  /** How many channels one connection may subscribe to at once (`limit`). */
  maxChannelsPerConnection: number;
  /** Sustained publishes (and mailbox puts) per second per connection (`limit`). */
  publishPerSecond: number;
  /** How many publishes a connection may burst above the sustained rate. */
  publishBurst: number;
  /** The longest mailbox TTL, in seconds; longer ones are shortened to it. */
  maxMailboxTtlSeconds: number;
  /** Malformed frames tolerated per connection before it is closed. */
  maxProtocolErrors: number;
  /** A connection that sends nothing (not even a ping) for this long is closed, in ms. */
  idleTimeoutMs: number;
  /** A connection that has not sent a successful `hello` by then is closed (1008), in ms. */
  helloTimeoutMs: number;
  /**
   * Channels one organisation may create on this relay (`limit`). Counted by
   * this relay process since it started; relays without auth have no orgs and
   * no per-org quotas.
   */
  maxChannelsPerOrg: number;
  /** Connections one organisation may hold open at once on this relay (`limit` at hello). */
  maxConnectionsPerOrg: number;
  /** Sustained publishes (and mailbox puts) per second of one organisation, all its connections together (`limit`). */
  orgPublishPerSecond: number;
  /** How many publishes an organisation may burst above its sustained rate. */
  orgPublishBurst: number;
}

/** The default limits. */
export const DEFAULT_LIMITS: RelayLimits = {
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxChannelsPerConnection: 1000,
  publishPerSecond: 10_000,
  publishBurst: 20_000,
  maxMailboxTtlSeconds: 7 * 24 * 3600,
  maxProtocolErrors: 20,
  idleTimeoutMs: 120_000,
  helloTimeoutMs: 10_000,
  maxChannelsPerOrg: 10_000,
  maxConnectionsPerOrg: 1000,
  orgPublishPerSecond: 20_000,
  orgPublishBurst: 40_000,
};

/**
 * What a connection may send before its `hello` succeeded: this many frames,
 * none larger than {@linkcode PRE_HELLO_MAX_FRAME_BYTES} (a hello with the
 * longest token fits). Beyond it the connection is closed, so an unknown
 * peer costs the relay a few small frames, not megabytes.
 */
export const PRE_HELLO_MAX_FRAMES = 16;
/** The largest frame accepted before `hello` succeeded (see {@linkcode PRE_HELLO_MAX_FRAMES}). */
export const PRE_HELLO_MAX_FRAME_BYTES: number = 64 * 1024 + 64;

/** What an organisation uses of its quotas on this relay. */
interface _Org {
  conns: number;
  channels: number;
  tokens: number;
  refilled: number;
}

/** Who a connection authenticated as. */
export interface RelaySession {
  /**
   * When set, the connection may only use channels `org/…`, and its mailbox
   * addresses name mailboxes of that org only.
   */
  org?: string;
  /**
   * When the credentials expire, in ms since the Unix epoch. The relay then
   * sends `error auth` and closes the connection, unless the client sent a new
   * `hello` with a fresh token first.
   */
  expiresAt?: number;
  /**
   * Sent back in `helloOk` as `proof`: the relay's answer to a challenge the
   * client put in its token (the embedded local relay proves it knows the
   * user's secret, see `local_auth.ts`).
   */
  proof?: Uint8Array;
  /**
   * The hello only began a handshake: it is answered with `helloOk` (and
   * `proof`), but the connection stays unauthenticated until a later hello
   * completes it.
   */
  incomplete?: boolean;
}

/** What {@linkcode RelayServerOptions.authenticate} knows about the connection. */
export interface HelloContext {
  /** The connection's challenge, sent in `helloOk` (16 random bytes). */
  nonce: Uint8Array;
}

/** Options of {@linkcode RelayServer}. */
export interface RelayServerOptions {
  /** The storage; the server does not close it. */
  log: RelayLog;
  /** Limits; unset ones take {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<RelayLimits>;
  /**
   * Checks the hello token. Throw (ideally an `AuthError`) to refuse the
   * connection. Unset: every connection is accepted.
   */
  authenticate?: (token: string | undefined, hello: HelloContext) => Promise<RelaySession>;
  /**
   * Answers HTTP requests other than `/healthz` and `/metrics`, given the peer
   * address when known; `undefined` → 404.
   */
  onRequest?: (
    req: Request,
    remote: string,
  ) => Response | undefined | Promise<Response | undefined>;
  /** More Prometheus text appended to `/metrics` (e.g. the token API's counters). */
  metrics?: () => string;
  /** The clock, in ms since the Unix epoch (tests). */
  now?: () => number;
  /** Where log lines go (default {@linkcode jsonLog}). */
  logger?: RelayLogger;
  /** How often age retention runs (`log.trim`), in ms (default 1000). */
  trimIntervalMs?: number;
  /**
   * How long a `mailboxTake` leases its items, in ms: items not acked by then
   * are handed out again. Default: `SKYTALE_RELAY_MAILBOX_LEASE_MS` if set,
   * else {@linkcode DEFAULT_MAILBOX_LEASE_MS} (30 s).
   */
  mailboxLeaseMs?: number;
  /**
   * Delays fan-out by up to this many ms and delivers each channel's entries
   * in batches, so an observer of the subscribers' connections cannot match a
   * delivery to the publish that caused it (default 0: deliver at once).
   */
  batchMs?: number;
}

/** The mailbox lease in force: the option, else the environment variable, else 30 s. */
function _leaseMs(opt: number | undefined): number {
  const raw = opt ?? env("SKYTALE_RELAY_MAILBOX_LEASE_MS");
  if (raw === undefined) return DEFAULT_MAILBOX_LEASE_MS;
  const ms = Number(raw);
  if (!Number.isSafeInteger(ms) || ms < 1) {
    throw new ValidationError(
      "invalid_argument",
      `The mailbox lease must be a whole number of milliseconds of at least 1, got ${
        typeof raw === "string" ? `"${raw}" (SKYTALE_RELAY_MAILBOX_LEASE_MS)` : raw
      }`,
    );
  }
  return ms;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const PUMP_BATCH = 64;
const CLOSED: Promise<void> = Promise.resolve();
/** A `mailboxItems` frame's bytes before its items: version, type, request id, count. */
const MAILBOX_ITEMS_HEADER_BYTES = 1 + 1 + 4 + 4;

interface _Sub {
  conn: _Conn;
  channel: string;
  next: number;
  live: boolean;
  pumping: boolean;
  closed: boolean;
}

interface _Conn {
  ws: WsConnection;
  session: RelaySession | undefined;
  subs: Map<string, _Sub>;
  tokens: number;
  refilled: number;
  errors: number;
  lastSeen: number;
  chain: Promise<void>;
  /** Publishes handed to the log whose answers are not sent yet (see `sequencesOnCall`). */
  acks: Promise<void>;
  closed: boolean;
  expiry: ReturnType<typeof setTimeout> | undefined;
  /** Closes the connection if no hello succeeded in time; cleared by the first that does. */
  helloTimer: ReturnType<typeof setTimeout> | undefined;
  /** Frames received before a successful hello. */
  preHelloFrames: number;
  /** Mailbox leases this connection took and has not acked: log address → item id hex → lease. */
  leases: Map<string, Map<string, MailboxLease>>;
  /** The challenge this connection's `prove` frames sign. */
  nonce: Uint8Array;
  /** Identity keys this connection proved it holds (at most `MAX_PROVEN_KEYS`). */
  keys: Uint8Array[];
  /** Validated channels this connection may use → the epoch at which that was checked. */
  memberOf: Map<string, number>;
  /** The org whose connection quota this connection counts against. */
  org: _Org | undefined;
}

/** How many identity keys one connection may prove (one per agent it carries). */
const MAX_PROVEN_KEYS = 16;

function _sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function _code(e: unknown): ErrorCode {
  return e instanceof SkytaleError ? e.code : ErrorCodes.relayError;
}

function _utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

/** The relay's request handling, independent of how it is served. */
export class RelayServer {
  readonly #log: RelayLog;
  readonly #gate: CommitGate;
  readonly #batchMs: number;
  /** Entries held for the next batch (with `batchMs`), per channel, and the flush timers. */
  readonly #held = new Map<string, { entries: LogEntry[]; timer: ReturnType<typeof setTimeout> }>();
  readonly #limits: RelayLimits;
  readonly #authenticate: RelayServerOptions["authenticate"];
  readonly #onRequest: RelayServerOptions["onRequest"];
  readonly #extraMetrics: RelayServerOptions["metrics"];
  /** Per-org quota use (orgs of authenticated sessions only). */
  readonly #orgs = new Map<string, _Org>();
  readonly #now: () => number;
  readonly #logger: RelayLogger;
  readonly #leaseMs: number;
  readonly #conns = new Set<_Conn>();
  /** Lease releases under way (awaited by `close`, before the log closes). */
  readonly #releases = new Set<Promise<void>>();
  readonly #subs = new Map<string, Set<_Sub>>();
  readonly #heads = new Map<string, number>();
  /** Channels watched in a shared log (cluster fan-out) → how to stop. */
  readonly #watches = new Map<string, Promise<(() => void) | undefined>>();
  readonly #metrics = {
    published: 0,
    delivered: 0,
    nacked: 0,
    frameErrors: 0,
    mailboxPuts: 0,
    mailboxTakes: 0,
    mailboxAcks: 0,
    authFailures: 0,
    limitBreaches: 0,
    acks: 0,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    trimmed: 0,
  };
  readonly #latency = { buckets: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
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
    this.#gate = new CommitGate(opts.log);
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#authenticate = opts.authenticate;
    this.#onRequest = opts.onRequest;
    this.#extraMetrics = opts.metrics;
    this.#now = opts.now ?? Date.now;
    this.#logger = opts.logger ?? jsonLog;
    this.#leaseMs = _leaseMs(opts.mailboxLeaseMs);
    this.#batchMs = opts.batchMs ?? 0;
    if (this.#log.trim) {
      this.#trimTimer = setInterval(() => void this.#trim(), opts.trimIntervalMs ?? 1000);
    }
    const tick = Math.max(1000, Math.min(15_000, this.#limits.idleTimeoutMs / 4));
    this.#idleTimer = setInterval(() => this.#closeIdle(), tick);
  }

  async #trim(): Promise<void> {
    if (this.#trimming || this.#closed) return;
    this.#trimming = true;
    try {
      this.#metrics.trimmed += await this.#log.trim?.(this.#now()) ?? 0;
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
        return new Response(`unavailable: ${e instanceof Error ? e.message : String(e)}\n`, {
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
    let subs = 0;
    for (const s of this.#subs.values()) subs += s.size;
    const m = this.#metrics;
    const lines: [string, string, string, number][] = [
      ["skytale_relay_connections", "gauge", "Open WebSocket connections", this.#conns.size],
      ["skytale_relay_channels", "gauge", "Channels with a subscriber here", this.#subs.size],
      ["skytale_relay_subscriptions", "gauge", "Subscriptions", subs],
      ["skytale_relay_frames_in_total", "counter", "Frames received", m.framesIn],
      ["skytale_relay_frames_out_total", "counter", "Frames sent", m.framesOut],
      ["skytale_relay_bytes_in_total", "counter", "Bytes received", m.bytesIn],
      ["skytale_relay_bytes_out_total", "counter", "Bytes sent", m.bytesOut],
      ["skytale_relay_published_total", "counter", "Entries appended", m.published],
      ["skytale_relay_acks_total", "counter", "Publishes acked", m.acks],
      ["skytale_relay_nacks_total", "counter", "Publishes nacked", m.nacked],
      ["skytale_relay_nacked_total", "counter", "Publishes nacked (old name)", m.nacked],
      ["skytale_relay_delivered_total", "counter", "Entries delivered", m.delivered],
      ["skytale_relay_frame_errors_total", "counter", "Malformed frames", m.frameErrors],
      ["skytale_relay_auth_failures_total", "counter", "Refused credentials", m.authFailures],
      [
        "skytale_relay_limit_breaches_total",
        "counter",
        "Requests refused by a limit",
        m.limitBreaches,
      ],
      ["skytale_relay_mailbox_puts_total", "counter", "Mailbox puts", m.mailboxPuts],
      ["skytale_relay_mailbox_takes_total", "counter", "Mailbox takes", m.mailboxTakes],
      ["skytale_relay_mailbox_acks_total", "counter", "Mailbox item ids acked", m.mailboxAcks],
      [
        "skytale_relay_retention_trimmed_total",
        "counter",
        "Entries deleted by age retention",
        m.trimmed,
      ],
    ];
    let out = lines.map(([n, t, h, v]) => `# HELP ${n} ${h}\n# TYPE ${n} ${t}\n${n} ${v}\n`).join(
      "",
    );
    const h = "skytale_relay_log_append_seconds";
    out += `# HELP ${h} Log append latency\n# TYPE ${h} histogram\n`;
    let cum = 0;
    LATENCY_BUCKETS.forEach((le, i) => {
      cum += this.#latency.buckets[i]!;
      out += `${h}_bucket{le="${le}"} ${cum}\n`;
    });
    out += `${h}_bucket{le="+Inf"} ${this.#latency.count}\n`;
    out += `${h}_sum ${this.#latency.sum}\n${h}_count ${this.#latency.count}\n`;
    return out + (this.#extraMetrics?.() ?? "");
  }

  /**
   * Adopts a new WebSocket connection.
   *
   * @param ws The connection.
   * @returns Its message and close handlers.
   */
  openConnection(ws: WsConnection): WsHandlers {
    const now = this.#now();
    const c: _Conn = {
      ws,
      session: undefined,
      subs: new Map(),
      tokens: this.#limits.publishBurst,
      refilled: now,
      errors: 0,
      lastSeen: now,
      chain: CLOSED,
      acks: CLOSED,
      closed: false,
      expiry: undefined,
      helloTimer: undefined,
      preHelloFrames: 0,
      leases: new Map(),
      nonce: crypto.getRandomValues(new Uint8Array(16)),
      keys: [],
      memberOf: new Map(),
      org: undefined,
    };
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
    for (const w of this.#watches.values()) void w.then((stop) => stop?.(), () => {});
    this.#watches.clear();
    clearInterval(this.#idleTimer);
    clearInterval(this.#trimTimer);
    this.#idleTimer = undefined;
    for (const h of this.#held.values()) clearTimeout(h.timer);
    this.#held.clear();
    const chains = [...this.#conns].flatMap((c) => [c.chain, c.acks]);
    for (const c of [...this.#conns]) {
      c.ws.close(1001, "relay closing");
      this.#onClose(c);
    }
    await Promise.allSettled(chains);
    // Requests that were running end in #onClose too: release their leases before the log closes.
    await Promise.allSettled([...this.#releases]);
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

  #onClose(c: _Conn): void {
    if (c.closed) return;
    c.closed = true;
    clearTimeout(c.expiry);
    clearTimeout(c.helloTimer);
    this.#conns.delete(c);
    if (c.org) c.org.conns--;
    c.org = undefined;
    for (const s of c.subs.values()) this.#dropSub(s);
    c.subs.clear();
    // Whatever this connection took and did not ack goes back to its mailbox now, not only
    // when the lease lapses: its answer may never have arrived, and a client that reconnects
    // takes it again.
    for (const [address, leases] of c.leases) this.#release(address, [...leases.values()]);
    c.leases.clear();
  }

  #release(address: string, leases: MailboxLease[]): void {
    if (leases.length === 0) return;
    // Async, so a log that throws at once (a closed one) rejects instead of throwing here.
    const p = (async () => await this.#log.mailboxRelease(address, leases))().catch((e) => {
      // The lease then simply lapses.
      this.#logger("debug", "releasing mailbox leases failed", { error: String(e) });
    });
    this.#releases.add(p);
    void p.finally(() => this.#releases.delete(p));
  }

  #dropSub(s: _Sub): void {
    s.closed = true;
    const set = this.#subs.get(s.channel);
    if (set) {
      set.delete(s);
      if (set.size === 0) {
        this.#subs.delete(s.channel);
        const w = this.#watches.get(s.channel);
        this.#watches.delete(s.channel);
        void w?.then((stop) => stop?.());
      }
    }
  }

  #send(c: _Conn, f: Frame): void {
    if (c.closed) return;
    const b = encodeFrame(f);
    this.#metrics.framesOut++;
    this.#metrics.bytesOut += b.length;
    c.ws.send(b);
  }

  #limitError(c: _Conn, reqId: number, what: string, message: string): void {
    this.#metrics.limitBreaches++;
    const org = c.session?.org;
    this.#logger("warn", "limit exceeded", {
      limit: what,
      remote: c.ws.remote,
      ...(org !== undefined ? { org } : {}),
    });
    this.#error(c, reqId, "limit", message);
  }

  #error(c: _Conn, reqId: number, code: ErrorCode, message: string): void {
    this.#send(c, { type: "error", reqId, code, message });
  }

  #onMessage(c: _Conn, data: Uint8Array): void {
    if (c.closed) return;
    c.lastSeen = this.#now();
    this.#metrics.framesIn++;
    this.#metrics.bytesIn += data.length;
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
      this.#metrics.frameErrors++;
      c.errors++;
      const reqId = peekRequestId(data);
      const tooMany = c.errors >= this.#limits.maxProtocolErrors;
      // Answered in turn with the frames before it, so answers keep request order.
      c.chain = c.chain.then(() => {
        this.#error(c, reqId, _code(e), (e as Error).message);
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
  #failed(c: _Conn, frame: Frame, e: unknown): void {
    const reqId = "reqId" in frame ? frame.reqId : 0;
    if (e instanceof SkytaleError) {
      this.#error(c, reqId, e.code, e.message);
    } else if (_storageFull(e)) {
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
  #preHello(c: _Conn, bytes: number): boolean {
    c.preHelloFrames++;
    const what = bytes > PRE_HELLO_MAX_FRAME_BYTES
      ? `a ${bytes}-byte frame (at most ${PRE_HELLO_MAX_FRAME_BYTES} before hello)`
      : c.preHelloFrames > PRE_HELLO_MAX_FRAMES
      ? `more than ${PRE_HELLO_MAX_FRAMES} frames before hello`
      : undefined;
    if (what === undefined) return true;
    this.#metrics.limitBreaches++;
    this.#logger("warn", "closed a connection before hello", { remote: c.ws.remote, what });
    c.ws.close(bytes > PRE_HELLO_MAX_FRAME_BYTES ? 1009 : 1008, "hello first");
    this.#onClose(c);
    return false;
  }

  async #handle(c: _Conn, f: Frame): Promise<void> {
    if (c.closed || this.#closed) return;
    if (f.type === "hello") return await this.#hello(c, f);
    if (f.type === "ping") return this.#send(c, { type: "pong", reqId: f.reqId });
    if (f.type === "pong") return;
    if (c.session === undefined) {
      c.errors++;
      return this.#error(
        c,
        "reqId" in f ? f.reqId : 0,
        "protocol",
        `Expected "hello" before "${f.type}"`,
      );
    }
    const exp = c.session.expiresAt;
    if (exp !== undefined && exp <= this.#now()) {
      return this.#authFailed(c, "reqId" in f ? f.reqId : 0, "Token expired");
    }
    switch (f.type) {
      case "create":
        return await this.#create(c, f);
      case "subscribe":
        return await this.#subscribe(c, f);
      case "unsubscribe": {
        const s = c.subs.get(f.channel);
        if (s) {
          c.subs.delete(f.channel);
          this.#dropSub(s);
        }
        return this.#send(c, { type: "ok", reqId: f.reqId });
      }
      case "publish":
        return await this.#publish(c, f);
      case "mailboxPut":
        return await this.#mailboxPut(c, f);
      case "mailboxTake":
        return await this.#mailboxTake(c, f);
      case "mailboxAck":
        return await this.#mailboxAck(c, f);
      case "prove":
        return await this.#prove(c, f);
      default:
        c.errors++;
        return this.#error(
          c,
          "reqId" in f ? f.reqId : 0,
          "protocol",
          `Unexpected "${f.type}" frame from a client`,
        );
    }
  }

  async #hello(c: _Conn, f: FrameOf<"hello">): Promise<void> {
    let session: RelaySession;
    try {
      session = this.#authenticate ? await this.#authenticate(f.token, { nonce: c.nonce }) : {};
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
    } catch (e) {
      this.#authFailed(c, f.reqId, e instanceof SkytaleError ? e.message : "Authentication failed");
      return;
    }
    if (c.closed) return;
    if (session.incomplete) {
      // A handshake step: the connection stays unauthenticated until it is completed.
      return this.#send(c, {
        type: "helloOk",
        reqId: f.reqId,
        maxFrameBytes: this.#limits.maxFrameBytes,
        nonce: c.nonce,
        ...(session.proof ? { proof: session.proof } : {}),
      });
    }
    if (session.org !== undefined && c.org === undefined) {
      const org = this.#org(session.org);
      if (org.conns >= this.#limits.maxConnectionsPerOrg) {
        this.#limitError(
          c,
          f.reqId,
          "connections_per_org",
          `Organisation "${session.org}" already has ${org.conns} connections to this relay, ` +
            `the limit (--max-connections-per-org)`,
        );
        c.ws.close(1008, "connection limit of the organisation");
        this.#onClose(c);
        return;
      }
      org.conns++;
      c.org = org;
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
    this.#send(c, {
      type: "helloOk",
      reqId: f.reqId,
      maxFrameBytes: this.#limits.maxFrameBytes,
      nonce: c.nonce,
      ...(session.proof ? { proof: session.proof } : {}),
    });
  }

  #authFailed(c: _Conn, reqId: number, message: string): void {
    this.#metrics.authFailures++;
    this.#logger("warn", "authentication failed", { remote: c.ws.remote, reason: message });
    this.#error(c, reqId, "auth", message);
    c.ws.close(1008, "authentication failed");
    this.#onClose(c);
  }

  #checkChannel(c: _Conn, channel: string): void {
    const { org } = parseChannelName(channel);
    const want = c.session?.org;
    if (want !== undefined && org !== want) {
      throw new AuthError(`Channel "${channel}" is not in organisation "${want}"`);
    }
  }

  async #create(c: _Conn, f: FrameOf<"create">): Promise<void> {
    this.#checkChannel(c, f.channel);
    if (f.genesis !== undefined) {
      const refused = await this.#gate.checkGenesis(f.channel, f.genesis);
      if (refused) {
        this.#logger("warn", "refused a channel's genesis", {
          channel: f.channel,
          reason: refused.reason,
          remote: c.ws.remote,
        });
        return this.#error(
          c,
          f.reqId,
          "refused",
          `Cannot create "${f.channel}": ${refused.reason}`,
        );
      }
    }
    // Reserve a place in the org's channel quota before creating, so concurrent creates
    // cannot overshoot it; give it back when the channel existed already.
    const org = c.session?.org === undefined ? undefined : this.#org(c.session.org);
    if (org && org.channels >= this.#limits.maxChannelsPerOrg) {
      if (await this.#log.info(f.channel) === undefined) {
        return this.#limitError(
          c,
          f.reqId,
          "channels_per_org",
          `Cannot create "${f.channel}": organisation "${c.session!.org}" has created ` +
            `${org.channels} channels on this relay, the limit (--max-channels-per-org)`,
        );
      }
      return this.#send(c, { type: "created", reqId: f.reqId, created: false });
    }
    if (org) org.channels++;
    let created: boolean;
    try {
      created = await this.#log.create(f.channel);
    } catch (e) {
      if (org) org.channels--;
      throw e;
    }
    if (org && !created) org.channels--;
    if (created && f.genesis !== undefined) {
      // Seq 1: the public state every later commit is validated against.
      const id = new Uint8Array(await crypto.subtle.digest("SHA-256", f.genesis as BufferSource));
      await this.#log.append(f.channel, {
        id: id.subarray(0, 16),
        kind: "genesis",
        epoch: 0,
        payload: f.genesis,
        time: this.#now(),
      });
      this.#gate.forget(f.channel);
    }
    this.#send(c, { type: "created", reqId: f.reqId, created });
  }

  /** Records an identity key the connection proved it holds (a signature over its nonce). */
  async #prove(c: _Conn, f: FrameOf<"prove">): Promise<void> {
    let ok = false;
    if (f.publicKey.length === 32 && f.signature.length === 64) {
      try {
        const key = await crypto.subtle.importKey(
          "raw",
          f.publicKey as BufferSource,
          "Ed25519",
          false,
          ["verify"],
        );
        const signed = new Uint8Array([...PROVE_CONTEXT, ...c.nonce]);
        ok = await crypto.subtle.verify("Ed25519", key, f.signature as BufferSource, signed);
      } catch {
        ok = false;
      }
    }
    if (!ok) {
      this.#metrics.authFailures++;
      this.#logger("warn", "membership proof failed", { remote: c.ws.remote });
      return this.#error(c, f.reqId, "auth", "The proof does not verify for this connection");
    }
    const same = (k: Uint8Array) => k.every((x, i) => x === f.publicKey[i]);
    if (!c.keys.some(same)) {
      if (c.keys.length >= MAX_PROVEN_KEYS) {
        return this.#limitError(
          c,
          f.reqId,
          "proven_keys",
          `At most ${MAX_PROVEN_KEYS} identity keys per connection`,
        );
      }
      c.keys.push(f.publicKey.slice());
    }
    this.#send(c, { type: "ok", reqId: f.reqId });
  }

  /**
   * Whether the connection may read or publish a channel: any connection for
   * a channel the relay does not validate; otherwise only one that proved the
   * key of a current member. A check holds until the channel's epoch moves.
   */
  async #mayUse(c: _Conn, channel: string): Promise<boolean> {
    if (this.#gate.knownOpen(channel)) return true; // not validated: no membership to check
    const known = this.#gate.knownEpoch(channel);
    if (known !== undefined && c.memberOf.get(channel) === known) return true;
    const member = await this.#gate.members(channel);
    if (member === undefined) return true; // not validated: no membership to check
    if (c.keys.some(member)) {
      const epoch = this.#gate.knownEpoch(channel);
      if (epoch !== undefined) c.memberOf.set(channel, epoch);
      return true;
    }
    c.memberOf.delete(channel);
    return false;
  }

  #notMember(c: _Conn, reqId: number, channel: string, what: string): void {
    this.#metrics.authFailures++;
    this.#logger("warn", "refused a non-member", { channel, what, remote: c.ws.remote });
    this.#error(
      c,
      reqId,
      "auth",
      `Only members of "${channel}" may ${what} it: this connection proved no member's key`,
    );
  }

  async #subscribe(c: _Conn, f: FrameOf<"subscribe">): Promise<void> {
    this.#checkChannel(c, f.channel);
    if (!await this.#mayUse(c, f.channel)) return this.#notMember(c, f.reqId, f.channel, "read");
    if (!c.subs.has(f.channel) && c.subs.size >= this.#limits.maxChannelsPerConnection) {
      return this.#limitError(
        c,
        f.reqId,
        "channels_per_connection",
        `Cannot subscribe to "${f.channel}": this connection already has ${c.subs.size} subscriptions, the limit`,
      );
    }
    if (this.#log.watch && !this.#watches.has(f.channel)) {
      // Watch before reading the head, so nothing appended elsewhere falls between.
      const ch = f.channel;
      const w = this.#log.watch(ch, (e) => this.#fanOut(ch, e)).catch((e) => {
        this.#watches.delete(ch);
        throw e;
      });
      this.#watches.set(ch, w);
    }
    await this.#watches.get(f.channel);
    const info = await this.#log.info(f.channel);
    if (!info) {
      if (!this.#subs.has(f.channel)) {
        const w = this.#watches.get(f.channel);
        this.#watches.delete(f.channel);
        void w?.then((stop) => stop?.());
      }
      return this.#error(c, f.reqId, "unknown_channel", `Unknown channel "${f.channel}"`);
    }
    const fromSeq = "seq" in f.from
      ? Math.max(1, f.from.seq)
      : await this.#log.firstSeqOfEpoch(f.channel, f.from.epoch);
    if (c.closed) return;
    const old = c.subs.get(f.channel);
    if (old) this.#dropSub(old);
    this.#heads.set(f.channel, Math.max(this.#heads.get(f.channel) ?? 0, info.head));
    const s: _Sub = {
      conn: c,
      channel: f.channel,
      next: fromSeq,
      live: false,
      pumping: false,
      closed: false,
    };
    c.subs.set(f.channel, s);
    let set = this.#subs.get(f.channel);
    if (!set) this.#subs.set(f.channel, set = new Set());
    set.add(s);
    this.#send(c, {
      type: "subscribed",
      reqId: f.reqId,
      fromSeq,
      head: info.head,
      epoch: info.epoch,
    });
    void this.#pump(s);
  }

  async #pump(s: _Sub): Promise<void> {
    if (s.pumping) return;
    s.pumping = true;
    s.live = false;
    let misses = 0;
    try {
      while (!s.closed) {
        if (s.conn.ws.bufferedAmount > HIGH_WATER_BYTES) {
          await _sleep(10);
          continue;
        }
        if (s.next > (this.#heads.get(s.channel) ?? 0)) {
          s.live = true;
          return;
        }
        const batch = await this.#log.read(s.channel, s.next, PUMP_BATCH);
        if (s.closed) return;
        if (batch.length === 0) {
          // The head says there is more, the log has nothing yet: in a shared log another
          // relay's append can be announced before it is readable. Look again shortly; after
          // that (or if retention deleted everything up to the head) go live, and the next
          // append pumps from here again.
          if (++misses <= 50) {
            await _sleep(20);
            continue;
          }
          s.live = true;
          return;
        }
        misses = 0;
        const head = this.#heads.get(s.channel) ?? 0;
        for (const e of batch) {
          if (e.seq < s.next) continue;
          if (this.#batchMs > 0 && e.seq > head) break; // held for the next batch
          // A seq above s.next means retention deleted the ones between: skip them.
          this.#deliver(s, e);
          if (s.conn.ws.bufferedAmount > HIGH_WATER_BYTES) break;
        }
      }
    } catch (e) {
      if (!s.closed) {
        this.#logger("error", "reading a channel failed", { channel: s.channel, error: String(e) });
        this.#error(s.conn, 0, _code(e), `Cannot read channel "${s.channel}"`);
        this.#dropSub(s);
        s.conn.subs.delete(s.channel);
      }
    } finally {
      s.pumping = false;
    }
  }

  #deliver(s: _Sub, e: LogEntry, bytes?: Uint8Array): Uint8Array {
    const b = bytes ?? encodeFrame({ type: "deliver", channel: s.channel, ...e });
    this.#metrics.framesOut++;
    this.#metrics.bytesOut += b.length;
    s.conn.ws.send(b);
    s.next = e.seq + 1;
    this.#metrics.delivered++;
    return b;
  }

  #fanOut(channel: string, e: LogEntry, now = false): void {
    if (this.#batchMs > 0 && !now) {
      // Held: the head (which bounds what catching-up subscribers read) moves when released.
      let held = this.#held.get(channel);
      if (!held) {
        const entries: LogEntry[] = [];
        held = {
          entries,
          timer: setTimeout(() => {
            this.#held.delete(channel);
            for (const x of entries) this.#fanOut(channel, x, true);
          }, this.#batchMs),
        };
        this.#held.set(channel, held);
      }
      held.entries.push(e);
      return;
    }
    this.#heads.set(channel, Math.max(this.#heads.get(channel) ?? 0, e.seq));
    const set = this.#subs.get(channel);
    if (!set) return;
    let bytes: Uint8Array | undefined;
    for (const s of set) {
      if (!s.live || e.seq < s.next) continue;
      if (e.seq > s.next || s.conn.ws.bufferedAmount > HIGH_WATER_BYTES) {
        void this.#pump(s);
        continue;
      }
      bytes = this.#deliver(s, e, bytes);
    }
  }

  #observeAppend(seconds: number): void {
    const l = this.#latency;
    l.count++;
    l.sum += seconds;
    const i = LATENCY_BUCKETS.findIndex((le) => seconds <= le);
    if (i >= 0) l.buckets[i]!++;
  }

  #takeToken(c: _Conn): boolean {
    const now = this.#now();
    const l = this.#limits;
    c.tokens = Math.min(
      l.publishBurst,
      c.tokens + ((now - c.refilled) / 1000) * l.publishPerSecond,
    );
    c.refilled = now;
    if (c.tokens < 1) return false;
    c.tokens -= 1;
    return true;
  }

  #org(name: string): _Org {
    let o = this.#orgs.get(name);
    if (!o) {
      o = { conns: 0, channels: 0, tokens: this.#limits.orgPublishBurst, refilled: this.#now() };
      this.#orgs.set(name, o);
    }
    return o;
  }

  /** Takes one publish from the connection's org's bucket (always true without an org). */
  #takeOrgToken(c: _Conn): boolean {
    const org = c.org;
    if (!org) return true;
    const now = this.#now();
    const l = this.#limits;
    org.tokens = Math.min(
      l.orgPublishBurst,
      org.tokens + ((now - org.refilled) / 1000) * l.orgPublishPerSecond,
    );
    org.refilled = now;
    if (org.tokens < 1) return false;
    org.tokens -= 1;
    return true;
  }

  #orgRateError(c: _Conn, reqId: number): void {
    this.#limitError(
      c,
      reqId,
      "org_publish_rate",
      `Publish rate limit of organisation "${c.session?.org ?? ""}" of ` +
        `${this.#limits.orgPublishPerSecond} per second exceeded (--org-publish-rate)`,
    );
  }

  async #publish(c: _Conn, f: FrameOf<"publish">): Promise<void> {
    this.#checkChannel(c, f.channel);
    if (!this.#takeToken(c)) {
      return this.#limitError(
        c,
        f.reqId,
        "publish_rate",
        `Publish rate limit of ${this.#limits.publishPerSecond} per second exceeded`,
      );
    }
    if (!this.#takeOrgToken(c)) return this.#orgRateError(c, f.reqId);
    if (f.kind === "genesis") {
      return this.#error(
        c,
        f.reqId,
        "invalid_argument",
        "A genesis is given with create, not published",
      );
    }
    if (!await this.#mayUse(c, f.channel)) {
      return this.#notMember(c, f.reqId, f.channel, "publish to");
    }
    const time = this.#now();
    const t0 = performance.now();
    probes.sink?.(Stages.relayReceived, f.id, t0);
    const append = () =>
      this.#log.append(f.channel, {
        id: f.id,
        kind: f.kind,
        epoch: f.epoch,
        payload: f.payload,
        time,
      });
    if (f.kind === "commit") {
      // Commits pass the gate one at a time and the connection waits for each.
      const r = await this.#gate.commit(f.channel, f.epoch, f.payload, append);
      return this.#published(c, f, time, t0, r);
    }
    const appended = append();
    if (!this.#log.sequencesOnCall) return this.#published(c, f, time, t0, await appended);
    // The log has fixed the entry's place: the connection's next frame may start now, and
    // many of its publishes share one write. Appends settle in call order, so acks keep it.
    const done = appended.then(
      (r) => this.#published(c, f, time, t0, r),
      (e) => this.#failed(c, f, e),
    );
    c.acks = c.acks.then(() => done);
  }

  /** Answers a publish once the log (or the commit gate) has settled it, and fans it out. */
  #published(
    c: _Conn,
    f: FrameOf<"publish">,
    time: number,
    t0: number,
    r: AppendResult | Refusal,
  ): void {
    this.#observeAppend((performance.now() - t0) / 1000);
    if (r instanceof Refusal) {
      this.#metrics.nacked++;
      this.#logger("warn", "refused a commit", {
        channel: f.channel,
        epoch: f.epoch,
        reason: r.reason,
        remote: c.ws.remote,
      });
      return this.#error(c, f.reqId, "refused", `Commit to "${f.channel}" refused: ${r.reason}`);
    }
    if (!r.ok) {
      this.#metrics.nacked++;
      return this.#send(c, { type: "nack", reqId: f.reqId, code: r.code, epoch: r.epoch });
    }
    probes.sink?.(Stages.relayStored, f.id);
    this.#metrics.acks++;
    this.#send(c, { type: "ack", reqId: f.reqId, seq: r.seq, epoch: r.epoch });
    if (r.seq > (this.#heads.get(f.channel) ?? 0)) {
      this.#metrics.published++;
      this.#fanOut(f.channel, {
        seq: r.seq,
        epoch: f.epoch,
        kind: f.kind,
        id: f.id,
        time,
        payload: f.payload,
      });
      probes.sink?.(Stages.relayFannedOut, f.id);
    }
  }

  #checkAddress(address: string): void {
    if (address.length === 0 || _utf8Length(address) > MAX_NAME_BYTES) {
      throw new ValidationError(
        "invalid_argument",
        `Mailbox address must be 1 to ${MAX_NAME_BYTES} bytes, got ${_utf8Length(address)}`,
      );
    }
  }

  /**
   * Where the log keeps a mailbox: an org-scoped session's addresses live in
   * its org's namespace (`<org>/<address>`), so sessions of another org never
   * reach them; sessions without an org (a relay without auth) share one.
   * Org names hold no `/`, so no two orgs' names meet.
   */
  #box(c: _Conn, address: string): string {
    const org = c.session?.org;
    return org === undefined ? address : `${org}/${address}`;
  }

  /**
   * Refuses a take or ack that does not carry the mailbox's take key: a key
   * whose SHA-256 (hex) ends the address. Putters need only the address.
   */
  async #checkOwner(address: string, key: Uint8Array | undefined): Promise<void> {
    if (key === undefined) {
      throw new AuthError(
        `Mailbox "${address}" can only be taken from or acked with its take key: upgrade the client`,
      );
    }
    if (!await ownsMailbox(address, key)) {
      throw new AuthError(`The take key does not own mailbox "${address}"`);
    }
  }

  async #mailboxPut(c: _Conn, f: FrameOf<"mailboxPut">): Promise<void> {
    this.#checkAddress(f.address);
    if (f.ttl < 1) {
      return this.#error(
        c,
        f.reqId,
        "invalid_argument",
        `Mailbox TTL must be at least 1 second, got ${f.ttl}`,
      );
    }
    if (!this.#takeToken(c)) {
      return this.#limitError(
        c,
        f.reqId,
        "publish_rate",
        `Publish rate limit of ${this.#limits.publishPerSecond} per second exceeded`,
      );
    }
    if (!this.#takeOrgToken(c)) return this.#orgRateError(c, f.reqId);
    const ttl = Math.min(f.ttl, this.#limits.maxMailboxTtlSeconds);
    await this.#log.mailboxPut(this.#box(c, f.address), f.id, f.payload, this.#now() + ttl * 1000);
    this.#metrics.mailboxPuts++;
    this.#send(c, { type: "ok", reqId: f.reqId });
  }

  async #mailboxTake(c: _Conn, f: FrameOf<"mailboxTake">): Promise<void> {
    this.#checkAddress(f.address);
    await this.#checkOwner(f.address, f.key);
    const box = this.#box(c, f.address);
    // One page: as many items, oldest first, as fit one frame under the limit (at least one).
    // The client takes again until a take comes back empty; the rest stays unleased till then.
    const items = await this.#log.mailboxTake(box, this.#now(), this.#leaseMs, {
      maxBytes: this.#limits.maxFrameBytes - MAILBOX_ITEMS_HEADER_BYTES,
      perItemBytes: ID_BYTES + 4,
    });
    this.#metrics.mailboxTakes++;
    const leases: MailboxLease[] = [];
    for (const i of items) if (i.lease !== undefined) leases.push({ id: i.id, lease: i.lease });
    if (c.closed) {
      // The connection went away while the log leased them: the answer cannot be sent.
      return this.#release(box, leases);
    }
    let held = c.leases.get(box);
    if (!held && leases.length > 0) c.leases.set(box, held = new Map());
    for (const l of leases) held!.set(l.id.toHex(), l);
    this.#send(c, {
      type: "mailboxItems",
      reqId: f.reqId,
      items: items.map((i) => ({ id: i.id, payload: i.payload })),
    });
  }

  async #mailboxAck(c: _Conn, f: FrameOf<"mailboxAck">): Promise<void> {
    this.#checkAddress(f.address);
    if (f.ids.length === 0 || f.ids.length > MAX_ACK_IDS) {
      return this.#error(
        c,
        f.reqId,
        "invalid_argument",
        `A mailbox ack must name 1 to ${MAX_ACK_IDS} item ids, got ${f.ids.length}`,
      );
    }
    await this.#checkOwner(f.address, f.key);
    const box = this.#box(c, f.address);
    // Forget the leases first: if the connection closes meanwhile, they are not released.
    const held = c.leases.get(box);
    if (held) {
      for (const id of f.ids) held.delete(id.toHex());
      if (held.size === 0) c.leases.delete(box);
    }
    await this.#log.mailboxAck(box, f.ids);
    this.#metrics.mailboxAcks += f.ids.length;
    this.#send(c, { type: "ok", reqId: f.reqId });
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

/** Whether an error from the log is the disk being full or read-only. */
function _storageFull(e: unknown): boolean {
  const text = `${(e as { code?: unknown })?.code ?? ""} ${(e as Error)?.message ?? e}`;
  return /SQLITE_FULL|SQLITE_READONLY|SQLITE_IOERR|ENOSPC|EROFS|disk is full|readonly/i.test(text);
}
