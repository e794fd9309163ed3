/**
 * Where a message's layer is said. A chat message's MLS application data is
 * the UTF-8 text itself, so any RFC 9420 client reads it as-is; another
 * layer's tag (`mcp`, …) travels in the message's MLS `authenticated_data`
 * (signed and bound to the ciphertext, ignored by plain peers) as
 * `0x02 | len | tag`. Messages of the first format (`0x01 | len | tag | body`
 * inside the application data, empty authenticated data) are still read from
 * stored logs.
 *
 * @module
 */
import { CryptoError, ValidationError } from "../errors.ts";

const LEGACY = 1;
const AAD_VERSION = 2;
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Tags used by Skytale's own layers. */
export const Tags = {
  /** Text messages of `send` and `receive`. */
  chat: "chat",
  /** MCP JSON-RPC carried by the transport. */
  mcp: "mcp",
  /** The shared context of `context(channel)` (`src/context/`). */
  ctx: "ctx",
} as const;

/** A tag name. */
export type Tag = typeof Tags[keyof typeof Tags];

/**
 * The MLS authenticated data that names a layer: empty for `chat`.
 *
 * @param tag The layer the body is for (1–255 bytes of UTF-8).
 * @returns The authenticated data to send the body with.
 * @throws {ValidationError} `invalid_argument` for an empty or longer tag.
 */
export function tagData(tag: string): Uint8Array {
  if (tag === Tags.chat) return new Uint8Array(0);
  const t = enc.encode(tag);
  if (t.length === 0 || t.length > 255) {
    throw new ValidationError(
      "invalid_argument",
      `Invalid layer tag "${tag.slice(0, 80)}": use 1-255 bytes of UTF-8`,
    );
  }
  return Uint8Array.of(AAD_VERSION, t.length, ...t);
}

/**
 * Which layer a decrypted message is for, and its body.
 *
 * @param aad The message's MLS authenticated data.
 * @param data Its application data.
 * @returns Its tag and body.
 * @throws {CryptoError} `invalid_message` if the authenticated data is not a tag.
 */
export function openTagged(aad: Uint8Array, data: Uint8Array): { tag: string; body: Uint8Array } {
  if (aad.length === 0) {
    // Plain chat — or a message of the first format, from a stored log.
    const len = data[1];
    if (data[0] === LEGACY && len !== undefined && data.length >= 2 + len) {
      const tag = tryUtf8(data.subarray(2, 2 + len));
      if (tag === Tags.chat || tag === Tags.mcp) return { tag, body: data.subarray(2 + len) };
    }
    return { tag: Tags.chat, body: data };
  }
  const len = aad[1];
  const tag = aad[0] === AAD_VERSION && len !== undefined && len > 0 && aad.length === 2 + len
    ? tryUtf8(aad.subarray(2))
    : undefined;
  if (tag === undefined) {
    throw new CryptoError("invalid_message", "Message's authenticated data is not a layer tag");
  }
  return { tag, body: data };
}

function tryUtf8(b: Uint8Array): string | undefined {
  try {
    return dec.decode(b);
  } catch {
    return undefined;
  }
}

/**
 * Encodes text as UTF-8.
 *
 * @param text The text.
 * @returns Its bytes.
 */
export function utf8(text: string): Uint8Array {
  return enc.encode(text);
}

/**
 * Decodes UTF-8, refusing malformed input.
 *
 * @param bytes The bytes.
 * @returns The text.
 */
export function fromUtf8(bytes: Uint8Array): string {
  return dec.decode(bytes);
}
