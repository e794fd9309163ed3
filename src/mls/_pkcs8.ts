/**
 * Ed25519 private keys in PKCS#8, the form WebCrypto and `node:crypto` import.
 * Apart from `src/runtime/native_crypto.ts` so the WebCrypto path needs no
 * `node:crypto`.
 *
 * @module
 */

const PKCS8_ED25519_PREFIX = new Uint8Array([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/**
 * Wraps a raw 32-byte Ed25519 seed in its PKCS#8 DER form; other input (already
 * PKCS#8) is returned as it is.
 *
 * @param key A 32-byte seed or PKCS#8 DER bytes.
 * @returns PKCS#8 DER bytes.
 */
export function ed25519Pkcs8(key: Uint8Array): Uint8Array {
  if (key.length !== 32) return key;
  const der = new Uint8Array(48);
  der.set(PKCS8_ED25519_PREFIX);
  der.set(key, 16);
  return der;
}
