/**
 * MCP over an encrypted channel: the `tools/call` round trip (p50 and p99)
 * to one stdio MCP server (`bench/_mcp_min.ts`, an SDK server with an `echo`
 * tool) three ways, interleaved call by call in one run:
 *
 * - baseline: an SDK `Client` over plain stdio to the server;
 * - both ends: an SDK `Client` over `SkytaleTransport` (in this process) →
 *   relay process → an SDK `McpServer` with the same tool connected with
 *   `server.connect(new SkytaleTransport(mgr, channel))` in its own process
 *   (`bench/_mcp_direct.ts`): the transport's own path, no stdio behind it;
 * - expose: an SDK `Client` over `SkytaleTransport` (in this process) →
 *   relay process → `skytale expose` process → the server as its child (so
 *   this path holds a stdio round trip of its own);
 * - bridge: an SDK `Client` over stdio to `skytale connect` → relay process →
 *   `skytale expose` → the server (what Claude Desktop would use).
 *
 * The three are measured call by call in turn, so each serving process idles
 * between its calls; then plain stdio and both ends again, back to back in
 * alternating blocks, where none does.
 *
 * Every encrypted call is two MLS application messages (request and response),
 * each encrypted, stored by the relay, delivered and decrypted; each carries
 * one MCP frame, AES-GCM under the session's key (frame version 3).
 *
 * Then the round trip budget of the both-ends path (`_mcp_budget.ts`): per
 * stage of the request and the response, the step from the stage before, from
 * the client's manager and transport (this process) and the relay's probes.
 *
 * ```sh
 * deno run -A bench/mcp_transport.ts   # or: node bench/mcp_transport.ts, bun bench/mcp_transport.ts
 * ```
 *
 * @module
 */
import path from "node:path";
import process from "node:process";
import { Better, type Harness, runStandalone } from "./_harness.ts";
import {
  type Child,
  percentile,
  removeDir,
  ROOT,
  runtimeCommand,
  spawnChild,
  startRelayProcess,
  tempDir,
} from "./_util.ts";
import { RoundTripBudget } from "./_mcp_budget.ts";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { SkytaleTransport } from "../src/mcp/transport.ts";
import { readFileIfExists } from "../src/runtime/fs.ts";

const CHANNEL = "bench/mcp/transport";
const DIRECT = "bench/mcp/direct";

function stdioClient(args: string[], env: Record<string, string> = {}): Promise<Client> {
  const [cmd, pre] = runtimeCommand();
  const transport = new StdioClientTransport({
    command: cmd,
    args: [...pre, ...args],
    cwd: ROOT,
    env: { ...process.env as Record<string, string>, ...env },
    stderr: "ignore",
  });
  const client = new Client({ name: "skytale-bench", version: "0.0.0" });
  return client.connect(transport, { timeout: 60_000 }).then(() => client);
}

async function call(client: Client, args: Record<string, unknown>): Promise<void> {
  const r = await client.callTool({ name: "echo", arguments: args });
  if (r.isError) throw new Error(`echo failed: ${JSON.stringify(r.content)}`);
}

