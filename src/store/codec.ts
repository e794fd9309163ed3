/**
 * The on-disk form of stored records: JSON with bytes as hex, wrapped with a
 * version and a SHA-256 checksum so a torn or flipped file is detected.
 *
 * @module
 */
import { StateError } from "../errors.ts";
import { sha256Hex } from "../_util.ts";

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return { $bytes: value.toHex() };
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === "object" && "$bytes" in value) {
    return Uint8Array.fromHex((value as { $bytes: string }).$bytes);
  }
  return value;
}

/**
 * Encodes a record for disk.
 *
 * @param value A JSON-compatible value (Uint8Array allowed anywhere).
 * @returns The file bytes.
 */
export async function encodeRecord(value: unknown): Promise<Uint8Array> {
  const body = JSON.stringify(value, replacer);
  const sum = await sha256Hex(enc.encode(body));
  return enc.encode(JSON.stringify({ v: 1, sum, body }));
}

/**
 * Decodes a record read from disk, verifying its checksum.
 *
 * @param bytes The file bytes.
 * @param what The file's name, for the error message.
 * @returns The stored value.
 * @throws {StateError} `state_corrupt` if the file is torn, altered or of an unknown version.
 */
export async function decodeRecord<T>(bytes: Uint8Array, what: string): Promise<T> {
  let outer: { v?: unknown; sum?: unknown; body?: unknown };
  try {
    outer = JSON.parse(dec.decode(bytes));
  } catch (e) {
    throw new StateError("state_corrupt", `Stored state "${what}" is not readable JSON`, {
      cause: e,
    });
  }
  if (outer?.v !== 1 || typeof outer.body !== "string" || typeof outer.sum !== "string") {
    throw new StateError("state_corrupt", `Stored state "${what}" has an unknown format`);
  }
  if (await sha256Hex(enc.encode(outer.body)) !== outer.sum) {
    throw new StateError("state_corrupt", `Stored state "${what}" fails its checksum`);
  }
  return JSON.parse(outer.body, reviver) as T;
}
