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
 * Which family, and so which class, each code belongs to: a code is thrown
 * only as its family's class, so `instanceof` and `code` never disagree.
 */
export const ErrorFamilies = {
  invalid_argument: "ValidationError",
  invalid_channel: "ValidationError",
  invalid_hex: "ValidationError",
  too_large: "ValidationError",
  unknown_channel: "ValidationError",
  unknown_member: "ValidationError",
  channel_exists: "ValidationError",
  invalid_message: "CryptoError",
  welcome_mismatch: "CryptoError",
  refused: "CryptoError",
  identity_mismatch: "CryptoError",
  protocol: "ProtocolError",
  relay_unavailable: "RelayError",
  relay_error: "RelayError",
  wrong_relay: "RelayError",
  limit: "RelayError",
  stale_epoch: "RelayError",
  auth: "AuthError",
  state_corrupt: "StateError",
  in_use: "StateError",
  timeout: "InterruptedError",
  aborted: "InterruptedError",
  closed: "InterruptedError",
  usage: "UsageError",
} as const satisfies Record<ErrorCode, string>;

/** The codes of one family, e.g. `CodeOf<"StateError">` is `"state_corrupt" | "in_use"`. */
export type CodeOf<F extends string> = {
  [C in ErrorCode]: typeof ErrorFamilies[C] extends F ? C : never;
}[ErrorCode];

/**
 * The base of every error Skytale throws on purpose. Skytale itself throws
 * only the family classes below; {@linkcode skytaleError} makes the right one
 * for a code.
 *
 * @example
 * ```ts
 * import { SkytaleError, skytaleError } from "@skytale/mcp";
 * try {
 *   throw skytaleError("unknown_channel", 'Unknown channel "a/b/c"');
 * } catch (e) {
 *   if (e instanceof SkytaleError) console.log(e.name, e.code); // ValidationError unknown_channel
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

/**
 * Bad input from a caller: arguments, names, hex, sizes, a channel or member
 * that does not exist or already does.
 */
export class ValidationError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: CodeOf<"ValidationError">;
  /**
   * Creates the error.
   *
   * @param code One of the family's codes.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: CodeOf<"ValidationError">, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "ValidationError";
  }
}

/**
 * MLS refused something: an undecodable or unverifiable object, a Welcome for
 * someone else, or a proposal or commit that breaks the channel's rules.
 */
export class CryptoError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: CodeOf<"CryptoError">;
  /**
   * Creates the error.
   *
   * @param code One of the family's codes.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: CodeOf<"CryptoError">, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "CryptoError";
  }
}

/** A malformed or unexpected wire frame. */
export class ProtocolError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: "protocol";
  /**
   * Creates the error.
   *
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("protocol", message, options);
    this.name = "ProtocolError";
  }
}

/** The relay could not be reached, refused a request, or is not the relay the channel lives on. */
export class RelayError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: CodeOf<"RelayError">;
  /**
   * Creates the error.
   *
   * @param code One of the family's codes.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: CodeOf<"RelayError">, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "RelayError";
  }
}

/** Credentials were missing, wrong, expired or revoked. */
export class AuthError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: "auth";
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

/** Stored state is unreadable or corrupt, or another process holds it. */
export class StateError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: CodeOf<"StateError">;
  /**
   * Creates the error.
   *
   * @param code One of the family's codes.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: CodeOf<"StateError">, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "StateError";
  }
}

/** An operation stopped before it finished: its deadline passed, its signal fired, or it was closed. */
export class InterruptedError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: CodeOf<"InterruptedError">;
  /**
   * Creates the error.
   *
   * @param code One of the family's codes.
   * @param message What was wrong.
   * @param options The underlying cause, if any.
   */
  constructor(code: CodeOf<"InterruptedError">, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "InterruptedError";
  }
}

/** The command line was wrong. */
export class UsageError extends SkytaleError {
  /** The code: one of this family's. */
  declare readonly code: "usage";
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

/**
 * The error of `code`'s family: how a code read off the wire (a relay's error
 * frame, an MCP tool result) becomes a typed error again.
 *
 * @param code A code; an unknown string becomes `relay_error`.
 * @param message What was wrong.
 * @param options The underlying cause, if any.
 * @returns An instance of the code's family class.
 */
export function skytaleError(code: string, message: string, options?: ErrorOptions): SkytaleError {
  const c: ErrorCode = Object.hasOwn(ErrorFamilies, code) ? code as ErrorCode : "relay_error";
  switch (ErrorFamilies[c]) {
    case "ValidationError":
      return new ValidationError(c as CodeOf<"ValidationError">, message, options);
    case "CryptoError":
      return new CryptoError(c as CodeOf<"CryptoError">, message, options);
    case "ProtocolError":
      return new ProtocolError(message, options);
    case "RelayError":
      return new RelayError(c as CodeOf<"RelayError">, message, options);
    case "AuthError":
      return new AuthError(message, options);
    case "StateError":
      return new StateError(c as CodeOf<"StateError">, message, options);
    case "InterruptedError":
      return new InterruptedError(c as CodeOf<"InterruptedError">, message, options);
    case "UsageError":
      return new UsageError(message, options);
  }
}
