/**
 * Byte formats of our own around ts-mls objects: the private half of a key
 * package, and the persisted group envelope, each starting with a version
 * byte; and decoding of whole MLS messages and key packages from untrusted bytes.
 *
 * @module
 */
import {
  type ClientConfig,
  decodeGroupState,
  decodeMlsMessage,
  encodeGroupState,
  encodeMlsMessage,
  type GroupState,
  type KeyPackage,
  type MLSMessage,
} from "ts-mls";
import type { PrivateKeyPackage } from "ts-mls";
import { decodeKeyPackage } from "ts-mls/keyPackage.js";
import { bytesEqual } from "../_util.ts";

/** Version byte of the private key package format. */
const PRIVATE_KEY_V1 = 1;
/** Version byte of the group envelope: `0x01 || encodeGroupState(state)`. */
const GROUP_V1 = 1;

/**
 * Encodes the private half of a key package: `0x01`, then the init, HPKE and
 * signature private keys, each as a big-endian u32 length and the bytes.
 *
 * @param p The private keys from ts-mls.
 * @returns The encoded bytes.
 */
export function encodePrivateKeyPackage(p: PrivateKeyPackage): Uint8Array {
  const fields = [p.initPrivateKey, p.hpkePrivateKey, p.signaturePrivateKey];
  const out = new Uint8Array(1 + fields.reduce((n, f) => n + 4 + f.length, 0));
  const view = new DataView(out.buffer);
  out[0] = PRIVATE_KEY_V1;
  let at = 1;
  for (const f of fields) {
    view.setUint32(at, f.length);
    out.set(f, at + 4);
    at += 4 + f.length;
  }
  return out;
}

/**
 * Decodes {@linkcode encodePrivateKeyPackage} output.
 *
 * @param b The encoded bytes.
 * @returns The private keys, or `undefined` if the bytes are malformed.
 */
export function decodePrivateKeyPackage(b: Uint8Array): PrivateKeyPackage | undefined {
  if (b.length < 1 || b[0] !== PRIVATE_KEY_V1) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Uint8Array[] = [];
  let at = 1;
  for (let i = 0; i < 3; i++) {
    if (at + 4 > b.length) return undefined;
    const len = view.getUint32(at);
    if (at + 4 + len > b.length) return undefined;
    fields.push(b.slice(at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== b.length) return undefined;
  const [initPrivateKey, hpkePrivateKey, signaturePrivateKey] = fields as [
    Uint8Array,
    Uint8Array,
    Uint8Array,
  ];
  return { initPrivateKey, hpkePrivateKey, signaturePrivateKey };
}

/**
 * Encodes a group state for persistence: `0x01 || encodeGroupState(state)`.
 * ts-mls' encoding covers everything but the client config, which holds
 * functions and is the engine's to supply again on decode.
 *
 * @param state The group state.
 * @returns The envelope bytes.
 */
export function encodeGroupEnvelope(state: GroupState): Uint8Array {
  const body = encodeGroupState(state);
  const out = new Uint8Array(1 + body.length);
  out[0] = GROUP_V1;
  out.set(body, 1);
  return out;
}

/**
 * Decodes {@linkcode encodeGroupEnvelope} output and attaches a client config.
 *
 * @param b The envelope bytes.
 * @param clientConfig The engine's client config.
 * @returns The client state, or `undefined` if the bytes are malformed.
 */
export function decodeGroupEnvelope(
  b: Uint8Array,
  clientConfig: ClientConfig,
): (GroupState & { clientConfig: ClientConfig }) | undefined {
  if (b.length < 2 || b[0] !== GROUP_V1) return undefined;
  let decoded: ReturnType<typeof decodeGroupState>;
  try {
    decoded = decodeGroupState(b, 1);
  } catch {
    return undefined;
  }
  if (decoded === undefined || decoded[1] !== b.length - 1) {
    return undefined;
  }
  return { ...decoded[0], clientConfig };
}

/** `decode` applied to all of `bytes`: `undefined` on a throw, a short read or trailing bytes. */
function whole<T>(
  bytes: unknown,
  decode: (b: Uint8Array, offset: number) => [T, number] | undefined,
): T | undefined {
  if (!(bytes instanceof Uint8Array)) return undefined;
  try {
    const r = decode(bytes, 0);
    return r !== undefined && r[1] === bytes.length ? r[0] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Decodes a whole MLSMessage in its one canonical encoding. ts-mls' decoders
 * accept some non-canonical bytes (an optional field's presence byte other
 * than 0 or 1, e.g.) and verify signatures over the re-encoded structure, so
 * a relay could alter a signed commit's bytes unnoticed; every form but a
 * PrivateMessage (whose bytes its AEAD covers) must re-encode to the bytes given.
 *
 * @param bytes The bytes.
 * @returns The message, or `undefined` on malformed or non-canonical input or trailing bytes.
 */
export function decodeWhole(bytes: unknown): MLSMessage | undefined {
  const msg = whole(bytes, decodeMlsMessage);
  if (msg === undefined || msg.wireformat === "mls_private_message") return msg;
  return bytesEqual(encodeMlsMessage(msg), bytes as Uint8Array) ? msg : undefined;
}

/**
 * Decodes a key package as other implementations send it: wrapped in an
 * MLSMessage (RFC 9420 §6) or bare (OpenMLS' `tls_serialize` of a KeyPackage).
 *
 * @param bytes The bytes.
 * @returns The key package, or `undefined` if the bytes are neither form.
 */
export function decodeKeyPackageBytes(bytes: unknown): KeyPackage | undefined {
  const msg = decodeWhole(bytes);
  if (msg !== undefined) return msg.wireformat === "mls_key_package" ? msg.keyPackage : undefined;
  return whole(bytes, decodeKeyPackage);
}
