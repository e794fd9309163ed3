/**
 * Push latency (issue 14): from another agent's `skytale_send` to the
 * `notifications/claude/channel` push reaching a Claude Code-style client,
 * beside a waiting `skytale_receive` (timeout 30) on another member — three
 * stdio MCP server processes and a relay process.
 *
 * ```sh
 * deno run -A bench/push.ts   # or: node bench/push.ts, bun bench/push.ts
 * ```
 *
 * @module
 */
import path from "node:path";
import { Better, type Harness, runStandalone } from "./_harness.ts";
import {
  percentile,
  removeDir,
  ROOT,
  runtimeCommand,
  serverEnv,
  startRelayProcess,
  tempDir,
} from "./_util.ts";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";

async function server(
  identity: string,
  env: Record<string, string>,
  args: string[] = [],
): Promise<{ client: Client; pushes: number[] }> {
  const [cmd, pre] = runtimeCommand();
  const transport = new StdioClientTransport({
    command: cmd,
    args: [...pre, path.join(ROOT, "mod.ts"), "mcp", ...args],
    cwd: ROOT,
    env: serverEnv({ ...env, SKYTALE_IDENTITY: identity }),
    stderr: "ignore",
  });
  const client = new Client({ name: `bench-${identity}`, version: "0.0.0" });
  const pushes: number[] = [];
  client.fallbackNotificationHandler = (n) => {
    if (n.method === "notifications/claude/channel") pushes.push(performance.now());
    return Promise.resolve();
  };
  await client.connect(transport);
  return { client, pushes };
}

async function call(c: Client, name: string, args: Record<string, unknown>) {
  const r = await c.callTool({ name, arguments: args });
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.content)}`);
  return r.structuredContent as Record<string, unknown>;
}

/**
 * Measures and reports send → push and send → waiting receive.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const relay = await startRelayProcess();
  const dir = await tempDir();
  const env = { SKYTALE_RELAY: relay.url, SKYTALE_DATA_DIR: dir };
  const alice = await server("alice", env);
  const pushed = await server("bob", env, ["--claude-channel"]);
  const waiter = await server("carol", env);
  const channel = "bench/push/room";
  try {
    await call(alice.client, "skytale_create_channel", { channel });
    for (const m of [pushed, waiter]) {
      const { token } = await call(alice.client, "skytale_invite", { channel });
      await call(m.client, "skytale_join_with_token", { channel, token });
    }
    const n = h.quick ? 20 : 100;
    const push: number[] = [];
    const recv: number[] = [];
    for (let i = 0; i < n + 5; i++) {
      const before = pushed.pushes.length;
      const waiting = call(waiter.client, "skytale_receive", { channel, timeout: 30 });
      await new Promise((r) => setTimeout(r, 20)); // the wait is in place
      const t0 = performance.now();
      await call(alice.client, "skytale_send", { channel, message: `m${i}` });
      await waiting;
      const t1 = performance.now();
      const end = Date.now() + 10_000;
      while (pushed.pushes.length === before && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 1));
      }
      if (pushed.pushes.length === before) throw new Error("No push within 10 s");
      if (i < 5) continue; // warm-up
      push.push(pushed.pushes[before]! - t0);
      recv.push(t1 - t0);
    }
    h.report({
      name: "send → Claude channel push",
      value: percentile(push, 50),
      unit: "ms",
      better: Better.lower,
      baseline: { name: "send → waiting skytale_receive", value: percentile(recv, 50) },
      note: `median of ${n}; p99 ${percentile(push, 99).toFixed(2)} ms (receive p99 ${
        percentile(recv, 99).toFixed(2)
      } ms)`,
    });
  } finally {
    await alice.client.close();
    await pushed.client.close();
    await waiter.client.close();
    await relay.stop();
    await removeDir(dir);
  }
}

if (import.meta.main) await runStandalone("push", run);
