/**
 * A bounded cache of imported WebCrypto keys, keyed by the key bytes (or a
 * digest of them), least recently used first out. It holds the import
 * promise, so concurrent first uses import once.
 *
 * @module
 */

function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += (b[i]! < 16 ? "0" : "") + b[i]!.toString(16);
  return s;
}

/** Imported keys by key bytes, at most `max` of them. */
export class KeyCache {
  readonly #max: number;
  readonly #id: (key: Uint8Array) => Uint8Array;
  readonly #keys = new Map<string, Promise<CryptoKey>>();

  /**
   * Makes an empty cache.
   *
   * @param max The most keys kept.
   * @param id Maps key bytes to the bytes that identify them (e.g. a digest of a secret).
   */
  constructor(max: number, id: (key: Uint8Array) => Uint8Array) {
    this.#max = max;
    this.#id = id;
  }

  /**
   * The imported key for these bytes, importing it on a miss.
   *
   * @param bytes The raw key bytes.
   * @param load Imports the key.
   * @returns The imported key.
   */
  get(bytes: Uint8Array, load: () => Promise<CryptoKey>): Promise<CryptoKey> {
    const id = hex(this.#id(bytes));
    let p = this.#keys.get(id);
    if (p !== undefined) {
      this.#keys.delete(id);
      this.#keys.set(id, p);
      return p;
    }
    p = load();
    this.#keys.set(id, p);
    p.catch(() => {
      if (this.#keys.get(id) === p) this.#keys.delete(id);
    });
    if (this.#keys.size > this.#max) {
      const oldest = this.#keys.keys().next();
      if (!oldest.done) this.#keys.delete(oldest.value);
    }
    return p;
  }

  /** How many keys are cached. */
  get size(): number {
    return this.#keys.size;
  }
}

/** Prepared keys (of any kind, made synchronously) by key bytes, at most `max` of them. */
export class SyncKeyCache<T> {
  readonly #max: number;
  readonly #id: (key: Uint8Array) => Uint8Array;
  readonly #keys = new Map<string, T>();

  /**
   * Makes an empty cache.
   *
   * @param max The most keys kept.
   * @param id Maps key bytes to the bytes that identify them (e.g. a digest of a secret).
   */
  constructor(max: number, id: (key: Uint8Array) => Uint8Array) {
    this.#max = max;
    this.#id = id;
  }

  /**
   * The prepared key for these bytes, preparing it on a miss. A `load` that
   * throws caches nothing and throws on.
   *
   * @param bytes The raw key bytes.
   * @param load Prepares the key.
   * @returns The prepared key.
   */
  get(bytes: Uint8Array, load: () => T): T {
    const id = hex(this.#id(bytes));
    const hit = this.#keys.get(id);
    if (hit !== undefined) {
      this.#keys.delete(id);
      this.#keys.set(id, hit);
      return hit;
    }
    const k = load();
    this.#keys.set(id, k);
    if (this.#keys.size > this.#max) {
      const oldest = this.#keys.keys().next();
      if (!oldest.done) this.#keys.delete(oldest.value);
    }
    return k;
  }

  /** How many keys are cached. */
  get size(): number {
    return this.#keys.size;
  }
}
