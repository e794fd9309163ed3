/**
 * A per-key queue: operations on one key (a channel, a mailbox) run one at a
 * time in call order, those on different keys at once. The commit gate and
 * the NATS log use it.
 *
 * @module
 */

/** Runs operations one at a time per key, in call order (a failed one does not stop the next). */
export class SerialQueue {
  readonly #tails = new Map<string, Promise<unknown>>();

  /**
   * Runs `fn` after every earlier call for the same key.
   *
   * @param key What the calls share (a channel, a mailbox).
   * @param fn The operation.
   * @returns What `fn` returns.
   */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => {});
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return next;
  }
}
