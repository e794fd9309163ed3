/**
 * 4. Relay fan-out: one publisher, 50 subscribers of one channel, 1 KiB
 * ciphertext-sized payloads, through a relay process (`mod.ts relay`, SQLite
 * log); deliveries per second from the first publish until every subscriber
 * has every entry. Baseline: a bare WebSocket broadcast server on the same
 * `serve.ts` (`bench/_ws_server.ts broadcast`), same sender window, same
 * sockets. Subscribers on both sides are plain WebSockets that only count, so
 * the figure is the server's. Target (issue 13) ≥ 0.9 of the bare broadcast.
 *
 * ```sh
 * deno run -A bench/fanout.ts   # or: node bench/fanout.ts, bun bench/fanout.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import { openSocket, percentile, startBareServer, startRelayProcess } from "./_util.ts";
import { decodeFrame, encodeFrame } from "../src/relay/protocol.ts";

const SUBSCRIBERS = 50;
const WINDOW = 64;
const DELIVER = 0x0c;

/** Counts messages on many sockets and resolves when each has seen `n` more. */
class Counter {
  counts: number[];
  #target = 0;
  #resolve: (() => void) | undefined;
  #done = 0;
  constructor(sockets: WebSocket[], isDelivery: (b: Uint8Array) => boolean) {
    this.counts = sockets.map(() => 0);
    sockets.forEach((ws, i) => {
      ws.onmessage = (ev) => {
        if (!isDelivery(new Uint8Array(ev.data as ArrayBuffer))) return;
        if (++this.counts[i]! === this.#target) {
          if (++this.#done === sockets.length) this.#resolve?.();
        }
      };
    });
  }
  expect(n: number): Promise<void> {
    this.#done = 0;
    this.#target = this.counts[0]! + n;
    return new Promise((r) => (this.#resolve = r));
  }
}

/** Sends `n` messages with at most WINDOW unanswered, answers counted by `onAck`. */
function windowed(ws: WebSocket, n: number, make: (i: number) => Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    let acked = 0;
    ws.onmessage = () => {
      if (++acked === n) resolve();
      else if (sent < n) ws.send(make(sent++) as Uint8Array<ArrayBuffer>);
    };
    while (sent < Math.min(WINDOW, n)) ws.send(make(sent++) as Uint8Array<ArrayBuffer>);
  });
}

async function relaySide(url: string): Promise<(n: number) => Promise<number>> {
  const channel = "bench/fanout/one";
  let reqId = 1;
  const hello = async (ws: WebSocket) => {
    const answer = new Promise<void>((r) => (ws.onmessage = () => r()));
    ws.send(encodeFrame({ type: "hello", reqId: reqId++ }));
    await answer;
  };
  const request = (ws: WebSocket, f: Parameters<typeof encodeFrame>[0]) =>
    new Promise<void>((resolve, reject) => {
      ws.onmessage = (ev) => {
        const a = decodeFrame(new Uint8Array(ev.data as ArrayBuffer));
        if (a.type === "error") reject(new Error(a.message));
        else resolve();
      };
      ws.send(encodeFrame(f));
    });
  const pub = await openSocket(url);
  await hello(pub);
  await request(pub, { type: "create", reqId: reqId++, channel });
  const subs: WebSocket[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const ws = await openSocket(url);
    await hello(ws);
    await request(ws, { type: "subscribe", reqId: reqId++, channel, from: { seq: 1 } });
    subs.push(ws);
  }
  const counter = new Counter(subs, (b) => b[1] === DELIVER);
  const payload = crypto.getRandomValues(new Uint8Array(1024));
  return async (n) => {
    const all = counter.expect(n);
    const t0 = performance.now();
    await windowed(pub, n, () =>
      encodeFrame({
        type: "publish",
        reqId: reqId++,
        channel,
        id: crypto.getRandomValues(new Uint8Array(16)),
        kind: "application",
        epoch: 0,
        payload,
      }));
    await all;
    return performance.now() - t0;
  };
}

async function bareSide(url: string): Promise<(n: number) => Promise<number>> {
  const pub = await openSocket(url);
  const subs: WebSocket[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) subs.push(await openSocket(url));
  // The relay's deliver frame is ~1.1 KiB for a 1 KiB payload: send the same size.
  const frame = crypto.getRandomValues(new Uint8Array(1024 + 80));
  const counter = new Counter(subs, (b) => b.length > 16);
  return async (n) => {
    const all = counter.expect(n);
    const t0 = performance.now();
    await windowed(pub, n, () => frame);
    await all;
    return performance.now() - t0;
  };
}

/**
 * Measures and reports relay fan-out against a bare broadcast.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const relay = await startRelayProcess();
  const bare = await startBareServer("broadcast");
  try {
    const relayRound = await relaySide(relay.url);
    const bareRound = await bareSide(bare.url);
    const n = h.quick ? 200 : 1000;
    const rounds = h.quick ? 2 : 5;
    await relayRound(100);
    await bareRound(100);
    const r: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < rounds; i++) {
      r.push((n * SUBSCRIBERS * 1000) / await relayRound(n));
      b.push((n * SUBSCRIBERS * 1000) / await bareRound(n));
    }
    h.report({
      name: `fan-out to ${SUBSCRIBERS}`,
      value: percentile(r, 50),
      unit: "deliveries/s",
      better: Better.higher,
      baseline: { name: "bare WebSocket broadcast", value: percentile(b, 50) },
      target: { ratio: 0.9 }, // issue 13
      note: `${rounds} rounds of ${n} publishes of 1 KiB, ${WINDOW} in flight; median round`,
    });
  } finally {
    await bare.child.stop();
    await relay.stop();
  }
}

if (import.meta.main) await runStandalone("fanout", run);
