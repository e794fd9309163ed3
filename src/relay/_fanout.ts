/**
 * Fan-out: the relay server's subscriptions per channel, and how entries
 * reach them. Each subscription has a cursor (`next` seq): while it is behind
 * it is fed from the log in batches ("pumping"); once caught up it is "live"
 * and new entries are pushed as they are appended. A live subscriber that
 * falls behind (a gap, or a full send buffer) drops back to pumping, so
 * nothing is missed, nothing is sent twice, and a slow reader costs log reads
 * rather than relay memory. With a shared log (`watch`), appends made by
 * other relays are fanned out here too; with `batchMs`, deliveries are held
 * and released per channel in batches.
 *
 * @module
 */
import { sleep } from "../_util.ts";
import type { LogEntry } from "./log/types.ts";
import { encodeFrame } from "./protocol.ts";
import { type Conn, errorCode, type RelayContext, type Sub } from "./_conn.ts";

const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const PUMP_BATCH = 64;

/** The subscriptions of one relay server and their delivery. */
export class FanOut {
  readonly #ctx: RelayContext;
  readonly #batchMs: number;
  /** Entries held for the next batch (with `batchMs`), per channel, and the flush timers. */
  readonly #held = new Map<string, { entries: LogEntry[]; timer: ReturnType<typeof setTimeout> }>();
  readonly #subs = new Map<string, Set<Sub>>();
  readonly #heads = new Map<string, number>();
  /** Channels watched in a shared log (cluster fan-out) → how to stop. */
  readonly #watches = new Map<string, Promise<(() => void) | undefined>>();

  /**
   * Creates it.
   *
   * @param ctx The log and how to answer.
   * @param batchMs Hold deliveries for up to this many ms (0: at once).
   */
  constructor(ctx: RelayContext, batchMs: number) {
    this.#ctx = ctx;
    this.#batchMs = batchMs;
  }

  /** Channels with a subscriber here. */
  get channels(): number {
    return this.#subs.size;
  }

  /** Subscriptions, all channels together. */
  get subscriptions(): number {
    let n = 0;
    for (const s of this.#subs.values()) n += s.size;
    return n;
  }

  /**
   * The highest seq known appended to a channel.
   *
   * @param channel The channel.
   * @returns The head (0 when none is known).
   */
  head(channel: string): number {
    return this.#heads.get(channel) ?? 0;
  }

  /**
   * Watches a channel in a shared log (if the log can), before its head is
   * read, so nothing appended elsewhere falls between.
   *
   * @param channel The channel.
   */
  async watch(channel: string): Promise<void> {
    const log = this.#ctx.log;
    if (log.watch && !this.#watches.has(channel)) {
      const w = log.watch(channel, (e) => this.fanOut(channel, e)).catch((e) => {
        this.#watches.delete(channel);
        throw e;
      });
      this.#watches.set(channel, w);
    }
    await this.#watches.get(channel);
  }

  /**
   * Stops watching a channel nobody here subscribes to (after a failed subscribe).
   *
   * @param channel The channel.
   */
  unwatchIfUnused(channel: string): void {
    if (!this.#subs.has(channel)) this.#unwatch(channel);
  }

  #unwatch(channel: string): void {
    const w = this.#watches.get(channel);
    this.#watches.delete(channel);
    void w?.then((stop) => stop?.());
  }

  /**
   * Subscribes a connection to a channel from `fromSeq` (replacing an older
   * subscription of it) and starts feeding it.
   *
   * @param c The connection.
   * @param channel The channel.
   * @param fromSeq The first seq to deliver.
   * @param head The channel's head as read from the log.
   * @param answer Sends the `subscribed` answer, before the first delivery.
   */
  add(c: Conn, channel: string, fromSeq: number, head: number, answer: () => void): void {
    const old = c.subs.get(channel);
    if (old) this.drop(old);
    this.#heads.set(channel, Math.max(this.head(channel), head));
    const s: Sub = { conn: c, channel, next: fromSeq, live: false, pumping: false, closed: false };
    c.subs.set(channel, s);
    let set = this.#subs.get(channel);
    if (!set) this.#subs.set(channel, set = new Set());
    set.add(s);
    answer();
    void this.#pump(s);
  }

  /**
   * Ends a subscription; the last one of a channel stops its watch.
   *
   * @param s The subscription.
   */
  drop(s: Sub): void {
    s.closed = true;
    const set = this.#subs.get(s.channel);
    if (set) {
      set.delete(s);
      if (set.size === 0) {
        this.#subs.delete(s.channel);
        this.#unwatch(s.channel);
      }
    }
  }

  /** Stops every watch and held batch. */
  close(): void {
    for (const w of this.#watches.values()) void w.then((stop) => stop?.(), () => {});
    this.#watches.clear();
    for (const h of this.#held.values()) clearTimeout(h.timer);
    this.#held.clear();
  }

  async #pump(s: Sub): Promise<void> {
    if (s.pumping) return;
    s.pumping = true;
    s.live = false;
    try {
      await this.#feed(s);
    } catch (e) {
      if (!s.closed) {
        this.#ctx.logger("error", "reading a channel failed", {
          channel: s.channel,
          error: String(e),
        });
        this.#ctx.error(s.conn, 0, errorCode(e), `Cannot read channel "${s.channel}"`);
        this.drop(s);
        s.conn.subs.delete(s.channel);
      }
    } finally {
      s.pumping = false;
    }
  }

