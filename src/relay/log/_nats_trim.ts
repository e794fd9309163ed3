/**
 * Retention of {@linkcode NatsLog}: deletes non-commit entries (JetStream
 * message deletes, so stream seqs never move), by count within each append
 * and by age in a periodic pass over every channel stream. Each relay walks a
 * channel from where its last walk stopped; deletes are idempotent, so relays
 * sharing a channel may walk it at once.
 *
 * @module
 */
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { isNotFound } from "../_nats.ts";
import type { Retention } from "./types.ts";
import type { SerialQueue } from "../_serial.ts";
import { entryOf } from "./_nats_layout.ts";

/** What {@linkcode NatsRetention} works on. */
export interface NatsRetentionOptions {
  jsm: JetStreamManager;
  /** The subject prefix. */
  prefix: string;
  retention: Retention | undefined;
  /** Runs one walk per channel at a time. */
  serial: SerialQueue;
  /** The first stored message of a channel stream at or after a stream seq. */
  next(h: string, streamSeq: number): Promise<StoredMsg | null>;
  /** Whether the log closed. */
  closed(): boolean;
}

/** Retention walks over channel streams. */
export class NatsRetention {
  readonly #o: NatsRetentionOptions;
  readonly #P: string;
  /** Stream → the stream seq where the next retention walk starts. */
  readonly #trimFrom = new Map<string, number>();
  #lastAgePass = -Infinity;

  /**
   * Creates it.
   *
   * @param o The streams, retention and helpers.
   */
  constructor(o: NatsRetentionOptions) {
    this.#o = o;
    this.#P = o.prefix.toUpperCase();
  }

  /**
   * Trims a channel to its newest entries, after any walk already running on it.
   *
   * @param h The channel's hash.
   * @param upToSeq Read when the walk starts: delete non-commits up to this seq.
   * @returns How many were deleted.
   */
  countTrim(h: string, upToSeq: () => number): Promise<number> {
    return this.#o.serial.run(`trim:${h}`, async () => {
      if (this.#o.closed()) return 0;
      return await this.#trimStream(h, upToSeq(), -Infinity);
    });
  }

  /**
   * Deletes a channel's non-commit entries with seq <= `upToSeq` or time before
   * `before`, walking from where the last walk stopped to the first entry it keeps.
   */
  async #trimStream(h: string, upToSeq: number, before: number): Promise<number> {
    const stream = `${this.#P}_CH_${h}`;
    let from = this.#trimFrom.get(stream) ?? 2; // stream seq 1 is the creation marker
    let n = 0;
    try {
      for (;;) {
        const m = await this.#o.next(h, from);
        if (!m) break;
        const e = entryOf(m.header, m.data);
        if (e && e.kind !== "commit" && e.kind !== "genesis") {
          if (e.seq > upToSeq && e.time >= before) break;
          try {
            if (await this.#o.jsm.streams.deleteMessage(stream, m.seq, false)) n++;
          } catch (err) {
            if (!isNotFound(err)) throw err; // another relay deleted it first
          }
        }
        from = m.seq + 1;
      }
    } finally {
      this.#trimFrom.set(stream, from);
    }
    return n;
  }

  /**
   * Applies retention to every channel: by age (and by count, for channels
   * other relays appended to). Since a pass walks every channel stream, it
   * runs once per tenth of the age limit, and at least once a minute.
   *
   * @param now Now, ms since the Unix epoch.
   * @returns How many entries this relay deleted.
   */
  async pass(now: number): Promise<number> {
    const { maxAgeMs, maxCount } = this.#o.retention ?? {};
    if (maxAgeMs === undefined && maxCount === undefined) return 0;
    if (now - this.#lastAgePass < Math.min(60_000, (maxAgeMs ?? 600_000) / 10)) return 0;
    this.#lastAgePass = now;
    const prefix = `${this.#P}_CH_`;
    let n = 0;
    for await (const si of this.#o.jsm.streams.list(`${this.#o.prefix}.ch.>`)) {
      const name = si.config.name;
      if (!name.startsWith(prefix) || this.#o.closed()) continue;
      const h = name.slice(prefix.length);
      const upTo = maxCount === undefined ? 0 : si.state.last_seq - 1 - maxCount;
      const before = maxAgeMs === undefined ? -Infinity : now - maxAgeMs;
      n += await this.#o.serial.run(`trim:${h}`, () => this.#trimStream(h, upTo, before));
    }
    return n;
  }
}
