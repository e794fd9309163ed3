/**
 * 6. The MCP server: cold start — spawning `cli.ts` (the stdio MCP server, as
 * the README runs it)
 * until `initialize` is answered, with the SDK `Client` over
 * `StdioClientTransport`, with a relay process and with the embedded local
 * relay (the default; nothing listens on its port, so the first tool call
 * would host it) — and the `tools/call skytale_send` round trip on a
 * running server, sending to a channel on a relay process. Baseline: the same
 * measurements on a minimal SDK server with one `echo` tool
 * (`bench/_mcp_min.ts`). Targets: cold start ≤ 150 ms under `deno run` and
 * ≤ 1.15× the minimal server (issue 13), `skytale_send` ≤ 1.5 ms.
 *
 * ```sh
 * deno run -A bench/mcp.ts   # or: node bench/mcp.ts, bun bench/mcp.ts
 * ```
 *
 * @module
 */
import path from "node:path";
import { Better, type Harness, runStandalone } from "./_harness.ts";
import {
  freePort,
  percentile,
  removeDir,
  ROOT,
  runtimeCommand,
  serverEnv,
  startRelayProcess,
  tempDir,
} from "./_util.ts";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";

async function connect(
  script: string,
  env: Record<string, string>,
): Promise<{ client: Client; ms: number }> {
  const [cmd, pre] = runtimeCommand();
  const transport = new StdioClientTransport({
    command: cmd,
    args: [...pre, path.join(ROOT, script)],
    cwd: ROOT,
    env: serverEnv(env),
    stderr: "ignore",
  });
  const client = new Client({ name: "skytale-bench", version: "0.0.0" });
  const t0 = performance.now();
  await client.connect(transport);
  return { client, ms: performance.now() - t0 };
}

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<void> {
  const r = await client.callTool({ name, arguments: args });
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.content)}`);
}

/**
 * Measures and reports MCP cold start and the skytale_send round trip.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const relay = await startRelayProcess();
  const dir = await tempDir();
  let n = 0;
  const env = () => ({
    SKYTALE_RELAY: relay.url,
    SKYTALE_DATA_DIR: dir,
    SKYTALE_IDENTITY: `bench-${n++}`,
  });
  // The embedded relay's home and port: nothing listens there, and initialize must not wait on it.
  const embedded = {
    SKYTALE_HOME: dir,
    SKYTALE_DATA_DIR: dir,
    SKYTALE_LOCAL_PORT: String(await freePort()),
  };
  try {
    const starts = h.quick ? 3 : 10;
    const ours: number[] = [];
    const local: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < starts + 1; i++) {
      const a = await connect("cli.ts", env());
      await a.client.close();
      const b = await connect("bench/_mcp_min.ts", {});
      await b.client.close();
      const c = await connect("cli.ts", { ...embedded, SKYTALE_IDENTITY: `bench-${n++}` });
      await c.client.close();
      if (i === 0) continue; // warm the file cache
      ours.push(a.ms);
      base.push(b.ms);
      local.push(c.ms);
    }
    const flags = runtimeCommand()[1].join(" ") || "no flags";
    for (const [what, xs] of [["relay process", ours], ["embedded relay", local]] as const) {
      h.report({
        name: `cold start to initialize (${what})`,
        value: percentile(xs, 50),
        unit: "ms",
        better: Better.lower,
        baseline: { name: "minimal SDK stdio server", value: percentile(base, 50) },
        // ≤ 1.15× the baseline's time: a ratio (baseline / value) ≥ 1 / 1.15 ≈ 0.87.
        target: h.runtime === "deno" ? { value: 150, ratio: 0.87 } : { ratio: 0.87 },
        note: `median of ${starts} spawns, interleaved with the baseline (${flags})`,
      });
    }

    const { client } = await connect("cli.ts", env());
    const { client: min } = await connect("bench/_mcp_min.ts", {});
    try {
      const channel = "bench/mcp/send";
      await call(client, "skytale_create_channel", { channel });
      const args = { channel, message: "x".repeat(1024) };
      for (let i = 0; i < 20; i++) {
        await call(client, "skytale_send", args);
        await call(min, "echo", args);
      }
      const calls = h.quick ? 30 : 300;
      const sends: number[] = [];
      const echoes: number[] = [];
      for (let i = 0; i < calls; i++) {
        let t = performance.now();
        await call(client, "skytale_send", args);
        sends.push(performance.now() - t);
        t = performance.now();
        await call(min, "echo", args);
        echoes.push(performance.now() - t);
      }
      h.report({
        name: "skytale_send round trip",
        value: percentile(sends, 50),
        unit: "ms",
        better: Better.lower,
        baseline: { name: "echo tool on minimal SDK server", value: percentile(echoes, 50) },
        target: { value: 1.5 },
        note: `median of ${calls}, 1 KiB text; p99 ${percentile(sends, 99).toFixed(2)} ms`,
      });
    } finally {
      await client.close();
      await min.close();
    }
  } finally {
    await relay.stop();
    await removeDir(dir);
  }
}

if (import.meta.main) await runStandalone("mcp", run);
