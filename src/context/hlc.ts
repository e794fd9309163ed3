/**
 * Hybrid logical clocks (Kulkarni et al., 2014): a timestamp is the wall
 * time in ms, a counter for events within one ms (or while the wall clock
 * lags a time already seen) and the node that made it, so timestamps are
 * unique, totally ordered, and never go backwards on a node even when its
 * clock does. The shared context's registers keep the version with the
 * greatest timestamp.
 *
 * @module
 */

/** A timestamp: wall time (ms), counter, node (a did). */
export interface Hlc {
  /** Wall-clock milliseconds. */
  t: number;
  /** Counter within `t`. */
  c: number;
  /** The node that made it (its did), the last tie-breaker. */
  n: string;
}

/** How far ahead of the local clock a remote timestamp may pull this clock. */
export const MAX_DRIFT_MS = 60_000;

/**
 * Orders two timestamps: time, then counter, then node.
 *
 * @param a One timestamp.
 * @param b The other.
 * @returns Negative, zero or positive as `a` is before, equal to or after `b`.
 */
export function compareHlc(a: Hlc, b: Hlc): number {
  if (a.t !== b.t) return a.t - b.t;
  if (a.c !== b.c) return a.c - b.c;
  return a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
}

/** One node's clock. */
export class HlcClock {
  #node: string;
  #t = 0;
  #c = 0;

  /**
   * @param node This node's id.
   * @param last The greatest time it issued or saw before (from storage).
   */
  constructor(node: string, last?: { t: number; c: number }) {
    this.#node = node;
    if (last) {
      this.#t = last.t;
      this.#c = last.c;
    }
  }

  /** The state to persist: the greatest time issued or seen. */
  get last(): { t: number; c: number } {
    return { t: this.#t, c: this.#c };
  }

  /**
   * A new timestamp, greater than every one issued or observed.
   *
   * @returns The timestamp.
   */
  now(): Hlc {
    const wall = Date.now();
    if (wall > this.#t) {
      this.#t = wall;
      this.#c = 0;
    } else this.#c++;
    return { t: this.#t, c: this.#c, n: this.#node };
  }

  /**
   * Moves this clock past a remote timestamp, so that what this node writes
   * next orders after what it has seen. A timestamp far ahead of the wall
   * clock (a skewed or hostile member) pulls it at most `MAX_DRIFT_MS` ahead.
   *
   * @param h The remote timestamp.
   */
  observe(h: Hlc): void {
    const t = Math.min(h.t, Date.now() + MAX_DRIFT_MS);
    if (t > this.#t) {
      this.#t = t;
      this.#c = t === h.t ? h.c : 0;
    } else if (t === this.#t && h.c > this.#c) this.#c = h.c;
  }
}
