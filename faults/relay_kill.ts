// Fault: the relay is SIGKILLed at random points while 3 senders push messages.
// After the last restart every receiver must hold every message exactly once,
// in each sender's order.
import path from "node:path";
import {
  type Agent,
  formChannel,
  freePort,
  type Outcome,
  RelayProc,
  Report,
  rng,
  sleep,
  startAgents,
  tempDir,
} from "./_harness.ts";

/** Options of {@linkcode relayKill}. */
export interface RelayKillOptions {
  /** Messages per sender. */
  messages: number;
  /** Concurrent sends in flight per sender. */
  window?: number;
  /** Mean time between kills, ms. */
  killEveryMs?: number;
  seed?: number;
}

/** Runs the scenario. */
export async function relayKill(o: RelayKillOptions): Promise<Outcome> {
  const r = new Report("relay SIGKILL under 3 senders");
  const rand = rng(o.seed ?? 1);
  const window = o.window ?? 16;
  const root = await tempDir("skytale-faults-relay-");
  const relay = new RelayProc(await freePort(), path.join(root, "relay"));
  await relay.start();
  const ids = ["s0", "s1", "s2", "rx"];
  const agents = await startAgents(ids, relay.url, root);
  const channel = "faults/relay/kill";
  await formChannel(agents, channel);
  const senders = agents.slice(0, 3);
  const rx = agents[3]!;
  let kills = 0;
  let sending = true;
  let cycle: Promise<void> = Promise.resolve();
  const killOnce = () =>
    cycle = cycle.then(async () => {
      await relay.kill("SIGKILL");
      kills++;
      await sleep(50 + 300 * rand());
      await relay.start();
    });
  // The first kill comes at a random point of the stream, so even a short run
  // has one; then one every killEveryMs × (0.3…1.7).
  const firstKillAt = Math.floor(o.messages * (0.1 + 0.5 * rand()));
  const killer = (async () => {
    const mean = o.killEveryMs ?? 3000;
    while (sending) {
      await sleep(mean * (0.3 + 1.4 * rand()));
      if (!sending) break;
      await killOnce();
    }
  })();
  const t0 = Date.now();
  const failures: string[] = [];
  await Promise.all(senders.map(async (a) => {
    let next = 0;
    const worker = async () => {
      while (next < o.messages) {
        const i = next++;
        if (i === firstKillAt && a === senders[0]) void killOnce();
        try {
          await a.call("send", channel, `${a.identity}:${i}`);
        } catch (e) {
          failures.push(`${a.identity}:${i} ${(e as Error).message.split("\n")[0]}`);
        }
      }
    };
    await Promise.all(Array.from({ length: window }, worker));
  }));
  const sendSeconds = (Date.now() - t0) / 1000;
  sending = false;
  await killer;
  await cycle;
  // Every receiver: rx gets all 3N; each sender gets the other two senders' 2N.
  const want = 3 * o.messages;
  const got = new Map<Agent, { sender: string; seq: number; text: string }[]>();
  await Promise.all(agents.map(async (a) => {
    const n = a === rx ? want : 2 * o.messages;
    got.set(a, await a.receiveN(channel, n, Math.max(60_000, want * 10)));
  }));
  let dups = 0;
  let missing = 0;
  let outOfOrder = 0;
  let wrongSender = 0;
  for (const a of agents) {
    const msgs = got.get(a)!;
    const seen = new Set<string>();
    const last = new Map<string, number>();
    for (const m of msgs) {
      if (seen.has(m.text)) dups++;
      seen.add(m.text);
      const [who, idx] = m.text.split(":");
      if (who !== m.sender) wrongSender++;
      const n = Number(idx);
      if ((last.get(m.sender) ?? -1) >= n) outOfOrder++;
      last.set(m.sender, n);
    }
    for (const s of senders) {
      if (s === a) continue;
      for (let i = 0; i < o.messages; i++) if (!seen.has(`${s.identity}:${i}`)) missing++;
    }
  }
  const skipped = agents.reduce((n, a) => n + (a.proc.stderr().match(/skipped/g)?.length ?? 0), 0);
  r.fig("messages sent (3 senders)", want);
  r.fig("relay SIGKILLs during the run", kills, kills > 0);
  r.fig("send() calls that failed", failures.length, failures.length === 0);
  r.fig("messages at rx", got.get(rx)!.length, got.get(rx)!.length === want);
  r.fig("missing (all receivers)", missing, missing === 0);
  r.fig("duplicates (all receivers)", dups, dups === 0);
  r.fig("out of per-sender order", outOfOrder, outOfOrder === 0);
  r.fig("sender mismatch", wrongSender, wrongSender === 0);
  r.fig("entries skipped by a receiver", skipped, skipped === 0);
  r.fig("send phase, s", Math.round(sendSeconds * 10) / 10);
  for (const f of failures.slice(0, 5)) r.note(`failed send: ${f}`);
  await Promise.all(agents.map((a) => a.stop()));
  await relay.kill("SIGTERM");
  return r.done();
}