  /** Feeds a subscription from the log until it is caught up (then live) or closed. */
  async #feed(s: Sub): Promise<void> {
    let misses = 0;
    while (!s.closed) {
      if (s.conn.ws.bufferedAmount > HIGH_WATER_BYTES) {
        await sleep(10);
        continue;
      }
      if (s.next > this.head(s.channel)) {
        s.live = true;
        return;
      }
      const batch = await this.#ctx.log.read(s.channel, s.next, PUMP_BATCH);
      if (s.closed) return;
      if (batch.length === 0) {
        // The head says there is more, the log has nothing yet: in a shared log another
        // relay's append can be announced before it is readable. Look again shortly; after
        // that (or if retention deleted everything up to the head) go live, and the next
        // append pumps from here again.
        if (++misses <= 50) {
          await sleep(20);
          continue;
        }
        s.live = true;
        return;
      }
      misses = 0;
      const head = this.head(s.channel);
      for (const e of batch) {
        if (e.seq < s.next) continue;
        if (this.#batchMs > 0 && e.seq > head) break; // held for the next batch
        // A seq above s.next means retention deleted the ones between: skip them.
        this.#deliver(s, e);
        if (s.conn.ws.bufferedAmount > HIGH_WATER_BYTES) break;
      }
    }
  }

  #deliver(s: Sub, e: LogEntry, bytes?: Uint8Array): Uint8Array {
    const b = bytes ?? encodeFrame({ type: "deliver", channel: s.channel, ...e });
    const m = this.#ctx.metrics;
    m.framesOut++;
    m.bytesOut += b.length;
    s.conn.ws.send(b);
    s.next = e.seq + 1;
    m.delivered++;
    return b;
  }

  /**
   * Delivers a new entry to the channel's live subscribers (or holds it for
   * the next batch); a subscriber behind it pumps instead.
   *
   * @param channel The channel.
   * @param e The entry.
   * @param now Deliver now even with `batchMs` (a released batch).
   */
  fanOut(channel: string, e: LogEntry, now = false): void {
    if (this.#batchMs > 0 && !now) return this.#hold(channel, e);
    this.#heads.set(channel, Math.max(this.head(channel), e.seq));
    const set = this.#subs.get(channel);
    if (!set) return;
    let bytes: Uint8Array | undefined;
    for (const s of set) {
      if (!s.live || e.seq < s.next) continue;
      if (e.seq > s.next || s.conn.ws.bufferedAmount > HIGH_WATER_BYTES) {
        void this.#pump(s);
        continue;
      }
      bytes = this.#deliver(s, e, bytes);
    }
  }

  /** Held: the head (which bounds what catching-up subscribers read) moves when released. */
  #hold(channel: string, e: LogEntry): void {
    let held = this.#held.get(channel);
    if (!held) {
      const entries: LogEntry[] = [];
      held = {
        entries,
        timer: setTimeout(() => {
          this.#held.delete(channel);
          for (const x of entries) this.fanOut(channel, x, true);
        }, this.#batchMs),
      };
      this.#held.set(channel, held);
    }
    held.entries.push(e);
  }
}
