/**
 * 7. The relay alone, over the raw wire protocol (no MLS): `PUBLISHERS`
 * WebSocket connections publish 1 KiB payloads to `CHANNELS` channels, each
 * with at most `WINDOW` publishes unanswered, against a relay process
 * (`mod.ts relay`, SQLite log); `SUBSCRIBER_CONNS` connections subscribe to
 * every channel between them (one subscription per channel). Figures: publish
 * + ack rate (first publish to last ack) and fan-out rate (first publish to
 * last delivery), median of interleaved rounds.
 *
 * Baseline, in the same run: NATS JetStream (`nats-server` on loopback, one
 * stream with file storage over `CHANNELS` subjects) driven by the client
 * library the relay's NATS log uses (`@nats-io/jetstream`,
 * `@nats-io/transport-node`): the same number of connections, the same window,
 * the same payloads, each publish with a message id (JetStream's
 * de-duplication, the counterpart of the relay's idempotent publish ids) and
 * awaited for its `PubAck`. Both stores acknowledge once the entry is written
 * to the OS (SQLite WAL with `synchronous=NORMAL`; JetStream's file store
 * syncs every 2 minutes by default): neither fsyncs per message. Without
 * `nats-server` the baseline is skipped (said on stderr) and the relay's
 * figures are reported alone. Target (issue 13): relay ≥ 1× JetStream.
 *
 * ```sh
 * deno run -A bench/relay.ts    # or: node bench/relay.ts, bun bench/relay.ts
 * ```
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient, jetstreamManager } from "@nats-io/jetstream";
import { Better, type Harness, runStandalone } from "./_harness.ts";
import {
  freePort,
  openSocket,
  percentile,
  removeDir,
  ROOT,
  startRelayProcess,
  tempDir,
} from "./_util.ts";
import { decodeFrame, encodeFrame, type Frame } from "../src/relay/protocol.ts";

const CHANNELS = 100;
const PUBLISHERS = 16;
const WINDOW = 32;
const SUBSCRIBER_CONNS = 10;
const PAYLOAD_BYTES = 1024;
/** A round that takes longer than this has stalled. */
const ROUND_LIMIT_MS = 60_000;

const ACK = 0x0a;
const DELIVER = 0x0c;

/** Resolves with the first answer frame on `ws` (setup only). */
function request(ws: WebSocket, f: Frame): Promise<Frame> {
  return new Promise((resolve, reject) => {
    ws.onmessage = (ev) => {
      const a = decodeFrame(new Uint8Array(ev.data as ArrayBuffer));
      if (a.type === "error") reject(new Error(`${a.code}: ${a.message}`));
      else resolve(a);
    };
    ws.send(encodeFrame(f) as Uint8Array<ArrayBuffer>);
  });
}

/** Rejects after `ms` unless `p` settles first. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A round: publish `n` in all; resolves with [ms to last ack, ms to last delivery]. */
type Round = (n: number) => Promise<[number, number | undefined]>;

async function relaySide(url: string): Promise<{ round: Round; close: () => void }> {
  let reqId = 1;
  const channels = Array.from({ length: CHANNELS }, (_, i) => `bench/relay/c${i}`);
  const open = async () => {
    const ws = await openSocket(url);
    await request(ws, { type: "hello", reqId: reqId++ });
    return ws;
  };
  const setup = await open();
  for (const channel of channels) await request(setup, { type: "create", reqId: reqId++, channel });
  setup.close();
  const subs: WebSocket[] = [];
  for (let s = 0; s < SUBSCRIBER_CONNS; s++) {
    const ws = await open();
    for (let c = s; c < CHANNELS; c += SUBSCRIBER_CONNS) {
      await request(ws, {
        type: "subscribe",
        reqId: reqId++,
        channel: channels[c]!,
        from: { seq: 1 },
      });
    }
    subs.push(ws);
  }
  let delivered = 0;
  let deliveredTarget = Infinity;
  let onDelivered: (() => void) | undefined;
  for (const ws of subs) {
    ws.onmessage = (ev) => {
      if (new Uint8Array(ev.data as ArrayBuffer)[1] !== DELIVER) return;
      if (++delivered === deliveredTarget) onDelivered?.();
    };
  }
  const pubs: WebSocket[] = [];
  for (let p = 0; p < PUBLISHERS; p++) pubs.push(await open());
  // One encoded publish per channel; each send copies it and patches the request id and the
  // publish id (the generator's own cost is part of what is measured: keep it small).
  const payload = crypto.getRandomValues(new Uint8Array(PAYLOAD_BYTES));
  const templates = channels.map((channel) =>
    encodeFrame({
      type: "publish",
      reqId: 1,
      channel,
      id: new Uint8Array(16),
      kind: "application",
      epoch: 0,
      payload,
    })
  );
  const idAt = (c: number) => 6 + 2 + new TextEncoder().encode(channels[c]!).length;
  const idOffsets = channels.map((_, c) => idAt(c));
  const nonce = crypto.getRandomValues(new Uint8Array(8));
  let counter = 0;
  let k = 0;
  const publishAll = (ws: WebSocket, p: number, n: number) =>
    new Promise<void>((resolve, reject) => {
      let sent = 0;
      let acked = 0;
      const send = () => {
        const c = (p * 7 + sent + k) % CHANNELS;
        sent++;
        const f = templates[c]!.slice();
        const view = new DataView(f.buffer);
        view.setUint32(2, reqId++ >>> 0);
        const at = idOffsets[c]!;
        f.set(nonce, at);
        view.setFloat64(at + 8, ++counter);
        ws.send(f);
      };
      ws.onmessage = (ev) => {
        const b = new Uint8Array(ev.data as ArrayBuffer);
        if (b[1] !== ACK) {
          const a = decodeFrame(b);
          return reject(new Error(`publish answered ${JSON.stringify(a)}`));
        }
        if (++acked === n) resolve();
        else if (sent < n) send();
      };
      while (sent < Math.min(WINDOW, n)) send();
    });
  return {
    async round(n) {
      const per = Math.ceil(n / PUBLISHERS);
      const total = per * PUBLISHERS;
      deliveredTarget = delivered + total;
      const all = new Promise<void>((r) => (onDelivered = r));
      k++;
      const t0 = performance.now();
      await bounded(
        Promise.all(pubs.map((ws, p) => publishAll(ws, p, per))),
        ROUND_LIMIT_MS,
        "acks",
      );
      const acked = performance.now() - t0;
      await bounded(all, ROUND_LIMIT_MS, "deliveries");
      return [acked, performance.now() - t0];
    },
    close() {
      for (const ws of [...subs, ...pubs]) ws.close();
    },
  };
}

