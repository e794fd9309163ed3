/**
 * Checkpoints of the SQLite relay log's write-ahead log, off the event loop.
 * SQLite copies the WAL into the database file (and fsyncs both) inside the
 * commit that crosses `wal_autocheckpoint` pages: with 1 KiB entries, one
 * append in about 170 took 4–8 ms instead of 0.05 (`.ci/tmp`-style loop of
 * 10,000 awaited appends: p99.9 5.6 ms), and every publish, ack and delivery
 * waiting behind it on the relay's event loop waited too. Here a worker
 * thread with its own connection runs `wal_checkpoint(PASSIVE)`, which waits
 * for no reader or writer, once every {@linkcode CHECKPOINT_APPENDS} appends;
 * the relay's own connection keeps a far larger `wal_autocheckpoint` only as a
 * backstop should the worker fall behind or fail. The worker starts on the
 * first checkpoint, so a relay that stores little never starts it.
 *
 * @module
 */
import { logLine } from "../../runtime/env.ts";

/** Appends between two checkpoints asked of the worker (about 600 WAL pages of 1 KiB entries). */
export const CHECKPOINT_APPENDS = 100;
/** The relay's own connection checkpoints only past this many WAL pages (40 MiB). */
export const BACKSTOP_PAGES = 10_000;

type _Worker = import("node:worker_threads").Worker;

/** Asks a worker thread for checkpoints of one database file. */
export class Checkpointer {
  #path: string;
  #synchronous: "NORMAL" | "FULL";
  #worker: Promise<_Worker | undefined> | undefined;
  #since = 0;
  #busy = false;
  #done = 0;
  #closed = false;

  /**
   * @param path The database file (not `:memory:`).
   * @param synchronous The log's `synchronous` setting, which the checkpoint's fsyncs follow.
   */
  constructor(path: string, synchronous: "NORMAL" | "FULL") {
    this.#path = path;
    this.#synchronous = synchronous;
  }

  /** How many checkpoints the worker has finished (for tests). */
  get checkpoints(): number {
    return this.#done;
  }

  /**
   * Counts appends just committed; every {@linkcode CHECKPOINT_APPENDS}, asks for a checkpoint.
   *
   * @param n How many.
   */
  appended(n: number): void {
    this.#since += n;
    if (this.#since < CHECKPOINT_APPENDS || this.#busy || this.#closed) return;
    this.#since = 0;
    this.#busy = true;
    void this.#start().then((w) => {
      if (w) w.postMessage("checkpoint");
      else this.#busy = false;
    });
  }

  #start(): Promise<_Worker | undefined> {
    this.#worker ??= (async () => {
      try {
        const { Worker } = await import("node:worker_threads");
        const w = new Worker(new URL("./_checkpoint_worker.ts", import.meta.url), {
          workerData: { path: this.#path, synchronous: this.#synchronous },
        });
        w.unref();
        w.on("message", (m: string) => {
          if (m === "done") this.#done++;
          else if (m.startsWith("error")) logLine(`skytale relay: WAL checkpoint failed: ${m}`);
          if (m !== "ready") this.#busy = false;
        });
        w.on("error", (e) => {
          logLine(`skytale relay: the WAL checkpoint thread failed: ${String(e)}`);
          this.#busy = true; // no more asks: the backstop checkpoints from here on
        });
        return w;
      } catch (e) {
        logLine(`skytale relay: cannot start the WAL checkpoint thread: ${String(e)}`);
        return undefined;
      }
    })();
    return this.#worker;
  }

  /**
   * Stops the worker (after the checkpoint under way, if any) and closes its connection.
   *
   * @returns When it is gone.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const w = await this.#worker;
    if (!w) return;
    // After the checkpoint under way, if any: the worker answers in order, then closes its db.
    const closed = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      w.on("message", (m: string) => {
        if (m === "closed") {
          clearTimeout(timer);
          resolve();
        }
      });
      w.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    w.postMessage("close");
    await closed;
    await w.terminate();
  }
}
