/**
 * A tiny FIFO mutex: serialises every change to one channel's live state.
 *
 * @module
 */

/** Runs async sections one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  /**
   * Runs `fn` once every earlier section has finished.
   *
   * @param fn The critical section.
   * @returns What `fn` returns.
   */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}
