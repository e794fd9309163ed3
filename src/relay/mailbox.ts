/**
 * Mailbox capabilities. A mailbox belongs to whoever holds its _take key_, 32
 * random bytes: its address is a readable prefix followed by the hex SHA-256
 * of the key. Anyone who knows the address can put into it; only a take or ack
 * that carries the key is served, and the relay checks that the key hashes to
 * the address, so it keeps no owner records and learns no secret it could use.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { randomBytes, sha256Hex } from "../_util.ts";
import { TAKE_KEY_BYTES } from "./protocol.ts";

export { TAKE_KEY_BYTES } from "./protocol.ts";

/** A mailbox this party owns: its address (to hand out) and its take key (to keep). */
export interface OwnedMailbox {
  /** `prefix` + hex SHA-256 of the take key; what putters need. */
  address: string;
  /** The take key; whoever holds it can take from and ack the mailbox. */
  takeKey: Uint8Array;
}

async function _digestHex(takeKey: Uint8Array): Promise<string> {
  if (takeKey.length !== TAKE_KEY_BYTES) {
    throw new ValidationError(
      "invalid_argument",
      `Mailbox take key must be ${TAKE_KEY_BYTES} bytes, got ${takeKey.length}`,
    );
  }
  return await sha256Hex(takeKey);
}

/**
 * The address a take key owns.
 *
 * @example
 * ```ts
 * import { mailboxAddress } from "./mailbox.ts";
 * const address = await mailboxAddress("wel:", new Uint8Array(32));
 * console.log(address.length); // 4 + 64
 * ```
 *
 * @param prefix A readable prefix, e.g. `inv:`.
 * @param takeKey The 32-byte take key.
 * @returns `prefix` + 64 hex digits.
 * @throws {ValidationError} `invalid_argument` if the key is not 32 bytes.
 */
export async function mailboxAddress(prefix: string, takeKey: Uint8Array): Promise<string> {
  return prefix + await _digestHex(takeKey);
}

/**
 * Makes a new mailbox: a random take key and its address.
 *
 * @param prefix A readable prefix, e.g. `wel:`.
 * @returns The address and the take key.
 */
export async function newMailbox(prefix: string): Promise<OwnedMailbox> {
  const takeKey = randomBytes(TAKE_KEY_BYTES);
  return { address: await mailboxAddress(prefix, takeKey), takeKey };
}

/**
 * Whether a take key owns an address (the address ends with its hex SHA-256).
 *
 * @param address The mailbox address.
 * @param takeKey The key offered.
 * @returns `true` if the key owns the address; `false` otherwise, also for a key of the wrong length.
 */
export async function ownsMailbox(address: string, takeKey: Uint8Array): Promise<boolean> {
  if (takeKey.length !== TAKE_KEY_BYTES) return false;
  return address.endsWith(await _digestHex(takeKey));
}
