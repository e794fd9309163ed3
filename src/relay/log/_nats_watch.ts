/**
 * One watch of a channel stream for {@linkcode NatsLog.watch}: an ordered
 * (pull) consumer that hands on, in order, what JetStream stored after a
 * given stream seq, and a watchdog that replaces the consumer when it goes
 * silent or stays behind the stream.
 *
 * @module
 */
import type {
  Consumer,
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
} from "@nats-io/jetstream";
import { backoff, sleep } from "../../_util.ts";
import { directGet } from "../_nats.ts";

/** How long a watch's pull lasts; heartbeats come twice as often. */
export const WATCH_PULL_MS = 4000;

/** What a {@linkcode StreamWatch} reads and where it hands messages. */
export interface StreamWatchOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** The channel's stream. */
  stream: string;
  /** The channel's subject. */
  subject: string;
  /** The consumer name prefix (`<PREFIX>_W_`). */
  namePrefix: string;
  /** The stream seq after which to start. */
  after: number;
  /** Called with each new message, in stream order. */
  onMessage(m: JsMsg): void;
  /** Whether the log closed (no more replacements then). */
  closed(): boolean;
}

interface _Consumer {
  msgs: ConsumerMessages;
  consumer: Consumer;
}

/**
 * A running watch of one channel stream.
 *
 * If the consumer falls behind or NATS reconnects, the library recreates it
 * from the last seq it delivered; if it goes silent (no message or heartbeat
 * for 1.5 pulls: an ordered consumer has one replica, lost with its NATS
 * node) or stays behind the stream over two checks 8 s apart, the watchdog
 * replaces it the same way. (The check is one direct get per quiet watched
 * channel every 8 s.)
 */
export class StreamWatch {
  readonly #o: StreamWatchOptions;
  /** Stream seq of the last message handed on: a replacement consumer starts after it. */
  #done: number;
  #stopped = false;
  #current: _Consumer | undefined;
  /** When the consumer last showed life (a message or a heartbeat, every WATCH_PULL_MS / 2). */
  #alive = Date.now();
  #replacing = false;
  /** For the stall check: `done` as the last check found it behind the stream, if it was. */
  #behindAt: number | undefined;
  #checking = false;
  /** Anything handed on since the last stall check. */
  #delivered = false;
  #tick = 0;
  #watchdog: ReturnType<typeof setInterval> | undefined;

  private constructor(o: StreamWatchOptions) {
    this.#o = o;
    this.#done = o.after;
  }

  /**
   * Starts a watch.
   *
   * @param o The stream, where to start and where messages go.
   * @returns The running watch.
   */
  static async start(o: StreamWatchOptions): Promise<StreamWatch> {
    const w = new StreamWatch(o);
    await w.#start();
    w.#watchdog = setInterval(() => void w.#check(), WATCH_PULL_MS / 2);
    return w;
  }

  /** Stops it (idempotent). */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    this.#drop(this.#current);
  }

  #drop(c: _Consumer | undefined): void {
    void c?.msgs.close().then(() => c.consumer.delete()).catch(() => {});
  }

  #onMessage(m: JsMsg): void {
    this.#alive = Date.now();
    if (this.#stopped || m.seq <= this.#done) return; // a replaced consumer's last words
    this.#done = m.seq;
    this.#delivered = true;
    this.#o.onMessage(m);
  }

  async #start(): Promise<void> {
    const consumer = await this.#o.js.consumers.get(this.#o.stream, {
      name_prefix: `${this.#o.namePrefix}${crypto.randomUUID().replaceAll("-", "")}`,
      opt_start_seq: this.#done + 1,
    });
    const msgs = await consumer.consume({
      expires: WATCH_PULL_MS,
      idle_heartbeat: WATCH_PULL_MS / 2,
      callback: (m) => this.#onMessage(m),
    });
    this.#current = { msgs, consumer };
    this.#alive = Date.now();
    void (async () => {
      for await (const st of msgs.status()) {
        if (st.type === "heartbeat") this.#alive = Date.now();
      }
    })().catch(() => {});
  }

  /**
   * The library recovers from reconnects, but a consumer lost with its NATS node (ordered
   * consumers have one replica) or a pull ended by a leader change (409) can leave it
   * silent for good: replace a silent consumer, from where it stopped.
   */
  async #replace(): Promise<void> {
    this.#replacing = true;
    this.#drop(this.#current);
    this.#current = undefined;
    try {
      for (let attempt = 0; !this.#stopped && !this.#o.closed(); attempt++) {
        try {
          return await this.#start();
        } catch {
          await sleep(backoff(attempt, 250, 5000));
        }
      }
    } finally {
      this.#replacing = false;
    }
  }

  async #check(): Promise<void> {
    if (this.#replacing || this.#checking || this.#stopped) return;
    if (Date.now() - this.#alive > WATCH_PULL_MS * 1.5) return void this.#replace();
    // Alive but stuck (a CI run after a NATS node died: no messages for 30 s although the
    // silence check above never fired): the stream has a message past `done` at two checks
    // in a row while `done` did not move.
    // Checked every 8 s, and only when nothing was handed on since the last check.
    if (++this.#tick % 4 !== 0) return;
    if (this.#delivered) {
      this.#delivered = false;
      this.#behindAt = undefined;
      return;
    }
    this.#checking = true;
    try {
      const m = await directGet(this.#o.jsm, this.#o.stream, { last_by_subj: this.#o.subject });
      const behind = m !== null && m.seq > this.#done;
      if (behind && this.#behindAt === this.#done) {
        this.#behindAt = undefined;
        void this.#replace();
      } else {
        this.#behindAt = behind ? this.#done : undefined;
      }
    } catch {
      // NATS unreachable: the library reconnects, the next check looks again
    } finally {
      this.#checking = false;
    }
  }
}
