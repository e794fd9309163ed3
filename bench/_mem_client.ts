/**
 * The client of `bench/memory.ts`, in its own process so its RSS is its own:
 * a {@linkcode SkytaleChannelManager} (files in `DATA_DIR`) that prints
 * `{ ready: 0 }` once connected, then on `{ channels: n }` creates n channels
 * and prints `{ ready: n }`.
 *
 * ```sh
 * deno run -A bench/_mem_client.ts RELAY_URL DATA_DIR
 * ```
 *
 * @module
 */
import process from "node:process";
import { cliArgs } from "../src/runtime/env.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";

const [endpoint, dataDir] = cliArgs();
const me = new SkytaleChannelManager({ identity: "mem", endpoint: endpoint!, dataDir: dataDir! });
await me.channels();
const gc = (globalThis as { gc?: () => void }).gc;
const say = (v: unknown) => process.stdout.write(JSON.stringify(v) + "\n");
say({ ready: 0 });
let made = 0;
let buf = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", async (d: string) => {
  buf += d;
  const i = buf.indexOf("\n");
  if (i < 0) return;
  const { channels } = JSON.parse(buf.slice(0, i)) as { channels: number };
  buf = buf.slice(i + 1);
  while (made < channels) await me.create(`bench/mem/c${made++}`);
  gc?.();
  say({ ready: made });
});
process.stdin.on("end", () => void me.close().finally(() => process.exit(0)));
