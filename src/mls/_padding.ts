/**
 * Sizes of application messages: how long the padded content of a private
 * message must be for the whole MLSMessage to come out at exactly the size a
 * padding policy picks (so that sizes reveal only the bucket).
 *
 * @module
 */
import type { ClientState } from "ts-mls";

/** The size of an MLS variable-length integer (RFC 9420 §2.1.2). */
function vlen(n: number): number {
  return n < 64 ? 1 : n < 16384 ? 2 : 4;
}

/** Ed25519 signatures, the scheme of every suite agents use, are 64 bytes. */
const SIGNATURE_BYTES = 64;
/** AEAD tags (AES-GCM, ChaCha20-Poly1305) are 16 bytes. */
const TAG_BYTES = 16;

/**
 * How long the padded PrivateMessageContent of an application message must be
 * for the whole MLSMessage to have exactly the size `pad` picks: version,
 * wire format, group id, epoch, content type, authenticated data,
 * encrypted sender data (12 bytes + tag), and the ciphertext (content + tag).
 *
 * @param state The group's state (its group id is in every message).
 * @param n The plaintext's length.
 * @param aad The authenticated data's length.
 * @param pad The smallest allowed size at or above a length.
 * @returns The content length to pad to (the unpadded one if no bucket fits).
 */
export function paddedContentLength(
  state: ClientState,
  n: number,
  aad: number,
  pad: (length: number) => number,
): number {
  const gid = state.groupContext.groupId.length;
  const head = 2 + 2 + vlen(gid) + gid + 8 + 1 + vlen(aad) + aad + 1 + 12 + TAG_BYTES;
  const content = vlen(n) + n + vlen(SIGNATURE_BYTES) + SIGNATURE_BYTES;
  const total = (c: number) => head + vlen(c + TAG_BYTES) + c + TAG_BYTES;
  for (let size = pad(total(content)); size < 2 ** 30; size = pad(size + 1)) {
    for (const v of [1, 2, 4]) {
      const c = size - head - TAG_BYTES - v;
      if (c >= content && vlen(c + TAG_BYTES) === v) return c;
    }
  }
  return content;
}
