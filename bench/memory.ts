/**
 * 7. Memory, measured from outside as the RSS of child processes:
 * - the relay (`mod.ts relay`, SQLite log) with 1,000 idle connections (each
 *   said hello), against a bare WebSocket server on the same `serve.ts`
 *   holding 1,000 idle connections;
 * - the relay after 10,000 stored 1 KiB messages on one channel, against the
 *   same relay before them;
 * - a client (`SkytaleChannelManager`, files) with 100 channels, against the
 *   same client connected with none.
 *
 * ```sh
 * deno run -A bench/memory.ts   # or: node bench/memory.ts, bun bench/memory.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import {
  openSocket,
  removeDir,
  rssOf,
  sleep,
  spawnChild,
  startBareServer,
  startRelayProcess,
  tempDir,
} from "./_util.ts";
import { encodeFrame } from "../src/relay/protocol.ts";
import { connectWebSocket, RelayClient } from "../src/relay/client.ts";

const MB = 1024 * 1024;

async function openIdle(url: string, n: number, hello: boolean): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  while (out.length < n) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - out.length) }, async () => {
        const ws = await openSocket(url);
        if (hello) {
          await new Promise<void>((r) => {
            ws.onmessage = () => r();
            ws.send(encodeFrame({ type: "hello", reqId: 1 }));
          });
        }
        return ws;
      }),
    );
    out.push(...batch);
  }
  return out;
}

async function settledRss(pid: number): Promise<number> {
  await sleep(1000);
  return await rssOf(pid);
}

/**
 * Measures and reports relay and client memory.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const conns = h.quick ? 200 : 1000;
  const stored = h.quick ? 2000 : 10_000;
  const channels = h.quick ? 20 : 100;
  const dir = await tempDir();
  const relay = await startRelayProcess();
  const bare = await startBareServer("echo");
  try {
    // ---- relay with idle connections
    const relayIdle = await settledRss(relay.child.pid);
    const bareIdle = await settledRss(bare.child.pid);
    const a = await openIdle(relay.url, conns, true);
    const relayConns = await settledRss(relay.child.pid);
    const b = await openIdle(bare.url, conns, false);
    const bareConns = await settledRss(bare.child.pid);
    h.report({
      name: `relay RSS, ${conns} idle connections`,
      value: relayConns / MB,
      unit: "MiB",
      better: Better.lower,
      baseline: { name: `bare serve.ts server, ${conns} connections`, value: bareConns / MB },
      note: `idle with none: relay ${(relayIdle / MB).toFixed(1)} MiB, bare ${
        (bareIdle / MB).toFixed(1)
      } MiB; per connection: relay ${
        ((relayConns - relayIdle) / conns / 1024).toFixed(1)
      } KiB, bare ${((bareConns - bareIdle) / conns / 1024).toFixed(1)} KiB`,
    });
    for (const ws of [...a, ...b]) ws.close();
    await sleep(500);

    // ---- relay with stored messages
    const before = await settledRss(relay.child.pid);
    const client = new RelayClient({ connect: () => connectWebSocket(relay.url) });
    await client.create("bench/memory/stored");
    const payload = crypto.getRandomValues(new Uint8Array(1024));
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => {
      while (next < stored) {
        next++;
        const r = await client.publish("bench/memory/stored", {
          id: crypto.getRandomValues(new Uint8Array(16)),
          kind: "application",
          epoch: 0,
          payload,
        });
        if (!r.ok) throw new Error(`Publish refused: ${r.code}`);
      }
    }));
    await client.close();
    const after = await settledRss(relay.child.pid);
    h.report({
      name: `relay RSS, ${stored} stored messages`,
      value: after / MB,
      unit: "MiB",
      better: Better.lower,
      baseline: { name: "same relay before storing them", value: before / MB },
      note: `1 KiB each, SQLite log; +${((after - before) / MB).toFixed(1)} MiB`,
    });

    // ---- client with channels
    const child = spawnChild("bench/_mem_client.ts", [relay.url, `${dir}/client`]);
    try {
      await child.next();
      const none = await settledRss(child.pid);
      child.send({ channels });
      await child.next(300_000);
      const many = await settledRss(child.pid);
      h.report({
        name: `client RSS, ${channels} channels`,
        value: many / MB,
        unit: "MiB",
        better: Better.lower,
        baseline: { name: "same client with no channel", value: none / MB },
        note: `per channel ${((many - none) / channels / 1024).toFixed(1)} KiB`,
      });
    } finally {
      child.proc.stdin!.end();
      await sleep(300);
      await child.stop();
    }
  } finally {
    await bare.child.stop();
    await relay.stop();
    await removeDir(dir);
  }
}

if (import.meta.main) await runStandalone("memory", run);
