// Fault: a subscriber that reads nothing for a while (its TCP window fills)
// while a publisher keeps going. The relay's memory must stay bounded (it
// falls back to reading the log instead of queueing), and the subscriber
// must then get every entry once, in order.
import path from "node:path";
import { RawConn, TcpSubscriber } from "./_raw.ts";
import { freePort, type Outcome, RelayProc, Report, rssBytes, sleep, tempDir } from "./_harness.ts";

/** Options of {@linkcode slowSubscriber}. */
export interface SlowSubscriberOptions {
  /** How long the subscriber reads nothing, s. */
  pauseSeconds: number;
  /** Payload bytes per entry. */
  payloadBytes?: number;
}

/** Runs the scenario. */
export async function slowSubscriber(o: SlowSubscriberOptions): Promise<Outcome> {
  const r = new Report("slow subscriber");
  const root = await tempDir("skytale-faults-slow-");
  const relay = new RelayProc(await freePort(), path.join(root, "relay"));
  await relay.start();
  const channel = "faults/slow/reader";
  const pub = await RawConn.open(relay.url);
  await pub.request({ type: "create", reqId: 0, channel });
  const sub = await TcpSubscriber.open(relay.port, channel);
  const seqs = sub.seqs;
  await sleep(500);
  const base = await rssBytes(relay.pid);
  sub.pause();
  const size = o.payloadBytes ?? 4096;
  let published = 0;
  let peak = base;
  const until = Date.now() + o.pauseSeconds * 1000;
  const sampler = setInterval(async () => {
    peak = Math.max(peak, await rssBytes(relay.pid));
  }, 250);
  while (Date.now() < until) {
    const batch = [];
    for (let i = 0; i < 64; i++) {
      batch.push(pub.request({
        type: "publish",
        reqId: 0,
        channel,
        id: crypto.getRandomValues(new Uint8Array(16)),
        kind: "application",
        epoch: 0,
        payload: crypto.getRandomValues(new Uint8Array(size)),
      }));
    }
    for (const a of await Promise.all(batch)) if (a.type === "ack") published++;
    await sleep(5);
  }
  const pausedPeak = peak;
  sub.resume();
  const end = Date.now() + 120_000;
  while (seqs.length < published && Date.now() < end) await sleep(100);
  clearInterval(sampler);
  const inOrder = seqs.every((s, i) => s === i + 1);
  const mb = (n: number) => Math.round(n / 1048576 * 10) / 10;
  const growth = pausedPeak - base;
  const publishedBytes = published * size;
  r.fig("subscriber paused, s", o.pauseSeconds);
  r.fig("entries published meanwhile", published);
  r.fig("payload bytes published meanwhile, MiB", mb(publishedBytes));
  r.fig("relay RSS before, MiB", mb(base));
  r.fig("relay RSS peak while paused, MiB", mb(pausedPeak));
  // Bounded: growth well under what was published (a queue would hold it all).
  r.fig(
    "relay RSS growth / bytes published",
    `${Math.round(growth / publishedBytes * 100)} %`,
    growth < Math.max(64 * 1048576, publishedBytes / 2),
  );
  r.fig("entries the subscriber got after resuming", seqs.length, seqs.length === published);
  r.fig("each once, in seq order", inOrder ? "yes" : "no", inOrder);
  pub.close();
  sub.close();
  // SIGKILL: under Bun a relay that was stalled by this client may ignore SIGTERM.
  await relay.kill("SIGKILL");
  return r.done();
}
