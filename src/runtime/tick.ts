/**
 * Running a callback once the I/O that is ready now has been handled: the
 * relay's SQLite log collects the appends that arrive meanwhile (from every
 * connection) and writes them in one transaction.
 *
 * `setImmediate` does this on Node, Deno and Bun (a few µs when idle, after
 * the I/O callbacks of the current loop turn); `setTimeout(fn, 0)` would cost
 * about a millisecond per call on each of them. Where neither
 * `setImmediate` nor `MessageChannel` exists, `setTimeout` it is.
 *
 * @module
 */

type _Immediate = (fn: () => void) => unknown;

const _setImmediate = (globalThis as { setImmediate?: _Immediate }).setImmediate;

function _viaMessageChannel(): _Immediate {
  const ch = new MessageChannel();
  let queue: (() => void)[] = [];
  ch.port1.onmessage = () => {
    const q = queue;
    queue = [];
    for (const fn of q) fn();
  };
  // Bun and browsers keep the process alive while a port listens; unref where possible.
  (ch.port1 as { unref?: () => void }).unref?.();
  return (fn) => {
    queue.push(fn);
    if (queue.length === 1) ch.port2.postMessage(0);
  };
}

const _schedule: _Immediate = typeof _setImmediate === "function"
  ? (fn) => _setImmediate(fn)
  : typeof MessageChannel === "function"
  ? _viaMessageChannel()
  : (fn) => setTimeout(fn, 0);

/**
 * Calls `fn` soon, after the I/O callbacks that are ready now.
 *
 * @example
 * ```ts
 * import { afterIo } from "./tick.ts";
 * await new Promise<void>((resolve) => afterIo(resolve));
 * ```
 *
 * @param fn The callback.
 */
export function afterIo(fn: () => void): void {
  _schedule(fn);
}
