/**
 * What a relay server is configured with: its limits (and their defaults),
 * its hooks (authentication, extra HTTP routes, metrics, logging) and the
 * session a `hello` yields. `server.ts` re-exports all of it.
 *
 * @module
 */
import { env, logLine } from "../runtime/env.ts";
import type { RelayLog } from "./log/types.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "./protocol.ts";

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
