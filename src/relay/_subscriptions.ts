/**
 * Subscriptions of a relay client: each channel's cursor (the next seq
 * expected), its queue of delivered entries, and the loop that hands them to
 * the handler strictly in seq order, each once, one call at a time.
 *
 * @module
 */
import type { LogEntry } from "./log/types.ts";
import type { FrameOf, SubscribeFrom } from "./protocol.ts";
import { RelayError } from "../errors.ts";

/** A FIFO whose `shift` is O(1): the entries delivered but not yet handled. */
export class Queue<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(v: T): void {
    this.#items.push(v);
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const v = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return v;
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/** One subscription: where it is, its handler and the entries waiting for it. */
export interface Sub {
  channel: string;
  from: SubscribeFrom;
  onEntry: (e: LogEntry) => void | Promise<void>;
  /** Set by `RelayClient.subscribeBatch`: called with every entry queued so far. */
  onBatch: ((es: LogEntry[]) => void | Promise<void>) | undefined;
  /** The next seq expected from the relay; undefined until the first `subscribed`. */
  next: number | undefined;
  queue: Queue<LogEntry>;
  running: boolean;
  active: boolean;
  /** The request id of an unanswered subscribe for this channel. */
  pendingReq: number | undefined;
}

/**
 * A new, active subscription with nothing delivered yet.
 *
 * @param channel The channel name.
 * @param from Where it starts.
 * @param onEntry The entry handler.
 * @param onBatch The burst handler, if it takes bursts.
 * @returns The subscription.
 */
export function newSub(
  channel: string,
  from: SubscribeFrom,
  onEntry: Sub["onEntry"],
  onBatch: Sub["onBatch"],
): Sub {
  return {
    channel,
    from,
    onEntry,
    onBatch,
    next: undefined,
    queue: new Queue(),
    running: false,
    active: true,
    pendingReq: undefined,
  };
}

/** Stops a subscription: entries not yet handed over are dropped. */
export function stopSub(sub: Sub): void {
  sub.active = false;
  sub.queue.clear();
}

/**
 * Queues a delivered entry for its subscription and starts the handler if it
 * is idle. Entries before the cursor (a re-send after a reconnect) are
 * dropped; a gap (retention deleted entries) is reported to `onError`.
 *
 * @param sub The channel's subscription, if any.
 * @param f The frame.
 * @param onError Told about gaps and handler errors.
 */
export function deliverTo(
  sub: Sub | undefined,
  f: FrameOf<"deliver">,
  onError: (e: unknown) => void,
): void {
  if (!sub || !sub.active || sub.next === undefined || f.seq < sub.next) return;
  if (f.seq > sub.next) {
    // The relay sends each channel in seq order; it skips only seqs its retention deleted.
    const range = `${sub.next}-${f.seq - 1}`;
    onError(
      new RelayError(
        "limit",
        `Entries ${range} of channel "${f.channel}" were deleted by the relay's retention`,
      ),
    );
  }
  sub.next = f.seq + 1;
  sub.queue.push({
    seq: f.seq,
    epoch: f.epoch,
    kind: f.kind,
    id: f.id,
    time: f.time,
    payload: f.payload,
  });
  if (!sub.running) void _drain(sub, onError);
}

async function _drain(sub: Sub, onError: (e: unknown) => void): Promise<void> {
  sub.running = true;
  try {
    while (sub.active) {
      const e = sub.queue.shift();
      if (!e) break;
      try {
        if (sub.onBatch) {
          const es = [e];
          for (let x = sub.queue.shift(); x; x = sub.queue.shift()) es.push(x);
          await sub.onBatch(es);
        } else await sub.onEntry(e);
      } catch (err) {
        onError(err);
      }
    }
  } finally {
    sub.running = false;
  }
}
