/**
 * Validation at the edge: channel names, hex, sizes. Every failure is a
 * {@linkcode ValidationError} naming the bad value.
 *
 * @module
 */
import { ValidationError } from "./errors.ts";

/**
 * A channel name: three non-empty parts of letters, digits, ".", "_" or "-",
 * at most 255 characters in all ({@linkcode parseChannelName} checks the length).
 * The one statement of the rule: the MCP tools' argument schemas use it too.
 */
export const CHANNEL_PATTERN: RegExp = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/;

const IDENTITY = /^[A-Za-z0-9._@+:-]{1,128}$/;

/**
 * Checks an agent's identity (its name in channels).
 *
 * @param identity The name.
 * @returns The name.
 * @throws {ValidationError} `invalid_argument` unless it is 1-128 letters, digits or `. _ @ + : -`.
 */
export function checkIdentity(identity: string): string {
  if (!IDENTITY.test(identity)) {
    throw new ValidationError(
      "invalid_argument",
      `Invalid identity "${identity}": use 1-128 letters, digits or . _ @ + : -`,
    );
  }
  return identity;
}

/** The largest plaintext message accepted by `send`, in bytes. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/** Components of a channel name `org/namespace/service`. */
export interface ChannelName {
  /** The organisation, e.g. `acme`. */
  org: string;
  /** The namespace inside the organisation. */
  namespace: string;
  /** The service inside the namespace. */
  service: string;
}

/**
 * Checks a channel name and splits it.
 *
 * @param name A name of the form `org/namespace/service`.
 * @returns Its three components.
 * @throws {ValidationError} `invalid_channel` if the name is malformed.
 */
export function parseChannelName(name: unknown): ChannelName {
  if (typeof name !== "string") {
    throw new ValidationError(
      "invalid_channel",
      `Channel name must be a string of the form "org/namespace/service", got ${typeof name}`,
    );
  }
  if (!CHANNEL_PATTERN.test(name) || name.length > 255) {
    throw new ValidationError(
      "invalid_channel",
      `Invalid channel name "${
        name.slice(0, 80)
      }": use "org/namespace/service", three non-empty parts of letters, digits, ".", "_" or "-"`,
    );
  }
  const [org, namespace, service] = name.split("/") as [string, string, string];
  return { org, namespace, service };
}

/**
 * Decodes hex into bytes.
 *
 * @param hex The hex string (whitespace around it is ignored).
 * @param what What the hex is, for the error message.
 * @returns The bytes.
 * @throws {ValidationError} `invalid_hex` if the string is not hex.
 */
export function fromHex(hex: unknown, what: string): Uint8Array {
  if (typeof hex !== "string") {
    throw new ValidationError("invalid_hex", `${what} must be a hex string, got ${typeof hex}`);
  }
  const clean = hex.trim();
  if (clean.length === 0 || clean.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(clean)) {
    throw new ValidationError(
      "invalid_hex",
      `${what} is not valid hex: expected an even number of 0-9a-f characters, got "${
        clean.slice(0, 16)
      }${clean.length > 16 ? "…" : ""}" (${clean.length} characters)`,
    );
  }
  return Uint8Array.fromHex(clean);
}

/**
 * Encodes bytes as lowercase hex.
 *
 * @param bytes The bytes.
 * @returns Their hex form.
 */
export function toHex(bytes: Uint8Array): string {
  return bytes.toHex();
}
