/**
 * The plaintext inside every MLS application message: a version byte, a tag
 * saying which layer it is for (`chat` for `send`/`receive`, `mcp` for the
 * MCP transport) and the body. Tags keep layers apart on one channel.
 *
 * @module
 */
import { CryptoError } from "../errors.ts";

const VERSION = 1;
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Tags used by Skytale's own layers. */
export const Tags = {
  /** Text messages of `send` and `receive`. */
  chat: "chat",
  /** MCP JSON-RPC carried by the transport. */
  mcp: "mcp",
} as const;

/** A tag name. */
export type Tag = typeof Tags[keyof typeof Tags];

/**
 * Wraps a body with its tag.
 *
 * @param tag The layer the body is for (1–255 bytes of UTF-8).
 * @param body The payload.
 * @returns The plaintext to encrypt.
 */
export function encodeEnvelope(tag: string, body: Uint8Array): Uint8Array {
  const t = enc.encode(tag);
  if (t.length === 0 || t.length > 255) throw new RangeError(`Bad envelope tag "${tag}"`);
  const out = new Uint8Array(2 + t.length + body.length);
  out[0] = VERSION;
  out[1] = t.length;
  out.set(t, 2);
  out.set(body, 2 + t.length);
  return out;
}

/**
 * Unwraps a decrypted plaintext.
 *
 * @param data The decrypted plaintext.
 * @returns Its tag and body.
 * @throws {CryptoError} `invalid_message` if it is not an envelope of a known version.
 */
export function decodeEnvelope(data: Uint8Array): { tag: string; body: Uint8Array } {
  const len = data[1];
  if (data[0] !== VERSION || len === undefined || len === 0 || data.length < 2 + len) {
    throw new CryptoError("invalid_message", "Decrypted message is not a Skytale envelope");
  }
  try {
    return { tag: dec.decode(data.subarray(2, 2 + len)), body: data.subarray(2 + len) };
  } catch (e) {
    throw new CryptoError("invalid_message", "Decrypted message has a malformed tag", {
      cause: e,
    });
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
