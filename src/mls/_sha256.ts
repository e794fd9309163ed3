/**
 * SHA-256 and HMAC-SHA256 for short inputs, synchronous and without
 * allocation per block: what MLS' key schedule, secret tree and tree hashes
 * need thousands of times per commit (a 1,000-member group derives about
 * 4,000 secrets per epoch). A generic hash object per call (`@noble/hashes`)
 * costs several times the four compressions an HMAC of a short message needs.
 * Verified against `@noble/hashes` and the RFC 4231 vectors in the tests.
 *
 * Not reentrant across threads of control, and it need not be: every function
 * here runs to completion synchronously, and the shared buffers are wiped
 * before returning.
 *
 * @module
 */

const K = Int32Array.from([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);
const IV = Int32Array.from([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

const W = new Int32Array(64);

/** One compression of the 64-byte block at `b[off]` into state `s`. */
function compress(s: Int32Array, b: DataView, off: number): void {
  const w = W;
  for (let i = 0; i < 16; i++, off += 4) w[i] = b.getInt32(off);
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = s[0]!, bb = s[1]!, c = s[2]!, d = s[3]!, e = s[4]!, f = s[5]!, g = s[6]!, h = s[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = bb;
    bb = a;
    a = (t1 + t2) | 0;
  }
  s[0] = (s[0]! + a) | 0;
  s[1] = (s[1]! + bb) | 0;
  s[2] = (s[2]! + c) | 0;
  s[3] = (s[3]! + d) | 0;
  s[4] = (s[4]! + e) | 0;
  s[5] = (s[5]! + f) | 0;
  s[6] = (s[6]! + g) | 0;
  s[7] = (s[7]! + h) | 0;
}

/** A reusable SHA-256 computation (state, a partial block, the length so far). */
class Sha256 {
  readonly s = new Int32Array(8);
  readonly buf = new Uint8Array(64);
  readonly view = new DataView(this.buf.buffer);
  n = 0;
  total = 0;

  init(): this {
    this.s.set(IV);
    this.n = 0;
    this.total = 0;
    return this;
  }

  /** Starts with one whole 64-byte block (an HMAC key pad), without copying it. */
  initBlock(block: DataView): this {
    this.s.set(IV);
    compress(this.s, block, 0);
    this.n = 0;
    this.total = 64;
    return this;
  }

  update(data: Uint8Array): this {
    const len = data.length;
    let i = 0;
    this.total += len;
    if (this.n > 0) {
      const take = Math.min(64 - this.n, len);
      this.buf.set(take === len ? data : data.subarray(0, take), this.n);
      this.n += take;
      i = take;
      if (this.n < 64) return this;
      compress(this.s, this.view, 0);
      this.n = 0;
    }
    if (i + 64 <= len) {
      const v = new DataView(data.buffer, data.byteOffset, len);
      for (; i + 64 <= len; i += 64) compress(this.s, v, i);
    }
    if (i < len) {
      this.buf.set(data.subarray(i), 0);
      this.n = len - i;
    }
    return this;
  }

  /** Pads, finishes and writes the 32-byte digest to `out` at `off`; wipes the buffer. */
  finish(out: Uint8Array, off = 0): Uint8Array {
    const buf = this.buf;
    let n = this.n;
    buf[n++] = 0x80;
    if (n > 56) {
      buf.fill(0, n);
      compress(this.s, this.view, 0);
      n = 0;
    }
    buf.fill(0, n, 56);
    const bits = this.total * 8;
    const hi = Math.floor(bits / 0x100000000);
    buf[56] = hi >>> 24;
    buf[57] = hi >>> 16;
    buf[58] = hi >>> 8;
    buf[59] = hi;
    buf[60] = bits >>> 24;
    buf[61] = bits >>> 16;
    buf[62] = bits >>> 8;
    buf[63] = bits;
    compress(this.s, this.view, 0);
    const s = this.s;
    for (let j = 0; j < 8; j++) {
      const v = s[j]!;
      out[off++] = v >>> 24;
      out[off++] = v >>> 16;
      out[off++] = v >>> 8;
      out[off++] = v;
    }
    buf.fill(0);
    W.fill(0);
    return out;
  }
}

const hasher = new Sha256();
const inner = new Uint8Array(32);
const pad = new Uint8Array(64);
const padView = new DataView(pad.buffer);

/**
 * SHA-256.
 *
 * @param data The input.
 * @returns The 32-byte digest.
 */
export function sha256(data: Uint8Array): Uint8Array {
  return hasher.init().update(data).finish(new Uint8Array(32));
}

/**
 * HMAC-SHA256 (RFC 2104) of the concatenation of `a`, `b`, `c` and `d`.
 *
 * @param key The key (any length; longer than 64 bytes is hashed first).
 * @param a The message, or its first piece.
 * @param b The second piece, if any.
 * @param c The third piece, if any.
 * @param d The fourth piece, if any.
 * @returns The 32-byte tag.
 */
export function hmacSha256(
  key: Uint8Array,
  a: Uint8Array,
  b?: Uint8Array,
  c?: Uint8Array,
  d?: Uint8Array,
): Uint8Array {
  pad.fill(0);
  if (key.length > 64) hasher.init().update(key).finish(pad);
  else pad.set(key);
  for (let i = 0; i < 64; i++) pad[i]! ^= 0x36;
  hasher.initBlock(padView).update(a);
  if (b !== undefined) hasher.update(b);
  if (c !== undefined) hasher.update(c);
  if (d !== undefined) hasher.update(d);
  hasher.finish(inner);
  for (let i = 0; i < 64; i++) pad[i]! ^= 0x36 ^ 0x5c;
  const out = hasher.initBlock(padView).update(inner).finish(new Uint8Array(32));
  pad.fill(0);
  inner.fill(0);
  return out;
}
