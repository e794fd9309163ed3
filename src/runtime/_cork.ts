/**
 * Batching a connection's sends per turn of the event loop: the first message
 * of a turn is written at once, as without batching (a lone message waits for
 * nothing, not even a microtask); if more follow in the same turn (a batch of
 * acks after one log commit, the deliveries of a fan-out, a burst of
 * publishes answered in one read), the socket is corked after the first and
 * uncorked by a microtask once the turn's synchronous work is done, so they
 * leave in one `writev` instead of one system call each.
 *
 * @module
 */

/** What a Node stream offers for batching writes. */
export interface Corkable {
  /** Holds writes in memory. */
  cork(): void;
  /** Writes what was held, in one call where it can. */
  uncork(): void;
}

/**
 * Wraps a send function so that the sends of one turn after the first are
 * corked together.
 *
 * @param socket The underlying stream, or a function giving it (`undefined`: no batching yet).
 * @param send Sends one message.
 * @returns The batched send.
 */
export function batchPerTurn<T>(
  socket: () => Corkable | undefined,
  send: (data: T) => void,
): (data: T) => void {
  let inTurn = false;
  let corked: Corkable | undefined;
  const endTurn = () => {
    inTurn = false;
    const c = corked;
    corked = undefined;
    c?.uncork();
  };
  return (data) => {
    if (!inTurn) {
      inTurn = true;
      queueMicrotask(endTurn);
    } else if (!corked) {
      corked = socket();
      corked?.cork();
    }
    send(data);
  };
}
