/**
 * One error hierarchy for everything local to a Skytale process. Every error
 * carries a stable string `code` so callers (and MCP tool results) can branch
 * on it; JSON-RPC wire errors stay separate.
 *
 * @module
 */

/** Every code a {@linkcode SkytaleError} can carry. */
export const ErrorCodes = {
  /** An argument is missing, of the wrong type or out of range. */
  invalidArgument: "invalid_argument",
  /** A proposal or commit breaks the channel's rules (duplicate name, non-member, re-keying). */
  refused: "refused",
  /** A member claims a name that is pinned to another key in this channel. */
  identityMismatch: "identity_mismatch",
  /** A channel name is not `org/namespace/service`. */
  invalidChannel: "invalid_channel",
  /** A hex string is malformed. */
  invalidHex: "invalid_hex",
  /** An MLS object (key package, Welcome, message) could not be decoded or verified. */
  invalidMessage: "invalid_message",
  /** The channel is not known to this identity. */
  unknownChannel: "unknown_channel",
  /** The relay does not know a channel this identity has: it was made on another relay. */
  wrongRelay: "wrong_relay",
  /** The channel already exists. */
  channelExists: "channel_exists",
  /** The Welcome is not addressed to any key package of this identity. */
  welcomeMismatch: "welcome_mismatch",
  /** A member is not in the channel. */
  unknownMember: "unknown_member",
  /** A message or frame is larger than allowed. */
  tooLarge: "too_large",
  /** The relay refused a commit built on an old epoch. */
  staleEpoch: "stale_epoch",
  /** A wire frame is malformed or unexpected. */
  protocol: "protocol",
  /** The relay cannot be reached or the connection was lost. */
  relayUnavailable: "relay_unavailable",
  /** The relay answered with an error. */
  relayError: "relay_error",
  /** Credentials are missing, wrong, expired or revoked. */
  auth: "auth",
  /** A limit of the relay was exceeded. */
  limit: "limit",
  /** An operation did not finish in time. */
  timeout: "timeout",
  /** A wait was given up because its `AbortSignal` fired. */
  aborted: "aborted",
  /** Stored state is unreadable or corrupt. */
  stateCorrupt: "state_corrupt",
  /** Another running process holds this identity's state. */
  inUse: "in_use",
  /** The object was closed. */
  closed: "closed",
  /** The command line is wrong. */
  usage: "usage",
} as const;

/** A string-literal union of every error code. */
export type ErrorCode = typeof ErrorCodes[keyof typeof ErrorCodes];

/**
 * The base of every error Skytale throws on purpose.
 *
 * @example
 * ```ts
 * import { SkytaleError } from "@skytale/mcp";
 * try {
 *   throw new SkytaleError("unknown_channel", 'Unknown channel "a/b/c"');
 * } catch (e) {
 *   if (e instanceof SkytaleError) console.log(e.code);
 * }
 * ```
 */
export class SkytaleError extends Error {
  /** A stable machine-readable code. */
  readonly code: ErrorCode;
  /**
   * Creates the error.
   *
   * @param code A stable machine-readable code.
   * @param message A sentence-case message naming the bad value.
   * @param options The underlying cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "SkytaleError";
  }
}

/** Bad input from a caller: arguments, names, hex, sizes. */
export class ValidationError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param code A stable machine-readable code.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "ValidationError";
  }
}

/** A failure of MLS processing: undecodable or unverifiable objects. */
export class CryptoError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param code A stable machine-readable code.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "CryptoError";
  }
}

/** A malformed or unexpected wire frame. */
export class ProtocolError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param code A stable machine-readable code.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "ProtocolError";
  }
}

/** The relay could not be reached or refused a request. */
export class RelayError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param code A stable machine-readable code.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "RelayError";
  }
}

/** Credentials were missing, wrong, expired or revoked. */
export class AuthError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("auth", message, options);
    this.name = "AuthError";
  }
}

/** Stored state could not be read or written. */
export class StateError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param code A stable machine-readable code.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "StateError";
  }
}

/** The command line was wrong. */
export class UsageError extends SkytaleError {
  /**
   * Creates the error.
   *
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("usage", message, options);
    this.name = "UsageError";
  }
}
