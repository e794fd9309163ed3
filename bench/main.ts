/**
 * Runs every benchmark module in `bench/` (each `bench/<name>.ts` that does
 * not start with `_` and exports `run`, see `_harness.ts`) in name order, or
 * only those named on the command line:
 *
 * ```sh
 * deno task bench                 # all
 * deno run -A bench/main.ts mls   # only bench/mls.ts
 * node bench/main.ts --quick      # all, fewer samples
 * ```
 *
 * @module
 */
import { type BenchRun, runModules } from "./_harness.ts";
import { cliArgs } from "../src/runtime/env.ts";
import { listDir } from "../src/runtime/fs.ts";

const dir = decodeURIComponent(new URL("./", import.meta.url).pathname);
const wanted = cliArgs().filter((a) => !a.startsWith("--"));
const names = (await listDir(dir))
  .filter((f) => f.endsWith(".ts") && !f.startsWith("_") && f !== "main.ts")
  .map((f) => f.slice(0, -3))
  .filter((n) => wanted.length === 0 || wanted.includes(n))
  .sort();
const modules: { name: string; run: BenchRun }[] = [];
for (const name of names) {
  const mod = await import(`./${name}.ts`) as { run?: BenchRun };
  if (typeof mod.run === "function") modules.push({ name, run: mod.run });
}
if (!await runModules(modules)) throw new Error("A benchmark failed");
