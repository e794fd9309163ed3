/**
 * Shared context (issue 15): from one member's `set` to the change being
 * visible at another member (its subscription fires), and the time for 1,000
 * concurrent writes from 3 members (the same 100 keys, so they conflict) until
 * all three hold the same state. Three managers in this process, a relay
 * process on SQLite.
 *
 * ```sh
 * deno run -A bench/context.ts   # or: node bench/context.ts, bun bench/context.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import { percentile, startRelayProcess } from "./_util.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { MemoryStore } from "../src/store/memory.ts";

/**
 * Measures and reports context latency and convergence.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const relay = await startRelayProcess();
  const make = (identity: string) =>
    new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
  const [a, b, c] = [make("alice"), make("bob"), make("carol")];
  const ch = "bench/context/room";
  try {
    await a.create(ch);
    for (const m of [b, c]) await m.join(ch, await a.addMember(ch, await m.keyPackage()));
    const [ca, cb, cc] = [a.context(ch), b.context(ch), c.context(ch)];
    let seen: ((key: string) => void) | undefined;
    cb.subscribe((e) => {
      if (e.remote) seen?.(e.key);
    });
    const n = h.quick ? 20 : 100;
    const lat: number[] = [];
    for (let i = 0; i < n + 5; i++) {
      const key = `lat/${i}`;
      const visible = new Promise<void>((resolve) => seen = (k) => k === key && resolve());
      const t0 = performance.now();
      await ca.set(key, { i });
      await visible;
      if (i >= 5) lat.push(performance.now() - t0);
    }
    h.report({
      name: "context set → visible at another member",
      value: percentile(lat, 50),
      unit: "ms",
      better: Better.lower,
      note: `median of ${n}; p99 ${percentile(lat, 99).toFixed(2)} ms`,
    });

    const writes = h.quick ? 300 : 1000;
    const t0 = performance.now();
    await Promise.all([ca, cb, cc].map((ctx, w) =>
      Promise.all(
        Array.from(
          { length: Math.ceil(writes / 3) },
          (_, i) => ctx.set(`conv/${i % 100}`, { w, i }, { type: "note" }),
        ),
      )
    ));
    const state = async (ctx: typeof ca) =>
      JSON.stringify(
        (await ctx.list({ prefix: "conv/" })).map((e) => [e.key, e.value, e.updated]),
      );
    const end = Date.now() + 60_000;
    let converged = false;
    while (Date.now() < end) {
      const [x, y, z] = await Promise.all([state(ca), state(cb), state(cc)]);
      if (x === y && y === z && (await ca.list({ prefix: "conv/" })).length === 100) {
        converged = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    if (!converged) throw new Error("The three members did not converge within 60 s");
    h.report({
      name: `convergence of ${writes} concurrent writes from 3 members`,
      value: performance.now() - t0,
      unit: "ms",
      better: Better.lower,
      note: "100 contended keys; until all three list the same state",
    });
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
    await relay.stop();
  }
}

if (import.meta.main) await runStandalone("context", run);
