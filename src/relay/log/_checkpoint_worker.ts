/**
 * The worker thread of `_checkpointer.ts`: its own connection to the relay
 * log's database, which copies the write-ahead log into the database file
 * (`PRAGMA wal_checkpoint(PASSIVE)`, with its fsyncs) whenever the relay asks,
 * so the relay's event loop never does it inside a commit.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { DatabaseSync } from "node:sqlite";

const { path, synchronous } = workerData as { path: string; synchronous: "NORMAL" | "FULL" };
const db = new DatabaseSync(path);
db.exec("PRAGMA busy_timeout = 5000");
db.exec(`PRAGMA synchronous = ${synchronous === "FULL" ? "FULL" : "NORMAL"}`);
const port = parentPort!;
port.on("message", (m: string) => {
  if (m === "close") {
    db.close();
    port.postMessage("closed"); // then the relay terminates this thread
    return;
  }
  let error: string | undefined;
  try {
    db.exec("PRAGMA wal_checkpoint(PASSIVE)");
  } catch (e) {
    error = String(e);
  }
  port.postMessage(error === undefined ? "done" : `error: ${error}`);
});
port.postMessage("ready");