/**
 * Measures and reports the tools/call round trips.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const dirs: string[] = [];
  const dir = async () => {
    const d = await tempDir();
    dirs.push(d);
    return d;
  };
  const probeFile = `${await dir()}/relay-probes.json`;
  const serverProbeFile = `${await dir()}/server-probes.json`;
  const relay = await startRelayProcess("sqlite", { SKYTALE_BENCH_PROBES: probeFile });
  const budget = new RoundTripBudget();
  const [cmd, pre] = runtimeCommand();
  let expose: Child | undefined;
  let direct: Child | undefined;
  const clients: Client[] = [];
  let mgr: SkytaleChannelManager | undefined;
  try {
    expose = spawnChild("mod.ts", [
      "expose",
      CHANNEL,
      "--uses",
      "5",
      "--",
      cmd,
      ...pre,
      path.join(ROOT, "bench/_mcp_min.ts"),
    ], { SKYTALE_RELAY: relay.url, SKYTALE_DATA_DIR: await dir(), SKYTALE_IDENTITY: "exposer" });
    const did = (await expose.waitFor(/server did: (did:key:\S+)/, 60_000))[1]!;
    const token = (await expose.waitFor(/invite token for "[^"]+": (skt_inv_\S+)/, 60_000))[1]!;

    direct = spawnChild("bench/_mcp_direct.ts", [DIRECT], {
      SKYTALE_RELAY: relay.url,
      SKYTALE_DATA_DIR: await dir(),
      SKYTALE_BENCH_PROBES: serverProbeFile,
    });
    const directToken = (await direct.waitFor(/invite: (skt_inv_\S+)/, 60_000))[1]!;
    const directDid = (await direct.waitFor(/serving (did:key:\S+)/, 60_000))[1]!;

    const plain = await stdioClient([path.join(ROOT, "bench/_mcp_min.ts")]);
    clients.push(plain);
    mgr = new SkytaleChannelManager({
      identity: "bench-client",
      endpoint: relay.url,
      dataDir: await dir(),
    });
    await mgr.joinWithToken(CHANNEL, token);
    await mgr.joinWithToken(DIRECT, directToken);
    const overChannel = new Client({ name: "skytale-bench", version: "0.0.0" });
    await overChannel.connect(new SkytaleTransport(mgr, CHANNEL, { serverDid: did }), {
      timeout: 60_000,
    });
    clients.push(overChannel);
    const bothEnds = new Client({ name: "skytale-bench", version: "0.0.0" });
    const transport = new SkytaleTransport(budget.channels(mgr), DIRECT, { serverDid: directDid });
    await bothEnds.connect(transport, { timeout: 60_000 });
    budget.watch(transport);
    clients.push(bothEnds);
    const bridged = await stdioClient(
      [path.join(ROOT, "mod.ts"), "connect", CHANNEL, "--server", did, "--invite", token],
      { SKYTALE_RELAY: relay.url, SKYTALE_DATA_DIR: await dir(), SKYTALE_IDENTITY: "bench-bridge" },
    );
    clients.push(bridged);

    const args = { channel: CHANNEL, message: "x".repeat(1024) };
    const paths = [plain, bothEnds, overChannel, bridged];
    // Warm-up: every process on every path runs its code often enough for the JIT to settle (a
    // serving process runs only its own path's calls; 20 left it measurably colder than the client).
    const warm = h.quick ? 20 : 150;
    for (let i = 0; i < warm; i++) for (const c of paths) await call(c, args);
    const calls = h.quick ? 30 : 300;
    const times: number[][] = paths.map(() => []);
    // The probe points cost a stamp each when on (as in bench/e2e.ts).
    budget.start();
    for (let i = 0; i < calls; i++) {
      for (let j = 0; j < paths.length; j++) {
        const t = performance.now();
        if (j === 1) await budget.time(() => call(paths[j]!, args));
        else await call(paths[j]!, args);
        times[j]!.push(performance.now() - t);
      }
    }
    budget.stop();
    const [base, both, overTransport, bridge] = times as [number[], number[], number[], number[]];
    for (const p of [50, 99]) {
      const baseline = { name: `plain stdio p${p}`, value: percentile(base, p) };
      const note = `${calls} calls interleaved, echo of 1 KiB`;
      h.report({
        name: `tools/call over SkytaleTransport p${p}`,
        value: percentile(both, p),
        unit: "ms",
        better: Better.lower,
        baseline,
        // Issue 13: p50 ≤ 1.5 ms and ≤ 3× plain stdio.
        ...(p === 50 ? { target: { ratio: 1 / 3, value: 1.5 } } : {}),
        note: `${note}; SkytaleTransport on both ends, McpServer in its own process`,
      });
      h.report({
        name: `tools/call to skytale expose p${p}`,
        value: percentile(overTransport, p),
        unit: "ms",
        better: Better.lower,
        baseline,
        note: `${note}; client in-process, server a stdio child behind skytale expose`,
      });
      h.report({
        name: `tools/call via connect/expose bridge p${p}`,
        value: percentile(bridge, p),
        unit: "ms",
        better: Better.lower,
        baseline,
        note: `${note}; stdio client → skytale connect → relay → skytale expose → server`,
      });
    }
    // Back to back: plain stdio and both ends with no other path's calls in between, so that no
    // process idles between its calls, in alternating blocks of 50.
    const seq: [Client, number[]][] = [[plain, []], [bothEnds, []]];
    for (let b = 0; b < (h.quick ? 2 : 6); b++) {
      for (const [c, out] of seq) {
        for (let i = 0; i < 50; i++) {
          const t = performance.now();
          await call(c, args);
          out.push(performance.now() - t);
        }
      }
    }
    h.report({
      name: "tools/call over SkytaleTransport p50, back to back",
      value: percentile(seq[1]![1], 50),
      unit: "ms",
      better: Better.lower,
      baseline: { name: "plain stdio p50, back to back", value: percentile(seq[0]![1], 50) },
      note: `${seq[1]![1].length} calls in blocks of 50 alternating with plain stdio; both ends`,
    });
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await mgr?.close();
    await expose?.stop();
    await direct?.stop();
    await relay.stop();
    budget.report(h, await readFileIfExists(probeFile), await readFileIfExists(serverProbeFile));
    for (const d of dirs) await removeDir(d);
  }
}

if (import.meta.main) await runStandalone("mcp_transport", run);
