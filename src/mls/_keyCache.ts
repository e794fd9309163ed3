/**
 * Bounded caches of prepared keys, keyed by the key bytes (or a digest of
 * them), least recently used first out: {@linkcode SyncKeyCache} for keys
 * prepared synchronously, {@linkcode KeyCache} for WebCrypto imports, which
 * holds the import promise, so concurrent first uses import once.
 *
 * @module
 */

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
   * @param load Prepares the key; it may keep `forget` to drop the key later
   *   (not while it runs), e.g. once an import it started fails.
   * @returns The prepared key.
   */
  get(bytes: Uint8Array, load: (forget: () => void) => T): T {
    const id = this.#id(bytes).toHex();
    const hit = this.#keys.get(id);
    if (hit !== undefined) {
      this.#keys.delete(id);
      this.#keys.set(id, hit);
      return hit;
    }
    const k: T = load(() => {
      if (this.#keys.get(id) === k) this.#keys.delete(id);
    });
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

/** Imported keys by key bytes, at most `max` of them; a failed import is not kept. */
export class KeyCache {
  readonly #keys: SyncKeyCache<Promise<CryptoKey>>;

  /**
   * Makes an empty cache.
   *
   * @param max The most keys kept.
   * @param id Maps key bytes to the bytes that identify them (e.g. a digest of a secret).
   */
  constructor(max: number, id: (key: Uint8Array) => Uint8Array) {
    this.#keys = new SyncKeyCache(max, id);
  }

  /**
   * The imported key for these bytes, importing it on a miss.
   *
   * @param bytes The raw key bytes.
   * @param load Imports the key.
   * @returns The imported key.
   */
  get(bytes: Uint8Array, load: () => Promise<CryptoKey>): Promise<CryptoKey> {
    return this.#keys.get(bytes, (forget) => {
      const p = load();
      p.catch(forget);
      return p;
    });
  }

  /** How many keys are cached. */
  get size(): number {
    return this.#keys.size;
  }
}