/** Starts nats-server through scripts/nats.sh (loopback, JetStream, store in a temp dir). */
async function startNats(): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = await tempDir("skytale-bench-nats-");
  const port = await freePort();
  const child = spawn("bash", [path.join(ROOT, "scripts/nats.sh"), "start", dir, String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  let err = "";
  await bounded(
    new Promise<void>((resolve, reject) => {
      child.stderr!.on("data", (d: { toString(): string }) => {
        err += d.toString();
        if (/Server is ready/.test(err)) resolve();
      });
      void exited.then(() => reject(new Error(`nats-server exited:\n${err}`)));
    }),
    15_000,
    "nats-server start",
  ).catch((e) => {
    child.kill("SIGKILL");
    throw e;
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
      await removeDir(dir);
    },
  };
}

async function jetStreamSide(url: string): Promise<{ round: Round; close: () => Promise<void> }> {
  const conns: NatsConnection[] = [];
  for (let p = 0; p < PUBLISHERS; p++) conns.push(await connect({ servers: url }));
  const jsm = await jetstreamManager(conns[0]!);
  await jsm.streams.add({
    name: "BENCH",
    subjects: ["bench.relay.>"],
    storage: "file",
    num_replicas: 1,
  });
  const subjects = Array.from({ length: CHANNELS }, (_, i) => `bench.relay.c${i}`);
  const clients: JetStreamClient[] = conns.map((nc) => jetstream(nc));
  const payload = crypto.getRandomValues(new Uint8Array(PAYLOAD_BYTES));
  const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  let k = 0;
  const publishAll = async (js: JetStreamClient, p: number, n: number) => {
    let sent = 0;
    const lane = async () => {
      while (sent < n) {
        const subject = subjects[(p * 7 + sent + k) % CHANNELS]!;
        sent++;
        await js.publish(subject, payload, {
          msgID: hex(crypto.getRandomValues(new Uint8Array(16))),
        });
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, lane));
  };
  return {
    async round(n) {
      const per = Math.ceil(n / PUBLISHERS);
      k++;
      const t0 = performance.now();
      await bounded(
        Promise.all(clients.map((js, p) => publishAll(js, p, per))),
        ROUND_LIMIT_MS,
        "pub acks",
      );
      return [performance.now() - t0, undefined];
    },
    async close() {
      await Promise.all(conns.map((nc) => nc.close()));
    },
  };
}

/**
 * Measures the relay's publish + ack and fan-out rates, and JetStream's
 * publish + ack rate in the same run.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const relay = await startRelayProcess("sqlite", {}, ["--publish-rate", "1000000"]);
  const haveNats = spawnSync("nats-server", ["--version"]).status === 0;
  if (!haveNats) h.log("  nats-server is not installed: the JetStream baseline is skipped");
  const nats = haveNats ? await startNats() : undefined;
  let rs: Awaited<ReturnType<typeof relaySide>> | undefined;
  let js: Awaited<ReturnType<typeof jetStreamSide>> | undefined;
  try {
    rs = await relaySide(relay.url);
    js = nats ? await jetStreamSide(nats.url) : undefined;
    const n = h.quick ? 2_000 : 10_000;
    const rounds = h.quick ? 2 : 5;
    await rs.round(1_000);
    await js?.round(1_000);
    const acks: number[] = [];
    const fans: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const [a, f] = await rs.round(n);
      acks.push((n * 1000) / a);
      fans.push((n * 1000) / f!);
      if (js) base.push((n * 1000) / (await js.round(n))[0]);
    }
    const note = `${rounds} interleaved rounds of ${n} publishes of ${PAYLOAD_BYTES} B from ` +
      `${PUBLISHERS} connections, ${WINDOW} in flight each, to ${CHANNELS} channels; median round`;
    h.report({
      name: `publish+ack, ${CHANNELS} channels`,
      value: percentile(acks, 50),
      unit: "msg/s",
      better: Better.higher,
      ...(js
        ? {
          baseline: { name: "JetStream file store", value: percentile(base, 50) },
          target: { ratio: 1 },
        }
        : {}),
      note,
    });
    h.report({
      name: `fan-out, ${CHANNELS} channels, 1 subscriber each`,
      value: percentile(fans, 50),
      unit: "deliveries/s",
      better: Better.higher,
      note: `${note}; first publish to last delivery on ${SUBSCRIBER_CONNS} subscriber connections`,
    });
  } finally {
    rs?.close();
    await js?.close();
    await nats?.stop();
    await relay.stop();
  }
}

if (import.meta.main) await runStandalone("relay", run);
