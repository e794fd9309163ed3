/**
 * The relay server's per-connection state (`Conn`), its subscriptions
 * (`Sub`), and `RelayContext`: what the server's parts (fan-out, mailboxes,
 * channels, quotas) share and how they answer a connection.
 *
 * @module
 */
import { type ErrorCode, ErrorCodes, SkytaleError } from "../errors.ts";
import { randomBytes } from "../_util.ts";
import type { WsConnection } from "../runtime/serve.ts";
import type { MailboxLease, RelayLog } from "./log/types.ts";
import type { Frame } from "./protocol.ts";
import type { RelayLimits, RelayLogger, RelaySession } from "./server_options.ts";
import type { Counters } from "./_metrics.ts";

/** What an organisation uses of its quotas on this relay. */
export interface Org {
  conns: number;
  channels: number;
  tokens: number;
  refilled: number;
}

/** One subscription of one connection: its cursor and whether it is fed live or from the log. */
export interface Sub {
  conn: Conn;
  channel: string;
  next: number;
  live: boolean;
  pumping: boolean;
  closed: boolean;
}

/** One WebSocket connection. */
export interface Conn {
  ws: WsConnection;
  session: RelaySession | undefined;
  subs: Map<string, Sub>;
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
  org: Org | undefined;
}

const CLOSED: Promise<void> = Promise.resolve();

/**
 * A new connection's state.
 *
 * @param ws The connection.
 * @param now The time, in ms.
 * @param burst The publish tokens it starts with.
 * @returns The state.
 */
export function newConn(ws: WsConnection, now: number, burst: number): Conn {
  return {
    ws,
    session: undefined,
    subs: new Map(),
    tokens: burst,
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
    nonce: randomBytes(16),
    keys: [],
    memberOf: new Map(),
    org: undefined,
  };
}

/** What the relay server's parts share, and how they answer a connection. */
export interface RelayContext {
  /** The storage. */
  readonly log: RelayLog;
  /** The limits in force. */
  readonly limits: RelayLimits;
  /** The clock, in ms since the Unix epoch. */
  readonly now: () => number;
  /** Where log lines go. */
  readonly logger: RelayLogger;
  /** The relay's counters. */
  readonly metrics: Counters;
  /** Records how long one log append took, in seconds. */
  observeAppend(seconds: number): void;
  /** Sends a frame (a no-op once the connection is closed). */
  send(c: Conn, f: Frame): void;
  /** Sends an `error` frame. */
  error(c: Conn, reqId: number, code: ErrorCode, message: string): void;
  /** Sends an `error limit` frame, counts and logs the breach. */
  limitError(c: Conn, reqId: number, what: string, message: string): void;
}

/**
 * The wire code of an error: its own if it is a `SkytaleError`, else `relay_error`.
 *
 * @param e The error.
 * @returns The code.
 */
export function errorCode(e: unknown): ErrorCode {
  return e instanceof SkytaleError ? e.code : ErrorCodes.relayError;
}

/**
 * Whether an error from the log is the disk being full or read-only.
 *
 * @param e The error.
 * @returns `true` for a full or read-only disk.
 */
export function storageFull(e: unknown): boolean {
  const text = `${(e as { code?: unknown })?.code ?? ""} ${(e as Error)?.message ?? e}`;
  return /SQLITE_FULL|SQLITE_READONLY|SQLITE_IOERR|ENOSPC|EROFS|disk is full|readonly/i.test(text);
}
