/**
 * The receiving agent of `bench/e2e.ts`, in its own process: a
 * {@linkcode SkytaleChannelManager} with files in a temp directory. It speaks
 * JSON lines: prints `{ keyPackage }`, reads `{ channel, welcome }`, joins and
 * prints `{ joined: true }`, then for each `{ expect: n }` receives until `n`
 * messages arrived and prints `{ got: n, ms }` (ms from the first message to
 * the last).
 *
 * ```sh
 * deno run -A bench/_e2e_peer.ts RELAY_URL DATA_DIR
 * ```
 *
 * @module
 */
import process from "node:process";
import { cliArgs } from "../src/runtime/env.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";

const [endpoint, dataDir] = cliArgs();
const me = new SkytaleChannelManager({
  identity: "receiver",
  endpoint: endpoint!,
  dataDir: dataDir!,
});

function say(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + "\n");
}

const lines: string[] = [];
let waiting: ((l: string) => void) | undefined;
let buf = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d: string) => {
  buf += d;
  let i: number;
  while ((i = buf.indexOf("\n")) >= 0) {
    const l = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (waiting) {
      const w = waiting;
      waiting = undefined;
      w(l);
    } else lines.push(l);
  }
});
process.stdin.on("end", () => {
  void me.close().finally(() => process.exit(0));
});
function nextLine(): Promise<Record<string, unknown>> {
  const l = lines.shift();
  if (l !== undefined) return Promise.resolve(JSON.parse(l));
  return new Promise((resolve) => (waiting = (x) => resolve(JSON.parse(x))));
}

say({ keyPackage: await me.keyPackage() });
const { channel, welcome } = await nextLine() as { channel: string; welcome: string };
await me.join(channel, welcome);
say({ joined: true });
for (;;) {
  const { expect } = await nextLine() as { expect: number };
  let got = 0;
  let first = 0;
  while (got < expect) {
    const msgs = await me.receive(channel, { timeout: 30 });
    if (msgs.length === 0) throw new Error(`No message after ${got} of ${expect}`);
    if (got === 0) first = performance.now();
    got += msgs.length;
  }
  say({ got, ms: performance.now() - first });
}
