/**
 * The serving end of `bench/mcp_transport.ts`'s "both ends" path, in its own
 * process: the MCP SDK's `McpServer` with the same `echo` tool as
 * `bench/_mcp_min.ts`, connected with `server.connect(new SkytaleTransport(mgr,
 * channel))` as Skytale documents it — no stdio hop behind it. Creates the
 * channel, prints `invite: skt_inv_…` and `serving DID` on stderr, and exits
 * when stdin closes or on SIGTERM. With `SKYTALE_BENCH_PROBES=FILE` it records
 * the manager's stage stamps (`src/_probe.ts`) and writes them to FILE on exit,
 * so the round trip budget can split the serving side.
 *
 * ```sh
 * SKYTALE_RELAY=ws://… SKYTALE_DATA_DIR=… deno run -A bench/_mcp_direct.ts CHANNEL
 * ```
 *
 * @module
 */
import process from "node:process";
import { z } from "zod";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { McpServer } from "../src/mcp/_sdk.ts";
import { SkytaleTransport } from "../src/mcp/transport.ts";
import { cliArgs, env } from "../src/runtime/env.ts";
import { recordProbes } from "../src/_probe.ts";
import { writeFileAtomic } from "../src/runtime/fs.ts";

const [channel] = cliArgs();
const probeFile = env("SKYTALE_BENCH_PROBES");
const recording = probeFile ? recordProbes() : undefined;
const mgr = new SkytaleChannelManager({ identity: "bench-direct" });
await mgr.create(channel!);
const server = new McpServer({ name: "bench-direct", version: "0.0.0" });
server.registerTool(
  "echo",
  { description: "Echo a message", inputSchema: { channel: z.string(), message: z.string() } },
  ({ message }) => ({ content: [{ type: "text", text: message }] }),
);
await server.connect(new SkytaleTransport(mgr, channel!));
const log = (line: string) => process.stderr.write(line + "\n");
log(`invite: ${await mgr.invite(channel!, { uses: 5 })}`);
log(`serving ${(await mgr.whoami()).did}`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.close();
  await mgr.close();
  if (probeFile && recording) {
    await writeFileAtomic(probeFile, new TextEncoder().encode(JSON.stringify(recording.stamps)));
  }
  process.exit(0);
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
