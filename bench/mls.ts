/**
 * MLS pair cost: one application message encrypted by one member and
 * processed (decrypted, signature verified) by another, with our engine's
 * default crypto provider against ts-mls' default provider, 1 KiB and 16 KiB.
 * Targets (issue 13): at least 6× faster than ts-mls' default provider at 1 KiB,
 * 4× at 16 KiB.
 *
 * ```sh
 * deno run -A bench/mls.ts   # or: node bench/mls.ts, bun bench/mls.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import { type Group, MlsEngine, type MlsEngineOptions } from "../src/mls/engine.ts";
import { tsMlsDefaultProvider } from "../src/mls/provider.ts";

/**
 * Builds a two-member group and the operation that sends one message across it.
 *
 * @param options The engine's crypto provider.
 * @param size The plaintext size in bytes.
 * @returns The operation: encrypt by one member, process by the other.
 */
export async function pairOp(
  options: MlsEngineOptions,
  size: number,
): Promise<() => Promise<void>> {
  const mls = await MlsEngine.create(undefined, options);
  const bob = await mls.newKeyPackage("bob");
  const created = await mls.createGroup(new TextEncoder().encode("bench/mls/pair"), "alice");
  const added = await mls.commitAdd(created, bob.keyPackage);
  let alice: Group = added.newGroup;
  let bobGroup: Group = (await mls.join(added.welcome, [bob])).group;
  const data = crypto.getRandomValues(new Uint8Array(size));
  return async () => {
    const { message, newGroup } = await mls.encrypt(alice, data);
    alice = newGroup;
    const r = await mls.process(bobGroup, message);
    if (r.kind !== "application" || r.data.length !== size) throw new Error("Bad round trip");
    bobGroup = r.newGroup;
  };
}

/**
 * Measures and reports the pair cost for 1 KiB and 16 KiB.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  for (const size of [1024, 16384]) {
    const ours = await pairOp({}, size);
    const theirs = await pairOp({ provider: tsMlsDefaultProvider }, size);
    const [a, b] = await h.compare(ours, theirs);
    const label = `pair ${size / 1024} KiB`;
    h.report({
      name: label,
      value: a.ms,
      unit: "ms",
      better: Better.lower,
      baseline: { name: "ts-mls default provider", value: b.ms },
      target: { ratio: size === 1024 ? 6 : 4 },
      note: `encrypt + process, median of ${a.samples.length} batches, ${a.iterations} pairs`,
    });
    h.report({
      name: `${label} throughput`,
      value: a.perSecond,
      unit: "pairs/s",
      better: Better.higher,
      baseline: { name: "ts-mls default provider", value: b.perSecond },
    });
  }
}

if (import.meta.main) await runStandalone("mls", run);
